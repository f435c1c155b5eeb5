#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>

#include "test_support.hpp"

namespace {

using kiln_test::random_floats;

// Double-precision forward of: dense(in->h, relu) -> layer norm -> dense(h->out) -> softmax
std::vector<double> reference(const std::vector<float>& x, int64_t batch, int64_t in, int64_t h, int64_t out,
                              const std::vector<float>& w1, const std::vector<float>& b1, const std::vector<float>& g,
                              const std::vector<float>& be, const std::vector<float>& w2, const std::vector<float>& b2) {
    std::vector<double> y(static_cast<size_t>(batch * out));
    for (int64_t r = 0; r < batch; ++r) {
        std::vector<double> a(static_cast<size_t>(h));
        for (int64_t j = 0; j < h; ++j) {
            double s = b1[size_t(j)];
            for (int64_t p = 0; p < in; ++p) s += double(x[size_t(r * in + p)]) * w1[size_t(p * h + j)];
            a[size_t(j)] = s < 0 ? 0 : s;
        }
        double m = 0, v = 0;
        for (double t : a) m += t;
        m /= double(h);
        for (double t : a) v += (t - m) * (t - m);
        v /= double(h);
        for (int64_t j = 0; j < h; ++j) a[size_t(j)] = (a[size_t(j)] - m) / std::sqrt(v + 1e-5) * g[size_t(j)] + be[size_t(j)];
        double mx = -1e300;
        std::vector<double> z(static_cast<size_t>(out));
        for (int64_t k = 0; k < out; ++k) {
            double s = b2[size_t(k)];
            for (int64_t j = 0; j < h; ++j) s += a[size_t(j)] * w2[size_t(j * out + k)];
            z[size_t(k)] = s;
            mx = std::max(mx, s);
        }
        double sum = 0;
        for (double& t : z) sum += (t = std::exp(t - mx));
        for (int64_t k = 0; k < out; ++k) y[size_t(r * out + k)] = z[size_t(k)] / sum;
    }
    return y;
}

TEST(Plan, ForwardMatchesReferenceAtEveryBatchSize) {
    const int64_t in = 37, h = 50, out = 10, max_batch = 33;
    auto w1 = random_floats(size_t(in * h), 1, -0.3f, 0.3f), b1 = random_floats(size_t(h), 2);
    auto g = random_floats(size_t(h), 3, 0.5f, 1.5f), be = random_floats(size_t(h), 4);
    auto w2 = random_floats(size_t(h * out), 5, -0.3f, 0.3f), b2 = random_floats(size_t(out), 6);
    kiln_plan* p = nullptr;
    ASSERT_EQ(kiln_plan_create(in, max_batch, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, h, w1.data(), b1.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_add_activation(p, KILN_UNARY_RELU, 0), KILN_OK);  // fused into the dense
    ASSERT_EQ(kiln_plan_add_layer_norm(p, g.data(), be.data(), 1e-5f), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, out, w2.data(), b2.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_add_softmax(p, 0), KILN_OK);
    // Parameters were copied: clobbering the caller's arrays must not matter.
    auto w1_saved = w1;
    std::fill(w1.begin(), w1.end(), 99.0f);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK) << kiln_last_error();
    int64_t fin = 0, fout = 0, mb = 0, ws = 0;
    ASSERT_EQ(kiln_plan_info(p, &fin, &fout, &mb, &ws), KILN_OK);
    EXPECT_EQ(fin, in);
    EXPECT_EQ(fout, out);
    EXPECT_EQ(mb, max_batch);
    void* workspace = nullptr;
    ASSERT_EQ(kiln_alloc(ws, &workspace), KILN_OK);
    for (int64_t batch : {1, 2, 7, 32, 33}) {
        auto x = random_floats(size_t(batch * in), uint32_t(batch));
        std::vector<float> y(static_cast<size_t>(batch * out));
        ASSERT_EQ(kiln_plan_run(p, batch, x.data(), y.data(), workspace, ws), KILN_OK) << kiln_last_error();
        auto want = reference(x, batch, in, h, out, w1_saved, b1, g, be, w2, b2);
        for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], want[i], 2e-5 + 2e-5 * want[i]) << "batch " << batch << " i " << i;
    }
    kiln_free(workspace);
    kiln_plan_destroy(p);
}

TEST(Plan, ManyThreadsShareOnePlan) {
    const int64_t in = 64, out = 16;
    auto w = random_floats(size_t(in * out), 7);
    kiln_plan* p = nullptr;
    ASSERT_EQ(kiln_plan_create(in, 4, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, out, w.data(), nullptr, KILN_UNARY_TANH, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, out, w.data(), nullptr, KILN_UNARY_IDENTITY, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK);
    int64_t ws = 0;
    kiln_plan_info(p, nullptr, nullptr, nullptr, &ws);
    auto x = random_floats(size_t(4 * in), 8);
    std::vector<float> want(4 * out);
    void* w0 = nullptr;
    kiln_alloc(ws, &w0);
    ASSERT_EQ(kiln_plan_run(p, 4, x.data(), want.data(), w0, ws), KILN_OK);
    kiln_free(w0);
    std::vector<std::thread> threads;
    std::vector<int> bad(8, 0);
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&, t] {
            void* mine = nullptr;
            kiln_alloc(ws, &mine);
            std::vector<float> y(4 * out);
            for (int i = 0; i < 2000; ++i) {
                if (kiln_plan_run(p, 4, x.data(), y.data(), mine, ws) != KILN_OK || y != want) ++bad[size_t(t)];
            }
            kiln_free(mine);
        });
    for (auto& th : threads) th.join();
    for (int t = 0; t < 8; ++t) EXPECT_EQ(bad[size_t(t)], 0) << "thread " << t;
    kiln_plan_destroy(p);
}

TEST(Plan, MisuseIsRefused) {
    kiln_plan* p = nullptr;
    EXPECT_EQ(kiln_plan_create(0, 4, &p), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_plan_create(4, 2, &p), KILN_OK);
    EXPECT_EQ(kiln_plan_compile(p), KILN_ERR_INVALID_ARGUMENT);  // no layers
    float w[8] = {1, 0, 0, 1, 1, 0, 0, 1}, x[8] = {}, y[4];
    EXPECT_EQ(kiln_plan_add_dense(p, 2, nullptr, nullptr, 0, 0), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_plan_add_dense(p, 2, w, nullptr, 42, 0), KILN_ERR_INVALID_ARGUMENT);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    EXPECT_EQ(kiln_plan_add_dense(p, 2, w, nullptr, KILN_UNARY_LEAKY_RELU, nan), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "activation alpha is not finite"), nullptr) << kiln_last_error();
    EXPECT_EQ(kiln_plan_add_activation(p, KILN_UNARY_LEAKY_RELU, INFINITY), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_plan_run(p, 1, x, y, nullptr, 0), KILN_ERR_INVALID_ARGUMENT);  // not compiled
    ASSERT_EQ(kiln_plan_add_dense(p, 2, w, nullptr, 0, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK);
    EXPECT_EQ(kiln_plan_add_softmax(p, 0), KILN_ERR_INVALID_ARGUMENT);  // compiled
    EXPECT_EQ(kiln_plan_run(p, 3, x, y, nullptr, 0), KILN_ERR_SHAPE_MISMATCH);
    EXPECT_NE(std::strstr(kiln_last_error(), "batch is 3: must be in 1..2"), nullptr) << kiln_last_error();
    EXPECT_EQ(kiln_plan_run(p, 0, x, y, nullptr, 0), KILN_ERR_SHAPE_MISMATCH);
    EXPECT_EQ(kiln_plan_run(p, 1, nullptr, y, nullptr, 0), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_plan_run(p, 2, x, y, nullptr, 0), KILN_OK);  // one layer: no workspace needed
    EXPECT_EQ(kiln_plan_run(p, 1, x, x + 2, nullptr, 0), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "output overlaps input"), nullptr) << kiln_last_error();
    EXPECT_EQ(kiln_plan_run(p, 1, x, x + 4, nullptr, 0), KILN_OK);  // adjacent: fine
    kiln_plan_destroy(p);
    EXPECT_EQ(kiln_plan_destroy(nullptr), KILN_OK);
}

}  // namespace

namespace {

// A small DAG, checked layer by layer against plain loops: every fusion case the compiler has.
//   v1 = x W1 + b1; v2 = relu(v1); v3 = v2 W2 + b2; v4 = v3 + v2 (fused into W2's epilogue)
//   v5 = tanh(v4); v6 = v5 + x (input residual); v7 = v6 W3; v8 = v7 + v6 (fused, no bias); v9 = relu(v8)
//   v10 = v9 + v5 (not fusable: after an activation that follows a Dense with a fused residual)
TEST(Plan, ResidualDagMatchesLoopsAndReusesBuffers) {
    const int64_t batch = 5, d = 12;
    auto w1 = random_floats(d * d, 1, -0.3f, 0.3f), b1 = random_floats(d, 2), w2 = random_floats(d * d, 3, -0.3f, 0.3f),
         b2 = random_floats(d, 4), w3 = random_floats(d * d, 5, -0.3f, 0.3f), x = random_floats(batch * d, 6);
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(d, batch, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, d, w1.data(), b1.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);  // v1
    ASSERT_EQ(kiln_plan_add_activation(p, KILN_UNARY_RELU, 0), KILN_OK);                          // v2
    ASSERT_EQ(kiln_plan_add_dense(p, d, w2.data(), b2.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);  // v3
    ASSERT_EQ(kiln_plan_add_residual(p, 2), KILN_OK);                                             // v4
    ASSERT_EQ(kiln_plan_add_activation(p, KILN_UNARY_TANH, 0), KILN_OK);                          // v5
    ASSERT_EQ(kiln_plan_add_residual(p, 0), KILN_OK);                                             // v6
    ASSERT_EQ(kiln_plan_add_dense(p, d, w3.data(), nullptr, KILN_UNARY_IDENTITY, 0), KILN_OK);    // v7
    ASSERT_EQ(kiln_plan_add_residual(p, 6), KILN_OK);                                             // v8
    ASSERT_EQ(kiln_plan_add_activation(p, KILN_UNARY_RELU, 0), KILN_OK);                          // v9
    ASSERT_EQ(kiln_plan_add_residual(p, 5), KILN_OK);                                             // v10
    EXPECT_EQ(kiln_plan_add_residual(p, 11), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK) << kiln_last_error();
    int64_t ws_bytes;
    ASSERT_EQ(kiln_plan_info(p, nullptr, nullptr, nullptr, &ws_bytes), KILN_OK);
    const int64_t buf = (batch * d + 15) / 16 * 16 * 4;
    EXPECT_LE(ws_bytes, 3 * buf);  // v2, v5, v6 alive at once at most
    std::vector<float> y(size_t(batch * d));
    void* ws;
    ASSERT_EQ(kiln_alloc(ws_bytes, &ws), KILN_OK);
    ASSERT_EQ(kiln_plan_run(p, batch, x.data(), y.data(), ws, ws_bytes), KILN_OK) << kiln_last_error();

    auto dense = [&](const std::vector<double>& a, const std::vector<float>& w, const std::vector<float>* b) {
        std::vector<double> o(size_t(batch * d));
        for (int64_t r = 0; r < batch; ++r)
            for (int64_t j = 0; j < d; ++j) {
                double s = b ? (*b)[size_t(j)] : 0.0;
                for (int64_t k = 0; k < d; ++k) s += a[size_t(r * d + k)] * w[size_t(k * d + j)];
                o[size_t(r * d + j)] = s;
            }
        return o;
    };
    auto map = [](std::vector<double> a, double (*f)(double)) {
        for (double& v : a) v = f(v);
        return a;
    };
    auto add = [](std::vector<double> a, const std::vector<double>& b) {
        for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
        return a;
    };
    auto relu = [](double v) { return v > 0 ? v : 0.0; };
    auto th = [](double v) { return std::tanh(v); };
    std::vector<double> v0(x.begin(), x.end());
    auto v2 = map(dense(v0, w1, &b1), relu);
    auto v4 = add(dense(v2, w2, &b2), v2);
    auto v5 = map(v4, th);
    auto v6 = add(v5, v0);
    auto v9 = map(add(dense(v6, w3, nullptr), v6), relu);
    auto v10 = add(v9, v5);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], v10[i], 1e-4 * (1 + std::fabs(v10[i]))) << i;
    kiln_free(ws);
    kiln_plan_destroy(p);
}

// Branches: a projection shortcut (layers on both paths of a residual), a branch reading a fused
// activation's value, one naming another branch's value; widths differ between the paths.
//   v1 = x W1 + b1 (12 -> 20); v2 = relu(v1); v3 = v2 W2 + b2 (-> 8); v4 = branch(0) = x
//   v5 = x W3 (-> 8); v6 = v5 + v3 (fused); v7 = relu(v6); v8 = branch(2) = v2; v9 = v2 W4 + b4;
//   v10 = v9 + v7 (fused); v11 = branch(4) = x; v12 = x W5 (-> 8); v13 = v12 + v10; v14 = softmax
TEST(Plan, BranchDagMatchesLoops) {
    const int64_t batch = 6, in = 12, h = 20, o = 8;
    auto w1 = random_floats(in * h, 21, -0.3f, 0.3f), b1 = random_floats(h, 22), w2 = random_floats(h * o, 23, -0.3f, 0.3f),
         b2 = random_floats(o, 24), w3 = random_floats(in * o, 25, -0.3f, 0.3f), w4 = random_floats(h * o, 26, -0.3f, 0.3f),
         b4 = random_floats(o, 27), w5 = random_floats(in * o, 28, -0.3f, 0.3f), x = random_floats(batch * in, 29);
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(in, batch, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, h, w1.data(), b1.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);  // v1
    ASSERT_EQ(kiln_plan_add_activation(p, KILN_UNARY_RELU, 0), KILN_OK);                          // v2
    ASSERT_EQ(kiln_plan_add_dense(p, o, w2.data(), b2.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);  // v3
    ASSERT_EQ(kiln_plan_add_branch(p, 0), KILN_OK);                                               // v4
    ASSERT_EQ(kiln_plan_add_dense(p, o, w3.data(), nullptr, KILN_UNARY_IDENTITY, 0), KILN_OK);    // v5
    ASSERT_EQ(kiln_plan_add_residual(p, 3), KILN_OK);                                             // v6
    ASSERT_EQ(kiln_plan_add_activation(p, KILN_UNARY_RELU, 0), KILN_OK);                          // v7
    ASSERT_EQ(kiln_plan_add_branch(p, 2), KILN_OK);                                               // v8
    ASSERT_EQ(kiln_plan_add_dense(p, o, w4.data(), b4.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);  // v9
    ASSERT_EQ(kiln_plan_add_residual(p, 7), KILN_OK);                                             // v10
    EXPECT_EQ(kiln_plan_add_residual(p, 2), KILN_ERR_SHAPE_MISMATCH);                             // 20 wide
    ASSERT_EQ(kiln_plan_add_branch(p, 4), KILN_OK);                                               // v11
    ASSERT_EQ(kiln_plan_add_dense(p, o, w5.data(), nullptr, KILN_UNARY_IDENTITY, 0), KILN_OK);    // v12
    ASSERT_EQ(kiln_plan_add_residual(p, 10), KILN_OK);                                            // v13
    ASSERT_EQ(kiln_plan_add_softmax(p, 0), KILN_OK);                                              // v14
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK) << kiln_last_error();
    int64_t ws_bytes, out_features;
    ASSERT_EQ(kiln_plan_info(p, nullptr, &out_features, nullptr, &ws_bytes), KILN_OK);
    EXPECT_EQ(out_features, o);
    std::vector<float> y(size_t(batch * o));
    void* ws;
    ASSERT_EQ(kiln_alloc(ws_bytes, &ws), KILN_OK);
    ASSERT_EQ(kiln_plan_run(p, batch, x.data(), y.data(), ws, ws_bytes), KILN_OK) << kiln_last_error();

    auto dense = [&](const std::vector<double>& a, int64_t k, const std::vector<float>& w, const std::vector<float>* b,
                     int64_t n) {
        std::vector<double> r(size_t(batch * n));
        for (int64_t i = 0; i < batch; ++i)
            for (int64_t j = 0; j < n; ++j) {
                double s = b ? (*b)[size_t(j)] : 0.0;
                for (int64_t q = 0; q < k; ++q) s += a[size_t(i * k + q)] * w[size_t(q * n + j)];
                r[size_t(i * n + j)] = s;
            }
        return r;
    };
    auto relu = [](std::vector<double> a) {
        for (double& v : a) v = v > 0 ? v : 0.0;
        return a;
    };
    auto add = [](std::vector<double> a, const std::vector<double>& b) {
        for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
        return a;
    };
    std::vector<double> v0(x.begin(), x.end());
    auto v2 = relu(dense(v0, in, w1, &b1, h));
    auto v3 = dense(v2, h, w2, &b2, o);
    auto v7 = relu(add(dense(v0, in, w3, nullptr, o), v3));
    auto v10 = add(dense(v2, h, w4, &b4, o), v7);
    auto v13 = add(dense(v0, in, w5, nullptr, o), v10);
    for (int64_t r = 0; r < batch; ++r) {
        double mx = -1e300, se = 0;
        for (int64_t j = 0; j < o; ++j) mx = std::max(mx, v13[size_t(r * o + j)]);
        for (int64_t j = 0; j < o; ++j) se += std::exp(v13[size_t(r * o + j)] - mx);
        for (int64_t j = 0; j < o; ++j) {
            const double want = std::exp(v13[size_t(r * o + j)] - mx) / se;
            ASSERT_NEAR(y[size_t(r * o + j)], want, 1e-5 * (1 + want)) << r << "," << j;
        }
    }
    kiln_free(ws);
    kiln_plan_destroy(p);
}

// A GLU-style gate and concatenations (with a side path, with the input) against plain loops.
//   v1 = x W1 + b1 (6 -> 7); v2 = silu(v1); v3 = branch(0); v4 = x W2 (-> 7); v5 = v4 * v2;
//   v6 = [v5 | v1] (14); v7 = [v6 | x] (20); v8 = v7 W3 + b3 (-> 4)
TEST(Plan, ProductsAndConcatenationsMatchLoops) {
    const int64_t batch = 5, in = 6, h = 7, o = 4;
    auto w1 = random_floats(in * h, 31, -0.4f, 0.4f), b1 = random_floats(h, 32), w2 = random_floats(in * h, 33, -0.4f, 0.4f),
         w3 = random_floats((2 * h + in) * o, 34, -0.3f, 0.3f), b3 = random_floats(o, 35), x = random_floats(batch * in, 36);
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(in, batch, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, h, w1.data(), b1.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);  // v1
    ASSERT_EQ(kiln_plan_add_activation(p, KILN_UNARY_SILU, 0), KILN_OK);                          // v2
    ASSERT_EQ(kiln_plan_add_branch(p, 0), KILN_OK);                                               // v3
    ASSERT_EQ(kiln_plan_add_dense(p, h, w2.data(), nullptr, KILN_UNARY_IDENTITY, 0), KILN_OK);    // v4
    EXPECT_EQ(kiln_plan_add_multiply(p, 0), KILN_ERR_SHAPE_MISMATCH);                             // 6 wide
    ASSERT_EQ(kiln_plan_add_multiply(p, 2), KILN_OK);                                             // v5
    ASSERT_EQ(kiln_plan_add_concat(p, 1), KILN_OK);                                               // v6
    ASSERT_EQ(kiln_plan_add_concat(p, 0), KILN_OK);                                               // v7
    ASSERT_EQ(kiln_plan_add_dense(p, o, w3.data(), b3.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);  // v8
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK) << kiln_last_error();
    int64_t ws_bytes;
    ASSERT_EQ(kiln_plan_info(p, nullptr, nullptr, nullptr, &ws_bytes), KILN_OK);
    std::vector<float> y(size_t(batch * o));
    void* ws;
    ASSERT_EQ(kiln_alloc(ws_bytes, &ws), KILN_OK);
    ASSERT_EQ(kiln_plan_run(p, batch, x.data(), y.data(), ws, ws_bytes), KILN_OK) << kiln_last_error();
    for (int64_t r = 0; r < batch; ++r) {
        std::vector<double> v1(static_cast<size_t>(h)), v5(static_cast<size_t>(h)), v7;
        for (int64_t j = 0; j < h; ++j) {
            double a = b1[size_t(j)], c = 0;
            for (int64_t k = 0; k < in; ++k) {
                a += double(x[size_t(r * in + k)]) * w1[size_t(k * h + j)];
                c += double(x[size_t(r * in + k)]) * w2[size_t(k * h + j)];
            }
            v1[size_t(j)] = a;
            v5[size_t(j)] = c * (a / (1 + std::exp(-a)));
        }
        v7.insert(v7.end(), v5.begin(), v5.end());
        v7.insert(v7.end(), v1.begin(), v1.end());
        for (int64_t k = 0; k < in; ++k) v7.push_back(x[size_t(r * in + k)]);
        for (int64_t j = 0; j < o; ++j) {
            double a = b3[size_t(j)];
            for (size_t k = 0; k < v7.size(); ++k) a += v7[k] * w3[k * size_t(o) + size_t(j)];
            ASSERT_NEAR(y[size_t(r * o + j)], a, 1e-5 * (1 + std::fabs(a))) << r << "," << j;
        }
    }
    kiln_free(ws);
    kiln_plan_destroy(p);
}

// A GEGLU whose halves come from one projection, as torch's chunk writes it:
//   v1 = x W + b (5 -> 8); v2 = v1[:, 0:4]; v3 = branch(1); v4 = v1[:, 4:8]; v5 = gelu(v4); v6 = v5 * v2
TEST(Plan, SlicesMatchLoops) {
    const int64_t batch = 3, in = 5, h = 8;
    auto w = random_floats(in * h, 41, -0.5f, 0.5f), b = random_floats(h, 42), x = random_floats(batch * in, 43);
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(in, batch, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, h, w.data(), b.data(), KILN_UNARY_IDENTITY, 0), KILN_OK);
    EXPECT_EQ(kiln_plan_add_slice(p, 4, 9), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_plan_add_slice(p, 4, 4), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("0 <= begin < end <= 8"), std::string::npos) << kiln_last_error();
    ASSERT_EQ(kiln_plan_add_slice(p, 0, 4), KILN_OK);
    ASSERT_EQ(kiln_plan_add_branch(p, 1), KILN_OK);
    ASSERT_EQ(kiln_plan_add_slice(p, 4, 8), KILN_OK);
    ASSERT_EQ(kiln_plan_add_activation(p, KILN_UNARY_GELU, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_add_multiply(p, 2), KILN_OK);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK) << kiln_last_error();
    int64_t ws_bytes, out;
    ASSERT_EQ(kiln_plan_info(p, nullptr, &out, nullptr, &ws_bytes), KILN_OK);
    ASSERT_EQ(out, 4);
    std::vector<float> y(size_t(batch * 4));
    void* ws;
    ASSERT_EQ(kiln_alloc(ws_bytes, &ws), KILN_OK);
    ASSERT_EQ(kiln_plan_run(p, batch, x.data(), y.data(), ws, ws_bytes), KILN_OK) << kiln_last_error();
    for (int64_t r = 0; r < batch; ++r) {
        double v1[8];
        for (int64_t j = 0; j < h; ++j) {
            v1[j] = b[size_t(j)];
            for (int64_t k = 0; k < in; ++k) v1[j] += double(x[size_t(r * in + k)]) * w[size_t(k * h + j)];
        }
        for (int64_t j = 0; j < 4; ++j) {
            const double g = 0.5 * v1[4 + j] * (1 + std::erf(v1[4 + j] / std::sqrt(2.0)));
            ASSERT_NEAR(y[size_t(r * 4 + j)], g * v1[j], 1e-5 * (1 + std::fabs(g * v1[j]))) << r << "," << j;
        }
    }
    kiln_free(ws);
    kiln_plan_destroy(p);
}

TEST(Plan, ScaleShiftMatchesLoopsAndRefusesNonFinite) {
    const float x[6] = {1, -2, 3, 0.5f, 4, -1}, g[3] = {2, -1, 0.5f}, b[3] = {0.25f, 1, -3};
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(3, 2, &p), KILN_OK);
    const float inf[3] = {1, INFINITY, 1};
    EXPECT_EQ(kiln_plan_add_scale_shift(p, g, inf), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("the shift of feature 1 is not finite"), std::string::npos)
        << kiln_last_error();
    ASSERT_EQ(kiln_plan_add_scale_shift(p, g, b), KILN_OK);
    ASSERT_EQ(kiln_plan_add_scale_shift(p, nullptr, b), KILN_OK);  // scale 1
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK);
    int64_t ws_bytes;
    ASSERT_EQ(kiln_plan_info(p, nullptr, nullptr, nullptr, &ws_bytes), KILN_OK);
    std::vector<float> y(6);
    void* ws;
    ASSERT_EQ(kiln_alloc(ws_bytes, &ws), KILN_OK);
    ASSERT_EQ(kiln_plan_run(p, 2, x, y.data(), ws, ws_bytes), KILN_OK) << kiln_last_error();
    for (int r = 0; r < 2; ++r)
        for (int j = 0; j < 3; ++j) EXPECT_FLOAT_EQ(y[size_t(r * 3 + j)], x[r * 3 + j] * g[j] + b[j] + b[j]);
    kiln_free(ws);
    kiln_plan_destroy(p);
}

TEST(Plan, PReluMatchesLoopsAndRefusesNonFinite) {
    const float x[6] = {1, -2, 3, -0.5f, 0, NAN}, a[3] = {0.25f, -1, 2};
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(3, 2, &p), KILN_OK);
    const float nan[3] = {0.25f, 0.25f, NAN};
    EXPECT_EQ(kiln_plan_add_prelu(p, nan), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("the slope of feature 2 is not finite"), std::string::npos)
        << kiln_last_error();
    ASSERT_EQ(kiln_plan_add_prelu(p, a), KILN_OK);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK);
    int64_t ws_bytes;
    ASSERT_EQ(kiln_plan_info(p, nullptr, nullptr, nullptr, &ws_bytes), KILN_OK);
    std::vector<float> y(6);
    void* ws = nullptr;
    if (ws_bytes > 0) {
        ASSERT_EQ(kiln_alloc(ws_bytes, &ws), KILN_OK);
    }
    ASSERT_EQ(kiln_plan_run(p, 2, x, y.data(), ws, ws_bytes), KILN_OK) << kiln_last_error();
    const float want[6] = {1, 2, 3, -0.125f, 0, NAN};
    for (int i = 0; i < 5; ++i) EXPECT_EQ(y[size_t(i)], want[i]) << i;
    EXPECT_TRUE(std::isnan(y[5]));  // a NaN stays NaN
    kiln_free(ws);
    kiln_plan_destroy(p);
    // NULL slopes: 0.25 each.
    ASSERT_EQ(kiln_plan_create(3, 1, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_prelu(p, nullptr), KILN_OK);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK);
    ASSERT_EQ(kiln_plan_run(p, 1, x, y.data(), nullptr, 0), KILN_OK) << kiln_last_error();
    EXPECT_EQ(y[1], -0.5f);
    kiln_plan_destroy(p);
}

TEST(Plan, L2NormalizeMatchesLoops) {
    // Rows: a plain one, one under eps (divided by eps), a zero row, a NaN row.
    const float x[8] = {3, -4, 1e-7f, 0, 0, 0, NAN, 1};
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(2, 4, &p), KILN_OK);
    EXPECT_EQ(kiln_plan_add_l2_normalize(p, -1e-12f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("eps is -1e-12: must be finite and >= 0"), std::string::npos)
        << kiln_last_error();
    EXPECT_EQ(kiln_plan_add_l2_normalize(p, INFINITY), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_plan_add_l2_normalize(p, 1e-6f), KILN_OK);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK);
    float y[8];
    ASSERT_EQ(kiln_plan_run(p, 4, x, y, nullptr, 0), KILN_OK) << kiln_last_error();
    EXPECT_FLOAT_EQ(y[0], 0.6f);
    EXPECT_FLOAT_EQ(y[1], -0.8f);
    EXPECT_FLOAT_EQ(y[2], 1e-7f / 1e-6f);  // norm 1e-7 under eps
    EXPECT_EQ(y[3], 0.0f);
    EXPECT_EQ(y[4], 0.0f);
    EXPECT_EQ(y[5], 0.0f);
    EXPECT_TRUE(std::isnan(y[6]) && std::isnan(y[7]));
    kiln_plan_destroy(p);
}

// A bag of embeddings: ids -> embedding (3 positions x 2) -> mean, sum or max over positions.
TEST(Plan, PoolingOverPositions) {
    const float table[4 * 2] = {1, -1, 2, 0.5f, -3, 4, 0, NAN};
    const int32_t ids[2 * 3] = {0, 1, 2, 1, 1, 0};
    for (int32_t mode : {KILN_POOL_MEAN, KILN_POOL_SUM, KILN_POOL_MAX}) {
        kiln_plan* p;
        ASSERT_EQ(kiln_plan_create(3, 2, &p), KILN_OK);
        ASSERT_EQ(kiln_plan_add_embedding(p, 4, 2, table), KILN_OK);
        EXPECT_EQ(kiln_plan_add_pool(p, mode, 4), KILN_ERR_SHAPE_MISMATCH);  // 6 features
        ASSERT_EQ(kiln_plan_add_pool(p, mode, 3), KILN_OK);
        ASSERT_EQ(kiln_plan_compile(p), KILN_OK);
        int64_t ws_bytes;
        ASSERT_EQ(kiln_plan_info(p, nullptr, nullptr, nullptr, &ws_bytes), KILN_OK);
        void* ws;
        ASSERT_EQ(kiln_alloc(ws_bytes, &ws), KILN_OK);
        float y[4];
        ASSERT_EQ(kiln_plan_run(p, 2, ids, y, ws, ws_bytes), KILN_OK) << kiln_last_error();
        for (int r = 0; r < 2; ++r)
            for (int j = 0; j < 2; ++j) {
                double v = table[ids[r * 3] * 2 + j];
                for (int q = 1; q < 3; ++q) {
                    const double e = table[ids[r * 3 + q] * 2 + j];
                    v = mode == KILN_POOL_MAX ? std::max(v, e) : v + e;
                }
                if (mode == KILN_POOL_MEAN) v /= 3;
                EXPECT_FLOAT_EQ(y[r * 2 + j], float(v)) << mode << " " << r << " " << j;
            }
        kiln_free(ws);
        kiln_plan_destroy(p);
    }
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(4, 1, &p), KILN_OK);
    EXPECT_EQ(kiln_plan_add_pool(p, 7, 2), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("not a kiln_pool_mode"), std::string::npos) << kiln_last_error();
    kiln_plan_destroy(p);
    // A NaN among the maxima stays NaN (not dropped by the comparison).
    const float nan_row[4] = {1, NAN, 2, 0};
    ASSERT_EQ(kiln_plan_create(4, 1, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_pool(p, KILN_POOL_MAX, 2), KILN_OK);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK);
    float y2[2];
    ASSERT_EQ(kiln_plan_run(p, 1, nan_row, y2, nullptr, 0), KILN_OK) << kiln_last_error();
    EXPECT_EQ(y2[0], 2.0f);
    EXPECT_TRUE(std::isnan(y2[1]));
    kiln_plan_destroy(p);
}

TEST(Plan, BranchesAreChecked) {
    std::vector<float> w(4 * 4, 0.1f);
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(4, 2, &p), KILN_OK);
    EXPECT_EQ(kiln_plan_add_branch(p, 0), KILN_ERR_INVALID_ARGUMENT);  // no earlier value yet
    EXPECT_NE(std::string(kiln_last_error()).find("must name an earlier value"), std::string::npos) << kiln_last_error();
    ASSERT_EQ(kiln_plan_add_dense(p, 4, w.data(), nullptr, KILN_UNARY_IDENTITY, 0), KILN_OK);
    EXPECT_EQ(kiln_plan_add_branch(p, 1), KILN_ERR_INVALID_ARGUMENT);  // the current value
    ASSERT_EQ(kiln_plan_add_branch(p, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, 4, w.data(), nullptr, KILN_UNARY_IDENTITY, 0), KILN_OK);
    EXPECT_EQ(kiln_plan_compile(p), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("value 1 (the output of layer 0) is never read"), std::string::npos)
        << kiln_last_error();
    ASSERT_EQ(kiln_plan_add_residual(p, 1), KILN_OK);  // a failed compile changed nothing: the plan is still open
    ASSERT_EQ(kiln_plan_add_branch(p, 3), KILN_OK);
    EXPECT_EQ(kiln_plan_compile(p), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("the last layer is a branch"), std::string::npos) << kiln_last_error();
    kiln_plan_destroy(p);

    ASSERT_EQ(kiln_plan_create(4, 2, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_dense(p, 4, w.data(), nullptr, KILN_UNARY_IDENTITY, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_add_branch(p, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_add_branch(p, 1), KILN_OK);
    ASSERT_EQ(kiln_plan_add_residual(p, 0), KILN_OK);
    EXPECT_EQ(kiln_plan_compile(p), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("branch followed by another branch"), std::string::npos)
        << kiln_last_error();
    kiln_plan_destroy(p);

    const float table[3 * 4] = {0};
    ASSERT_EQ(kiln_plan_create(1, 2, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_embedding(p, 3, 4, table), KILN_OK);
    EXPECT_EQ(kiln_plan_add_branch(p, 0), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_plan_add_residual(p, 0), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("token ids"), std::string::npos) << kiln_last_error();
    kiln_plan_destroy(p);
}

TEST(Plan, EmbeddingLooksUpRowsAndRefusesBadIds) {
    const int64_t vocab = 7, dim = 3, seq = 4, batch = 2;
    auto table = random_floats(vocab * dim, 9);
    auto w = random_floats(seq * dim * 2, 10, -0.3f, 0.3f);
    kiln_plan* p;
    ASSERT_EQ(kiln_plan_create(seq, batch, &p), KILN_OK);
    ASSERT_EQ(kiln_plan_add_embedding(p, vocab, dim, table.data()), KILN_OK);
    EXPECT_EQ(kiln_plan_add_embedding(p, vocab, dim, table.data()), KILN_ERR_INVALID_ARGUMENT);  // not first
    ASSERT_EQ(kiln_plan_add_dense(p, 2, w.data(), nullptr, KILN_UNARY_IDENTITY, 0), KILN_OK);
    ASSERT_EQ(kiln_plan_compile(p), KILN_OK);
    int64_t in, out, ws_bytes;
    ASSERT_EQ(kiln_plan_info(p, &in, &out, nullptr, &ws_bytes), KILN_OK);
    EXPECT_EQ(in, seq);
    EXPECT_EQ(out, 2);
    void* ws;
    ASSERT_EQ(kiln_alloc(ws_bytes, &ws), KILN_OK);
    int32_t ids[batch * seq] = {0, 6, 3, 3, 1, 2, 5, 0};
    float y[batch * 2];
    ASSERT_EQ(kiln_plan_run(p, batch, ids, y, ws, ws_bytes), KILN_OK);
    for (int64_t r = 0; r < batch; ++r)
        for (int64_t j = 0; j < 2; ++j) {
            double s = 0;
            for (int64_t q = 0; q < seq; ++q)
                for (int64_t c = 0; c < dim; ++c)
                    s += double(table[size_t(ids[r * seq + q] * dim + c)]) * w[size_t((q * dim + c) * 2 + j)];
            EXPECT_NEAR(y[r * 2 + j], s, 1e-5);
        }
    ids[5] = 7;
    EXPECT_EQ(kiln_plan_run(p, batch, ids, y, ws, ws_bytes), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("token id 7 at row 1, position 1"), std::string::npos)
        << kiln_last_error();
    ids[5] = -1;
    EXPECT_EQ(kiln_plan_run(p, batch, ids, y, ws, ws_bytes), KILN_ERR_INVALID_ARGUMENT);
    kiln_free(ws);
    kiln_plan_destroy(p);
}

}  // namespace
