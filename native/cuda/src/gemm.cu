// GEMMs: fp32 on the CUDA cores (shared-memory tiles, 4x4 outputs per thread) and bf16 on the tensor
// cores, both with Kiln's epilogue in the store: C = act(alpha op(A) op(B) + beta C + bias) + residual.
// bf16 on sm_90 (Hopper): TMA + wgmma (gemm_sm90.cu); elsewhere, or when TMA's alignment rules are
// not met: WMMA 16x16x16 fragments (sm_80+).
#include <cuda_bf16.h>
#include <mma.h>

#include <cstdlib>
#include <cstring>

#include "common.cuh"
#include "gemm_common.cuh"

using namespace kiln_cuda;

namespace {

constexpr int BM = 64, BN = 64, BK = 16;

__global__ void __launch_bounds__(256) sgemm_kernel(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                                                    const float* __restrict__ a, int64_t lda,
                                                    const float* __restrict__ b, int64_t ldb, float beta,
                                                    float* __restrict__ c, int64_t ldc, Ep ep) {
    __shared__ float As[BK][BM + 4];
    __shared__ float Bs[BK][BN + 4];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int64_t row0 = int64_t(blockIdx.y) * BM, col0 = int64_t(blockIdx.x) * BN;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < k; k0 += BK) {
        for (int e = threadIdx.x; e < BM * BK; e += 256) {
            const int ii = e / BK, kk = e % BK;  // A tile element (row ii, step kk)
            const int64_t gi = row0 + ii, gk = k0 + kk;
            As[kk][ii] = (gi < m && gk < k) ? (ta ? a[gk * lda + gi] : a[gi * lda + gk]) : 0.f;
            const int kb = e / BN, jj = e % BN;  // B tile element (step kb, column jj)
            const int64_t gkb = k0 + kb, gj = col0 + jj;
            Bs[kb][jj] = (gkb < k && gj < n) ? (tb ? b[gj * ldb + gkb] : b[gkb * ldb + gj]) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float av[4], bv[4];
#pragma unroll
            for (int r = 0; r < 4; ++r) av[r] = As[kk][ty * 4 + r];
#pragma unroll
            for (int q = 0; q < 4; ++q) bv[q] = Bs[kk][tx * 4 + q];
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
                for (int q = 0; q < 4; ++q) acc[r][q] = fmaf(av[r], bv[q], acc[r][q]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int64_t i = row0 + ty * 4 + r;
        if (i >= m) continue;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const int64_t j = col0 + tx * 4 + q;
            if (j >= n) continue;
            float v = alpha * acc[r][q];
            if (beta != 0.f) v += beta * c[i * ldc + j];
            c[i * ldc + j] = epilogue(ep, v, i, j);
        }
    }
}

// bf16: a block computes a 64x64 tile with 4 warps (2x2), each warp 32x32 as 2x2 WMMA fragments.
constexpr int TM = 64, TN = 64, TK = 32;

__global__ void __launch_bounds__(128) gemm_bf16_kernel(int tb, int64_t m, int64_t n, int64_t k, float alpha,
                                                        const __nv_bfloat16* __restrict__ a, int64_t lda,
                                                        const __nv_bfloat16* __restrict__ b, int64_t ldb, float beta,
                                                        float* __restrict__ c, int64_t ldc, Ep ep) {
    using namespace nvcuda;
    __shared__ __align__(32) __nv_bfloat16 As[TM][TK + 8];
    __shared__ __align__(32) __nv_bfloat16 Bs[TK][TN + 8];
    __shared__ __align__(32) float Cs[TM][TN + 4];
    const int warp = threadIdx.x / 32;
    const int wm = warp / 2, wn = warp % 2;
    const int64_t row0 = int64_t(blockIdx.y) * TM, col0 = int64_t(blockIdx.x) * TN;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int x = 0; x < 2; ++x)
#pragma unroll
        for (int y = 0; y < 2; ++y) wmma::fill_fragment(acc[x][y], 0.f);
    const __nv_bfloat16 zero = __float2bfloat16(0.f);
    for (int64_t k0 = 0; k0 < k; k0 += TK) {
        for (int e = threadIdx.x; e < TM * TK; e += 128) {
            const int ii = e / TK, kk = e % TK;
            const int64_t gi = row0 + ii, gk = k0 + kk;
            As[ii][kk] = (gi < m && gk < k) ? a[gi * lda + gk] : zero;
        }
        for (int e = threadIdx.x; e < TK * TN; e += 128) {
            const int kk = e / TN, jj = e % TN;
            const int64_t gk = k0 + kk, gj = col0 + jj;
            Bs[kk][jj] = (gk < k && gj < n) ? (tb ? b[gj * ldb + gk] : b[gk * ldb + gj]) : zero;
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < TK; ks += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb[2];
#pragma unroll
            for (int x = 0; x < 2; ++x) wmma::load_matrix_sync(fa[x], &As[wm * 32 + x * 16][ks], TK + 8);
#pragma unroll
            for (int y = 0; y < 2; ++y) wmma::load_matrix_sync(fb[y], &Bs[ks][wn * 32 + y * 16], TN + 8);
#pragma unroll
            for (int x = 0; x < 2; ++x)
#pragma unroll
                for (int y = 0; y < 2; ++y) wmma::mma_sync(acc[x][y], fa[x], fb[y], acc[x][y]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int x = 0; x < 2; ++x)
#pragma unroll
        for (int y = 0; y < 2; ++y)
            wmma::store_matrix_sync(&Cs[wm * 32 + x * 16][wn * 32 + y * 16], acc[x][y], TN + 4, wmma::mem_row_major);
    __syncthreads();
    for (int e = threadIdx.x; e < TM * TN; e += 128) {
        const int ii = e / TN, jj = e % TN;
        const int64_t i = row0 + ii, j = col0 + jj;
        if (i >= m || j >= n) continue;
        float v = alpha * Cs[ii][jj];
        if (beta != 0.f) v += beta * c[i * ldc + j];
        c[i * ldc + j] = epilogue(ep, v, i, j);
    }
}

// bf16 transpose (rows x cols, ld -> cols x rows, ldt) through 32 x 32 shared-memory tiles.
__global__ void transpose_bf16_kernel(int64_t rows, int64_t cols, const uint16_t* __restrict__ in, int64_t ld,
                                      uint16_t* __restrict__ out, int64_t ldt) {
    __shared__ uint16_t tile[32][33];
    const int64_t r0 = int64_t(blockIdx.y) * 32, c0 = int64_t(blockIdx.x) * 32;
    for (int y = threadIdx.y; y < 32; y += 8) {
        const int64_t r = r0 + y, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[y][threadIdx.x] = in[r * ld + c];
    }
    __syncthreads();
    for (int y = threadIdx.y; y < 32; y += 8) {
        const int64_t c = c0 + y, r = r0 + threadIdx.x;
        if (r < rows && c < cols) out[c * ldt + r] = tile[threadIdx.x][y];
    }
}

// KILN_CUDA_GEMM=wmma|sm90 forces a bf16 kernel (tests and benchmarks); unset or auto: sm90 on
// Hopper when the operands allow it.
int forced_bf16_kernel() {
    const char* e = std::getenv("KILN_CUDA_GEMM");
    if (e == nullptr || std::strcmp(e, "auto") == 0 || *e == 0) return 0;
    if (std::strcmp(e, "wmma") == 0) return 1;
    if (std::strcmp(e, "sm90") == 0) return 2;
    return -1;
}

kiln_status check_gemm(const char* fn, int64_t m, int64_t n, int64_t k, const void* a, const void* b, const void* c,
                       int64_t lda, int64_t ldb, int64_t ldc, int64_t min_lda, int64_t min_ldb, const kiln_epilogue* ep,
                       Ep* out) {
    if (m < 0 || n < 0 || k < 0 || m > int64_t(65535) * 64 || n > (int64_t(1) << 31) * 32)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: m, n, k are %lld, %lld, %lld", fn, (long long)m, (long long)n,
                    (long long)k);
    if ((m > 0 && n > 0) && (c == nullptr || (k > 0 && (a == nullptr || b == nullptr))))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: NULL matrix", fn);
    if (lda < min_lda || ldb < min_ldb || ldc < n)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: leading dimensions %lld, %lld, %lld are too small", fn,
                    (long long)lda, (long long)ldb, (long long)ldc);
    *out = Ep{nullptr, KILN_UNARY_IDENTITY, 0.f, nullptr, 0};
    if (ep != nullptr) {
        if (ep->activation < KILN_UNARY_IDENTITY || ep->activation > KILN_UNARY_LAST)
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: epilogue activation is %d", fn, ep->activation);
        if (ep->residual != nullptr && ep->ld_residual < n)
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: epilogue ld_residual is too small", fn);
        *out = Ep{ep->bias, ep->activation, ep->activation_alpha, ep->residual, ep->ld_residual};
    }
    return KILN_OK;
}

}  // namespace

extern "C" KILN_API kiln_status kiln_cuda_sgemm(int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k,
                                               float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                                               float beta, float* c, int64_t ldc, const kiln_epilogue* epilogue) {
    static const char* fn = "kiln_cuda_sgemm";
    Ep ep;
    if (kiln_status st = check_gemm(fn, m, n, k, a, b, c, lda, ldb, ldc, trans_a ? m : k, trans_b ? k : n, epilogue, &ep))
        return st;
    if (m == 0 || n == 0) return KILN_OK;
    const dim3 grid(unsigned((n + BN - 1) / BN), unsigned((m + BM - 1) / BM));
    sgemm_kernel<<<grid, 256, 0, stream()>>>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep);
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_gemm_bf16(int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                                   const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
                                                   float beta, float* c, int64_t ldc, const kiln_epilogue* epilogue) {
    static const char* fn = "kiln_cuda_gemm_bf16";
    Ep ep;
    if (kiln_status st = check_gemm(fn, m, n, k, a, b, c, lda, ldb, ldc, k, trans_b ? k : n, epilogue, &ep)) return st;
    if (m == 0 || n == 0) return KILN_OK;
    int dev = 0, major = 0;
    KILN_CUDA_CHECK(cudaGetDevice(&dev));
    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    if (major < 8) return fail(KILN_ERR_UNSUPPORTED, "%s: bf16 tensor cores need compute capability 8.0+", fn);
    const int forced = forced_bf16_kernel();
    if (forced < 0) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: KILN_CUDA_GEMM must be auto, wmma or sm90", fn);
    // The Hopper kernel wants B as n x k with 16-byte aligned rows: a K x N B is transposed into a
    // pooled scratch buffer first (one pass over B; weights kept as n x k skip it).
    const int64_t ldt = (k + 7) / 8 * 8;
    bool sm90 = major == 9 && forced != 1 && k > 0 &&
                gemm_bf16_sm90_fits(m, n, k, a, lda, trans_b ? b : a, trans_b ? ldb : ldt);
    if (forced == 2 && !sm90)
        return fail(KILN_ERR_UNSUPPORTED, "%s: KILN_CUDA_GEMM=sm90 needs an sm_90 device, a library built with "
                    "sm_90a code, 16-byte aligned operands and leading dimensions that are multiples of 8", fn);
    // Tiny products (under 2^21 multiply-adds) stay on WMMA's 64 x 64 tiles; the limit is a guess, not tuned.
    if (sm90 && forced != 2 && double(m) * double(n) * double(k) < double(1 << 21)) sm90 = false;
    if (sm90) {
        const uint16_t* bt = b;
        void* scratch = nullptr;
        if (!trans_b) {
            if (kiln_status st = kiln_cuda_alloc(n * ldt * 2, &scratch)) return st;
            const dim3 grid(unsigned((n + 31) / 32), unsigned((k + 31) / 32));
            transpose_bf16_kernel<<<grid, dim3(32, 8), 0, stream()>>>(k, n, b, ldb, static_cast<uint16_t*>(scratch),
                                                                      ldt);
            bt = static_cast<const uint16_t*>(scratch);
        }
        const int64_t ldbt = trans_b ? ldb : ldt;
        kiln_status st = gemm_bf16_sm90(fn, m, n, k, alpha, reinterpret_cast<const __nv_bfloat16*>(a), lda,
                                        reinterpret_cast<const __nv_bfloat16*>(bt), ldbt, beta, c, ldc, ep);
        if (scratch != nullptr) kiln_cuda_free(scratch);  // reusable once this stream's work is done
        return st;
    }
    const dim3 grid(unsigned((n + TN - 1) / TN), unsigned((m + TM - 1) / TM));
    gemm_bf16_kernel<<<grid, 128, 0, stream()>>>(trans_b ? 1 : 0, m, n, k, alpha,
                                                 reinterpret_cast<const __nv_bfloat16*>(a), lda,
                                                 reinterpret_cast<const __nv_bfloat16*>(b), ldb, beta, c, ldc, ep);
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}
