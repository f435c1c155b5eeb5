// AVX-512 fp32 GEMM micro-kernel: 14 x 32 register tile (28 zmm accumulators, 2 for B, 1 for the
// broadcast of A).
//
// Ceiling: Zen 4 retires one 512-bit FMA per cycle (two 256-bit pipes), 32 FLOP/cycle/core; FMA
// latency 4 cycles, so >= 4 independent accumulators keep the pipes full. Per k step the 14x32 tile
// issues 28 FMAs against 2 loads of B and 14 broadcasts of A, well inside 2-3 loads/cycle.
// The m = 1 case (batch-1 inference) has only 2 accumulators per step, so it unrolls k by 4 into 8
// independent chains and is bound by streaming B (128 bytes per k step).
#include <immintrin.h>

#include "gemm_kernels.hpp"
#include "gemm_stream.hpp"
#include "gemm_vec.hpp"
#include "transpose_avx512.hpp"

// Tile: MR rows x NV zmm vectors. 14 x 2 (28 accumulators) and 8 x 3 (24) measured alike on Zen 4
// (within the 2-3% noise of this machine); 14 x 2 is kept for its lower B traffic per FMA.
#ifndef KILN_GEMM_MR
#define KILN_GEMM_MR 14
#define KILN_GEMM_NV 2
#endif

namespace kiln {
namespace {

constexpr int MR = KILN_GEMM_MR;
constexpr int NV = KILN_GEMM_NV;  // zmm vectors per row of the tile
constexpr int NR = 16 * NV;
constexpr int kPrefetch = 8;  // k steps ahead for B in the full tile (L2-resident block)

inline __mmask16 lane_mask(int nr, int v) {
    const int left = nr - 16 * v;
    return left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
}

// bias, activation, residual: in the order and with the arithmetic of the separate epilogue pass
// (eltwise), so fused and unfused results are identical.
__attribute__((always_inline)) inline __m512 epilogue(__m512 x, const TileEpilogue* ep, int i, int q,
                                                      __mmask16 m) {
    if (ep->bias) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, ep->bias + 16 * q));
    if (ep->act == KILN_UNARY_RELU) {
        x = _mm512_max_ps(_mm512_setzero_ps(), x);  // NaN stays NaN
    } else if (ep->act == KILN_UNARY_LEAKY_RELU) {
        x = _mm512_mask_mul_ps(x, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), x,
                               _mm512_set1_ps(ep->act_alpha));
    }
    if (ep->residual)
        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, ep->residual + int64_t(i) * ep->ld_residual + 16 * q));
    return x;
}

// Row i of a tile (V vectors wide): alpha * v + beta * C (when load_c), the epilogue if any, one store.
// Always inlined: it takes the accumulators by pointer, and where GCC chose to call it (as it did
// once the file grew) the tile kept its accumulators on the stack, stored every k step (3 x 1024 x
// 128, 1 thread: half the speed).
template <int V = NV>
__attribute__((always_inline)) inline void store_row(float* c, const __m512* v, int nr, float alpha, float beta,
                                                     bool load_c, const TileEpilogue* ep = nullptr, int i = 0) {
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 4
    for (int q = 0; q < V; ++q) {
        __m512 x = _mm512_mul_ps(v[q], va);
        if (nr == NR) {
            if (load_c) x = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + 16 * q), x);
            if (ep) x = epilogue(x, ep, i, q, __mmask16(0xffff));
            _mm512_storeu_ps(c + 16 * q, x);
        } else {
            const __mmask16 m = lane_mask(nr, q);
            if (load_c) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c + 16 * q), x);
            if (ep) x = epilogue(x, ep, i, q, m);
            _mm512_mask_storeu_ps(c + 16 * q, m, x);
        }
    }
}

// One row (packed contiguously: a[k]): four k steps in flight, summed at the end. Bound by streaming
// B; measured: software prefetch at any distance (16..64 steps) only slows it, the hardware
// prefetcher does best.
void ukernel_m1(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha,
                float beta, bool load_c, const TileEpilogue* ep) {
    __m512 s[4][NV];
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u)
#pragma GCC unroll 4
        for (int q = 0; q < NV; ++q) s[u][q] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
#pragma GCC unroll 4
        for (int u = 0; u < 4; ++u) {
            const __m512 ai = _mm512_set1_ps(a[u]);
#pragma GCC unroll 4
            for (int q = 0; q < NV; ++q) s[u][q] = _mm512_fmadd_ps(ai, _mm512_load_ps(b + u * NR + 16 * q), s[u][q]);
        }
        a += 4;
        b += 4 * NR;
    }
    for (; k < kc; ++k) {
        const __m512 ai = _mm512_set1_ps(a[0]);
#pragma GCC unroll 4
        for (int q = 0; q < NV; ++q) s[0][q] = _mm512_fmadd_ps(ai, _mm512_load_ps(b + 16 * q), s[0][q]);
        a += 1;
        b += NR;
    }
    __m512 v[NV];
#pragma GCC unroll 4
    for (int q = 0; q < NV; ++q) v[q] = _mm512_add_ps(_mm512_add_ps(s[0][q], s[1][q]), _mm512_add_ps(s[2][q], s[3][q]));
    store_row(c, v, nr, alpha, beta, load_c, ep, 0);
    (void)ldc;
}

// The M x 32 register tile over kc steps. A comes packed or in place (AMode, see DirectA); B comes
// packed (PackedB: one aligned NR-float step after another, prefetched kPrefetch steps ahead) or in
// place, row k at b + k * ldb with masked loads so nothing past column nr is read. Small products
// read B in place instead of packing it: each B panel is used by only a few row panels, so packing
// (a read and a write of all of B) costs more than the strided reads it saves; the hardware's
// stride prefetcher follows the rows and a software prefetch four rows ahead covers the start.
// V: the vectors computed per row (NV; 1 for a tile at most 16 columns wide, see tile).
template <int M, int AMode, bool PackedB, int V>
inline void tile_v(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                   int nr, float alpha, float beta, bool load_c, const TileEpilogue* ep) {
    // alpha and beta are needed only after the loop. For 11-13 rows of packed A (or A read as
    // columns) GCC kept them in two registers and read one of the two B vectors from the stack at
    // every FMA instead; parked in memory they leave the registers to the tile (13x784x512 with
    // pre-packed B, 1 thread: 93-98 -> 108-111 GFLOP/s). Parking them elsewhere measured ~3% slower.
    constexpr bool kPark = M >= 11 && M <= 13 && V == 2 && AMode != kDirectARows;
    float alpha_m = alpha, beta_m = beta;
    if constexpr (kPark) asm volatile("" : "+m"(alpha_m), "+m"(beta_m));
    __mmask16 mask[V];
#pragma GCC unroll 4
    for (int q = 0; q < V; ++q) mask[q] = lane_mask(nr, q);
    __m512 acc[M][V];
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
#pragma GCC unroll 4
        for (int q = 0; q < V; ++q) acc[i][q] = _mm512_setzero_ps();
        // The C tile is read/written only after the k loop: start bringing it in now.
#pragma GCC unroll 4
        for (int q = 0; q < V; ++q) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * q), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; ++k) {
        __m512 bv[V];
#pragma GCC unroll 4
        for (int q = 0; q < V; ++q) {
            if constexpr (PackedB && M <= kCompactRows) {
                // A few rows (batch 2-4 inference) stream B's panels like the one-row kernel: each
                // vector loaded once (GCC folded the load into every row's FMA) and no software
                // prefetch (the hardware's does better on a stream). With the dense A panels
                // (packed_a_stride), 1 thread, GFLOP/s, pre-packed B: 2x784x512 54 -> 87, 3x784x512
                // 73 -> 108, 4x784x512 100 -> 111, 2x512x256 69 -> 96. Keeping the prefetch: 65 at
                // 2 rows; without the register barrier: 63.
                bv[q] = _mm512_load_ps(b + 16 * q);
                asm("" : "+v"(bv[q]));
            } else if constexpr (PackedB) {
                bv[q] = _mm512_load_ps(b + 16 * q);
                _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetch * NR + 16 * q), _MM_HINT_T0);
            } else {
                bv[q] = _mm512_maskz_loadu_ps(mask[q], b + 16 * q);
            }
        }
        if constexpr (!PackedB) _mm_prefetch(reinterpret_cast<const char*>(b + 4 * ldb), _MM_HINT_T0);
#pragma GCC unroll 16
        for (int i = 0; i < M; ++i) {
            const __m512 ai = _mm512_set1_ps(AMode == kDirectARows ? a[i * lda] : a[i]);
#pragma GCC unroll 4
            for (int q = 0; q < V; ++q) acc[i][q] = _mm512_fmadd_ps(ai, bv[q], acc[i][q]);
        }
        a += AMode == kDirectACols ? lda : AMode == kDirectARows ? 1 : packed_a_stride(M, MR);
        b += PackedB ? NR : ldb;
    }
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) store_row<V>(c + i * ldc, acc[i], nr, alpha_m, beta_m, load_c, ep, i);
}

// A tile at most 16 columns wide (a narrow layer's only panel: a classifier's 10 outputs) computes
// one vector per row instead of NV, the others being all padding. mlp-small's last layer with its
// pre-packed weights (10 outputs, K 256), 1 thread: 37.5 -> 19.1 us at batch 256, 4.8 -> 2.5 us at 32.
template <int M, int AMode, bool PackedB>
inline void tile(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                 int nr, float alpha, float beta, bool load_c, const TileEpilogue* ep) {
    if (NV > 1 && nr <= 16)
        tile_v<M, AMode, PackedB, 1>(kc, a, lda, b, ldb, c, ldc, nr, alpha, beta, load_c, ep);
    else
        tile_v<M, AMode, PackedB, NV>(kc, a, lda, b, ldb, c, ldc, nr, alpha, beta, load_c, ep);
}

// Both operands packed (see gemm_kernels.hpp).
template <int M>
void ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha, float beta,
             bool load_c, const TileEpilogue* ep) {
    tile<M, kDirectAPacked, true>(kc, a, 0, b, NR, c, ldc, nr, alpha, beta, load_c, ep);
}

// B in place (or a pre-packed B's panel, read as rows of NR floats), A in place as AMode says.
template <int M, int AMode>
void ukernel_direct(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                    int nr, float alpha, float beta, bool load_c, const TileEpilogue* ep) {
    tile<M, AMode, false>(kc, a, lda, b, ldb, c, ldc, nr, alpha, beta, load_c, ep);
}

template <int M>
constexpr GemmUkernel entry() {
    if constexpr (M == 1) return ukernel_m1;
    else if constexpr (M <= MR) return ukernel<M>;
    else return nullptr;
}

template <int M, int AMode>
constexpr GemmUkernelDirect direct() {
    if constexpr (M <= MR) return ukernel_direct<M, AMode>;
    else return nullptr;
}

}  // namespace

namespace {

// `rows` (<= Width <= 16) source rows (row i at src + i * ld) as kc k-major steps of Width floats,
// step k at d + k * Stride, the lanes past `rows` zero: 16 steps at a time are loaded as 16 vectors
// (zeros past `rows`), transposed in registers and stored as 16 steps.
template <int Width, int Stride>
inline void rows_to_steps(const float* src, int64_t ld, int rows, int64_t kc, float* d) {
    static_assert(Width <= 16, "one vector per step");
    const __mmask16 lanes = __mmask16((1u << Width) - 1);
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16) {
        __m512i r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i)
            r[i] = i < Width && i < rows ? _mm512_loadu_si512(src + i * ld + k) : _mm512_setzero_si512();
        transpose16_u32(r);
#pragma GCC unroll 16
        for (int u = 0; u < 16; ++u) _mm512_mask_storeu_epi32(d + (k + u) * Stride, lanes, r[u]);
    }
    for (; k < kc; ++k)
        for (int i = 0; i < Width; ++i) d[k * Stride + i] = i < rows ? src[i * ld + k] : 0.0f;
}

}  // namespace

// A into 14-row panels (the generic pack_a writes one float at a time). Not transposed: 16 k steps
// of a panel's rows are loaded as 14 vectors, transposed, and stored as 16 steps of 14 floats (a
// short last panel alike, its padding zero). Profiled on 1024^3, 1 thread: packing A went from 3.3%
// to 2.4% of the time (what is left is the stores missing cache: the packed A block outgrows L2).
// Transposed: each step's rows are contiguous in A, one masked load and store (TT 47x108x58, 1
// thread: the scalar loop and the generic short panels were 22% of the time). Panels of up to
// kCompactRows rows are dense, `rows` floats a step (packed_a_stride): the same transposes with
// narrower stores (one row: the generic packer, contiguous).
void pack_a_avx512(bool trans, const float* a, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t kc, int mr,
                   float* dst) {
    if (mr != MR || MR > 16) {
        pack_a(trans, a, lda, i0, m, p0, kc, mr, dst);
        return;
    }
    for (int64_t ip = 0; ip < m; ip += MR) {
        const int rows = int(std::min<int64_t>(MR, m - ip));
        float* d = dst + ip * kc;
        if (rows <= kCompactRows) {  // dense steps of `rows` floats (packed_a_stride)
            if (!trans) {
                switch (rows) {
                    case 1: pack_a(trans, a, lda, i0 + ip, 1, p0, kc, mr, d); break;
                    case 2: rows_to_steps<2, 2>(a + (i0 + ip) * lda + p0, lda, rows, kc, d); break;
                    case 3: rows_to_steps<3, 3>(a + (i0 + ip) * lda + p0, lda, rows, kc, d); break;
                    default: rows_to_steps<4, 4>(a + (i0 + ip) * lda + p0, lda, rows, kc, d); break;
                }
            } else {
                const __mmask16 in = __mmask16((1u << rows) - 1);
                const float* s = a + p0 * lda + i0 + ip;
                for (int64_t k = 0; k < kc; ++k)
                    _mm512_mask_storeu_ps(d + k * rows, in, _mm512_maskz_loadu_ps(in, s + k * lda));
            }
        } else if (!trans) {
            rows_to_steps<MR, MR>(a + (i0 + ip) * lda + p0, lda, rows, kc, d);
        } else {
            const __mmask16 in = __mmask16((1u << rows) - 1), out = __mmask16((1u << MR) - 1);
            const float* s = a + p0 * lda + i0 + ip;
            for (int64_t k = 0; k < kc; ++k)
                _mm512_mask_storeu_ps(d + k * MR, out, _mm512_maskz_loadu_ps(in, s + k * lda));
        }
    }
}

// op(B) transposed is B's rows read as columns: 16 source rows (16 columns of a panel) x 16 steps
// are loaded whole, transposed in registers and stored as 16 steps of half a panel. The scalar
// loop read one float per column per step. Measured on the training step's input gradients
// (gz W^T, 128x256x128) at 1 thread: see the commit.
void pack_b_avx512(bool trans, const float* b, int64_t ldb, int64_t j0, int64_t n, int64_t p0, int64_t kc, int nr,
                   float* dst) {
    if (!trans && nr == NR && n >= NR) {  // row by row (gemm_vec.hpp)
        pack_b_rows<Vec16, NR>(b, ldb, j0, n, p0, kc, dst);
        return;
    }
    if (!trans || nr != NR || NR != 32) {
        pack_b(trans, b, ldb, j0, n, p0, kc, nr, dst);
        return;
    }
    const int64_t full = n / NR * NR;
    for (int64_t jp = 0; jp < full; jp += NR) {
        float* d = dst + jp * kc;
        for (int h = 0; h < 2; ++h) {
            const float* src = b + (j0 + jp + 16 * h) * ldb + p0;
            int64_t k = 0;
            for (; k + 16 <= kc; k += 16) {
                __m512i r[16];
#pragma GCC unroll 16
                for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(src + i * ldb + k);
                transpose16_u32(r);
#pragma GCC unroll 16
                for (int u = 0; u < 16; ++u) _mm512_storeu_si512(d + (k + u) * NR + 16 * h, r[u]);
            }
            for (; k < kc; ++k)
                for (int i = 0; i < 16; ++i) d[k * NR + 16 * h + i] = src[i * ldb + k];
        }
    }
    if (full == n) return;
    // The last, short panel: the same transposes over its rows, zeros past them (the generic
    // packer's scalar loop took 9% of TT 47x108x58).
    const int rem = int(n - full);
    for (int h = 0; h < 2; ++h) {
        const int rows = std::max(0, std::min(16, rem - 16 * h));
        const float* src = rows > 0 ? b + (j0 + full + 16 * h) * ldb + p0 : b;  // (not read when 0)
        rows_to_steps<16, NR>(src, ldb, rows, kc, dst + full * kc + 16 * h);
    }
}

void transpose_avx512(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst, int64_t ld_dst) {
    for (int64_t i0 = 0; i0 < rows; i0 += 16) {
        const int ri = int(std::min<int64_t>(16, rows - i0));
        const __mmask16 store_mask = __mmask16((1u << ri) - 1);
        for (int64_t j0 = 0; j0 < cols; j0 += 16) {
            const int cj = int(std::min<int64_t>(16, cols - j0));
            const __mmask16 load_mask = __mmask16((1u << cj) - 1);
            __m512i r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; ++i)
                r[i] = i < ri ? _mm512_maskz_loadu_epi32(load_mask, src + (i0 + i) * ld_src + j0) : _mm512_setzero_si512();
            transpose16_u32(r);
            for (int u = 0; u < cj; ++u) _mm512_mask_storeu_epi32(dst + (j0 + u) * ld_dst + i0, store_mask, r[u]);
        }
    }
}

#define DIRECT_ROW(mode)                                                                                    \
    {nullptr, direct<1, mode>(), direct<2, mode>(), direct<3, mode>(), direct<4, mode>(), direct<5, mode>(),      \
     direct<6, mode>(), direct<7, mode>(), direct<8, mode>(), direct<9, mode>(), direct<10, mode>(),              \
     direct<11, mode>(), direct<12, mode>(), direct<13, mode>(), direct<14, mode>(), direct<15, mode>(),          \
     direct<16, mode>()}
// kc x nc: every k block costs each C tile one load and store (its prologue and epilogue took ~5%
// of the 2048^3 time at kc = 256), so kc is as long as the L2 allows for the B block (768 x 192 x 4
// = 576 KiB; the A panel streams beside it). 1 thread, median GFLOP/s, interleaved runs:
// 256 x 512 -> 768 x 192 (balanced k blocks): 2048^3 106.6 -> 109-110, 1024^3 107.2 -> 109.0,
// 512^3 110.2 -> 111.7; 512 x 256 and 640 x 256 sat in between.
const GemmKernels kGemmAvx512 = {
    KILN_ISA_AVX512, "gemm_f32_avx512", MR, NR, /*kc=*/768, /*nc=*/192,
    {nullptr, entry<1>(), entry<2>(), entry<3>(), entry<4>(), entry<5>(), entry<6>(), entry<7>(), entry<8>(),
     entry<9>(), entry<10>(), entry<11>(), entry<12>(), entry<13>(), entry<14>(), entry<15>(), entry<16>()},
    {DIRECT_ROW(kDirectARows), DIRECT_ROW(kDirectACols)},
    /*fused_store=*/true, /*direct_max_rows=*/256, /*direct_block_bytes=*/0,
    // Few rows, B in place: U = 4 k steps a pass (M x 4 broadcasts of A in registers). 1 thread,
    // GFLOP/s, against the tiles: 1x1024x1024 12 -> 40 (oneDNN's sgemm 36), 4x1024x1024 40 -> 108,
    // 1x784x512 15 -> 46, 1x4096x4096 from DRAM 4.7 -> 11 (oneDNN 9.8).
    {nullptr, stream_rows<Vec16, 1, 4>, stream_rows<Vec16, 2, 4>, stream_rows<Vec16, 3, 4>,
     stream_rows<Vec16, 4, 4>},
    // B transposed: M x J accumulators (AVX-512VL: 32 ymm registers), 8 or 16 FMA chains. Against
    // the tiles on a packed B^T: 1x1024x1024 7 -> 38-40 (oneDNN 39-41), 2x1024x1024 13 -> 62-69,
    // 4x784x512 42 -> 100, 1x4096x4096 from DRAM 5 -> 12 (oneDNN 10). A software prefetch of B's
    // rows did not help.
    {nullptr, stream_rows_t<1, 8>, stream_rows_t<2, 8>, stream_rows_t<3, 4>, stream_rows_t<4, 4>},
    /*stream_max_rows=*/4,
    // Dots ran at ~90 GFLOP/s whatever n; the tiles at ~110 x the share of their lanes in use
    // (256 x 256 x n, 1 thread: n = 12 67, 14 96, 16 110, 20 69, 24 83, 28 97).
    /*narrow_dots_cols=*/cols_bits(5, 12) | cols_bits(17, 25),
    /*long_k_dots=*/true, /*a_cols_any_k=*/true};
#undef DIRECT_ROW

}  // namespace kiln
