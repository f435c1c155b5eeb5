// GPU kernels against libkiln's CPU kernels on the same random inputs (fresh draws per case, odd
// sizes included), outputs poisoned before each run so an unwritten element fails. Without a
// device every test is skipped with the reason.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "kiln/kiln_cuda.h"

namespace {

class Cuda : public ::testing::Test {
protected:
    void SetUp() override {
        int32_t n = 0;
        ASSERT_EQ(kiln_cuda_device_count(&n), KILN_OK);
        if (n == 0) GTEST_SKIP() << "no CUDA device: " << kiln_cuda_last_error();
    }
};

std::vector<float> rnd(size_t n, uint32_t seed, float lo = -2.f, float hi = 2.f) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(g);
    return v;
}

struct Dev {
    void* p = nullptr;
    explicit Dev(size_t bytes) { EXPECT_EQ(kiln_cuda_alloc(int64_t(bytes), &p), KILN_OK) << kiln_cuda_last_error(); }
    ~Dev() { kiln_cuda_free(p); }
    float* f() { return static_cast<float*>(p); }
};

Dev up(const std::vector<float>& h) {
    Dev d(h.size() * 4);
    EXPECT_EQ(kiln_cuda_copy(d.p, h.data(), int64_t(h.size() * 4), 0), KILN_OK) << kiln_cuda_last_error();
    return d;
}

std::vector<float> down(Dev& d, size_t n) {
    std::vector<float> h(n);
    EXPECT_EQ(kiln_cuda_synchronize(), KILN_OK) << kiln_cuda_last_error();
    EXPECT_EQ(kiln_cuda_copy(h.data(), d.p, int64_t(n * 4), 1), KILN_OK) << kiln_cuda_last_error();
    return h;
}

Dev poisoned(size_t n) {
    std::vector<float> nan(n, std::nanf(""));
    return up(nan);
}

double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (std::isnan(got[i]) != std::isnan(want[i])) return INFINITY;
        if (std::isnan(want[i])) continue;
        num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
        den += double(want[i]) * want[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1));
}

TEST_F(Cuda, DeviceInfoAndPool) {
    kiln_cuda_device_info info;
    ASSERT_EQ(kiln_cuda_device_info_get(0, &info), KILN_OK);
    EXPECT_GE(info.major, 5);
    std::printf("device: %s, sm_%d%d, %d SMs, %.1f GiB\n", info.name, info.major, info.minor, info.multiprocessors,
                double(info.total_memory) / (1 << 30));
    void* a;
    ASSERT_EQ(kiln_cuda_alloc(1000, &a), KILN_OK);
    int64_t used, pooled;
    ASSERT_EQ(kiln_cuda_memory(&used, &pooled), KILN_OK);
    EXPECT_GE(used, 1000);
    ASSERT_EQ(kiln_cuda_free(a), KILN_OK);
    EXPECT_EQ(kiln_cuda_free(a), KILN_ERR_INVALID_ARGUMENT);  // double free is refused
    ASSERT_EQ(kiln_cuda_synchronize(), KILN_OK);
    void* b;
    ASSERT_EQ(kiln_cuda_alloc(900, &b), KILN_OK);
    EXPECT_EQ(a, b);  // the pooled block is reused
    kiln_cuda_free(b);
    // A large host round trip through the pinned staging (several chunks).
    auto big = rnd((20u << 20) / 4 + 13, 1);
    Dev d = up(big);
    EXPECT_EQ(down(d, big.size()), big);
}

// Returns the pool's blocks to the driver at the end, so compute-sanitizer's leak check sees only real leaks.
class TrimPoolAtExit : public ::testing::Environment {
public:
    void TearDown() override { kiln_cuda_trim(); }
};
const auto* const trim_env = ::testing::AddGlobalTestEnvironment(new TrimPoolAtExit);

TEST_F(Cuda, ElementwiseMatchesCpu) {
    // Sizes around the float4 width and the unrolled block, then the same through unaligned pointers
    // (the scalar path).
    for (int64_t n : {1, 3, 4, 5, 7, 1000, 4099, 1 << 20}) {
        auto a = rnd(size_t(n), 2), b = rnd(size_t(n), 3, 0.5f, 2.f);
        Dev da = up(a), db = up(b);
        const int64_t shape[1] = {n}, unit[1] = {1};
        for (int op = KILN_BINARY_ADD; op <= KILN_BINARY_MIN; ++op) {
            Dev out = poisoned(size_t(n));
            ASSERT_EQ(kiln_cuda_binary_f32(op, n, da.f(), db.f(), out.f()), KILN_OK) << kiln_cuda_last_error();
            std::vector<float> want(static_cast<size_t>(n));
            ASSERT_EQ(kiln_binary_f32(op, 1, shape, a.data(), unit, b.data(), unit, want.data(), unit), KILN_OK);
            EXPECT_LT(rel_err(down(out, size_t(n)), want), 1e-6) << "binary op " << op << " n " << n;
        }
        for (int op : {KILN_UNARY_RELU, KILN_UNARY_LEAKY_RELU, KILN_UNARY_GELU, KILN_UNARY_SIGMOID, KILN_UNARY_TANH,
                       KILN_UNARY_EXP, KILN_UNARY_NEG, KILN_UNARY_ABS, KILN_UNARY_SQUARE, KILN_UNARY_GELU_TANH,
                       KILN_UNARY_SILU, KILN_UNARY_ELU, KILN_UNARY_SOFTPLUS, KILN_UNARY_SELU, KILN_UNARY_MISH,
                       KILN_UNARY_BOUNDED_RELU, KILN_UNARY_HARDTANH, KILN_UNARY_HARD_SIGMOID,
                       KILN_UNARY_HARD_SWISH}) {
            Dev out = poisoned(size_t(n));
            ASSERT_EQ(kiln_cuda_unary_f32(op, 0.1f, n, da.f(), out.f()), KILN_OK) << kiln_cuda_last_error();
            std::vector<float> want(static_cast<size_t>(n));
            ASSERT_EQ(kiln_unary_f32(op, 0.1f, 1, shape, a.data(), unit, want.data(), unit), KILN_OK);
            EXPECT_LT(rel_err(down(out, size_t(n)), want), 1e-5) << "unary op " << op << " n " << n;
        }
    }
    const int64_t n = 1001;
    auto a = rnd(size_t(n + 1), 4), b = rnd(size_t(n + 1), 5);
    Dev da = up(a), db = up(b), out = poisoned(size_t(n + 1));
    ASSERT_EQ(kiln_cuda_binary_f32(KILN_BINARY_MUL, n, da.f() + 1, db.f() + 1, out.f() + 1), KILN_OK);
    auto got = down(out, size_t(n + 1));
    EXPECT_TRUE(std::isnan(got[0])) << "wrote before the output";
    for (int64_t i = 1; i <= n; ++i) ASSERT_EQ(got[size_t(i)], a[size_t(i)] * b[size_t(i)]) << i;
}

TEST_F(Cuda, RowKernelsMatchCpu) {
    for (auto rc : {std::pair<int64_t, int64_t>{1, 1}, {7, 10}, {33, 257}, {128, 4096}}) {
        const int64_t rows = rc.first, cols = rc.second;
        auto x = rnd(size_t(rows * cols), 4, -5.f, 5.f), g = rnd(size_t(cols), 5), b = rnd(size_t(cols), 6);
        Dev dx = up(x), dg = up(g), dbeta = up(b);
        for (int log : {0, 1}) {
            Dev out = poisoned(size_t(rows * cols));
            ASSERT_EQ(kiln_cuda_softmax_f32(log, rows, cols, dx.f(), out.f()), KILN_OK) << kiln_cuda_last_error();
            std::vector<float> want(static_cast<size_t>(rows * cols));
            ASSERT_EQ(kiln_softmax_f32(log, rows, cols, x.data(), want.data()), KILN_OK);
            EXPECT_LT(rel_err(down(out, want.size()), want), 1e-5) << rows << "x" << cols << " log " << log;
        }
        Dev out = poisoned(size_t(rows * cols));
        ASSERT_EQ(kiln_cuda_layer_norm_f32(rows, cols, dx.f(), dg.f(), dbeta.f(), 1e-5f, out.f()), KILN_OK);
        std::vector<float> want(static_cast<size_t>(rows * cols));
        ASSERT_EQ(kiln_layer_norm_f32(rows, cols, x.data(), g.data(), b.data(), 1e-5f, want.data(), nullptr, nullptr),
                  KILN_OK);
        EXPECT_LT(rel_err(down(out, want.size()), want), 1e-5) << "layer norm " << rows << "x" << cols;
        // cross-entropy: loss and gradient against double-precision loops
        if (cols >= 2) {
            std::vector<int32_t> labels(static_cast<size_t>(rows));
            for (int64_t r = 0; r < rows; ++r) labels[size_t(r)] = int32_t((r * 7) % cols);
            Dev dl(size_t(rows) * 4), dloss = poisoned(size_t(rows)), dgrad = poisoned(size_t(rows * cols));
            ASSERT_EQ(kiln_cuda_copy(dl.p, labels.data(), rows * 4, 0), KILN_OK);
            ASSERT_EQ(kiln_cuda_softmax_xent_f32(rows, cols, dx.f(), static_cast<int32_t*>(dl.p), dloss.f(), dgrad.f()),
                      KILN_OK);
            std::vector<float> wl(static_cast<size_t>(rows)), wg(static_cast<size_t>(rows * cols));
            for (int64_t r = 0; r < rows; ++r) {
                double mx = -1e300, s = 0;
                for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, double(x[size_t(r * cols + j)]));
                for (int64_t j = 0; j < cols; ++j) s += std::exp(x[size_t(r * cols + j)] - mx);
                const double lse = mx + std::log(s);
                wl[size_t(r)] = float(lse - x[size_t(r * cols + labels[size_t(r)])]);
                for (int64_t j = 0; j < cols; ++j)
                    wg[size_t(r * cols + j)] =
                        float((std::exp(x[size_t(r * cols + j)] - lse) - (j == labels[size_t(r)])) / double(rows));
            }
            EXPECT_LT(rel_err(down(dloss, wl.size()), wl), 1e-5);
            EXPECT_LT(rel_err(down(dgrad, wg.size()), wg), 1e-5);
        }
    }
}

TEST_F(Cuda, SumIsDeterministicAndRight) {
    auto x = rnd(1000003, 7);
    Dev dx = up(x), out = poisoned(1);
    double want = 0;
    for (float v : x) want += v;
    ASSERT_EQ(kiln_cuda_sum_f32(int64_t(x.size()), dx.f(), out.f()), KILN_OK);
    const float first = down(out, 1)[0];
    EXPECT_NEAR(first, want, 1e-3 * std::sqrt(double(x.size())));
    for (int i = 0; i < 5; ++i) {
        ASSERT_EQ(kiln_cuda_sum_f32(int64_t(x.size()), dx.f(), out.f()), KILN_OK);
        EXPECT_EQ(down(out, 1)[0], first);
    }
}

TEST_F(Cuda, SgemmMatchesCpuWithEpilogues) {
    std::mt19937 g(9);
    for (int it = 0; it < 40; ++it) {
        const int64_t m = 1 + g() % 150, n = 1 + g() % 150, k = 1 + g() % 150;
        const int ta = it % 2, tb = (it / 2) % 2;
        auto a = rnd(size_t(m * k), 10 + it), b = rnd(size_t(k * n), 50 + it), c0 = rnd(size_t(m * n), 90 + it);
        auto bias = rnd(size_t(n), 130 + it), res = rnd(size_t(m * n), 170 + it);
        Dev da = up(a), db = up(b), dc = up(c0), dbias = up(bias), dres = up(res);
        kiln_epilogue ep{nullptr, KILN_UNARY_IDENTITY, 0.f, nullptr, 0};
        kiln_epilogue dep = ep;
        if (it % 3 == 1) {
            ep = {bias.data(), KILN_UNARY_RELU, 0.f, res.data(), n};
            dep = {dbias.f(), KILN_UNARY_RELU, 0.f, dres.f(), n};
        } else if (it % 3 == 2) {
            ep = {bias.data(), KILN_UNARY_GELU, 0.f, nullptr, 0};
            dep = {dbias.f(), KILN_UNARY_GELU, 0.f, nullptr, 0};
        }
        const float beta = it % 4 == 3 ? 0.5f : 0.f;
        std::vector<float> want = c0;
        ASSERT_EQ(kiln_sgemm(ta, tb, m, n, k, 1.25f, a.data(), ta ? m : k, b.data(), tb ? k : n, beta, want.data(), n,
                             it % 3 ? &ep : nullptr), KILN_OK);
        ASSERT_EQ(kiln_cuda_sgemm(ta, tb, m, n, k, 1.25f, da.f(), ta ? m : k, db.f(), tb ? k : n, beta, dc.f(), n,
                                  it % 3 ? &dep : nullptr), KILN_OK) << kiln_cuda_last_error();
        EXPECT_LT(rel_err(down(dc, want.size()), want), 1e-5) << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb;
    }
}

// One bf16 GEMM on the device against kiln_gemm_bf16 on the CPU (same bf16 operands, fp32
// accumulation on both sides: only the summation order differs), with alpha, beta, bias, an
// activation and a residual when `epi`; B given k x n or (trans_b) n x k.
void check_bf16_gemm(int64_t m, int64_t n, int64_t k, int trans_b, bool epi, uint32_t seed) {
    auto af = rnd(size_t(m * k), seed), bf = rnd(size_t(k * n), seed + 1), c0 = rnd(size_t(m * n), seed + 2);
    auto bias = rnd(size_t(n), seed + 3), res = rnd(size_t(m * n), seed + 4);
    std::vector<uint16_t> a(af.size()), b(bf.size());
    ASSERT_EQ(kiln_convert(KILN_DTYPE_F32, af.data(), KILN_DTYPE_BF16, a.data(), int64_t(af.size())), KILN_OK);
    ASSERT_EQ(kiln_convert(KILN_DTYPE_F32, bf.data(), KILN_DTYPE_BF16, b.data(), int64_t(bf.size())), KILN_OK);
    const int64_t ldb = trans_b ? k : n;
    const float alpha = epi ? 0.75f : 1.f, beta = epi ? 0.5f : 0.f;
    kiln_epilogue ep{nullptr, KILN_UNARY_IDENTITY, 0.f, nullptr, 0};
    if (epi) ep = {bias.data(), KILN_UNARY_LEAKY_RELU, 0.1f, res.data(), n};
    std::vector<float> want(c0);
    ASSERT_EQ(kiln_gemm_bf16(0, trans_b, m, n, k, alpha, a.data(), k, b.data(), ldb, beta, want.data(), n, &ep),
              KILN_OK);
    Dev da(a.size() * 2), db(b.size() * 2), dbias = up(bias), dres = up(res);
    Dev dc = epi ? up(c0) : poisoned(size_t(m * n));
    ASSERT_EQ(kiln_cuda_copy(da.p, a.data(), int64_t(a.size() * 2), 0), KILN_OK);
    ASSERT_EQ(kiln_cuda_copy(db.p, b.data(), int64_t(b.size() * 2), 0), KILN_OK);
    kiln_epilogue dep = ep;
    if (epi) dep = {dbias.f(), KILN_UNARY_LEAKY_RELU, 0.1f, dres.f(), n};
    ASSERT_EQ(kiln_cuda_gemm_bf16(trans_b, m, n, k, alpha, static_cast<uint16_t*>(da.p), k,
                                  static_cast<uint16_t*>(db.p), ldb, beta, dc.f(), n, &dep), KILN_OK)
        << kiln_cuda_last_error();
    EXPECT_LT(rel_err(down(dc, want.size()), want), 1e-5) << m << "x" << n << "x" << k << " trans_b " << trans_b
                                                           << " epilogue " << epi;
}

struct ForceGemm {
    explicit ForceGemm(const char* kernel) { setenv("KILN_CUDA_GEMM", kernel, 1); }
    ~ForceGemm() { unsetenv("KILN_CUDA_GEMM"); }
};

TEST_F(Cuda, Bf16GemmMatchesCpuWithinBf16Bounds) {
    kiln_cuda_device_info info;
    ASSERT_EQ(kiln_cuda_device_info_get(0, &info), KILN_OK);
    if (info.major < 8) GTEST_SKIP() << "bf16 tensor cores need sm_80+";
    std::mt19937 g(11);
    for (int it = 0; it < 24; ++it)  // the automatic choice, small and odd sizes
        check_bf16_gemm(1 + g() % 200, 1 + g() % 200, 1 + g() % 300, it % 2, it % 3 == 0, 200 + 10 * it);
    // Every kernel this device has, on sizes that cross its tiles (128 x 256 x 64 for sm90, 64 x 64 x 32
    // for WMMA) and leave partial tiles on every side; k multiples of 8 so that sm90 can run.
    // 2304 x 2312: 180 tiles of 128 x 256, more than an H200's 132 multiprocessors, so persistent
    // blocks take several tiles each.
    const int64_t sizes[][3] = {{128, 256, 64}, {300, 520, 200}, {129, 257, 72}, {1, 8, 16}, {640, 768, 1032},
                                {257, 1000, 8}, {64, 2048, 4096}, {2304, 2312, 72}};
    for (const char* kernel : {"wmma", "sm90"}) {
        const bool sm90 = std::strcmp(kernel, "sm90") == 0;
        if (sm90 && info.major != 9) continue;
        ForceGemm force(kernel);
        for (int variant = sm90 ? 0 : 15; variant < 16; ++variant) {  // the sm90 kernel's variants (gemm_sm90.cu)
            setenv("KILN_CUDA_SM90_VARIANT", std::to_string(variant).c_str(), 1);
            int i = 0;
            for (const auto& s : sizes)
                for (int trans_b : {0, 1}) {
                    SCOPED_TRACE(std::string(kernel) + " variant " + std::to_string(variant));
                    check_bf16_gemm(s[0], s[1], s[2], trans_b, (i++) % 2 == 1, 700 + 10 * i);
                }
        }
        unsetenv("KILN_CUDA_SM90_VARIANT");
    }
}

TEST_F(Cuda, Bf16GemmRefusesAForcedKernelItCannotRun) {
    kiln_cuda_device_info info;
    ASSERT_EQ(kiln_cuda_device_info_get(0, &info), KILN_OK);
    if (info.major < 8) GTEST_SKIP() << "bf16 tensor cores need sm_80+";
    Dev a(64 * 64 * 2 + 16), b(64 * 64 * 2), c(64 * 64 * 4);
    ForceGemm force("sm90");
    // lda 63 is not a multiple of 8: TMA cannot read it.
    EXPECT_EQ(kiln_cuda_gemm_bf16(0, 64, 64, 63, 1.f, static_cast<uint16_t*>(a.p), 63, static_cast<uint16_t*>(b.p), 64,
                                  0.f, c.f(), 64, nullptr), KILN_ERR_UNSUPPORTED);
    EXPECT_NE(std::strstr(kiln_cuda_last_error(), "KILN_CUDA_GEMM=sm90"), nullptr) << kiln_cuda_last_error();
    setenv("KILN_CUDA_GEMM", "fast", 1);
    EXPECT_EQ(kiln_cuda_gemm_bf16(0, 64, 64, 64, 1.f, static_cast<uint16_t*>(a.p), 64, static_cast<uint16_t*>(b.p), 64,
                                  0.f, c.f(), 64, nullptr), KILN_ERR_INVALID_ARGUMENT);
}

TEST_F(Cuda, OptimizersMatchTheirFormulas) {
    const int64_t n = 100003;
    auto w0 = rnd(size_t(n), 20), g = rnd(size_t(n), 21);
    Dev dw = up(w0), dg = up(g), dm = up(std::vector<float>(size_t(n), 0.f)), dv = up(std::vector<float>(size_t(n), 0.f));
    std::vector<double> w(w0.begin(), w0.end()), m(size_t(n), 0.0), v(size_t(n), 0.0);
    for (int64_t step = 1; step <= 3; ++step) {
        ASSERT_EQ(kiln_cuda_adam_f32(n, dw.f(), dg.f(), dm.f(), dv.f(), 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, step), KILN_OK);
        for (int64_t i = 0; i < n; ++i) {
            w[size_t(i)] -= 1e-2 * 0.01 * w[size_t(i)];
            m[size_t(i)] = 0.9 * m[size_t(i)] + 0.1 * g[size_t(i)];
            v[size_t(i)] = 0.999 * v[size_t(i)] + 0.001 * double(g[size_t(i)]) * g[size_t(i)];
            w[size_t(i)] -= 1e-2 * (m[size_t(i)] / (1 - std::pow(0.9, double(step)))) /
                            (std::sqrt(v[size_t(i)] / (1 - std::pow(0.999, double(step)))) + 1e-8);
        }
    }
    std::vector<float> want(w.begin(), w.end());
    EXPECT_LT(rel_err(down(dw, size_t(n)), want), 1e-5);
    Dev sw = up(w0), sb = up(std::vector<float>(size_t(n), 0.f));
    ASSERT_EQ(kiln_cuda_sgd_f32(n, sw.f(), dg.f(), sb.f(), 0.1f, 0.9f, 1, 0.f), KILN_OK);
    std::vector<float> sgd(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) sgd[size_t(i)] = w0[size_t(i)] - 0.1f * (g[size_t(i)] + 0.9f * g[size_t(i)]);
    EXPECT_LT(rel_err(down(sw, size_t(n)), sgd), 1e-6);
    // Plain SGD with weight decay through unaligned pointers (the scalar path), no momentum buffer.
    Dev pw = up(w0);
    ASSERT_EQ(kiln_cuda_sgd_f32(n - 1, pw.f() + 1, dg.f() + 1, nullptr, 0.1f, 0.f, 0, 0.5f), KILN_OK);
    std::vector<float> plain(w0);
    for (int64_t i = 1; i < n; ++i) plain[size_t(i)] = w0[size_t(i)] - 0.1f * (g[size_t(i)] + 0.5f * w0[size_t(i)]);
    EXPECT_LT(rel_err(down(pw, size_t(n)), plain), 1e-6);
}

// A CPU plan (kiln_plan_*) and a GPU plan, built by build_plans with the same layers, freed together.
struct TwoPlans {
    kiln_plan* cpu = nullptr;
    kiln_cuda_plan* gpu = nullptr;
    ~TwoPlans() {
        kiln_plan_destroy(cpu);
        kiln_cuda_plan_destroy(gpu);
    }
};

void build_plans(TwoPlans& t, int64_t in, int64_t max_batch, bool with_norm, uint32_t seed) {
    ASSERT_EQ(kiln_plan_create(in, max_batch, &t.cpu), KILN_OK);
    ASSERT_EQ(kiln_cuda_plan_create(in, max_batch, &t.gpu), KILN_OK) << kiln_cuda_last_error();
    const int64_t widths[] = {with_norm ? 129 : 512, with_norm ? 65 : 256, 10};
    int64_t w_in = in;
    for (int i = 0; i < 3; ++i) {
        const int64_t out = widths[i];
        auto w = rnd(size_t(w_in * out), seed + 10 * i, -0.1f, 0.1f), b = rnd(size_t(out), seed + 10 * i + 1);
        if (i == 0) {  // an activation given inside the Dense
            ASSERT_EQ(kiln_plan_add_dense(t.cpu, out, w.data(), b.data(), KILN_UNARY_RELU, 0.f), KILN_OK);
            ASSERT_EQ(kiln_cuda_plan_add_dense(t.gpu, out, w.data(), b.data(), KILN_UNARY_RELU, 0.f), KILN_OK);
        } else {  // one added after it (fused at compile), no bias on the last layer
            const float* bias = i == 2 ? nullptr : b.data();
            ASSERT_EQ(kiln_plan_add_dense(t.cpu, out, w.data(), bias, KILN_UNARY_IDENTITY, 0.f), KILN_OK);
            ASSERT_EQ(kiln_cuda_plan_add_dense(t.gpu, out, w.data(), bias, KILN_UNARY_IDENTITY, 0.f), KILN_OK);
            if (i == 1) {
                const int act = with_norm ? KILN_UNARY_GELU : KILN_UNARY_LEAKY_RELU;
                ASSERT_EQ(kiln_plan_add_activation(t.cpu, act, 0.05f), KILN_OK);
                ASSERT_EQ(kiln_cuda_plan_add_activation(t.gpu, act, 0.05f), KILN_OK);
            }
        }
        if (with_norm && i == 0) {
            auto gamma = rnd(size_t(out), seed + 100), beta = rnd(size_t(out), seed + 101);
            ASSERT_EQ(kiln_plan_add_layer_norm(t.cpu, gamma.data(), beta.data(), 1e-5f), KILN_OK);
            ASSERT_EQ(kiln_cuda_plan_add_layer_norm(t.gpu, gamma.data(), beta.data(), 1e-5f), KILN_OK);
            ASSERT_EQ(kiln_plan_add_activation(t.cpu, KILN_UNARY_TANH, 0.f), KILN_OK);  // not fused: after a norm
            ASSERT_EQ(kiln_cuda_plan_add_activation(t.gpu, KILN_UNARY_TANH, 0.f), KILN_OK);
        }
        w_in = out;
    }
    ASSERT_EQ(kiln_plan_add_softmax(t.cpu, with_norm ? 1 : 0), KILN_OK);
    ASSERT_EQ(kiln_cuda_plan_add_softmax(t.gpu, with_norm ? 1 : 0), KILN_OK);
    ASSERT_EQ(kiln_plan_compile(t.cpu), KILN_OK);
    ASSERT_EQ(kiln_cuda_plan_compile(t.gpu), KILN_OK) << kiln_cuda_last_error();
}

std::vector<float> cpu_forward(const kiln_plan* p, int64_t batch, const std::vector<float>& x, int64_t out) {
    int64_t ws = 0;
    EXPECT_EQ(kiln_plan_info(p, nullptr, nullptr, nullptr, &ws), KILN_OK);
    void* work = std::aligned_alloc(64, size_t((ws + 63) / 64 * 64 + 64));
    std::vector<float> y(size_t(batch * out));
    EXPECT_EQ(kiln_plan_run(p, batch, x.data(), y.data(), work, ws), KILN_OK) << kiln_last_error();
    std::free(work);
    return y;
}

TEST_F(Cuda, PlanMatchesTheCpuPlanAtEveryBatch) {
    for (bool with_norm : {false, true}) {
        const int64_t in = with_norm ? 37 : 784;
        TwoPlans t;
        build_plans(t, in, 64, with_norm, with_norm ? 500 : 400);
        int64_t gin = 0, gout = 0, gmax = 0;
        ASSERT_EQ(kiln_cuda_plan_info(t.gpu, &gin, &gout, &gmax), KILN_OK);
        EXPECT_EQ(gin, in);
        EXPECT_EQ(gout, 10);
        EXPECT_EQ(gmax, 64);
        // Batches on both sides of the GEMV limit (8 rows), each run twice (the second replays the
        // captured graph) and once more through device pointers.
        for (int64_t batch : {1, 2, 3, 7, 8, 9, 33, 64}) {
            auto x = rnd(size_t(batch * in), uint32_t(600 + batch));
            const auto want = cpu_forward(t.cpu, batch, x, 10);
            std::vector<float> got(want.size(), NAN), again(want.size(), NAN);
            ASSERT_EQ(kiln_cuda_plan_run_host(t.gpu, batch, x.data(), got.data()), KILN_OK) << kiln_cuda_last_error();
            EXPECT_LT(rel_err(got, want), 1e-5) << "batch " << batch << " norm " << with_norm;
            ASSERT_EQ(kiln_cuda_plan_run_host(t.gpu, batch, x.data(), again.data()), KILN_OK);
            EXPECT_EQ(std::memcmp(got.data(), again.data(), got.size() * 4), 0) << "replay differs, batch " << batch;
            Dev dx = up(x), dy = poisoned(want.size());
            ASSERT_EQ(kiln_cuda_plan_run(t.gpu, batch, dx.f(), dy.f()), KILN_OK) << kiln_cuda_last_error();
            auto dev = down(dy, want.size());
            EXPECT_EQ(std::memcmp(got.data(), dev.data(), got.size() * 4), 0) << "device pointers, batch " << batch;
        }
    }
}

TEST_F(Cuda, PlanRefusesBadUse) {
    kiln_cuda_plan* p = nullptr;
    ASSERT_EQ(kiln_cuda_plan_create(4, 8, &p), KILN_OK);
    const std::vector<float> w(4 * 3, 0.5f);
    ASSERT_EQ(kiln_cuda_plan_add_dense(p, 3, w.data(), nullptr, KILN_UNARY_IDENTITY, 0.f), KILN_OK);
    Dev dx(8 * 4 * 4), dy(8 * 3 * 4);
    EXPECT_EQ(kiln_cuda_plan_run(p, 1, dx.f(), dy.f()), KILN_ERR_INVALID_ARGUMENT);  // not compiled
    ASSERT_EQ(kiln_cuda_plan_compile(p), KILN_OK) << kiln_cuda_last_error();
    EXPECT_EQ(kiln_cuda_plan_add_softmax(p, 0), KILN_ERR_INVALID_ARGUMENT);  // compiled: closed
    EXPECT_EQ(kiln_cuda_plan_run(p, 0, dx.f(), dy.f()), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_run(p, 9, dx.f(), dy.f()), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_cuda_last_error(), "1..8"), nullptr) << kiln_cuda_last_error();
    EXPECT_EQ(kiln_cuda_plan_run(p, 1, nullptr, dy.f()), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_run(p, 2, dx.f(), dx.f() + 1), KILN_ERR_INVALID_ARGUMENT);  // overlap
    const float x[4] = {1, 2, 3, 4};
    float y[3] = {0, 0, 0};
    ASSERT_EQ(kiln_cuda_plan_run_host(p, 1, x, y), KILN_OK);
    for (float v : y) EXPECT_EQ(v, 5.f);
    EXPECT_EQ(kiln_cuda_plan_destroy(p), KILN_OK);
}

TEST(CudaWithoutDevice, PlanArgumentsAreCheckedOnTheHost) {
    kiln_cuda_plan* p = nullptr;
    EXPECT_EQ(kiln_cuda_plan_create(0, 8, &p), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_create(4, 0, &p), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_create(4, 8, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_create(int64_t(1) << 40, 8, &p), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_cuda_plan_create(4, 8, &p), KILN_OK);
    const std::vector<float> w(4 * 3, 0.5f);
    EXPECT_EQ(kiln_cuda_plan_compile(p), KILN_ERR_INVALID_ARGUMENT);  // no layer
    EXPECT_EQ(kiln_cuda_plan_add_dense(p, 3, nullptr, nullptr, 0, 0.f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_add_dense(p, 0, w.data(), nullptr, 0, 0.f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_add_dense(p, int64_t(1) << 31, w.data(), nullptr, 0, 0.f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_add_dense(p, 3, w.data(), nullptr, 99, 0.f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_add_dense(p, 3, w.data(), nullptr, KILN_UNARY_LEAKY_RELU, NAN), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_add_softmax(p, 2), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_plan_add_layer_norm(p, nullptr, nullptr, -1.f), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_cuda_plan_add_dense(p, 3, w.data(), nullptr, KILN_UNARY_IDENTITY, 0.f), KILN_OK);
    int32_t devices = 0;
    ASSERT_EQ(kiln_cuda_device_count(&devices), KILN_OK);
    if (devices == 0) {  // no device here: compile says so, and nothing runs
        EXPECT_EQ(kiln_cuda_plan_compile(p), KILN_ERR_UNSUPPORTED);
        EXPECT_NE(std::strstr(kiln_cuda_last_error(), "no CUDA device"), nullptr) << kiln_cuda_last_error();
        float x[4] = {}, y[3] = {};
        EXPECT_EQ(kiln_cuda_plan_run_host(p, 1, x, y), KILN_ERR_INVALID_ARGUMENT);
    }
    EXPECT_EQ(kiln_cuda_plan_destroy(p), KILN_OK);
    EXPECT_EQ(kiln_cuda_plan_destroy(nullptr), KILN_OK);
}

// The same network on the CPU trainer and the GPU trainer: 20 -> 33 (act1) -> 17 without bias (act2) -> 5.
struct TwoTrainers {
    kiln_trainer* cpu = nullptr;
    kiln_cuda_trainer* gpu = nullptr;
    ~TwoTrainers() {
        kiln_trainer_destroy(cpu);
        kiln_cuda_trainer_destroy(gpu);
    }
};

void build_trainers(TwoTrainers& t, int act1, int act2, const kiln_optimizer& o, uint32_t seed) {
    ASSERT_EQ(kiln_trainer_create(20, 16, &t.cpu), KILN_OK);
    ASSERT_EQ(kiln_cuda_trainer_create(20, 16, &t.gpu), KILN_OK);
    const int64_t widths[] = {20, 33, 17, 5};
    for (int i = 0; i < 3; ++i) {
        auto w = rnd(size_t(widths[i] * widths[i + 1]), seed + 2 * i, -0.4f, 0.4f);
        auto b = rnd(size_t(widths[i + 1]), seed + 2 * i + 1, -0.1f, 0.1f);
        const float* bias = i == 1 ? nullptr : b.data();
        ASSERT_EQ(kiln_trainer_add_dense(t.cpu, widths[i + 1], w.data(), bias), KILN_OK);
        ASSERT_EQ(kiln_cuda_trainer_add_dense(t.gpu, widths[i + 1], w.data(), bias), KILN_OK);
        if (i < 2) {
            const int act = i == 0 ? act1 : act2;
            ASSERT_EQ(kiln_trainer_add_activation(t.cpu, act, 0.1f), KILN_OK);
            ASSERT_EQ(kiln_cuda_trainer_add_activation(t.gpu, act, 0.1f), KILN_OK) << kiln_cuda_last_error();
        }
    }
    ASSERT_EQ(kiln_trainer_set_loss(t.cpu, KILN_LOSS_SOFTMAX_CROSS_ENTROPY, 0.f, nullptr), KILN_OK);
    ASSERT_EQ(kiln_trainer_set_optimizer(t.cpu, &o), KILN_OK);
    ASSERT_EQ(kiln_cuda_trainer_set_optimizer(t.gpu, &o), KILN_OK) << kiln_cuda_last_error();
    ASSERT_EQ(kiln_trainer_compile(t.cpu), KILN_OK);
    ASSERT_EQ(kiln_cuda_trainer_compile(t.gpu), KILN_OK) << kiln_cuda_last_error();
}

std::vector<std::vector<float>> gpu_params(kiln_cuda_trainer* t) {
    int64_t count = 0;
    EXPECT_EQ(kiln_cuda_trainer_param_count(t, &count), KILN_OK);
    const int64_t sizes[] = {20 * 33, 33, 33 * 17, 17 * 5, 5};
    std::vector<std::vector<float>> out;
    for (int64_t i = 0; i < count; ++i) {
        out.emplace_back(size_t(sizes[i]));
        EXPECT_EQ(kiln_cuda_trainer_param(t, i, 0, out.back().data(), sizes[i]), KILN_OK) << kiln_cuda_last_error();
    }
    return out;
}

TEST_F(Cuda, TrainerMatchesTheCpuTrainer) {
    kiln_optimizer adam{KILN_OPT_ADAM, 0, 0.f, 0.9f, 0.999f, 1e-8f, 1e-3f, 0.f, 0.f};
    kiln_optimizer adamw{KILN_OPT_ADAMW, 0, 0.f, 0.9f, 0.999f, 1e-8f, 0.f, 0.05f, 0.f};
    kiln_optimizer sgd{KILN_OPT_SGD, 1, 0.9f, 0.f, 0.f, 0.f, 1e-3f, 0.f, 0.f};
    const struct {
        kiln_optimizer o;
        int act1, act2;
        float lr;
    } cases[] = {{adam, KILN_UNARY_RELU, KILN_UNARY_GELU, 1e-2f},
                 {adamw, KILN_UNARY_LEAKY_RELU, KILN_UNARY_TANH, 1e-2f},
                 {sgd, KILN_UNARY_SIGMOID, KILN_UNARY_GELU_TANH, 0.1f},
                 {adam, KILN_UNARY_SILU, KILN_UNARY_MISH, 1e-2f},
                 {sgd, KILN_UNARY_ELU, KILN_UNARY_SELU, 0.1f},
                 {adamw, KILN_UNARY_SOFTPLUS, KILN_UNARY_SILU, 1e-2f}};
    int c = 0;
    for (const auto& cs : cases) {
        SCOPED_TRACE("case " + std::to_string(c));
        TwoTrainers t;
        build_trainers(t, cs.act1, cs.act2, cs.o, 900 + 10 * uint32_t(c));
        std::mt19937 g(77 + c);
        for (int step = 0; step < 6; ++step) {
            const int64_t batch = step == 3 ? 7 : 16;
            auto x = rnd(size_t(batch * 20), 1000 + 10 * uint32_t(c) + uint32_t(step));
            std::vector<int32_t> labels(static_cast<size_t>(batch));
            for (int32_t& l : labels) l = int32_t(g() % 5);
            double cpu_loss = 0, gpu_loss = 0;
            ASSERT_EQ(kiln_trainer_step(t.cpu, batch, x.data(), labels.data(), nullptr, cs.lr, &cpu_loss, nullptr),
                      KILN_OK);
            Dev dx = up(x), dl(labels.size() * 4);
            ASSERT_EQ(kiln_cuda_copy(dl.p, labels.data(), int64_t(labels.size() * 4), 0), KILN_OK);
            ASSERT_EQ(kiln_cuda_trainer_step(t.gpu, batch, dx.f(), static_cast<int32_t*>(dl.p), cs.lr, &gpu_loss),
                      KILN_OK) << kiln_cuda_last_error();
            EXPECT_NEAR(gpu_loss, cpu_loss, 1e-5 * std::fabs(cpu_loss)) << "step " << step;
        }
        const auto got = gpu_params(t.gpu);
        for (size_t i = 0; i < got.size(); ++i) {
            std::vector<float> want(got[i].size());
            ASSERT_EQ(kiln_trainer_param(t.cpu, int64_t(i), 0, want.data(), int64_t(want.size())), KILN_OK);
            EXPECT_LT(rel_err(got[i], want), 1e-4) << "parameter " << i;
        }
        int64_t steps = 0;
        ASSERT_EQ(kiln_cuda_trainer_steps(t.gpu, &steps), KILN_OK);
        EXPECT_EQ(steps, 6);
        ++c;
    }
}

TEST_F(Cuda, TrainerUpdatesNothingOnABadLabel) {
    kiln_optimizer adam{KILN_OPT_ADAM, 0, 0.f, 0.9f, 0.999f, 1e-8f, 0.f, 0.f, 0.f};
    TwoTrainers t;
    build_trainers(t, KILN_UNARY_RELU, KILN_UNARY_RELU, adam, 1300);
    const auto before = gpu_params(t.gpu);
    auto x = rnd(16 * 20, 1301);
    std::vector<int32_t> labels(16, 1);
    labels[9] = 5;  // 5 outputs: 0..4
    Dev dx = up(x), dl(labels.size() * 4);
    ASSERT_EQ(kiln_cuda_copy(dl.p, labels.data(), int64_t(labels.size() * 4), 0), KILN_OK);
    double loss = 0;
    EXPECT_EQ(kiln_cuda_trainer_step(t.gpu, 16, dx.f(), static_cast<int32_t*>(dl.p), 1e-2f, &loss),
              KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_cuda_last_error(), "step 0"), nullptr) << kiln_cuda_last_error();
    const auto after = gpu_params(t.gpu);
    for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(before[i], after[i]) << "parameter " << i;
    int64_t steps = -1;
    ASSERT_EQ(kiln_cuda_trainer_steps(t.gpu, &steps), KILN_OK);
    EXPECT_EQ(steps, 0);
}

TEST(CudaWithoutDevice, TrainerArgumentsAreCheckedOnTheHost) {
    kiln_cuda_trainer* t = nullptr;
    EXPECT_EQ(kiln_cuda_trainer_create(0, 8, &t), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_cuda_trainer_create(4, 8, &t), KILN_OK);
    const std::vector<float> w(4 * 3, 0.5f);
    EXPECT_EQ(kiln_cuda_trainer_compile(t), KILN_ERR_INVALID_ARGUMENT);  // no layer
    EXPECT_EQ(kiln_cuda_trainer_add_activation(t, KILN_UNARY_EXP, 0.f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_trainer_add_dense(t, 3, nullptr, nullptr), KILN_ERR_INVALID_ARGUMENT);
    kiln_optimizer rms{KILN_OPT_RMSPROP, 0, 0.f, 0.9f, 0.99f, 1e-8f, 0.f, 0.f, 0.f};
    EXPECT_EQ(kiln_cuda_trainer_set_optimizer(t, &rms), KILN_ERR_UNSUPPORTED);
    kiln_optimizer clip{KILN_OPT_ADAM, 0, 0.f, 0.9f, 0.999f, 1e-8f, 0.f, 0.f, 1.f};
    EXPECT_EQ(kiln_cuda_trainer_set_optimizer(t, &clip), KILN_ERR_UNSUPPORTED);
    kiln_optimizer nan_beta{KILN_OPT_ADAM, 0, 0.f, NAN, 0.999f, 1e-8f, 0.f, 0.f, 0.f};
    EXPECT_EQ(kiln_cuda_trainer_set_optimizer(t, &nan_beta), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_cuda_trainer_add_dense(t, 3, w.data(), nullptr), KILN_OK);
    // Not compiled yet.
    EXPECT_EQ(kiln_cuda_trainer_step(t, 1, nullptr, nullptr, 0.1f, nullptr), KILN_ERR_INVALID_ARGUMENT);
    int32_t devices = 0;
    ASSERT_EQ(kiln_cuda_device_count(&devices), KILN_OK);
    if (devices == 0) EXPECT_EQ(kiln_cuda_trainer_compile(t), KILN_ERR_UNSUPPORTED);
    EXPECT_EQ(kiln_cuda_trainer_destroy(t), KILN_OK);
}

TEST(CudaWithoutDevice, BadArgumentsAreRefusedBeforeAnyLaunch) {
    EXPECT_EQ(kiln_cuda_device_count(nullptr), KILN_ERR_INVALID_ARGUMENT);
    void* p = nullptr;
    EXPECT_EQ(kiln_cuda_alloc(-1, &p), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_binary_f32(99, 1, nullptr, nullptr, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_softmax_f32(0, 1, 0, nullptr, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_sgemm(0, 0, 2, 2, 2, 1.f, nullptr, 2, nullptr, 2, 0.f, nullptr, 2, nullptr),
              KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_cuda_adam_f32(1, nullptr, nullptr, nullptr, nullptr, 0, 0, 0, 0, 0, 0, 1), KILN_ERR_INVALID_ARGUMENT);
}

}  // namespace
