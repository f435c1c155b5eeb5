// AVX2+FMA elementwise kernels (8 floats per vector, 4 vectors per iteration).
// Compiled with -mavx2 -mfma -mf16c only; dispatch calls it only when the CPU has AVX2.
#include <immintrin.h>

#include <cmath>

#include "eltwise_kernels.hpp"

namespace kiln {
namespace {

template <int OP>
inline __m256 apply(__m256 a, __m256 b) {
    if constexpr (OP == KILN_BINARY_ADD) return _mm256_add_ps(a, b);
    if constexpr (OP == KILN_BINARY_SUB) return _mm256_sub_ps(a, b);
    if constexpr (OP == KILN_BINARY_MUL) return _mm256_mul_ps(a, b);
    if constexpr (OP == KILN_BINARY_DIV) return _mm256_div_ps(a, b);
    if constexpr (OP == KILN_BINARY_MAX || OP == KILN_BINARY_MIN) {
        // maxps(a, b) returns b when either is NaN; put a back where a is NaN.
        const __m256 r = OP == KILN_BINARY_MAX ? _mm256_max_ps(a, b) : _mm256_min_ps(a, b);
        return _mm256_blendv_ps(r, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    }
    return a;
}

template <int OP>
void binary_op(const float* a, int64_t as, const float* b, int64_t bs, float* out, int64_t n) {
    int64_t i = 0;
    const __m256 a0 = _mm256_set1_ps(a[0]), b0 = _mm256_set1_ps(b[0]);
    auto la = [&](int64_t k) { return as ? _mm256_loadu_ps(a + k) : a0; };
    auto lb = [&](int64_t k) { return bs ? _mm256_loadu_ps(b + k) : b0; };
    for (; i + 32 <= n; i += 32) {
        const __m256 r0 = apply<OP>(la(i), lb(i));
        const __m256 r1 = apply<OP>(la(i + 8), lb(i + 8));
        const __m256 r2 = apply<OP>(la(i + 16), lb(i + 16));
        const __m256 r3 = apply<OP>(la(i + 24), lb(i + 24));
        _mm256_storeu_ps(out + i, r0);
        _mm256_storeu_ps(out + i + 8, r1);
        _mm256_storeu_ps(out + i + 16, r2);
        _mm256_storeu_ps(out + i + 24, r3);
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, apply<OP>(la(i), lb(i)));
    for (; i < n; ++i) out[i] = binary_scalar(OP, a[i * as], b[i * bs]);
}

void binary_avx2(int op, const float* a, int64_t as, const float* b, int64_t bs, float* out,
                 int64_t n) {
    switch (op) {
        case KILN_BINARY_ADD: return binary_op<KILN_BINARY_ADD>(a, as, b, bs, out, n);
        case KILN_BINARY_SUB: return binary_op<KILN_BINARY_SUB>(a, as, b, bs, out, n);
        case KILN_BINARY_MUL: return binary_op<KILN_BINARY_MUL>(a, as, b, bs, out, n);
        case KILN_BINARY_DIV: return binary_op<KILN_BINARY_DIV>(a, as, b, bs, out, n);
        case KILN_BINARY_MAX: return binary_op<KILN_BINARY_MAX>(a, as, b, bs, out, n);
        case KILN_BINARY_MIN: return binary_op<KILN_BINARY_MIN>(a, as, b, bs, out, n);
        default: return;
    }
}

void scale_avx2(const float* a, float alpha, float* out, int64_t n) {
    const __m256 s = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(a + i)));
        _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(s, _mm256_loadu_ps(a + i + 8)));
        _mm256_storeu_ps(out + i + 16, _mm256_mul_ps(s, _mm256_loadu_ps(a + i + 16)));
        _mm256_storeu_ps(out + i + 24, _mm256_mul_ps(s, _mm256_loadu_ps(a + i + 24)));
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(a + i)));
    for (; i < n; ++i) out[i] = alpha * a[i];
}

double sum_avx2(const float* a, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    double total = 0.0;
    for (float v : lanes) total += v;
    for (; i < n; ++i) total += a[i];
    return total;
}

}  // namespace

void unary_avx2(int op, const float* a, float* out, int64_t n, float alpha);
void softmax_row_avx2(const float* x, float* y, int64_t n, bool log);
void layer_norm_row_avx2(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps,
                          float* mean_out, float* rstd_out);

const EltwiseKernels kEltwiseAvx2 = {KILN_ISA_AVX2, "eltwise_f32_avx2", binary_avx2, scale_avx2,
                                     sum_avx2, unary_avx2,
                                       softmax_row_avx2, layer_norm_row_avx2};

}  // namespace kiln

// ---- unary ops -------------------------------------------------------------------------------
#include "vmath_avx2.hpp"

namespace kiln {
namespace {

inline __m256 sign_bit() { return _mm256_castsi256_ps(_mm256_set1_epi32(int(0x80000000u))); }

inline __m256 tanh256(__m256 x) {
    const __m256 ax = _mm256_andnot_ps(sign_bit(), x);
    const __m256 e = vmath256::exp(_mm256_add_ps(ax, ax));
    const __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                                     _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    const __m256 x2 = _mm256_mul_ps(x, x);
    __m256 small = _mm256_fmadd_ps(_mm256_set1_ps(2.0f / 15), x2, _mm256_set1_ps(-1.0f / 3));
    small = _mm256_fmadd_ps(small, _mm256_mul_ps(x2, ax), ax);
    const __m256 y = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.0625f), _CMP_LT_OQ));
    return _mm256_or_ps(y, _mm256_and_ps(x, sign_bit()));
}

// exp(x) - 1 for x <= 0, with a series below 0.0625 in magnitude where the difference cancels.
inline __m256 expm1_neg256(__m256 x) {
    const __m256 big = _mm256_sub_ps(vmath256::exp(x), _mm256_set1_ps(1.0f));
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 120), x, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(0.5f));
    const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, x), x, x);
    const __m256 ax = _mm256_andnot_ps(sign_bit(), x);
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.0625f), _CMP_LT_OQ));
}

template <int OP>
inline __m256 unary_vec(__m256 x, float alpha) {
    if constexpr (OP == KILN_UNARY_IDENTITY) return x;
    if constexpr (OP == KILN_UNARY_RELU) return _mm256_max_ps(_mm256_setzero_ps(), x);
    if constexpr (OP == KILN_UNARY_LEAKY_RELU)
        return _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(alpha)),
                                _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    if constexpr (OP == KILN_UNARY_GELU) {
        const __m256 e = vmath256::erf(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    }
    if constexpr (OP == KILN_UNARY_GELU_TANH) {
        const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), tanh256(u)));
    }
    if constexpr (OP == KILN_UNARY_SIGMOID)
        return _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_add_ps(_mm256_set1_ps(1.0f), vmath256::exp(_mm256_sub_ps(_mm256_setzero_ps(), x))));
    if constexpr (OP == KILN_UNARY_TANH) return tanh256(x);
    if constexpr (OP == KILN_UNARY_EXP) return vmath256::exp(x);
    if constexpr (OP == KILN_UNARY_SQRT) return _mm256_sqrt_ps(x);
    if constexpr (OP == KILN_UNARY_NEG) return _mm256_xor_ps(x, sign_bit());
    if constexpr (OP == KILN_UNARY_ABS) return _mm256_andnot_ps(sign_bit(), x);
    if constexpr (OP == KILN_UNARY_SQUARE) return _mm256_mul_ps(x, x);
    if constexpr (OP == KILN_UNARY_SILU)
        return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), vmath256::exp(_mm256_sub_ps(_mm256_setzero_ps(), x))));
    if constexpr (OP == KILN_UNARY_ELU || OP == KILN_UNARY_SELU) {
        const float a = OP == KILN_UNARY_ELU ? alpha : 1.67326324235437728f;
        const __m256 neg = _mm256_mul_ps(_mm256_set1_ps(a), expm1_neg256(_mm256_min_ps(x, _mm256_setzero_ps())));
        const __m256 y = _mm256_blendv_ps(x, neg, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
        return OP == KILN_UNARY_ELU ? y : _mm256_mul_ps(_mm256_set1_ps(1.05070098735548049f), y);
    }
    if constexpr (OP == KILN_UNARY_LOG) return vmath256::log(x);
    if constexpr (OP == KILN_UNARY_SOFTPLUS) {
        // max(x, 0) + log1p(exp(-|x|)); log1p(u) = log(w) - ((w - 1) - u) / w with w = 1 + u (exact
        // where w rounds to 1: then it is u)
        const __m256 u = vmath256::exp(_mm256_or_ps(x, sign_bit()));  // exp(-|x|)
        const __m256 w = _mm256_add_ps(_mm256_set1_ps(1.0f), u);
        const __m256 l = _mm256_sub_ps(vmath256::log(w),
                                       _mm256_div_ps(_mm256_sub_ps(_mm256_sub_ps(w, _mm256_set1_ps(1.0f)), u), w));
        return _mm256_add_ps(_mm256_max_ps(_mm256_setzero_ps(), x), l);
    }
    if constexpr (OP == KILN_UNARY_MISH) {
        // tanh(log(1 + e)) = n / (n + 2) with n = e (e + 2), e = exp(x); above 20 it is 1 in float.
        const __m256 e = vmath256::exp(_mm256_min_ps(_mm256_set1_ps(20.0f), x));
        const __m256 n = _mm256_mul_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
        return _mm256_mul_ps(x, _mm256_div_ps(n, _mm256_add_ps(n, _mm256_set1_ps(2.0f))));
    }
    // x as max's second operand and max's result as min's: NaN stays NaN.
    if constexpr (OP == KILN_UNARY_BOUNDED_RELU)
        return _mm256_min_ps(_mm256_set1_ps(alpha), _mm256_max_ps(_mm256_setzero_ps(), x));
    if constexpr (OP == KILN_UNARY_HARDTANH)
        return _mm256_min_ps(_mm256_set1_ps(alpha), _mm256_max_ps(_mm256_set1_ps(-alpha), x));
    if constexpr (OP == KILN_UNARY_HARD_SIGMOID)
        return _mm256_min_ps(_mm256_set1_ps(1.0f),
                             _mm256_max_ps(_mm256_setzero_ps(), _mm256_fmadd_ps(_mm256_set1_ps(alpha), x, _mm256_set1_ps(0.5f))));
    if constexpr (OP == KILN_UNARY_HARD_SWISH) {
        const __m256 r6 = _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(_mm256_setzero_ps(), _mm256_add_ps(x, _mm256_set1_ps(3.0f))));
        return _mm256_div_ps(_mm256_mul_ps(x, r6), _mm256_set1_ps(6.0f));
    }
    return x;
}

template <int OP>
void unary_op(const float* a, float* out, int64_t n, float alpha) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, unary_vec<OP>(_mm256_loadu_ps(a + i), alpha));
    for (; i < n; ++i) out[i] = unary_scalar(OP, a[i], alpha);
}

}  // namespace

void unary_avx2(int op, const float* a, float* out, int64_t n, float alpha) {
    switch (op) {
        case KILN_UNARY_IDENTITY: return unary_op<KILN_UNARY_IDENTITY>(a, out, n, alpha);
        case KILN_UNARY_RELU: return unary_op<KILN_UNARY_RELU>(a, out, n, alpha);
        case KILN_UNARY_LEAKY_RELU: return unary_op<KILN_UNARY_LEAKY_RELU>(a, out, n, alpha);
        case KILN_UNARY_GELU: return unary_op<KILN_UNARY_GELU>(a, out, n, alpha);
        case KILN_UNARY_GELU_TANH: return unary_op<KILN_UNARY_GELU_TANH>(a, out, n, alpha);
        case KILN_UNARY_SIGMOID: return unary_op<KILN_UNARY_SIGMOID>(a, out, n, alpha);
        case KILN_UNARY_TANH: return unary_op<KILN_UNARY_TANH>(a, out, n, alpha);
        case KILN_UNARY_EXP: return unary_op<KILN_UNARY_EXP>(a, out, n, alpha);
        case KILN_UNARY_SQRT: return unary_op<KILN_UNARY_SQRT>(a, out, n, alpha);
        case KILN_UNARY_NEG: return unary_op<KILN_UNARY_NEG>(a, out, n, alpha);
        case KILN_UNARY_ABS: return unary_op<KILN_UNARY_ABS>(a, out, n, alpha);
        case KILN_UNARY_SQUARE: return unary_op<KILN_UNARY_SQUARE>(a, out, n, alpha);
        case KILN_UNARY_SILU: return unary_op<KILN_UNARY_SILU>(a, out, n, alpha);
        case KILN_UNARY_ELU: return unary_op<KILN_UNARY_ELU>(a, out, n, alpha);
        case KILN_UNARY_SELU: return unary_op<KILN_UNARY_SELU>(a, out, n, alpha);
        case KILN_UNARY_MISH: return unary_op<KILN_UNARY_MISH>(a, out, n, alpha);
        case KILN_UNARY_LOG: return unary_op<KILN_UNARY_LOG>(a, out, n, alpha);
        case KILN_UNARY_SOFTPLUS: return unary_op<KILN_UNARY_SOFTPLUS>(a, out, n, alpha);
        case KILN_UNARY_BOUNDED_RELU: return unary_op<KILN_UNARY_BOUNDED_RELU>(a, out, n, alpha);
        case KILN_UNARY_HARDTANH: return unary_op<KILN_UNARY_HARDTANH>(a, out, n, alpha);
        case KILN_UNARY_HARD_SIGMOID: return unary_op<KILN_UNARY_HARD_SIGMOID>(a, out, n, alpha);
        case KILN_UNARY_HARD_SWISH: return unary_op<KILN_UNARY_HARD_SWISH>(a, out, n, alpha);
        default:
            for (int64_t i = 0; i < n; ++i) out[i] = unary_scalar(op, a[i], alpha);
    }
}

}  // namespace kiln

// ---- softmax and layer norm rows ---------------------------------------------------------------
namespace kiln {

namespace {
inline float hmax(__m256 v) {
    alignas(64) float l[8];
    _mm256_store_ps(l, v);
    float m = l[0];
    for (int i = 1; i < 8; ++i) m = l[i] > m ? l[i] : m;
    return m;
}
inline double hsum(__m256 v) {
    alignas(64) float l[8];
    _mm256_store_ps(l, v);
    double s = 0;
    for (int i = 0; i < 8; ++i) s += l[i];
    return s;
}
}  // namespace

void softmax_row_avx2(const float* x, float* y, int64_t n, bool log) {
    if (n == 0) return;
    // NaN anywhere makes the row NaN, as in the reference.
    float mx = x[0];
    __m256 vmax = _mm256_set1_ps(x[0]);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    mx = hmax(vmax);
    for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 vs = _mm256_setzero_ps();
    double sum = 0;
    i = 0;
    if (log) {
        for (; i + 8 <= n; i += 8) vs = _mm256_add_ps(vs, vmath256::exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
        sum = hsum(vs);
        for (; i < n; ++i) sum += std::exp(double(x[i] - mx));
        if (sum != sum) {  // a NaN (or an infinity minus itself) in the row: the row is NaN
            for (i = 0; i < n; ++i) y[i] = sum;
            return;
        }
        const float shift = mx + float(std::log(sum));
        const __m256 vshift = _mm256_set1_ps(shift);
        i = 0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), vshift));
        for (; i < n; ++i) y[i] = x[i] - shift;
        return;
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 e = vmath256::exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(y + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    sum = hsum(vs);
    for (; i < n; ++i) {
        const float e = float(std::exp(double(x[i] - mx)));
        y[i] = e;
        sum += e;
    }
    if (sum != sum) {
        for (i = 0; i < n; ++i) y[i] = float(sum);
        return;
    }
    const __m256 inv = _mm256_set1_ps(float(1.0 / sum));
    i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
    for (; i < n; ++i) y[i] *= float(1.0 / sum);
}

void layer_norm_row_avx2(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps,
                          float* mean_out, float* rstd_out) {
    double sum = 0;
    {
        __m256 s0 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
        sum = hsum(s0);
        for (; i < n; ++i) sum += x[i];
    }
    const float mean = n > 0 ? float(sum / double(n)) : 0.0f;
    const __m256 vmean = _mm256_set1_ps(mean);
    double sq = 0;
    {
        __m256 s0 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vmean);
            s0 = _mm256_fmadd_ps(d, d, s0);
        }
        sq = hsum(s0);
        for (; i < n; ++i) sq += double(x[i] - mean) * double(x[i] - mean);
    }
    const float rstd = float(1.0 / std::sqrt((n > 0 ? sq / double(n) : 0.0) + eps));
    const __m256 vr = _mm256_set1_ps(rstd);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmean), vr);
        if (gamma) v = _mm256_mul_ps(v, _mm256_loadu_ps(gamma + i));
        if (beta) v = _mm256_add_ps(v, _mm256_loadu_ps(beta + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; ++i) {
        float v = (x[i] - mean) * rstd;
        if (gamma) v *= gamma[i];
        if (beta) v += beta[i];
        y[i] = v;
    }
    if (mean_out) *mean_out = mean;
    if (rstd_out) *rstd_out = rstd;
}

}  // namespace kiln
