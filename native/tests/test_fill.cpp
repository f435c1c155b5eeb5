#include <cmath>
#include <cstring>

#include "test_support.hpp"

namespace {

TEST(Fill, PatternFillsEveryElementOfAStridedView) {
    std::vector<int32_t> buf(6 * 8, 0);
    int64_t shape[2] = {6, 4}, strides[2] = {8, 2};
    int32_t v = 0x12345678;
    ASSERT_EQ(kiln_fill_pattern(4, 2, shape, buf.data(), strides, &v), KILN_OK);
    for (int r = 0; r < 6; ++r)
        for (int c = 0; c < 8; ++c) EXPECT_EQ(buf[size_t(r * 8 + c)], c % 2 == 0 ? v : 0) << r << "," << c;
    EXPECT_EQ(kiln_fill_pattern(3, 2, shape, buf.data(), strides, &v), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_fill_pattern(4, 2, shape, buf.data(), strides, nullptr), KILN_ERR_INVALID_ARGUMENT);
}

TEST(Fill, CopyStridedTransposes) {
    std::vector<uint16_t> src(5 * 7), dst(5 * 7, 0);
    for (size_t i = 0; i < src.size(); ++i) src[i] = uint16_t(i);
    int64_t shape[2] = {5, 7}, s_src[2] = {7, 1}, s_dst[2] = {1, 5};
    ASSERT_EQ(kiln_copy_strided(2, 2, shape, src.data(), s_src, dst.data(), s_dst), KILN_OK);
    for (int r = 0; r < 5; ++r)
        for (int c = 0; c < 7; ++c) EXPECT_EQ(dst[size_t(c * 5 + r)], src[size_t(r * 7 + c)]);
}

TEST(Fill, RandomIsReproducibleAndIndependentOfStridesThreadsAndIsa) {
    const int64_t n = 100000;
    std::vector<float> contiguous(n), strided(2 * n);
    int64_t shape[1] = {n}, unit[1] = {1}, two[1] = {2};
    ASSERT_EQ(kiln_fill_random(KILN_DTYPE_F32, KILN_RANDOM_NORMAL, 1, shape, contiguous.data(), unit, 0.0, 1.0, 42), KILN_OK);
    int32_t threads = 0;
    kiln_threads_get(&threads);
    kiln_threads_set(1);
    ASSERT_EQ(kiln_fill_random(KILN_DTYPE_F32, KILN_RANDOM_NORMAL, 1, shape, strided.data(), two, 0.0, 1.0, 42), KILN_OK);
    kiln_threads_set(threads);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(contiguous[size_t(i)], strided[size_t(2 * i)]) << i;
    double mean = 0, sq = 0;
    for (float v : contiguous) mean += v;
    mean /= n;
    for (float v : contiguous) sq += (v - mean) * (v - mean);
    EXPECT_NEAR(mean, 0.0, 0.02);
    EXPECT_NEAR(std::sqrt(sq / n), 1.0, 0.02);
    std::vector<float> other(n);
    ASSERT_EQ(kiln_fill_random(KILN_DTYPE_F32, KILN_RANDOM_NORMAL, 1, shape, other.data(), unit, 0.0, 1.0, 43), KILN_OK);
    EXPECT_NE(std::memcmp(other.data(), contiguous.data(), sizeof(float) * n), 0) << "seed must matter";
}

TEST(Fill, UniformStaysInHalfOpenRange) {
    const int64_t n = 200000;
    std::vector<float> v(n);
    int64_t shape[1] = {n}, unit[1] = {1};
    ASSERT_EQ(kiln_fill_random(KILN_DTYPE_F32, KILN_RANDOM_UNIFORM, 1, shape, v.data(), unit, -1.0, 1.0, 7), KILN_OK);
    double mean = 0;
    for (float x : v) {
        ASSERT_GE(x, -1.0f);
        ASSERT_LT(x, 1.0f);
        mean += x;
    }
    EXPECT_NEAR(mean / n, 0.0, 0.01);
}

TEST(Fill, RandomRefusesBadParameters) {
    float x[4];
    int64_t shape[1] = {4}, unit[1] = {1};
    EXPECT_EQ(kiln_fill_random(KILN_DTYPE_I32, 0, 1, shape, x, unit, 0, 1, 1), KILN_ERR_DTYPE_MISMATCH);
    EXPECT_EQ(kiln_fill_random(KILN_DTYPE_F32, 5, 1, shape, x, unit, 0, 1, 1), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_fill_random(KILN_DTYPE_F32, KILN_RANDOM_UNIFORM, 1, shape, x, unit, 2, 1, 1), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_fill_random(KILN_DTYPE_F32, KILN_RANDOM_NORMAL, 1, shape, x, unit, 0, -1, 1), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_fill_random(KILN_DTYPE_F32, KILN_RANDOM_NORMAL, 1, shape, x, unit, NAN, 1, 1), KILN_ERR_INVALID_ARGUMENT);
}

}  // namespace
