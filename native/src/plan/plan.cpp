// Inference plans: an ordered list of layers over preallocated, caller-owned workspace.
//
// Build (kiln_plan_add_*) copies and packs parameters; compile fuses an activation into the Dense
// before it (applied in the GEMM's store) and sizes the workspace: two ping-pong activation
// buffers of max_batch x widest layer. kiln_plan_run then walks the layers with no allocation;
// the plan is read-only, so any number of threads may run it, each with its own workspace.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include "../core/error.hpp"
#include "kiln/kiln.h"

namespace {

enum class Kind { Dense, Activation, Softmax, LayerNorm };

struct Layer {
    Kind kind;
    int64_t in = 0, out = 0;
    kiln_packed_b* weight = nullptr;
    float* bias = nullptr;
    int32_t activation = KILN_UNARY_IDENTITY;
    float alpha = 0;
    int32_t log_softmax = 0;
    float* gamma = nullptr;
    float* beta = nullptr;
    float eps = 0;
};

float* copy_floats(const float* src, int64_t n, kiln_status* st) {
    *st = KILN_OK;
    if (src == nullptr) return nullptr;
    void* p = nullptr;
    *st = kiln_alloc(n * int64_t(sizeof(float)), &p);
    if (*st != KILN_OK) return nullptr;
    std::memcpy(p, src, size_t(n) * sizeof(float));
    return static_cast<float*>(p);
}

void free_layer(Layer& l) {
    kiln_packed_b_destroy(l.weight);
    kiln_free(l.bias);
    kiln_free(l.gamma);
    kiln_free(l.beta);
    l.weight = nullptr;
    l.bias = l.gamma = l.beta = nullptr;
}

}  // namespace

struct kiln_plan {
    int64_t in_features = 0, max_batch = 0, features = 0;  // features: width after the last layer
    bool compiled = false;
    std::vector<Layer> layers;
    int64_t buffer_floats = 0;  // per ping-pong buffer
    int64_t workspace_bytes = 0;
};

using kiln::fail;

namespace {

kiln_status check_open(const char* fn, kiln_plan* plan) {
    if (plan == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: plan is NULL", fn);
    if (plan->compiled) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the plan is compiled: no layer can be added", fn);
    return KILN_OK;
}

kiln_status push(kiln_plan* plan, Layer&& l) {
    try {
        plan->layers.push_back(l);
    } catch (const std::bad_alloc&) {
        free_layer(l);
        return fail(KILN_ERR_OUT_OF_MEMORY, "kiln_plan: no memory for a layer");
    }
    return KILN_OK;
}

}  // namespace

extern "C" KILN_API kiln_status kiln_plan_create(int64_t input_features, int64_t max_batch, kiln_plan** out) {
    static const char* fn = "kiln_plan_create";
    if (out == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = nullptr;
    if (input_features < 1 || max_batch < 1)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: input_features %lld and max_batch %lld must be >= 1", fn,
                    (long long)input_features, (long long)max_batch);
    if (input_features > (int64_t(1) << 31) || max_batch > (int64_t(1) << 31))
        return fail(KILN_ERR_OVERFLOW, "%s: input_features and max_batch must be <= 2^31", fn);
    auto* p = new (std::nothrow) kiln_plan();
    if (p == nullptr) return fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory", fn);
    p->in_features = p->features = input_features;
    p->max_batch = max_batch;
    *out = p;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_plan_add_dense(kiln_plan* plan, int64_t out_features, const float* weight,
                                                    const float* bias, int32_t activation, float activation_alpha) {
    static const char* fn = "kiln_plan_add_dense";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (out_features < 1 || out_features > (int64_t(1) << 31))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out_features is %lld: must be in 1..2^31", fn,
                    (long long)out_features);
    if (weight == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: weight is NULL", fn);
    if (activation < KILN_UNARY_IDENTITY || activation > KILN_UNARY_GELU_TANH)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: activation is %d: not a kiln_unary_op", fn, activation);
    Layer l;
    l.kind = Kind::Dense;
    l.in = plan->features;
    l.out = out_features;
    l.activation = activation;
    l.alpha = activation_alpha;
    if (kiln_status st = kiln_sgemm_pack_b(0, l.in, l.out, weight, l.out, &l.weight)) return st;
    kiln_status st;
    l.bias = copy_floats(bias, l.out, &st);
    if (st != KILN_OK) {
        free_layer(l);
        return st;
    }
    if (kiln_status s2 = push(plan, std::move(l))) return s2;
    plan->features = out_features;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_plan_add_activation(kiln_plan* plan, int32_t activation, float activation_alpha) {
    static const char* fn = "kiln_plan_add_activation";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (activation < KILN_UNARY_IDENTITY || activation > KILN_UNARY_GELU_TANH)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: activation is %d: not a kiln_unary_op", fn, activation);
    Layer l;
    l.kind = Kind::Activation;
    l.in = l.out = plan->features;
    l.activation = activation;
    l.alpha = activation_alpha;
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_add_softmax(kiln_plan* plan, int32_t log_softmax) {
    static const char* fn = "kiln_plan_add_softmax";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (log_softmax != 0 && log_softmax != 1)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: log_softmax is %d: must be 0 or 1", fn, log_softmax);
    Layer l;
    l.kind = Kind::Softmax;
    l.in = l.out = plan->features;
    l.log_softmax = log_softmax;
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_add_layer_norm(kiln_plan* plan, const float* gamma, const float* beta,
                                                         float eps) {
    static const char* fn = "kiln_plan_add_layer_norm";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (!(eps >= 0.0f) || std::isinf(eps))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: eps is %g: must be finite and >= 0", fn, double(eps));
    Layer l;
    l.kind = Kind::LayerNorm;
    l.in = l.out = plan->features;
    l.eps = eps;
    kiln_status st;
    l.gamma = copy_floats(gamma, l.in, &st);
    if (st == KILN_OK) l.beta = copy_floats(beta, l.in, &st);
    if (st != KILN_OK) {
        free_layer(l);
        return st;
    }
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_compile(kiln_plan* plan) {
    static const char* fn = "kiln_plan_compile";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (plan->layers.empty()) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the plan has no layers", fn);
    // Fuse Dense(identity) + Activation into the Dense's GEMM epilogue.
    std::vector<Layer> fused;
    fused.reserve(plan->layers.size());
    for (Layer& l : plan->layers) {
        if (l.kind == Kind::Activation && !fused.empty() && fused.back().kind == Kind::Dense &&
            fused.back().activation == KILN_UNARY_IDENTITY) {
            fused.back().activation = l.activation;
            fused.back().alpha = l.alpha;
            continue;
        }
        fused.push_back(l);
    }
    plan->layers.swap(fused);
    int64_t widest = plan->in_features;
    for (const Layer& l : plan->layers) widest = std::max(widest, l.out);
    plan->buffer_floats = (plan->max_batch * widest + 15) / 16 * 16;  // keep the second buffer 64-byte aligned
    if (plan->buffer_floats > (int64_t(1) << 58)) return fail(KILN_ERR_OVERFLOW, "%s: workspace overflows", fn);
    plan->workspace_bytes = plan->layers.size() > 1 ? 2 * plan->buffer_floats * int64_t(sizeof(float)) : 0;
    plan->compiled = true;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_plan_info(const kiln_plan* plan, int64_t* input_features,
                                               int64_t* output_features, int64_t* max_batch, int64_t* workspace_bytes) {
    if (plan == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_plan_info: plan is NULL");
    if (!plan->compiled) return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_plan_info: the plan is not compiled");
    if (input_features) *input_features = plan->in_features;
    if (output_features) *output_features = plan->features;
    if (max_batch) *max_batch = plan->max_batch;
    if (workspace_bytes) *workspace_bytes = plan->workspace_bytes;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_plan_run(const kiln_plan* plan, int64_t batch, const float* input, float* output,
                                              void* workspace, int64_t workspace_bytes) {
    static const char* fn = "kiln_plan_run";
    if (plan == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: plan is NULL", fn);
    if (!plan->compiled) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the plan is not compiled", fn);
    if (batch < 1 || batch > plan->max_batch)
        return fail(KILN_ERR_SHAPE_MISMATCH, "%s: batch is %lld: must be in 1..%lld (the compiled maximum)", fn,
                    (long long)batch, (long long)plan->max_batch);
    if (input == nullptr || output == nullptr)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, input == nullptr ? "input" : "output");
    if (workspace_bytes < plan->workspace_bytes || (plan->workspace_bytes > 0 && workspace == nullptr))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: workspace of %lld bytes: the plan needs %lld", fn,
                    (long long)workspace_bytes, (long long)plan->workspace_bytes);
    float* buf[2] = {static_cast<float*>(workspace), static_cast<float*>(workspace) + plan->buffer_floats};
    const size_t n_layers = plan->layers.size();
    const float* src = input;
    for (size_t i = 0; i < n_layers; ++i) {
        const Layer& l = plan->layers[i];
        float* dst = i + 1 == n_layers ? output : buf[i % 2];
        kiln_status st = KILN_OK;
        switch (l.kind) {
            case Kind::Dense: {
                const kiln_epilogue ep{l.bias, l.activation, l.alpha, nullptr, 0};
                const bool plain = l.bias == nullptr && l.activation == KILN_UNARY_IDENTITY;
                st = kiln_sgemm_packed(0, batch, 1.0f, src, l.in, l.weight, 0.0f, dst, l.out, plain ? nullptr : &ep);
                break;
            }
            case Kind::Activation: {
                const int64_t shape[1] = {batch * l.in}, unit[1] = {1};
                st = kiln_unary_f32(l.activation, l.alpha, 1, shape, src, unit, dst, unit);
                break;
            }
            case Kind::Softmax:
                st = kiln_softmax_f32(l.log_softmax, batch, l.in, src, dst);
                break;
            case Kind::LayerNorm:
                st = kiln_layer_norm_f32(batch, l.in, src, l.gamma, l.beta, l.eps, dst, nullptr, nullptr);
                break;
        }
        if (st != KILN_OK) return st;  // the layer's message names the check
        src = dst;
    }
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_plan_destroy(kiln_plan* plan) {
    if (plan == nullptr) return KILN_OK;
    for (Layer& l : plan->layers) free_layer(l);
    delete plan;
    return KILN_OK;
}
