// AVX512_BF16 GEMM micro-kernel: bf16 inputs, f32 accumulation, 14 x 32 tile.
//
// Operands come packed as bf16 pairs along k (one 32-bit unit = steps 2u and 2u+1, see gemm.cpp),
// so `kc` counts pair units and each vdpbf16ps adds two products per lane: 64 FLOP per
// instruction. Ceiling on Zen 4: one zmm vdpbf16ps per cycle = 64 FLOP/cycle/core (2x fp32 FMA).
// Compiled with -mavx512bf16; dispatch uses it only when CPUID reports AVX512_BF16.
#include <immintrin.h>

#include "gemm_kernels.hpp"

namespace kiln {
namespace {

constexpr int MR = 14;
constexpr int NR = 32;

inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

inline void store_row(float* c, __m512 v0, __m512 v1, int nr, float alpha, float beta, bool load_c) {
    const __mmask16 m0 = nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? __mmask16(0xffff) : nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
    const __m512 va = _mm512_set1_ps(alpha);
    v0 = _mm512_mul_ps(v0, va);
    v1 = _mm512_mul_ps(v1, va);
    if (load_c) {
        const __m512 vb = _mm512_set1_ps(beta);
        v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), v0);
        v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), v1);
    }
    _mm512_mask_storeu_ps(c, m0, v0);
    _mm512_mask_storeu_ps(c + 16, m1, v1);
}

template <int M>
void ukernel(int64_t ku, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha, float beta,
             bool load_c) {
    const auto* a32 = reinterpret_cast<const int*>(a);
    __m512 c0[M], c1[M];
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
    }
    for (int64_t u = 0; u < ku; ++u) {
        const __m512bh b0 = as_bh(_mm512_load_si512(b));
        const __m512bh b1 = as_bh(_mm512_load_si512(b + 16));
        _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR + 16), _MM_HINT_T0);
#pragma GCC unroll 16
        for (int i = 0; i < M; ++i) {
            const __m512bh ai = as_bh(_mm512_set1_epi32(a32[i]));
            c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
        }
        a32 += MR;
        b += NR;
    }
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) store_row(c + i * ldc, c0[i], c1[i], nr, alpha, beta, load_c);
}

// One row (pairs packed contiguously): four units in flight, 8 accumulator chains.
void ukernel_m1(int64_t ku, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha, float beta,
                bool load_c) {
    const auto* a32 = reinterpret_cast<const int*>(a);
    __m512 s[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) s[i] = _mm512_setzero_ps();
    int64_t u = 0;
    for (; u + 4 <= ku; u += 4) {
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
            const __m512bh ai = as_bh(_mm512_set1_epi32(a32[q]));
            s[2 * q] = _mm512_dpbf16_ps(s[2 * q], ai, as_bh(_mm512_load_si512(b + q * NR)));
            s[2 * q + 1] = _mm512_dpbf16_ps(s[2 * q + 1], ai, as_bh(_mm512_load_si512(b + q * NR + 16)));
        }
        a32 += 4;
        b += 4 * NR;
    }
    for (; u < ku; ++u) {
        const __m512bh ai = as_bh(_mm512_set1_epi32(a32[0]));
        s[0] = _mm512_dpbf16_ps(s[0], ai, as_bh(_mm512_load_si512(b)));
        s[1] = _mm512_dpbf16_ps(s[1], ai, as_bh(_mm512_load_si512(b + 16)));
        a32 += 1;
        b += NR;
    }
    const __m512 v0 = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[4], s[6]));
    const __m512 v1 = _mm512_add_ps(_mm512_add_ps(s[1], s[3]), _mm512_add_ps(s[5], s[7]));
    store_row(c, v0, v1, nr, alpha, beta, load_c);
    (void)ldc;
}

}  // namespace

// kc = 256 pair units = 512 k steps per block: the A micro-panel is 14 x 256 x 4 bytes = 14 KiB, as
// for fp32.
const GemmKernels kGemmBf16Avx512 = {
    KILN_ISA_AVX512, "gemm_bf16_avx512bf16_14x32", MR, NR, /*kc=*/512, /*nc=*/512,
    {nullptr, ukernel_m1, ukernel<2>, ukernel<3>, ukernel<4>, ukernel<5>, ukernel<6>, ukernel<7>, ukernel<8>,
     ukernel<9>, ukernel<10>, ukernel<11>, ukernel<12>, ukernel<13>, ukernel<14>, nullptr, nullptr},
    {}};

}  // namespace kiln
