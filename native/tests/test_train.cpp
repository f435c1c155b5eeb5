// Training: gradients against central finite differences of an independent double-precision
// forward pass, optimizers against their formulas, determinism, state save/load, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "kiln/kiln.h"
#include "test_support.hpp"
#include "train/update.hpp"

namespace {

struct Spec {
    enum K { Dense, Act, LN, Softmax, Residual, Branch, Multiply, Concat, Slice, Scale, Pool, PRelu, L2 } k;
    int64_t out = 0;      // Dense; Slice: end; Pool: positions
    int32_t act = 0;      // Act; Pool: mode
    float alpha = 0;      // Act; L2: eps
    int32_t log = 0;      // Softmax
    int64_t from = 0;     // Residual, Branch, Multiply, Concat; Slice: begin
    bool bias = true;
};

// Double-precision reference of the trainer's forward pass and loss.
struct Ref {
    int64_t in;
    std::vector<Spec> specs;
    std::vector<std::vector<double>> params;  // same order as the trainer's
    int32_t loss;
    double delta = 1.0;
    std::vector<double> cw;

    static double act(int32_t a, double alpha, double x) { return kiln_test::ref_activation(a, alpha, x); }

    double loss_of(int64_t batch, const std::vector<float>& x, const std::vector<int32_t>& labels,
                   const std::vector<float>& targets, const std::vector<float>& sw) const {
        std::vector<std::vector<double>> vals;
        vals.emplace_back(x.begin(), x.end());
        int64_t width = in;
        std::vector<int64_t> widths{in};
        size_t pi = 0;
        for (const Spec& s : specs) {
            const std::vector<double>& a = vals.back();
            std::vector<double> y;
            switch (s.k) {
                case Spec::Dense: {
                    const auto& w = params[pi++];
                    const std::vector<double>* b = s.bias ? &params[pi++] : nullptr;
                    y.assign(size_t(batch * s.out), 0.0);
                    for (int64_t r = 0; r < batch; ++r)
                        for (int64_t j = 0; j < s.out; ++j) {
                            double acc = b ? (*b)[size_t(j)] : 0.0;
                            for (int64_t k = 0; k < width; ++k) acc += a[size_t(r * width + k)] * w[size_t(k * s.out + j)];
                            y[size_t(r * s.out + j)] = acc;
                        }
                    width = s.out;
                    break;
                }
                case Spec::Act:
                    for (double v : a) y.push_back(act(s.act, s.alpha, v));
                    break;
                case Spec::LN: {
                    const auto& g = params[pi++];
                    const auto& bt = params[pi++];
                    y.resize(a.size());
                    for (int64_t r = 0; r < batch; ++r) {
                        double mu = 0, var = 0;
                        for (int64_t j = 0; j < width; ++j) mu += a[size_t(r * width + j)];
                        mu /= double(width);
                        for (int64_t j = 0; j < width; ++j) var += std::pow(a[size_t(r * width + j)] - mu, 2);
                        var /= double(width);
                        for (int64_t j = 0; j < width; ++j)
                            y[size_t(r * width + j)] =
                                (a[size_t(r * width + j)] - mu) / std::sqrt(var + 1e-5) * g[size_t(j)] + bt[size_t(j)];
                    }
                    break;
                }
                case Spec::Softmax: {
                    y.resize(a.size());
                    for (int64_t r = 0; r < batch; ++r) {
                        double mx = -1e300, se = 0;
                        for (int64_t j = 0; j < width; ++j) mx = std::max(mx, a[size_t(r * width + j)]);
                        for (int64_t j = 0; j < width; ++j) se += std::exp(a[size_t(r * width + j)] - mx);
                        for (int64_t j = 0; j < width; ++j) {
                            const double ls = a[size_t(r * width + j)] - mx - std::log(se);
                            y[size_t(r * width + j)] = s.log ? ls : std::exp(ls);
                        }
                    }
                    break;
                }
                case Spec::Residual: {
                    const auto& o = vals[size_t(s.from)];
                    for (size_t j = 0; j < a.size(); ++j) y.push_back(a[j] + o[j]);
                    break;
                }
                case Spec::Branch:
                    y = vals[size_t(s.from)];
                    width = widths[size_t(s.from)];
                    break;
                case Spec::Multiply: {
                    const auto& o = vals[size_t(s.from)];
                    for (size_t j = 0; j < a.size(); ++j) y.push_back(a[j] * o[j]);
                    break;
                }
                case Spec::Concat: {
                    const auto& o = vals[size_t(s.from)];
                    const int64_t wb = widths[size_t(s.from)];
                    for (int64_t r = 0; r < batch; ++r) {
                        for (int64_t j = 0; j < width; ++j) y.push_back(a[size_t(r * width + j)]);
                        for (int64_t j = 0; j < wb; ++j) y.push_back(o[size_t(r * wb + j)]);
                    }
                    width += wb;
                    break;
                }
                case Spec::Slice:
                    for (int64_t r = 0; r < batch; ++r)
                        for (int64_t j = s.from; j < s.out; ++j) y.push_back(a[size_t(r * width + j)]);
                    width = s.out - s.from;
                    break;
                case Spec::Pool: {
                    const int64_t d = width / s.out;
                    for (int64_t r = 0; r < batch; ++r)
                        for (int64_t j = 0; j < d; ++j) {
                            double v = a[size_t(r * width + j)];
                            for (int64_t p = 1; p < s.out; ++p) {
                                const double e = a[size_t(r * width + p * d + j)];
                                v = s.act == KILN_POOL_MAX ? std::max(v, e) : v + e;
                            }
                            y.push_back(s.act == KILN_POOL_MEAN ? v / double(s.out) : v);
                        }
                    width = d;
                    break;
                }
                case Spec::Scale: {
                    const auto& g = params[pi++];
                    const auto& bt = params[pi++];
                    for (size_t j = 0; j < a.size(); ++j) y.push_back(a[j] * g[j % size_t(width)] + bt[j % size_t(width)]);
                    break;
                }
                case Spec::PRelu: {
                    const auto& sl = params[pi++];
                    for (size_t j = 0; j < a.size(); ++j) y.push_back(a[j] > 0 ? a[j] : a[j] * sl[j % size_t(width)]);
                    break;
                }
                case Spec::L2:
                    for (int64_t r = 0; r < batch; ++r) {
                        double ss = 0;
                        for (int64_t j = 0; j < width; ++j) ss += a[size_t(r * width + j)] * a[size_t(r * width + j)];
                        const double d = std::max(std::sqrt(ss), double(s.alpha));
                        for (int64_t j = 0; j < width; ++j) y.push_back(a[size_t(r * width + j)] / d);
                    }
                    break;
            }
            vals.push_back(std::move(y));
            widths.push_back(width);
        }
        const std::vector<double>& z = vals.back();
        double total = 0, wsum = 0;
        for (int64_t r = 0; r < batch; ++r) {
            double w = sw.empty() ? 1.0 : sw[size_t(r)];
            if (loss == KILN_LOSS_SOFTMAX_CROSS_ENTROPY) {
                if (!cw.empty()) w *= cw[size_t(labels[size_t(r)])];
                double mx = -1e300, se = 0;
                for (int64_t j = 0; j < width; ++j) mx = std::max(mx, z[size_t(r * width + j)]);
                for (int64_t j = 0; j < width; ++j) se += std::exp(z[size_t(r * width + j)] - mx);
                total += w * (mx + std::log(se) - z[size_t(r * width + labels[size_t(r)])]);
            } else {
                double row = 0;
                for (int64_t j = 0; j < width; ++j) {
                    const double zk = z[size_t(r * width + j)], yk = targets[size_t(r * width + j)];
                    if (loss == KILN_LOSS_BCE_WITH_LOGITS)
                        row += std::max(zk, 0.0) - zk * yk + std::log1p(std::exp(-std::fabs(zk)));
                    else if (loss == KILN_LOSS_MSE)
                        row += (zk - yk) * (zk - yk);
                    else {
                        const double e = std::fabs(zk - yk);
                        row += e <= delta ? 0.5 * e * e : delta * (e - 0.5 * delta);
                    }
                }
                total += w * row / double(width);
            }
            wsum += w;
        }
        return total / wsum;
    }
};

struct Case {
    int64_t in, batch;
    std::vector<Spec> specs;
    int32_t loss;
    bool class_weights = false, sample_weights = false;
};

kiln_trainer* build(const Case& c, Ref& ref, std::mt19937& rng) {
    kiln_trainer* t = nullptr;
    EXPECT_EQ(kiln_trainer_create(c.in, c.batch, &t), KILN_OK);
    std::normal_distribution<float> nd(0.0f, 0.5f);
    int64_t width = c.in;
    std::vector<int64_t> widths{c.in};
    for (const Spec& s : c.specs) {
        switch (s.k) {
            case Spec::Dense: {
                std::vector<float> w(size_t(width * s.out)), b(size_t(s.out));
                for (float& v : w) v = nd(rng);
                for (float& v : b) v = nd(rng);
                EXPECT_EQ(kiln_trainer_add_dense(t, s.out, w.data(), s.bias ? b.data() : nullptr), KILN_OK)
                    << kiln_last_error();
                ref.params.emplace_back(w.begin(), w.end());
                if (s.bias) ref.params.emplace_back(b.begin(), b.end());
                width = s.out;
                break;
            }
            case Spec::Act:
                EXPECT_EQ(kiln_trainer_add_activation(t, s.act, s.alpha), KILN_OK);
                break;
            case Spec::LN: {
                std::vector<float> g(static_cast<size_t>(width)), b(static_cast<size_t>(width));
                for (float& v : g) v = 1.0f + nd(rng);
                for (float& v : b) v = nd(rng);
                EXPECT_EQ(kiln_trainer_add_layer_norm(t, g.data(), b.data(), 1e-5f), KILN_OK);
                ref.params.emplace_back(g.begin(), g.end());
                ref.params.emplace_back(b.begin(), b.end());
                break;
            }
            case Spec::Softmax:
                EXPECT_EQ(kiln_trainer_add_softmax(t, s.log), KILN_OK);
                break;
            case Spec::Residual:
                EXPECT_EQ(kiln_trainer_add_residual(t, s.from), KILN_OK) << kiln_last_error();
                break;
            case Spec::Branch:
                EXPECT_EQ(kiln_trainer_add_branch(t, s.from), KILN_OK) << kiln_last_error();
                width = widths[size_t(s.from)];
                break;
            case Spec::Multiply:
                EXPECT_EQ(kiln_trainer_add_multiply(t, s.from), KILN_OK) << kiln_last_error();
                break;
            case Spec::Concat:
                EXPECT_EQ(kiln_trainer_add_concat(t, s.from), KILN_OK) << kiln_last_error();
                width += widths[size_t(s.from)];
                break;
            case Spec::Slice:
                EXPECT_EQ(kiln_trainer_add_slice(t, s.from, s.out), KILN_OK) << kiln_last_error();
                width = s.out - s.from;
                break;
            case Spec::Pool:
                EXPECT_EQ(kiln_trainer_add_pool(t, s.act, s.out), KILN_OK) << kiln_last_error();
                width /= s.out;
                break;
            case Spec::Scale: {
                std::vector<float> g(static_cast<size_t>(width)), b(static_cast<size_t>(width));
                for (float& v : g) v = 1.0f + nd(rng);
                for (float& v : b) v = nd(rng);
                EXPECT_EQ(kiln_trainer_add_scale_shift(t, g.data(), b.data()), KILN_OK) << kiln_last_error();
                ref.params.emplace_back(g.begin(), g.end());
                ref.params.emplace_back(b.begin(), b.end());
                break;
            }
            case Spec::L2:
                EXPECT_EQ(kiln_trainer_add_l2_normalize(t, s.alpha), KILN_OK) << kiln_last_error();
                break;
            case Spec::PRelu: {
                std::vector<float> sl(static_cast<size_t>(width));
                for (float& v : sl) v = 0.25f + nd(rng);
                EXPECT_EQ(kiln_trainer_add_prelu(t, sl.data()), KILN_OK) << kiln_last_error();
                ref.params.emplace_back(sl.begin(), sl.end());
                break;
            }
        }
        widths.push_back(width);
    }
    std::vector<float> cw;
    if (c.class_weights) {
        for (int64_t j = 0; j < width; ++j) cw.push_back(0.5f + float(j % 3));
        ref.cw.assign(cw.begin(), cw.end());
    }
    EXPECT_EQ(kiln_trainer_set_loss(t, c.loss, 0.7f, cw.empty() ? nullptr : cw.data()), KILN_OK);
    ref.delta = 0.7f;
    kiln_optimizer sgd{KILN_OPT_SGD, 0, 0.0f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, 0.0f};
    EXPECT_EQ(kiln_trainer_set_optimizer(t, &sgd), KILN_OK);
    EXPECT_EQ(kiln_trainer_compile(t), KILN_OK) << kiln_last_error();
    ref.in = c.in;
    ref.specs = c.specs;
    ref.loss = c.loss;
    return t;
}

void gradient_check(const Case& c, uint32_t seed) {
    std::mt19937 rng(seed);
    Ref ref;
    kiln_trainer* t = build(c, ref, rng);
    const int64_t out = [&] {
        int64_t w = c.in;
        for (const Spec& s : c.specs)
            if (s.k == Spec::Dense) w = s.out;
        return w;
    }();
    std::vector<float> x(size_t(c.batch * c.in)), targets(size_t(c.batch * out)), sw;
    std::vector<int32_t> labels(size_t(c.batch));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_real_distribution<float> ud(0.0f, 1.0f);
    for (float& v : x) v = nd(rng);
    for (float& v : targets) v = c.loss == KILN_LOSS_BCE_WITH_LOGITS ? ud(rng) : 2.0f * nd(rng);
    for (int32_t& v : labels) v = int32_t(rng() % uint32_t(out));
    if (c.sample_weights)
        for (int64_t r = 0; r < c.batch; ++r) sw.push_back(0.25f + ud(rng));
    const void* tg = c.loss == KILN_LOSS_SOFTMAX_CROSS_ENTROPY ? static_cast<const void*>(labels.data())
                                                               : static_cast<const void*>(targets.data());
    double loss = 0;
    ASSERT_EQ(kiln_trainer_step(t, c.batch, x.data(), tg, sw.empty() ? nullptr : sw.data(), 0.0f, &loss, nullptr), KILN_OK)
        << kiln_last_error();
    EXPECT_NEAR(loss, ref.loss_of(c.batch, x, labels, targets, sw), 1e-4 * (1 + std::fabs(loss)));
    int64_t count = 0;
    ASSERT_EQ(kiln_trainer_param_count(t, &count), KILN_OK);
    ASSERT_EQ(size_t(count), ref.params.size());
    for (int64_t p = 0; p < count; ++p) {
        std::vector<float> g(ref.params[size_t(p)].size());
        ASSERT_EQ(kiln_trainer_param(t, p, 2, g.data(), int64_t(g.size())), KILN_OK);
        for (size_t i = 0; i < g.size(); ++i) {
            const double h = 1e-5, keep = ref.params[size_t(p)][i];
            ref.params[size_t(p)][i] = keep + h;
            const double lp = ref.loss_of(c.batch, x, labels, targets, sw);
            ref.params[size_t(p)][i] = keep - h;
            const double lm = ref.loss_of(c.batch, x, labels, targets, sw);
            ref.params[size_t(p)][i] = keep;
            const double fd = (lp - lm) / (2 * h);
            ASSERT_NEAR(g[i], fd, 2e-3 * std::max(1.0, std::fabs(fd)))
                << "parameter " << p << " element " << i;
        }
    }
    kiln_trainer_destroy(t);
}

using S = Spec;

TEST(Train, GradientsDenseActivationsCrossEntropy) {
    for (int32_t a : {KILN_UNARY_RELU, KILN_UNARY_LEAKY_RELU, KILN_UNARY_SIGMOID, KILN_UNARY_TANH, KILN_UNARY_GELU,
                      KILN_UNARY_GELU_TANH, KILN_UNARY_SILU, KILN_UNARY_ELU, KILN_UNARY_SOFTPLUS, KILN_UNARY_SELU,
                      KILN_UNARY_MISH, KILN_UNARY_IDENTITY}) {
        SCOPED_TRACE(a);
        Case c{7, 5, {S{S::Dense, 9}, S{S::Act, 0, a, 0.1f}, S{S::Dense, 4}}, KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
        gradient_check(c, 1 + uint32_t(a));
    }
}

TEST(Train, GradientsClippedActivations) {
    for (int32_t a : {KILN_UNARY_BOUNDED_RELU, KILN_UNARY_HARDTANH, KILN_UNARY_HARD_SIGMOID, KILN_UNARY_HARD_SWISH}) {
        SCOPED_TRACE(a);
        const float alpha = a == KILN_UNARY_HARD_SIGMOID ? 0.5f : 1.0f;  // hard sigmoid: linear on (-1, 1)
        Case c{7, 5, {S{S::Dense, 9}, S{S::Act, 0, a, alpha}, S{S::Dense, 4}}, KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
        gradient_check(c, 40 + uint32_t(a));
    }
}

TEST(Train, ActivationParametersAreChecked) {
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(3, 4, &t), KILN_OK);
    EXPECT_EQ(kiln_trainer_add_activation(t, KILN_UNARY_BOUNDED_RELU, 0.0f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("must be > 0"), std::string::npos) << kiln_last_error();
    EXPECT_EQ(kiln_trainer_add_activation(t, KILN_UNARY_HARDTANH, -1.0f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_activation(t, KILN_UNARY_HARD_SIGMOID, 0.0f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("slope (alpha) of HARD_SIGMOID"), std::string::npos) << kiln_last_error();
    EXPECT_EQ(kiln_trainer_add_activation(t, KILN_UNARY_ELU, NAN), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_activation(t, KILN_UNARY_EXP, 0.0f), KILN_ERR_INVALID_ARGUMENT);  // not trainable
    EXPECT_EQ(kiln_trainer_add_activation(t, KILN_UNARY_BOUNDED_RELU, 6.0f), KILN_OK);
    kiln_trainer_destroy(t);
}

TEST(Train, GradientsUnfusedActivationAfterActivation) {
    // Two activations in a row: the second is not fused (its input is not a Dense's output).
    Case c{5, 3, {S{S::Dense, 6}, S{S::Act, 0, KILN_UNARY_TANH}, S{S::Act, 0, KILN_UNARY_SIGMOID}, S{S::Dense, 3}},
           KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(c, 11);
}

TEST(Train, GradientsLossesAndWeights) {
    for (int32_t loss : {KILN_LOSS_BCE_WITH_LOGITS, KILN_LOSS_MSE, KILN_LOSS_HUBER}) {
        SCOPED_TRACE(loss);
        Case c{6, 4, {S{S::Dense, 5}, S{S::Act, 0, KILN_UNARY_RELU}, S{S::Dense, 3}}, loss, false, true};
        gradient_check(c, 20 + uint32_t(loss));
    }
    Case cw{6, 9, {S{S::Dense, 5, 0, 0, 0, 0, false}, S{S::Dense, 4}}, KILN_LOSS_SOFTMAX_CROSS_ENTROPY, true, true};
    gradient_check(cw, 31);
}

TEST(Train, GradientsLayerNormSoftmaxResidual) {
    Case ln{8, 3, {S{S::Dense, 11}, S{S::LN}, S{S::Act, 0, KILN_UNARY_GELU}, S{S::Dense, 3}},
            KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(ln, 41);
    Case sm{5, 4, {S{S::Dense, 4}, S{S::Softmax}}, KILN_LOSS_MSE};
    gradient_check(sm, 42);
    Case lsm{5, 4, {S{S::Dense, 4}, S{S::Softmax, 0, 0, 0, 1}}, KILN_LOSS_HUBER};
    gradient_check(lsm, 43);
    // x -> Dense(7) -> relu -> Dense(7) -> + value 2 (relu output) -> tanh -> + value 1 -> Dense(3)
    Case res{7, 4,
             {S{S::Dense, 7}, S{S::Act, 0, KILN_UNARY_RELU}, S{S::Dense, 7}, S{S::Residual, 0, 0, 0, 0, 2},
              S{S::Act, 0, KILN_UNARY_TANH}, S{S::Residual, 0, 0, 0, 0, 1}, S{S::Dense, 3}},
             KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(res, 44);
    Case res0{6, 3, {S{S::Dense, 6}, S{S::Residual, 0, 0, 0, 0, 0}, S{S::Dense, 2}}, KILN_LOSS_MSE};
    gradient_check(res0, 45);
}

// Branches: paths with layers on both sides of a residual (projection shortcuts), a branch reading
// a fused activation's value, one reading the input, one naming another branch's value, values
// whose gradients sum three consumers.
TEST(Train, GradientsBranches) {
    //  v1 Dense(8)  v2 relu  v3 Dense(5)  v4 branch(0)  v5 Dense(5, no bias)  v6 + v3  v7 tanh
    //  v8 branch(2)  v9 Dense(5)  v10 + v7  v11 Dense(3)  v12 branch(4) (= value 0)  v13 Dense(3)
    //  v14 + v11
    Case c{6, 4,
           {S{S::Dense, 8}, S{S::Act, 0, KILN_UNARY_RELU}, S{S::Dense, 5}, S{S::Branch, 0, 0, 0, 0, 0},
            S{S::Dense, 5, 0, 0, 0, 0, false}, S{S::Residual, 0, 0, 0, 0, 3}, S{S::Act, 0, KILN_UNARY_TANH},
            S{S::Branch, 0, 0, 0, 0, 2}, S{S::Dense, 5}, S{S::Residual, 0, 0, 0, 0, 7}, S{S::Dense, 3},
            S{S::Branch, 0, 0, 0, 0, 4}, S{S::Dense, 3}, S{S::Residual, 0, 0, 0, 0, 11}},
           KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(c, 46);
    Case mse{5, 3,
             {S{S::Dense, 7}, S{S::Act, 0, KILN_UNARY_GELU}, S{S::LN}, S{S::Branch, 0, 0, 0, 0, 1}, S{S::Dense, 7},
              S{S::Residual, 0, 0, 0, 0, 3}, S{S::Dense, 2}},
             KILN_LOSS_MSE};
    gradient_check(mse, 47);
}

// Products and concatenations with earlier values: a GLU-style gate, a square (a value times itself
// through a branch), concatenations with a side path and with the input.
TEST(Train, GradientsProductsAndConcatenations) {
    //  v1 Dense(8)  v2 silu  v3 branch(0)  v4 Dense(8)  v5 v4 * v2  v6 Dense(3)
    Case glu{6, 4,
             {S{S::Dense, 8}, S{S::Act, 0, KILN_UNARY_SILU}, S{S::Branch, 0, 0, 0, 0, 0}, S{S::Dense, 8},
              S{S::Multiply, 0, 0, 0, 0, 2}, S{S::Dense, 3}},
             KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(glu, 48);
    //  v1 Dense(4)  v2 relu  v3 branch(1)  v4 v1 * v1  v5 v4 + v2  v6 Dense(3)
    Case square{5, 3,
                {S{S::Dense, 4}, S{S::Act, 0, KILN_UNARY_RELU}, S{S::Branch, 0, 0, 0, 0, 1},
                 S{S::Multiply, 0, 0, 0, 0, 1}, S{S::Residual, 0, 0, 0, 0, 2}, S{S::Dense, 3}},
                KILN_LOSS_MSE};
    gradient_check(square, 49);
    //  v1 Dense(5)  v2 tanh  v3 branch(0)  v4 Dense(4)  v5 [v4 | v2] (9)  v6 [v5 | x] (15)  v7 Dense(3)
    Case cat{6, 3,
             {S{S::Dense, 5}, S{S::Act, 0, KILN_UNARY_TANH}, S{S::Branch, 0, 0, 0, 0, 0}, S{S::Dense, 4},
              S{S::Concat, 0, 0, 0, 0, 2}, S{S::Concat, 0, 0, 0, 0, 0}, S{S::Dense, 3}},
             KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(cat, 50);
}

// Slices: a GEGLU whose halves come from one projection (torch's chunk), and a middle slice.
TEST(Train, GradientsSlices) {
    //  v1 Dense(10)  v2 [0, 5)  v3 branch(1)  v4 [5, 10)  v5 gelu  v6 v5 * v2  v7 Dense(3)
    Case geglu{6, 4,
               {S{S::Dense, 10}, S{S::Slice, 5, 0, 0, 0, 0}, S{S::Branch, 0, 0, 0, 0, 1}, S{S::Slice, 10, 0, 0, 0, 5},
                S{S::Act, 0, KILN_UNARY_GELU}, S{S::Multiply, 0, 0, 0, 0, 2}, S{S::Dense, 3}},
               KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(geglu, 51);
    //  v1 Dense(7)  v2 tanh  v3 [2, 5)  v4 Dense(2)
    Case mid{5, 3, {S{S::Dense, 7}, S{S::Act, 0, KILN_UNARY_TANH}, S{S::Slice, 5, 0, 0, 0, 2}, S{S::Dense, 2}},
             KILN_LOSS_MSE};
    gradient_check(mid, 52);
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(4, 2, &t), KILN_OK);
    EXPECT_EQ(kiln_trainer_add_slice(t, 2, 2), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_slice(t, 0, 5), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_slice(t, -1, 3), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_slice(t, 1, 4), KILN_OK);
    kiln_trainer_destroy(t);
}

// Scale-shift (a batch norm in inference mode): after an activation, and read by two consumers.
TEST(Train, GradientsScaleShift) {
    Case c{5, 4,
           {S{S::Dense, 6}, S{S::Act, 0, KILN_UNARY_RELU}, S{S::Scale}, S{S::Dense, 6}, S{S::Residual, 0, 0, 0, 0, 3},
            S{S::Dense, 3}},
           KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(c, 53);
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(2, 2, &t), KILN_OK);
    const float bad[2] = {1.0f, NAN};
    EXPECT_EQ(kiln_trainer_add_scale_shift(t, bad, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("the scale of feature 1 is not finite"), std::string::npos)
        << kiln_last_error();
    EXPECT_EQ(kiln_trainer_add_scale_shift(t, nullptr, nullptr), KILN_OK);
    kiln_trainer_destroy(t);
}

// PReLU with a slope per feature: after a Dense (its input gradient and its slopes' gradients), and
// read by two consumers.
TEST(Train, GradientsPRelu) {
    Case c{5, 4,
           {S{S::Dense, 6}, S{S::PRelu}, S{S::Dense, 6}, S{S::Residual, 0, 0, 0, 0, 2}, S{S::PRelu}, S{S::Dense, 3}},
           KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(c, 71);
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(2, 2, &t), KILN_OK);
    const float bad[2] = {0.25f, INFINITY};
    EXPECT_EQ(kiln_trainer_add_prelu(t, bad), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("the slope of feature 1 is not finite"), std::string::npos)
        << kiln_last_error();
    EXPECT_EQ(kiln_trainer_add_prelu(t, nullptr), KILN_OK);
    std::vector<float> slope(2);
    EXPECT_EQ(kiln_trainer_param(t, 0, 0, slope.data(), 2), KILN_OK) << kiln_last_error();
    EXPECT_EQ(slope[0], 0.25f);  // PyTorch's initial slope
    kiln_trainer_destroy(t);
}

// L2 normalization of rows (an embedding model's end), read by a residual too; and rows whose norm
// is under eps (divided by eps: the gradient is gy / eps).
TEST(Train, GradientsL2Normalize) {
    Case c{5, 4,
           {S{S::Dense, 6}, S{S::L2, 0, 0, 1e-12f}, S{S::Dense, 6}, S{S::Residual, 0, 0, 0, 0, 2},
            S{S::L2, 0, 0, 1e-12f}, S{S::Dense, 3}},
           KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
    gradient_check(c, 81);
    Case small{5, 4, {S{S::Dense, 6}, S{S::L2, 0, 0, 1e3f}, S{S::Dense, 3}}, KILN_LOSS_MSE};  // every norm under eps
    gradient_check(small, 82);
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(2, 2, &t), KILN_OK);
    EXPECT_EQ(kiln_trainer_add_l2_normalize(t, -1.0f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_l2_normalize(t, NAN), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_l2_normalize(t, 0.0f), KILN_OK);
    kiln_trainer_destroy(t);
}

// A row whose norm is under eps is divided by eps: its gradient is gy / eps, exactly.
TEST(Train, L2NormalizeUnderEpsDividesTheGradientByEps) {
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(2, 1, &t), KILN_OK);
    const float w[4] = {1, 0, 0, 1};  // identity: h = x
    ASSERT_EQ(kiln_trainer_add_dense(t, 2, w, nullptr), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_l2_normalize(t, 2.0f), KILN_OK);  // |x| = 0.5 < 2: y = x / 2
    ASSERT_EQ(kiln_trainer_set_loss(t, KILN_LOSS_MSE, 1.0f, nullptr), KILN_OK);
    ASSERT_EQ(kiln_trainer_compile(t), KILN_OK) << kiln_last_error();
    const float x[2] = {0.3f, 0.4f}, target[2] = {1.0f, -1.0f};
    double loss = 0;
    ASSERT_EQ(kiln_trainer_step(t, 1, x, target, nullptr, 0.0f, &loss, nullptr), KILN_OK) << kiln_last_error();
    // loss = mean((x / 2 - t)^2); dL/dy = (y - t); dL/dh = that / 2; dL/dW[k][j] = x_k dL/dh_j.
    const double y0 = 0.15, y1 = 0.2, g0 = (y0 - 1.0) / 2, g1 = (y1 + 1.0) / 2;
    EXPECT_NEAR(loss, ((y0 - 1.0) * (y0 - 1.0) + (y1 + 1.0) * (y1 + 1.0)) / 2, 1e-6);
    float gw[4];
    ASSERT_EQ(kiln_trainer_param(t, 0, 2, gw, 4), KILN_OK);
    const double want[4] = {0.3 * g0, 0.3 * g1, 0.4 * g0, 0.4 * g1};
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(gw[i], want[i], 1e-6) << i;
    kiln_trainer_destroy(t);
}

// Pooling over positions (mean, sum, max), after a Dense and read beside a residual.
TEST(Train, GradientsPooling) {
    for (int32_t mode : {KILN_POOL_MEAN, KILN_POOL_SUM, KILN_POOL_MAX}) {
        SCOPED_TRACE(mode);
        //  v1 Dense(12)  v2 pool over 3 positions (4)  v3 tanh  v4 + v2  v5 Dense(3)
        Case c{5, 4,
               {S{S::Dense, 12}, S{S::Pool, 3, mode}, S{S::Act, 0, KILN_UNARY_TANH}, S{S::Residual, 0, 0, 0, 0, 2},
                S{S::Dense, 3}},
               KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
        gradient_check(c, 60 + uint32_t(mode));
    }
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(6, 2, &t), KILN_OK);
    EXPECT_EQ(kiln_trainer_add_pool(t, KILN_POOL_MEAN, 4), KILN_ERR_SHAPE_MISMATCH);
    EXPECT_EQ(kiln_trainer_add_pool(t, 3, 2), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_pool(t, KILN_POOL_MAX, 3), KILN_OK);
    kiln_trainer_destroy(t);
}

TEST(Train, BranchesAreChecked) {
    std::vector<float> w(4 * 4, 0.1f);
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(4, 2, &t), KILN_OK);
    EXPECT_EQ(kiln_trainer_add_branch(t, 0), KILN_ERR_INVALID_ARGUMENT);  // no earlier value yet
    ASSERT_EQ(kiln_trainer_add_dense(t, 4, w.data(), nullptr), KILN_OK);
    EXPECT_EQ(kiln_trainer_add_branch(t, 1), KILN_ERR_INVALID_ARGUMENT);  // the current value
    EXPECT_EQ(kiln_trainer_add_branch(t, -1), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_trainer_add_branch(t, 0), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_dense(t, 4, w.data(), nullptr), KILN_OK);
    ASSERT_EQ(kiln_trainer_set_loss(t, KILN_LOSS_MSE, 1.0f, nullptr), KILN_OK);
    EXPECT_EQ(kiln_trainer_compile(t), KILN_ERR_INVALID_ARGUMENT);  // value 1 is never read
    EXPECT_NE(std::string(kiln_last_error()).find("value 1 (the output of layer 0) is never read"), std::string::npos)
        << kiln_last_error();
    ASSERT_EQ(kiln_trainer_add_residual(t, 1), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_branch(t, 2), KILN_OK);  // names the branch's value: resolves to value 0
    EXPECT_EQ(kiln_trainer_compile(t), KILN_ERR_INVALID_ARGUMENT);  // ends with a branch
    EXPECT_NE(std::string(kiln_last_error()).find("the last layer is a branch"), std::string::npos) << kiln_last_error();
    kiln_trainer_destroy(t);

    ASSERT_EQ(kiln_trainer_create(4, 2, &t), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_dense(t, 4, w.data(), nullptr), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_branch(t, 0), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_branch(t, 1), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_dense(t, 4, w.data(), nullptr), KILN_OK);
    EXPECT_EQ(kiln_trainer_compile(t), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("branch followed by another branch"), std::string::npos)
        << kiln_last_error();
    kiln_trainer_destroy(t);

    const float table[3 * 4] = {0};
    ASSERT_EQ(kiln_trainer_create(1, 2, &t), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_embedding(t, 3, 4, table), KILN_OK);
    EXPECT_EQ(kiln_trainer_add_branch(t, 0), KILN_ERR_INVALID_ARGUMENT);  // token ids are not features
    EXPECT_NE(std::string(kiln_last_error()).find("token ids"), std::string::npos) << kiln_last_error();
    kiln_trainer_destroy(t);
}

TEST(Train, OddSizesGradients) {
    for (int64_t n : {1, 17, 33}) {
        Case c{n, 3, {S{S::Dense, n + 2}, S{S::Act, 0, KILN_UNARY_RELU}, S{S::Dense, 2}}, KILN_LOSS_SOFTMAX_CROSS_ENTROPY};
        gradient_check(c, 50 + uint32_t(n));
    }
}

// One parameter, one step of each optimizer against its formula (the update kernels of every ISA).
TEST(Train, OptimizerFormulas) {
    int32_t best;
    ASSERT_EQ(kiln_isa_best(&best), KILN_OK);
    for (int32_t isa : {int32_t(KILN_ISA_PORTABLE), int32_t(KILN_ISA_AVX2), int32_t(KILN_ISA_AVX512)}) {
        if (isa > best) break;
        ASSERT_EQ(kiln_isa_set(isa), KILN_OK);
        for (int32_t kind : {KILN_OPT_SGD, KILN_OPT_ADAM, KILN_OPT_ADAMW, KILN_OPT_RMSPROP}) {
            SCOPED_TRACE(kind);
            // y = x w (1 x 1 -> 1, no bias), MSE with target 0: dL/dw = 2 x^2 w.
            const float w0 = 0.8f, xv = 1.5f, lr = 0.1f;
            kiln_trainer* t;
            ASSERT_EQ(kiln_trainer_create(1, 1, &t), KILN_OK);
            ASSERT_EQ(kiln_trainer_add_dense(t, 1, &w0, nullptr), KILN_OK);
            ASSERT_EQ(kiln_trainer_set_loss(t, KILN_LOSS_MSE, 1.0f, nullptr), KILN_OK);
            kiln_optimizer o{kind, kind == KILN_OPT_SGD, 0.9f, 0.9f, 0.99f, 1e-8f, 0.01f, 0.05f, 0.0f};
            if (kind != KILN_OPT_SGD) o.nesterov = 0;
            ASSERT_EQ(kiln_trainer_set_optimizer(t, &o), KILN_OK) << kiln_last_error();
            ASSERT_EQ(kiln_trainer_compile(t), KILN_OK);
            double w = w0, m = 0, v = 0;
            const float zero = 0.0f;
            for (int step = 1; step <= 3; ++step) {
                double loss;
                ASSERT_EQ(kiln_trainer_step(t, 1, &xv, &zero, nullptr, lr, &loss, nullptr), KILN_OK);
                double g = 2.0 * xv * xv * w + 0.01 * w;  // + l2
                w -= lr * 0.05 * w;                        // decoupled decay
                if (kind == KILN_OPT_SGD) {
                    m = 0.9 * m + g;
                    w -= lr * (g + 0.9 * m);
                } else if (kind == KILN_OPT_RMSPROP) {
                    v = 0.99 * v + 0.01 * g * g;
                    w -= lr * g / (std::sqrt(v) + 1e-8);
                } else {
                    m = 0.9 * m + 0.1 * g;
                    v = 0.99 * v + 0.01 * g * g;
                    w -= lr * (m / (1 - std::pow(0.9, step))) / (std::sqrt(v / (1 - std::pow(0.99, step))) + 1e-8);
                }
                float got;
                ASSERT_EQ(kiln_trainer_param(t, 0, 0, &got, 1), KILN_OK);
                ASSERT_NEAR(got, w, 1e-5 * std::max(1.0, std::fabs(w))) << "step " << step;
            }
            kiln_trainer_destroy(t);
        }
    }
    kiln_isa_set(best);
}

// The vector update kernels against the scalar reference, element by element: every optimizer,
// with and without the clipping scale / L2 / decay, lengths around the vector widths (tails), and
// The vectorized input gradients of the activations that need x, against central differences
// of the double-precision definitions (Ref::act), away from the kinks; odd lengths (masked tails)
// and accumulation into an existing gradient.
TEST(Train, VectorActivationGradientsMatchFiniteDifferences) {
    int32_t best = 0;
    kiln_isa_best(&best);
    if (best < KILN_ISA_AVX2) GTEST_SKIP() << "no AVX2 on this CPU";
    for (int32_t level : {int32_t(KILN_ISA_AVX2), int32_t(KILN_ISA_AVX512)}) {
        if (level > best) break;
        const kiln::train::Kernels& k = kiln::train::kernels_for(kiln_isa(level));
        for (int32_t act : {KILN_UNARY_GELU, KILN_UNARY_GELU_TANH, KILN_UNARY_SILU, KILN_UNARY_ELU, KILN_UNARY_SELU,
                            KILN_UNARY_SOFTPLUS, KILN_UNARY_MISH, KILN_UNARY_BOUNDED_RELU, KILN_UNARY_HARDTANH,
                            KILN_UNARY_HARD_SIGMOID, KILN_UNARY_HARD_SWISH}) {
            const float alpha = act == KILN_UNARY_ELU ? 0.7f : act == KILN_UNARY_BOUNDED_RELU ? 6.0f
                              : act == KILN_UNARY_HARD_SIGMOID ? 1.0f / 6.0f : 1.5f;
            for (int64_t n : {1, 7, 9, 1001}) {
                SCOPED_TRACE("isa " + std::to_string(level) + " act " + std::to_string(act) + " n " + std::to_string(n));
                auto x = kiln_test::random_floats(size_t(n), uint32_t(act * 7 + n), -12.0f, 12.0f);
                auto gy = kiln_test::random_floats(size_t(n), uint32_t(act * 11 + n), -2.0f, 2.0f);
                for (int acc = 0; acc < 2; ++acc) {
                    std::vector<float> gx(size_t(n), acc ? 0.25f : NAN);
                    ASSERT_TRUE(k.act_grad_x(act, alpha, n, x.data(), gy.data(), gx.data(), acc != 0));
                    for (int64_t i = 0; i < n; ++i) {
                        const double xi = x[size_t(i)], h = 1e-4;
                        bool kink = false;
                        for (double at : {0.0, double(alpha), -double(alpha), 3.0, -3.0}) kink |= std::fabs(xi - at) < 1e-3;
                        if (kink) continue;
                        const double d = (Ref::act(act, alpha, xi + h) - Ref::act(act, alpha, xi - h)) / (2 * h);
                        const double want = gy[size_t(i)] * d + (acc ? 0.25 : 0.0);
                        ASSERT_NEAR(gx[size_t(i)], want, 2e-6 * std::max(1.0, std::fabs(want))) << "x=" << xi;
                    }
                }
            }
        }
    }
}

// the finiteness and norm helpers.
TEST(Train, UpdateKernelsMatchTheReference) {
    int32_t best = 0;
    kiln_isa_best(&best);
    if (best < KILN_ISA_AVX2) GTEST_SKIP() << "no AVX2 on this CPU";
    std::mt19937 rng(21);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int32_t level : {int32_t(KILN_ISA_AVX2), int32_t(KILN_ISA_AVX512)}) {
        if (level > best) break;
        const kiln::train::Kernels& fast = kiln::train::kernels_for(kiln_isa(level));
        for (int32_t kind : {KILN_OPT_SGD, KILN_OPT_ADAM, KILN_OPT_ADAMW, KILN_OPT_RMSPROP})
            for (int plain = 0; plain < 2; ++plain)
                for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 31, 33, 1000}) {
                    SCOPED_TRACE("isa " + std::to_string(level) + " kind " + std::to_string(kind) + " plain " +
                                 std::to_string(plain) + " n " + std::to_string(n));
                    kiln::train::UpdateArgs a{};
                    a.kind = kind;
                    a.nesterov = kind == KILN_OPT_SGD;
                    a.lr = 0.01f;
                    a.momentum = 0.9f;
                    a.beta1 = 0.9f;
                    a.beta2 = 0.999f;
                    a.eps = 1e-8f;
                    a.l2 = plain ? 0.0f : 0.01f;
                    a.decay = plain ? 0.0f : 0.001f;
                    a.grad_scale = plain ? 1.0f : 0.5f;
                    a.step_size = 0.01f / (1.0f - 0.9f * 0.9f);
                    a.inv_sqrt_bc2 = 1.0f / std::sqrt(1.0f - 0.999f * 0.999f);
                    std::vector<float> w(static_cast<size_t>(n)), g(w.size()), m(w.size()), v(w.size());
                    for (size_t i = 0; i < w.size(); ++i) {
                        w[i] = nd(rng);
                        g[i] = nd(rng);
                        m[i] = 0.1f * nd(rng);
                        v[i] = 0.01f * std::fabs(nd(rng));
                    }
                    // Guards past the end catch writes beyond n.
                    auto pad = [](std::vector<float> x) { x.resize(x.size() + 16, 7.0f); return x; };
                    std::vector<float> w1 = pad(w), m1 = pad(m), v1 = pad(v), w2 = pad(w), m2 = pad(m), v2 = pad(v);
                    kiln::train::update_ref(a, n, w1.data(), g.data(), m1.data(), v1.data());
                    fast.update(a, n, w2.data(), g.data(), m2.data(), v2.data());
                    for (size_t i = 0; i < w1.size(); ++i) {
                        const double tol = i < size_t(n) ? 2e-6 : 0.0;
                        ASSERT_NEAR(w2[i], w1[i], tol * std::max(1.0f, std::fabs(w1[i]))) << "w " << i;
                        ASSERT_NEAR(m2[i], m1[i], tol * std::max(1.0f, std::fabs(m1[i]))) << "m " << i;
                        ASSERT_NEAR(v2[i], v1[i], tol * std::max(1.0f, std::fabs(v1[i]))) << "v " << i;
                    }
                    EXPECT_EQ(fast.max_abs(n, g.data()), kiln::train::max_abs_ref(n, g.data()));
                    EXPECT_NEAR(fast.sum_squares(n, g.data()), kiln::train::sum_squares_ref(n, g.data()),
                                1e-12 * kiln::train::sum_squares_ref(n, g.data()));
                    g[size_t(n / 2)] = (n % 2) ? NAN : -INFINITY;
                    EXPECT_EQ(fast.max_abs(n, g.data()), INFINITY);
                }
    }
}

// The update reads subnormal weights and moments as zero and writes no subnormal result (MXCSR DAZ
// and FTZ, see SubnormalsAsZero in update.hpp), at every ISA level, and leaves the calling thread's
// floating-point mode as it found it. Before: a moment decaying through the subnormal range made
// the update pass twice as slow (Zen 3).
TEST(Train, SubnormalWeightsAndMomentsAreFlushedAndTheModeIsRestored) {
#if defined(__SSE__)
    int32_t best;
    ASSERT_EQ(kiln_isa_best(&best), KILN_OK);
    const float tiny = 1e-39f;  // subnormal (FLT_MIN is 1.18e-38)
    ASSERT_EQ(std::fpclassify(tiny), FP_SUBNORMAL);
    for (int32_t isa : {int32_t(KILN_ISA_PORTABLE), int32_t(KILN_ISA_AVX2), int32_t(KILN_ISA_AVX512)}) {
        if (isa > best) break;
        ASSERT_EQ(kiln_isa_set(isa), KILN_OK);
        for (unsigned caller : {0u, 0x8040u}) {  // the caller's own mode: default, or FTZ|DAZ already
            SCOPED_TRACE("isa " + std::to_string(isa) + " caller mode " + std::to_string(caller));
            // y = x0 w0 + x1 w1 + b, MSE against 0, x1 = 0: w1's gradient is exactly 0.
            const float w[2] = {0.5f, tiny}, bias = 0.25f;
            kiln_trainer* t;
            ASSERT_EQ(kiln_trainer_create(2, 1, &t), KILN_OK);
            ASSERT_EQ(kiln_trainer_add_dense(t, 1, w, &bias), KILN_OK);
            ASSERT_EQ(kiln_trainer_set_loss(t, KILN_LOSS_MSE, 1.0f, nullptr), KILN_OK);
            const kiln_optimizer o{KILN_OPT_ADAM, 0, 0.0f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, 0.0f};
            ASSERT_EQ(kiln_trainer_set_optimizer(t, &o), KILN_OK);
            ASSERT_EQ(kiln_trainer_compile(t), KILN_OK);
            // State: header (24 bytes), the two sizes, then per parameter value, m, v.
            int64_t bytes;
            ASSERT_EQ(kiln_trainer_state_bytes(t, &bytes), KILN_OK);
            ASSERT_EQ(bytes, 24 + 16 + 4 * (3 * 2 + 3 * 1));
            std::vector<char> state(static_cast<size_t>(bytes));
            ASSERT_EQ(kiln_trainer_save_state(t, state.data(), bytes), KILN_OK);
            float* weight = reinterpret_cast<float*>(state.data() + 40);  // value[2], m[2], v[2]
            weight[3] = tiny, weight[5] = 2 * tiny;                       // w1's moments subnormal
            weight[2] = 0.01f, weight[4] = 1e-4f;                         // w0's normal
            ASSERT_EQ(kiln_trainer_load_state(t, state.data(), bytes), KILN_OK);
            const unsigned before = (_mm_getcsr() & ~0x8040u) | caller;
            _mm_setcsr(before);
            const float x[2] = {1.0f, 0.0f}, target = 0.0f;
            double loss;
            ASSERT_EQ(kiln_trainer_step(t, 1, x, &target, nullptr, 1e-3f, &loss, nullptr), KILN_OK);
            // The mode bits (6-15: DAZ, masks, rounding, FTZ); bits 0-5 are sticky exception flags.
            EXPECT_EQ(_mm_getcsr() & ~0x3Fu, before & ~0x3Fu) << "the caller's floating-point mode is restored";
            _mm_setcsr(before & ~0x8040u);
            ASSERT_EQ(kiln_trainer_save_state(t, state.data(), bytes), KILN_OK);
            weight = reinterpret_cast<float*>(state.data() + 40);
            // Without the flush: m1 = 0.9 * 1e-39, v1 = 0.999 * 2e-39, w1 = 1e-39 - (a subnormal step).
            EXPECT_EQ(weight[1], 0.0f) << "w1";
            EXPECT_EQ(weight[3], 0.0f) << "m1";
            EXPECT_EQ(weight[5], 0.0f) << "v1";
            // w0 trains as usual: g = 2 * 0.75 = 1.5; m = 0.9 * 0.01 + 0.1 * 1.5.
            EXPECT_NEAR(weight[2], 0.159f, 1e-6f);
            EXPECT_NEAR(weight[4], 0.999 * 1e-4 + 0.001 * 2.25, 1e-7);
            EXPECT_LT(weight[0], 0.5f);
            kiln_trainer_destroy(t);
        }
    }
    kiln_isa_set(best);
#else
    GTEST_SKIP() << "no MXCSR on this target";
#endif
}

// Frozen parameters (fine-tuning a head): not updated, gradients read as zeros; the others get the
// same gradients as without freezing (the gradient still flows through a frozen layer).
TEST(Train, FrozenParametersStayAndTheOthersTrainAsBefore) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 0.5f);
    std::vector<float> w1(5 * 6), b1(6), g(6, 1.0f), be(6, 0.0f), w2(6 * 3), b2(3);
    for (auto* v : {&w1, &b1, &w2, &b2})
        for (float& e : *v) e = nd(rng);
    std::vector<float> x(4 * 5), y(4 * 3);
    for (float& e : x) e = nd(rng);
    for (float& e : y) e = nd(rng);
    kiln_optimizer adam{KILN_OPT_ADAM, 0, 0.0f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.01f, 0.0f};  // with weight decay
    auto make = [&]() {
        kiln_trainer* t = nullptr;
        EXPECT_EQ(kiln_trainer_create(5, 4, &t), KILN_OK);
        EXPECT_EQ(kiln_trainer_add_dense(t, 6, w1.data(), b1.data()), KILN_OK);  // params 0, 1
        EXPECT_EQ(kiln_trainer_add_activation(t, KILN_UNARY_TANH, 0.0f), KILN_OK);
        EXPECT_EQ(kiln_trainer_add_layer_norm(t, g.data(), be.data(), 1e-5f), KILN_OK);  // params 2, 3
        EXPECT_EQ(kiln_trainer_add_dense(t, 3, w2.data(), b2.data()), KILN_OK);  // params 4, 5
        EXPECT_EQ(kiln_trainer_set_loss(t, KILN_LOSS_MSE, 1.0f, nullptr), KILN_OK);
        EXPECT_EQ(kiln_trainer_set_optimizer(t, &adam), KILN_OK);
        return t;
    };
    kiln_trainer* frozen = make();
    kiln_trainer* free = make();
    EXPECT_EQ(kiln_trainer_freeze(frozen, 0, 1), KILN_OK);  // before compile
    ASSERT_EQ(kiln_trainer_compile(frozen), KILN_OK);
    ASSERT_EQ(kiln_trainer_compile(free), KILN_OK);
    EXPECT_EQ(kiln_trainer_freeze(frozen, 2, 1), KILN_OK);  // and after
    EXPECT_EQ(kiln_trainer_freeze(frozen, 6, 1), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_freeze(frozen, -1, 1), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_freeze(frozen, 1, 2), KILN_ERR_INVALID_ARGUMENT);
    double lf = 0, lu = 0;
    ASSERT_EQ(kiln_trainer_step(frozen, 4, x.data(), y.data(), nullptr, 0.05f, &lf, nullptr), KILN_OK) << kiln_last_error();
    ASSERT_EQ(kiln_trainer_step(free, 4, x.data(), y.data(), nullptr, 0.05f, &lu, nullptr), KILN_OK) << kiln_last_error();
    EXPECT_EQ(lf, lu);  // the same forward pass
    const int64_t sizes[6] = {30, 6, 6, 6, 18, 3};
    for (int64_t p = 0; p < 6; ++p) {
        std::vector<float> gf(size_t(sizes[p])), gu(size_t(sizes[p])), vf(size_t(sizes[p]));
        ASSERT_EQ(kiln_trainer_param(frozen, p, 2, gf.data(), sizes[p]), KILN_OK);
        ASSERT_EQ(kiln_trainer_param(free, p, 2, gu.data(), sizes[p]), KILN_OK);
        ASSERT_EQ(kiln_trainer_param(frozen, p, 0, vf.data(), sizes[p]), KILN_OK);
        const std::vector<float>& init = p == 0 ? w1 : p == 1 ? b1 : p == 2 ? g : p == 3 ? be : p == 4 ? w2 : b2;
        for (size_t i = 0; i < gf.size(); ++i) {
            if (p == 0 || p == 2) {
                EXPECT_EQ(gf[i], 0.0f) << p << " " << i;     // not computed
                EXPECT_EQ(vf[i], init[i]) << p << " " << i;  // not updated, not decayed
            } else {
                EXPECT_EQ(gf[i], gu[i]) << p << " " << i;    // as without freezing
                EXPECT_NE(vf[i], init[i]) << p << " " << i;
            }
        }
    }
    // Thawed, it trains again.
    EXPECT_EQ(kiln_trainer_freeze(frozen, 0, 0), KILN_OK);
    ASSERT_EQ(kiln_trainer_step(frozen, 4, x.data(), y.data(), nullptr, 0.05f, &lf, nullptr), KILN_OK);
    std::vector<float> v0(30);
    ASSERT_EQ(kiln_trainer_param(frozen, 0, 0, v0.data(), 30), KILN_OK);
    EXPECT_NE(v0, w1);
    kiln_trainer_destroy(frozen);
    kiln_trainer_destroy(free);
}

TEST(Train, ClippingScalesTheGradientToTheNorm) {
    const float w0[2] = {1.0f, -2.0f}, x[2] = {3.0f, 4.0f}, y = 0.0f;
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(2, 1, &t), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_dense(t, 1, w0, nullptr), KILN_OK);
    ASSERT_EQ(kiln_trainer_set_loss(t, KILN_LOSS_MSE, 1.0f, nullptr), KILN_OK);
    kiln_optimizer o{KILN_OPT_SGD, 0, 0.0f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, 0.5f};
    ASSERT_EQ(kiln_trainer_set_optimizer(t, &o), KILN_OK);
    ASSERT_EQ(kiln_trainer_compile(t), KILN_OK);
    double loss;
    ASSERT_EQ(kiln_trainer_step(t, 1, x, &y, nullptr, 1.0f, &loss, nullptr), KILN_OK);
    // z = 3 - 8 = -5; dL/dw = 2 z x = (-30, -40), norm 50 -> scaled to norm 0.5: (-0.3, -0.4)
    float w[2];
    ASSERT_EQ(kiln_trainer_param(t, 0, 0, w, 2), KILN_OK);
    EXPECT_NEAR(w[0], 1.3f, 1e-5);
    EXPECT_NEAR(w[1], -1.6f, 1e-5);
    kiln_trainer_destroy(t);
}

// Without clipping the finiteness guard works from bounds on the activations instead of a pass over
// every gradient; an overflowing gradient behind a finite loss must still update nothing, and a
// huge but finite one must still update.
TEST(Train, GradientGuardWithoutClipping) {
    auto make = [](float clip) {
        const float w0[2] = {1e-30f, 1e-30f};
        kiln_trainer* t = nullptr;
        EXPECT_EQ(kiln_trainer_create(2, 1, &t), KILN_OK);
        EXPECT_EQ(kiln_trainer_add_dense(t, 1, w0, nullptr), KILN_OK);
        EXPECT_EQ(kiln_trainer_set_loss(t, KILN_LOSS_MSE, 1.0f, nullptr), KILN_OK);
        kiln_optimizer o{KILN_OPT_SGD, 0, 0.0f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, clip};
        EXPECT_EQ(kiln_trainer_set_optimizer(t, &o), KILN_OK);
        EXPECT_EQ(kiln_trainer_compile(t), KILN_OK);
        return t;
    };
    const float y = 1.0f;
    double loss;
    float w[2];
    int64_t steps;
    // z = 0 (the two products cancel), loss 1, dL/dz = -2: dW = -2 x overflows float.
    const float overflow[2] = {3e38f, -3e38f};
    kiln_trainer* t = make(0.0f);
    EXPECT_EQ(kiln_trainer_step(t, 1, overflow, &y, nullptr, 1e-3f, &loss, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("gradient is not finite at step 0"), std::string::npos)
        << kiln_last_error();
    ASSERT_EQ(kiln_trainer_param(t, 0, 0, w, 2), KILN_OK);
    EXPECT_EQ(w[0], 1e-30f);
    EXPECT_EQ(w[1], 1e-30f);
    kiln_trainer_steps(t, &steps);
    EXPECT_EQ(steps, 0);
    // dW = (-2e37, 2e37): past the bound, finite in the full check: updated.
    const float huge[2] = {1e37f, -1e37f};
    ASSERT_EQ(kiln_trainer_step(t, 1, huge, &y, nullptr, 1e-37f, &loss, nullptr), KILN_OK) << kiln_last_error();
    ASSERT_EQ(kiln_trainer_param(t, 0, 0, w, 2), KILN_OK);
    // (z is not exactly 0: the GEMM's FMA keeps one product unrounded, so dL/dz is about -1.93)
    EXPECT_GT(w[0], 1.5f);
    EXPECT_LT(w[0], 2.5f);
    EXPECT_EQ(w[1], -w[0]);
    kiln_trainer_destroy(t);

    // Ordinary steps: the bounded guard and the global-norm path (a clip that never binds) agree
    // bit for bit.
    kiln_trainer* a = make(0.0f);
    kiln_trainer* b = make(1e30f);
    const float x[2] = {0.5f, -1.5f};
    for (int i = 0; i < 5; ++i) {
        ASSERT_EQ(kiln_trainer_step(a, 1, x, &y, nullptr, 0.1f, &loss, nullptr), KILN_OK);
        ASSERT_EQ(kiln_trainer_step(b, 1, x, &y, nullptr, 0.1f, &loss, nullptr), KILN_OK);
    }
    float wa[2], wb[2];
    kiln_trainer_param(a, 0, 0, wa, 2);
    kiln_trainer_param(b, 0, 0, wb, 2);
    EXPECT_EQ(0, std::memcmp(wa, wb, sizeof wa));
    EXPECT_NE(wa[0], 1e-30f);
    kiln_trainer_destroy(a);
    kiln_trainer_destroy(b);
}

kiln_trainer* mlp(uint64_t seed, float dropout) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 0.3f);
    std::vector<float> w1(20 * 16), b1(16), w2(16 * 4), b2(4);
    for (auto* v : {&w1, &b1, &w2, &b2})
        for (float& f : *v) f = nd(rng);
    kiln_trainer* t;
    EXPECT_EQ(kiln_trainer_create(20, 32, &t), KILN_OK);
    kiln_trainer_add_dense(t, 16, w1.data(), b1.data());
    kiln_trainer_add_activation(t, KILN_UNARY_RELU, 0);
    kiln_trainer_add_dropout(t, dropout);
    kiln_trainer_add_dense(t, 4, w2.data(), b2.data());
    kiln_trainer_set_loss(t, KILN_LOSS_SOFTMAX_CROSS_ENTROPY, 0, nullptr);
    kiln_optimizer o{KILN_OPT_ADAM, 0, 0.0f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, 0.0f};
    kiln_trainer_set_optimizer(t, &o);
    kiln_trainer_set_seed(t, seed);
    EXPECT_EQ(kiln_trainer_compile(t), KILN_OK);
    return t;
}

struct Data {
    std::vector<float> x;
    std::vector<int32_t> y;
    Data() {
        std::mt19937 rng(3);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        for (int i = 0; i < 32 * 20; ++i) x.push_back(nd(rng));
        for (int r = 0; r < 32; ++r) y.push_back(x[size_t(r * 20)] > 0 ? (x[size_t(r * 20 + 1)] > 0 ? 0 : 1) : 2 + (r % 2));
    }
};

TEST(Train, LearnsAndIsDeterministicWithDropout) {
    Data d;
    std::vector<double> a, b;
    for (auto* seq : {&a, &b}) {
        kiln_trainer* t = mlp(5, 0.25f);
        for (int s = 0; s < 200; ++s) {
            double loss;
            ASSERT_EQ(kiln_trainer_step(t, 32, d.x.data(), d.y.data(), nullptr, 1e-2f, &loss, nullptr), KILN_OK);
            seq->push_back(loss);
        }
        kiln_trainer_destroy(t);
    }
    EXPECT_EQ(a, b);  // bit-identical
    EXPECT_LT(a.back(), 0.5 * a.front());
    kiln_trainer* other = mlp(6, 0.25f);  // another dropout seed: another loss sequence
    double l0;
    ASSERT_EQ(kiln_trainer_step(other, 32, d.x.data(), d.y.data(), nullptr, 1e-2f, &l0, nullptr), KILN_OK);
    EXPECT_NE(l0, a[0]);
    kiln_trainer_destroy(other);
}

TEST(Train, DropoutMaskKeepsTheExpectedFraction) {
    // Dropout p = 0.5 straight on the input: with w = identity the gradient of each weight shows the mask.
    const int64_t n = 64;
    std::vector<float> w(size_t(n * n), 0.0f);
    for (int64_t i = 0; i < n; ++i) w[size_t(i * n + i)] = 1.0f;
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(n, 32, &t), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_dropout(t, 0.5f), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_dense(t, n, w.data(), nullptr), KILN_OK);
    ASSERT_EQ(kiln_trainer_set_loss(t, KILN_LOSS_MSE, 1.0f, nullptr), KILN_OK);
    ASSERT_EQ(kiln_trainer_compile(t), KILN_OK);
    std::vector<float> x(size_t(32 * n), 1.0f), y(size_t(32 * n), 0.0f), out(size_t(32 * n));
    double loss;
    ASSERT_EQ(kiln_trainer_step(t, 32, x.data(), y.data(), nullptr, 0.0f, &loss, nullptr), KILN_OK);
    // z = x * mask (mask in {0, 2}): loss = mean(z^2) = 4 * kept fraction.
    EXPECT_NEAR(loss / 4.0, 0.5, 0.05);
    ASSERT_EQ(kiln_trainer_predict(t, 32, x.data(), out.data()), KILN_OK);  // evaluation: no dropout
    for (float v : out) ASSERT_EQ(v, 1.0f);
    kiln_trainer_destroy(t);
}

TEST(Train, StateRoundTripResumesExactly) {
    Data d;
    kiln_trainer* a = mlp(9, 0.1f);
    kiln_trainer* b = mlp(9, 0.1f);
    std::vector<double> straight, resumed;
    int64_t bytes;
    ASSERT_EQ(kiln_trainer_state_bytes(a, &bytes), KILN_OK);
    std::vector<char> state(static_cast<size_t>(bytes));
    for (int s = 0; s < 20; ++s) {
        double l;
        ASSERT_EQ(kiln_trainer_step(a, 32, d.x.data(), d.y.data(), nullptr, 1e-2f, &l, nullptr), KILN_OK);
        straight.push_back(l);
        if (s == 9) {
            ASSERT_EQ(kiln_trainer_save_state(a, state.data(), bytes), KILN_OK);
        }
    }
    ASSERT_EQ(kiln_trainer_load_state(b, state.data(), bytes), KILN_OK);
    int64_t steps;
    ASSERT_EQ(kiln_trainer_steps(b, &steps), KILN_OK);
    EXPECT_EQ(steps, 10);
    for (int s = 10; s < 20; ++s) {
        double l;
        ASSERT_EQ(kiln_trainer_step(b, 32, d.x.data(), d.y.data(), nullptr, 1e-2f, &l, nullptr), KILN_OK);
        resumed.push_back(l);
    }
    EXPECT_EQ(resumed, std::vector<double>(straight.begin() + 10, straight.end()));
    state[0] ^= 1;
    EXPECT_EQ(kiln_trainer_load_state(b, state.data(), bytes), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_load_state(b, state.data(), bytes - 4), KILN_ERR_SHAPE_MISMATCH);
    kiln_trainer_destroy(a);
    kiln_trainer_destroy(b);
}

TEST(Train, BadInputIsRefusedAndNothingChanges) {
    Data d;
    kiln_trainer* t = mlp(1, 0.0f);
    float before[4], after[4];
    ASSERT_EQ(kiln_trainer_param(t, 3, 0, before, 4), KILN_OK);
    double loss;
    std::vector<int32_t> bad = d.y;
    bad[5] = 4;
    EXPECT_EQ(kiln_trainer_step(t, 32, d.x.data(), bad.data(), nullptr, 1e-2f, &loss, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("label of row 5 is 4"), std::string::npos) << kiln_last_error();
    bad[5] = -1;
    EXPECT_EQ(kiln_trainer_step(t, 32, d.x.data(), bad.data(), nullptr, 1e-2f, &loss, nullptr), KILN_ERR_INVALID_ARGUMENT);
    std::vector<float> nan = d.x;
    nan[7] = std::nanf("");
    EXPECT_EQ(kiln_trainer_step(t, 32, nan.data(), d.y.data(), nullptr, 1e-2f, &loss, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("at step 0"), std::string::npos) << kiln_last_error();
    nan[7] = INFINITY;
    EXPECT_EQ(kiln_trainer_step(t, 32, nan.data(), d.y.data(), nullptr, 1e-2f, &loss, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_step(t, 0, d.x.data(), d.y.data(), nullptr, 1e-2f, &loss, nullptr), KILN_ERR_SHAPE_MISMATCH);
    EXPECT_EQ(kiln_trainer_step(t, 33, d.x.data(), d.y.data(), nullptr, 1e-2f, &loss, nullptr), KILN_ERR_SHAPE_MISMATCH);
    EXPECT_EQ(kiln_trainer_step(t, 32, d.x.data(), d.y.data(), nullptr, NAN, &loss, nullptr), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_trainer_param(t, 3, 0, after, 4), KILN_OK);
    EXPECT_EQ(0, std::memcmp(before, after, sizeof before));
    int64_t steps;
    kiln_trainer_steps(t, &steps);
    EXPECT_EQ(steps, 0);
    EXPECT_EQ(kiln_trainer_add_dense(t, 3, before, nullptr), KILN_ERR_INVALID_ARGUMENT);  // compiled
    kiln_trainer_destroy(t);

    kiln_trainer* u;
    ASSERT_EQ(kiln_trainer_create(4, 2, &u), KILN_OK);
    EXPECT_EQ(kiln_trainer_add_activation(u, KILN_UNARY_EXP, 0), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_dropout(u, 1.0f), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_add_residual(u, 1), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_trainer_compile(u), KILN_ERR_INVALID_ARGUMENT);  // no layers
    const float w[4] = {1, 2, 3, 4};
    ASSERT_EQ(kiln_trainer_add_dense(u, 1, w, nullptr), KILN_OK);
    EXPECT_EQ(kiln_trainer_compile(u), KILN_ERR_SHAPE_MISMATCH);  // cross-entropy needs 2 outputs
    kiln_optimizer o{KILN_OPT_ADAM, 0, 0.0f, 1.0f, 0.999f, 1e-8f, 0.0f, 0.0f, 0.0f};
    EXPECT_EQ(kiln_trainer_set_optimizer(u, &o), KILN_ERR_INVALID_ARGUMENT);  // beta1 = 1
    kiln_trainer_destroy(u);

    std::vector<int32_t> idx{0, 2, 5};
    float src[8] = {0, 1, 2, 3, 4, 5, 6, 7}, dst[3];
    EXPECT_EQ(kiln_gather_rows(3, idx.data(), 8, 4, src, dst), KILN_OK);
    EXPECT_EQ(dst[2], 5.0f);
    idx[1] = 8;
    EXPECT_EQ(kiln_gather_rows(3, idx.data(), 8, 4, src, dst), KILN_ERR_INVALID_ARGUMENT);
}

}  // namespace

namespace {

TEST(Train, EmbeddingGradientsAndBadIds) {
    const int64_t vocab = 5, dim = 3, seq = 4, batch = 3, out = 3;
    std::mt19937 rng(77);
    std::normal_distribution<float> nd(0.0f, 0.7f);
    std::vector<float> table(size_t(vocab * dim)), w(size_t(seq * dim * out));
    for (float& v : table) v = nd(rng);
    for (float& v : w) v = nd(rng);
    std::vector<int32_t> ids = {0, 4, 4, 2, 1, 1, 3, 0, 2, 2, 2, 4};  // id 4 twice in a row: gradients add
    std::vector<int32_t> labels = {2, 0, 1};
    kiln_trainer* t;
    ASSERT_EQ(kiln_trainer_create(seq, batch, &t), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_embedding(t, vocab, dim, table.data()), KILN_OK);
    ASSERT_EQ(kiln_trainer_add_dense(t, out, w.data(), nullptr), KILN_OK);
    ASSERT_EQ(kiln_trainer_compile(t), KILN_OK);
    double loss;
    ASSERT_EQ(kiln_trainer_step(t, batch, ids.data(), labels.data(), nullptr, 0.0f, &loss, nullptr), KILN_OK)
        << kiln_last_error();
    std::vector<double> tab(table.begin(), table.end()), wd(w.begin(), w.end());
    auto ref = [&]() {
        double total = 0;
        for (int64_t r = 0; r < batch; ++r) {
            std::vector<double> z(size_t(out), 0.0);
            for (int64_t q = 0; q < seq; ++q)
                for (int64_t c = 0; c < dim; ++c)
                    for (int64_t j = 0; j < out; ++j)
                        z[size_t(j)] += tab[size_t(ids[size_t(r * seq + q)] * dim + c)] * wd[size_t((q * dim + c) * out + j)];
            double mx = *std::max_element(z.begin(), z.end()), se = 0;
            for (double v : z) se += std::exp(v - mx);
            total += mx + std::log(se) - z[size_t(labels[size_t(r)])];
        }
        return total / double(batch);
    };
    EXPECT_NEAR(loss, ref(), 1e-5);
    std::vector<float> g(table.size());
    ASSERT_EQ(kiln_trainer_param(t, 0, 2, g.data(), int64_t(g.size())), KILN_OK);
    for (size_t i = 0; i < tab.size(); ++i) {
        const double keep = tab[i], h = 1e-5;
        tab[i] = keep + h;
        const double lp = ref();
        tab[i] = keep - h;
        const double lm = ref();
        tab[i] = keep;
        ASSERT_NEAR(g[i], (lp - lm) / (2 * h), 2e-4) << "table element " << i;
    }
    ids[6] = 5;
    EXPECT_EQ(kiln_trainer_step(t, batch, ids.data(), labels.data(), nullptr, 0.0f, &loss, nullptr),
              KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kiln_last_error()).find("token id 5 at row 1, position 2"), std::string::npos)
        << kiln_last_error();
    kiln_trainer_destroy(t);
}

// The AVX-512 gradient epilogue (activation derivative in place, bias sums) gives the reference's
// results bit for bit: odd widths (masked tails), one row, and NaN/Inf gradients where ReLU's
// output is 0 (they must become +0, as y > 0 ? g : 0 does).
TEST(Train, ActivationAndBiasGradientKernelsAgreeBitForBit) {
    int32_t best = 0;
    kiln_isa_best(&best);
    if (best < KILN_ISA_AVX2) GTEST_SKIP() << "no AVX2 on this CPU";
    for (int32_t level : {int32_t(KILN_ISA_AVX2), int32_t(KILN_ISA_AVX512)}) {
    if (level > best) break;
    SCOPED_TRACE("isa " + std::to_string(level));
    const auto fast = level == KILN_ISA_AVX2 ? kiln::train::act_bias_grad_avx2 : kiln::train::act_bias_grad_avx512;
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int32_t act : {KILN_UNARY_IDENTITY, KILN_UNARY_RELU, KILN_UNARY_LEAKY_RELU})
        for (int64_t rows : {1, 7, 128})
            for (int64_t cols : {1, 10, 16, 17, 63, 64, 65, 130}) {
                SCOPED_TRACE("act " + std::to_string(act) + ", " + std::to_string(rows) + "x" + std::to_string(cols));
                std::vector<float> y(size_t(rows * cols)), g(y.size());
                for (size_t i = 0; i < y.size(); ++i) {
                    y[i] = act == KILN_UNARY_IDENTITY ? nd(rng) : std::max(0.0f, nd(rng));
                    g[i] = nd(rng);
                    if (act == KILN_UNARY_RELU && y[i] == 0.0f && i % 3 == 0) g[i] = i % 2 ? NAN : -INFINITY;
                }
                std::vector<float> g_ref = g, g_fast = g, b_ref(size_t(cols), -1.0f), b_fast(size_t(cols), -2.0f);
                ASSERT_TRUE(kiln::train::act_bias_grad_ref(act, 0.1f, rows, cols, y.data(), g_ref.data(), b_ref.data()));
                ASSERT_TRUE(fast(act, 0.1f, rows, cols, y.data(), g_fast.data(), b_fast.data()));
                ASSERT_EQ(std::memcmp(g_ref.data(), g_fast.data(), g.size() * sizeof(float)), 0);
                ASSERT_EQ(std::memcmp(b_ref.data(), b_fast.data(), b_ref.size() * sizeof(float)), 0);
                for (size_t i = 0; i < y.size(); ++i) {
                    const float want = act == KILN_UNARY_IDENTITY || y[i] > 0.0f ? g[i]
                                       : act == KILN_UNARY_RELU              ? 0.0f
                                                                             : 0.1f * g[i];
                    ASSERT_EQ(std::memcmp(&want, &g_ref[i], sizeof want), 0) << "element " << i;
                }
                for (int64_t j = 0; j < cols; ++j) {
                    float sum = 0.0f;
                    for (int64_t r = 0; r < rows; ++r) sum += g_ref[size_t(r * cols + j)];
                    if (act == KILN_UNARY_RELU) {
                        ASSERT_TRUE(std::isfinite(sum));
                    }
                    ASSERT_EQ(std::memcmp(&sum, &b_ref[size_t(j)], sizeof sum), 0) << "column " << j;
                }
                // Without a bias the gradient is still masked.
                std::vector<float> g_nb = g;
                ASSERT_TRUE(fast(act, 0.1f, rows, cols, y.data(), g_nb.data(), nullptr));
                ASSERT_EQ(std::memcmp(g_ref.data(), g_nb.data(), g.size() * sizeof(float)), 0);
            }
    float y = 1, g = 1;
    EXPECT_FALSE(fast(KILN_UNARY_TANH, 0, 1, 1, &y, &g, nullptr));
    EXPECT_FALSE(kiln::train::act_bias_grad_ref(KILN_UNARY_TANH, 0, 1, 1, &y, &g, nullptr));
    }
}

// The step's reductions (loss blocks, gradient guard, bias sums) and the GEMMs do not depend on the
// thread count: 1, 2 and 3 threads give bit-identical losses and parameters.
TEST(Train, StepIsBitIdenticalOnAnyThreadCount) {
    int32_t threads_before = 1;
    kiln_threads_get(&threads_before);
    const int64_t batch = 128, in = 784, hidden = 64, out = 10;
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(batch * in)), w1(static_cast<size_t>(in * hidden)),
        b1(static_cast<size_t>(hidden)), w2(static_cast<size_t>(hidden * out)), b2(static_cast<size_t>(out));
    for (auto* v : {&x, &w1, &b1, &w2, &b2})
        for (float& f : *v) f = nd(rng) * 0.1f;
    std::vector<int32_t> y(static_cast<size_t>(batch));
    for (int32_t& l : y) l = int32_t(rng() % uint32_t(out));
    // Every ISA level: the vector kernels' tails must compute what their bodies do, wherever a
    // thread's chunk ends.
    kiln_test::for_each_isa([&](int32_t isa) {
    SCOPED_TRACE("isa " + std::to_string(isa));
    std::vector<std::vector<double>> losses;
    std::vector<std::vector<float>> weights;
    for (int32_t threads : {1, 2, 3}) {
        ASSERT_EQ(kiln_threads_set(threads), KILN_OK);
        kiln_trainer* t;
        ASSERT_EQ(kiln_trainer_create(in, batch, &t), KILN_OK);
        kiln_trainer_add_dense(t, hidden, w1.data(), b1.data());
        kiln_trainer_add_activation(t, KILN_UNARY_RELU, 0);
        kiln_trainer_add_dense(t, out, w2.data(), b2.data());
        kiln_trainer_set_loss(t, KILN_LOSS_SOFTMAX_CROSS_ENTROPY, 0, nullptr);
        kiln_optimizer o{KILN_OPT_ADAM, 0, 0.0f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, 0.0f};
        kiln_trainer_set_optimizer(t, &o);
        ASSERT_EQ(kiln_trainer_compile(t), KILN_OK);
        std::vector<double> l;
        for (int s = 0; s < 5; ++s) {
            double loss;
            int64_t correct;
            ASSERT_EQ(kiln_trainer_step(t, batch, x.data(), y.data(), nullptr, 1e-3f, &loss, &correct), KILN_OK);
            l.push_back(loss);
            l.push_back(double(correct));
        }
        losses.push_back(l);
        std::vector<float> w(w1.size());
        ASSERT_EQ(kiln_trainer_param(t, 0, 0, w.data(), int64_t(w.size())), KILN_OK);
        weights.push_back(w);
        kiln_trainer_destroy(t);
    }
    kiln_threads_set(threads_before);
    EXPECT_GT(losses[0][0], losses[0][8]);  // it learns
    for (size_t i = 1; i < losses.size(); ++i) {
        EXPECT_EQ(losses[i], losses[0]) << "threads " << i + 1;
        EXPECT_EQ(std::memcmp(weights[i].data(), weights[0].data(), weights[0].size() * sizeof(float)), 0)
            << "threads " << i + 1;
    }
    });
}

}  // namespace
