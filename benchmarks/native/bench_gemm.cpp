// benchmarks/run gemm: Kiln's GEMM side by side with OpenBLAS (cblas_sgemm) and oneDNN (dnnl_sgemm,
// and its matmul primitive with weights pre-packed once) in one process, plus the machine's
// measured ceilings (FMA peak, STREAM triad and read bandwidth, read bandwidth from L3).
//
// Every case checks that the libraries agree before timing. Each timed repetition runs >= 0.2 s;
// a case reports the median of REPS repetitions (min and max too). The sides alternate per
// repetition so that drift on this shared machine hits them alike.
//
// usage: bench_gemm OUT.json [--quick] [--filter SUBSTRING]
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kiln/kiln.h"
#include "oneapi/dnnl/dnnl.hpp"

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);

namespace {

using Clock = std::chrono::steady_clock;
int g_reps = 5;
double g_min_seconds = 0.2;

void check(kiln_status st, const char* what) {
    if (st != KILN_OK) {
        std::fprintf(stderr, "%s failed: %s\n", what, kiln_last_error());
        std::exit(1);
    }
}

struct Aligned {
    float* p = nullptr;
    size_t n = 0;
    explicit Aligned(size_t count) : n(count) {
        p = static_cast<float*>(std::aligned_alloc(64, (count * 4 + 63) / 64 * 64));
    }
    ~Aligned() { std::free(p); }
    Aligned(const Aligned&) = delete;
};

void fill(float* p, size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    for (size_t i = 0; i < n; ++i) p[i] = d(rng);
}

// Seconds per call of fn: calibrate the iteration count to >= g_min_seconds per repetition.
int64_t calibrate(const std::function<void()>& fn) {
    fn();
    int64_t iters = 1;
    for (;;) {
        const auto t0 = Clock::now();
        for (int64_t i = 0; i < iters; ++i) fn();
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        if (s >= g_min_seconds / 4) return std::max<int64_t>(1, int64_t(iters * g_min_seconds / s) + 1);
        iters *= 4;
    }
}

double time_once(const std::function<void()>& fn, int64_t iters) {
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < iters; ++i) fn();
    return std::chrono::duration<double>(Clock::now() - t0).count() / double(iters);
}

struct Stat {
    double median, min, max;
};

Stat stat_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return {v[v.size() / 2], v.front(), v.back()};
}

// Lets the previous side's worker threads stop spinning (OpenBLAS spins ~2^28 cycles, OpenMP
// a while too) so they do not steal the second core from the next side.
void idle() { std::this_thread::sleep_for(std::chrono::milliseconds(120)); }

// Times several sides, alternating them per repetition; returns seconds per call for each.
std::vector<Stat> time_sides(const std::vector<std::function<void()>>& sides) {
    std::vector<int64_t> iters;
    for (auto& s : sides) {
        iters.push_back(calibrate(s));
        idle();
    }
    std::vector<std::vector<double>> t(sides.size());
    for (int r = 0; r < g_reps; ++r)
        for (size_t i = 0; i < sides.size(); ++i) {
            t[i].push_back(time_once(sides[i], iters[i]));
            idle();
        }
    std::vector<Stat> out;
    for (auto& v : t) out.push_back(stat_of(v));
    return out;
}

void set_threads(int t) {
    check(kiln_threads_set(t), "kiln_threads_set");
    openblas_set_num_threads(t);
    omp_set_num_threads(t);
}

// ---- machine ceilings -------------------------------------------------------------------------

// 12 independent FMA chains (latency 4 x throughput 1-2 per cycle needs >= 8), named so that
// they stay in registers.
#define KILN_FMA12(FMA)                                                                          \
    a0 = FMA(a0, x, y); a1 = FMA(a1, x, y); a2 = FMA(a2, x, y); a3 = FMA(a3, x, y);               \
    a4 = FMA(a4, x, y); a5 = FMA(a5, x, y); a6 = FMA(a6, x, y); a7 = FMA(a7, x, y);               \
    a8 = FMA(a8, x, y); a9 = FMA(a9, x, y); a10 = FMA(a10, x, y); a11 = FMA(a11, x, y);

__attribute__((target("avx512f"))) double fma_peak_avx512_once(int64_t iters) {
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2), a3 = _mm512_set1_ps(3),
           a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5), a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7),
           a8 = _mm512_set1_ps(8), a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    const auto t0 = Clock::now();
    for (int64_t n = 0; n < iters; ++n) {
        KILN_FMA12(_mm512_fmadd_ps)
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                     _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)),
                                                   _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11))));
    if (_mm512_reduce_add_ps(sum) == 12345.0f) std::puts("");
    return double(iters) * 12 * 32 / s / 1e9;
}

__attribute__((target("avx2,fma"))) double fma_peak_avx2_once(int64_t iters) {
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2), a3 = _mm256_set1_ps(3),
           a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5), a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7),
           a8 = _mm256_set1_ps(8), a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    const auto t0 = Clock::now();
    for (int64_t n = 0; n < iters; ++n) {
        KILN_FMA12(_mm256_fmadd_ps)
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                         _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)),
                                                       _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)))));
    if (lanes[0] == 12345.0f) std::puts("");
    return double(iters) * 12 * 16 / s / 1e9;
}

__attribute__((target("avx512f,avx512bf16"))) double bf16_peak_once(int64_t iters) {
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2), a3 = _mm512_set1_ps(3),
           a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5), a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7),
           a8 = _mm512_set1_ps(8), a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
    const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x33d633d6);
    const auto t0 = Clock::now();
#define KILN_DP(acc, p, q) _mm512_dpbf16_ps(acc, p, q)
    for (int64_t n = 0; n < iters; ++n) {
        a0 = KILN_DP(a0, x, y); a1 = KILN_DP(a1, x, y); a2 = KILN_DP(a2, x, y); a3 = KILN_DP(a3, x, y);
        a4 = KILN_DP(a4, x, y); a5 = KILN_DP(a5, x, y); a6 = KILN_DP(a6, x, y); a7 = KILN_DP(a7, x, y);
        a8 = KILN_DP(a8, x, y); a9 = KILN_DP(a9, x, y); a10 = KILN_DP(a10, x, y); a11 = KILN_DP(a11, x, y);
    }
#undef KILN_DP
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                     _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)),
                                                   _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11))));
    if (_mm512_reduce_add_ps(sum) == 12345.0f) std::puts("");
    return double(iters) * 12 * 64 / s / 1e9;
}

// GFLOP/s of vdpbf16ps on `threads` threads (best of 5), 0 where the CPU lacks AVX512_BF16.
double bf16_peak(int threads) {
    uint64_t feats = 0;
    kiln_cpu_features(&feats);
    if (!(feats & KILN_CPU_AVX512BF16)) return 0;
    double best = 0;
    for (int round = 0; round < 5; ++round) {
        std::vector<double> r(static_cast<size_t>(threads));
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { r[size_t(t)] = bf16_peak_once(20000000); });
        for (auto& t : ts) t.join();
        double sum = 0;
        for (double v : r) sum += v;
        best = std::max(best, sum);
    }
    return best;
}

// GFLOP/s of fp32 FMA on `threads` threads: best of 5 rounds (the peak is a ceiling, not a median).
double fma_peak(int threads) {
    uint64_t feats = 0;
    kiln_cpu_features(&feats);
    const bool avx512 = feats & KILN_CPU_AVX512F;
    double best = 0;
    for (int round = 0; round < 5; ++round) {
        std::vector<double> r(static_cast<size_t>(threads));
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; ++t)
            ts.emplace_back([&, t] { r[size_t(t)] = avx512 ? fma_peak_avx512_once(20000000) : fma_peak_avx2_once(40000000); });
        for (auto& t : ts) t.join();
        double sum = 0;
        for (double v : r) sum += v;
        best = std::max(best, sum);
    }
    return best;
}

__attribute__((target("avx2,fma"))) void triad_range(float* a, const float* b, const float* c, size_t lo, size_t hi) {
    const __m256 s = _mm256_set1_ps(3.0f);
    for (size_t i = lo; i < hi; i += 8) _mm256_store_ps(a + i, _mm256_fmadd_ps(s, _mm256_load_ps(c + i), _mm256_load_ps(b + i)));
}

__attribute__((target("avx2"))) float read_range(const float* b, size_t lo, size_t hi) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = lo; i < hi; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(b + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(b + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(b + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(b + i + 24));
    }
    alignas(32) float l[8];
    _mm256_store_ps(l, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return l[0] + l[7];
}

// STREAM-style bandwidth in GB/s (best of 5): triad a = b + s*c, and read-only (sum); 64 MiB arrays.
std::pair<double, double> stream(int threads) {
    const size_t n = size_t(1) << 24;
    Aligned a(n), b(n), c(n);
    fill(b.p, n, 1);
    fill(c.p, n, 2);
    std::memset(a.p, 0, n * 4);
    double triad = 0, read = 0;
    std::vector<float> sink(static_cast<size_t>(threads));
    for (int round = 0; round < 5; ++round) {
        auto run = [&](auto body) {
            std::vector<std::thread> ts;
            const auto t0 = Clock::now();
            for (int t = 0; t < threads; ++t)
                ts.emplace_back([&, t] { body(t, n / 64 * size_t(t) / size_t(threads) * 64, n / 64 * size_t(t + 1) / size_t(threads) * 64); });
            for (auto& t : ts) t.join();
            return std::chrono::duration<double>(Clock::now() - t0).count();
        };
        const double st = run([&](int, size_t lo, size_t hi) { triad_range(a.p, b.p, c.p, lo, hi); });
        triad = std::max(triad, 3.0 * 4 * double(n) / st / 1e9);
        const double sr = run([&](int t, size_t lo, size_t hi) { sink[size_t(t)] = read_range(b.p, lo, hi); });
        read = std::max(read, 4.0 * double(n) / sr / 1e9);
    }
    return {triad, read};
}

// Read bandwidth from L3 in GB/s (best of 5): the STREAM read loop, each thread over its own 4 MiB
// (past its 1 MiB L2, well inside the 32 MiB L3) 100 times. The ceiling of a batch-1 forward whose
// weights outgrow L2 (mlp-small: 2.1 MB).
double l3_read(int threads) {
    const size_t n = size_t(1) << 20, passes = 100;  // 4 MiB of floats a thread
    std::vector<std::unique_ptr<Aligned>> bufs;
    for (int t = 0; t < threads; ++t) {
        bufs.push_back(std::make_unique<Aligned>(n));
        fill(bufs.back()->p, n, 1);
    }
    std::vector<float> sink(static_cast<size_t>(threads));
    double best = 0;
    for (int round = 0; round < 5; ++round) {
        std::vector<std::thread> ts;
        const auto t0 = Clock::now();
        for (int t = 0; t < threads; ++t)
            ts.emplace_back([&, t] {
                float s = 0;
                for (size_t p = 0; p < passes; ++p) {
                    const float* b = bufs[size_t(t)]->p;
                    __asm__ volatile("" : "+r"(b));  // a fresh read every pass (read_range is pure)
                    s += read_range(b, 0, n);
                }
                sink[size_t(t)] = s;
            });
        for (auto& t : ts) t.join();
        const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
        best = std::max(best, 4.0 * double(n) * double(passes) * threads / sec / 1e9);
    }
    return best;
}

// ---- result rows -------------------------------------------------------------------------------

struct Row {
    std::string name;
    int threads;
    std::string metric;
    bool higher_is_better;
    Stat kiln;
    std::vector<std::pair<std::string, Stat>> peers;
};
std::vector<Row> g_rows;
std::string g_filter;
bool g_quick = false;

void print_row(const Row& r) {
    std::printf("%-28s t%d  kiln %8.1f [%6.1f..%6.1f] %s", r.name.c_str(), r.threads, r.kiln.median, r.kiln.min,
                r.kiln.max, r.metric.c_str());
    for (auto& p : r.peers) std::printf("  %s %8.1f (x%.2f)", p.first.c_str(), p.second.median, r.kiln.median / p.second.median);
    std::printf("\n");
    std::fflush(stdout);
}

bool selected(const std::string& name) { return g_filter.empty() || name.find(g_filter) != std::string::npos; }

// Max |x - y| / (max |y| + 1): the libraries must agree before they are timed.
void expect_agree(const char* what, const float* x, const float* y, size_t n, double tol) {
    double worst = 0, mag = 0;
    for (size_t i = 0; i < n; ++i) mag = std::max(mag, double(std::fabs(y[i])));
    for (size_t i = 0; i < n; ++i) worst = std::max(worst, double(std::fabs(x[i] - y[i])));
    if (worst / (mag + 1) > tol) {
        std::fprintf(stderr, "%s: results disagree (max abs diff %g, max |ref| %g)\n", what, worst, mag);
        std::exit(1);
    }
}

// ---- cases -------------------------------------------------------------------------------------

dnnl::engine& engine() {
    static dnnl::engine e(dnnl::engine::kind::cpu, 0);
    return e;
}

// oneDNN matmul primitive with weights in the layout it prefers (packed once, outside the timing).
struct DnnlMatmul {
    dnnl::matmul prim;
    dnnl::memory src, wei, dst;
    dnnl::stream strm{engine()};
    DnnlMatmul(int64_t m, int64_t k, int64_t n, float* a, float* b_plain, float* c, dnnl::memory::data_type wdt) {
        using dt = dnnl::memory::data_type;
        using tag = dnnl::memory::format_tag;
        dnnl::memory::desc a_md({m, k}, wdt, tag::ab), b_any({k, n}, wdt, tag::any), c_md({m, n}, dt::f32, tag::ab);
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_any, c_md), engine());
        prim = dnnl::matmul(pd);
        if (wdt == dt::f32) {
            src = dnnl::memory(a_md, engine(), a);
            dnnl::memory b_user({{k, n}, dt::f32, tag::ab}, engine(), b_plain);
            wei = dnnl::memory(pd.weights_desc(), engine());
            dnnl::reorder(b_user, wei).execute(strm, b_user, wei);
        } else {
            // bf16: convert the fp32 inputs with oneDNN's own reorders
            dnnl::memory a_user({{m, k}, dt::f32, tag::ab}, engine(), a);
            src = dnnl::memory(a_md, engine());
            dnnl::reorder(a_user, src).execute(strm, a_user, src);
            dnnl::memory b_user({{k, n}, dt::f32, tag::ab}, engine(), b_plain);
            wei = dnnl::memory(pd.weights_desc(), engine());
            dnnl::reorder(b_user, wei).execute(strm, b_user, wei);
        }
        dst = dnnl::memory(c_md, engine(), c);
        strm.wait();
    }
    void run() {
        prim.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
        strm.wait();
    }
};

// sgemm MxKxN: plain-layout weights every call (the training case; few rows: a vector or a few
// times weights that are not pre-packed). Peers: openblas, onednn sgemm. With bt, "sgemm_bt": the
// weights stored N x K (y = x W^T, PyTorch's Linear layout, ONNX Gemm transB).
void case_sgemm(int64_t m, int64_t k, int64_t n, int threads, bool bt = false) {
    const std::string name = std::string(bt ? "sgemm_bt " : "sgemm ") + std::to_string(m) + "x" + std::to_string(k) +
                             "x" + std::to_string(n);
    if (!selected(name)) return;
    set_threads(threads);
    Aligned a(size_t(m * k)), b(size_t(k * n)), c1(size_t(m * n)), c2(size_t(m * n)), c3(size_t(m * n));
    fill(a.p, a.n, 1);
    fill(b.p, b.n, 2);
    const int64_t ldb = bt ? k : n;
    auto kiln = [&] {
        check(kiln_sgemm(0, bt, m, n, k, 1.0f, a.p, k, b.p, ldb, 0.0f, c1.p, n, nullptr), "kiln_sgemm");
    };
    auto blas = [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, bt ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), 1.0f, a.p,
                    int(k), b.p, int(ldb), 0.0f, c2.p, int(n));
    };
    auto dnnl = [&] { dnnl_sgemm('N', bt ? 'T' : 'N', m, n, k, 1.0f, a.p, k, b.p, ldb, 0.0f, c3.p, n); };
    kiln(); blas(); dnnl();
    expect_agree(name.c_str(), c1.p, c2.p, c1.n, 1e-4);
    expect_agree(name.c_str(), c3.p, c2.p, c1.n, 1e-4);
    auto t = time_sides({kiln, blas, dnnl});
    const double flop = 2.0 * double(m) * double(n) * double(k) / 1e9;
    auto g = [&](Stat s) { return Stat{flop / s.median, flop / s.max, flop / s.min}; };
    Row r{name, threads, "GFLOP/s", true, g(t[0]), {{"openblas", g(t[1])}, {"onednn", g(t[2])}}};
    print_row(r);
    g_rows.push_back(r);
}

// sgemm_packed MxKxN: weights packed once outside the timing (the inference case).
void case_packed(int64_t m, int64_t k, int64_t n, int threads) {
    const std::string name = "sgemm_packed " + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
    if (!selected(name)) return;
    set_threads(threads);
    Aligned a(size_t(m * k)), b(size_t(k * n)), c1(size_t(m * n)), c2(size_t(m * n)), c3(size_t(m * n));
    fill(a.p, a.n, 3);
    fill(b.p, b.n, 4);
    kiln_packed_b* pb = nullptr;
    check(kiln_sgemm_pack_b(0, k, n, b.p, n, &pb), "kiln_sgemm_pack_b");
    DnnlMatmul mm(m, k, n, a.p, b.p, c3.p, dnnl::memory::data_type::f32);
    auto kiln = [&] { check(kiln_sgemm_packed(0, m, 1.0f, a.p, k, pb, 0.0f, c1.p, n, nullptr), "kiln_sgemm_packed"); };
    auto blas = [&] { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(n), int(k), 1.0f, a.p, int(k), b.p, int(n), 0.0f, c2.p, int(n)); };
    auto dnnl = [&] { mm.run(); };
    kiln(); blas(); dnnl();
    expect_agree(name.c_str(), c1.p, c2.p, c1.n, 1e-4);
    expect_agree(name.c_str(), c3.p, c2.p, c1.n, 1e-4);
    auto t = time_sides({kiln, dnnl, blas});
    const double flop = 2.0 * double(m) * double(n) * double(k) / 1e9;
    auto g = [&](Stat s) { return Stat{flop / s.median, flop / s.max, flop / s.min}; };
    Row r{name, threads, "GFLOP/s", true, g(t[0]), {{"onednn_packed", g(t[1])}, {"openblas", g(t[2])}}};
    print_row(r);
    g_rows.push_back(r);
    kiln_packed_b_destroy(pb);
}

float f32_of(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

uint16_t bf16_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// bf16 MxKxN: bf16 inputs, f32 output; weights packed once on both sides (oneDNN matmul with
// bf16 src/weights and f32 dst).
void case_bf16(int64_t m, int64_t k, int64_t n, int threads) {
    const std::string name = "bf16 " + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
    if (!selected(name)) return;
    set_threads(threads);
    Aligned a(size_t(m * k)), b(size_t(k * n)), c1(size_t(m * n)), c3(size_t(m * n));
    fill(a.p, a.n, 6);
    fill(b.p, b.n, 7);
    std::vector<uint16_t> ah(a.n), bh(b.n);
    for (size_t i = 0; i < a.n; ++i) ah[i] = bf16_of(a.p[i]);
    for (size_t i = 0; i < b.n; ++i) bh[i] = bf16_of(b.p[i]);
    kiln_packed_b* pb = nullptr;
    check(kiln_gemm_bf16_pack_b(0, k, n, bh.data(), n, &pb), "kiln_gemm_bf16_pack_b");
    // oneDNN has bf16 matmul only on AVX-512 CPUs (it throws elsewhere): there Kiln's row is timed
    // alone, against the f32 reference, and the report says that oneDNN had none.
    std::unique_ptr<DnnlMatmul> mm;
    try {
        mm = std::make_unique<DnnlMatmul>(m, k, n, a.p, b.p, c3.p, dnnl::memory::data_type::bf16);
    } catch (const dnnl::error& e) {
        static bool said = false;
        if (!said) std::fprintf(stderr, "bf16 cases: oneDNN has no bf16 matmul on this CPU (%s): Kiln only\n", e.what());
        said = true;
    }
    auto kiln = [&] { check(kiln_gemm_bf16_packed(0, m, 1.0f, ah.data(), k, pb, 0.0f, c1.p, n, nullptr), "kiln_gemm_bf16_packed"); };
    auto dnnl = [&] { mm->run(); };
    kiln();
    if (mm) {
        dnnl();
    } else {
        // The f32 product of the same bf16-rounded inputs (what a bf16 GEMM with f32 accumulation gives).
        std::vector<float> ar(a.n), br(b.n);
        for (size_t i = 0; i < a.n; ++i) ar[i] = f32_of(ah[i]);
        for (size_t i = 0; i < b.n; ++i) br[i] = f32_of(bh[i]);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(n), int(k), 1.0f, ar.data(), int(k),
                    br.data(), int(n), 0.0f, c3.p, int(n));
    }
    expect_agree(name.c_str(), c1.p, c3.p, c1.n, 1e-3);
    std::vector<std::function<void()>> sides{kiln};
    if (mm) sides.push_back(dnnl);
    auto t = time_sides(sides);
    const double flop = 2.0 * double(m) * double(n) * double(k) / 1e9;
    auto g = [&](Stat s) { return Stat{flop / s.median, flop / s.max, flop / s.min}; };
    Row r{name, threads, "GFLOP/s", true, g(t[0]), {}};
    if (mm) r.peers.push_back({"onednn", g(t[1])});
    print_row(r);
    g_rows.push_back(r);
    kiln_packed_b_destroy(pb);
}

// gemv 1x4096x4096 with the weights rotated through >= 256 MiB of copies: every call reads DRAM.
void case_gemv_dram(int threads) {
    const std::string name = "gemv 1x4096x4096";
    if (!selected(name)) return;
    set_threads(threads);
    const int64_t k = 4096, n = 4096;
    const int copies = 5;  // 5 x 64 MiB
    Aligned a{static_cast<size_t>(k)}, c1{static_cast<size_t>(n)}, c2{static_cast<size_t>(n)};
    fill(a.p, a.n, 5);
    std::vector<kiln_packed_b*> kp;
    std::vector<std::unique_ptr<DnnlMatmul>> dp;
    {
        Aligned b(size_t(k * n));
        for (int i = 0; i < copies; ++i) {
            fill(b.p, b.n, uint32_t(10 + i));
            kiln_packed_b* pb = nullptr;
            check(kiln_sgemm_pack_b(0, k, n, b.p, n, &pb), "pack");
            kp.push_back(pb);
            dp.push_back(std::make_unique<DnnlMatmul>(1, k, n, a.p, b.p, c2.p, dnnl::memory::data_type::f32));
        }
    }
    int ik = 0, id = 0;
    auto kiln = [&] {
        check(kiln_sgemm_packed(0, 1, 1.0f, a.p, k, kp[size_t(ik)], 0.0f, c1.p, n, nullptr), "gemv");
        ik = (ik + 1) % copies;
    };
    auto dnnl = [&] {
        dp[size_t(id)]->run();
        id = (id + 1) % copies;
    };
    kiln(); dnnl();
    expect_agree(name.c_str(), c1.p, c2.p, size_t(n), 1e-4);
    auto t = time_sides({kiln, dnnl});
    const double gb = double(k) * double(n) * 4 / 1e9;
    auto g = [&](Stat s) { return Stat{gb / s.median, gb / s.max, gb / s.min}; };
    Row r{name, threads, "GB/s", true, g(t[0]), {{"onednn_packed", g(t[1])}}};
    print_row(r);
    g_rows.push_back(r);
    for (auto* pb : kp) kiln_packed_b_destroy(pb);
}

std::string json_stat(const char* key, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "\"%s\": %.2f", key, v);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_gemm OUT.json [--quick] [--filter SUBSTRING]\n");
        return 2;
    }
    const std::string out_path = argv[1];
    for (int i = 2; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0) {
            g_quick = true;
            g_reps = 3;
            g_min_seconds = 0.1;
        } else if (std::strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
            g_filter = argv[++i];
        }
    }
    int32_t isa = 0;
    kiln_isa_get(&isa);
    std::printf("kiln %s, isa %s; openblas core %s; onednn %d.%d.%d\n", kiln_version(), kiln_isa_name(isa),
                openblas_get_corename(), dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch);
    const double peak1 = fma_peak(1), peak2 = fma_peak(2), bpeak1 = bf16_peak(1), bpeak2 = bf16_peak(2);
    const auto s1 = stream(1), s2 = stream(2);
    const double l3r1 = l3_read(1), l3r2 = l3_read(2);
    std::printf("bf16 vdpbf16ps peak: %.1f GFLOP/s (1T), %.1f (2T)\n", bpeak1, bpeak2);
    std::printf("FMA peak: %.1f GFLOP/s (1T), %.1f (2T); STREAM triad %.1f GB/s (1T) %.1f (2T), read %.1f (1T) %.1f (2T)\n",
                peak1, peak2, s1.first, s2.first, s1.second, s2.second);
    std::printf("L3 read (4 MiB a thread): %.1f GB/s (1T), %.1f (2T)\n", l3r1, l3r2);

    for (int t : {1, 2})
        for (int64_t s : {256, 512, 1024, 2048}) case_sgemm(s, s, s, t);
    for (int t : {1, 2}) {
        for (int64_t m : {1, 2, 4, 8, 32, 128, 256}) case_packed(m, 784, 512, t);
        for (int64_t m : {1, 32, 256}) case_packed(m, 512, 512, t);
        case_packed(16, 4096, 4096, t);
        case_packed(1024, 1024, 1024, t);
        for (int64_t m : {128, 256}) case_sgemm(m, 784, 512, t);
        case_sgemm(32, 784, 256, t);  // the training forward at batch 32: weights change every step
        case_sgemm(32, 256, 128, t);
        // Few rows times weights that are not pre-packed, both weight layouts.
        for (int64_t m : {1, 4}) {
            case_sgemm(m, 1024, 1024, t);
            case_sgemm(m, 1024, 1024, t, true);
        }
    }
    case_gemv_dram(1);
    for (int t : {1, 2}) {
        for (int64_t s : {256, 512, 1024, 2048}) case_bf16(s, s, s, t);
        for (int64_t m : {1, 2, 4, 8, 32, 128, 256}) case_bf16(m, 784, 512, t);
    }

    FILE* f = std::fopen(out_path.c_str(), "w");
    if (!f) {
        std::perror(out_path.c_str());
        return 1;
    }
    std::fprintf(f, "{\n  \"suite\": \"gemm\",\n  \"machine\": {\"isa\": \"%s\", \"openblas_core\": \"%s\", "
                 "\"peak_gflops_t1\": %.1f, \"peak_gflops_t2\": %.1f, \"peak_bf16_gflops_t1\": %.1f, \"peak_bf16_gflops_t2\": %.1f, \"stream_gbps_t1\": %.1f, \"stream_gbps_t2\": %.1f, "
                 "\"stream_read_gbps_t1\": %.1f, \"stream_read_gbps_t2\": %.1f, \"l3_read_gbps_t1\": %.1f, "
                 "\"l3_read_gbps_t2\": %.1f},\n  \"rows\": [\n",
                 kiln_isa_name(isa), openblas_get_corename(), peak1, peak2, bpeak1, bpeak2, s1.first, s2.first, s1.second,
                 s2.second, l3r1, l3r2);
    for (size_t i = 0; i < g_rows.size(); ++i) {
        const Row& r = g_rows[i];
        std::fprintf(f, "    {\"case\": \"%s\", \"threads\": %d, \"metric\": \"%s\", \"higher_is_better\": %s, "
                     "\"kiln\": %.2f, \"peers\": {", r.name.c_str(), r.threads, r.metric.c_str(),
                     r.higher_is_better ? "true" : "false", r.kiln.median);
        for (size_t j = 0; j < r.peers.size(); ++j)
            std::fprintf(f, "%s\"%s\": %.2f", j ? ", " : "", r.peers[j].first.c_str(), r.peers[j].second.median);
        std::fprintf(f, "}, \"reps\": %d, %s, %s}%s\n", g_reps, json_stat("kiln_min", r.kiln.min).c_str(),
                     json_stat("kiln_max", r.kiln.max).c_str(), i + 1 < g_rows.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    return 0;
}
