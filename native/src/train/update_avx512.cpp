// AVX-512 optimizer updates: 16 parameters per iteration, the tail through a mask. Same formulas,
// in the same order, as update_ref.cpp.
#include <immintrin.h>

#include "update.hpp"

namespace kiln::train {

void update_avx512(const UpdateArgs& a, int64_t n, float* value, const float* grad, float* m, float* v) {
    const __m512 scale = _mm512_set1_ps(a.grad_scale), l2 = _mm512_set1_ps(a.l2), decay = _mm512_set1_ps(a.decay);
    const __m512 lr = _mm512_set1_ps(a.lr), mom = _mm512_set1_ps(a.momentum);
    const __m512 b1 = _mm512_set1_ps(a.beta1), b2 = _mm512_set1_ps(a.beta2);
    const __m512 ob1 = _mm512_set1_ps(1.0f - a.beta1), ob2 = _mm512_set1_ps(1.0f - a.beta2);
    const __m512 ss = _mm512_set1_ps(a.step_size), ibc2 = _mm512_set1_ps(a.inv_sqrt_bc2), eps = _mm512_set1_ps(a.eps);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        __m512 w = _mm512_maskz_loadu_ps(k, value + i);
        __m512 g = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, grad + i), scale), _mm512_mul_ps(l2, w));
        w = _mm512_sub_ps(w, _mm512_mul_ps(decay, w));
        switch (a.kind) {
            case KILN_OPT_SGD:
                if (a.momentum != 0.0f) {
                    const __m512 buf = _mm512_add_ps(_mm512_mul_ps(mom, _mm512_maskz_loadu_ps(k, m + i)), g);
                    _mm512_mask_storeu_ps(m + i, k, buf);
                    g = a.nesterov ? _mm512_add_ps(g, _mm512_mul_ps(mom, buf)) : buf;
                }
                w = _mm512_sub_ps(w, _mm512_mul_ps(lr, g));
                break;
            case KILN_OPT_ADAM:
            case KILN_OPT_ADAMW: {
                const __m512 mi = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_maskz_loadu_ps(k, m + i)), _mm512_mul_ps(ob1, g));
                const __m512 vi = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_maskz_loadu_ps(k, v + i)),
                                                _mm512_mul_ps(_mm512_mul_ps(ob2, g), g));
                _mm512_mask_storeu_ps(m + i, k, mi);
                _mm512_mask_storeu_ps(v + i, k, vi);
                const __m512 den = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), ibc2), eps);
                // 1/den: rcp14 and one Newton step (about 1 ulp) instead of a division.
                __m512 r = _mm512_rcp14_ps(den);
                // (den = +Inf: rcp14 gives 0 and the Newton step would make 0 * Inf = NaN; keep the 0.)
                r = _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(r, _mm512_setzero_ps(), _CMP_NEQ_OQ), r,
                                        _mm512_fnmadd_ps(den, r, _mm512_set1_ps(2.0f)));
                w = _mm512_sub_ps(w, _mm512_mul_ps(_mm512_mul_ps(ss, mi), r));
                break;
            }
            case KILN_OPT_RMSPROP: {
                const __m512 vi = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_maskz_loadu_ps(k, v + i)),
                                                _mm512_mul_ps(_mm512_mul_ps(ob2, g), g));
                _mm512_mask_storeu_ps(v + i, k, vi);
                w = _mm512_sub_ps(w, _mm512_div_ps(_mm512_mul_ps(lr, g), _mm512_add_ps(_mm512_sqrt_ps(vi), eps)));
                break;
            }
            default:
                break;
        }
        _mm512_mask_storeu_ps(value + i, k, w);
    }
}

double sum_squares_avx512(int64_t n, const float* x) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m512d lo = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 0));
        const __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
        s0 = _mm512_fmadd_pd(lo, lo, s0);
        s1 = _mm512_fmadd_pd(hi, hi, s1);
    }
    alignas(64) double lanes[8];
    _mm512_store_pd(lanes, _mm512_add_pd(s0, s1));
    double s = 0;
    for (double l : lanes) s += l;
    for (; i < n; ++i) s += double(x[i]) * double(x[i]);
    return s;
}

}  // namespace kiln::train
