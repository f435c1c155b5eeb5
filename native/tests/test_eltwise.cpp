#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/eltwise/eltwise_kernels.hpp"
#include "test_support.hpp"

namespace {

using kiln_test::for_each_isa;
using kiln_test::random_floats;

double ref_op(int op, double a, double b) {
    switch (op) {
        case KILN_BINARY_ADD: return a + b;
        case KILN_BINARY_SUB: return a - b;
        case KILN_BINARY_MUL: return a * b;
        case KILN_BINARY_DIV: return a / b;
        case KILN_BINARY_MAX: return a > b ? a : b;
        default: return a < b ? a : b;
    }
}

// float result vs double reference: one rounding, so within half an ulp (allow 1 ulp).
void expect_close(float got, double want, const char* what, int64_t i) {
    const double tol = std::abs(want) * 1.2e-7 + 1e-30;
    ASSERT_NEAR(got, want, tol) << what << " at " << i;
}

TEST(Eltwise, BinaryContiguousMatchesDoubleReferenceEverySizeEveryIsa) {
    for_each_isa([](int32_t) {
        for (int op = KILN_BINARY_ADD; op <= KILN_BINARY_MIN; ++op) {
            for (int64_t n : {0, 1, 2, 3, 15, 16, 17, 31, 33, 63, 64, 65, 70, 127, 257, 1031, 100003}) {
                auto a = random_floats(size_t(n), uint32_t(n * 7 + op));
                auto b = random_floats(size_t(n), uint32_t(n * 13 + op), 0.5f, 3.0f);
                std::vector<float> out(size_t(n), -1.0f);
                int64_t shape[1] = {n}, unit[1] = {1};
                ASSERT_EQ(kiln_binary_f32(op, 1, shape, a.data(), unit, b.data(), unit, out.data(), unit),
                          KILN_OK) << kiln_last_error();
                for (int64_t i = 0; i < n; ++i)
                    expect_close(out[size_t(i)], ref_op(op, a[size_t(i)], b[size_t(i)]), "binary", i);
            }
        }
    });
}

TEST(Eltwise, BroadcastsRowsColumnsAndScalars) {
    for_each_isa([](int32_t) {
        const int64_t rows = 37, cols = 53;
        auto a = random_floats(size_t(rows * cols), 1);
        auto row = random_floats(size_t(cols), 2);
        auto col = random_floats(size_t(rows), 3);
        std::vector<float> out(size_t(rows * cols));
        int64_t shape[2] = {rows, cols}, full[2] = {cols, 1};
        int64_t row_bc[2] = {0, 1}, col_bc[2] = {1, 0}, scalar_bc[2] = {0, 0};
        ASSERT_EQ(kiln_binary_f32(KILN_BINARY_ADD, 2, shape, a.data(), full, row.data(), row_bc, out.data(), full), KILN_OK);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c)
                expect_close(out[size_t(r * cols + c)], double(a[size_t(r * cols + c)]) + row[size_t(c)], "row", r * cols + c);
        ASSERT_EQ(kiln_binary_f32(KILN_BINARY_MUL, 2, shape, col.data(), col_bc, a.data(), full, out.data(), full), KILN_OK);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c)
                expect_close(out[size_t(r * cols + c)], double(col[size_t(r)]) * a[size_t(r * cols + c)], "col", r * cols + c);
        float s = 3.5f;
        ASSERT_EQ(kiln_binary_f32(KILN_BINARY_SUB, 2, shape, a.data(), full, &s, scalar_bc, out.data(), full), KILN_OK);
        for (int64_t i = 0; i < rows * cols; ++i) expect_close(out[size_t(i)], double(a[size_t(i)]) - 3.5, "scalar", i);
    });
}

TEST(Eltwise, StridedOperandsTransposedOutput) {
    for_each_isa([](int32_t) {
        const int64_t rows = 19, cols = 23;
        auto a = random_floats(size_t(rows * cols), 4);
        auto b = random_floats(size_t(rows * cols), 5);
        std::vector<float> out(size_t(rows * cols));
        int64_t shape[2] = {rows, cols}, full[2] = {cols, 1}, transposed[2] = {1, rows};
        ASSERT_EQ(kiln_binary_f32(KILN_BINARY_ADD, 2, shape, a.data(), full, b.data(), full, out.data(), transposed), KILN_OK);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c)
                expect_close(out[size_t(c * rows + r)], double(a[size_t(r * cols + c)]) + b[size_t(r * cols + c)], "t", r);
    });
}

TEST(Eltwise, InPlaceIsAllowedPartialOverlapIsRefused) {
    std::vector<float> a(100, 1.0f), b(100, 2.0f);
    int64_t shape[1] = {100}, unit[1] = {1};
    ASSERT_EQ(kiln_binary_f32(KILN_BINARY_ADD, 1, shape, a.data(), unit, b.data(), unit, a.data(), unit), KILN_OK);
    EXPECT_EQ(a[99], 3.0f);
    int64_t shape90[1] = {90};
    EXPECT_EQ(kiln_binary_f32(KILN_BINARY_ADD, 1, shape90, a.data(), unit, b.data(), unit, a.data() + 5, unit),
              KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "out overlaps a"), nullptr) << kiln_last_error();
}

TEST(Eltwise, MaxMinPropagateNaNOnEveryIsa) {
    for_each_isa([](int32_t) {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::vector<float> a = {nan, 1.0f, nan, 2.0f}, b = {1.0f, nan, nan, 3.0f};
        a.resize(40, 0.0f);
        b.resize(40, 0.0f);
        std::vector<float> out(40);
        int64_t shape[1] = {40}, unit[1] = {1};
        for (int op : {KILN_BINARY_MAX, KILN_BINARY_MIN}) {
            ASSERT_EQ(kiln_binary_f32(op, 1, shape, a.data(), unit, b.data(), unit, out.data(), unit), KILN_OK);
            EXPECT_TRUE(std::isnan(out[0]));
            EXPECT_TRUE(std::isnan(out[1]));
            EXPECT_TRUE(std::isnan(out[2]));
            EXPECT_EQ(out[3], op == KILN_BINARY_MAX ? 3.0f : 2.0f);
        }
    });
}

TEST(Eltwise, ScaleMatchesReference) {
    for_each_isa([](int32_t) {
        for (int64_t n : {0, 1, 17, 64, 65, 1000, 70001}) {
            auto a = random_floats(size_t(n), uint32_t(n));
            std::vector<float> out(static_cast<size_t>(n));
            int64_t shape[1] = {n}, unit[1] = {1};
            ASSERT_EQ(kiln_scale_f32(1, shape, a.data(), unit, -0.75f, out.data(), unit), KILN_OK);
            for (int64_t i = 0; i < n; ++i) expect_close(out[size_t(i)], -0.75 * a[size_t(i)], "scale", i);
        }
    });
}

TEST(Eltwise, SumIsAccurateAndIndependentOfThreadCount) {
    const int64_t n = 3000017;
    auto a = random_floats(size_t(n), 99, 0.0f, 1.0f);
    double want = 0.0;
    for (float v : a) want += v;
    int64_t shape[1] = {n}, unit[1] = {1};
    for_each_isa([&](int32_t) {
        double got1 = 0, got3 = 0;
        int32_t threads = 0;
        kiln_threads_get(&threads);
        kiln_threads_set(1);
        ASSERT_EQ(kiln_sum_f32(1, shape, a.data(), unit, &got1), KILN_OK);
        kiln_threads_set(3);
        ASSERT_EQ(kiln_sum_f32(1, shape, a.data(), unit, &got3), KILN_OK);
        kiln_threads_set(threads);
        EXPECT_EQ(got1, got3) << "sum must not depend on the thread count";
        EXPECT_NEAR(got1, want, want * 1e-6);
    });
}

TEST(Eltwise, SumOfStridedViewAndEmpty) {
    for_each_isa([](int32_t) {
        const int64_t rows = 31, cols = 45;
        auto a = random_floats(size_t(rows * cols), 6);
        int64_t shape[2] = {cols, rows}, transposed[2] = {1, cols};
        double want = 0;
        for (float v : a) want += v;
        double got = 0;
        ASSERT_EQ(kiln_sum_f32(2, shape, a.data(), transposed, &got), KILN_OK);
        EXPECT_NEAR(got, want, 1e-3);
        int64_t empty[2] = {0, 5}, st[2] = {5, 1};
        got = 42;
        ASSERT_EQ(kiln_sum_f32(2, empty, nullptr, st, &got), KILN_OK);
        EXPECT_EQ(got, 0.0);
        float scalar = 2.5f;
        ASSERT_EQ(kiln_sum_f32(0, nullptr, &scalar, nullptr, &got), KILN_OK);
        EXPECT_EQ(got, 2.5);
    });
}

TEST(Eltwise, BadArgumentsReturnStatusesWithMessages) {
    float x[4] = {};
    int64_t shape[1] = {4}, unit[1] = {1}, neg_shape[1] = {-3}, neg_stride[1] = {-1};
    EXPECT_EQ(kiln_binary_f32(9, 1, shape, x, unit, x, unit, x, unit), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "op is 9"), nullptr);
    EXPECT_EQ(kiln_binary_f32(0, 9, shape, x, unit, x, unit, x, unit), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_binary_f32(0, 1, neg_shape, x, unit, x, unit, x, unit), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "shape[0] is -3"), nullptr) << kiln_last_error();
    EXPECT_EQ(kiln_binary_f32(0, 1, shape, x, neg_stride, x, unit, x, unit), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_binary_f32(0, 1, shape, nullptr, unit, x, unit, x, unit), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "a is NULL"), nullptr);
    EXPECT_EQ(kiln_binary_f32(0, 1, nullptr, x, unit, x, unit, x, unit), KILN_ERR_INVALID_ARGUMENT);
    int64_t huge[2] = {INT64_MAX / 2, 4}, huge_strides[2] = {4, 1};
    EXPECT_EQ(kiln_binary_f32(0, 2, huge, x, huge_strides, x, huge_strides, x, huge_strides), KILN_ERR_OVERFLOW);
    EXPECT_EQ(kiln_sum_f32(1, shape, x, unit, nullptr), KILN_ERR_INVALID_ARGUMENT);
}

}  // namespace
