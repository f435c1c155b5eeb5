// Argument checks shared by the layer-list objects (inference plans, trainers): the same rules and
// the same messages for the sizes both take.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "error.hpp"
#include "kiln/kiln.h"

namespace kiln {

// input_features and max_batch of kiln_plan_create / kiln_trainer_create.
inline kiln_status check_model_sizes(const char* fn, int64_t input_features, int64_t max_batch) {
    if (input_features < 1 || max_batch < 1)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: input_features %lld and max_batch %lld must be >= 1", fn,
                    (long long)input_features, (long long)max_batch);
    if (input_features > (int64_t(1) << 31) || max_batch > (int64_t(1) << 31))
        return fail(KILN_ERR_OVERFLOW, "%s: input_features and max_batch must be <= 2^31", fn);
    return KILN_OK;
}

// A Dense layer's out_features and weight pointer.
inline kiln_status check_dense(const char* fn, int64_t out_features, const float* weight) {
    if (out_features < 1 || out_features > (int64_t(1) << 31))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out_features is %lld: must be in 1..2^31", fn,
                    (long long)out_features);
    if (weight == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: weight is NULL", fn);
    return KILN_OK;
}

// An activation code and its alpha (LeakyReLU's slope): a non-finite alpha would turn every
// negative input into NaN or an infinity.
inline kiln_status check_activation(const char* fn, int32_t activation, float alpha) {
    if (activation < KILN_UNARY_IDENTITY || activation > KILN_UNARY_LAST)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: activation is %d: not a kiln_unary_op", fn, activation);
    if (!std::isfinite(alpha)) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: activation alpha is not finite", fn);
    if ((activation == KILN_UNARY_BOUNDED_RELU || activation == KILN_UNARY_HARDTANH) && !(alpha > 0))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the bound (alpha) of BOUNDED_RELU or HARDTANH is %g: must be > 0", fn,
                    double(alpha));
    if (activation == KILN_UNARY_HARD_SIGMOID && !(alpha > 0))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the slope (alpha) of HARD_SIGMOID is %g: must be > 0", fn,
                    double(alpha));
    return KILN_OK;
}

// An embedding's sizes (first layer only, checked by the caller).
inline kiln_status check_embedding(const char* fn, int64_t positions, int64_t vocab, int64_t dim, const float* table) {
    if (vocab < 1 || dim < 1 || vocab > (int64_t(1) << 31) || dim > (int64_t(1) << 24))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: vocab %lld and dim %lld must be in 1..2^31 and 1..2^24", fn,
                    (long long)vocab, (long long)dim);
    if (table == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: table is NULL", fn);
    if (positions * dim > (int64_t(1) << 31) || vocab * dim > (int64_t(1) << 40))
        return fail(KILN_ERR_OVERFLOW, "%s: %lld positions x %lld dims (vocab %lld) is too large", fn,
                    (long long)positions, (long long)dim, (long long)vocab);
    return KILN_OK;
}

// A join of the current value (width `features`) with one of width `w`: a residual or a product
// needs equal widths; a concatenation's width is their sum. Writes the output width.
inline kiln_status check_join(const char* fn, bool concat, int64_t features, int64_t from, int64_t w, int64_t* out) {
    if (!concat && w != features)
        return fail(KILN_ERR_SHAPE_MISMATCH, "%s: value %lld has %lld features but the current value has %lld", fn,
                    (long long)from, (long long)w, (long long)features);
    *out = concat ? features + w : features;
    if (*out > (int64_t(1) << 31))
        return fail(KILN_ERR_OVERFLOW, "%s: %lld + %lld features is over 2^31", fn, (long long)features, (long long)w);
    return KILN_OK;
}

// Features begin..end-1 of a value of `features`.
inline kiln_status check_slice(const char* fn, int64_t begin, int64_t end, int64_t features) {
    if (!(begin >= 0 && begin < end && end <= features))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: features %lld..%lld: must satisfy 0 <= begin < end <= %lld", fn,
                    (long long)begin, (long long)end, (long long)features);
    return KILN_OK;
}

// A pooling mode and a number of positions that divides the features.
inline kiln_status check_pool(const char* fn, int32_t mode, int64_t positions, int64_t features) {
    if (mode < KILN_POOL_MEAN || mode > KILN_POOL_MAX)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: mode is %d: not a kiln_pool_mode", fn, mode);
    if (positions < 1 || features % positions != 0)
        return fail(KILN_ERR_SHAPE_MISMATCH, "%s: %lld positions do not divide the %lld features", fn, (long long)positions,
                    (long long)features);
    return KILN_OK;
}

// A scale-shift's vectors (NULL allowed): finite.
inline kiln_status check_scale_shift(const char* fn, int64_t n, const float* scale, const float* shift) {
    for (int64_t j = 0; j < n; ++j)
        if ((scale != nullptr && !std::isfinite(scale[j])) || (shift != nullptr && !std::isfinite(shift[j])))
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the %s of feature %lld is not finite", fn,
                        scale != nullptr && !std::isfinite(scale[j]) ? "scale" : "shift", (long long)j);
    return KILN_OK;
}

// A PReLU's slopes (NULL allowed): finite.
inline kiln_status check_prelu(const char* fn, int64_t n, const float* slope) {
    for (int64_t j = 0; slope != nullptr && j < n; ++j)
        if (!std::isfinite(slope[j]))
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the slope of feature %lld is not finite", fn, (long long)j);
    return KILN_OK;
}

// An L2 normalization's eps: finite and >= 0.
inline kiln_status check_l2_eps(const char* fn, float eps) {
    if (!(eps >= 0.0f) || std::isinf(eps))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: eps is %g: must be finite and >= 0", fn, double(eps));
    return KILN_OK;
}

// Every value but the last one (n layers: values 1..n) is read by a later layer. `branch(i)`: layer
// i is a branch (it reads nothing itself); `from(i)`: the earlier value layer i joins or branches
// to, -1 for none. Called before compile changes anything.
template <class IsBranch, class From>
kiln_status check_every_value_read(const char* fn, size_t n, IsBranch branch, From from, std::vector<char>* read_later) {
    std::vector<char> read(n + 1, 0);
    read_later->assign(n + 1, 0);
    for (size_t i = 0; i < n; ++i) {
        const int64_t f = from(i);
        if (f >= 0) (*read_later)[size_t(f)] = read[size_t(f)] = 1;
        if (!branch(i)) read[i] = 1;
    }
    for (size_t v = 1; v < n; ++v) {
        if (read[v]) continue;
        if (branch(v - 1))
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: layer %lld is a branch followed by another branch", fn,
                        (long long)(v - 1));
        return fail(KILN_ERR_INVALID_ARGUMENT,
                    "%s: value %lld (the output of layer %lld) is never read: a branch must be joined back by a residual, "
                    "a product or a concatenation",
                    fn, (long long)v, (long long)(v - 1));
    }
    return KILN_OK;
}

}  // namespace kiln
