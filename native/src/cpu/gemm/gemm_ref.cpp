// Portable fp32 GEMM micro-kernel (4 x 8 tile, plain C++), for CPUs without AVX2 and as the twin the
// optimized kernels are tested against. Also the packing routines every ISA shares.
#include <cstring>

#include "gemm_kernels.hpp"

namespace kiln {
namespace {

constexpr int MR = 4;
constexpr int NR = 8;

// Packed A steps are packed_a_stride(M, MR) floats apart (gemm_kernels.hpp).
template <int M>
void ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int nr, float alpha,
             float beta, bool load_c, const TileEpilogue*) {
    float acc[M][NR] = {};
    for (int64_t k = 0; k < kc; ++k) {
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
        a += packed_a_stride(M, MR);
        b += NR;
    }
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < nr; ++j) {
            float v = alpha * acc[i][j];
            if (load_c) v += beta * c[i * ldc + j];
            c[i * ldc + j] = v;
        }
}

}  // namespace

const GemmKernels kGemmRef = {
    KILN_ISA_PORTABLE, "gemm_f32_ref_4x8", MR, NR, /*kc=*/256, /*nc=*/512,
    {nullptr, ukernel<1>, ukernel<2>, ukernel<3>, ukernel<4>, nullptr, nullptr, nullptr, nullptr,
     nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
    {}, /*fused_store=*/false, /*direct_max_rows=*/0, /*direct_block_bytes=*/0, {}, {}, /*stream_max_rows=*/0};

namespace {

// rows x kc of a row-major source (row r at src + r * ld) written k-major into a panel `width`
// floats a step: dst[k * width + r]. In blocks of 8 k steps: each source row contributes 8
// consecutive floats (one cache line touched per row). Packs op(A) not transposed and op(B)
// transposed alike.
void rows_to_k_major(const float* src, int64_t ld, int rows, int64_t kc, int width, float* dst) {
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8)
        for (int r = 0; r < rows; ++r) {
            const float* s = src + r * ld + k;
            float* o = dst + k * width + r;
            for (int u = 0; u < 8; ++u) o[u * width] = s[u];
        }
    for (; k < kc; ++k)
        for (int r = 0; r < rows; ++r) dst[k * width + r] = src[r * ld + k];
}

}  // namespace

void pack_a(bool trans, const float* a, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t kc,
            int mr, float* dst) {
    for (int64_t ip = 0; ip < m; ip += mr) {
        const int rows = int(m - ip < mr ? m - ip : mr);
        float* d = dst + ip * kc;  // panel ip/mr starts at (ip/mr) * kc * mr
        const int stride = packed_a_stride(rows, mr);
        if (!trans) {
            rows_to_k_major(a + (i0 + ip) * lda + p0, lda, rows, kc, stride, d);
        } else {
            // Rows of op(A) are contiguous in A: a plain loop (a memcpy call per 14 floats costs
            // more than the copy).
            for (int64_t k = 0; k < kc; ++k) {
                const float* s = a + (p0 + k) * lda + i0 + ip;
                float* o = d + k * stride;
                for (int r = 0; r < rows; ++r) o[r] = s[r];
            }
        }
        if (rows < stride)
            for (int64_t k = 0; k < kc; ++k)
                for (int r = rows; r < stride; ++r) d[k * stride + r] = 0.0f;
    }
}

void pack_b(bool trans, const float* b, int64_t ldb, int64_t j0, int64_t n, int64_t p0, int64_t kc,
            int nr, float* dst) {
    if (!trans) {
        // Row by row across all panels: each source row is read front to back (the hardware
        // prefetcher follows it), where panel by panel would jump a row stride per step and miss
        // every time once the stride crosses pages. Profiled on 1024^3, 1 thread (perf, cpu-clock):
        // packing B went from 3.1% to 2.4-2.7% of the time.
        const int64_t full = n / nr * nr;
        for (int64_t k = 0; k < kc; ++k) {
            const float* src = b + (p0 + k) * ldb + j0;
            float* o = dst + k * nr;
            int64_t jp = 0;
            if (nr == 32)  // the AVX-512 panel: a fixed-size copy the compiler unrolls
                for (; jp < full; jp += 32) {
                    float* op = o + jp * kc;
                    for (int j = 0; j < 32; ++j) op[j] = src[jp + j];
                }
            for (; jp < n; jp += nr) {
                const int cols = int(n - jp < nr ? n - jp : nr);
                float* op = o + jp * kc;
                for (int j = 0; j < cols; ++j) op[j] = src[jp + j];
                for (int j = cols; j < nr; ++j) op[j] = 0.0f;
            }
        }
        return;
    }
    for (int64_t jp = 0; jp < n; jp += nr) {
        const int cols = int(n - jp < nr ? n - jp : nr);
        float* d = dst + jp * kc;  // panel jp/nr starts at (jp/nr) * kc * nr
        rows_to_k_major(b + (j0 + jp) * ldb + p0, ldb, cols, kc, nr, d);
        for (int j = cols; j < nr; ++j)
            for (int64_t kk = 0; kk < kc; ++kk) d[kk * nr + j] = 0.0f;
    }
}

}  // namespace kiln
