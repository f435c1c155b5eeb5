// fp32 GEMM driver: validation, blocking, packing, threading and the fused epilogue; the ISA
// micro-kernels are in gemm_<isa>.cpp.
//
// Loop nest (per thread, over its block of C):
//   for pc in K step KC              pack A rows x kc once per k block (L3; chunks of rows when tall)
//     for jc in N step NC            pack B block kc x NC (unless pre-packed): L2 (576 KiB at 768 x 192)
//       for ir in M step MR          A micro-panel MR x kc (42 KiB at kc = 768), streamed from L2
//         for jr in NC step NR       micro-kernel: C tile += A panel * B panel
//                                    (+ epilogue on the last pc: in registers as the tile is
//                                    stored where the kernels can, else a pass while it is in L1)
// Threads split C into stripes: along N when N is wide enough (each thread packs only its own B
// columns), else along M. Products with M <= 16 (batch-1 .. small-batch inference) take all of K
// per row panel (kc = K), so each weight panel streams once with no C reloads; they split columns
// across threads only when the product is large enough to pay for waking a worker.
//
// Products with an unpacked, untransposed B and at most direct_max_rows rows (training steps, small
// batches), or a B small enough for L2, pack nothing: the direct micro-kernels read A (either
// layout) and B's rows in place with kc = K. Packing pays only when a B panel is reused by many row
// panels. Where the table asks (pack_b_direct: AVX2), up to 256 rows with a short K pack only B,
// into whole-K panels a column block at a time, and run the same direct kernels over them.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../../core/cpu.hpp"
#include "../../core/error.hpp"
#include "../../core/threads.hpp"
#include "../eltwise/eltwise_kernels.hpp"
#include "gemm_kernels.hpp"

struct kiln_packed_b {
    const kiln::GemmKernels* kern;
    int64_t k, n;
    float* data;  // from kiln_alloc (accounted); 32-bit units (f32, or bf16 pairs)
    int64_t bytes;
    int32_t dtype;  // KILN_DTYPE_F32 or KILN_DTYPE_BF16 (the inputs it was packed from)
    bool pairs;     // bf16 pairs packed for the bf16 kernels (else converted to f32)
};

namespace kiln {

const EltwiseKernels& eltwise_kernels();

namespace {

const GemmKernels kTable[] = {kGemmAvx512, kGemmAvx2, kGemmRef};

// Cleared by tests to run bf16 as AVX-512 machines without AVX512_BF16 do (converted to f32).
std::atomic<bool> g_bf16_pairs{true};

// Per-thread packing buffers, grown on demand and kept: no allocation in steady state.
struct PackBuffer {
    float* p = nullptr;
    size_t cap = 0;  // floats
    ~PackBuffer() { std::free(p); }
    float* get(size_t floats) {
        if (floats <= cap) return p;
        std::free(p);
        const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
        p = static_cast<float*>(std::aligned_alloc(64, bytes));
        cap = p ? floats : 0;
        return p;
    }
};
thread_local PackBuffer t_pack_a;
thread_local PackBuffer t_swap;  // C^T of narrow products (kiln_sgemm)
thread_local PackBuffer t_pack_b;

// Packing of op(A) / op(B) blocks into 32-bit units for the micro-kernels (see gemm_kernels.hpp).
using PackFn = void (*)(bool trans, const void* src, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc,
                        int r, float* dst);

void pack_a_f32(bool t, const void* s, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc, int r, float* d) {
    pack_a(t, static_cast<const float*>(s), ld, i0, m, p0, kc, r, d);
}
void pack_a_f32_avx512(bool t, const void* s, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc, int r,
                       float* d) {
    pack_a_avx512(t, static_cast<const float*>(s), ld, i0, m, p0, kc, r, d);
}
void pack_a_f32_avx2(bool t, const void* s, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc, int r,
                     float* d) {
    pack_a_avx2(t, static_cast<const float*>(s), ld, i0, m, p0, kc, r, d);
}
// The A packer for a kernel table: vectorized for AVX-512's and AVX2's, else the generic one.
PackFn pack_a_for(const GemmKernels* k) {
    return k->isa == KILN_ISA_AVX512 ? pack_a_f32_avx512 : k->isa == KILN_ISA_AVX2 ? pack_a_f32_avx2 : pack_a_f32;
}
void pack_b_f32(bool t, const void* s, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc, int r, float* d) {
    pack_b(t, static_cast<const float*>(s), ld, i0, m, p0, kc, r, d);
}
void pack_b_f32_avx512(bool t, const void* s, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc, int r,
                       float* d) {
    pack_b_avx512(t, static_cast<const float*>(s), ld, i0, m, p0, kc, r, d);
}
void pack_b_f32_avx2(bool t, const void* s, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc, int r,
                     float* d) {
    pack_b_avx2(t, static_cast<const float*>(s), ld, i0, m, p0, kc, r, d);
}
// The B packer for a kernel table: vectorized for AVX-512's and AVX2's, else the generic one.
PackFn pack_b_for(const GemmKernels* k) {
    return k->isa == KILN_ISA_AVX512 ? pack_b_f32_avx512 : k->isa == KILN_ISA_AVX2 ? pack_b_f32_avx2 : pack_b_f32;
}

struct Problem {
    // A constructor, not an aggregate: GCC clears a mostly-zero aggregate with `rep stos` before
    // filling it in, ~10 ns of a 70 ns 8x8x8 kiln_sgemm.
    Problem(const GemmKernels* kern_, PackFn pack_a_, PackFn pack_b_, bool pairs_, bool ta_, bool tb_, int64_t m_,
            int64_t n_, int64_t k_, float alpha_, float beta_, const void* a_, int64_t lda_, const void* b_,
            int64_t ldb_, const float* packed_b_, float* c_, int64_t ldc_, const kiln_epilogue* ep_,
            bool bf16_ = false)
        : kern(kern_), pack_a(pack_a_), pack_b(pack_b_), pairs(pairs_), ta(ta_), tb(tb_), m(m_), n(n_), k(k_),
          alpha(alpha_), beta(beta_), a(a_), lda(lda_), b(b_), ldb(ldb_), packed_b(packed_b_), c(c_), ldc(ldc_),
          ep(ep_), bf16(bf16_) {}

    const GemmKernels* kern;
    PackFn pack_a, pack_b;
    bool pairs;  // units are bf16 pairs: a k block of kc steps is (kc + 1) / 2 units
    bool ta, tb;
    int64_t m, n, k;
    float alpha, beta;
    const void* a;
    int64_t lda;
    const void* b;
    int64_t ldb;
    const float* packed_b;  // full-K panels, or nullptr
    float* c;
    int64_t ldc;
    const kiln_epilogue* ep;
    // A (and B, unless pre-packed) hold bf16: only packers read them (the direct kernels read f32).
    bool bf16;
    // Set by run() from the whole problem, so that the summation order (kc) does not depend on how
    // the threads split C: results are identical for every thread count.
    bool direct = false;
    bool stream = false;  // few rows, B in place streamed row by row (see stream_block)
    bool fuse_ep = false;  // the kernels apply ep as they store a tile (see tile_epilogue)
    int64_t kc = 0;
    // B in place, packed per call into whole-K panels one column block at a time, which the direct
    // kernels read (see pack_b_direct).
    bool pack_b_direct = false;
};

inline int64_t units(const Problem& p, int64_t k) { return p.pairs ? (k + 1) / 2 : k; }

// Whether the kernels can apply ep in registers: their table says so and the activation is one
// they apply (identity, ReLU, leaky ReLU). Decided once per problem.
bool can_fuse(const GemmKernels& kn, const kiln_epilogue* ep) {
    return ep != nullptr && kn.fused_store &&
           (ep->activation == KILN_UNARY_IDENTITY || ep->activation == KILN_UNARY_RELU ||
            ep->activation == KILN_UNARY_LEAKY_RELU);
}

// The in-register form of the problem's epilogue for the tile at (row0, col0) of its last k
// block; null when there is none to fuse (apply_epilogue then runs after the store).
const TileEpilogue* tile_epilogue(const Problem& p, bool last, int64_t row0, int64_t col0, TileEpilogue* out) {
    if (!last || !p.fuse_ep) return nullptr;
    const kiln_epilogue* ep = p.ep;
    out->bias = ep->bias ? ep->bias + col0 : nullptr;
    out->act = ep->activation;
    out->act_alpha = ep->activation_alpha;
    out->residual = ep->residual ? ep->residual + row0 * ep->ld_residual + col0 : nullptr;
    out->ld_residual = ep->ld_residual;
    return out;
}

void apply_epilogue(const kiln_epilogue* ep, float* c, int64_t ldc, int rows, int cols, int64_t row0,
                    int64_t col0) {
    const EltwiseKernels& ek = eltwise_kernels();
    for (int r = 0; r < rows; ++r) {
        float* row = c + r * ldc;
        if (ep->bias) ek.binary(KILN_BINARY_ADD, row, 1, ep->bias + col0, 1, row, cols);
        if (ep->activation != KILN_UNARY_IDENTITY) ek.unary(ep->activation, row, row, cols, ep->activation_alpha);
        if (ep->residual)
            ek.binary(KILN_BINARY_ADD, row, 1, ep->residual + (row0 + r) * ep->ld_residual + col0, 1, row, cols);
    }
}

// Row blocks up to a kernel table's direct_max_rows skip packing (see run_block). Measured on Zen 4,
// 1 thread, GFLOP/s packed -> direct, AVX-512 (14-row panels): 32x784x256 88 -> 109, 128x784x512
// 99 -> 108, 256x256x256 105 -> 111, 256x784x512 104 -> 110, 512^3 106 -> 106; at 1024 rows direct
// falls to 80 (B panels are reused by too many row panels to be read strided): 256 rows. AVX2
// (6-row panels re-read B over twice as often), KILN_ISA=avx2: 32x784x256 74 -> 102-105,
// 128x784x512 ~100 either way, 256x784x512 105 -> 98-99: 128 rows there; but on a CPU without
// AVX-512 (Zen 3) packing won from 16 rows: 12 (see gemm_avx2.cpp). With a pre-packed B the rule is
// kDirectMaxRows on every table.
constexpr int64_t kDirectMaxRows = 256;
// With kc = K every row panel streams all of B: fine from L2/L3, not from DRAM (16x4096x4096
// pre-packed, 64 MiB of B: 78 -> 42 GFLOP/s direct). So the row rule holds only up to 4 MiB of B.
constexpr int64_t kDirectMaxRowsBFloats = int64_t(1) << 20;
// ... as do products of any height whose whole B fits in L2 (256 KiB): the B panels stay in L1/L2
// and not packing A is what pays (a weight gradient x^T g with a batch-sized K). 1 thread:
// 784x128x256 (A transposed) 104 -> 108, 4096x256x64 80 -> 105; wide B (1024x256x1024,
// 2048x128x2048) is 7-10% slower direct, hence the size limit. A table can also limit how far
// apart B's rows may be (small_b_direct_max_ldb: AVX2, see gemm_avx2.cpp).
constexpr int64_t kDirectMaxBFloats = 65536;
// Both rules also need a short K, and an unpacked B whose rows do not alias in the caches. A tile
// reads K steps of A's rows in place: its panel (mr rows) should stay in L1, under
// kDirectMaxAPanelBytes (K <= 877 on AVX-512's 14-row panels, 2048 on AVX2's 6). And it streams
// K rows of B a stride apart: rows 4 KiB apart (ldb a multiple of 1024 floats) share a few cache
// sets and evict each other, as do rows 2 KiB apart once K passes 800. Packing is faster there,
// unless a single row panel reads each B row once anyway (8x1024x1024: 91 direct, 63 packed).
// 1 thread, GFLOP/s direct -> packed, AVX-512 / KILN_ISA=avx2: 128x1024x256 80 / 92 -> 105 / 101,
// 32x1024x512 83 / 75 -> 96 / 84, 64x2048x512 72 / 65 -> 94 / 91, 128x896x512 102 / 89 -> 104 /
// 100, 128x768x1024 87 / 47 -> 103 / 99, 128x256x1024 99 / 49 -> 108 / 102; 128x784x512 (rows 2
// KiB apart) stays direct (110 / 103). Two row panels read B twice, still less than packing it:
// they stay direct whatever K (packed -> direct: 20x3000x300 82 -> 105, 27x900x1000 90 -> 100,
// 16x1218x708 75 -> 89; KILN_ISA=avx2 8x3000x300 48 -> 75, 12x3000x300 61 -> 87).
constexpr int64_t kDirectMaxAPanelBytes = 48 * 1024;
inline bool direct_k_fits(const Problem& p) {
    return p.k * p.kern->mr * int64_t(sizeof(float)) <= kDirectMaxAPanelBytes;
}
// A transposed (a weight gradient x^T g, K the batch) is read as columns: each k step is one
// contiguous piece of a row of A, streamed front to back like B's rows, so neither rule above
// applies. Two row panels always stay direct; any height on tables whose column tiles keep up
// (a_cols_any_k). In-process A/B, 1 thread, GFLOP/s, packed -> direct, AVX-512: 64x4096x64 97 ->
// 112, 256x4096x64 98 -> 112, 100x3000x200 97 -> 106, 32x2048x512 95 -> 107, 128x4096x128 101 ->
// 106, 64x1024x1024 101 -> 105, 128x1024x1024 106 either way; AVX2 12x2048x512 63 -> 73, but
// 64x1024x1024 93 -> 47 and 128x4096x128 93 -> 61 at more panels.
inline bool a_cols_direct(const Problem& p) { return p.m <= 2 * p.kern->mr || p.kern->a_cols_any_k; }
inline bool b_rows_alias(int64_t ldb, int64_t k) { return ldb % 1024 == 0 || (ldb % 512 == 0 && k > 800); }
// A B this small stays in L1 (32 KiB) however far apart its rows are.
constexpr int64_t kL1BFloats = 8192;
// The small-B rule (kDirectMaxBFloats) holds for A as rows while B's rows are close enough for
// the table, or B fits in L1; for A transposed always.
inline bool small_b_rows_close(const Problem& p) {
    return p.ta || p.kern->small_b_direct_max_ldb == 0 || p.ldb <= p.kern->small_b_direct_max_ldb ||
           p.k * p.n <= kL1BFloats;
}
// With a pre-packed B (inference plans), 15..256 rows read A in place the same way and take the
// packed panels whole (kc = K). GFLOP/s packed A -> direct A, 1 thread / 2 threads: 32x784x512
// 102 -> 108 / 175 -> 198, 256x784x512 103 -> 110 / 179 -> 214.

// The row panels of a direct product: mr rows each, except that a short last one (at most a third
// of mr: a few rows that would re-read all of B for little work, in tiles too short to keep the
// FMAs busy) shares the last two panels' rows evenly: 15 rows on AVX-512 go 8 + 7, not 14 + 1.
// They depend on the problem only, never on how the threads split it. 1 thread, GFLOP/s, B in
// place, AVX-512: 15x784x512 76 -> 96, 16x784x512 87 -> 101, 29x784x512 87 -> 99, 17x784x512 102
// -> 109; KILN_ISA=avx2: 7x784x512 34 -> 48, 32x784x256 104 -> 108. (A third of mr measured better
// than a half.) With a pre-packed B, in-process A/B on Zen 3 (AVX2, 6-row tiles): 8x784x512 92 ->
// 95, 13x784x512 91 -> 98, 14x784x512 96 -> 99, 8x512x512 92 -> 97, 8x1024x4096 74 -> 77; on
// AVX-512 the mlp-small plan at batch 32 (14 + 14 + 4 rows) took 312 us as 14 + 9 + 9 against 310.
struct RowPanels {
    int64_t m, mr, count, merged_at = -1, first_of_two = 0;
    explicit RowPanels(const Problem& p) : m(p.m), mr(p.kern->mr), count((p.m + mr - 1) / mr) {
        const int64_t rem = m - (count - 1) * mr;
        if (count >= 2 && rem * 3 <= mr) {
            merged_at = (count - 2) * mr;
            first_of_two = (mr + rem + 1) / 2;
        }
    }
    int64_t start(int64_t q) const {  // first row of panel q (q = count: m)
        if (q >= count) return m;
        return merged_at >= 0 && q == count - 1 ? merged_at + first_of_two : q * mr;
    }
    int64_t end(int64_t i) const {  // end of the panel starting at row i
        return i == merged_at ? i + first_of_two : std::min(i + mr, m);
    }
};

// Rows [i0, i0+rows) x columns [jc, jc+ncur) of C over steps [pc, pc+kcur), A read in place. B is
// the caller's rows (b_panels null), or whole-K panels (k-major, NR floats a step, p.k steps each):
// `b_panels` is the one holding column jc (of a pre-packed B, or of B packed per block). With
// pack_out, b_panels are still to be written: the first row panel (mr rows, A as rows) reads B's
// rows in place and packs them there as it goes (ukernel_direct_pack_b), the others read them.
void direct_block(const Problem& p, const float* b_panels, int64_t i0, int64_t rows, int64_t pc, int64_t kcur,
                  int64_t jc, int64_t ncur, float beta, bool load_c, bool last, float* pack_out = nullptr) {
    const GemmKernels& kn = *p.kern;
    const int nr = kn.nr;
    const bool pre = b_panels != nullptr;
    const float* a = static_cast<const float*>(p.a);
    const float* bb = pre ? b_panels + pc * nr : static_cast<const float*>(p.b) + pc * p.ldb + jc;
    const int64_t ldb = pre ? nr : p.ldb;
    const RowPanels panels(p);
    for (int64_t ir = 0; ir < rows;) {
        const int mcur = int(std::min(panels.end(i0 + ir), i0 + rows) - (i0 + ir));
        const float* ap = p.ta ? a + pc * p.lda + (i0 + ir) : a + (i0 + ir) * p.lda + pc;
        const GemmUkernelDirect uk = kn.ukernel_direct[p.ta ? 1 : 0][mcur];
        for (int64_t jr = 0; jr < ncur; jr += nr) {
            const int ncol = int((ncur - jr) < nr ? (ncur - jr) : nr);
            float* cp = p.c + (i0 + ir) * p.ldc + jc + jr;
            const float* bp = pre ? bb + (jr / nr) * p.k * nr : bb + jr;
            TileEpilogue te;
            const TileEpilogue* fused = tile_epilogue(p, last, i0 + ir, jc + jr, &te);
            if (pack_out != nullptr && ir == 0)
                kn.ukernel_direct_pack_b(kcur, ap, p.lda, static_cast<const float*>(p.b) + jc + jr, p.ldb,
                                         pack_out + (jr / nr) * p.k * nr, cp, p.ldc, ncol, p.alpha, beta, load_c,
                                         fused);
            else
                uk(kcur, ap, p.lda, bp, ldb, cp, p.ldc, ncol, p.alpha, beta, load_c, fused);
            if (last && p.ep && !fused) apply_epilogue(p.ep, cp, p.ldc, mcur, ncol, i0 + ir, jc + jr);
        }
        ir += mcur;
    }
}

// The most columns a direct block takes (GemmKernels::direct_nc_max, else nc).
inline int64_t direct_max_cols(const GemmKernels& kn) { return kn.direct_nc_max > 0 ? kn.direct_nc_max : kn.nc; }

// Columns per block of a direct product with kc steps: at most direct_max_cols, or fewer where the
// table's direct_block_bytes says so (the block, kc x nc floats read by every row panel, stays in L2).
int64_t direct_nc(const GemmKernels& kn, int64_t kc) {
    const int64_t max_cols = direct_max_cols(kn);
    if (kn.direct_block_bytes == 0) return max_cols;
    const int64_t cols = kn.direct_block_bytes / (kc * int64_t(sizeof(float))) / kn.nr * kn.nr;
    return std::max<int64_t>(kn.nr, std::min<int64_t>(max_cols, cols));
}

// C[i0:i1, j0:j1] of the problem. j0 is a multiple of NR.
kiln_status run_rows(const Problem& p, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const GemmKernels& kn = *p.kern;
    const int mr = kn.mr, nr = kn.nr;
    const int64_t rows = i1 - i0;
    const bool direct = p.direct;
    const int64_t kc = p.kc;
    // Direct products take all of K at once, so their B block (kc x nc) is sized here to stay in
    // L2 while every row panel of the stripe re-reads it.
    // A stripe whose B block fits the budget is one block (no divisions on small calls).
    const int64_t cols = j1 - j0;
    const int64_t nc = !direct ? kn.nc
                       : cols <= direct_max_cols(kn) && cols * kc * int64_t(sizeof(float)) <= kn.direct_block_bytes
                           ? cols
                           : direct_nc(kn, kc);
    float* abuf = nullptr;
    if (!direct) {
        const int64_t row_panels = (rows + mr - 1) / mr;
        abuf = t_pack_a.get(size_t(row_panels * mr * units(p, kc)));
        if (abuf == nullptr) return fail(KILN_ERR_OUT_OF_MEMORY, "kiln_sgemm: no memory for packing A");
    }
    // A pack_b_direct stripe (A as rows) whose first row panel is a whole one packs each B block in
    // that panel's tiles (ukernel_direct_pack_b) instead of a pass before, unless B is transposed.
    const bool first_panel_packs = p.pack_b_direct && !p.tb && kn.ukernel_direct_pack_b != nullptr &&
                                   std::min(RowPanels(p).end(i0), i1) - i0 == mr;
    float* bbuf = nullptr;
    if (p.packed_b == nullptr && (!direct || p.pack_b_direct)) {
        bbuf = t_pack_b.get(size_t(((nc + nr - 1) / nr) * nr * units(p, kc)));
        if (bbuf == nullptr) return fail(KILN_ERR_OUT_OF_MEMORY, "kiln_sgemm: no memory for packing B");
    }
    for (int64_t pc = 0; pc < p.k; pc += kc) {
        const int64_t kcur = (p.k - pc) < kc ? (p.k - pc) : kc;
        // A is packed (unless direct) once per k block and reused for every column block.
        const int64_t ucur = units(p, kcur);
        // One f32 row not transposed is already its packed panel (a step a float, in k order):
        // read in place. mlp-small, batch 1, 1 thread: the copies were ~2% of the forward.
        const bool row_in_place = rows == 1 && !p.ta && !p.bf16 && !p.pairs;
        if (!direct && !row_in_place) p.pack_a(p.ta, p.a, p.lda, i0, rows, pc, kcur, mr, abuf);
        const float* apanels = row_in_place ? static_cast<const float*>(p.a) + i0 * p.lda + pc : abuf;
        const bool first = pc == 0, last = pc + kcur >= p.k;
        const float beta = first ? p.beta : 1.0f;
        const bool load_c = !first || p.beta != 0.0f;
        for (int64_t jc = j0; jc < j1; jc += nc) {
            const int64_t ncur = (j1 - jc) < nc ? (j1 - jc) : nc;
            const float* bblock;
            int64_t panel_stride;
            if (direct) {
                const float* panels = nullptr;
                float* pack_out = nullptr;
                if (p.packed_b != nullptr) {
                    panels = p.packed_b + (jc / nr) * p.k * nr;
                } else if (p.pack_b_direct) {  // the block's whole-K panels, read by every row panel
                    panels = bbuf;
                    if (first_panel_packs)
                        pack_out = bbuf;
                    else
                        p.pack_b(p.tb, p.b, p.ldb, jc, ncur, 0, p.k, nr, bbuf);
                }
                direct_block(p, panels, i0, rows, pc, kcur, jc, ncur, beta, load_c, last, pack_out);
                continue;
            }
            if (p.packed_b != nullptr) {
                bblock = p.packed_b + (jc / nr) * units(p, p.k) * nr + units(p, pc) * nr;
                panel_stride = units(p, p.k) * nr;
            } else {
                p.pack_b(p.tb, p.b, p.ldb, jc, ncur, pc, kcur, nr, bbuf);
                bblock = bbuf;
                panel_stride = ucur * nr;
            }
            for (int64_t ir = 0; ir < rows; ir += mr) {
                const int mcur = int((rows - ir) < mr ? (rows - ir) : mr);
                const float* ap = apanels + ir * ucur;
                const GemmUkernel uk = kn.ukernel[mcur];
                for (int64_t jr = 0; jr < ncur; jr += nr) {
                    const int ncol = int((ncur - jr) < nr ? (ncur - jr) : nr);
                    float* cp = p.c + (i0 + ir) * p.ldc + jc + jr;
                    TileEpilogue te;
                    const TileEpilogue* fused = tile_epilogue(p, last, i0 + ir, jc + jr, &te);
                    uk(ucur, ap, bblock + (jr / nr) * panel_stride, cp, p.ldc, ncol, p.alpha, beta, load_c, fused);
                    if (last && p.ep && !fused) apply_epilogue(p.ep, cp, p.ldc, mcur, ncol, i0 + ir, jc + jr);
                }
            }
        }
    }
    return KILN_OK;
}

// The k block for K steps: at most kc_max, with K split into equal blocks (rounded up to 16 steps)
// so that no short tail block pays a whole pass over C for a few steps: K = 2048 at kc_max = 768
// takes 688 + 688 + 672, not 768 + 768 + 512.
int64_t block_k(int64_t k, int64_t kc_max) {
    if (k <= kc_max) return k;
    const int64_t blocks = (k + kc_max - 1) / kc_max;
    const int64_t kc = ((k + blocks - 1) / blocks + 15) / 16 * 16;
    return kc < kc_max ? kc : kc_max;
}

// A thread packs the A rows of its whole stripe for a k block (read once per column block);
// taller stripes go in chunks of rows, each repacking B, so that the A buffer stays under this
// (16 MiB: 5,400 rows at kc = 768).
constexpr int64_t kPackAMaxFloats = int64_t(1) << 22;

// Columns per pass of a stream kernel: its accumulators (rows x columns) in 16 KiB of L1.
constexpr int64_t kStreamAccFloats = 4096;
// Below this much of B the direct tiles do as well (the stream path's zeroing and final pass over
// its accumulators cost more than they save: 2x30x100 54 -> 40 GFLOP/s streamed).
constexpr int64_t kStreamMinBFloats = 8192;
// ... and, B not transposed, at least this many columns per row of a kernel (of a group, see
// stream_group_rows): narrower products leave the stream kernels' accumulator passes short, and
// the direct tiles (B's rows close together) do better. 1 thread, GFLOP/s, direct -> streamed:
// 4x512x64 99 -> 62, 2x1536x128 72 -> 67, 2x512x256 52 -> 63, 1x512x128 29 -> 36, 4x1024x1024 43
// -> 84.
constexpr int64_t kStreamMinColsPerRow = 128;
// B transposed, 5-16 rows: dot products in groups of rows beat packing B^T on every call. 1
// thread, GFLOP/s, AVX-512 (AVX2): 5x784x512 47 -> 83 (19 -> 56), 8x784x512 57 -> 95 (28 -> 64),
// 12x784x512 72 -> 98 (46 -> 63), 16x784x512 76 -> 87 (43 -> 67), 7x1024x1024 48 -> 96; oneDNN's
// sgemm 80-107 on these.
constexpr int64_t kStreamTMaxRows = 16;
// B not transposed, more rows than one stream kernel takes (up to the table's
// stream_group_max_rows, where its direct tiles do worse): groups of rows, as even as can be, each
// streaming the same column chunk, so each group reads B once. Chunks cut to keep K x chunk in L2
// for the groups after the first (64-column chunks at K = 1024) ran slower than re-reading B from
// L3 (1 thread, AVX2, GFLOP/s: 6x784x512 74 -> 48 against 63, 8x4096x4096 29 -> 16 against 29):
// narrow chunks read B's rows in short pieces a stride apart. Rows per group: ceil(rows /
// stream_max_rows) groups as even as can be (5 -> 3 + 2, 8 -> 4 + 4).
inline int64_t stream_group_rows(const GemmKernels& kn, int64_t rows) {
    if (kn.stream_max_rows <= 0 || rows <= kn.stream_max_rows) return rows;
    const int64_t groups = (rows + kn.stream_max_rows - 1) / kn.stream_max_rows;
    return (rows + groups - 1) / groups;
}
// Where groups take over from the direct tiles: B's rows aliasing in the caches (the direct path
// would pack B on every call), or a second row panel of 3 rows or fewer. 1 thread, AVX2 (6-row
// tiles), GFLOP/s, before -> groups: 5x1024x1024 33 -> 65, 6x1024x1024 60 -> 70, 8x1024x1024 50
// -> 75, 12x1024x1024 58 -> 74, 7x784x512 58 -> 67, 8x784x512 61 -> 71, 9x784x512 52 -> 63,
// 8x1024x1024 A transposed 23 -> 53; kept direct: 5x784x512 (67 vs 59 groups), 6x784x512, 10 to 12
// rows unaliased (12x784x512 79 vs 70, 11x1000x1000 84 vs 67).
inline bool stream_groups_pay(const Problem& p) {
    const int64_t mr = p.kern->mr;
    return p.m <= p.kern->stream_group_max_rows && (b_rows_alias(p.ldb, p.k) || (p.m > mr && p.m <= mr + mr / 2));
}
// With B transposed the dot kernels have no accumulator pass to pay for, and a small B still
// beats packing it and A once K gives each sum enough steps (or the rows are a single group).
// In-process A/B, 1 thread, GFLOP/s, packed -> dots: 6x43x24 28 -> 50, 4x32x64 34 -> 57,
// 15x68x24 49 -> 69, 16x100x80 66 -> 84, 2x20x30 12 -> 25, 3x16x40 16 -> 33; kept packed:
// 16x16x64 (58 vs 42 dots), 16x20x200 (56 vs 43), and A transposed (TT 12x40x30 56 vs 53: A's
// rows are copied first).
inline bool small_b_dots(const Problem& p) {
    return !p.ta && p.k >= 16 && (p.k >= 32 || p.m <= p.kern->stream_max_rows);
}
// Past that, where the table says its dot kernels run near the peak (long_k_dots), they still win
// while their horizontal sums (~2.5 cycles an element of C with sum8, ~40 / K of the time at 16
// MACs a cycle) cost less than packing A and B (~8-12 (1/m + 1/n) of it), and B stays within
// kDirectMaxRowsBFloats (each group of rows re-reads it). In-process A/B, 1 thread, GFLOP/s,
// AVX-512, packed -> dots: 30x643x34 56 -> 99, 100x2000x40 78 -> 107, 20x1000x300 83 -> 107,
// 32x784x512 94 -> 108, 200x512x100 95 -> 108, 1000x1000x100 94 -> 105, 128x600x600 107 -> 110;
// kept packed: 256x784x512 (109 either way), 64x512x4000 (96 vs 90 dots), 1024^3.
inline bool long_k_for_dots(const Problem& p) {
    return p.k * p.n <= kDirectMaxRowsBFloats &&
           5.0 * double(p.m) * double(p.n) < double(p.k) * double(p.m + p.n);
}

// Where in buf (64-byte aligned, 4 KiB to spare) a stream pass's accumulators go. A pass stores
// accumulator rows and loads rows of B in step along the columns; when a load's address matches a
// recent store's in its low 12 bits (4 KiB aliasing), the load waits for the store. Whether that
// happens depended on where B and the scratch happened to lie: 4x1024x1024 ran at 49 or 108
// GFLOP/s from one program to the next. So the accumulator rows are placed as far as possible
// (circularly, in a 4 KiB page) from the first rows of B.
float* stream_acc(float* buf, const float* b, int64_t ldb, int64_t rows, int64_t ld_acc) {
    constexpr int64_t kPage = 4096, kLine = 64;
    const int64_t base = int64_t(reinterpret_cast<uintptr_t>(buf) % kPage);
    int64_t b_off[4];
    for (int u = 0; u < 4; ++u)
        b_off[u] = int64_t((reinterpret_cast<uintptr_t>(b) + uintptr_t(u * ldb) * sizeof(float)) % kPage);
    const int64_t row_step = ld_acc * int64_t(sizeof(float)) % kPage;
    int64_t best = 0, best_gap = -1;
    for (int64_t off = 0; off < kPage; off += kLine) {
        int64_t gap = kPage;
        for (int64_t i = 0; i < rows; ++i)
            for (int u = 0; u < 4; ++u) {
                const int64_t d = ((off + i * row_step - b_off[u]) % kPage + kPage) % kPage;
                gap = std::min(gap, std::min(d, kPage - d));
            }
        if (gap > best_gap) {
            best_gap = gap;
            best = off;
        }
    }
    return buf + ((best - base) % kPage + kPage) % kPage / int64_t(sizeof(float));
}

// C[i0:i1, j0:j1] of a stream problem (few rows, B in place). B not transposed: column chunks
// whose accumulators stay in L1, B's rows read front to back across each chunk, all of K at once.
// B transposed: dot products of A's rows and B's rows (see GemmStreamKernel).
// A leading dimension of at least n floats for a scratch copy whose rows are read side by side:
// rows a multiple of 1 KiB apart would share L1 sets with each other.
inline int64_t padded_ld(int64_t n) {
    const int64_t ld = (n + 15) / 16 * 16;
    return ld % 256 == 0 ? ld + 16 : ld;
}

// dst[j * ld_dst + i] = src[i * ld_src + j] for i < rows, j < cols: by register transposes on
// AVX-512 (TT 200x1880x36, 1 thread: the scalar loop took 40% of the time), else scalar.
void transpose_into(const GemmKernels& kn, const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                    int64_t ld_dst) {
    if (kn.isa == KILN_ISA_AVX512) {
        transpose_avx512(src, ld_src, rows, cols, dst, ld_dst);
        return;
    }
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) dst[j * ld_dst + i] = src[i * ld_src + j];
}

// rows x nc of C at c: dot products of A's rows (a, lda) and nc rows of bt (ldbt), K steps, in
// groups of the table's stream_max_rows rows (stream_t), each followed by the epilogue; (row0, col0)
// is c's place in the whole product.
void dot_groups(const GemmKernels& kn, int64_t k, const float* a, int64_t lda, const float* bt, int64_t ldbt,
                int64_t rows, int64_t nc, float* c, int64_t ldc, float alpha, float beta, const kiln_epilogue* ep,
                int64_t row0, int64_t col0) {
    const int64_t group = kn.stream_max_rows;
    for (int64_t r0 = 0; r0 < rows; r0 += group) {
        const int64_t r = std::min(group, rows - r0);
        float* cr = c + r0 * ldc;
        kn.stream_t[r](k, a + r0 * lda, lda, false, bt, ldbt, nc, nullptr, cr, ldc, alpha, beta, beta != 0.0f);
        if (ep) apply_epilogue(ep, cr, ldc, int(r), int(nc), row0 + r0, col0);
    }
}

kiln_status stream_block(const Problem& p, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const GemmKernels& kn = *p.kern;
    const int64_t rows = i1 - i0;
    if (p.tb) {  // dot products of A's rows and B's rows; a transposed A is copied into rows first
        const float* a = static_cast<const float*>(p.a);
        const float* ar = p.ta ? a + i0 : a + i0 * p.lda;
        int64_t ld_ar = p.lda;
        if (p.ta) {
            ld_ar = padded_ld(p.k);
            float* rows_buf = t_pack_a.get(size_t(rows * ld_ar));
            if (rows_buf == nullptr) return fail(KILN_ERR_OUT_OF_MEMORY, "kiln_sgemm: no memory for A's rows");
            transpose_into(kn, ar, p.lda, p.k, rows, rows_buf, ld_ar);
            ar = rows_buf;
        }
        // More rows than one kernel takes: groups of them, each over the same chunk of B's rows
        // (256 KiB: re-read from L2 by the next group).
        const int64_t group = kn.stream_max_rows;
        const int64_t chunk = rows <= group ? j1 - j0 : std::max<int64_t>(16, (256 << 10) / (p.k * 4) / 16 * 16);
        for (int64_t jc = j0; jc < j1; jc += chunk) {
            const int64_t nc = std::min(chunk, j1 - jc);
            const float* b = static_cast<const float*>(p.b) + jc * p.ldb;
            dot_groups(kn, p.k, ar, ld_ar, b, p.ldb, rows, nc, p.c + i0 * p.ldc + jc, p.ldc, p.alpha, p.beta, p.ep,
                       i0, jc);
        }
        return KILN_OK;
    }
    const int64_t group = stream_group_rows(kn, rows);
    const int64_t cols = std::max<int64_t>(64, kStreamAccFloats / group / 16 * 16);
    const int64_t chunk = std::min(cols, j1 - j0);
    // + 1024 floats: room to place the accumulators in the page (stream_acc).
    float* buf = t_pack_a.get(size_t(group * stream_ld(chunk) + 1024));
    if (buf == nullptr) return fail(KILN_ERR_OUT_OF_MEMORY, "kiln_sgemm: no memory for accumulators");
    const float* a = static_cast<const float*>(p.a);
    const float* b = static_cast<const float*>(p.b);
    const bool load_c = p.beta != 0.0f;
    for (int64_t jc = j0; jc < j1; jc += chunk) {
        const int64_t nc = std::min(chunk, j1 - jc);
        for (int64_t r0 = 0; r0 < rows; r0 += group) {
            const int64_t r = std::min(group, rows - r0);
            float* acc = stream_acc(buf, b + jc, p.ldb, r, stream_ld(nc));
            const float* ap = p.ta ? a + i0 + r0 : a + (i0 + r0) * p.lda;
            kn.stream[r](p.k, ap, p.lda, p.ta, b + jc, p.ldb, nc, acc, p.c + (i0 + r0) * p.ldc + jc, p.ldc, p.alpha,
                         p.beta, load_c);
        }
        if (p.ep) apply_epilogue(p.ep, p.c + i0 * p.ldc + jc, p.ldc, int(rows), int(nc), i0, jc);
    }
    return KILN_OK;
}

// C[i0:i1, j0:j1] of the problem. j0 is a multiple of NR.
kiln_status run_block(const Problem& p, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    if (p.stream) return stream_block(p, i0, i1, j0, j1);
    if (p.direct) return run_rows(p, i0, i1, j0, j1);
    const int64_t mr = p.kern->mr;
    const int64_t per_row = units(p, p.kc);
    const int64_t chunk = std::max(mr, kPackAMaxFloats / per_row / mr * mr);
    for (int64_t r = i0; r < i1; r += chunk)
        if (kiln_status st = run_rows(p, r, std::min(i1, r + chunk), j0, j1)) return st;
    return KILN_OK;
}

// Runs p on `threads` threads of the pool (see run). Kept out of line: its error buffer is not
// set up on the calls that stay on one thread.
__attribute__((noinline)) kiln_status run_split(const Problem& p, int threads, int64_t n_panels, int64_t m_panels) {
    const int mr = p.kern->mr, nr = p.kern->nr;
    // Squares and tall products split rows (each thread packs only its own A rows and keeps its B
    // block in its own L2); wide ones split columns. Measured on 1024^3 and 2048^3 at 2 threads:
    // splitting rows is 5-10% faster than splitting columns.
    const bool split_n = n_panels >= 2 * threads && (p.n > p.m || m_panels < 2 * threads);
    std::atomic<int> status{KILN_OK};
    std::atomic<bool> failed{false};
    char first_error[1024];
    first_error[0] = '\0';
    std::atomic<bool> error_taken{false};
    parallel_for(threads, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            kiln_status st;
            if (split_n) {
                const int64_t q0 = n_panels * t / threads, q1 = n_panels * (t + 1) / threads;
                const int64_t j1 = q1 * nr < p.n ? q1 * nr : p.n;
                st = q0 == q1 ? KILN_OK : run_block(p, 0, p.m, q0 * nr, j1);
            } else {
                const int64_t q0 = m_panels * t / threads, q1 = m_panels * (t + 1) / threads;
                if (p.direct) {  // the direct path's panels (see RowPanels)
                    const RowPanels panels(p);
                    st = q0 == q1 ? KILN_OK : run_block(p, panels.start(q0), panels.start(q1), 0, p.n);
                } else {
                    const int64_t i1 = q1 * mr < p.m ? q1 * mr : p.m;
                    st = q0 == q1 ? KILN_OK : run_block(p, q0 * mr, i1, 0, p.n);
                }
            }
            if (st != KILN_OK && !error_taken.exchange(true)) {
                std::strncpy(first_error, kiln_last_error(), sizeof first_error - 1);
                status = st;
                failed = true;
            }
        }
    });
    if (failed) return fail(kiln_status(status.load()), "%s", first_error);
    return KILN_OK;
}

kiln_status run(Problem& p) {
    if (p.m == 0 || p.n == 0) return KILN_OK;
    // Up to the table's direct_max_rows rows, or a small B: read A and B in place instead of packing
    // them (see ukernel_direct); a pre-packed B is read from its panels. One row panel, or nothing
    // packed: all of K at once (no C reloads).
    p.direct = !p.tb && !p.bf16 && p.kern->ukernel_direct[0][1] != nullptr &&
               (p.packed_b == nullptr ? (p.m <= p.kern->direct_max_rows &&
                                         p.k * p.n <= kDirectMaxRowsBFloats &&
                                         (p.m <= p.kern->mr || (p.ta && a_cols_direct(p)) ||
                                          ((direct_k_fits(p) || p.m <= 2 * p.kern->mr) &&
                                           !b_rows_alias(p.ldb, p.k)))) ||
                                            (p.k * p.n <= kDirectMaxBFloats && small_b_rows_close(p))
                                      : p.m > p.kern->mr && p.m <= kDirectMaxRows &&
                                            p.k * p.n <= kDirectMaxRowsBFloats && direct_k_fits(p));
    // Up to the table's stream_max_rows rows with B in place (and not tiny): B's rows stream whole
    // (see stream_block); products that small gain nothing from packing B, read once either way.
    // With B transposed, up to kStreamTMaxRows rows (or more, K long enough) go through the dot
    // kernels in groups of stream_max_rows (see stream_block); without, up to the table's
    // stream_group_max_rows rows where groups pay (stream_groups_pay).
    const bool few_rows = p.tb ? p.m <= kStreamTMaxRows || (p.kern->long_k_dots && long_k_for_dots(p))
                               : p.m <= p.kern->stream_max_rows || stream_groups_pay(p);
    const int64_t kernel_rows = std::min<int64_t>(p.m, p.kern->stream_max_rows);
    p.stream = !p.bf16 && p.packed_b == nullptr && few_rows &&
               (p.k * p.n >= kStreamMinBFloats || (p.tb && small_b_dots(p))) &&
               (p.tb ? p.kern->stream_t[kernel_rows] : p.kern->stream[kernel_rows]) != nullptr &&
               (p.tb || p.n >= kStreamMinColsPerRow * stream_group_rows(*p.kern, p.m));
    if (p.stream) p.direct = false;
    // Where a pre-packed B would go direct (more than one row panel, at most kDirectMaxRows rows,
    // short K) and the table says so (pack_b_direct), a B in place is packed per call into whole-K
    // panels, one column block at a time into the thread's B buffer, and the direct kernels read A
    // in place against them: no A packing, no k blocks (no C reloads), and the same bits as
    // kiln_sgemm_packed. Each thread packs the column blocks of its own stripe: its share of B when
    // the threads split columns, all of B when they split rows.
    if (!p.direct && !p.stream && p.packed_b == nullptr && !p.bf16 && !p.ta && p.kern->pack_b_direct &&
        p.m > p.kern->mr && p.m <= kDirectMaxRows && p.k * p.n <= kDirectMaxRowsBFloats && direct_k_fits(p)) {
        p.direct = true;
        p.pack_b_direct = true;
    }
    p.kc = ((p.m <= p.kern->mr || p.direct) && p.k <= 4096) ? p.k : block_k(p.k, p.kern->kc);
    p.fuse_ep = can_fuse(*p.kern, p.ep);
    if (p.k == 0) {  // C = beta * C, then the epilogue
        for (int64_t i = 0; i < p.m; ++i) {
            float* row = p.c + i * p.ldc;
            for (int64_t j = 0; j < p.n; ++j) row[j] = p.beta == 0.0f ? 0.0f : p.beta * row[j];
            if (p.ep) apply_epilogue(p.ep, row, p.ldc, 1, int(p.n), i, 0);
        }
        return KILN_OK;
    }
    const int threads = pool_threads();
    const double macs = double(p.m) * double(p.n) * double(p.k);
    // Small products (< 2^18 multiply-adds, ~5 µs on one core) stay on the caller's thread. Measured
    // on the training step of a 784-256-128-10 MLP at batch 32 and 2 threads: 2^21 -> 2^18 took it
    // from ~71k to ~98k samples/s (its 1M-MAC products now split too). Small M with many columns
    // (batch-1..16 inference on wide layers) splits the columns: each thread streams its own share.
    // Those split from 2^16 multiply-adds: a batch-1 layer streams its weights from L3, and halving
    // the stream beats the wake-up (mlp-small 784-512-256-10 at batch 1, 2 threads: p50 15.8 ->
    // 13.8 us once its 512x256 layer splits too; batch 8 and the training step unchanged).
    const double min_macs = p.m <= 16 ? double(1 << 16) : double(1 << 18);
    if (threads <= 1 || macs < min_macs) return run_block(p, 0, p.m, 0, p.n);
    const int mr = p.kern->mr, nr = p.kern->nr;
    const int64_t n_panels = (p.n + nr - 1) / nr, m_panels = (p.m + mr - 1) / mr;
    if (p.m <= 16 && n_panels < 2 * threads) return run_block(p, 0, p.m, 0, p.n);
    return run_split(p, threads, n_panels, m_panels);
}

bool spans_overlap(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
    const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
    return x < y + uintptr_t(b_bytes) && y < x + uintptr_t(a_bytes);
}

// Bytes spanned by a rows x cols row-major matrix with leading dimension ld.
int64_t span_bytes(int64_t rows, int64_t cols, int64_t ld) {
    if (rows == 0 || cols == 0) return 0;
    return ((rows - 1) * ld + cols) * int64_t(sizeof(float));
}

kiln_status check_epilogue(const char* fn, const kiln_epilogue* ep, int64_t n) {
    if (ep == nullptr) return KILN_OK;
    if (ep->activation < KILN_UNARY_IDENTITY || ep->activation > KILN_UNARY_LAST)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: epilogue activation is %d: not a kiln_unary_op", fn,
                    ep->activation);
    if (!std::isfinite(ep->activation_alpha))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: epilogue activation alpha is not finite", fn);
    if (ep->residual != nullptr && ep->ld_residual < n)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: epilogue ld_residual is %lld: must be >= n = %lld", fn,
                    (long long)ep->ld_residual, (long long)n);
    return KILN_OK;
}

kiln_status check_dims(const char* fn, int64_t m, int64_t n, int64_t k) {
    if (m < 0 || n < 0 || k < 0)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: m, n, k are %lld, %lld, %lld: must be >= 0", fn,
                    (long long)m, (long long)n, (long long)k);
    const int64_t lim = int64_t(1) << 40;
    if (m > lim || n > lim || k > lim)
        return fail(KILN_ERR_OVERFLOW, "%s: m, n, k are %lld, %lld, %lld: each must be <= 2^40", fn,
                    (long long)m, (long long)n, (long long)k);
    return KILN_OK;
}

kiln_status check_matrix(const char* fn, const char* name, const void* p, int64_t rows, int64_t cols,
                         int64_t ld) {
    if (rows == 0 || cols == 0) return KILN_OK;
    if (p == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, name);
    if (ld < cols)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: ld%s is %lld: must be >= %lld (its row length)", fn, name,
                    (long long)ld, (long long)cols);
    int64_t floats;  // no division: this runs on every call, and a 64-bit divide is ~15 cycles
    if (__builtin_mul_overflow(ld, rows, &floats) || floats > INT64_MAX / 4)
        return fail(KILN_ERR_OVERFLOW, "%s: %s's rows x ld overflows int64 bytes", fn, name);
    return KILN_OK;
}

// Arguments of an unpacked GEMM (elem_bytes: 4 for f32 inputs, 2 for bf16).
kiln_status check_gemm(const char* fn, int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k,
                       const void* a, int64_t lda, const void* b, int64_t ldb, const float* c, int64_t ldc,
                       const kiln_epilogue* ep, int64_t elem_bytes) {
    if ((trans_a != 0 && trans_a != 1) || (trans_b != 0 && trans_b != 1))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: trans_a, trans_b are %d, %d: must be 0 or 1", fn, trans_a,
                    trans_b);
    if (kiln_status st = check_dims(fn, m, n, k)) return st;
    const int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    const int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    if (kiln_status st = check_matrix(fn, "a", a, a_rows, a_cols, lda)) return st;
    if (kiln_status st = check_matrix(fn, "b", b, b_rows, b_cols, ldb)) return st;
    if (kiln_status st = check_matrix(fn, "c", c, m, n, ldc)) return st;
    if (kiln_status st = check_epilogue(fn, ep, n)) return st;
    const int64_t c_bytes = span_bytes(m, n, ldc);
    if (spans_overlap(c, c_bytes, a, span_bytes(a_rows, a_cols, lda) / 4 * elem_bytes) ||
        spans_overlap(c, c_bytes, b, span_bytes(b_rows, b_cols, ldb) / 4 * elem_bytes))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: c overlaps a or b: write to a separate buffer", fn);
    return KILN_OK;
}

// Arguments of a GEMM with a pre-packed B that must have been packed from `dtype`.
kiln_status check_packed_gemm(const char* fn, int32_t trans_a, int64_t m, const void* a, int64_t lda,
                              const kiln_packed_b* b, const float* c, int64_t ldc, const kiln_epilogue* ep,
                              int32_t dtype, const char* other_fn) {
    if (b == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: b is NULL", fn);
    if (b->dtype != dtype)
        return fail(KILN_ERR_DTYPE_MISMATCH, "%s: b was packed from %s: use %s", fn,
                    b->dtype == KILN_DTYPE_BF16 ? "BF16" : "F32", other_fn);
    if (trans_a != 0 && trans_a != 1)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: trans_a is %d: must be 0 or 1", fn, trans_a);
    if (kiln_status st = check_dims(fn, m, b->n, b->k)) return st;
    const int64_t a_rows = trans_a ? b->k : m, a_cols = trans_a ? m : b->k;
    if (kiln_status st = check_matrix(fn, "a", a, a_rows, a_cols, lda)) return st;
    if (kiln_status st = check_matrix(fn, "c", c, m, b->n, ldc)) return st;
    if (kiln_status st = check_epilogue(fn, ep, b->n)) return st;
    const int64_t elem_bytes = dtype == KILN_DTYPE_BF16 ? 2 : 4;
    if (spans_overlap(c, span_bytes(m, b->n, ldc), a, span_bytes(a_rows, a_cols, lda) / 4 * elem_bytes))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: c overlaps a: write to a separate buffer", fn);
    return KILN_OK;
}

// Packs op(B) into a new kiln_packed_b for `kern` (units: f32 steps, or bf16 pairs).
kiln_status make_packed_b(const char* fn, int32_t trans_b, int64_t k, int64_t n, const void* b, int64_t ldb,
                          const GemmKernels* kern, PackFn pack, bool pairs, int32_t dtype, kiln_packed_b** out) {
    if (out == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = nullptr;
    if (trans_b != 0 && trans_b != 1)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: trans_b is %d: must be 0 or 1", fn, trans_b);
    if (kiln_status st = check_dims(fn, 0, n, k)) return st;
    if (kiln_status st = check_matrix(fn, "b", b, trans_b ? n : k, trans_b ? k : n, ldb)) return st;
    const int64_t panels = (n + kern->nr - 1) / kern->nr;
    const int64_t units = pairs ? (k + 1) / 2 : k;
    const int64_t floats = panels * kern->nr * units;
    if (floats > (int64_t(1) << 60)) return fail(KILN_ERR_OVERFLOW, "%s: packed size overflows", fn);
    auto* pb = new (std::nothrow) kiln_packed_b{kern, k, n, nullptr, floats * 4, dtype, pairs};
    if (pb == nullptr) return fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory", fn);
    void* data = nullptr;
    if (kiln_status st = kiln_alloc(floats * 4, &data)) {
        delete pb;
        return st;
    }
    pb->data = static_cast<float*>(data);
    if (k > 0 && n > 0) pack(trans_b == 1, b, ldb, 0, n, 0, k, kern->nr, pb->data);
    *out = pb;
    return KILN_OK;
}

// Narrow products with A as rows (n past stream_max_rows and under NR: a classifier's head) as dot
// products of A's rows and op(B)'s columns, both read along k (the stream_t kernels, 4 rows of A a
// pass): every lane does useful work, where a direct tile spends a whole vector on the last few
// columns. Taken where the tiles would use too few of their lanes (the table's narrow_dots_cols;
// B in place), or would pack B^T and A (B transposed), and K is long enough to pay for the
// horizontal sums. 1 thread, GFLOP/s, Zen 4, 256 rows x K 256, before -> after: AVX-512 n = 5 45
// -> 75, 8 58 -> 89, 10 63 -> 79, 12 67 -> 91, 20 69 -> 91 (16: tiles, 110; K 64, n 10: dots 43,
// tiles 48); B transposed n = 6 49 -> 73, 10 63 -> 82, 16 73 -> 97. AVX2: n = 6 29 -> 51; B
// transposed n = 10 33 -> 54.
constexpr int64_t kNarrowMinK = 96;

bool narrow_dots(const GemmKernels& kn, int32_t trans_a, int32_t trans_b, int64_t n, int64_t k) {
    if (trans_a != 0 || kn.narrow_dots_cols == 0 || n <= kn.stream_max_rows || n >= kn.nr || n >= 32 ||
        k < kNarrowMinK)
        return false;
    if (trans_b) return 4 * n <= 3 * kn.nr;
    return (kn.narrow_dots_cols >> n) & 1u;
}

// The columns past the last whole vector of a wider product (at most 3/4 of a vector, where the
// tiles would waste a quarter of that vector's lanes or more), to run as a narrow product (dot
// kernels) beside the rest; 0: none. In-process A/B, 1 thread, GFLOP/s, AVX-512: 64x512x33 78 ->
// 105, 36x268x35 81 -> 100, 128x1024x40 66 -> 91, 200x512x50 89 -> 111, 128x784x100 102 -> 113,
// 256x512x203 109 -> 112; AVX2: 64x512x33 73 -> 106, 200x512x50 80 -> 105, 256x512x203 100 -> 97.
int64_t column_tail(const GemmKernels& kn, int32_t trans_a, int64_t n, int64_t k) {
    if (trans_a != 0 || !kn.long_k_dots || n <= kn.nr || k < kNarrowMinK) return 0;
    const int64_t lanes = kn.nr / 2, r = n % lanes;
    return 4 * r <= 3 * lanes ? r : 0;
}

kiln_status narrow_run(const GemmKernels* kn, int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                       const kiln_epilogue* ep) {
    if (m == 0) return KILN_OK;
    const int64_t group = kn->stream_max_rows, groups = (m + group - 1) / group;
    const int64_t ldbt = trans_b == 0 ? padded_ld(k) : ldb;
    std::atomic<bool> no_memory{false};
    auto rows = [&](int64_t g0, int64_t g1) {
        const float* bt = b;  // op(B)'s columns as rows
        if (trans_b == 0) {
            // n x k floats: B transposed, by each thread into its own scratch (a copy made by the
            // caller crossed cores to reach the other thread: 64x400x20, 2 threads, 92 -> 112
            // GFLOP/s with a copy each).
            float* t = t_swap.get(size_t(n * ldbt));
            if (t == nullptr) {
                no_memory = true;
                return;
            }
            transpose_into(*kn, b, ldb, k, n, t, ldbt);
            bt = t;
        }
        const int64_t i0 = group * g0, i1 = std::min(m, group * g1);
        dot_groups(*kn, k, a + i0 * lda, lda, bt, ldbt, i1 - i0, n, c + i0 * ldc, ldc, alpha, beta, ep, i0, 0);
    };
    // Each C element is one dot product whoever computes it: the split does not change results.
    if (double(m) * double(n) * double(k) >= double(1 << 18) && groups >= 8)
        parallel_for(groups, 1, rows);
    else
        rows(0, groups);
    if (no_memory) return fail(KILN_ERR_OUT_OF_MEMORY, "kiln_sgemm: no memory for a narrow product");
    return KILN_OK;
}

}  // namespace
}  // namespace kiln

using namespace kiln;

extern "C" KILN_API kiln_status kiln_sgemm(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k,
                                           float alpha, const float* a, int64_t lda, const float* b,
                                           int64_t ldb, float beta, float* c, int64_t ldc,
                                           const kiln_epilogue* epilogue) {
    if (kiln_status st = check_gemm("kiln_sgemm", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, epilogue, 4))
        return st;
    const GemmKernels* kern = &select_kernel(kTable);
    if (narrow_dots(*kern, trans_a, trans_b, n, k))
        return narrow_run(kern, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, epilogue);
    // Other narrow products (n <= NR / 2, m >= 4n: a classifier's last layer, its weight gradient)
    // waste most of each NR-wide panel. Compute C^T = op(B)^T op(A)^T instead (n rows: one MR panel;
    // m columns: full panels) into scratch, then transpose into C and apply beta and the epilogue.
    // Up to stream_max_rows rows, C^T streams (dot products again, n rows of B^T against 4 of A's
    // at a time). Past that, not for A as rows and B in place: C^T's B is A^T, packed on every
    // call, where the direct tiles read A in place (1 thread, GFLOP/s, 256 rows x K 64: n = 2 44
    // swapped vs 13 direct, n = 10 37 vs 64, n = 16 41 vs 105).
    if (n > 0 && k > 0 && 2 * n <= kern->nr && m >= 4 * n && m * n <= (int64_t(1) << 20) &&
        (trans_a == 1 || trans_b == 1 || n <= kern->stream_max_rows)) {
        float* t = t_swap.get(size_t(m * n));
        if (t == nullptr) return fail(KILN_ERR_OUT_OF_MEMORY, "kiln_sgemm: no memory for a narrow product");
        Problem q{kern, pack_a_for(kern), pack_b_for(kern), false, trans_b != 1, trans_a != 1, n, m, k,
                  alpha, 0.0f, b, ldb, a, lda, nullptr, t, m, nullptr};
        if (kiln_status st = run(q)) return st;
        for (int64_t i = 0; i < m; ++i) {
            float* row = c + i * ldc;
            if (beta == 0.0f) {
                for (int64_t j = 0; j < n; ++j) row[j] = t[j * m + i];
            } else {
                for (int64_t j = 0; j < n; ++j) row[j] = t[j * m + i] + beta * row[j];
            }
        }
        if (epilogue != nullptr)
            for (int64_t i = 0; i < m; i += 4096)
                apply_epilogue(epilogue, c + i * ldc, ldc, int(std::min<int64_t>(4096, m - i)), int(n), i, 0);
        return KILN_OK;
    }
    const int64_t tail = column_tail(*kern, trans_a, n, k);
    Problem p{kern, pack_a_for(kern), pack_b_for(kern), false, trans_a == 1, trans_b == 1, m, n - tail, k,
              alpha, beta, a, lda, b, ldb, nullptr, c, ldc, epilogue};
    if (kiln_status st = run(p)) return st;
    if (tail == 0) return KILN_OK;
    const int64_t n0 = n - tail;
    kiln_epilogue shifted;
    if (epilogue != nullptr) {
        shifted = *epilogue;
        if (shifted.bias != nullptr) shifted.bias += n0;
        if (shifted.residual != nullptr) shifted.residual += n0;
    }
    return narrow_run(kern, trans_b, m, tail, k, alpha, a, lda, trans_b ? b + n0 * ldb : b + n0, ldb, beta, c + n0,
                      ldc, epilogue != nullptr ? &shifted : nullptr);
}

extern "C" KILN_API kiln_status kiln_sgemm_pack_b(int32_t trans_b, int64_t k, int64_t n, const float* b,
                                                  int64_t ldb, kiln_packed_b** out) {
    const GemmKernels* kern = &select_kernel(kTable);
    return make_packed_b("kiln_sgemm_pack_b", trans_b, k, n, b, ldb, kern, pack_b_for(kern), false, KILN_DTYPE_F32,
                         out);
}

extern "C" KILN_API kiln_status kiln_packed_b_destroy(kiln_packed_b* packed) {
    if (packed == nullptr) return KILN_OK;
    const kiln_status st = kiln_free(packed->data);
    delete packed;
    return st;
}

extern "C" KILN_API kiln_status kiln_packed_b_info(const kiln_packed_b* packed, int64_t* k, int64_t* n,
                                                   int64_t* bytes) {
    if (packed == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_packed_b_info: packed is NULL");
    if (k) *k = packed->k;
    if (n) *n = packed->n;
    if (bytes) *bytes = packed->bytes;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_sgemm_packed(int32_t trans_a, int64_t m, float alpha, const float* a,
                                                  int64_t lda, const kiln_packed_b* b, float beta, float* c,
                                                  int64_t ldc, const kiln_epilogue* epilogue) {
    if (kiln_status st = check_packed_gemm("kiln_sgemm_packed", trans_a, m, a, lda, b, c, ldc, epilogue,
                                           KILN_DTYPE_F32, "kiln_gemm_bf16_packed"))
        return st;
    Problem p{b->kern, pack_a_for(b->kern), pack_b_for(b->kern), false, trans_a == 1, false, m, b->n, b->k,
              alpha, beta, a, lda, nullptr, 0, b->data, c, ldc, epilogue};
    return run(p);
}

// ---- bf16 inputs, f32 accumulation and output ----------------------------------------------------
//
// With AVX512_BF16 the operands are packed as bf16 pairs along k (one 32-bit unit holds steps 2u and
// 2u+1) and the micro-kernel issues vdpbf16ps. Elsewhere the packing converts bf16 to f32 and the f32
// kernels run: exact products, f32 accumulation either way.

namespace kiln {
namespace {

inline uint32_t bf16_pair(uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); }

// op(X)[r][k] of a bf16 matrix: trans ? x[k*ld + r] : x[r*ld + k]
inline uint16_t bf16_at(const uint16_t* x, bool trans, int64_t ld, int64_t r, int64_t k) {
    return trans ? x[k * ld + r] : x[r * ld + k];
}

// A: MR-row panels of (kc+1)/2 pair units: unit [p][u][i] = (A[i][2u], A[i][2u+1]); one-row panels contiguous.
// Packs the panels starting at rows [ip_begin, ip_end) of the block, units [u_begin, ku) of each.
void pack_a_bf16_units(bool t, const uint16_t* a, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc, int mr,
                       uint32_t* d32, int64_t ip_begin, int64_t ip_end, int64_t u_begin) {
    const int64_t ku = (kc + 1) / 2;
    for (int64_t ip = ip_begin; ip < ip_end; ip += mr) {
        const int rows = int(m - ip < mr ? m - ip : mr);
        uint32_t* d = d32 + ip * ku;
        const int stride = packed_a_stride(rows, mr);
        for (int r = 0; r < stride; ++r)
            for (int64_t u = u_begin; u < ku; ++u) {
                if (r >= rows) {
                    d[u * stride + r] = 0;
                    continue;
                }
                const int64_t i = i0 + ip + r, k = p0 + 2 * u;
                const uint16_t lo = bf16_at(a, t, ld, i, k);
                const uint16_t hi = 2 * u + 1 < kc ? bf16_at(a, t, ld, i, k + 1) : 0;
                d[u * stride + r] = bf16_pair(lo, hi);
            }
    }
}

// Vectorized where it can be (AVX512_BF16 machines: the only ones that pack pairs), else scalar.
void pack_a_bf16_pairs_fast(bool t, const void* src, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc,
                            int mr, float* dst) {
    const auto* a = static_cast<const uint16_t*>(src);
    auto* d32 = reinterpret_cast<uint32_t*>(dst);
    const int64_t whole = t ? 0 : pack_a_bf16_pairs_avx512(a, ld, i0, m, p0, kc, mr, d32);
    const int64_t full = whole > 0 ? m / mr * mr : 0;
    if (full > 0) pack_a_bf16_units(t, a, ld, i0, m, p0, kc, mr, d32, 0, full, whole);
    pack_a_bf16_units(t, a, ld, i0, m, p0, kc, mr, d32, full, m, 0);
}

// B: NR-column panels of (kc+1)/2 pair units: unit [q][u][j] = (B[2u][j], B[2u+1][j]).
void pack_b_bf16_pairs(bool t, const void* src, int64_t ld, int64_t j0, int64_t n, int64_t p0, int64_t kc, int nr,
                       float* dst) {
    const auto* b = static_cast<const uint16_t*>(src);
    const int64_t ku = (kc + 1) / 2;
    auto* d32 = reinterpret_cast<uint32_t*>(dst);
    for (int64_t jp = 0; jp < n; jp += nr) {
        const int cols = int(n - jp < nr ? n - jp : nr);
        uint32_t* d = d32 + jp * ku;
        for (int64_t u = 0; u < ku; ++u) {
            const int64_t k = p0 + 2 * u;
            for (int j = 0; j < nr; ++j) {
                if (j >= cols) {
                    d[u * nr + j] = 0;
                    continue;
                }
                // op(B)[k][j] = trans ? b[j*ld + k] : b[k*ld + j]
                const uint16_t lo = bf16_at(b, !t, ld, j0 + jp + j, k);
                const uint16_t hi = 2 * u + 1 < kc ? bf16_at(b, !t, ld, j0 + jp + j, k + 1) : 0;
                d[u * nr + j] = bf16_pair(lo, hi);
            }
        }
    }
}

void pack_b_bf16_pairs_fast(bool t, const void* src, int64_t ld, int64_t j0, int64_t n, int64_t p0, int64_t kc,
                            int nr, float* dst) {
    if (t || !pack_b_bf16_pairs_avx512(static_cast<const uint16_t*>(src), ld, j0, n, p0, kc, nr,
                                       reinterpret_cast<uint32_t*>(dst)))
        pack_b_bf16_pairs(t, src, ld, j0, n, p0, kc, nr, dst);
}

inline float bf16_f32(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Fallback packers: bf16 converted to f32 in the f32 layouts.
void pack_a_bf16_f32(bool t, const void* src, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t kc, int mr,
                     float* dst) {
    const auto* a = static_cast<const uint16_t*>(src);
    for (int64_t ip = 0; ip < m; ip += mr) {
        const int rows = int(m - ip < mr ? m - ip : mr);
        float* d = dst + ip * kc;
        const int stride = packed_a_stride(rows, mr);
        for (int r = 0; r < stride; ++r)
            for (int64_t k = 0; k < kc; ++k)
                d[k * stride + r] = r < rows ? bf16_f32(bf16_at(a, t, ld, i0 + ip + r, p0 + k)) : 0.0f;
    }
}

void pack_b_bf16_f32(bool t, const void* src, int64_t ld, int64_t j0, int64_t n, int64_t p0, int64_t kc, int nr,
                     float* dst) {
    const auto* b = static_cast<const uint16_t*>(src);
    for (int64_t jp = 0; jp < n; jp += nr) {
        const int cols = int(n - jp < nr ? n - jp : nr);
        float* d = dst + jp * kc;
        for (int64_t k = 0; k < kc; ++k)
            for (int j = 0; j < nr; ++j)
                d[k * nr + j] = j < cols ? bf16_f32(bf16_at(b, !t, ld, j0 + jp + j, p0 + k)) : 0.0f;
    }
}

// The bf16 configuration for the current dispatch level.
struct Bf16Config {
    const GemmKernels* kern;
    PackFn pack_a, pack_b;
    bool pairs;
};

Bf16Config bf16_config() {
    if (current_isa() >= KILN_ISA_AVX512 && (cpu_feature_bits() & KILN_CPU_AVX512BF16) &&
        g_bf16_pairs.load(std::memory_order_relaxed))
        return {&kGemmBf16Avx512, pack_a_bf16_pairs_fast, pack_b_bf16_pairs_fast, true};
    return {&select_kernel(kTable), pack_a_bf16_f32, pack_b_bf16_f32, false};
}

}  // namespace

void set_bf16_pairs_for_testing(bool on) { g_bf16_pairs.store(on, std::memory_order_relaxed); }

}  // namespace kiln

extern "C" KILN_API kiln_status kiln_gemm_bf16(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k,
                                               float alpha, const uint16_t* a, int64_t lda, const uint16_t* b,
                                               int64_t ldb, float beta, float* c, int64_t ldc,
                                               const kiln_epilogue* epilogue) {
    if (kiln_status st = check_gemm("kiln_gemm_bf16", trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, epilogue, 2))
        return st;
    const Bf16Config cfg = bf16_config();
    Problem p{cfg.kern, cfg.pack_a, cfg.pack_b, cfg.pairs, trans_a == 1, trans_b == 1, m, n, k, alpha, beta, a, lda,
              b, ldb, nullptr, c, ldc, epilogue, /*bf16=*/true};
    return run(p);
}

extern "C" KILN_API kiln_status kiln_gemm_bf16_pack_b(int32_t trans_b, int64_t k, int64_t n, const uint16_t* b,
                                                      int64_t ldb, kiln_packed_b** out) {
    const Bf16Config cfg = bf16_config();
    return make_packed_b("kiln_gemm_bf16_pack_b", trans_b, k, n, b, ldb, cfg.kern, cfg.pack_b, cfg.pairs,
                         KILN_DTYPE_BF16, out);
}

extern "C" KILN_API kiln_status kiln_gemm_bf16_packed(int32_t trans_a, int64_t m, float alpha, const uint16_t* a,
                                                      int64_t lda, const kiln_packed_b* b, float beta, float* c,
                                                      int64_t ldc, const kiln_epilogue* epilogue) {
    if (kiln_status st = check_packed_gemm("kiln_gemm_bf16_packed", trans_a, m, a, lda, b, c, ldc, epilogue,
                                           KILN_DTYPE_BF16, "kiln_sgemm_packed"))
        return st;
    PackFn pa = b->pairs ? pack_a_bf16_pairs_fast : pack_a_bf16_f32;
    Problem p{b->kern, pa, nullptr, b->pairs, trans_a == 1, false, m, b->n, b->k, alpha, beta, a, lda, nullptr, 0,
              b->data, c, ldc, epilogue, /*bf16=*/true};
    return run(p);
}

