// Device-side elementwise functions shared by the kernels and the GEMM epilogues.
#pragma once

#include "kiln/kiln.h"

namespace {

__device__ __forceinline__ float unary_op(int op, float alpha, float x) {
    switch (op) {
        case KILN_UNARY_RELU: return x > 0.f ? x : (x != x ? x : 0.f);
        case KILN_UNARY_LEAKY_RELU: return x < 0.f ? alpha * x : x;
        case KILN_UNARY_GELU: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
        case KILN_UNARY_SIGMOID: return 1.f / (1.f + expf(-x));
        case KILN_UNARY_TANH: return tanhf(x);
        case KILN_UNARY_EXP: return expf(x);
        case KILN_UNARY_LOG: return logf(x);
        case KILN_UNARY_SQRT: return sqrtf(x);
        case KILN_UNARY_NEG: return -x;
        case KILN_UNARY_ABS: return fabsf(x);
        case KILN_UNARY_SQUARE: return x * x;
        case KILN_UNARY_GELU_TANH: {
            const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            return 0.5f * x * (1.f + tanhf(u));
        }
        case KILN_UNARY_SILU: return x / (1.f + expf(-x));
        case KILN_UNARY_ELU: return x > 0.f ? x : alpha * expm1f(x);
        case KILN_UNARY_SOFTPLUS: return x > 0.f ? x + log1pf(expf(-x)) : log1pf(expf(x));
        case KILN_UNARY_SELU: return 1.05070098735548049f * (x > 0.f ? x : 1.67326324235437728f * expm1f(x));
        case KILN_UNARY_MISH: return x * tanhf(x > 0.f ? x + log1pf(expf(-x)) : log1pf(expf(x)));
        case KILN_UNARY_BOUNDED_RELU: return x < 0.f ? 0.f : (x > alpha ? alpha : x);
        case KILN_UNARY_HARDTANH: return x < -alpha ? -alpha : (x > alpha ? alpha : x);
        case KILN_UNARY_HARD_SIGMOID: return fminf(fmaxf(fmaf(alpha, x, 0.5f), 0.f), 1.f);
        case KILN_UNARY_HARD_SWISH: return x * fminf(fmaxf(x + 3.f, 0.f), 6.f) / 6.f;
        default: return x;
    }
}

}  // namespace
