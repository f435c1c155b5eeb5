// AVX-512 fp32 GEMM micro-kernel: 14 x 32 register tile (28 zmm accumulators, 2 for B, broadcasts
// of A folded into the FMA as {1to16} memory operands).
//
// Ceiling: Zen 4 retires one 512-bit FMA per cycle (two 256-bit pipes), 32 FLOP/cycle/core; FMA
// latency 4 cycles, so >= 4 independent accumulators keep the pipes full. Per k step the 14x32 tile
// issues 28 FMAs against 2 loads of B and 14 broadcasts of A, well inside 2-3 loads/cycle.
// The m = 1 case (batch-1 inference) has only 2 accumulators per step, so it unrolls k by 4 into 8
// independent chains and is bound by streaming B (128 bytes per k step).
#include <immintrin.h>

#include "gemm_kernels.hpp"

namespace kiln {
namespace {

constexpr int MR = 14;
constexpr int NR = 32;
constexpr int kPrefetch = 8;     // k steps ahead for B in the full tile (L2-resident block)
constexpr int kPrefetchM1 = 0;   // measured: any software prefetch distance (16..64) slows the one-row path; the hardware prefetcher does best

inline void store_tile_row(float* c, __m512 v0, __m512 v1, int nr, float alpha, float beta, bool load_c,
                           __mmask16 m0, __mmask16 m1) {
    const __m512 va = _mm512_set1_ps(alpha);
    v0 = _mm512_mul_ps(v0, va);
    v1 = _mm512_mul_ps(v1, va);
    if (load_c) {
        const __m512 vb = _mm512_set1_ps(beta);
        v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), v0);
        v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), v1);
    }
    if (nr == NR) {
        _mm512_storeu_ps(c, v0);
        _mm512_storeu_ps(c + 16, v1);
    } else {
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

template <int M>
void ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha,
             float beta, bool load_c) {
    __m512 c0[M], c1[M];
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
        // The C tile is read/written only after the k loop: start bringing it in now.
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_load_ps(b);
        const __m512 b1 = _mm512_load_ps(b + 16);
        // B streams from L2: both lines of the step kPrefetch steps ahead.
        _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetch * NR), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetch * NR + 16), _MM_HINT_T0);
#pragma GCC unroll 16
        for (int i = 0; i < M; ++i) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
        a += MR;
        b += NR;
    }
    const __mmask16 m0 = nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? __mmask16(0xffff) : nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) store_tile_row(c + i * ldc, c0[i], c1[i], nr, alpha, beta, load_c, m0, m1);
}

// One row (packed contiguously: a[k]): four k steps in flight (8 accumulator chains), summed at the end.
void ukernel_m1(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha,
                float beta, bool load_c) {
    __m512 s[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) s[i] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 8
        for (int l = 0; l < 8; ++l)  // the 8 cache lines of four k steps
            if (kPrefetchM1 > 0) _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchM1 * NR + 16 * l), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) {
            const __m512 ai = _mm512_set1_ps(a[u]);
            s[2 * u] = _mm512_fmadd_ps(ai, _mm512_load_ps(b + u * NR), s[2 * u]);
            s[2 * u + 1] = _mm512_fmadd_ps(ai, _mm512_load_ps(b + u * NR + 16), s[2 * u + 1]);
        }
        a += 4;
        b += 4 * NR;
    }
    for (; k < kc; ++k) {
        const __m512 ai = _mm512_set1_ps(a[0]);
        s[0] = _mm512_fmadd_ps(ai, _mm512_load_ps(b), s[0]);
        s[1] = _mm512_fmadd_ps(ai, _mm512_load_ps(b + 16), s[1]);
        a += 1;
        b += NR;
    }
    const __m512 v0 = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[4], s[6]));
    const __m512 v1 = _mm512_add_ps(_mm512_add_ps(s[1], s[3]), _mm512_add_ps(s[5], s[7]));
    const __mmask16 m0 = nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? __mmask16(0xffff) : nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
    store_tile_row(c, v0, v1, nr, alpha, beta, load_c, m0, m1);
    (void)ldc;
}

}  // namespace

const GemmKernels kGemmAvx512 = {
    KILN_ISA_AVX512, "gemm_f32_avx512_14x32", MR, NR, /*kc=*/384, /*nc=*/512,
    {nullptr, ukernel_m1, ukernel<2>, ukernel<3>, ukernel<4>, ukernel<5>, ukernel<6>, ukernel<7>,
     ukernel<8>, ukernel<9>, ukernel<10>, ukernel<11>, ukernel<12>, ukernel<13>, ukernel<14>,
     nullptr, nullptr}};

}  // namespace kiln
