// GPU training: the CPU trainer's Dense and activation layers with softmax cross-entropy and SGD /
// Adam / AdamW, on the device. A step is forward, loss, backward and update over buffers allocated
// at compile time for the maximum batch, with the formulas of the CPU trainer (kiln.h): gradients
// are the mean over the batch, l2 is added to weight gradients, weight_decay is decoupled.
//
// A step waits once for the loss sum (device to host) and updates nothing when it is not finite,
// naming the step, as the CPU trainer does; it then returns before the update kernels finish.
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "common.cuh"
#include "device_ops.cuh"

using namespace kiln_cuda;

namespace {

constexpr int64_t kMaxDim = 2147483647;

// d act(z) / dz, times g.
__device__ __forceinline__ float act_grad(int act, float alpha, float z, float g) {
    switch (act) {
        case KILN_UNARY_RELU: return z > 0.f ? g : 0.f;
        case KILN_UNARY_LEAKY_RELU: return z < 0.f ? alpha * g : g;
        case KILN_UNARY_GELU: {
            const float cdf = 0.5f * (1.f + erff(z * 0.70710678118654752f));
            return g * (cdf + z * 0.39894228040143268f * expf(-0.5f * z * z));
        }
        case KILN_UNARY_GELU_TANH: {
            const float c = 0.7978845608028654f, z2 = z * z;
            const float t = tanhf(c * (z + 0.044715f * z2 * z));
            return g * (0.5f * (1.f + t) + 0.5f * z * (1.f - t * t) * c * (1.f + 3.f * 0.044715f * z2));
        }
        case KILN_UNARY_SIGMOID: {
            const float s = 1.f / (1.f + expf(-z));
            return g * s * (1.f - s);
        }
        case KILN_UNARY_TANH: {
            const float t = tanhf(z);
            return g * (1.f - t * t);
        }
        case KILN_UNARY_SILU: {
            const float s = 1.f / (1.f + expf(-z));
            return g * s * (1.f + z * (1.f - s));
        }
        case KILN_UNARY_ELU: return z > 0.f ? g : g * alpha * expf(z);
        case KILN_UNARY_SOFTPLUS: return g / (1.f + expf(-z));
        case KILN_UNARY_SELU: return g * 1.05070098735548049f * (z > 0.f ? 1.f : 1.67326324235437728f * expf(z));
        case KILN_UNARY_MISH: {
            const float sp = z > 0.f ? z + log1pf(expf(-z)) : log1pf(expf(z));
            const float t = tanhf(sp), s = 1.f / (1.f + expf(-z));
            return g * (t + z * (1.f - t * t) * s);
        }
        case KILN_UNARY_BOUNDED_RELU: return z > 0.f && z < alpha ? g : 0.f;
        case KILN_UNARY_HARDTANH: return z > -alpha && z < alpha ? g : 0.f;
        case KILN_UNARY_HARD_SIGMOID: {
            const float v = fmaf(alpha, z, 0.5f);
            return v > 0.f && v < 1.f ? alpha * g : 0.f;
        }
        case KILN_UNARY_HARD_SWISH: return z < -3.f ? 0.f : (z <= 3.f ? g * (z / 3.f + 0.5f) : g);
        default: return g;
    }
}

__global__ void act_backward_kernel(int act, float alpha, int64_t n, const float* __restrict__ z,
                                    const float* __restrict__ g, float* __restrict__ out) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = act_grad(act, alpha, z[i], g[i]);
}

// out[j] = sum over rows of g[r][j], rows in order (deterministic).
__global__ void column_sum_kernel(int64_t rows, int64_t cols, const float* __restrict__ g, float* __restrict__ out) {
    const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float s = 0.f;
    for (int64_t r = 0; r < rows; ++r) s += g[r * cols + j];
    out[j] = s;
}

struct Layer {
    bool dense = false;
    int64_t in = 0, out = 0;
    int act = KILN_UNARY_IDENTITY;  // activation layers
    float alpha = 0.f;
    std::vector<float> w, b;  // host copies until compile (w: in x out row-major)
    bool has_bias = false;
    float* y = nullptr;  // output, max_batch x out
};

struct Param {
    float* value = nullptr;
    float* grad = nullptr;
    float* m = nullptr;
    float* v = nullptr;
    int64_t n = 0;
    bool weight = false;  // weights take l2 and weight_decay, biases do not
};

kiln_status dev_alloc(int64_t floats, float** out) {
    void* p = nullptr;
    if (kiln_status st = kiln_cuda_alloc(floats * int64_t(sizeof(float)), &p)) return st;
    *out = static_cast<float*>(p);
    return KILN_OK;
}

kiln_status dev_zeros(int64_t floats, float** out) {
    if (kiln_status st = dev_alloc(floats, out)) return st;
    const std::vector<float> zeros(size_t(floats), 0.f);
    return kiln_cuda_copy(*out, zeros.data(), floats * int64_t(sizeof(float)), 0);
}

}  // namespace

struct kiln_cuda_trainer {
    int64_t in = 0, max_batch = 0, width = 0;
    bool compiled = false;
    std::vector<Layer> layers;
    std::vector<Param> params;  // per Dense: weight, then bias
    kiln_optimizer opt{KILN_OPT_SGD, 0, 0.f, 0.9f, 0.999f, 1e-8f, 0.f, 0.f, 0.f};
    float* g[2] = {nullptr, nullptr};  // ping-pong gradients, max_batch x widest
    float* row_loss = nullptr;         // max_batch
    float* loss_sum = nullptr;         // 1
    int64_t steps = 0;

    void release() {
        for (Layer& l : layers) {
            if (l.y) kiln_cuda_free(l.y);
            l.y = nullptr;
        }
        for (Param& p : params)
            for (float* q : {p.value, p.grad, p.m, p.v})
                if (q) kiln_cuda_free(q);
        params.clear();
        for (float* q : {g[0], g[1], row_loss, loss_sum})
            if (q) kiln_cuda_free(q);
        g[0] = g[1] = row_loss = loss_sum = nullptr;
    }
};

namespace {

kiln_status check_open(const char* fn, const kiln_cuda_trainer* t) {
    if (t == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: trainer is NULL", fn);
    if (t->compiled) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the trainer is compiled: no change allowed", fn);
    return KILN_OK;
}

kiln_status check_ready(const char* fn, const kiln_cuda_trainer* t) {
    if (t == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: trainer is NULL", fn);
    if (!t->compiled) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the trainer is not compiled", fn);
    return KILN_OK;
}

}  // namespace

extern "C" KILN_API kiln_status kiln_cuda_trainer_create(int64_t input_features, int64_t max_batch,
                                                        kiln_cuda_trainer** out) {
    static const char* fn = "kiln_cuda_trainer_create";
    if (out == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = nullptr;
    if (input_features < 1 || max_batch < 1 || input_features > kMaxDim || max_batch > kMaxDim)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: input_features %lld and max_batch %lld must be in 1..2^31-1", fn,
                    (long long)input_features, (long long)max_batch);
    auto* t = new (std::nothrow) kiln_cuda_trainer();
    if (t == nullptr) return fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    t->in = t->width = input_features;
    t->max_batch = max_batch;
    *out = t;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_trainer_add_dense(kiln_cuda_trainer* t, int64_t out_features,
                                                           const float* weight, const float* bias) {
    static const char* fn = "kiln_cuda_trainer_add_dense";
    if (kiln_status st = check_open(fn, t)) return st;
    if (out_features < 1 || out_features > kMaxDim)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out_features is %lld: must be in 1..2^31-1", fn,
                    (long long)out_features);
    if (weight == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: weight is NULL", fn);
    Layer l;
    l.dense = true;
    l.in = t->width;
    l.out = out_features;
    try {
        l.w.assign(weight, weight + l.in * l.out);
        if (bias) l.b.assign(bias, bias + l.out);
        l.has_bias = bias != nullptr;
        t->layers.push_back(std::move(l));
    } catch (const std::bad_alloc&) {
        return fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    }
    t->width = out_features;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_trainer_add_activation(kiln_cuda_trainer* t, int32_t activation,
                                                                float alpha) {
    static const char* fn = "kiln_cuda_trainer_add_activation";
    if (kiln_status st = check_open(fn, t)) return st;
    switch (activation) {
        case KILN_UNARY_IDENTITY: case KILN_UNARY_RELU: case KILN_UNARY_LEAKY_RELU: case KILN_UNARY_GELU:
        case KILN_UNARY_GELU_TANH: case KILN_UNARY_SIGMOID: case KILN_UNARY_TANH: case KILN_UNARY_SILU:
        case KILN_UNARY_ELU: case KILN_UNARY_SOFTPLUS: case KILN_UNARY_SELU: case KILN_UNARY_MISH:
        case KILN_UNARY_BOUNDED_RELU: case KILN_UNARY_HARDTANH: case KILN_UNARY_HARD_SIGMOID:
        case KILN_UNARY_HARD_SWISH: break;
        default:
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: activation %d cannot be trained (IDENTITY, RELU, "
                        "LEAKY_RELU, GELU, GELU_TANH, SIGMOID, TANH, SILU, ELU, SOFTPLUS, SELU, MISH, BOUNDED_RELU, "
                        "HARDTANH, HARD_SIGMOID or HARD_SWISH)", fn, activation);
    }
    if (!std::isfinite(alpha)) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: alpha is not finite", fn);
    Layer l;
    l.in = l.out = t->width;
    l.act = activation;
    l.alpha = alpha;
    t->layers.push_back(std::move(l));
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_trainer_set_optimizer(kiln_cuda_trainer* t, const kiln_optimizer* o) {
    static const char* fn = "kiln_cuda_trainer_set_optimizer";
    if (kiln_status st = check_open(fn, t)) return st;
    if (o == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: optimizer is NULL", fn);
    if (o->kind != KILN_OPT_SGD && o->kind != KILN_OPT_ADAM && o->kind != KILN_OPT_ADAMW)
        return fail(KILN_ERR_UNSUPPORTED, "%s: optimizer kind %d: the GPU trainer has SGD, ADAM and ADAMW", fn,
                    o->kind);
    for (float f : {o->momentum, o->beta1, o->beta2, o->eps, o->l2, o->weight_decay, o->clip_norm})
        if (!std::isfinite(f) || f < 0.f)
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: a setting is negative or not finite", fn);
    if (o->clip_norm > 0.f)
        return fail(KILN_ERR_UNSUPPORTED, "%s: gradient clipping is not in the GPU trainer yet", fn);
    if (o->l2 > 0.f && o->weight_decay > 0.f)
        return fail(KILN_ERR_UNSUPPORTED, "%s: l2 and weight_decay together are not in the GPU trainer", fn);
    if (o->kind == KILN_OPT_SGD && o->weight_decay > 0.f)
        return fail(KILN_ERR_UNSUPPORTED, "%s: SGD with decoupled weight_decay is not in the GPU trainer (use l2)", fn);
    if (o->kind != KILN_OPT_SGD && (o->beta1 >= 1.f || o->beta2 >= 1.f))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: beta1 and beta2 must be < 1", fn);
    t->opt = *o;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_trainer_compile(kiln_cuda_trainer* t) {
    static const char* fn = "kiln_cuda_trainer_compile";
    if (kiln_status st = check_open(fn, t)) return st;
    if (t->layers.empty() || !t->layers.front().dense)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the first layer must be a Dense", fn);
    if (t->width < 2) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: cross-entropy needs at least 2 outputs", fn);
    int32_t devices = 0;
    if (kiln_status st = kiln_cuda_device_count(&devices)) return st;
    if (devices == 0) return fail(KILN_ERR_UNSUPPORTED, "%s: no CUDA device: %s", fn, kiln_cuda_last_error());
    int64_t widest = t->in;
    for (const Layer& l : t->layers) widest = l.out > widest ? l.out : widest;
    if (double(t->max_batch) * double(widest) * sizeof(float) > double(int64_t(1) << 50))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: max_batch x widest layer is too large", fn);
    kiln_status st = KILN_OK;
    const bool moments = t->opt.kind != KILN_OPT_SGD || t->opt.momentum != 0.f;
    const bool second = t->opt.kind != KILN_OPT_SGD;
    for (Layer& l : t->layers) {
        if (st == KILN_OK) st = dev_alloc(t->max_batch * l.out, &l.y);
        if (!l.dense) continue;
        for (int k = 0; k < (l.has_bias ? 2 : 1) && st == KILN_OK; ++k) {
            const std::vector<float>& h = k == 0 ? l.w : l.b;
            Param p;
            p.n = int64_t(h.size());
            p.weight = k == 0;
            st = dev_alloc(p.n, &p.value);
            if (st == KILN_OK) st = kiln_cuda_copy(p.value, h.data(), p.n * int64_t(sizeof(float)), 0);
            if (st == KILN_OK) st = dev_alloc(p.n, &p.grad);
            if (st == KILN_OK && moments) st = dev_zeros(p.n, &p.m);
            if (st == KILN_OK && second) st = dev_zeros(p.n, &p.v);
            t->params.push_back(p);
        }
    }
    for (int i = 0; i < 2 && st == KILN_OK; ++i) st = dev_alloc(t->max_batch * widest, &t->g[i]);
    if (st == KILN_OK) st = dev_alloc(t->max_batch, &t->row_loss);
    if (st == KILN_OK) st = dev_alloc(1, &t->loss_sum);
    if (st != KILN_OK) {  // nothing kept on the device; compile may be called again
        const std::string why = kiln_cuda_last_error();
        t->release();
        return fail(st, "%s: %s", fn, why.c_str());
    }
    for (Layer& l : t->layers) {
        std::vector<float>().swap(l.w);
        std::vector<float>().swap(l.b);
    }
    t->compiled = true;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_trainer_step(kiln_cuda_trainer* t, int64_t batch, const float* x,
                                                      const int32_t* labels, float lr, double* loss) {
    static const char* fn = "kiln_cuda_trainer_step";
    if (kiln_status st = check_ready(fn, t)) return st;
    if (batch < 1 || batch > t->max_batch)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: batch is %lld: must be in 1..%lld (the compiled maximum)", fn,
                    (long long)batch, (long long)t->max_batch);
    if (x == nullptr || labels == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: x or labels is NULL", fn);
    if (!std::isfinite(lr) || lr < 0.f) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: lr must be finite and >= 0", fn);
    // Forward: each layer's output in its own buffer (the backward pass reads them).
    const float* cur = x;
    size_t pi = 0;
    for (Layer& l : t->layers) {
        if (l.dense) {
            const Param& w = t->params[pi];
            const float* bias = l.has_bias ? t->params[pi + 1].value : nullptr;
            pi += l.has_bias ? 2 : 1;
            const kiln_epilogue ep{bias, KILN_UNARY_IDENTITY, 0.f, nullptr, 0};
            if (kiln_status st = kiln_cuda_sgemm(0, 0, batch, l.out, l.in, 1.f, cur, l.in, w.value, l.out, 0.f, l.y,
                                                 l.out, &ep))
                return st;
        } else if (kiln_status st = kiln_cuda_unary_f32(l.act, l.alpha, batch * l.out, cur, l.y)) {
            return st;
        }
        cur = l.y;
    }
    // Loss and its gradient ((softmax - onehot) / batch), then the sum, checked on the host.
    if (kiln_status st = kiln_cuda_softmax_xent_f32(batch, t->width, cur, labels, t->row_loss, t->g[0])) return st;
    if (kiln_status st = kiln_cuda_sum_f32(batch, t->row_loss, t->loss_sum)) return st;
    float sum = 0.f;
    if (kiln_status st = kiln_cuda_copy(&sum, t->loss_sum, sizeof sum, 1)) return st;
    const double mean = double(sum) / double(batch);
    if (!std::isfinite(mean))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the loss is not finite at step %lld (a label outside 0..%lld, or "
                    "NaN/Inf in the data or the weights): nothing was updated", fn, (long long)t->steps,
                    (long long)(t->width - 1));
    // Backward, last layer first.
    int gi = 0;
    pi = t->params.size();
    for (size_t li = t->layers.size(); li-- > 0;) {
        const Layer& l = t->layers[li];
        const float* input = li == 0 ? x : t->layers[li - 1].y;
        float* g_out = t->g[1 - gi];
        if (!l.dense) {
            act_backward_kernel<<<blocks_for(batch * l.out, 256), 256, 0, stream()>>>(l.act, l.alpha, batch * l.out,
                                                                                    input, t->g[gi], g_out);
            KILN_CUDA_LAUNCHED(fn);
            gi = 1 - gi;
            continue;
        }
        pi -= l.has_bias ? 2 : 1;
        const Param& w = t->params[pi];
        if (kiln_status st = kiln_cuda_sgemm(1, 0, l.in, l.out, batch, 1.f, input, l.in, t->g[gi], l.out, 0.f, w.grad,
                                             l.out, nullptr))
            return st;
        if (l.has_bias) {
            column_sum_kernel<<<unsigned((l.out + 255) / 256), 256, 0, stream()>>>(batch, l.out, t->g[gi],
                                                                                 t->params[pi + 1].grad);
            KILN_CUDA_LAUNCHED(fn);
        }
        if (li > 0) {
            if (kiln_status st = kiln_cuda_sgemm(0, 1, batch, l.in, l.out, 1.f, t->g[gi], l.out, w.value, l.out, 0.f,
                                                 g_out, l.in, nullptr))
                return st;
            gi = 1 - gi;
        }
    }
    // Update.
    const kiln_optimizer& o = t->opt;
    for (Param& p : t->params) {
        const float l2 = p.weight ? o.l2 : 0.f, decay = p.weight ? o.weight_decay : 0.f;
        kiln_status st;
        if (o.kind == KILN_OPT_SGD)
            st = kiln_cuda_sgd_f32(p.n, p.value, p.grad, p.m, lr, o.momentum, o.nesterov, l2);
        else
            st = kiln_cuda_adam_f32(p.n, p.value, p.grad, p.m, p.v, lr, o.beta1, o.beta2, o.eps,
                                    decay > 0.f ? decay : l2, decay > 0.f ? 1 : 0, t->steps + 1);
        if (st != KILN_OK) return st;
    }
    t->steps += 1;
    if (loss) *loss = mean;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_trainer_param_count(const kiln_cuda_trainer* t, int64_t* count) {
    static const char* fn = "kiln_cuda_trainer_param_count";
    if (kiln_status st = check_ready(fn, t)) return st;
    if (count == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: count is NULL", fn);
    *count = int64_t(t->params.size());
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_trainer_param(kiln_cuda_trainer* t, int64_t i, int32_t direction,
                                                       float* data, int64_t n) {
    static const char* fn = "kiln_cuda_trainer_param";
    if (kiln_status st = check_ready(fn, t)) return st;
    if (i < 0 || i >= int64_t(t->params.size()))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: parameter %lld of %zu", fn, (long long)i, t->params.size());
    const Param& p = t->params[size_t(i)];
    if (data == nullptr || n != p.n)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: parameter %lld has %lld elements, n is %lld%s", fn, (long long)i,
                    (long long)p.n, (long long)n, data == nullptr ? " and data is NULL" : "");
    const int64_t bytes = n * int64_t(sizeof(float));
    switch (direction) {
        case 0: return kiln_cuda_copy(data, p.value, bytes, 1);
        case 1: return kiln_cuda_copy(p.value, data, bytes, 0);
        case 2: return kiln_cuda_copy(data, p.grad, bytes, 1);
        default:
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: direction is %d: 0 out, 1 in, 2 gradient out", fn, direction);
    }
}

extern "C" KILN_API kiln_status kiln_cuda_trainer_steps(const kiln_cuda_trainer* t, int64_t* steps) {
    if (t == nullptr || steps == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_cuda_trainer_steps: NULL");
    *steps = t->steps;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_trainer_destroy(kiln_cuda_trainer* t) {
    if (t == nullptr) return KILN_OK;
    kiln_cuda_synchronize();
    t->release();
    delete t;
    return KILN_OK;
}
