// Portable elementwise kernels: the reference every ISA variant is tested against, and the path
// for CPUs without AVX2.
#include <cmath>

#include "eltwise_kernels.hpp"

namespace kiln {
namespace {

void binary_ref(int op, const float* a, int64_t as, const float* b, int64_t bs, float* out,
                int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = binary_scalar(op, a[i * as], b[i * bs]);
}

void scale_ref(const float* a, float alpha, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = alpha * a[i];
}

double sum_ref(const float* a, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += a[i];
    return s;
}

void unary_ref(int op, const float* a, float* out, int64_t n, float alpha) {
    for (int64_t i = 0; i < n; ++i) out[i] = unary_scalar(op, a[i], alpha);
}

void softmax_row_ref(const float* x, float* y, int64_t n, bool log) {
    if (n == 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; ++i) mx = (x[i] > mx || x[i] != x[i]) ? x[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(double(x[i] - mx));
    if (log) {
        const float ls = float(std::log(sum));
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] - mx - ls;
    } else {
        const double inv = 1.0 / sum;
        for (int64_t i = 0; i < n; ++i) y[i] = float(std::exp(double(x[i] - mx)) * inv);
    }
}

void layer_norm_row_ref(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps,
                        float* mean_out, float* rstd_out) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += x[i];
    const double mean = n > 0 ? sum / double(n) : 0.0;
    double sq = 0;
    for (int64_t i = 0; i < n; ++i) sq += (x[i] - mean) * (x[i] - mean);
    const double var = n > 0 ? sq / double(n) : 0.0;
    const float rstd = float(1.0 / std::sqrt(var + eps));
    const float m = float(mean);
    for (int64_t i = 0; i < n; ++i) {
        float v = (x[i] - m) * rstd;
        if (gamma) v *= gamma[i];
        if (beta) v += beta[i];
        y[i] = v;
    }
    if (mean_out) *mean_out = m;
    if (rstd_out) *rstd_out = rstd;
}

}  // namespace

float unary_scalar(int op, float x, float alpha) {
    switch (op) {
        case KILN_UNARY_IDENTITY: return x;
        case KILN_UNARY_RELU: return x < 0.0f ? 0.0f : x;
        case KILN_UNARY_LEAKY_RELU: return x < 0.0f ? alpha * x : x;
        case KILN_UNARY_GELU: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
        case KILN_UNARY_GELU_TANH: {
            const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            return 0.5f * x * (1.0f + std::tanh(u));
        }
        case KILN_UNARY_SIGMOID: return 1.0f / (1.0f + std::exp(-x));
        case KILN_UNARY_TANH: return std::tanh(x);
        case KILN_UNARY_EXP: return std::exp(x);
        case KILN_UNARY_LOG: return std::log(x);
        case KILN_UNARY_SQRT: return std::sqrt(x);
        case KILN_UNARY_NEG: return -x;
        case KILN_UNARY_ABS: return std::fabs(x);
        case KILN_UNARY_SQUARE: return x * x;
        case KILN_UNARY_SILU: return x / (1.0f + std::exp(-x));
        case KILN_UNARY_ELU: return x > 0.0f ? x : alpha * std::expm1(x);
        case KILN_UNARY_SOFTPLUS: return x > 0.0f ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
        case KILN_UNARY_SELU: return 1.05070098735548049f * (x > 0.0f ? x : 1.67326324235437728f * std::expm1(x));
        case KILN_UNARY_MISH: {
            const float sp = x > 0.0f ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
            return x * std::tanh(sp);
        }
        case KILN_UNARY_BOUNDED_RELU: return x < 0.0f ? 0.0f : (x > alpha ? alpha : x);
        case KILN_UNARY_HARDTANH: return x < -alpha ? -alpha : (x > alpha ? alpha : x);
        case KILN_UNARY_HARD_SIGMOID: {
            const float v = alpha * x + 0.5f;
            return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
        }
        case KILN_UNARY_HARD_SWISH: {
            const float v = x + 3.0f;
            return x * (v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v)) / 6.0f;
        }
        default: return x;
    }
}

const EltwiseKernels kEltwiseRef = {KILN_ISA_PORTABLE, "eltwise_f32_ref", binary_ref, scale_ref,
                                    sum_ref, unary_ref, softmax_row_ref,
                                    layer_norm_row_ref};

}  // namespace kiln
