// Elementwise f32 micro-kernels: one table per ISA, each in its own translation unit compiled with
// that ISA's flags (eltwise_ref.cpp, eltwise_avx2.cpp, eltwise_avx512.cpp). The driver in
// eltwise.cpp handles shapes, strides, broadcasting and threads; kernels see one contiguous run.
//
// These ops are memory-bound (1 FLOP per 8-12 bytes moved): the ceiling is bandwidth, so kernels
// aim at full-width loads/stores and unrolling enough to keep the load ports busy, nothing more.
#pragma once

#include <cstdint>

#include "kiln/kiln.h"

namespace kiln {

// Binary op over n elements: a_step and b_step are 0 (broadcast a single value) or 1.
using BinaryF32Fn = void (*)(int op, const float* a, int64_t a_step, const float* b, int64_t b_step,
                             float* out, int64_t n);
using ScaleF32Fn = void (*)(const float* a, float alpha, float* out, int64_t n);
// Unary op (kiln_unary_op) over n contiguous elements; alpha is LeakyReLU's slope. out may be a.
using UnaryF32Fn = void (*)(int op, const float* a, float* out, int64_t n, float alpha);
// Sum of n contiguous elements (n <= kSumBlock): float lanes, result returned in double.
using SumF32Fn = double (*)(const float* a, int64_t n);

// Reductions add per-block partial sums in double; block size fixed so results do not depend on
// the thread count.
constexpr int64_t kSumBlock = 4096;

// Row kernels over n contiguous elements (y may be x):
//   softmax:    y = exp(x - max) / sum, or log-softmax y = x - max - log(sum)
//   layer norm: y = (x - mean) * rstd * gamma + beta (gamma/beta may be null); returns mean and
//               rstd = 1 / sqrt(var + eps), var the biased variance (two passes, sums in double)
using SoftmaxRowFn = void (*)(const float* x, float* y, int64_t n, bool log);
using LayerNormRowFn = void (*)(const float* x, float* y, int64_t n, const float* gamma, const float* beta,
                                float eps, float* mean, float* rstd);

struct EltwiseKernels {
    kiln_isa isa;
    const char* name;
    BinaryF32Fn binary;
    ScaleF32Fn scale;
    SumF32Fn sum;
    UnaryF32Fn unary;
    SoftmaxRowFn softmax_row;
    LayerNormRowFn layer_norm_row;
};

extern const EltwiseKernels kEltwiseAvx512;
extern const EltwiseKernels kEltwiseAvx2;
extern const EltwiseKernels kEltwiseRef;

// Scalar definition of each binary op, shared by every ISA for tails and by the reference.
// MAX/MIN propagate NaN (a NaN in either operand gives NaN), unlike the raw x86 max/min.
inline float binary_scalar(int op, float a, float b) {
    switch (op) {
        case KILN_BINARY_ADD: return a + b;
        case KILN_BINARY_SUB: return a - b;
        case KILN_BINARY_MUL: return a * b;
        case KILN_BINARY_DIV: return a / b;
        case KILN_BINARY_MAX: return (a != a || a > b) ? a : b;
        case KILN_BINARY_MIN: return (a != a || a < b) ? a : b;
        default: return 0.0f;
    }
}

// Scalar definition of each unary op: the reference, and the tail path of the vector kernels.
float unary_scalar(int op, float x, float alpha);

}  // namespace kiln
