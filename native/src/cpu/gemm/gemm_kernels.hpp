// fp32 GEMM micro-kernels, one table per ISA (gemm_ref.cpp, gemm_avx2.cpp, gemm_avx512.cpp), and the
// shared packing formats. The driver (gemm.cpp) does blocking, packing, threading and epilogues.
//
// Packed formats (all zero-padded to whole panels):
//   A block: row panels of MR rows; panel p holds kc steps of packed_a_stride(rows, MR) floats:
//            a[p][k][i]: MR for a whole panel, the row count itself for a short one of at most
//            kCompactRows rows (a single row is contiguous: a[p][k]), MR again for longer ones
//   B:       column panels of NR columns; panel q holds `k_total` steps of NR floats: b[q][k][j]
//            (for a pre-packed B, k_total = K; for a B block packed per call, k_total = kc)
// A micro-kernel computes an m x nr tile (m <= MR, nr <= NR) of C over kc steps:
//   C = alpha * sum_k A[:, k] B[k, :]  (+ beta_eff * C when load_c)
// reading A from a packed panel and B from a packed panel (or, for the direct kernels, straight
// from B's rows); rows/columns beyond m/nr are not stored.
#pragma once

#include <cstdint>

#include "kiln/kiln.h"

namespace kiln {

// The step of a packed A panel of `rows` rows (every packer and every kernel that reads packed A
// follows it). Short panels (batch 1-4 inference, the last panel of a product) are packed densely:
// padded to MR floats a step, a 2-row panel over K = 784 read 44 KiB of mostly zeros beside B's
// stream, and the 2-row kernel ran at half the B bandwidth of the 1-row one.
constexpr int kCompactRows = 4;
constexpr int packed_a_stride(int rows, int mr) { return rows <= kCompactRows ? rows : mr; }

// An epilogue applied in registers as a tile is stored (kernels whose table sets fused_store):
// C = act(alpha * AB + beta * C + bias) + residual, written once. Pointers are at the tile's
// origin: bias[j], residual[i * ld_residual + j]. act is IDENTITY, RELU or LEAKY_RELU (others run
// as a separate pass over the tile). Null: a plain store.
struct TileEpilogue {
    const float* bias;
    int32_t act;
    float act_alpha;
    const float* residual;
    int64_t ld_residual;
};

using GemmUkernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             int nr, float alpha, float beta, bool load_c, const TileEpilogue* ep);
// The same over an unpacked B: b points at op(B)[k0][j0] of a row-major B (no transpose), row k at
// b + k * ldb; only the nr columns are read (small-M products skip packing B, see gemm.cpp).
// How a micro-kernel reads A: packed (kDirectAPacked: a panel, lda unused), as rows (kDirectARows:
// op(A)[i][k] at a[i * lda + k], A not transposed) or as columns (kDirectACols: at a[k * lda + i],
// A transposed).
enum DirectA { kDirectAPacked = 0, kDirectARows = 1, kDirectACols = 2 };
using GemmUkernelDirect = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb,
                                   float* c, int64_t ldc, int nr, float alpha, float beta, bool load_c,
                                   const TileEpilogue* ep);

using GemmUkernelDirectPackB = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb,
                                        float* b_out, float* c, int64_t ldc, int nr, float alpha, float beta,
                                        bool load_c, const TileEpilogue* ep);

constexpr int kMaxMr = 16;

// Few rows times a B read in place (f32, not transposed), B's rows streamed whole (GEMV-like
// products with plain weights): for m rows (the table's stream[m]), C[i][j] = alpha * sum_k
// op(A)[i][k] B[k][j] (+ beta * C[i][j] when load_c) for j < nc, each sum one FMA chain in k order
// (as a direct tile with kc = K computes it). op(A)[i][k] = ta ? a[k * lda + i] : a[i * lda + k];
// B's row k at b + k * ldb; acc: 64-byte aligned scratch for m rows of stream_ld(nc) floats (a
// line more than nc rounded up: rows 4 KiB apart made loads wait on stores to the row before, 3
// rows of 1024 columns ran at 31 instead of 107 GFLOP/s).
constexpr int kStreamMaxRows = 8;
using GemmStreamKernel = void (*)(int64_t k, const float* a, int64_t lda, bool ta, const float* b, int64_t ldb,
                                  int64_t nc, float* acc, float* c, int64_t ldc, float alpha, float beta,
                                  bool load_c);
inline int64_t stream_ld(int64_t nc) { return (nc + 15) / 16 * 16 + 16; }
// The same with B transposed (op(B)[k][j] = b[j * ldb + k]: weights stored out x in, y = W x):
// C[i][j] is the dot product of A's row i and B's row j, both read front to back, in vector
// lanes over k and summed across the lanes at the end. a: op(A)'s rows, row i at a + i * lda
// (the caller copies a transposed A into rows); b: B's row j0; acc unused.

struct GemmKernels {
    kiln_isa isa;
    const char* name;
    int mr, nr;       // register tile
    int64_t kc, nc;   // cache blocking: kc steps (A micro-panel in L1), nc columns (B block in L2)
    GemmUkernel ukernel[kMaxMr + 1];  // ukernel[m] computes m rows, 1 <= m <= mr
    // A and B read in place (f32 only; null where absent): [0] A as rows, [1] A as columns (trans_a).
    GemmUkernelDirect ukernel_direct[2][kMaxMr + 1];
    bool fused_store;  // the kernels apply a TileEpilogue (else they ignore it and get null)
    // Products with an unpacked B read it in place (no packing) up to this many rows: each row
    // panel re-reads B, so the limit scales with MR (see gemm.cpp, kDirectMaxRows).
    int64_t direct_max_rows;
    // Direct products take all of K at once; their column blocks (K x nc floats, re-read by every
    // row panel) are cut to fit this many bytes (0: nc columns, whatever K).
    int64_t direct_block_bytes;
    // Products of at most stream_max_rows rows with B in place (f32, not transposed): stream[m]
    // (null where absent; see GemmStreamKernel).
    GemmStreamKernel stream[kStreamMaxRows + 1];
    GemmStreamKernel stream_t[kStreamMaxRows + 1];  // B transposed
    int stream_max_rows;
    // Narrow products with B in place run as dot products (stream_t, 4 rows of A a pass) for the n
    // whose bit is set here: where the direct tiles measured slower (see kiln_sgemm).
    uint32_t narrow_dots_cols = 0;
    // Its dot kernels (stream_t) run near the FMA peak: products with B transposed and a long K take
    // them at any height (see long_k_for_dots in gemm.cpp).
    bool long_k_dots = false;
    // Products with A transposed and B in place read them in place at any K (see a_cols_direct).
    bool a_cols_any_k = false;
    // Most columns in a block of a direct product (0: nc). The packed path's nc is sized for B blocks
    // of kc steps; the direct path's blocks are sized by direct_block_bytes up to this.
    int64_t direct_nc_max = 0;
    // B not transposed and in place: products of up to this many rows (past stream_max_rows) stream
    // B too, in groups of rows (0: only up to stream_max_rows; see stream_block in gemm.cpp).
    int64_t stream_group_max_rows = 0;
    // B in place and small (kDirectMaxBFloats in gemm.cpp), A not transposed: read in place at any
    // height only while B's rows are at most this many floats apart or B fits in L1 (0: however
    // far apart).
    int64_t small_b_direct_max_ldb = 0;
    // Products with a B in place that a pre-packed B would send down the direct path (more than mr
    // and at most 256 rows, a short K) pack B per call into whole-K panels and run those direct
    // kernels over them, A read in place, instead of packing A and B block by block (see
    // pack_direct in gemm.cpp).
    bool pack_b_direct = false;
    // mr rows, A as rows, B's rows in place (f32, not transposed), each k step's NR floats of B also
    // stored, zero-padded, to a whole-K panel; its steps run in k order, as the direct tiles that
    // read that panel afterwards do, so the sums agree bit for bit: the first row panel of a
    // pack_b_direct block packs B as it goes (null: B is packed first).
    GemmUkernelDirectPackB ukernel_direct_pack_b = nullptr;
};

// Bits lo..hi of a GemmKernels::narrow_dots_cols.
constexpr uint32_t cols_bits(int lo, int hi) {
    return hi < lo ? 0u : ((hi >= 31 ? ~0u : (1u << (hi + 1)) - 1u) & ~((1u << lo) - 1u));
}

extern const GemmKernels kGemmAvx512;
extern const GemmKernels kGemmAvx2;
extern const GemmKernels kGemmRef;
extern const GemmKernels kGemmBf16Avx512;  // bf16 pairs; needs AVX512_BF16 (gemm_bf16_avx512.cpp)

// Tests only: false makes bf16 GEMMs convert to f32 and run the f32 kernels even where AVX512_BF16
// exists (what AVX-512 machines without it do). Set it only while no GEMM runs.
void set_bf16_pairs_for_testing(bool on);

// Packs rows [i0, i0+m) x steps [p0, p0+kc) of op(A) into MR-row panels at dst.
// op(A)[i][k] = trans ? a[k*lda + i] : a[i*lda + k].
void pack_a(bool trans, const float* a, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t kc,
            int mr, float* dst);
// pack_a for the AVX-512 kernels' 14-row panels, vectorized (gemm_avx512.cpp; falls back to pack_a).
void pack_a_avx512(bool trans, const float* a, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t kc,
                   int mr, float* dst);
// Vectorized bf16 pair packing (gemm_bf16_avx512.cpp; AVX512_BF16 machines only). The A packer
// handles whole 14-row panels and whole 16-unit blocks of op(A) not transposed and returns how
// many units of each panel it packed; the B packer handles op(B) not transposed and returns false
// when it cannot.
int64_t pack_a_bf16_pairs_avx512(const uint16_t* a, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc,
                                 int mr, uint32_t* dst);
bool pack_b_bf16_pairs_avx512(const uint16_t* b, int64_t ld, int64_t j0, int64_t n, int64_t p0, int64_t kc, int nr,
                              uint32_t* dst);
// Packs columns [j0, j0+n) x steps [p0, p0+kc) of op(B) into NR-column panels at dst, each panel
// holding kc steps. op(B)[k][j] = trans ? b[j*ldb + k] : b[k*ldb + j].
void pack_b(bool trans, const float* b, int64_t ldb, int64_t j0, int64_t n, int64_t p0, int64_t kc,
            int nr, float* dst);
// pack_b for the AVX-512 kernels' 32-column panels (gemm_avx512.cpp): op(B) transposed by 16x16
// register transposes (a short last panel alike), not transposed by vector copies with the source
// rows prefetched.
void pack_b_avx512(bool trans, const float* b, int64_t ldb, int64_t j0, int64_t n, int64_t p0, int64_t kc,
                   int nr, float* dst);
// dst[j * ld_dst + i] = src[i * ld_src + j] for i < rows, j < cols, by 16x16 register transposes
// (gemm_avx512.cpp; AVX-512 only).
void transpose_avx512(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst, int64_t ld_dst);
// pack_a for the AVX2 kernels' 6-row panels, op(A) not transposed: 8 steps of a panel's rows by
// 8 x 8 register transposes (gemm_avx2.cpp); transposed through pack_a.
void pack_a_avx2(bool trans, const float* a, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t kc, int mr,
                 float* dst);
// pack_b for the AVX2 kernels' 16-column panels: op(B) not transposed by vector copies with the
// source rows prefetched (pack_b_rows in gemm_vec.hpp), transposed by 8 x 8 register transposes;
// columns past the last whole panel through pack_b.
void pack_b_avx2(bool trans, const float* b, int64_t ldb, int64_t j0, int64_t n, int64_t p0, int64_t kc, int nr,
                 float* dst);

}  // namespace kiln
