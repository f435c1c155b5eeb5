// Elementwise, row (softmax, layer norm, cross-entropy), reduction and optimizer kernels.
//
// Row kernels: one block of 256 threads per row, block reductions through shared memory in a fixed
// order (deterministic). Elementwise and optimizer kernels: grid-stride loops over float4 when every
// pointer is 16-byte aligned (several float4s in flight per thread), scalar otherwise.
#include <cmath>

#include "common.cuh"
#include "device_ops.cuh"

using namespace kiln_cuda;

namespace {

constexpr int kThreads = 256;

// Elementwise kernels move bytes and nothing else, so the loop is what matters: float4 loads and stores
// (when every pointer is 16-byte aligned) and kUnroll independent float4s per thread per iteration, so
// enough loads are in flight to keep HBM busy. The op is a template parameter: no switch per element.
constexpr int kUnroll = 4;

template <class F>
__global__ void __launch_bounds__(256) map2_vec_kernel(int64_t n, const float* __restrict__ a,
                                                        const float* __restrict__ b, float* __restrict__ out, F f) {
    const int64_t n4 = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* o4 = reinterpret_cast<float4*>(out);
    const int64_t stride = int64_t(gridDim.x) * blockDim.x * kUnroll;
    for (int64_t base = int64_t(blockIdx.x) * blockDim.x * kUnroll + threadIdx.x; base < n4; base += stride) {
        float4 x[kUnroll], y[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int64_t i = base + int64_t(u) * blockDim.x;
            if (i < n4) {
                x[u] = a4[i];
                y[u] = b4 ? b4[i] : x[u];
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int64_t i = base + int64_t(u) * blockDim.x;
            if (i < n4) o4[i] = make_float4(f(x[u].x, y[u].x), f(x[u].y, y[u].y), f(x[u].z, y[u].z), f(x[u].w, y[u].w));
        }
    }
    // The last n % 4 elements.
    if (blockIdx.x == 0 && threadIdx.x < n - n4 * 4) {
        const int64_t i = n4 * 4 + threadIdx.x;
        out[i] = f(a[i], b ? b[i] : a[i]);
    }
}

template <class F>
__global__ void map2_scalar_kernel(int64_t n, const float* __restrict__ a, const float* __restrict__ b,
                                   float* __restrict__ out, F f) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = f(a[i], b ? b[i] : a[i]);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// out[i] = f(a[i], b[i]) (b may be NULL: f(a[i], a[i])) on this thread's stream.
template <class F>
void launch_map2(int64_t n, const float* a, const float* b, float* out, F f) {
    if (aligned16(a) && aligned16(b) && aligned16(out)) {
        const int64_t per_block = int64_t(kThreads) * kUnroll * 4;
        map2_vec_kernel<<<blocks_for((n + per_block - 1) / per_block, 1), kThreads, 0, stream()>>>(n, a, b, out, f);
    } else {
        map2_scalar_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(n, a, b, out, f);
    }
}

template <int Op>
struct BinaryF {
    __device__ float operator()(float a, float b) const {
        switch (Op) {
            case KILN_BINARY_ADD: return a + b;
            case KILN_BINARY_SUB: return a - b;
            case KILN_BINARY_MUL: return a * b;
            case KILN_BINARY_DIV: return a / b;
            case KILN_BINARY_MAX: return (a != a || b != b) ? a + b : fmaxf(a, b);
            default: return (a != a || b != b) ? a + b : fminf(a, b);
        }
    }
};

template <int Op>
struct UnaryF {
    float alpha;
    __device__ float operator()(float a, float) const { return unary_op(Op, alpha, a); }
};

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

// Optimizers: the same float4 scheme as the elementwise kernels (w, g, m, v read, w, m, v written).
struct AdamF {
    float lr, b1, b2, eps, wd, step_size, inv_sqrt_bc2;
    int decoupled;
    __device__ void operator()(float& w, float g, float& m, float& v) const {
        if (decoupled) {
            w -= lr * wd * w;
        } else {
            g += wd * w;
        }
        m = b1 * m + (1.f - b1) * g;
        v = b2 * v + (1.f - b2) * g * g;
        w = w - step_size * m / (sqrtf(v) * inv_sqrt_bc2 + eps);
    }
};

struct SgdF {
    float lr, momentum, wd;
    int nesterov;
    __device__ void operator()(float& w, float g, float& buf, float&) const {
        g += wd * w;
        if (momentum != 0.f) {
            buf = momentum * buf + g;
            g = nesterov ? g + momentum * buf : buf;
        }
        w -= lr * g;
    }
};

// f(w[i], g[i], s1[i], s2[i]) for every i; s1, s2 may be NULL (then a dummy is passed). Vector path
// when all pointers are 16-byte aligned.
template <class F>
__global__ void __launch_bounds__(256) update_vec_kernel(int64_t n, float* __restrict__ w, const float* __restrict__ g,
                                                         float* __restrict__ s1, float* __restrict__ s2, F f) {
    constexpr int U = 2;
    const int64_t n4 = n / 4;
    const int64_t stride = int64_t(gridDim.x) * blockDim.x * U;
    for (int64_t base = int64_t(blockIdx.x) * blockDim.x * U + threadIdx.x; base < n4; base += stride) {
        float4 wv[U], gv[U], av[U], bv[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int64_t i = base + int64_t(u) * blockDim.x;
            if (i < n4) {
                wv[u] = reinterpret_cast<const float4*>(w)[i];
                gv[u] = reinterpret_cast<const float4*>(g)[i];
                av[u] = s1 ? reinterpret_cast<const float4*>(s1)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
                bv[u] = s2 ? reinterpret_cast<const float4*>(s2)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int64_t i = base + int64_t(u) * blockDim.x;
            if (i >= n4) continue;
            f(wv[u].x, gv[u].x, av[u].x, bv[u].x);
            f(wv[u].y, gv[u].y, av[u].y, bv[u].y);
            f(wv[u].z, gv[u].z, av[u].z, bv[u].z);
            f(wv[u].w, gv[u].w, av[u].w, bv[u].w);
            reinterpret_cast<float4*>(w)[i] = wv[u];
            if (s1) reinterpret_cast<float4*>(s1)[i] = av[u];
            if (s2) reinterpret_cast<float4*>(s2)[i] = bv[u];
        }
    }
    if (blockIdx.x == 0 && threadIdx.x < n - n4 * 4) {
        const int64_t i = n4 * 4 + threadIdx.x;
        float a = s1 ? s1[i] : 0.f, b = s2 ? s2[i] : 0.f;
        f(w[i], g[i], a, b);
        if (s1) s1[i] = a;
        if (s2) s2[i] = b;
    }
}

template <class F>
__global__ void update_scalar_kernel(int64_t n, float* __restrict__ w, const float* __restrict__ g,
                                     float* __restrict__ s1, float* __restrict__ s2, F f) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        float a = s1 ? s1[i] : 0.f, b = s2 ? s2[i] : 0.f;
        f(w[i], g[i], a, b);
        if (s1) s1[i] = a;
        if (s2) s2[i] = b;
    }
}

template <class F>
void launch_update(int64_t n, float* w, const float* g, float* s1, float* s2, F f) {
    if (aligned16(w) && aligned16(g) && aligned16(s1) && aligned16(s2)) {
        const int64_t per_block = int64_t(kThreads) * 2 * 4;
        const unsigned blocks = blocks_for((n + per_block - 1) / per_block, 1);
        update_vec_kernel<<<blocks, kThreads, 0, stream()>>>(n, w, g, s1, s2, f);
    } else {
        update_scalar_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(n, w, g, s1, s2, f);
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
    switch (op) {
        case KILN_BINARY_ADD: launch_map2(n, a, b, out, BinaryF<KILN_BINARY_ADD>{}); break;
        case KILN_BINARY_SUB: launch_map2(n, a, b, out, BinaryF<KILN_BINARY_SUB>{}); break;
        case KILN_BINARY_MUL: launch_map2(n, a, b, out, BinaryF<KILN_BINARY_MUL>{}); break;
        case KILN_BINARY_DIV: launch_map2(n, a, b, out, BinaryF<KILN_BINARY_DIV>{}); break;
        case KILN_BINARY_MAX: launch_map2(n, a, b, out, BinaryF<KILN_BINARY_MAX>{}); break;
        default: launch_map2(n, a, b, out, BinaryF<KILN_BINARY_MIN>{}); break;
    }
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_unary_f32(int32_t op, float alpha, int64_t n, const float* a, float* out) {
    static const char* fn = "kiln_cuda_unary_f32";
    if (op < KILN_UNARY_IDENTITY || op > KILN_UNARY_LAST) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: op is %d", fn, op);
    if (kiln_status st = check_n(fn, n, a, out)) return st;
    if (n == 0) return KILN_OK;
    switch (op) {
        case KILN_UNARY_RELU: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_RELU>{alpha}); break;
        case KILN_UNARY_LEAKY_RELU: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_LEAKY_RELU>{alpha}); break;
        case KILN_UNARY_GELU: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_GELU>{alpha}); break;
        case KILN_UNARY_SIGMOID: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_SIGMOID>{alpha}); break;
        case KILN_UNARY_TANH: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_TANH>{alpha}); break;
        case KILN_UNARY_EXP: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_EXP>{alpha}); break;
        case KILN_UNARY_LOG: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_LOG>{alpha}); break;
        case KILN_UNARY_SQRT: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_SQRT>{alpha}); break;
        case KILN_UNARY_NEG: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_NEG>{alpha}); break;
        case KILN_UNARY_ABS: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_ABS>{alpha}); break;
        case KILN_UNARY_SQUARE: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_SQUARE>{alpha}); break;
        case KILN_UNARY_GELU_TANH: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_GELU_TANH>{alpha}); break;
        case KILN_UNARY_SILU: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_SILU>{alpha}); break;
        case KILN_UNARY_ELU: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_ELU>{alpha}); break;
        case KILN_UNARY_SOFTPLUS: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_SOFTPLUS>{alpha}); break;
        case KILN_UNARY_SELU: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_SELU>{alpha}); break;
        case KILN_UNARY_MISH: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_MISH>{alpha}); break;
        case KILN_UNARY_BOUNDED_RELU: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_BOUNDED_RELU>{alpha}); break;
        case KILN_UNARY_HARDTANH: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_HARDTANH>{alpha}); break;
        case KILN_UNARY_HARD_SIGMOID: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_HARD_SIGMOID>{alpha}); break;
        case KILN_UNARY_HARD_SWISH: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_HARD_SWISH>{alpha}); break;
        default: launch_map2(n, a, nullptr, out, UnaryF<KILN_UNARY_IDENTITY>{alpha}); break;
    }
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
    launch_update(n, w, g, m, v, AdamF{lr, beta1, beta2, eps, weight_decay, step_size, inv_sqrt_bc2, decoupled});
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_sgd_f32(int64_t n, float* w, const float* g, float* buf, float lr,
                                                 float momentum, int32_t nesterov, float weight_decay) {
    static const char* fn = "kiln_cuda_sgd_f32";
    if (kiln_status st = check_n(fn, n, w, g)) return st;
    if (n > 0 && momentum != 0.f && buf == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: buf is NULL", fn);
    if (n == 0) return KILN_OK;
    launch_update(n, w, g, momentum != 0.f ? buf : nullptr, nullptr, SgdF{lr, momentum, weight_decay, nesterov});
    KILN_CUDA_LAUNCHED(fn);
    return KILN_OK;
}
