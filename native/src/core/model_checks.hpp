// Argument checks shared by the layer-list objects (inference plans, trainers): the same rules and
// the same messages for the sizes both take.
#pragma once

#include <cmath>
#include <cstdint>

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

}  // namespace kiln
