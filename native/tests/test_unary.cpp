#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/eltwise/eltwise_kernels.hpp"
#include "test_support.hpp"

namespace {

using kiln_test::for_each_isa;

double ref_unary(int op, double x, double alpha) { return kiln_test::ref_activation(op, alpha, x); }

// Documented accuracy of the vector versions against double precision.
double tolerance(int op, double want) {
    switch (op) {
        case KILN_UNARY_GELU:
        case KILN_UNARY_GELU_TANH: return 2e-6 * std::fabs(want) + 1e-6;
        case KILN_UNARY_SIGMOID:
        case KILN_UNARY_TANH: return 2e-6 * std::fabs(want) + 2e-7;
        case KILN_UNARY_EXP: return 3e-7 * std::fabs(want);
        case KILN_UNARY_SILU:
        case KILN_UNARY_ELU:
        case KILN_UNARY_SOFTPLUS:
        case KILN_UNARY_SELU:
        case KILN_UNARY_MISH: return 2e-6 * std::fabs(want) + 1e-30;
        case KILN_UNARY_HARD_SIGMOID: return 1.2e-7 * std::fabs(want) + 1.5e-7;  // alpha x + 1/2 cancels near 0
        case KILN_UNARY_HARD_SWISH: return 4e-7 * std::fabs(want) + 1e-30;        // x (x + 3) / 6: three roundings
        default: return 1.2e-7 * std::fabs(want) + 1e-30;
    }
}

TEST(Unary, EveryOpMatchesDoubleReferenceOnEveryIsa) {
    for_each_isa([](int32_t) {
        for (int op = KILN_UNARY_IDENTITY; op <= KILN_UNARY_LAST; ++op) {
            const bool positive = op == KILN_UNARY_LOG || op == KILN_UNARY_SQRT;
            const float lo = positive ? 1e-3f : (op == KILN_UNARY_EXP ? -80.0f : -12.0f);
            const float hi = op == KILN_UNARY_EXP ? 80.0f : 12.0f;
            for (int64_t n : {1, 15, 16, 17, 1000, 70001}) {
                auto a = kiln_test::random_floats(size_t(n), uint32_t(op * 1000 + n), lo, hi);
                if (n > 100) {  // include tiny magnitudes, where tanh/gelu cancel
                    for (int i = 0; i < 50; ++i) a[size_t(i)] = (positive ? 1.0f : (i % 2 ? -1.0f : 1.0f)) * std::ldexp(1.0f, -i / 3);
                }
                std::vector<float> out(static_cast<size_t>(n));
                int64_t shape[1] = {n}, unit[1] = {1};
                ASSERT_EQ(kiln_unary_f32(op, 0.1f, 1, shape, a.data(), unit, out.data(), unit), KILN_OK) << kiln_last_error();
                for (int64_t i = 0; i < n; ++i) {
                    const double want = ref_unary(op, a[size_t(i)], 0.1f);
                    ASSERT_NEAR(out[size_t(i)], want, tolerance(op, want)) << "op " << op << " x=" << a[size_t(i)];
                }
            }
        }
    });
}

// log and softplus (the vector log) over the whole float range: subnormals, values next to 1,
// special values.
TEST(Unary, LogAndSoftplusOverTheWholeRange) {
    for_each_isa([](int32_t) {
        std::vector<float> x;
        for (int e = -149; e <= 127; ++e)
            for (int k = 0; k < 64; ++k) x.push_back(std::ldexp(1.0f + float(k) / 64.0f, e));
        for (int k = 1; k < 200; ++k) {
            x.push_back(1.0f + float(k) * 1.1920929e-7f);
            x.push_back(1.0f - float(k) * 5.9604645e-8f);
        }
        x.erase(std::remove_if(x.begin(), x.end(), [](float v) { return !std::isfinite(v) || v <= 0; }), x.end());
        const int64_t n = int64_t(x.size());
        std::vector<float> out(x.size());
        int64_t shape[1] = {n}, unit[1] = {1};
        ASSERT_EQ(kiln_unary_f32(KILN_UNARY_LOG, 0, 1, shape, x.data(), unit, out.data(), unit), KILN_OK);
        for (size_t i = 0; i < x.size(); ++i) {
            const double want = std::log(double(x[i]));
            ASSERT_NEAR(out[i], want, 1.2e-7 * std::fabs(want) + 1e-30) << "log x=" << x[i];
        }
        std::vector<float> y;
        for (float v = -30.0f; v <= 30.0f; v += 0.0137f) y.push_back(v);
        for (int e = -40; e < 0; ++e) {
            y.push_back(std::ldexp(1.0f, e));
            y.push_back(-std::ldexp(1.0f, e));
        }
        std::vector<float> sp(y.size());
        shape[0] = int64_t(y.size());
        ASSERT_EQ(kiln_unary_f32(KILN_UNARY_SOFTPLUS, 0, 1, shape, y.data(), unit, sp.data(), unit), KILN_OK);
        for (size_t i = 0; i < y.size(); ++i) {
            const double want = std::log1p(std::exp(double(y[i])));
            ASSERT_NEAR(sp[i], want, 4e-7 * std::fabs(want) + 1e-30) << "softplus x=" << y[i];  // exp: 3e-7
        }
        const float special[5] = {NAN, INFINITY, -INFINITY, 0.0f, -1.0f};
        float got[5];
        shape[0] = 5;
        ASSERT_EQ(kiln_unary_f32(KILN_UNARY_LOG, 0, 1, shape, special, unit, got, unit), KILN_OK);
        EXPECT_TRUE(std::isnan(got[0]));
        EXPECT_EQ(got[1], INFINITY);
        EXPECT_TRUE(std::isnan(got[2]));
        EXPECT_EQ(got[3], -INFINITY);
        EXPECT_TRUE(std::isnan(got[4]));
        ASSERT_EQ(kiln_unary_f32(KILN_UNARY_SOFTPLUS, 0, 1, shape, special, unit, got, unit), KILN_OK);
        EXPECT_TRUE(std::isnan(got[0]));
        EXPECT_EQ(got[1], INFINITY);
        EXPECT_GE(got[2], 0.0f);
        EXPECT_LT(got[2], 1e-37f);
        EXPECT_NEAR(got[3], std::log(2.0), 1e-7);
    });
}

TEST(Unary, NaNAndInfinities) {
    for_each_isa([](int32_t) {
        const float in[4] = {NAN, INFINITY, -INFINITY, 0.0f};
        float out[4];
        int64_t shape[1] = {4}, unit[1] = {1};
        ASSERT_EQ(kiln_unary_f32(KILN_UNARY_RELU, 0, 1, shape, in, unit, out, unit), KILN_OK);
        EXPECT_TRUE(std::isnan(out[0]));
        EXPECT_EQ(out[1], INFINITY);
        EXPECT_EQ(out[2], 0.0f);
        ASSERT_EQ(kiln_unary_f32(KILN_UNARY_SIGMOID, 0, 1, shape, in, unit, out, unit), KILN_OK);
        EXPECT_EQ(out[1], 1.0f);
        EXPECT_NEAR(out[2], 0.0f, 1e-37f);  // exp's input is clamped at 88.72: 1/(1+3.4e38)
        EXPECT_EQ(out[3], 0.5f);
        ASSERT_EQ(kiln_unary_f32(KILN_UNARY_TANH, 0, 1, shape, in, unit, out, unit), KILN_OK);
        EXPECT_EQ(out[1], 1.0f);
        EXPECT_EQ(out[2], -1.0f);
        EXPECT_EQ(out[3], 0.0f);
        for (int op : {KILN_UNARY_EXP, KILN_UNARY_SIGMOID, KILN_UNARY_TANH, KILN_UNARY_GELU, KILN_UNARY_GELU_TANH,
                       KILN_UNARY_SILU, KILN_UNARY_ELU, KILN_UNARY_SOFTPLUS, KILN_UNARY_SELU, KILN_UNARY_MISH}) {
            ASSERT_EQ(kiln_unary_f32(op, 0, 1, shape, in, unit, out, unit), KILN_OK);
            EXPECT_TRUE(std::isnan(out[0])) << "op " << op << " must keep NaN";
        }
        EXPECT_EQ(kiln_unary_f32(99, 0, 1, shape, in, unit, out, unit), KILN_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(kiln_unary_f32(KILN_UNARY_LEAKY_RELU, std::nanf(""), 1, shape, in, unit, out, unit),
                  KILN_ERR_INVALID_ARGUMENT);  // a NaN slope would make every negative input NaN
    });
}

}  // namespace
