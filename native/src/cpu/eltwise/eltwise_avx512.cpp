// AVX-512 elementwise kernels (16 floats per vector, 4 vectors per iteration, tails masked).
// Compiled with AVX-512 F/BW/DQ/VL flags only; dispatch calls it only when the CPU has them.
// On Zen 4 a zmm op costs two ymm ops, so the gain over AVX2 is the masked tail, not width.
#include <immintrin.h>

#include <cmath>

#include "eltwise_kernels.hpp"

namespace kiln {
namespace {

template <int OP>
inline __m512 apply(__m512 a, __m512 b) {
    if constexpr (OP == KILN_BINARY_ADD) return _mm512_add_ps(a, b);
    if constexpr (OP == KILN_BINARY_SUB) return _mm512_sub_ps(a, b);
    if constexpr (OP == KILN_BINARY_MUL) return _mm512_mul_ps(a, b);
    if constexpr (OP == KILN_BINARY_DIV) return _mm512_div_ps(a, b);
    if constexpr (OP == KILN_BINARY_MAX || OP == KILN_BINARY_MIN) {
        // vmaxps returns b when either is NaN; put a back where a is NaN.
        const __m512 r = OP == KILN_BINARY_MAX ? _mm512_max_ps(a, b) : _mm512_min_ps(a, b);
        return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
    }
    return a;
}

template <int OP>
void binary_op(const float* a, int64_t as, const float* b, int64_t bs, float* out, int64_t n) {
    int64_t i = 0;
    const __m512 a0 = _mm512_set1_ps(a[0]), b0 = _mm512_set1_ps(b[0]);
    auto la = [&](int64_t k) { return as ? _mm512_loadu_ps(a + k) : a0; };
    auto lb = [&](int64_t k) { return bs ? _mm512_loadu_ps(b + k) : b0; };
    for (; i + 64 <= n; i += 64) {
        const __m512 r0 = apply<OP>(la(i), lb(i));
        const __m512 r1 = apply<OP>(la(i + 16), lb(i + 16));
        const __m512 r2 = apply<OP>(la(i + 32), lb(i + 32));
        const __m512 r3 = apply<OP>(la(i + 48), lb(i + 48));
        _mm512_storeu_ps(out + i, r0);
        _mm512_storeu_ps(out + i + 16, r1);
        _mm512_storeu_ps(out + i + 32, r2);
        _mm512_storeu_ps(out + i + 48, r3);
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, apply<OP>(la(i), lb(i)));
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1);
        const __m512 va = as ? _mm512_maskz_loadu_ps(m, a + i) : a0;
        const __m512 vb = bs ? _mm512_maskz_loadu_ps(m, b + i) : b0;
        _mm512_mask_storeu_ps(out + i, m, apply<OP>(va, vb));
    }
}

void binary_avx512(int op, const float* a, int64_t as, const float* b, int64_t bs, float* out,
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

void scale_avx512(const float* a, float alpha, float* out, int64_t n) {
    const __m512 s = _mm512_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        _mm512_storeu_ps(out + i, _mm512_mul_ps(s, _mm512_loadu_ps(a + i)));
        _mm512_storeu_ps(out + i + 16, _mm512_mul_ps(s, _mm512_loadu_ps(a + i + 16)));
        _mm512_storeu_ps(out + i + 32, _mm512_mul_ps(s, _mm512_loadu_ps(a + i + 32)));
        _mm512_storeu_ps(out + i + 48, _mm512_mul_ps(s, _mm512_loadu_ps(a + i + 48)));
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, _mm512_mul_ps(s, _mm512_loadu_ps(a + i)));
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, a + i)));
    }
}

double sum_avx512(const float* a, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1);
        s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(m, a + i));
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    double total = 0.0;
    for (float v : lanes) total += v;
    return total;
}

}  // namespace

void unary_avx512(int op, const float* a, float* out, int64_t n, float alpha);
void softmax_row_avx512(const float* x, float* y, int64_t n, bool log);
void layer_norm_row_avx512(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps,
                          float* mean_out, float* rstd_out);

const EltwiseKernels kEltwiseAvx512 = {KILN_ISA_AVX512, "eltwise_f32_avx512", binary_avx512,
                                       scale_avx512, sum_avx512, unary_avx512,
                                       softmax_row_avx512, layer_norm_row_avx512};

}  // namespace kiln

// ---- unary ops -------------------------------------------------------------------------------
#include "vmath_avx512.hpp"

namespace kiln {
namespace {

inline __m512 tanh512(__m512 x) {
    const __m512 ax = _mm512_abs_ps(x);
    // 1 - 2 / (exp(2|x|) + 1), and an odd series below 0.0625 where that formula cancels.
    const __m512 e = vmath512::exp(_mm512_add_ps(ax, ax));
    __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.0f),
                               _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    const __m512 x2 = _mm512_mul_ps(x, x);
    __m512 small = _mm512_fmadd_ps(_mm512_set1_ps(2.0f / 15), x2, _mm512_set1_ps(-1.0f / 3));
    small = _mm512_fmadd_ps(small, _mm512_mul_ps(x2, ax), ax);
    const __m512 y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.0625f), _CMP_LT_OQ), big, small);
    return _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(y), _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int(0x80000000u)))));
}

// exp(x) - 1 for x <= 0, with a series below 0.0625 in magnitude where the difference cancels.
inline __m512 expm1_neg512(__m512 x) {
    const __m512 big = _mm512_sub_ps(vmath512::exp(x), _mm512_set1_ps(1.0f));
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 120), x, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(0.5f));
    const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, x), x, x);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(0.0625f), _CMP_LT_OQ), big, small);
}

template <int OP>
inline __m512 unary_vec(__m512 x, float alpha) {
    if constexpr (OP == KILN_UNARY_IDENTITY) return x;
    if constexpr (OP == KILN_UNARY_RELU) return _mm512_max_ps(_mm512_setzero_ps(), x);  // NaN stays NaN
    if constexpr (OP == KILN_UNARY_LEAKY_RELU)
        return _mm512_mask_mul_ps(x, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), x, _mm512_set1_ps(alpha));
    if constexpr (OP == KILN_UNARY_GELU) {
        const __m512 e = vmath512::erf(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)));
        return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    }
    if constexpr (OP == KILN_UNARY_GELU_TANH) {
        const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        const __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
        return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), tanh512(u)));
    }
    if constexpr (OP == KILN_UNARY_SIGMOID)
        return _mm512_div_ps(_mm512_set1_ps(1.0f),
                             _mm512_add_ps(_mm512_set1_ps(1.0f), vmath512::exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
    if constexpr (OP == KILN_UNARY_TANH) return tanh512(x);
    if constexpr (OP == KILN_UNARY_EXP) return vmath512::exp(x);
    if constexpr (OP == KILN_UNARY_SQRT) return _mm512_sqrt_ps(x);
    if constexpr (OP == KILN_UNARY_NEG) return _mm512_sub_ps(_mm512_setzero_ps(), x);
    if constexpr (OP == KILN_UNARY_ABS) return _mm512_abs_ps(x);
    if constexpr (OP == KILN_UNARY_SQUARE) return _mm512_mul_ps(x, x);
    if constexpr (OP == KILN_UNARY_SILU)
        return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), vmath512::exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
    if constexpr (OP == KILN_UNARY_ELU || OP == KILN_UNARY_SELU) {
        const float a = OP == KILN_UNARY_ELU ? alpha : 1.67326324235437728f;
        const __m512 neg = _mm512_mul_ps(_mm512_set1_ps(a), expm1_neg512(_mm512_min_ps(x, _mm512_setzero_ps())));
        const __m512 y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), x, neg);
        return OP == KILN_UNARY_ELU ? y : _mm512_mul_ps(_mm512_set1_ps(1.05070098735548049f), y);
    }
    if constexpr (OP == KILN_UNARY_MISH) {
        // tanh(log(1 + e)) = n / (n + 2) with n = e (e + 2), e = exp(x); above 20 it is 1 in float.
        const __m512 e = vmath512::exp(_mm512_min_ps(_mm512_set1_ps(20.0f), x));
        const __m512 n = _mm512_mul_ps(e, _mm512_add_ps(e, _mm512_set1_ps(2.0f)));
        return _mm512_mul_ps(x, _mm512_div_ps(n, _mm512_add_ps(n, _mm512_set1_ps(2.0f))));
    }
    // x as max's second operand and max's result as min's: NaN stays NaN.
    if constexpr (OP == KILN_UNARY_BOUNDED_RELU)
        return _mm512_min_ps(_mm512_set1_ps(alpha), _mm512_max_ps(_mm512_setzero_ps(), x));
    if constexpr (OP == KILN_UNARY_HARDTANH)
        return _mm512_min_ps(_mm512_set1_ps(alpha), _mm512_max_ps(_mm512_set1_ps(-alpha), x));
    if constexpr (OP == KILN_UNARY_HARD_SIGMOID)
        return _mm512_min_ps(_mm512_set1_ps(1.0f),
                             _mm512_max_ps(_mm512_setzero_ps(), _mm512_fmadd_ps(_mm512_set1_ps(alpha), x, _mm512_set1_ps(0.5f))));
    if constexpr (OP == KILN_UNARY_HARD_SWISH) {
        const __m512 r6 = _mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(_mm512_setzero_ps(), _mm512_add_ps(x, _mm512_set1_ps(3.0f))));
        return _mm512_div_ps(_mm512_mul_ps(x, r6), _mm512_set1_ps(6.0f));
    }
    return x;
}

template <int OP>
void unary_op(const float* a, float* out, int64_t n, float alpha) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, unary_vec<OP>(_mm512_loadu_ps(a + i), alpha));
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, unary_vec<OP>(_mm512_maskz_loadu_ps(m, a + i), alpha));
    }
}

}  // namespace

void unary_avx2(int op, const float* a, float* out, int64_t n, float alpha);  // eltwise_avx2.cpp

void unary_avx512(int op, const float* a, float* out, int64_t n, float alpha) {
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
        case KILN_UNARY_BOUNDED_RELU: return unary_op<KILN_UNARY_BOUNDED_RELU>(a, out, n, alpha);
        case KILN_UNARY_HARDTANH: return unary_op<KILN_UNARY_HARDTANH>(a, out, n, alpha);
        case KILN_UNARY_HARD_SIGMOID: return unary_op<KILN_UNARY_HARD_SIGMOID>(a, out, n, alpha);
        case KILN_UNARY_HARD_SWISH: return unary_op<KILN_UNARY_HARD_SWISH>(a, out, n, alpha);
        case KILN_UNARY_LOG:
        case KILN_UNARY_SOFTPLUS:  // the AVX2 versions (vmath256::log; no 512-bit log yet)
            return unary_avx2(op, a, out, n, alpha);
        default:
            for (int64_t i = 0; i < n; ++i) out[i] = unary_scalar(op, a[i], alpha);
    }
}

}  // namespace kiln

// ---- softmax and layer norm rows ---------------------------------------------------------------
namespace kiln {

namespace {
inline float hmax(__m512 v) {
    alignas(64) float l[16];
    _mm512_store_ps(l, v);
    float m = l[0];
    for (int i = 1; i < 16; ++i) m = l[i] > m ? l[i] : m;
    return m;
}
inline double hsum(__m512 v) {
    alignas(64) float l[16];
    _mm512_store_ps(l, v);
    double s = 0;
    for (int i = 0; i < 16; ++i) s += l[i];
    return s;
}
}  // namespace

void softmax_row_avx512(const float* x, float* y, int64_t n, bool log) {
    if (n == 0) return;
    // NaN anywhere makes the row NaN, as in the reference.
    float mx = x[0];
    __m512 vmax = _mm512_set1_ps(x[0]);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
    mx = hmax(vmax);
    for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
    const __m512 vm = _mm512_set1_ps(mx);
    __m512 vs = _mm512_setzero_ps();
    double sum = 0;
    i = 0;
    if (log) {
        for (; i + 16 <= n; i += 16) vs = _mm512_add_ps(vs, vmath512::exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
        sum = hsum(vs);
        for (; i < n; ++i) sum += std::exp(double(x[i] - mx));
        if (sum != sum) {  // a NaN (or an infinity minus itself) in the row: the row is NaN
            for (i = 0; i < n; ++i) y[i] = sum;
            return;
        }
        const float shift = mx + float(std::log(sum));
        const __m512 vshift = _mm512_set1_ps(shift);
        i = 0;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_loadu_ps(x + i), vshift));
        for (; i < n; ++i) y[i] = x[i] - shift;
        return;
    }
    for (; i + 16 <= n; i += 16) {
        const __m512 e = vmath512::exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(y + i, e);
        vs = _mm512_add_ps(vs, e);
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
    const __m512 inv = _mm512_set1_ps(float(1.0 / sum));
    i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
    for (; i < n; ++i) y[i] *= float(1.0 / sum);
}

void layer_norm_row_avx512(const float* x, float* y, int64_t n, const float* gamma, const float* beta, float eps,
                          float* mean_out, float* rstd_out) {
    double sum = 0;
    {
        __m512 s0 = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        sum = hsum(s0);
        for (; i < n; ++i) sum += x[i];
    }
    const float mean = n > 0 ? float(sum / double(n)) : 0.0f;
    const __m512 vmean = _mm512_set1_ps(mean);
    double sq = 0;
    {
        __m512 s0 = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), vmean);
            s0 = _mm512_fmadd_ps(d, d, s0);
        }
        sq = hsum(s0);
        for (; i < n; ++i) sq += double(x[i] - mean) * double(x[i] - mean);
    }
    const float rstd = float(1.0 / std::sqrt((n > 0 ? sq / double(n) : 0.0) + eps));
    const __m512 vr = _mm512_set1_ps(rstd);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmean), vr);
        if (gamma) v = _mm512_mul_ps(v, _mm512_loadu_ps(gamma + i));
        if (beta) v = _mm512_add_ps(v, _mm512_loadu_ps(beta + i));
        _mm512_storeu_ps(y + i, v);
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
