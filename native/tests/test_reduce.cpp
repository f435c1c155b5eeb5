#include <algorithm>
#include <array>
#include <functional>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "test_support.hpp"

namespace {

using kiln_test::for_each_isa;
using kiln_test::random_floats;

TEST(Reduce, EveryOpEveryAxisLayoutMatchesDouble) {
    for_each_isa([](int32_t) {
        for (auto dims : std::vector<std::array<int64_t, 3>>{{1, 1000, 1}, {7, 33, 1}, {5, 17, 9}, {1, 64, 70}, {3, 1, 5}, {2, 70001, 1}}) {
            const int64_t outer = dims[0], len = dims[1], inner = dims[2];
            auto a = random_floats(size_t(outer * len * inner), uint32_t(outer + len + inner));
            std::vector<float> out(static_cast<size_t>(outer * inner));
            for (int op = KILN_REDUCE_SUM; op <= KILN_REDUCE_MIN; ++op) {
                ASSERT_EQ(kiln_reduce_f32(op, outer, len, inner, a.data(), out.data()), KILN_OK) << kiln_last_error();
                for (int64_t o = 0; o < outer; ++o)
                    for (int64_t i = 0; i < inner; ++i) {
                        double s = 0, mx = -1e30, mn = 1e30;
                        for (int64_t r = 0; r < len; ++r) {
                            const double v = a[size_t((o * len + r) * inner + i)];
                            s += v;
                            mx = std::max(mx, v);
                            mn = std::min(mn, v);
                        }
                        const double want = op == KILN_REDUCE_SUM ? s : op == KILN_REDUCE_MEAN ? s / double(len)
                                          : op == KILN_REDUCE_MAX ? mx : mn;
                        ASSERT_NEAR(out[size_t(o * inner + i)], want, 1e-6 * (std::fabs(want) + double(len) * 1e-3))
                            << "op " << op << " dims " << outer << "," << len << "," << inner;
                    }
            }
        }
    });
}

TEST(Reduce, NaNPropagatesAndEmptyAxes) {
    std::vector<float> a = {1, NAN, 3, 4};
    float out[4];
    ASSERT_EQ(kiln_reduce_f32(KILN_REDUCE_MAX, 1, 4, 1, a.data(), out), KILN_OK);
    EXPECT_TRUE(std::isnan(out[0]));
    ASSERT_EQ(kiln_reduce_f32(KILN_REDUCE_MIN, 2, 1, 2, a.data(), out), KILN_OK);
    EXPECT_EQ(out[0], 1.0f);
    EXPECT_TRUE(std::isnan(out[1]));
    ASSERT_EQ(kiln_reduce_f32(KILN_REDUCE_SUM, 2, 0, 1, nullptr, out), KILN_OK);
    EXPECT_EQ(out[0], 0.0f);
    EXPECT_EQ(kiln_reduce_f32(KILN_REDUCE_MAX, 2, 0, 1, nullptr, out), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_reduce_f32(9, 1, 1, 1, a.data(), out), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_reduce_f32(KILN_REDUCE_SUM, 1, 4, 1, a.data(), a.data() + 1), KILN_ERR_INVALID_ARGUMENT);
}

TEST(Softmax, RowsMatchDoubleAndSumToOne) {
    for_each_isa([](int32_t) {
        for (int64_t cols : {1, 3, 16, 17, 100, 1000}) {
            const int64_t rows = 7;
            auto x = random_floats(size_t(rows * cols), uint32_t(cols), -20.0f, 20.0f);
            std::vector<float> y(x.size()), ly(x.size());
            ASSERT_EQ(kiln_softmax_f32(0, rows, cols, x.data(), y.data()), KILN_OK);
            ASSERT_EQ(kiln_softmax_f32(1, rows, cols, x.data(), ly.data()), KILN_OK);
            for (int64_t r = 0; r < rows; ++r) {
                double mx = -1e30, s = 0, total = 0;
                for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, double(x[size_t(r * cols + c)]));
                for (int64_t c = 0; c < cols; ++c) s += std::exp(x[size_t(r * cols + c)] - mx);
                for (int64_t c = 0; c < cols; ++c) {
                    const double v = x[size_t(r * cols + c)];
                    const double p = std::exp(v - mx) / s;
                    ASSERT_NEAR(y[size_t(r * cols + c)], p, 2e-6 * p + 1e-12);
                    ASSERT_NEAR(ly[size_t(r * cols + c)], v - mx - std::log(s), 2e-5);
                    total += y[size_t(r * cols + c)];
                }
                ASSERT_NEAR(total, 1.0, 1e-5);
            }
        }
    });
}

TEST(Softmax, InPlaceAndNaNRows) {
    for_each_isa([](int32_t) {
        std::vector<float> x = {1, 2, 3, NAN, 0, 0, 0, 0};
        x.resize(40, 0.0f);
        ASSERT_EQ(kiln_softmax_f32(0, 2, 20, x.data(), x.data()), KILN_OK);
        for (int c = 0; c < 20; ++c) EXPECT_TRUE(std::isnan(x[size_t(c)])) << c;
        for (int c = 20; c < 40; ++c) EXPECT_NEAR(x[size_t(c)], 0.05f, 1e-7);
        EXPECT_EQ(kiln_softmax_f32(2, 1, 1, x.data(), x.data()), KILN_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(kiln_softmax_f32(0, 1, 4, x.data(), x.data() + 1), KILN_ERR_INVALID_ARGUMENT);
    });
}

TEST(LayerNorm, MatchesDoubleWithAndWithoutAffine) {
    for_each_isa([](int32_t) {
        for (int64_t cols : {1, 5, 16, 33, 512, 1001}) {
            const int64_t rows = 9;
            auto x = random_floats(size_t(rows * cols), uint32_t(cols), -3.0f, 5.0f);
            auto gamma = random_floats(size_t(cols), 1), beta = random_floats(size_t(cols), 2);
            std::vector<float> y(x.size()), mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
            for (bool affine : {false, true}) {
                ASSERT_EQ(kiln_layer_norm_f32(rows, cols, x.data(), affine ? gamma.data() : nullptr,
                                              affine ? beta.data() : nullptr, 1e-5f, y.data(), mean.data(), rstd.data()),
                          KILN_OK);
                for (int64_t r = 0; r < rows; ++r) {
                    double m = 0, v = 0;
                    for (int64_t c = 0; c < cols; ++c) m += x[size_t(r * cols + c)];
                    m /= double(cols);
                    for (int64_t c = 0; c < cols; ++c) v += (x[size_t(r * cols + c)] - m) * (x[size_t(r * cols + c)] - m);
                    v /= double(cols);
                    const double rs = 1.0 / std::sqrt(v + 1e-5);
                    ASSERT_NEAR(mean[size_t(r)], m, 1e-5);
                    ASSERT_NEAR(rstd[size_t(r)], rs, 1e-5 * rs);
                    for (int64_t c = 0; c < cols; ++c) {
                        double want = (x[size_t(r * cols + c)] - m) * rs;
                        if (affine) want = want * gamma[size_t(c)] + beta[size_t(c)];
                        ASSERT_NEAR(y[size_t(r * cols + c)], want, 2e-5 * (std::fabs(want) + 1));
                    }
                }
            }
        }
    });
    float x[2] = {1, 2}, y[2];
    EXPECT_EQ(kiln_layer_norm_f32(1, 2, x, nullptr, nullptr, -1.0f, y, nullptr, nullptr), KILN_ERR_INVALID_ARGUMENT);
}

TEST(ArgmaxTopk, FirstOnTiesNaNLargestAndSortedTopK) {
    const float x[12] = {1, 5, 5, 2, /**/ -1, NAN, 3, NAN, /**/ 0, 0, 0, 0};
    int32_t am[3];
    ASSERT_EQ(kiln_argmax_f32(3, 4, x, am), KILN_OK);
    EXPECT_EQ(am[0], 1);
    EXPECT_EQ(am[1], 1);
    EXPECT_EQ(am[2], 0);
    float v[6];
    int32_t idx[6];
    ASSERT_EQ(kiln_topk_f32(3, 4, 2, x, v, idx), KILN_OK);
    EXPECT_EQ(idx[0], 1);
    EXPECT_EQ(idx[1], 2);
    EXPECT_EQ(v[0], 5.0f);
    EXPECT_EQ(idx[2], 1);
    EXPECT_EQ(idx[3], 3);
    EXPECT_EQ(idx[4], 0);
    EXPECT_EQ(idx[5], 1);
    EXPECT_EQ(kiln_topk_f32(3, 4, 5, x, v, idx), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_argmax_f32(1, 0, x, am), KILN_ERR_INVALID_ARGUMENT);

    auto big = random_floats(5000, 9);
    std::vector<float> tv(10);
    std::vector<int32_t> ti(10);
    ASSERT_EQ(kiln_topk_f32(1, 5000, 10, big.data(), tv.data(), ti.data()), KILN_OK);
    auto sorted = big;
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    for (int j = 0; j < 10; ++j) {
        EXPECT_EQ(tv[size_t(j)], sorted[size_t(j)]);
        EXPECT_EQ(big[size_t(ti[size_t(j)])], tv[size_t(j)]);
    }
}

}  // namespace
