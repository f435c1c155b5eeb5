#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/gemm/gemm_kernels.hpp"
#include "test_support.hpp"

namespace {

using kiln_test::for_each_isa;
using kiln_test::random_floats;

struct Case {
    int ta, tb;
    int64_t m, n, k;
    float alpha, beta;
    int64_t pad;  // extra leading-dimension padding
};

// op(A) element [i][p] from storage.
inline float opa(const Case& c, const std::vector<float>& a, int64_t lda, int64_t i, int64_t p) {
    return c.ta ? a[size_t(p * lda + i)] : a[size_t(i * lda + p)];
}
inline float opb(const Case& c, const std::vector<float>& b, int64_t ldb, int64_t p, int64_t j) {
    return c.tb ? b[size_t(j * ldb + p)] : b[size_t(p * ldb + j)];
}

double act_ref(int op, double x, double alpha = 0) {
    switch (op) {
        case KILN_UNARY_RELU: return x < 0 ? 0 : x;
        case KILN_UNARY_LEAKY_RELU: return x < 0 ? alpha * x : x;
        case KILN_UNARY_GELU: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
        case KILN_UNARY_SIGMOID: return 1 / (1 + std::exp(-x));
        case KILN_UNARY_TANH: return std::tanh(x);
        default: return x;
    }
}

// Runs one case through kiln_sgemm (or the packed path) and checks every element against a
// double-precision reference with a bound proportional to K * eps * sum |a||b|.
void check_case(const Case& c, uint32_t seed, bool packed = false, const kiln_epilogue* ep = nullptr) {
    const int64_t lda = (c.ta ? c.m : c.k) + c.pad, ldb = (c.tb ? c.k : c.n) + c.pad, ldc = c.n + c.pad;
    const int64_t a_rows = c.ta ? c.k : c.m, b_rows = c.tb ? c.n : c.k;
    auto a = random_floats(size_t(std::max<int64_t>(1, a_rows * lda)), seed);
    auto b = random_floats(size_t(std::max<int64_t>(1, b_rows * ldb)), seed + 1);
    auto c0 = random_floats(size_t(std::max<int64_t>(1, c.m * ldc)), seed + 2);
    if (c.beta == 0.0f)  // beta = 0 must never read C
        for (auto& v : c0) v = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> got = c0;
    if (packed) {
        kiln_packed_b* pb = nullptr;
        ASSERT_EQ(kiln_sgemm_pack_b(c.tb, c.k, c.n, b.data(), ldb, &pb), KILN_OK) << kiln_last_error();
        ASSERT_EQ(kiln_sgemm_packed(c.ta, c.m, c.alpha, a.data(), lda, pb, c.beta, got.data(), ldc, ep), KILN_OK)
            << kiln_last_error();
        kiln_packed_b_destroy(pb);
    } else {
        ASSERT_EQ(kiln_sgemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a.data(), lda, b.data(), ldb, c.beta,
                             got.data(), ldc, ep), KILN_OK) << kiln_last_error();
    }
    for (int64_t i = 0; i < c.m; ++i) {
        for (int64_t j = 0; j < c.n; ++j) {
            double sum = 0, mag = 0;
            for (int64_t p = 0; p < c.k; ++p) {
                const double prod = double(opa(c, a, lda, i, p)) * opb(c, b, ldb, p, j);
                sum += prod;
                mag += std::fabs(prod);
            }
            double want = double(c.alpha) * sum;
            if (c.beta != 0.0f) want += double(c.beta) * c0[size_t(i * ldc + j)];
            double tol = (double(c.k) + 2) * 1.2e-7 * (std::fabs(c.alpha) * mag + std::fabs(c.beta) * 2) + 1e-6;
            if (ep) {
                if (ep->bias) want += ep->bias[j];
                want = act_ref(ep->activation, want, ep->activation_alpha);
                if (ep->residual) want += ep->residual[i * ep->ld_residual + j];
                tol = tol * 1.5 + 4e-6 * std::fabs(want);
            }
            const float g = got[size_t(i * ldc + j)];
            ASSERT_NEAR(g, want, tol) << "m=" << c.m << " n=" << c.n << " k=" << c.k << " ta=" << c.ta
                                      << " tb=" << c.tb << " alpha=" << c.alpha << " beta=" << c.beta
                                      << " at [" << i << "," << j << "] seed=" << seed;
        }
        // Padding columns of C are never written.
        for (int64_t j = c.n; j < ldc; ++j) {
            const float before = c0[size_t(i * ldc + j)], after = got[size_t(i * ldc + j)];
            ASSERT_TRUE(std::memcmp(&before, &after, 4) == 0) << "padding written at [" << i << "," << j << "]";
        }
    }
}

// kiln_sgemm (A as rows, op(B) from b) at 1 thread and at 3, bit for bit: however threads split the
// product, each element is computed the same way.
void expect_same_bits_at_any_thread_count(int tb, int64_t m, int64_t n, int64_t k, const std::vector<float>& a,
                                          const std::vector<float>& b) {
    std::vector<float> c1(size_t(m * n)), c2(size_t(m * n));
    int32_t threads = 0;
    kiln_threads_get(&threads);
    const int64_t ldb = tb ? k : n;
    kiln_threads_set(1);
    const kiln_status s1 = kiln_sgemm(0, tb, m, n, k, 1, a.data(), k, b.data(), ldb, 0, c1.data(), n, nullptr);
    kiln_threads_set(3);
    const kiln_status s3 = kiln_sgemm(0, tb, m, n, k, 1, a.data(), k, b.data(), ldb, 0, c2.data(), n, nullptr);
    kiln_threads_set(threads);
    ASSERT_EQ(s1, KILN_OK);
    ASSERT_EQ(s3, KILN_OK);
    EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * 4)) << "m=" << m << " n=" << n << " k=" << k
                                                                   << " tb=" << tb;
}

TEST(Gemm, EverySizeOneToSeventyEveryTransposeEveryIsa) {
    for_each_isa([](int32_t) {
        // Every (m, n) pair in 1..70; k cycles through 1..70 and the transposes through all four.
        for (int64_t m = 1; m <= 70; ++m) {
            for (int64_t n = 1; n <= 70; ++n) {
                const int64_t k = (m * 7 + n * 3) % 70 + 1;
                const int t = int((m + n) % 4);
                check_case({t & 1, (t >> 1) & 1, m, n, k, 1.0f, 0.0f, 0}, uint32_t(m * 100 + n));
                if (HasFatalFailure()) return;
            }
        }
    });
}

// The packed path with row panels of every height (6-row panels on AVX2: 13..18 rows leave 1..6
// in the last; 14-row ones on AVX-512: 29..34 rows), K not a multiple of the packers' 8 or 16 steps,
// B's last panel partial, every transpose: the packers' register transposes and their narrow
// stores (2..4-row panels dense, 5 rows padded to 6).
TEST(Gemm, PackedPanelsOfEveryHeight) {
    for_each_isa([&](int32_t) {
        uint32_t seed = 70;
        for (int64_t m : {13, 14, 15, 16, 17, 18, 29, 30, 31, 32, 33, 34})
            for (int t = 0; t < 4; ++t) {
                check_case({t & 1, t >> 1, m, 301, 333, 1.0f, 0.0f, 0}, seed++);
                if (HasFatalFailure()) return;
            }
    });
}

TEST(Gemm, OddSizesUpTo1031AndThreads) {
    const Case cases[] = {
        {0, 0, 1031, 517, 263, 1.0f, 0.0f, 0}, {1, 0, 263, 1031, 129, 1.0f, 0.5f, 3},
        {0, 1, 129, 263, 1031, -1.0f, 1.0f, 0}, {1, 1, 517, 129, 517, 0.5f, 0.0f, 1},
        {0, 0, 15, 1031, 777, 1.0f, 0.0f, 0},  {0, 0, 1, 1031, 1031, 1.0f, 0.0f, 0},
    };
    for_each_isa([&](int32_t) {
        for (const Case& c : cases) {
            check_case(c, 7);
            if (HasFatalFailure()) return;
        }
    });
}

// Shapes on both sides of the rules that send small products to the direct (unpacked) path or
// to packing: A's panel over K in L1 (K 877/878 on AVX-512, 2048/2049 on AVX2), B's rows 4 KiB
// apart (ldb 1024) or 2 KiB apart past K = 800, and AVX2's 256 KiB column blocks; plain and
// pre-packed B.
TEST(Gemm, DirectPathRulesAtTheirEdges) {
    const Case cases[] = {
        {0, 0, 32, 1024, 300, 1.0f, 0.0f, 0},  {0, 0, 40, 512, 800, 1.0f, 0.0f, 0},
        {0, 0, 40, 512, 801, 1.0f, 0.5f, 0},   {0, 0, 20, 100, 877, 1.0f, 0.0f, 0},
        {1, 0, 20, 100, 878, 1.0f, 0.0f, 0},   {0, 0, 20, 64, 2048, 1.0f, 0.0f, 0},
        {0, 0, 20, 64, 2049, 1.0f, 0.0f, 0},   {0, 0, 128, 300, 784, 1.0f, 1.0f, 0},
        // Two row panels stay direct whatever K (28 / 12 rows; 29 / 13 do not), balanced or not.
        {0, 0, 28, 300, 1500, 1.0f, 0.0f, 0},  {0, 0, 29, 300, 1500, 1.0f, 0.5f, 0},
        {1, 0, 16, 200, 1500, 1.0f, 0.0f, 1},  {0, 0, 12, 100, 3000, 1.0f, 0.0f, 0},
        {0, 0, 13, 100, 3000, 1.0f, 0.0f, 0},  {0, 0, 8, 100, 2000, -1.0f, 1.0f, 2},
        // A transposed: direct at any K (two panels everywhere, any height on AVX-512), B rows
        // 4 KiB apart included.
        {1, 0, 64, 64, 4096, 1.0f, 0.0f, 0},   {1, 0, 29, 300, 1500, 1.0f, 0.5f, 3},
        {1, 0, 12, 512, 2048, 1.0f, 0.0f, 0},  {1, 0, 200, 100, 1300, 0.5f, 0.0f, 0},
        {1, 0, 40, 1024, 1024, 1.0f, 1.0f, 0},
        // A small B (<= 64k floats) at any height: on AVX2 direct only with B's rows under 256
        // floats apart (255 / 256 columns; padding past it) or all of B in L1 (8100 / 8400 floats).
        {0, 0, 40, 255, 256, 1.0f, 0.0f, 0},   {0, 0, 40, 256, 256, 1.0f, 0.5f, 0},
        {0, 0, 30, 200, 300, 1.0f, 0.0f, 60},  {0, 0, 50, 300, 27, 1.0f, 0.0f, 0},
        {0, 0, 50, 300, 28, -1.0f, 1.0f, 0},   {0, 0, 64, 1024, 64, 1.0f, 0.0f, 0},
        {1, 0, 64, 512, 128, 1.0f, 0.0f, 0},
    };
    for_each_isa([&](int32_t) {
        for (const Case& c : cases)
            for (bool packed : {false, true}) {
                check_case(c, 13, packed);
                if (HasFatalFailure()) return;
            }
    });
}

// 1..4 rows times a plain B stream B's rows (stream kernels; 5..12 rows in groups on AVX2): column
// chunks (5000 columns at one row, 1100 at four), odd K (a pass's remainder steps), A transposed,
// padding, alpha and beta, epilogues (applied after the chunk's store), narrow products computed
// transposed, B transposed (dot products; 5-16 rows in groups of 4 over chunks of B), any thread
// count.
TEST(Gemm, FewRowsStream) {
    auto bias = random_floats(5000, 31);
    auto residual = random_floats(size_t(16 * 1103), 32);
    for_each_isa([&](int32_t) {
        const Case cases[] = {
            {0, 0, 1, 5000, 37, 1.0f, 0.0f, 0},    {1, 0, 2, 1100, 301, -0.5f, 0.25f, 3},
            {0, 0, 3, 1029, 130, 1.0f, 1.0f, 0},   {0, 0, 4, 1100, 515, 2.0f, 0.0f, 1},
            {1, 0, 4, 33, 1000, 1.0f, 0.0f, 0},    {0, 0, 2, 4100, 2, 1.0f, 0.5f, 0},
            // 5-12 rows, B plain (AVX2): groups of up to 4 rows, each streaming B's column chunk;
            // B's rows 4 KiB apart (n = 1024 unpadded, or 512 with K > 800) or 7-9 rows.
            {0, 0, 5, 1024, 300, 1.0f, 0.0f, 0},   {1, 0, 8, 1024, 257, -0.5f, 0.25f, 0},
            {0, 0, 12, 1024, 130, 1.0f, 1.0f, 0},  {0, 0, 7, 1100, 301, 1.0f, 0.0f, 0},
            {0, 0, 9, 1200, 99, 2.0f, 0.0f, 1},    {1, 0, 11, 512, 900, 1.0f, 0.0f, 0},
            // Narrow products run as C^T = B^T A^T: here 3 rows of A^T (500 columns) streamed.
            {1, 0, 500, 3, 40, 1.0f, 0.5f, 0},     {1, 1, 600, 2, 50, 1.0f, 0.0f, 2},
            // B transposed: dot products of A's rows and B's rows (groups of rows of B and a
            // remainder, K tails, A transposed copied into rows).
            {0, 1, 1, 3001, 37, 1.0f, 0.0f, 0},    {1, 1, 2, 1100, 301, -0.5f, 0.25f, 3},
            {0, 1, 3, 1029, 130, 1.0f, 1.0f, 0},   {0, 1, 4, 101, 1000, 2.0f, 0.0f, 1},
            {0, 1, 2, 4100, 2, 1.0f, 0.5f, 0},
            // 5-16 rows, B transposed: groups of 4 rows over chunks of B's rows.
            {0, 1, 5, 600, 174, 1.0f, 0.0f, 0},    {1, 1, 7, 500, 300, -0.5f, 0.25f, 3},
            {0, 1, 12, 1029, 130, 1.0f, 1.0f, 1},  {0, 1, 16, 101, 1000, 2.0f, 0.0f, 0},
            {1, 1, 9, 70, 2000, 1.0f, 0.0f, 2},
        };
        for (const Case& c : cases) {
            check_case(c, 17);
            if (HasFatalFailure()) return;
        }
        kiln_epilogue ep{bias.data(), KILN_UNARY_RELU, 0.0f, residual.data(), 1103};
        check_case({0, 0, 3, 1100, 300, 1.0f, 0.0f, 0}, 18, false, &ep);
        kiln_epilogue gelu{bias.data(), KILN_UNARY_GELU, 0.0f, nullptr, 0};
        check_case({0, 0, 1, 2000, 99, 1.0f, 0.5f, 0}, 19, false, &gelu);
        check_case({0, 1, 3, 1100, 300, 1.0f, 0.0f, 0}, 20, false, &ep);
        check_case({0, 1, 4, 1100, 300, 1.0f, 0.5f, 0}, 23, false, &ep);
        check_case({0, 1, 11, 1100, 300, 1.0f, 0.0f, 0}, 24, false, &ep);
        check_case({0, 0, 8, 1100, 300, 1.0f, 0.5f, 0}, 25, false, &ep);
        if (HasFatalFailure()) return;
        // Columns split across threads give the same bits as one thread.
        const int64_t n = 2100, k = 333;
        auto a = random_floats(size_t(9 * k), 21), b = random_floats(size_t(n * k), 22);
        for (int64_t m : {3, 9})
            for (int tb = 0; tb < 2; ++tb) expect_same_bits_at_any_thread_count(tb, m, n, k, a, b);
    });
}

// Narrow products with A as rows and K >= 96 run as dot products of A's rows and op(B)'s columns
// (B copied transposed when in place): every n the tables send there and its neighbours, row
// counts around the groups of 4, K tails, alpha/beta, padding, epilogues, and threads.
TEST(Gemm, NarrowProductsAsDotProducts) {
    auto bias = random_floats(32, 41);
    auto residual = random_floats(size_t(301 * 40), 42);
    for_each_isa([&](int32_t) {
        uint32_t seed = 50;
        for (int tb = 0; tb < 2; ++tb)
            for (int64_t n : {4, 5, 6, 7, 8, 9, 10, 12, 13, 16, 17, 20, 24, 25, 26})
                for (int64_t m : {1, 3, 4, 7, 37}) {
                    const int64_t k = 96 + (m * 7 + n) % 40;  // 96..135: K tails of 0..7
                    check_case({0, tb, m, n, k, 1.0f, 0.0f, 0}, seed++);
                    if (HasFatalFailure()) return;
                }
        check_case({0, 0, 301, 10, 256, -0.5f, 0.25f, 3}, seed++);
        check_case({0, 1, 301, 12, 300, 2.0f, 1.0f, 1}, seed++);
        kiln_epilogue ep{bias.data(), KILN_UNARY_RELU, 0.0f, residual.data(), 40};
        check_case({0, 0, 301, 10, 200, 1.0f, 0.0f, 0}, seed++, false, &ep);
        kiln_epilogue gelu{bias.data(), KILN_UNARY_GELU, 0.0f, nullptr, 0};
        check_case({0, 1, 37, 20, 150, 1.0f, 0.5f, 2}, seed++, false, &gelu);
        if (HasFatalFailure()) return;
        // Groups of rows split across threads give the same bits as one thread.
        const int64_t m = 301, k = 256;
        auto a = random_floats(size_t(m * k), 43), b = random_floats(size_t(20 * k), 44);
        for (int tb = 0; tb < 2; ++tb)
            for (int64_t n : {6, 10, 20}) expect_same_bits_at_any_thread_count(tb, m, n, k, a, b);
    });
}

// B transposed and K long against m and n: dot products at any height on AVX-512 (groups of 4 rows
// over chunks of B's rows; the split between threads falls on any row), packed tiles elsewhere.
TEST(Gemm, LongKTransposedBAsDotProducts) {
    auto bias = random_floats(200, 61);
    auto residual = random_floats(size_t(301 * 120), 62);
    for_each_isa([&](int32_t) {
        const Case cases[] = {
            {0, 1, 30, 34, 643, 1.0f, 0.0f, 0},   {0, 1, 37, 45, 700, -0.5f, 0.25f, 3},
            {1, 1, 61, 33, 900, 1.0f, 1.0f, 1},   {0, 1, 150, 150, 1001, 2.0f, 0.0f, 0},
            {0, 1, 17, 300, 1000, 1.0f, 0.0f, 2}, {1, 1, 99, 40, 2003, 1.0f, 0.5f, 0},
        };
        uint32_t seed = 70;
        for (const Case& c : cases) {
            check_case(c, seed++);
            if (HasFatalFailure()) return;
        }
        kiln_epilogue ep{bias.data(), KILN_UNARY_RELU, 0.0f, residual.data(), 120};
        check_case({0, 1, 301, 100, 1000, 1.0f, 0.0f, 0}, seed++, false, &ep);
        if (HasFatalFailure()) return;
        const int64_t m = 301, n = 100, k = 1000;
        expect_same_bits_at_any_thread_count(1, m, n, k, random_floats(size_t(m * k), 63),
                                             random_floats(size_t(n * k), 64));
    });
}

// Wider products whose last columns fill under 3/4 of a vector run those columns as a narrow
// product beside the tiles: every remainder around the limit, both B layouts, alpha/beta, padding,
// an epilogue shifted to the tail's columns, and threads.
TEST(Gemm, ColumnTailAsDotProducts) {
    auto bias = random_floats(260, 81);
    auto residual = random_floats(size_t(130 * 260), 82);
    for_each_isa([&](int32_t) {
        uint32_t seed = 90;
        for (int tb = 0; tb < 2; ++tb)
            for (int64_t n : {33, 35, 40, 44, 45, 47, 50, 100, 203}) {
                check_case({0, tb, 37, n, 96 + n % 7, 1.0f, 0.0f, 0}, seed++);
                check_case({0, tb, 5, n, 300, -0.5f, 0.25f, 3}, seed++);
                if (HasFatalFailure()) return;
            }
        kiln_epilogue ep{bias.data(), KILN_UNARY_RELU, 0.0f, residual.data(), 260};
        check_case({0, 0, 129, 203, 200, 1.0f, 0.0f, 0}, seed++, false, &ep);
        check_case({0, 1, 64, 35, 500, 1.0f, 1.0f, 1}, seed++, false, &ep);
        if (HasFatalFailure()) return;
        const int64_t m = 301, n = 203, k = 300;
        expect_same_bits_at_any_thread_count(0, m, n, k, random_floats(size_t(m * k), 83),
                                             random_floats(size_t(n * k), 84));
    });
}

TEST(Gemm, AlphaBetaAndLeadingDimensions) {
    for_each_isa([](int32_t) {
        for (float alpha : {1.0f, -0.5f, 2.0f})
            for (float beta : {0.0f, 1.0f, 0.25f})
                for (int t = 0; t < 4; ++t) {
                    check_case({t & 1, t >> 1, 37, 45, 300, alpha, beta, 5}, 11);
                    if (HasFatalFailure()) return;
                }
    });
}

TEST(Gemm, KZeroScalesC) {
    std::vector<float> c = {1, 2, 3, 4};
    ASSERT_EQ(kiln_sgemm(0, 0, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, c.data(), 2, nullptr), KILN_OK);
    EXPECT_EQ(c, (std::vector<float>{0.5f, 1, 1.5f, 2}));
    ASSERT_EQ(kiln_sgemm(0, 0, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, c.data(), 2, nullptr), KILN_OK);
    EXPECT_EQ(c, (std::vector<float>{0, 0, 0, 0}));
}

TEST(Gemm, PrePackedBMatchesOnEveryIsaAndSmallM) {
    for_each_isa([](int32_t) {
        for (int64_t m : {1, 2, 7, 8, 14, 15, 16, 32, 128})
            for (int ta = 0; ta < 2; ++ta)
                for (int tb = 0; tb < 2; ++tb) {
                    check_case({ta, tb, m, 515, 784, 1.0f, 0.0f, 0}, uint32_t(m), true);
                    if (HasFatalFailure()) return;
                }
        // One row not transposed is read in place as its own packed panel: K past one k block
        // (5000 > 4096: the panel starts at each block's first step), a padded row, alpha, beta.
        for (int ta = 0; ta < 2; ++ta) {
            check_case({ta, 0, 1, 70, 5000, 2.0f, 0.5f, 5}, 17, true);
            check_case({ta, 1, 1, 33, 4097, 1.0f, 0.0f, 1}, 19, true);
            if (HasFatalFailure()) return;
        }
        // 15..256 rows read A in place against the packed panels: alpha, beta, both A layouts.
        for (int ta = 0; ta < 2; ++ta) {
            check_case({ta, 0, 200, 77, 300, 2.0f, 0.5f, 3}, 11, true);
            if (HasFatalFailure()) return;
        }
    });
}

TEST(Gemm, FusedEpilogueBiasActivationResidual) {
    auto bias = random_floats(200, 3);
    auto residual = random_floats(size_t(33 * 210), 4);
    auto big_residual = random_floats(size_t(1000 * 200), 9);
    for_each_isa([&](int32_t) {
        // Identity and (leaky) ReLU are applied in registers as the tile is stored (AVX-512, AVX2);
        // the others in a pass over the stored tile. Direct, packed and one-row kernels; 1000 rows
        // take the packing path.
        const std::pair<int, float> acts[] = {{KILN_UNARY_IDENTITY, 0.0f}, {KILN_UNARY_RELU, 0.0f},
                                              {KILN_UNARY_LEAKY_RELU, 0.1f}, {KILN_UNARY_GELU, 0.0f},
                                              {KILN_UNARY_SIGMOID, 0.0f},   {KILN_UNARY_TANH, 0.0f}};
        for (const auto& [act, alpha] : acts) {
            kiln_epilogue ep{bias.data(), act, alpha, residual.data(), 210};
            check_case({0, 0, 33, 200, 97, 1.0f, 0.0f, 0}, 5, false, &ep);
            check_case({0, 1, 33, 200, 97, 1.0f, 0.5f, 0}, 6, true, &ep);
            kiln_epilogue tall{bias.data(), act, alpha, big_residual.data(), 200};
            check_case({0, 0, 1000, 200, 300, 1.0f, 0.0f, 0}, 7, false, &tall);
            kiln_epilogue bias_only{bias.data(), act, alpha, nullptr, 0};
            check_case({0, 0, 1, 200, 784, 1.0f, 0.0f, 0}, 8, true, &bias_only);
            if (HasFatalFailure()) return;
        }
    });
}

// fused_equals_separate(m): m x 130 times 130 x 70 with bias, activation and residual, fused and
// as a separate pass afterwards.
void fused_equals_separate(int64_t m) {
    const int64_t n = 70, k = 130;
    auto a = random_floats(size_t(m * k), 21), b = random_floats(size_t(k * n), 22);
    auto bias = random_floats(size_t(n), 23), res = random_floats(size_t(m * n), 24);
    for (const auto& [act, alpha] : {std::pair<int, float>{KILN_UNARY_RELU, 0.0f}, {KILN_UNARY_LEAKY_RELU, 0.2f},
                                     {KILN_UNARY_IDENTITY, 0.0f}}) {
        for (bool packed : {false, true}) {
            std::vector<float> fused(size_t(m * n)), plain(size_t(m * n));
            const kiln_epilogue ep{bias.data(), act, alpha, res.data(), n};
            if (packed) {
                kiln_packed_b* pb = nullptr;
                ASSERT_EQ(kiln_sgemm_pack_b(0, k, n, b.data(), n, &pb), KILN_OK);
                ASSERT_EQ(kiln_sgemm_packed(0, m, 1.0f, a.data(), k, pb, 0.0f, fused.data(), n, &ep), KILN_OK);
                ASSERT_EQ(kiln_sgemm_packed(0, m, 1.0f, a.data(), k, pb, 0.0f, plain.data(), n, nullptr), KILN_OK);
                kiln_packed_b_destroy(pb);
            } else {
                ASSERT_EQ(kiln_sgemm(0, 0, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, fused.data(), n, &ep),
                          KILN_OK);
                ASSERT_EQ(kiln_sgemm(0, 0, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, plain.data(), n, nullptr),
                          KILN_OK);
            }
            for (int64_t i = 0; i < m; ++i)
                for (int64_t j = 0; j < n; ++j) {
                    float x = plain[size_t(i * n + j)] + bias[size_t(j)];
                    if (act == KILN_UNARY_RELU) x = x > 0.0f ? x : 0.0f;
                    if (act == KILN_UNARY_LEAKY_RELU && x < 0.0f) x = x * alpha;
                    x = x + res[size_t(i * n + j)];
                    const float got = fused[size_t(i * n + j)];
                    ASSERT_EQ(std::memcmp(&x, &got, 4), 0) << "act " << act << " packed " << packed << " at [" << i
                                                           << "," << j << "]: " << got << " vs " << x;
                }
        }
    }
}

// The epilogue applied in registers equals the same epilogue applied afterwards, bit for bit, on
// every ISA: full and partial tiles (70 columns), direct, packed and one-row kernels.
TEST(Gemm, FusedEpilogueEqualsASeparatePass) {
    for_each_isa([](int32_t) {
        for (const int64_t m : {45, 1, 400}) {
            fused_equals_separate(m);
            if (::testing::Test::HasFatalFailure()) return;
        }
    });
}

TEST(Gemm, ResultDoesNotDependOnThreadCount) {
    // Column splits (wide); row splits of products that skip packing (200 rows; 400 rows with a
    // small B) and of one that packs (400 rows, 300 columns: one thread's share alone would be under
    // the row limit). 200, 110, 44, 29 and 20 rows end in two balanced panels (on AVX-512 or AVX2),
    // which 3 or 4 threads split between them.
    const int64_t shapes[][3] = {{300, 400, 500}, {200, 64, 600}, {400, 64, 600}, {400, 300, 600}, {32, 256, 784},
                                 {3, 2100, 900}, {110, 64, 600}, {44, 64, 600}, {29, 64, 600}, {20, 64, 600}};
    int32_t threads = 0;
    kiln_threads_get(&threads);
    for_each_isa([&](int32_t isa) {
        for (const auto& s : shapes) {
            const int64_t m = s[0], n = s[1], k = s[2];
            auto a = random_floats(size_t(m * k), 1), b = random_floats(size_t(k * n), 2);
            std::vector<float> c1(size_t(m * n)), c2(size_t(m * n));
            for (int32_t ta = 0; ta < 2; ++ta) {
                const int64_t lda = ta ? m : k;
                kiln_threads_set(1);
                ASSERT_EQ(kiln_sgemm(ta, 0, m, n, k, 1, a.data(), lda, b.data(), n, 0, c1.data(), n, nullptr),
                          KILN_OK);
                for (int32_t t : {3, 4}) {
                    kiln_threads_set(t);
                    ASSERT_EQ(kiln_sgemm(ta, 0, m, n, k, 1, a.data(), lda, b.data(), n, 0, c2.data(), n, nullptr),
                              KILN_OK);
                    EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * 4))
                        << m << "x" << k << "x" << n << " ta " << ta << " isa " << isa << " threads " << t;
                }
            }
        }
    });
    kiln_threads_set(threads);
}

TEST(Gemm, BPackedPerCallIntoWholeKPanelsMatchesAPrePackedB) {
    // More than one row panel and up to 256 rows with a short K (gemm.cpp, pack_b_direct): on AVX2
    // B is packed per call into whole-K panels, a column block at a time, and read by the direct
    // kernels as a pre-packed B is, so kiln_sgemm gives kiln_sgemm_packed's bits (the block-by-block
    // packed path, k blocks of 512 steps, rounds differently at K > 512). Columns split (wide) and
    // rows split (256x784x256 at 3 threads), B either way, partial panels, bias + ReLU, beta. (No
    // width whose last few columns go to the dot kernels: column_tail in gemm.cpp.)
    struct Shape {
        int64_t m, k, n;
        int32_t tb;
    };
    const Shape shapes[] = {{128, 784, 512, 0}, {256, 784, 256, 0}, {13, 784, 512, 0}, {100, 300, 200, 0},
                            {64, 1024, 1024, 0}, {256, 128, 512, 0}, {50, 700, 151, 0}, {128, 256, 784, 1},
                            {200, 500, 296, 1}, {250, 600, 247, 1}};
    int32_t threads = 0;
    kiln_threads_get(&threads);
    for_each_isa([&](int32_t isa) {
        for (const Shape& s : shapes) {
            const int64_t ldb = s.tb ? s.k : s.n;
            const auto a = random_floats(size_t(s.m * s.k), 5), b = random_floats(size_t(s.k * s.n), 6);
            const auto c0 = random_floats(size_t(s.m * s.n), 7), bias = random_floats(size_t(s.n), 8);
            kiln_packed_b* pb = nullptr;
            ASSERT_EQ(kiln_sgemm_pack_b(s.tb, s.k, s.n, b.data(), ldb, &pb), KILN_OK) << kiln_last_error();
            for (int with_ep = 0; with_ep < 2; ++with_ep) {
                const kiln_epilogue ep{bias.data(), KILN_UNARY_RELU, 0.0f, nullptr, 0};
                const kiln_epilogue* e = with_ep ? &ep : nullptr;
                const float beta = with_ep ? 0.5f : 0.0f;
                std::vector<float> pre = c0, one = c0;
                kiln_threads_set(1);
                ASSERT_EQ(kiln_sgemm_packed(0, s.m, 1.0f, a.data(), s.k, pb, beta, pre.data(), s.n, e), KILN_OK);
                ASSERT_EQ(kiln_sgemm(0, s.tb, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), ldb, beta, one.data(),
                                     s.n, e),
                          KILN_OK);
                if (isa == KILN_ISA_AVX2) {
                    EXPECT_EQ(0, std::memcmp(pre.data(), one.data(), pre.size() * 4))
                        << s.m << "x" << s.k << "x" << s.n << " tb " << s.tb << " epilogue " << with_ep;
                }
                for (int32_t t : {2, 3}) {
                    std::vector<float> many = c0;
                    kiln_threads_set(t);
                    ASSERT_EQ(kiln_sgemm(0, s.tb, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), ldb, beta,
                                         many.data(), s.n, e),
                              KILN_OK);
                    EXPECT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * 4))
                        << s.m << "x" << s.k << "x" << s.n << " tb " << s.tb << " threads " << t;
                }
            }
            kiln_packed_b_destroy(pb);
        }
        // Against the double reference: padded leading dimensions, alpha, beta (0: C is NaN and
        // must not be read), B either way, a partial last panel, a short last row panel.
        const Case cases[] = {{0, 0, 100, 200, 400, -0.75f, 0.0f, 3}, {0, 0, 43, 151, 700, 1.5f, 0.5f, 5},
                              {0, 1, 200, 296, 500, 1.0f, -1.0f, 1}, {0, 0, 13, 520, 1000, 2.0f, 0.0f, 7}};
        for (const Case& c : cases) {
            check_case(c, 91);
            if (::testing::Test::HasFatalFailure()) return;
        }
    });
    kiln_threads_set(threads);
}

TEST(Gemm, LongKIsCutIntoEqualBlocks) {
    // K over the kernels' k block (768 steps on AVX-512, 256 elsewhere) is cut into equal blocks,
    // each a pass over C: packed products, products read in place (300 rows, small B), and few
    // rows with K past the single-block limit of 4096.
    const Case cases[] = {
        {0, 1, 40, 50, 1537, 1.0f, 0.0f, 0}, {1, 0, 300, 13, 5000, 1.0f, 0.5f, 2},
        {0, 0, 5, 20, 5003, -1.0f, 0.0f, 0}, {1, 1, 29, 33, 2049, 0.5f, 1.0f, 1},
    };
    for_each_isa([&](int32_t) {
        for (const Case& c : cases) {
            check_case(c, 13);
            if (HasFatalFailure()) return;
        }
    });
}

TEST(Gemm, TallProductsPackARowsInChunks) {
    // A thread packs at most 2^22 floats of A per k block (gemm.cpp, kPackAMaxFloats): at K = 32
    // that is 131,068 rows, so 262,141 rows go in three chunks on 1 thread and two per thread on 2.
    // B transposed so that the product packs (no direct path).
    const Case c{0, 1, 262141, 40, 32, 1.0f, 0.0f, 0};
    int32_t threads = 0;
    kiln_threads_get(&threads);
    kiln_threads_set(1);
    check_case(c, 5);
    auto a = random_floats(size_t(c.m * c.k), 1), b = random_floats(size_t(c.n * c.k), 2);
    std::vector<float> c1(size_t(c.m * c.n)), c2(size_t(c.m * c.n));
    ASSERT_EQ(kiln_sgemm(0, 1, c.m, c.n, c.k, 1, a.data(), c.k, b.data(), c.k, 0, c1.data(), c.n, nullptr), KILN_OK);
    kiln_threads_set(2);
    ASSERT_EQ(kiln_sgemm(0, 1, c.m, c.n, c.k, 1, a.data(), c.k, b.data(), c.k, 0, c2.data(), c.n, nullptr), KILN_OK);
    EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * 4));
    kiln_threads_set(threads);
}

TEST(Gemm, BadArgumentsAreRefused) {
    std::vector<float> x(100);
    float* p = x.data();
    EXPECT_EQ(kiln_sgemm(2, 0, 2, 2, 2, 1, p, 2, p + 10, 2, 0, p + 20, 2, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_sgemm(0, 0, -1, 2, 2, 1, p, 2, p + 10, 2, 0, p + 20, 2, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_sgemm(0, 0, 2, 2, 3, 1, p, 2, p + 10, 2, 0, p + 20, 2, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "lda is 2: must be >= 3"), nullptr) << kiln_last_error();
    EXPECT_EQ(kiln_sgemm(0, 0, 2, 2, 2, 1, nullptr, 2, p + 10, 2, 0, p + 20, 2, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_sgemm(0, 0, 2, 2, 2, 1, p, 2, p + 10, 2, 0, p + 1, 2, nullptr), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "overlaps"), nullptr);
    kiln_epilogue bad{nullptr, 77, 0, nullptr, 0};
    EXPECT_EQ(kiln_sgemm(0, 0, 2, 2, 2, 1, p, 2, p + 10, 2, 0, p + 20, 2, &bad), KILN_ERR_INVALID_ARGUMENT);
    kiln_epilogue nan_slope{nullptr, KILN_UNARY_LEAKY_RELU, std::nanf(""), nullptr, 0};
    EXPECT_EQ(kiln_sgemm(0, 0, 2, 2, 2, 1, p, 2, p + 10, 2, 0, p + 20, 2, &nan_slope), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "alpha is not finite"), nullptr) << kiln_last_error();
    kiln_packed_b* pb = reinterpret_cast<kiln_packed_b*>(0x1);
    EXPECT_EQ(kiln_sgemm_pack_b(0, -3, 2, p, 2, &pb), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(pb, nullptr);
    EXPECT_EQ(kiln_sgemm_packed(0, 2, 1, p, 2, nullptr, 0, p + 20, 2, nullptr), KILN_ERR_INVALID_ARGUMENT);
}

}  // namespace

namespace {

uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
double from_bf16(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// bf16 GEMM against a double reference over the bf16 values: products are exact, accumulation f32,
// so the fp32 bound applies.
void check_bf16(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta, bool packed, uint32_t seed) {
    const int64_t lda = ta ? m : k, ldb = tb ? k : n, ldc = n;
    auto af = random_floats(size_t(std::max<int64_t>(1, m * k)), seed), bf = random_floats(size_t(std::max<int64_t>(1, k * n)), seed + 1);
    std::vector<uint16_t> a(af.size()), b(bf.size());
    for (size_t i = 0; i < af.size(); ++i) a[i] = to_bf16(af[i]);
    for (size_t i = 0; i < bf.size(); ++i) b[i] = to_bf16(bf[i]);
    auto c0 = random_floats(size_t(std::max<int64_t>(1, m * n)), seed + 2);
    std::vector<float> c = c0;
    if (packed) {
        kiln_packed_b* pb = nullptr;
        ASSERT_EQ(kiln_gemm_bf16_pack_b(tb, k, n, b.data(), ldb, &pb), KILN_OK) << kiln_last_error();
        ASSERT_EQ(kiln_gemm_bf16_packed(ta, m, alpha, a.data(), lda, pb, beta, c.data(), ldc, nullptr), KILN_OK)
            << kiln_last_error();
        kiln_packed_b_destroy(pb);
    } else {
        ASSERT_EQ(kiln_gemm_bf16(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc, nullptr),
                  KILN_OK) << kiln_last_error();
    }
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double s = 0, mag = 0;
            for (int64_t p = 0; p < k; ++p) {
                const double x = from_bf16(ta ? a[size_t(p * lda + i)] : a[size_t(i * lda + p)]);
                const double y = from_bf16(tb ? b[size_t(j * ldb + p)] : b[size_t(p * ldb + j)]);
                s += x * y;
                mag += std::fabs(x * y);
            }
            const double want = alpha * s + (beta != 0 ? beta * c0[size_t(i * ldc + j)] : 0.0);
            ASSERT_NEAR(c[size_t(i * ldc + j)], want, (double(k) + 2) * 1.2e-7 * (std::fabs(alpha) * mag + 2) + 1e-6)
                << "bf16 m=" << m << " n=" << n << " k=" << k << " ta=" << ta << " tb=" << tb << " packed=" << packed;
        }
}

// Runs body at every ISA, and at AVX-512 also with bf16 converted to f32 for the f32 kernels (what
// AVX-512 machines without AVX512_BF16 do; this one has it).
template <typename F>
void for_each_bf16_path(F&& body) {
    for_each_isa([&](int32_t isa) {
        body();
        if (isa == KILN_ISA_AVX512 && !::testing::Test::HasFatalFailure()) {
            SCOPED_TRACE("bf16 converted to f32");
            kiln::set_bf16_pairs_for_testing(false);
            body();
            kiln::set_bf16_pairs_for_testing(true);
        }
    });
}

TEST(GemmBf16, SmallSizesOddKTransposesEveryIsa) {
    for_each_bf16_path([] {
        for (int64_t m = 1; m <= 30; m += 3)
            for (int64_t n = 1; n <= 70; n += 7) {
                const int64_t k = (m * 5 + n) % 41 + 1;  // odd and even k
                const int t = int((m + n) % 4);
                check_bf16(t & 1, t >> 1, m, n, k, 1.0f, 0.0f, false, uint32_t(m * 131 + n));
                check_bf16(t & 1, t >> 1, m, n, k, 1.0f, 0.0f, true, uint32_t(m * 137 + n));
                if (HasFatalFailure()) return;
            }
    });
}

TEST(GemmBf16, LargerShapesAlphaBetaAndSmallM) {
    for_each_bf16_path([] {
        check_bf16(0, 0, 129, 257, 1031, 1.0f, 0.0f, false, 1);
        check_bf16(1, 1, 64, 100, 600, 0.5f, 1.0f, false, 2);
        for (int64_t m : {1, 8, 16, 33}) check_bf16(0, 0, m, 515, 784, 1.0f, 0.0f, true, uint32_t(m));
        // Odd K over three k blocks (1536 steps each at most on AVX512_BF16: 1040 + 1040 + 1023).
        check_bf16(0, 0, 40, 70, 3103, 1.0f, 0.0f, false, 3);
        check_bf16(1, 0, 40, 70, 3103, 1.0f, 0.0f, true, 4);
    });
}

TEST(GemmBf16, PackedDtypeMismatchIsRefused) {
    std::vector<float> b(16, 1.0f), c(16);
    std::vector<uint16_t> bh(16, 0x3f80), ah(16, 0x3f80);
    kiln_packed_b* pf = nullptr;
    kiln_packed_b* ph = nullptr;
    ASSERT_EQ(kiln_sgemm_pack_b(0, 4, 4, b.data(), 4, &pf), KILN_OK);
    ASSERT_EQ(kiln_gemm_bf16_pack_b(0, 4, 4, bh.data(), 4, &ph), KILN_OK);
    EXPECT_EQ(kiln_gemm_bf16_packed(0, 4, 1, ah.data(), 4, pf, 0, c.data(), 4, nullptr), KILN_ERR_DTYPE_MISMATCH);
    EXPECT_EQ(kiln_sgemm_packed(0, 4, 1, b.data(), 4, ph, 0, c.data(), 4, nullptr), KILN_ERR_DTYPE_MISMATCH);
    kiln_packed_b_destroy(pf);
    kiln_packed_b_destroy(ph);
}

}  // namespace
