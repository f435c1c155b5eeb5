// Elementwise, row (softmax, layer norm, cross-entropy), reduction and optimizer kernels.
//
// Row kernels: one block of 256 threads per row, block reductions through shared memory in a fixed
// order (deterministic). Elementwise and optimizer kernels: grid-stride loops over float4 where the
// count allows (16-byte loads), scalar tails.
#include <cmath>

#include "common.cuh"
#include "device_ops.cuh"

using namespace kiln_cuda;

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float binary_op(int op, float a, float b) {
    switch (op) {
        case KILN_BINARY_ADD: return a + b;
        case KILN_BINARY_SUB: return a - b;
        case KILN_BINARY_MUL: return a * b;
        case KILN_BINARY_DIV: return a / b;
        case KILN_BINARY_MAX: return (a != a || b != b) ? a + b : fmaxf(a, b);
        default: return (a != a || b != b) ? a + b : fminf(a, b);
    }
}

__global__ void binary_kernel(int op, int64_t n, const float* __restrict__ a, const float* __restrict__ b,
                              float* __restrict__ out) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = binary_op(op, a[i], b[i]);
}

__global__ void unary_kernel(int op, float alpha, int64_t n, const float* __restrict__ a, float* __restrict__ out) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = unary_op(op, alpha, a[i]);
}

// Block-wide reductions (kThreads threads): a fixed tree, so results do not depend on timing.
__device__ float block_sum(float v, float* shared) {
    const int t = threadIdx.x;
    shared[t] = v;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (t < s) shared[t] += shared[t + s];
        __syncthreads();
    }
    const float r = shared[0];
    __syncthreads();
    return r;
}

__device__ float block_max(float v, float* shared) {
    const int t = threadIdx.x;
    shared[t] = v;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (t < s) {
            const float o = shared[t + s];
            shared[t] = (o > shared[t] || o != o) ? o : shared[t];
        }
        __syncthreads();
    }
    const float r = shared[0];
    __syncthreads();
    return r;
}

__global__ void softmax_kernel(int log_softmax, int64_t cols, const float* __restrict__ x, float* __restrict__ y) {
    __shared__ float sh[kThreads];
    const float* xr = x + int64_t(blockIdx.x) * cols;
    float* yr = y + int64_t(blockIdx.x) * cols;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) mx = fmaxf(mx, xr[j]);  // NaN/+Inf rows become NaN below
    mx = block_max(mx, sh);
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) s += expf(xr[j] - mx);
    s = block_sum(s, sh);
    const float lse = mx + logf(s);
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) yr[j] = log_softmax ? xr[j] - lse : expf(xr[j] - lse);
}

__global__ void layer_norm_kernel(int64_t cols, const float* __restrict__ x, const float* __restrict__ gamma,
                                  const float* __restrict__ beta, float eps, float* __restrict__ y) {
    __shared__ float sh[kThreads];
    const float* xr = x + int64_t(blockIdx.x) * cols;
    float* yr = y + int64_t(blockIdx.x) * cols;
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) s += xr[j];
    const float mean = block_sum(s, sh) / float(cols);
    float v = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) {
        const float d = xr[j] - mean;
        v += d * d;
    }
    const float rstd = rsqrtf(block_sum(v, sh) / float(cols) + eps);
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) {
        float o = (xr[j] - mean) * rstd;
        if (gamma) o *= gamma[j];
        if (beta) o += beta[j];
        yr[j] = o;
    }
}

__global__ void xent_kernel(int64_t rows, int64_t cols, const float* __restrict__ z, const int32_t* __restrict__ labels,
                            float* __restrict__ loss, float* __restrict__ grad) {
    __shared__ float sh[kThreads];
    const float* zr = z + int64_t(blockIdx.x) * cols;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) mx = fmaxf(mx, zr[j]);
    mx = block_max(mx, sh);
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) s += expf(zr[j] - mx);
    s = block_sum(s, sh);
    const float lse = mx + logf(s);
    const int32_t y = labels[blockIdx.x];
    if (threadIdx.x == 0) loss[blockIdx.x] = (y >= 0 && y < cols) ? lse - zr[y] : NAN;
    if (grad) {
        float* gr = grad + int64_t(blockIdx.x) * cols;
        const float inv = 1.f / float(rows);
        for (int64_t j = threadIdx.x; j < cols; j += kThreads) gr[j] = (expf(zr[j] - lse) - (j == y ? 1.f : 0.f)) * inv;
    }
}

// Deterministic sum: 256 fixed blocks of partial sums, then one block over them.
constexpr int kSumBlocks = 256;

__global__ void sum_partial_kernel(int64_t n, const float* __restrict__ x, float* __restrict__ partial) {
    __shared__ float sh[kThreads];
    float s = 0.f;
    for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += int64_t(kSumBlocks) * kThreads) s += x[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_final_kernel(const float* __restrict__ partial, float* __restrict__ out) {
    __shared__ float sh[kThreads];
    const float s = block_sum(threadIdx.x < kSumBlocks ? partial[threadIdx.x] : 0.f, sh);
    if (threadIdx.x == 0) *out = s;
}

__global__ void adam_kernel(int64_t n, float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, float lr, float b1, float b2, float eps, float wd, int decoupled,
                            float step_size, float inv_sqrt_bc2) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        float wi = w[i];
        float gi = g[i];
        if (decoupled) {
            wi -= lr * wd * wi;
        } else {
            gi += wd * wi;
        }
        const float mi = b1 * m[i] + (1.f - b1) * gi;
        const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

__global__ void sgd_kernel(int64_t n, float* __restrict__ w, const float* __restrict__ g, float* __restrict__ buf,
                           float lr, float momentum, int nesterov, float wd) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        float gi = g[i] + wd * w[i];
        if (momentum != 0.f) {
            const float b = momentum * buf[i] + gi;
            buf[i] = b;
            gi = nesterov ? gi + momentum * b : b;
        }
        w[i] -= lr * gi;
    }
}

kiln_status check_n(const char* fn, int64_t n, const void* a, const void* b) {
    if (n < 0) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: n is %lld: must be >= 0", fn, (long long)n);
    if (n > 0 && (a == nullptr || b == nullptr)) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: NULL pointer", fn);
    return KILN_OK;
}

kiln_status check_rows(const char* fn, int64_t rows, int64_t cols, const void* x, const void* y) {
    if (rows < 0 || cols < 1 || rows > 2147483647)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: rows %lld and cols %lld: rows in 0..2^31-1, cols >= 1", fn,
                    (long long)rows, (long long)cols);
    if (rows > 0 && (x == nullptr || y == nullptr)) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: NULL pointer", fn);
    return KILN_OK;
}

}  // namespace

extern "C" KILN_API kiln_status kiln_cuda_binary_f32(int32_t op, int64_t n, const float* a, const float* b, float* out) {
    static const char* fn = "kiln_cuda_binary_f32";
    if (op < KILN_BINARY_ADD || op > KILN_BINARY_MIN) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: op is %d", fn, op);
    if (kiln_status st = check_n(fn, n, a, out)) return st;
    if (n > 0 && b == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: b is NULL", fn);
    if (n == 0) return KILN_OK;
    binary_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(op, n, a, b, out);
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_unary_f32(int32_t op, float alpha, int64_t n, const float* a, float* out) {
    static const char* fn = "kiln_cuda_unary_f32";
    if (op < KILN_UNARY_IDENTITY || op > KILN_UNARY_GELU_TANH) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: op is %d", fn, op);
    if (kiln_status st = check_n(fn, n, a, out)) return st;
    if (n == 0) return KILN_OK;
    unary_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(op, alpha, n, a, out);
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_softmax_f32(int32_t log_softmax, int64_t rows, int64_t cols, const float* x,
                                                     float* y) {
    static const char* fn = "kiln_cuda_softmax_f32";
    if (kiln_status st = check_rows(fn, rows, cols, x, y)) return st;
    if (rows == 0) return KILN_OK;
    softmax_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(log_softmax, cols, x, y);
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_layer_norm_f32(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                                        const float* beta, float eps, float* y) {
    static const char* fn = "kiln_cuda_layer_norm_f32";
    if (kiln_status st = check_rows(fn, rows, cols, x, y)) return st;
    if (!(eps >= 0.f)) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: eps must be >= 0", fn);
    if (rows == 0) return KILN_OK;
    layer_norm_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(cols, x, gamma, beta, eps, y);
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_softmax_xent_f32(int64_t rows, int64_t cols, const float* z,
                                                          const int32_t* labels, float* loss, float* grad) {
    static const char* fn = "kiln_cuda_softmax_xent_f32";
    if (kiln_status st = check_rows(fn, rows, cols, z, loss)) return st;
    if (rows > 0 && labels == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: labels is NULL", fn);
    if (rows == 0) return KILN_OK;
    xent_kernel<<<unsigned(rows), kThreads, 0, stream()>>>(rows, cols, z, labels, loss, grad);
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_sum_f32(int64_t n, const float* x, float* out) {
    static const char* fn = "kiln_cuda_sum_f32";
    if (kiln_status st = check_n(fn, n, x, out)) return st;
    if (out == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    void* partial = nullptr;
    if (kiln_status st = kiln_cuda_alloc(kSumBlocks * sizeof(float), &partial)) return st;
    sum_partial_kernel<<<kSumBlocks, kThreads, 0, stream()>>>(n, x, static_cast<float*>(partial));
    sum_final_kernel<<<1, kThreads, 0, stream()>>>(static_cast<float*>(partial), out);
    cudaError_t e = cudaGetLastError();
    kiln_cuda_free(partial);
    if (e != cudaSuccess) return fail(KILN_ERR_INTERNAL, "%s: kernel launch failed: %s", fn, cudaGetErrorString(e));
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_adam_f32(int64_t n, float* w, const float* g, float* m, float* v, float lr,
                                                  float beta1, float beta2, float eps, float weight_decay,
                                                  int32_t decoupled, int64_t step) {
    static const char* fn = "kiln_cuda_adam_f32";
    if (kiln_status st = check_n(fn, n, w, g)) return st;
    if (n > 0 && (m == nullptr || v == nullptr)) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: m or v is NULL", fn);
    if (step < 1) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: step is %lld: steps count from 1", fn, (long long)step);
    if (n == 0) return KILN_OK;
    const float step_size = float(double(lr) / (1.0 - std::pow(double(beta1), double(step))));
    const float inv_sqrt_bc2 = float(1.0 / std::sqrt(1.0 - std::pow(double(beta2), double(step))));
    adam_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(n, w, g, m, v, lr, beta1, beta2, eps, weight_decay,
                                                                     decoupled, step_size, inv_sqrt_bc2);
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_sgd_f32(int64_t n, float* w, const float* g, float* buf, float lr,
                                                 float momentum, int32_t nesterov, float weight_decay) {
    static const char* fn = "kiln_cuda_sgd_f32";
    if (kiln_status st = check_n(fn, n, w, g)) return st;
    if (n > 0 && momentum != 0.f && buf == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: buf is NULL", fn);
    if (n == 0) return KILN_OK;
    sgd_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(n, w, g, buf, lr, momentum, nesterov, weight_decay);
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}
