// AVX2+FMA fp32 GEMM micro-kernel: 6 x 16 register tile (12 ymm accumulators, 2 for B, 1 broadcast;
// 15 of the 16 ymm registers). Ceiling: two 256-bit FMAs per cycle, 32 FLOP/cycle/core on Zen 4;
// FMA latency 4 needs >= 8 independent accumulators, which the full tile has. m = 1 unrolls k by 4.
#include <immintrin.h>

#include "gemm_kernels.hpp"

namespace kiln {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

inline __m256i tail_mask(int n) {  // lanes < n set (n in 0..8)
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

inline void store_tile_row(float* c, __m256 v0, __m256 v1, int nr, float alpha, float beta, bool load_c) {
    const __m256 va = _mm256_set1_ps(alpha);
    v0 = _mm256_mul_ps(v0, va);
    v1 = _mm256_mul_ps(v1, va);
    if (nr == NR) {
        if (load_c) {
            const __m256 vb = _mm256_set1_ps(beta);
            v0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), v0);
            v1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), v1);
        }
        _mm256_storeu_ps(c, v0);
        _mm256_storeu_ps(c + 8, v1);
        return;
    }
    const __m256i m0 = tail_mask(nr < 8 ? nr : 8), m1 = tail_mask(nr > 8 ? nr - 8 : 0);
    if (load_c) {
        const __m256 vb = _mm256_set1_ps(beta);
        v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c, m0), v0);
        v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8, m1), v1);
    }
    _mm256_maskstore_ps(c, m0, v0);
    _mm256_maskstore_ps(c + 8, m1, v1);
}

// The M x 16 register tile over kc steps. A packed (AMode kDirectAPacked: MR floats a step) or in
// place as rows (kDirectARows) or columns (kDirectACols); B packed (PackedB: aligned NR-float steps,
// prefetched 8 steps ahead) or in place, row k at b + k * ldb (a pre-packed B's panel read as rows
// of NR floats, or B's own rows). Full: B's rows are NR columns wide (no masks in the loop).
//
// The loop needs 15 of the 16 ymm registers. Left alone, GCC kept alpha (needed only after the
// loop) in the 16th and spilled an accumulator instead: a load, FMA and store per step through the
// stack, ~11 cycles a step instead of 6. Parking alpha and beta in memory frees the register.
// 1 thread, KILN_ISA=avx2 on this Zen 4 (whose 256-bit FMA peak equals its 512-bit one), GFLOP/s:
// 1024^3 49 -> 104, 2048^3 49 -> 105.
template <int M, int AMode, bool PackedB, bool Full>
void tile(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int nr,
          float alpha, float beta, bool load_c) {
    float alpha_m = alpha, beta_m = beta;
    asm volatile("" : "+m"(alpha_m), "+m"(beta_m));
    const __m256i m0 = tail_mask(nr < 8 ? nr : 8), m1 = tail_mask(nr > 8 ? nr - 8 : 0);
    __m256 c0[M], c1[M];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
        c0[i] = _mm256_setzero_ps();
        c1[i] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; ++k) {
        __m256 b0, b1;
        if constexpr (PackedB) {
            b0 = _mm256_load_ps(b);
            b1 = _mm256_load_ps(b + 8);
            _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);  // one 64-byte line per step
        } else {
            b0 = Full ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, m0);
            b1 = Full ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, m1);
            _mm_prefetch(reinterpret_cast<const char*>(b + 4 * ldb), _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) {
            const __m256 ai = _mm256_broadcast_ss(AMode == kDirectARows ? a + i * lda : a + i);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
        a += AMode == kDirectACols ? lda : AMode == kDirectARows ? 1 : MR;
        b += PackedB ? NR : ldb;
    }
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) store_tile_row(c + i * ldc, c0[i], c1[i], nr, alpha_m, beta_m, load_c);
}

// Both operands packed (see gemm_kernels.hpp; a packed B panel is zero-padded to NR columns).
template <int M>
void ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha,
             float beta, bool load_c, const TileEpilogue*) {
    tile<M, kDirectAPacked, true, true>(kc, a, 0, b, NR, c, ldc, nr, alpha, beta, load_c);
}

// A and B in place (see GemmUkernelDirect).
template <int M, int AMode>
void ukernel_direct(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                    int nr, float alpha, float beta, bool load_c, const TileEpilogue*) {
    if (nr == NR)
        tile<M, AMode, false, true>(kc, a, lda, b, ldb, c, ldc, nr, alpha, beta, load_c);
    else
        tile<M, AMode, false, false>(kc, a, lda, b, ldb, c, ldc, nr, alpha, beta, load_c);
}

// One row: k unrolled by 4 into 8 chains, bound by streaming B. No software prefetch: as on AVX-512,
// the hardware prefetcher does better. KILN_ISA=avx2, 1 thread, with -> without a prefetch 48 steps
// ahead: packed 1x784x512 35.5 -> 39.1 GFLOP/s, GEMV from DRAM 27.5 -> 28.9 GB/s, mlp-small batch 1
// 30.9 -> 28.3 us.
void ukernel_m1(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha,
                float beta, bool load_c, const TileEpilogue*) {
    __m256 s[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) s[i] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) {
            const __m256 ai = _mm256_broadcast_ss(a + u);
            s[2 * u] = _mm256_fmadd_ps(ai, _mm256_load_ps(b + u * NR), s[2 * u]);
            s[2 * u + 1] = _mm256_fmadd_ps(ai, _mm256_load_ps(b + u * NR + 8), s[2 * u + 1]);
        }
        a += 4;
        b += 4 * NR;
    }
    for (; k < kc; ++k) {
        const __m256 ai = _mm256_broadcast_ss(a);
        s[0] = _mm256_fmadd_ps(ai, _mm256_load_ps(b), s[0]);
        s[1] = _mm256_fmadd_ps(ai, _mm256_load_ps(b + 8), s[1]);
        a += 1;
        b += NR;
    }
    const __m256 v0 = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[4], s[6]));
    const __m256 v1 = _mm256_add_ps(_mm256_add_ps(s[1], s[3]), _mm256_add_ps(s[5], s[7]));
    store_tile_row(c, v0, v1, nr, alpha, beta, load_c);
    (void)ldc;
}

}  // namespace

void pack_b_avx2(bool trans, const float* b, int64_t ldb, int64_t j0, int64_t n, int64_t p0, int64_t kc, int nr,
                 float* dst) {
    if (trans || nr != NR || n < NR) {
        pack_b(trans, b, ldb, j0, n, p0, kc, nr, dst);
        return;
    }
    constexpr int64_t kRowsAhead = 4;  // as pack_b_avx512: source rows come from L3 or DRAM
    const int64_t full = n / NR * NR;
    for (int64_t k = 0; k < kc; ++k) {
        const float* src = b + (p0 + k) * ldb + j0;
        if (k + kRowsAhead < kc)
            for (int64_t j = 0; j < n; j += 16)
                _mm_prefetch(reinterpret_cast<const char*>(src + kRowsAhead * ldb + j), _MM_HINT_T0);
        float* o = dst + k * NR;
        for (int64_t jp = 0; jp < full; jp += NR) {
            _mm256_storeu_ps(o + jp * kc, _mm256_loadu_ps(src + jp));
            _mm256_storeu_ps(o + jp * kc + 8, _mm256_loadu_ps(src + jp + 8));
        }
    }
    if (full < n) pack_b(false, b, ldb, j0 + full, n - full, p0, kc, nr, dst + full * kc);
}

const GemmKernels kGemmAvx2 = {
    KILN_ISA_AVX2, "gemm_f32_avx2_6x16", MR, NR, /*kc=*/256, /*nc=*/512,
    {nullptr, ukernel_m1, ukernel<2>, ukernel<3>, ukernel<4>, ukernel<5>, ukernel<6>, nullptr,
     nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
    {{nullptr, ukernel_direct<1, kDirectARows>, ukernel_direct<2, kDirectARows>, ukernel_direct<3, kDirectARows>,
      ukernel_direct<4, kDirectARows>, ukernel_direct<5, kDirectARows>, ukernel_direct<6, kDirectARows>},
     {nullptr, ukernel_direct<1, kDirectACols>, ukernel_direct<2, kDirectACols>, ukernel_direct<3, kDirectACols>,
      ukernel_direct<4, kDirectACols>, ukernel_direct<5, kDirectACols>, ukernel_direct<6, kDirectACols>}},
    /*fused_store=*/false, /*direct_max_rows=*/128};

}  // namespace kiln
