// Inference plans: an ordered list of layers over preallocated, caller-owned workspace.
//
// Values: value 0 is the input, value i + 1 the output of layer i. A residual layer adds an
// earlier value, which makes the plan a DAG (so do a product with one and a concatenation with
// one); a branch makes the next layer read an earlier value (a second path, which a residual, a
// product or a concatenation joins back). Build (kiln_plan_add_*) copies and packs parameters;
// compile fuses an activation and/or a residual add into the Dense before it (applied in the GEMM's
// store, in that order: act(x W + b) + r; the fused layer's value becomes an alias of the Dense's)
// and assigns each remaining value a buffer of max_batch x widest floats, reusing a buffer once
// its value has been read for the last time. kiln_plan_run then walks the layers with no
// allocation; the plan is read-only, so any number of threads may run it, each with its own
// workspace.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "../core/error.hpp"
#include "../core/model_checks.hpp"
#include "../core/row_ops.hpp"
#include "kiln/kiln.h"

namespace {

enum class Kind { Dense, Activation, Softmax, LayerNorm, Residual, Embedding, Branch, Multiply, Concat, Slice, ScaleShift, Pool, PRelu, L2Norm };

struct Layer {
    Kind kind;
    int64_t in = 0, out = 0;
    kiln_packed_b* weight = nullptr;
    float* bias = nullptr;
    int32_t activation = KILN_UNARY_IDENTITY;
    float alpha = 0;
    int32_t log_softmax = 0;
    float* gamma = nullptr;   // LayerNorm, ScaleShift: scale; PRelu: slopes
    float* beta = nullptr;
    float eps = 0;
    int64_t from = -1;        // Residual, Multiply, Concat: the other operand; Branch: the value read
                              // next; Dense: a fused residual (-1: none). Never a Branch's value
                              // (resolved when added).
    int64_t vocab = 0;        // Embedding: table rows
    int64_t begin = 0;        // Slice: the first feature taken (out of in; out features)
    int32_t pool = 0;         // Pool: kiln_pool_mode over in / out positions
    float* table = nullptr;   // Embedding: vocab x (out / in) floats
    bool fused = false;       // folded into the Dense before it: its value aliases that Dense's
                              // (a Branch is always "fused": its value aliases value `from`)
    int64_t value = 0;        // compiled: the physical value this layer's output lives in
    int32_t slot = -1;        // compiled: workspace buffer of that value (-1: the caller's output)
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
    kiln_free(l.table);
    l.weight = nullptr;
    l.bias = l.gamma = l.beta = l.table = nullptr;
}

}  // namespace

struct kiln_plan {
    int64_t in_features = 0, max_batch = 0, features = 0;  // features: width after the last layer
    bool compiled = false;
    std::vector<Layer> layers;
    int64_t buffer_floats = 0;  // per workspace buffer
    int64_t workspace_bytes = 0;
    std::vector<int32_t> value_slot;  // compiled: buffer of each physical value (-1: input/output)
};

using kiln::fail;

namespace {

kiln_status check_open(const char* fn, kiln_plan* plan) {
    if (plan == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: plan is NULL", fn);
    if (plan->compiled) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the plan is compiled: no layer can be added", fn);
    return KILN_OK;
}

// Appends a layer; its output becomes the current value (of l.out features), as in the trainer.
kiln_status push(kiln_plan* plan, Layer&& l) {
    try {
        plan->layers.push_back(l);
    } catch (const std::bad_alloc&) {
        free_layer(l);
        return fail(KILN_ERR_OUT_OF_MEMORY, "kiln_plan: no memory for a layer");
    }
    plan->features = plan->layers.back().out;
    return KILN_OK;
}

}  // namespace

extern "C" KILN_API kiln_status kiln_plan_create(int64_t input_features, int64_t max_batch, kiln_plan** out) {
    static const char* fn = "kiln_plan_create";
    if (out == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = nullptr;
    if (kiln_status st = kiln::check_model_sizes(fn, input_features, max_batch)) return st;
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
    if (kiln_status st = kiln::check_dense(fn, out_features, weight)) return st;
    if (kiln_status st = kiln::check_activation(fn, activation, activation_alpha)) return st;
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
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_add_activation(kiln_plan* plan, int32_t activation, float activation_alpha) {
    static const char* fn = "kiln_plan_add_activation";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (kiln_status st = kiln::check_activation(fn, activation, activation_alpha)) return st;
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

extern "C" KILN_API kiln_status kiln_plan_add_scale_shift(kiln_plan* plan, const float* scale, const float* shift) {
    static const char* fn = "kiln_plan_add_scale_shift";
    if (kiln_status st = check_open(fn, plan)) return st;
    const int64_t n = plan->features;
    if (kiln_status st = kiln::check_scale_shift(fn, n, scale, shift)) return st;
    Layer l;
    l.kind = Kind::ScaleShift;
    l.in = l.out = n;
    void *g = nullptr, *b = nullptr;
    kiln_status st = kiln_alloc(n * int64_t(sizeof(float)), &g);
    if (st == KILN_OK) st = kiln_alloc(n * int64_t(sizeof(float)), &b);
    l.gamma = static_cast<float*>(g);
    l.beta = static_cast<float*>(b);
    if (st != KILN_OK) {
        free_layer(l);
        return st;
    }
    for (int64_t j = 0; j < n; ++j) {
        l.gamma[j] = scale != nullptr ? scale[j] : 1.0f;
        l.beta[j] = shift != nullptr ? shift[j] : 0.0f;
    }
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_add_prelu(kiln_plan* plan, const float* slope) {
    static const char* fn = "kiln_plan_add_prelu";
    if (kiln_status st = check_open(fn, plan)) return st;
    const int64_t n = plan->features;
    if (kiln_status st = kiln::check_prelu(fn, n, slope)) return st;
    Layer l;
    l.kind = Kind::PRelu;
    l.in = l.out = n;
    void* a = nullptr;
    if (kiln_status st = kiln_alloc(n * int64_t(sizeof(float)), &a)) return st;
    l.gamma = static_cast<float*>(a);
    for (int64_t j = 0; j < n; ++j) l.gamma[j] = slope != nullptr ? slope[j] : 0.25f;
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_add_l2_normalize(kiln_plan* plan, float eps) {
    static const char* fn = "kiln_plan_add_l2_normalize";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (kiln_status st = kiln::check_l2_eps(fn, eps)) return st;
    Layer l;
    l.kind = Kind::L2Norm;
    l.in = l.out = plan->features;
    l.eps = eps;
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_add_pool(kiln_plan* plan, int32_t mode, int64_t positions) {
    static const char* fn = "kiln_plan_add_pool";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (kiln_status st = kiln::check_pool(fn, mode, positions, plan->features)) return st;
    const int64_t out = plan->features / positions;
    Layer l;
    l.kind = Kind::Pool;
    l.in = plan->features;
    l.out = out;
    l.pool = mode;
    return push(plan, std::move(l));
}

namespace {

// Checks `from` for a residual or a branch and resolves a branch's value to the value it reads.
kiln_status earlier_value(const char* fn, const kiln_plan* plan, int64_t* from) {
    const int64_t current = int64_t(plan->layers.size());  // the value a new layer reads
    if (*from < 0 || *from >= current)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: from is %lld: must name an earlier value, 0..%lld", fn,
                    (long long)*from, (long long)(current - 1));
    if (*from > 0 && plan->layers[size_t(*from - 1)].kind == Kind::Branch) *from = plan->layers[size_t(*from - 1)].from;
    if (*from == 0 && plan->layers[0].kind == Kind::Embedding)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: value 0 is the token ids of the embedding, not features", fn);
    return KILN_OK;
}

int64_t value_width(const kiln_plan* plan, int64_t v) {
    return v == 0 ? plan->in_features : plan->layers[size_t(v - 1)].out;
}

}  // namespace

namespace {

// A join of the current value with value `from`: Residual and Multiply need equal widths, Concat
// puts `from`'s features after the current ones.
kiln_status add_join(const char* fn, kiln_plan* plan, int64_t from, Kind kind) {
    if (kiln_status st = check_open(fn, plan)) return st;
    if (kiln_status st = earlier_value(fn, plan, &from)) return st;
    int64_t out = 0;
    if (kiln_status st = kiln::check_join(fn, kind == Kind::Concat, plan->features, from, value_width(plan, from), &out))
        return st;
    Layer l;
    l.kind = kind;
    l.in = plan->features;
    l.out = out;
    l.from = from;
    return push(plan, std::move(l));
}

}  // namespace

extern "C" KILN_API kiln_status kiln_plan_add_residual(kiln_plan* plan, int64_t from) {
    return add_join("kiln_plan_add_residual", plan, from, Kind::Residual);
}

extern "C" KILN_API kiln_status kiln_plan_add_multiply(kiln_plan* plan, int64_t from) {
    return add_join("kiln_plan_add_multiply", plan, from, Kind::Multiply);
}

extern "C" KILN_API kiln_status kiln_plan_add_concat(kiln_plan* plan, int64_t from) {
    return add_join("kiln_plan_add_concat", plan, from, Kind::Concat);
}

extern "C" KILN_API kiln_status kiln_plan_add_branch(kiln_plan* plan, int64_t from) {
    static const char* fn = "kiln_plan_add_branch";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (kiln_status st = earlier_value(fn, plan, &from)) return st;
    Layer l;
    l.kind = Kind::Branch;
    l.in = plan->features;
    l.out = value_width(plan, from);
    l.from = from;
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_add_slice(kiln_plan* plan, int64_t begin, int64_t end) {
    static const char* fn = "kiln_plan_add_slice";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (kiln_status st = kiln::check_slice(fn, begin, end, plan->features)) return st;
    Layer l;
    l.kind = Kind::Slice;
    l.in = plan->features;
    l.out = end - begin;
    l.begin = begin;
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_add_embedding(kiln_plan* plan, int64_t vocab, int64_t dim,
                                                        const float* table) {
    static const char* fn = "kiln_plan_add_embedding";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (!plan->layers.empty())
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: an embedding must be the first layer (its input is token ids)", fn);
    if (kiln_status st = kiln::check_embedding(fn, plan->in_features, vocab, dim, table)) return st;
    Layer l;
    l.kind = Kind::Embedding;
    l.in = plan->in_features;
    l.out = plan->in_features * dim;
    l.vocab = vocab;
    kiln_status st;
    l.table = copy_floats(table, vocab * dim, &st);
    if (st != KILN_OK) return st;
    return push(plan, std::move(l));
}

extern "C" KILN_API kiln_status kiln_plan_compile(kiln_plan* plan) {
    static const char* fn = "kiln_plan_compile";
    if (kiln_status st = check_open(fn, plan)) return st;
    if (plan->layers.empty()) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the plan has no layers", fn);
    const size_t n = plan->layers.size();
    if (plan->layers.back().kind == Kind::Branch)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the last layer is a branch: the plan's output must be computed", fn);
    try {
        // Values read by a join (residual, product, concatenation) or a branch must stay
        // materialized: nothing may be fused over them. Every value but the output must be read
        // (a branch's path must come back).
        std::vector<char> read_by_residual;
        if (kiln_status st = kiln::check_every_value_read(
                fn, n, [&](size_t i) { return plan->layers[i].kind == Kind::Branch; },
                [&](size_t i) { return plan->layers[i].kind == Kind::Dense ? int64_t(-1) : plan->layers[i].from; },
                &read_by_residual))
            return st;
        // Fusion: Dense [+ Activation] [+ Residual] into the Dense's epilogue. A branch's value
        // aliases the value it reads.
        int64_t open_dense = -1;  // index of a Dense whose epilogue can still take a step
        for (size_t i = 0; i < n; ++i) {
            Layer& l = plan->layers[i];
            l.value = int64_t(i) + 1;
            if (l.kind == Kind::Branch) {
                l.fused = true;
                l.value = l.from == 0 ? 0 : plan->layers[size_t(l.from - 1)].value;
                open_dense = -1;
                continue;
            }
            if (open_dense >= 0 && !read_by_residual[i]) {
                Layer& d = plan->layers[size_t(open_dense)];
                if (l.kind == Kind::Activation && d.activation == KILN_UNARY_IDENTITY && d.from < 0) {
                    d.activation = l.activation;
                    d.alpha = l.alpha;
                    l.fused = true;
                } else if (l.kind == Kind::Residual && d.from < 0) {
                    d.from = l.from;
                    l.fused = true;
                }
            }
            if (l.fused) {
                l.value = plan->layers[size_t(open_dense)].value;
                continue;
            }
            open_dense = l.kind == Kind::Dense ? int64_t(i) : -1;
        }
        // Physical values: the last layer's value is the caller's output; others get buffers,
        // reused after their last reader.
        std::vector<int64_t> last_read(n + 1, -1);
        for (size_t i = 0; i < n; ++i) {
            const Layer& l = plan->layers[i];
            if (l.fused) continue;
            const int64_t src = i == 0 ? 0 : plan->layers[i - 1].value;
            last_read[size_t(src)] = int64_t(i);
            if (l.from >= 0) {
                const int64_t v = l.from == 0 ? 0 : plan->layers[size_t(l.from - 1)].value;
                last_read[size_t(v)] = std::max(last_read[size_t(v)], int64_t(i));
            }
        }
        plan->value_slot.assign(n + 1, -1);
        const int64_t final_value = plan->layers.back().value;
        std::vector<int32_t> free_slots;
        int32_t slots = 0;
        for (size_t i = 0; i < n; ++i) {
            Layer& l = plan->layers[i];
            if (l.fused) continue;
            if (l.value == final_value) {
                l.slot = -1;
            } else {
                int32_t s;
                if (!free_slots.empty()) {
                    s = free_slots.back();
                    free_slots.pop_back();
                } else {
                    s = slots++;
                }
                l.slot = s;
                plan->value_slot[size_t(l.value)] = s;
            }
            // Values whose last reader is this layer free their buffer for the layers after it.
            for (size_t v = 1; v <= n; ++v)
                if (last_read[v] == int64_t(i) && plan->value_slot[v] >= 0 && int64_t(v) != l.value)
                    free_slots.push_back(plan->value_slot[v]);
        }
        int64_t widest = plan->in_features;
        for (const Layer& l : plan->layers) widest = std::max(widest, l.out);
        plan->buffer_floats = (plan->max_batch * widest + 15) / 16 * 16;  // keep each buffer 64-byte aligned
        if (plan->buffer_floats > (int64_t(1) << 56)) return fail(KILN_ERR_OVERFLOW, "%s: workspace overflows", fn);
        plan->workspace_bytes = int64_t(slots) * plan->buffer_floats * int64_t(sizeof(float));
    } catch (const std::bad_alloc&) {
        return fail(KILN_ERR_OUT_OF_MEMORY, "%s: no memory", fn);
    }
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

extern "C" KILN_API kiln_status kiln_plan_run(const kiln_plan* plan, int64_t batch, const void* input, float* output,
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
    // A Dense layer reading the input (the first, or a residual from it) while the output is
    // written over it would read what it just wrote. Ids and floats are 4 bytes alike.
    const uintptr_t in = reinterpret_cast<uintptr_t>(input), out = reinterpret_cast<uintptr_t>(output);
    if (in < out + uintptr_t(batch * plan->features) * 4 && out < in + uintptr_t(batch * plan->in_features) * 4)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: output overlaps input: write to a separate buffer", fn);
    float* const ws = static_cast<float*>(workspace);
    auto value_ptr = [&](int64_t v) -> const float* {
        if (v == 0) return static_cast<const float*>(input);
        const int32_t slot = plan->value_slot[size_t(v)];
        return slot < 0 ? output : ws + int64_t(slot) * plan->buffer_floats;
    };
    const size_t n_layers = plan->layers.size();
    for (size_t i = 0; i < n_layers; ++i) {
        const Layer& l = plan->layers[i];
        if (l.fused) continue;
        const float* src = value_ptr(i == 0 ? 0 : plan->layers[i - 1].value);
        float* dst = l.slot < 0 ? output : ws + int64_t(l.slot) * plan->buffer_floats;
        kiln_status st = KILN_OK;
        switch (l.kind) {
            case Kind::Dense: {
                const float* res = l.from >= 0 ? value_ptr(l.from == 0 ? 0 : plan->layers[size_t(l.from - 1)].value) : nullptr;
                const kiln_epilogue ep{l.bias, l.activation, l.alpha, res, l.out};
                const bool plain = l.bias == nullptr && l.activation == KILN_UNARY_IDENTITY && res == nullptr;
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
            case Kind::Residual: {
                const float* other = value_ptr(l.from == 0 ? 0 : plan->layers[size_t(l.from - 1)].value);
                const int64_t shape[1] = {batch * l.in}, unit[1] = {1};
                st = kiln_binary_f32(KILN_BINARY_ADD, 1, shape, src, unit, other, unit, dst, unit);
                break;
            }
            case Kind::Multiply: {
                const float* other = value_ptr(l.from == 0 ? 0 : plan->layers[size_t(l.from - 1)].value);
                const int64_t shape[1] = {batch * l.in}, unit[1] = {1};
                st = kiln_binary_f32(KILN_BINARY_MUL, 1, shape, src, unit, other, unit, dst, unit);
                break;
            }
            case Kind::Concat:
                kiln::concat_rows(batch, l.in, l.out - l.in, src,
                                  value_ptr(l.from == 0 ? 0 : plan->layers[size_t(l.from - 1)].value), dst);
                break;
            case Kind::Slice:
                kiln::slice_rows(batch, l.in, l.begin, l.out, src, dst);
                break;
            case Kind::Pool:
                kiln::pool_rows(l.pool, batch, l.in, l.out, src, dst);
                break;
            case Kind::ScaleShift:
                kiln::scale_shift_rows(batch, l.in, src, l.gamma, l.beta, dst);
                break;
            case Kind::PRelu:
                kiln::prelu_rows(batch, l.in, src, l.gamma, dst);
                break;
            case Kind::L2Norm:
                kiln::l2_normalize_rows(batch, l.in, l.eps, src, dst, nullptr);
                break;
            case Kind::Branch:
                break;  // never reached: a branch is an alias
            case Kind::Embedding: {
                const int32_t* ids = static_cast<const int32_t*>(input);
                const int64_t seq = l.in, dim = l.out / l.in;
                for (int64_t r = 0; r < batch; ++r)
                    for (int64_t p = 0; p < seq; ++p) {
                        const int32_t id = ids[r * seq + p];
                        if (id < 0 || id >= l.vocab)
                            return fail(KILN_ERR_INVALID_ARGUMENT,
                                        "%s: token id %d at row %lld, position %lld is out of range 0..%lld", fn, id,
                                        (long long)r, (long long)p, (long long)(l.vocab - 1));
                        std::memcpy(dst + (r * seq + p) * dim, l.table + int64_t(id) * dim, size_t(dim) * sizeof(float));
                    }
                break;
            }
        }
        if (st != KILN_OK) return st;  // the layer's message names the check
    }
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_plan_destroy(kiln_plan* plan) {
    if (plan == nullptr) return KILN_OK;
    for (Layer& l : plan->layers) free_layer(l);
    delete plan;
    return KILN_OK;
}
