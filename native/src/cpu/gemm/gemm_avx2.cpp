// AVX2+FMA fp32 GEMM micro-kernel: 6 x 16 register tile (12 ymm accumulators, 2 for B, 1 broadcast;
// 15 of the 16 ymm registers). Ceiling: two 256-bit FMAs per cycle, 32 FLOP/cycle/core on Zen 4;
// FMA latency 4 needs >= 8 independent accumulators, which the full tile has. With pre-packed weights,
// few-row tiles read their B panel as 2 to 4 streams side by side (see tile and ukernel_m1).
#include <immintrin.h>

#include <algorithm>
#include <utility>

#include "gemm_kernels.hpp"
#include "gemm_stream.hpp"
#include "gemm_vec.hpp"

namespace kiln {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

inline __m256i tail_mask(int n) {  // lanes < n set (n in 0..8)
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

// bias, activation, residual on one vector of a tile row (lanes past the tile masked off), in the
// order and with the arithmetic of the separate epilogue pass (eltwise_avx2), so fused and unfused
// results are identical.
__attribute__((always_inline)) inline __m256 epilogue(__m256 x, const TileEpilogue* ep, int i, int off, __m256i m) {
    if (ep->bias) x = _mm256_add_ps(x, _mm256_maskload_ps(ep->bias + off, m));
    if (ep->act == KILN_UNARY_RELU) {
        x = _mm256_max_ps(_mm256_setzero_ps(), x);  // NaN stays NaN
    } else if (ep->act == KILN_UNARY_LEAKY_RELU) {
        x = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(ep->act_alpha)),
                             _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    }
    if (ep->residual) x = _mm256_add_ps(x, _mm256_maskload_ps(ep->residual + int64_t(i) * ep->ld_residual + off, m));
    return x;
}

// Row i of a tile: alpha * v + beta * C (when load_c), the epilogue if any, one store.
__attribute__((always_inline)) inline void store_tile_row(float* c, __m256 v0, __m256 v1, int nr, float alpha,
                                                          float beta, bool load_c, const TileEpilogue* ep, int i) {
    const __m256 va = _mm256_set1_ps(alpha);
    v0 = _mm256_mul_ps(v0, va);
    v1 = _mm256_mul_ps(v1, va);
    const __m256i all = _mm256_set1_epi32(-1);
    const bool full = nr == NR;
    const __m256i m0 = full ? all : tail_mask(nr < 8 ? nr : 8), m1 = full ? all : tail_mask(nr > 8 ? nr - 8 : 0);
    if (load_c) {
        const __m256 vb = _mm256_set1_ps(beta);
        v0 = _mm256_fmadd_ps(vb, full ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, m0), v0);
        v1 = _mm256_fmadd_ps(vb, full ? _mm256_loadu_ps(c + 8) : _mm256_maskload_ps(c + 8, m1), v1);
    }
    if (ep) {
        v0 = epilogue(v0, ep, i, 0, m0);
        v1 = epilogue(v1, ep, i, 8, m1);
    }
    if (full) {
        _mm256_storeu_ps(c, v0);
        _mm256_storeu_ps(c + 8, v1);
    } else {
        _mm256_maskstore_ps(c, m0, v0);
        _mm256_maskstore_ps(c + 8, m1, v1);
    }
}

// The M x 16 register tile over kc steps. A packed (AMode kDirectAPacked: packed_a_stride(M, MR)
// floats a step) or in place as rows (kDirectARows) or columns (kDirectACols); B packed (PackedB:
// aligned NR-float steps, prefetched 8 steps ahead; not for up to kCompactRows rows, which stream B
// as ukernel_m1 does: KILN_ISA=avx2, 1 thread, pre-packed B, with the dense A panels, 2x784x512
// 64 -> 79 GFLOP/s without the prefetch, 53 before both) or in place, row k at b + k * ldb (a pre-packed
// B's panel read as rows of NR floats, or B's own rows). Full: B's rows are NR columns wide (no masks
// in the loop).
//
// The loop needs 15 of the 16 ymm registers. Left alone, GCC kept alpha (needed only after the
// loop) in the 16th and spilled an accumulator instead: a load, FMA and store per step through the
// stack, ~11 cycles a step instead of 6. Parking alpha and beta in memory frees the register.
// 1 thread, KILN_ISA=avx2 on this Zen 4 (whose 256-bit FMA peak equals its 512-bit one), GFLOP/s:
// 1024^3 49 -> 104, 2048^3 49 -> 105.
//
// PackOut (B in place): each step's NR floats of B (zeros past nr) are also stored to bo, aligned,
// NR floats a step: the tile packs B's whole-K panel as it reads it. Its steps run in k order, as
// the direct tiles' over a packed panel (read as rows NR floats apart) do, so the sums agree.
template <int M, int AMode, bool PackedB, bool Full, bool PackOut = false>
void tile(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int nr,
          float alpha, float beta, bool load_c, const TileEpilogue* ep, float* bo = nullptr) {
    static_assert(!(PackOut && PackedB), "PackOut reads B in place");
    // Short tiles keep S k steps in flight in S sets of accumulators, summed after the loop: with
    // one set, 2 or 3 rows (4 or 6 FMA chains) are bound by the FMA latency (4 cycles, two pipes:
    // 8 chains needed). KILN_ISA=avx2, 1 thread, 32 x 784 x 512 with pre-packed weights (5 panels
    // of 6 rows and one of 2): the 2-row panel cost 2.05x a 6-row panel's time per row, 1.36x with
    // two sets and B in registers; the mlp-small plan at batch 32 went 323 -> 312 us. Which rows
    // share a panel depends only on the problem (panels start at multiples of MR), so results stay
    // independent of the thread count.
    constexpr int S = M == 1 ? 4 : M <= 3 ? 2 : 1;
    float alpha_m = alpha, beta_m = beta;
    asm volatile("" : "+m"(alpha_m), "+m"(beta_m));
    const __m256i m0 = tail_mask(nr < 8 ? nr : 8), m1 = tail_mask(nr > 8 ? nr - 8 : 0);
    __m256 c0[S][M], c1[S][M];
#pragma GCC unroll 4
    for (int s = 0; s < S; ++s)
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) {
            c0[s][i] = _mm256_setzero_ps();
            c1[s][i] = _mm256_setzero_ps();
        }
    // One k step into accumulator set s.
    // A's pointer moves this far a k step (see AMode).
    const int64_t a_step = AMode == kDirectACols ? lda : AMode == kDirectARows ? 1 : packed_a_stride(M, MR);
    auto step = [&](int s) __attribute__((always_inline)) {
        __m256 b0, b1;
        if constexpr (PackedB) {
            b0 = _mm256_load_ps(b);
            b1 = _mm256_load_ps(b + 8);
            if constexpr (M > kCompactRows)
                _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);  // one 64-byte line per step
        } else {
            b0 = Full ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, m0);
            b1 = Full ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, m1);
            _mm_prefetch(reinterpret_cast<const char*>(b + 4 * ldb), _MM_HINT_T0);
            if constexpr (PackOut) {
                _mm256_store_ps(bo, b0);
                _mm256_store_ps(bo + 8, b1);
                bo += NR;
            }
        }
        // Loaded once per step: for short tiles GCC otherwise folds a load of B into every FMA
        // (M loads a vector instead of one), and 2 rows became bound by the loads.
        if constexpr (M > 1) asm("" : "+x"(b0), "+x"(b1));
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) {
            const __m256 ai = _mm256_broadcast_ss(AMode == kDirectARows ? a + i * lda : a + i);
            c0[s][i] = _mm256_fmadd_ps(ai, b0, c0[s][i]);
            c1[s][i] = _mm256_fmadd_ps(ai, b1, c1[s][i]);
        }
        a += a_step;
        b += PackedB ? NR : ldb;
    };
    int64_t k = 0;
    if constexpr (PackedB && S <= 2) {
        // Two streams: the steps alternate between the two halves of the panel's k range, the
        // first half's into set 0, the second's into set S - 1 (the same set for 4-6 rows, which
        // have FMA chains enough). In-process A/B (ab_gemm), Zen 3, GFLOP/s, one stream -> two: 1
        // thread, 2x4096x4096 from DRAM 18.5 -> 23.0, 3x4096x4096 26.6 -> 33.7, 4x4096x4096 36.1 ->
        // 45.0, 6x4096x4096 55.0 -> 72.1, 8x4096x4096 (6 + 2 rows) 44.4 -> 49.2, 2x4096x1024 (L3)
        // 28.6 -> 37.7; 2 threads, 6x4096x4096 79 -> 97; unchanged where B comes from L2/L3 after the
        // first panel (2x, 3x, 6x and 32x784x512, 32x4096x4096).
        const int64_t half = kc / 2;
        const float* a2 = a + half * a_step;
        const float* b2 = b + half * NR;
        for (; k < half; ++k) {
            step(0);
            std::swap(a, a2);
            std::swap(b, b2);
            step(S - 1);
            std::swap(a, a2);
            std::swap(b, b2);
        }
        a = a2;  // the second half's end: the steps past 2 * half
        b = b2;
        k = 2 * half;
    } else {
        for (; k + S <= kc; k += S)
#pragma GCC unroll 4
            for (int s = 0; s < S; ++s) step(s);
    }
    for (; k < kc; ++k) step(0);
    if constexpr (S > 1) {
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) {
            if constexpr (S == 4) {
                c0[0][i] = _mm256_add_ps(_mm256_add_ps(c0[0][i], c0[1][i]), _mm256_add_ps(c0[2][i], c0[3][i]));
                c1[0][i] = _mm256_add_ps(_mm256_add_ps(c1[0][i], c1[1][i]), _mm256_add_ps(c1[2][i], c1[3][i]));
            } else {
                c0[0][i] = _mm256_add_ps(c0[0][i], c0[1][i]);
                c1[0][i] = _mm256_add_ps(c1[0][i], c1[1][i]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) store_tile_row(c + i * ldc, c0[0][i], c1[0][i], nr, alpha_m, beta_m, load_c, ep, i);
}

// Both operands packed (see gemm_kernels.hpp; a packed B panel is zero-padded to NR columns).
template <int M>
void ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha,
             float beta, bool load_c, const TileEpilogue* ep) {
    tile<M, kDirectAPacked, true, true>(kc, a, 0, b, NR, c, ldc, nr, alpha, beta, load_c, ep);
}

// A and B in place (see GemmUkernelDirect).
template <int M, int AMode>
void ukernel_direct(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                    int nr, float alpha, float beta, bool load_c, const TileEpilogue* ep) {
    if (nr == NR)
        tile<M, AMode, false, true>(kc, a, lda, b, ldb, c, ldc, nr, alpha, beta, load_c, ep);
    else
        tile<M, AMode, false, false>(kc, a, lda, b, ldb, c, ldc, nr, alpha, beta, load_c, ep);
}

// MR rows, A as rows, B's rows in place, each step of B also stored to b_out (see PackOut).
void ukernel_direct_pack_b(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* b_out,
                           float* c, int64_t ldc, int nr, float alpha, float beta, bool load_c,
                           const TileEpilogue* ep) {
    if (nr == NR)
        tile<MR, kDirectARows, false, true, true>(kc, a, lda, b, ldb, c, ldc, nr, alpha, beta, load_c, ep, b_out);
    else
        tile<MR, kDirectARows, false, false, true>(kc, a, lda, b, ldb, c, ldc, nr, alpha, beta, load_c, ep, b_out);
}

// One row, bound by streaming B's panel (kc x 16 floats, contiguous): its k range is cut into S
// parts read side by side, one k step of each per FMA pair (8 chains), so that S streams of lines
// are in flight rather than one. No software prefetch: as on AVX-512, the hardware prefetcher does
// better (KILN_ISA=avx2 on Zen 4, 1 thread, with -> without a prefetch 48 steps ahead: packed
// 1x784x512 35.5 -> 39.1 GFLOP/s, GEMV from DRAM 27.5 -> 28.9 GB/s, mlp-small batch 1 30.9 -> 28.3 us).
// One stream -> S = 2 -> S = 4 on Zen 3 (AVX2 only), ab_gemm in-process A/B, 1 thread, medians of
// 9 and 15 rounds, GFLOP/s: 1x4096x4096 from DRAM 10.9 -> 13.4 -> 13.9 and 9.9 -> 12.1 -> 13.0
// (21.8 -> 27.8 GB/s; oneDNN's packed matmul had 23.8 in the gemm-avx2 record), 1x4096x1024 from L3
// 20.2 -> 25.5 -> 26.9, 1x784x512 26-30 -> 29-32 -> 28-31, 1x256x128 32 -> 33-34.
template <int S>
void ukernel_m1(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha,
                float beta, bool load_c, const TileEpilogue* ep) {
    constexpr int U = 4 / S;  // k steps per stream per iteration: 8 accumulators in all
    __m256 s[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) s[i] = _mm256_setzero_ps();
    const int64_t part = kc / S / U * U;
    const float* ap[S];
    const float* bp[S];
#pragma GCC unroll 4
    for (int q = 0; q < S; ++q) ap[q] = a + q * part, bp[q] = b + q * part * NR;
    for (int64_t k = 0; k < part; k += U) {
#pragma GCC unroll 4
        for (int q = 0; q < S; ++q)
#pragma GCC unroll 4
            for (int u = 0; u < U; ++u) {
                const __m256 ai = _mm256_broadcast_ss(ap[q] + k + u);
                const int r = 2 * (q * U + u);
                s[r] = _mm256_fmadd_ps(ai, _mm256_load_ps(bp[q] + (k + u) * NR), s[r]);
                s[r + 1] = _mm256_fmadd_ps(ai, _mm256_load_ps(bp[q] + (k + u) * NR + 8), s[r + 1]);
            }
    }
    for (int64_t k = S * part; k < kc; ++k) {
        const __m256 ai = _mm256_broadcast_ss(a + k);
        s[0] = _mm256_fmadd_ps(ai, _mm256_load_ps(b + k * NR), s[0]);
        s[1] = _mm256_fmadd_ps(ai, _mm256_load_ps(b + k * NR + 8), s[1]);
    }
    const __m256 v0 = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[4], s[6]));
    const __m256 v1 = _mm256_add_ps(_mm256_add_ps(s[1], s[3]), _mm256_add_ps(s[5], s[7]));
    store_tile_row(c, v0, v1, nr, alpha, beta, load_c, ep, 0);
    (void)ldc;
}

// r[i] (row i of an 8 x 8 block) -> r[u] (its column u), in registers.
__attribute__((always_inline)) inline void transpose8(__m256 (&r)[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// The first W floats of x at p (W in 2..8), by plain stores of 8, 4, 2 and 1 floats.
template <int W>
__attribute__((always_inline)) inline void store_first(float* p, __m256 x) {
    static_assert(W >= 2 && W <= 8, "2..8 floats");
    if constexpr (W == 8) {
        _mm256_storeu_ps(p, x);
    } else {
        const __m128 lo = _mm256_castps256_ps128(x);
        if constexpr (W >= 4) _mm_storeu_ps(p, lo);
        if constexpr (W == 2 || W == 3) _mm_storel_pi(reinterpret_cast<__m64*>(p), lo);
        if constexpr (W == 3) _mm_store_ss(p + 2, _mm_movehl_ps(lo, lo));
        if constexpr (W > 4) {
            const __m128 hi = _mm256_extractf128_ps(x, 1);
            if constexpr (W == 5) _mm_store_ss(p + 4, hi);
            if constexpr (W == 6 || W == 7) _mm_storel_pi(reinterpret_cast<__m64*>(p + 4), hi);
            if constexpr (W == 7) _mm_store_ss(p + 6, _mm_movehl_ps(hi, hi));
        }
    }
}

// Rows [0, rows) of a row-major source (row i at src + i * ld), kc steps, written k-major: step k
// at d + k * Stride holds the W rows' floats (rows <= W <= 8; the lanes past `rows` zero). 8
// steps at a time are loaded as 8 vectors (zeros past `rows`), transposed in registers and stored
// as 8 steps of W floats; the last steps one float at a time.
template <int W, int Stride>
inline void rows_to_steps8(const float* src, int64_t ld, int rows, int64_t kc, float* d) {
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) r[i] = i < W && i < rows ? _mm256_loadu_ps(src + i * ld + k) : _mm256_setzero_ps();
        transpose8(r);
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) store_first<W>(d + (k + u) * Stride, r[u]);
    }
    for (; k < kc; ++k)
        for (int i = 0; i < W; ++i) d[k * Stride + i] = i < rows ? src[i * ld + k] : 0.0f;
}

}  // namespace

void pack_a_avx2(bool trans, const float* a, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t kc, int mr,
                 float* dst) {
    if (trans || mr != MR) {  // A transposed: each step's rows are contiguous (the generic copy)
        pack_a(trans, a, lda, i0, m, p0, kc, mr, dst);
        return;
    }
    for (int64_t ip = 0; ip < m; ip += MR) {
        const int rows = int(std::min<int64_t>(MR, m - ip));
        const float* s = a + (i0 + ip) * lda + p0;
        float* d = dst + ip * kc;  // panel ip / MR starts at (ip / MR) * kc * MR
        switch (rows) {  // dense steps of `rows` floats up to kCompactRows (packed_a_stride), else MR
            case 1: pack_a(false, a, lda, i0 + ip, 1, p0, kc, mr, d); break;
            case 2: rows_to_steps8<2, 2>(s, lda, rows, kc, d); break;
            case 3: rows_to_steps8<3, 3>(s, lda, rows, kc, d); break;
            case 4: rows_to_steps8<4, 4>(s, lda, rows, kc, d); break;
            default: rows_to_steps8<MR, MR>(s, lda, rows, kc, d); break;
        }
    }
}

void pack_b_avx2(bool trans, const float* b, int64_t ldb, int64_t j0, int64_t n, int64_t p0, int64_t kc, int nr,
                 float* dst) {
    if (nr != NR || n < NR) {
        pack_b(trans, b, ldb, j0, n, p0, kc, nr, dst);
        return;
    }
    if (!trans) {
        pack_b_rows<Vec8, NR>(b, ldb, j0, n, p0, kc, dst);
        return;
    }
    // op(B) transposed: B's rows are the panel's columns, 8 at a time (each half of a panel) through
    // the same register transposes; the columns past the last whole panel through pack_b.
    const int64_t full = n / NR * NR;
    for (int64_t jp = 0; jp < full; jp += NR)
        for (int h = 0; h < 2; ++h)
            rows_to_steps8<8, NR>(b + (j0 + jp + 8 * h) * ldb + p0, ldb, 8, kc, dst + jp * kc + 8 * h);
    if (full < n) pack_b(true, b, ldb, j0 + full, n - full, p0, kc, NR, dst + full * kc);
}

// kc x nc = 512 x 128: the B block (256 KiB) stays in half of a Zen 3 core's 512 KiB L2 while the
// A panels stream beside it; at 256 x 512 it filled the whole L2 (Zen 4's is 1 MiB) and every row
// panel re-read part of it from L3. ab_gemm in-process A/B on Zen 3 (AVX2 only), 1 thread, medians
// of 11 rounds (best round), GFLOP/s, 256 x 512 -> 512 x 128: pre-packed B 32x4096x4096 66.9 (72.8)
// -> 65.5 (79.4), 32x1024x4096 68.4 (75.3) -> 75.4 (83.4), 32x4096x1024 67.5 (72.3) -> 73.0 (82.8),
// 256x1024x4096 83.9 (86.9) -> 91.7 (94.1), 1024^3 81.1 (84.4) -> 85.0 (90.2); B packed per call
// 512^3 77.6 (86.9) -> 85.0 (89.4), 256x784x512 69.6 (87.4) -> 81.1 (90.0), 128x784x512 84.7 ->
// 86.3; 1024^3, 1536^3, 2048^3 unchanged within the noise (15 rounds: 2048^3 76.6 (80.8) -> 75.0
// (86.3)). 1024 x 64 measured alike, 768 x 96 and 384 x 160 in between. Direct products keep
// blocks of up to 512 columns (direct_nc_max).
const GemmKernels kGemmAvx2 = {
    KILN_ISA_AVX2, "gemm_f32_avx2_6x16", MR, NR, /*kc=*/512, /*nc=*/128,
    {nullptr, ukernel_m1<4>, ukernel<2>, ukernel<3>, ukernel<4>, ukernel<5>, ukernel<6>, nullptr,
     nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
    {{nullptr, ukernel_direct<1, kDirectARows>, ukernel_direct<2, kDirectARows>, ukernel_direct<3, kDirectARows>,
      ukernel_direct<4, kDirectARows>, ukernel_direct<5, kDirectARows>, ukernel_direct<6, kDirectARows>},
     {nullptr, ukernel_direct<1, kDirectACols>, ukernel_direct<2, kDirectACols>, ukernel_direct<3, kDirectACols>,
      ukernel_direct<4, kDirectACols>, ukernel_direct<5, kDirectACols>, ukernel_direct<6, kDirectACols>}},
    // Direct up to two row panels only. On a CPU whose best level is AVX2 (Zen 3: AMD EPYC family
    // 25 model 1, 512 KiB L2) the direct tiles, which read B's rows a row stride apart, lost to
    // packing B from 16 rows on. In-process A/B, 1 thread, GFLOP/s, direct -> packed (median of 9
    // rounds): 16x784x512 58 -> 67, 32x784x256 62 -> 78, 32x784x512 57 -> 75, 128x784x256 68 -> 84,
    // 128x784x512 59 -> 86, 128x784x520 73 -> 85, 128x1024x256 75 -> 87; 128x512x512 82 -> 84; kept
    // direct: 8x784x512 (62 vs 51 packed), 12x784x512 (62 vs 60). Smaller direct column blocks
    // (128 or 64 KiB) did not help (32x784x512 55-60 at each), so it is the strided reads, not the
    // L2's size. (On Zen 4 with KILN_ISA=avx2, where AVX-512 is the default, 128 rows measured best:
    // 32x784x256 74 packed -> 102-105 direct.) Small B (kDirectMaxBFloats) stays direct at any height.
    /*fused_store=*/true, /*direct_max_rows=*/12,
    // Direct blocks at nc = 512 took 784 x 512 B blocks (1.6 MB), re-read from L3 by every 6-row
    // panel. 1 thread, GFLOP/s, whole B -> 256 KiB blocks: 32x784x512 80 -> 98, 128x784x512 83 ->
    // 103, 32x784x256 97 -> 104 (384 KiB alike, 512 and 768 KiB in between).
    /*direct_block_bytes=*/256 * 1024,
    // Few rows, B in place: M x U broadcasts of A in registers (16 ymm in all). At 3 and 4 rows, U = 2
    // left a pass one store per 2 FMAs (Zen 3 stores one ymm a cycle: half the FMA peak); U = 3 (12
    // broadcasts, 3 rows of B, 1 accumulator: no spills) makes it 3 FMAs. In-process A/B, 1 thread,
    // GFLOP/s, U = 2 -> 3: 4x1024x1024 56 -> 76, 4x784x512 56 -> 71, 4x512x512 54 -> 68, 3x1024x1024
    // 54 -> 71, 3x784x512 52 -> 62 (U = 4 at 3 rows, 17 registers: within the noise of U = 3).
    {nullptr, stream_rows<Vec8, 1, 4>, stream_rows<Vec8, 2, 4>, stream_rows<Vec8, 3, 3>,
     stream_rows<Vec8, 4, 3>},
    // M x J accumulators in 16 ymm registers: 8 FMA chains or more.
    {nullptr, stream_rows_t<1, 8>, stream_rows_t<2, 4>, stream_rows_t<3, 2>, stream_rows_t<4, 2>},
    /*stream_max_rows=*/4,
    // Dots (8 accumulators, A's chunk loaded once for its J FMAs) ran at 77-90 GFLOP/s whatever n;
    // the tiles, 256 x 256 x n, 1 thread: n = 5 28, 6 34, 8 45, 9 51, 10 57, 12 69, 14 80, 15 86,
    // 16 113. Long K, B transposed, packed -> dots: 30x643x34 40 -> 88, 32x784x512 73 -> 99,
    // 200x512x100 82 -> 95, 1000x1000x100 86 -> 95; 256x784x512, 1024^3 unchanged.
    /*narrow_dots_cols=*/cols_bits(5, 15), /*long_k_dots=*/true, /*a_cols_any_k=*/false,
    /*direct_nc_max=*/512,
    // 5-12 rows where the 6-row direct tiles do worse (B's rows aliasing, or a short second panel)
    // stream B in groups of up to 4 rows (see stream_groups_pay in gemm.cpp).
    /*stream_group_max_rows=*/12,
    // Small B (up to 256 KiB) in place at any height, A as rows, only with B's rows under 1 KiB
    // apart or all of B in L1: from 256 floats a row on, the direct tiles' strided reads of B from
    // L2 lost to packing on Zen 3. In-process A/B, 1 thread, packed / direct, median ratio of 8-9
    // runs (each the median of 5-9 rounds; the machine was noisy): 1024x64x1024 (rows 4 KiB apart)
    // 1.3-1.6x (47 -> 75 GFLOP/s), 512x128x512 1.14 (range 1.03-1.29), 256x128x512 1.12
    // (1.01-1.31), 256x256x256 1.05 (0.92-1.17), 512x128x256 87 -> 91, 256x192x256 72 -> 81; 2
    // threads, one run: 256x256x256 117 -> 134, 512x128x512 105 -> 145, 256x128x512 79 -> 101,
    // 1024x64x1024 76 -> 139. Kept direct: 1024x256x64 (93 vs 83), 4096x256x64 (87 vs 78),
    // 1024x1024x64 (90 vs 81), 512x256x128 (91 vs 86), 256x256x192 (94 vs 72-89), 128x256x128 (94
    // vs 89), 200x64x300 (91 vs 85). A transposed (weight gradients) stays direct: 784x32x256 (B in
    // L1) 86 vs 78, 784x128x256 even over 6 runs (packed 63-87, direct 65-88).
    /*small_b_direct_max_ldb=*/255,
    // More than one row panel, up to 256 rows, short K, B in place (not small): B packed per call
    // into whole-K panels a column block at a time, A read in place, kc = K (pack_b_direct in
    // gemm.cpp). Where each thread packed A and B block by block, a row-split thread packed all of B
    // and a column-split one all of A for its share. In-process A/B on Zen 3, median of 9 rounds,
    // GFLOP/s, block-packed -> whole-K panels, 2 threads: 128x784x512 151 -> 178, 256x784x512 158 ->
    // 184, 128x784x256 101 -> 115, 32x784x256 125 -> 137, 13x784x512 84 -> 101, 64x2048x512 146 ->
    // 159, 200x2000x500 151 -> 163, 100x300x200 148 -> 158, NT 128x256x784 167 -> 172; 1 thread:
    // 128x784x256 89 -> 93, 256x784x512 92 -> 96, 64x512x512 84 -> 87, 16x784x512 and 24x784x512
    // even (65 -> 63, 65 -> 64), 32x784x256 even. The Fashion-MNIST MLP's training step (ab_train,
    // 11 rounds): batch 32 at 2 threads 113.8k -> 121.1k samples/s, batch 128 117.9k -> 122.0k.
    /*pack_b_direct=*/true,
    // The first row panel of each such block packs B as its tiles read it (B's rows in place, one
    // pass over B fewer): in-process A/B, median of 9-11 rounds, GFLOP/s, packing pass -> packed by
    // the first panel, 1 thread: 32x784x256 76 -> 84, 16x784x512 67 -> 73, 64x512x512 89 -> 95,
    // 128x784x256 94 -> 98, 256x784x512 94 either way; 2 threads (a slow phase): 16x784x512 88 ->
    // 103, 32x784x256 102 -> 108, 128x784x512 117 -> 120, 256x784x512 even.
    ukernel_direct_pack_b};

}  // namespace kiln
