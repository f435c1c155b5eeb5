// Portable optimizer updates: the reference the vector kernels are tested against.
#include <cmath>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "update.hpp"

namespace kiln::train {

#if defined(__SSE__)
// MXCSR bit 15: flush to zero (FTZ); bit 6: denormals are zero (DAZ).
SubnormalsAsZero::SubnormalsAsZero() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
SubnormalsAsZero::~SubnormalsAsZero() { _mm_setcsr(saved_); }
#else
SubnormalsAsZero::SubnormalsAsZero() : saved_(0) {}
SubnormalsAsZero::~SubnormalsAsZero() = default;
#endif

void update_ref(const UpdateArgs& a, int64_t n, float* value, const float* grad, float* m, float* v) {
    for (int64_t i = 0; i < n; ++i) {
        float w = value[i];
        float g = grad[i] * a.grad_scale + a.l2 * w;
        w -= a.decay * w;
        switch (a.kind) {
            case KILN_OPT_SGD:
                if (a.momentum != 0.0f) {
                    const float buf = a.momentum * m[i] + g;
                    m[i] = buf;
                    g = a.nesterov ? g + a.momentum * buf : buf;
                }
                w -= a.lr * g;
                break;
            case KILN_OPT_ADAM:
            case KILN_OPT_ADAMW: {
                const float mi = a.beta1 * m[i] + (1.0f - a.beta1) * g;
                const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
                m[i] = mi;
                v[i] = vi;
                w -= a.step_size * mi / (std::sqrt(vi) * a.inv_sqrt_bc2 + a.eps);
                break;
            }
            case KILN_OPT_RMSPROP: {
                const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
                v[i] = vi;
                w -= a.lr * g / (std::sqrt(vi) + a.eps);
                break;
            }
            default:
                break;
        }
        value[i] = w;
    }
}

float max_abs_ref(int64_t n, const float* x) {
    float mx = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        const float a = std::fabs(x[i]);
        if (!(a <= 3.4028234663852886e38f)) return INFINITY;  // NaN or Inf
        mx = a > mx ? a : mx;
    }
    return mx;
}

bool act_bias_grad_ref(int32_t act, float alpha, int64_t rows, int64_t cols, const float* y, float* g, float* gb) {
    if (act != KILN_UNARY_IDENTITY && act != KILN_UNARY_RELU && act != KILN_UNARY_LEAKY_RELU) return false;
    if (gb != nullptr)
        for (int64_t j = 0; j < cols; ++j) gb[j] = 0.0f;
    for (int64_t r = 0; r < rows; ++r) {
        float* gr = g + r * cols;
        const float* yr = y + r * cols;
        if (act == KILN_UNARY_RELU)
            for (int64_t j = 0; j < cols; ++j) gr[j] = yr[j] > 0.0f ? gr[j] : 0.0f;
        else if (act == KILN_UNARY_LEAKY_RELU)
            for (int64_t j = 0; j < cols; ++j) gr[j] = yr[j] > 0.0f ? gr[j] : alpha * gr[j];
        if (gb != nullptr)
            for (int64_t j = 0; j < cols; ++j) gb[j] += gr[j];
    }
    return true;
}

double sum_squares_ref(int64_t n, const float* x) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
    return s;
}

bool act_grad_x_ref(int32_t, float, int64_t, const float*, const float*, float*, bool) { return false; }

}  // namespace kiln::train
