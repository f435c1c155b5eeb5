// AVX512_BF16 GEMM micro-kernel: bf16 inputs, f32 accumulation, 14 x 32 tile.
//
// Operands come packed as bf16 pairs along k (one 32-bit unit = steps 2u and 2u+1, see gemm.cpp),
// so `kc` counts pair units and each vdpbf16ps adds two products per lane: 64 FLOP per
// instruction. Ceiling on Zen 4: one zmm vdpbf16ps per cycle = 64 FLOP/cycle/core (2x fp32 FMA).
// Compiled with -mavx512bf16; dispatch uses it only when CPUID reports AVX512_BF16.
#include <immintrin.h>

#include <cstdint>

#include "gemm_kernels.hpp"
#include "transpose_avx512.hpp"

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

// Two rows: two units in flight, 8 chains (4 left the 2-row tile bound by vdpbf16ps's latency).
// 1 thread, GFLOP/s, pre-packed 2x784x512: 112 -> 147 (dense A, B loaded once) -> 177 (this),
// the one-row kernel's B bandwidth.
void ukernel_m2(int64_t ku, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha, float beta,
                bool load_c, const TileEpilogue*) {
    const auto* a32 = reinterpret_cast<const int*>(a);
    __m512 s[2][2][2];  // [unit in flight][row][vector]
    for (int q = 0; q < 2; ++q)
        for (int i = 0; i < 2; ++i) s[q][i][0] = s[q][i][1] = _mm512_setzero_ps();
    int64_t u = 0;
    for (; u + 2 <= ku; u += 2) {
#pragma GCC unroll 2
        for (int q = 0; q < 2; ++q) {
            __m512i b0 = _mm512_load_si512(b + q * NR), b1 = _mm512_load_si512(b + q * NR + 16);
            asm("" : "+v"(b0), "+v"(b1));
#pragma GCC unroll 2
            for (int i = 0; i < 2; ++i) {
                const __m512bh ai = as_bh(_mm512_set1_epi32(a32[q * 2 + i]));
                s[q][i][0] = _mm512_dpbf16_ps(s[q][i][0], ai, as_bh(b0));
                s[q][i][1] = _mm512_dpbf16_ps(s[q][i][1], ai, as_bh(b1));
            }
        }
        a32 += 4;
        b += 2 * NR;
    }
    for (; u < ku; ++u) {
        __m512i b0 = _mm512_load_si512(b), b1 = _mm512_load_si512(b + 16);
        for (int i = 0; i < 2; ++i) {
            const __m512bh ai = as_bh(_mm512_set1_epi32(a32[i]));
            s[0][i][0] = _mm512_dpbf16_ps(s[0][i][0], ai, as_bh(b0));
            s[0][i][1] = _mm512_dpbf16_ps(s[0][i][1], ai, as_bh(b1));
        }
        a32 += 2;
        b += NR;
    }
    for (int i = 0; i < 2; ++i)
        store_row(c + i * ldc, _mm512_add_ps(s[0][i][0], s[1][i][0]), _mm512_add_ps(s[0][i][1], s[1][i][1]), nr,
                  alpha, beta, load_c);
}

template <int M>
void ukernel(int64_t ku, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha, float beta,
             bool load_c, const TileEpilogue*) {
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
        __m512i b0 = _mm512_load_si512(b), b1 = _mm512_load_si512(b + 16);
        if constexpr (M <= kCompactRows) {
            // A few rows stream B as the f32 kernels' do (gemm_avx512.cpp, tile_v): each vector
            // loaded once, no software prefetch. With the dense A panels (packed_a_stride), 1
            // thread, GFLOP/s, pre-packed: 3x784x512 172 -> 210, 4x784x512 192 -> 215.
            asm("" : "+v"(b0), "+v"(b1));
        } else {
            _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + 8 * NR + 16), _MM_HINT_T0);
        }
#pragma GCC unroll 16
        for (int i = 0; i < M; ++i) {
            const __m512bh ai = as_bh(_mm512_set1_epi32(a32[i]));
            c0[i] = _mm512_dpbf16_ps(c0[i], ai, as_bh(b0));
            c1[i] = _mm512_dpbf16_ps(c1[i], ai, as_bh(b1));
        }
        a32 += packed_a_stride(M, MR);
        b += NR;
    }
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) store_row(c + i * ldc, c0[i], c1[i], nr, alpha, beta, load_c);
}

// One row (pairs packed contiguously): four units in flight, 8 accumulator chains.
void ukernel_m1(int64_t ku, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha, float beta,
                bool load_c, const TileEpilogue*) {
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

// kc = 768 pair units = 1536 k steps per block, nc = 192: the same L2 budget as the fp32 kernels
// (B block 576 KiB; see kGemmAvx512). 1 thread, GFLOP/s, 512 x 512 -> 1536 x 192 interleaved:
// 1024^3 212-222 -> 225, 2048^3 214-217 -> 218-223 (oneDNN 223-225 in the same runs).
const GemmKernels kGemmBf16Avx512 = {
    KILN_ISA_AVX512, "gemm_bf16_avx512bf16_14x32", MR, NR, /*kc=*/1536, /*nc=*/192,
    {nullptr, ukernel_m1, ukernel_m2, ukernel<3>, ukernel<4>, ukernel<5>, ukernel<6>, ukernel<7>, ukernel<8>,
     ukernel<9>, ukernel<10>, ukernel<11>, ukernel<12>, ukernel<13>, ukernel<14>, nullptr, nullptr},
    {}, /*fused_store=*/false, /*direct_max_rows=*/0, /*direct_block_bytes=*/0, {}, {}, /*stream_max_rows=*/0};

// The scalar packers (gemm.cpp) wrote one 32-bit unit at a time and took 18% of a 1024^3 bf16
// GEMM. A row of A not transposed already holds its pairs as consecutive 32-bit units, so a panel
// is a transpose of units: 16 units of each of the 14 rows, transposed in registers, stored as 16
// steps of 14. Full 14-row panels and whole 16-unit blocks only; returns the units packed per
// panel (the caller packs the rest).
int64_t pack_a_bf16_pairs_avx512(const uint16_t* a, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc,
                                 int mr, uint32_t* dst) {
    if (mr != MR || m < MR) return 0;
    const int64_t ku = (kc + 1) / 2;
    const int64_t whole = (kc / 2) / 16 * 16;  // units whose two steps are both inside the block
    const int64_t full = m / MR * MR;
    for (int64_t ip = 0; ip < full; ip += MR) {
        uint32_t* d = dst + ip * ku;
        for (int64_t u = 0; u < whole; u += 16) {
            __m512i r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; ++i)
                r[i] = i < MR ? _mm512_loadu_si512(a + (i0 + ip + i) * ld + p0 + 2 * u) : _mm512_setzero_si512();
            transpose16_u32(r);
#pragma GCC unroll 16
            for (int q = 0; q < 16; ++q)
                _mm512_mask_storeu_epi32(d + (u + q) * MR, __mmask16((1u << MR) - 1), r[q]);
        }
    }
    return whole;
}

// B not transposed: pair unit u of column j is (B[2u][j], B[2u+1][j]): two rows interleaved. Row
// pair by row pair across all panels (each source row read front to back), 32 columns at a time.
bool pack_b_bf16_pairs_avx512(const uint16_t* b, int64_t ld, int64_t j0, int64_t n, int64_t p0, int64_t kc, int nr,
                              uint32_t* dst) {
    if (nr != NR) return false;
    alignas(64) static const uint16_t lo_idx[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                    8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    alignas(64) static const uint16_t hi_idx[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                    24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
    const __m512i il = _mm512_load_si512(lo_idx), ih = _mm512_load_si512(hi_idx);
    const int64_t ku = (kc + 1) / 2;
    for (int64_t u = 0; u < ku; ++u) {
        const uint16_t* r0 = b + (p0 + 2 * u) * ld + j0;
        const bool odd = 2 * u + 1 >= kc;  // the last step of an odd block pairs with zero
        const uint16_t* r1 = r0 + ld;
        for (int64_t jp = 0; jp < n; jp += NR) {
            const int64_t cols = n - jp < NR ? n - jp : NR;
            const __mmask32 m = cols == NR ? __mmask32(0xffffffffu) : __mmask32((1ull << cols) - 1);
            const __m512i x0 = _mm512_maskz_loadu_epi16(m, r0 + jp);
            const __m512i x1 = odd ? _mm512_setzero_si512() : _mm512_maskz_loadu_epi16(m, r1 + jp);
            uint32_t* d = dst + jp * ku + u * NR;
            _mm512_storeu_si512(d, _mm512_permutex2var_epi16(x0, il, x1));
            _mm512_storeu_si512(d + 16, _mm512_permutex2var_epi16(x0, ih, x1));
        }
    }
    return true;
}

}  // namespace kiln
