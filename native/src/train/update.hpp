// Fused optimizer updates: one pass over a parameter's value, gradient and moments per step.
// Each ISA has its own translation unit (update_ref.cpp, update_avx2.cpp, update_avx512.cpp);
// train.cpp takes them from kernels_for(the current ISA).
#pragma once

#include <cstdint>

#include "kiln/kiln.h"

namespace kiln::train {

struct UpdateArgs {
    int32_t kind;      // kiln_optimizer_kind
    int32_t nesterov;
    float lr;
    float momentum;
    float beta1, beta2, eps;
    float l2;          // coupled, already 0 for non-weights
    float decay;       // decoupled factor lr * weight_decay, already 0 for non-weights
    float grad_scale;  // from global-norm clipping (1: none)
    float step_size;     // Adam: lr / (1 - beta1^t), as PyTorch
    float inv_sqrt_bc2;  // Adam: 1 / sqrt(1 - beta2^t)
};

// Subnormal floats read as zero and subnormal results written as zero (MXCSR DAZ and FTZ) on this
// thread for the life of the object; the thread's previous mode comes back after. train.cpp runs
// every update chunk under one, at every ISA level (the scalar reference included), so the levels
// still agree. Why: Adam's first moment decays by beta1 = 0.9 a step wherever the gradient is 0
// (blank pixels, dead units), and passes through the subnormal range, where Zen 3 computes at
// half speed: the update pass over 1 M subnormal moments took 0.74 ns a parameter against 0.36
// with normal ones. Values that small (< 1.2e-38) change no weight: a moment of 1e-39 moves a
// weight by lr * 1e-39 / eps at most.
class SubnormalsAsZero {
public:
    SubnormalsAsZero();
    ~SubnormalsAsZero();
    SubnormalsAsZero(const SubnormalsAsZero&) = delete;
    SubnormalsAsZero& operator=(const SubnormalsAsZero&) = delete;

private:
    unsigned saved_;
};

// Updates value[0..n) from grad (read-only) and the moments m, v (either unused may be null).
using UpdateFn = void (*)(const UpdateArgs& a, int64_t n, float* value, const float* grad, float* m, float* v);

void update_ref(const UpdateArgs& a, int64_t n, float* value, const float* grad, float* m, float* v);
void update_avx2(const UpdateArgs& a, int64_t n, float* value, const float* grad, float* m, float* v);
void update_avx512(const UpdateArgs& a, int64_t n, float* value, const float* grad, float* m, float* v);

// Largest |x[i]|, or +Inf when any element is NaN or infinite (0 for n = 0).
float max_abs_ref(int64_t n, const float* x);
float max_abs_avx2(int64_t n, const float* x);
float max_abs_avx512(int64_t n, const float* x);

// Sum of squares in double (for the global gradient norm).
double sum_squares_ref(int64_t n, const float* x);
double sum_squares_avx2(int64_t n, const float* x);
double sum_squares_avx512(int64_t n, const float* x);

// A Dense layer's gradient epilogue for identity, ReLU and leaky ReLU (act: KILN_UNARY_*):
// g = g * act'(y) in place over rows x cols (row-major), then, when gb is not null, the bias
// gradient gb[j] = sum over rows, in row order, of g[r][j] (the same sums, bit for bit, at every
// ISA). Returns false, doing nothing, for other activations.
bool act_bias_grad_ref(int32_t act, float alpha, int64_t rows, int64_t cols, const float* y, float* g, float* gb);
bool act_bias_grad_avx2(int32_t act, float alpha, int64_t rows, int64_t cols, const float* y, float* g, float* gb);
bool act_bias_grad_avx512(int32_t act, float alpha, int64_t rows, int64_t cols, const float* y, float* g, float* gb);

// A standalone activation's input gradient for the functions whose derivative needs the input x
// (GELU, GELU_TANH, SILU, ELU, SELU, SOFTPLUS, MISH, BOUNDED_RELU, HARDTANH, HARD_SIGMOID, HARD_SWISH): gx = gy * act'(x),
// or gx += that when acc, over n elements, in float with vector exp/erf (within about 1e-6 of the
// double-precision scalar derivative). Returns false, doing nothing, for other activations and
// for the reference level (train.cpp then runs the scalar double-precision loop). The AVX-512
// level uses the AVX2 version.
bool act_grad_x_ref(int32_t act, float alpha, int64_t n, const float* x, const float* gy, float* gx, bool acc);
bool act_grad_x_avx2(int32_t act, float alpha, int64_t n, const float* x, const float* gy, float* gx, bool acc);

// The kernels above for one ISA level.
struct Kernels {
    UpdateFn update;
    float (*max_abs)(int64_t n, const float* x);
    double (*sum_squares)(int64_t n, const float* x);
    bool (*act_bias_grad)(int32_t act, float alpha, int64_t rows, int64_t cols, const float* y, float* g, float* gb);
    bool (*act_grad_x)(int32_t act, float alpha, int64_t n, const float* x, const float* gy, float* gx, bool acc);
};
inline const Kernels& kernels_for(kiln_isa isa) {
    static const Kernels ref{update_ref, max_abs_ref, sum_squares_ref, act_bias_grad_ref, act_grad_x_ref};
    static const Kernels avx2{update_avx2, max_abs_avx2, sum_squares_avx2, act_bias_grad_avx2, act_grad_x_avx2};
    static const Kernels avx512{update_avx512, max_abs_avx512, sum_squares_avx512, act_bias_grad_avx512,
                                act_grad_x_avx2};
    return isa >= KILN_ISA_AVX512 ? avx512 : isa >= KILN_ISA_AVX2 ? avx2 : ref;
}

}  // namespace kiln::train
