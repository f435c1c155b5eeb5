// AVX2+FMA optimizer updates and training helpers: 8 parameters per iteration. The tail goes
// through masked loads and stores with the same arithmetic as the body, so a parameter's new value
// does not depend on where a thread's chunk ends (results stay identical for any thread count).
//
// Before this file, machines without AVX-512 ran the scalar reference (a sqrt and a division per
// parameter, the optimizer switch per element): on the Fashion-MNIST MLP at batch 128, 1 thread,
// the update took 53% of the step (perf, KILN_ISA=avx2 on this Zen 4, whose 256-bit FMA peak is its
// 512-bit one): target/bench/bench_train 128 1 went from ~32k to ~79-81k samples/s (AVX-512: ~99k).
// Adam's division by rcpps and a Newton step: 85.2k -> 88.6k (with the AVX2 direct GEMM kernels).
#include <immintrin.h>

#include <cmath>

#include "cpu/eltwise/vmath_avx2.hpp"
#include "update.hpp"

namespace kiln::train {
namespace {

struct Consts {
    __m256 scale, l2, decay, lr, mom, b1, b2, ob1, ob2, ss, ibc2, eps;
    explicit Consts(const UpdateArgs& a)
        : scale(_mm256_set1_ps(a.grad_scale)), l2(_mm256_set1_ps(a.l2)), decay(_mm256_set1_ps(a.decay)),
          lr(_mm256_set1_ps(a.lr)), mom(_mm256_set1_ps(a.momentum)), b1(_mm256_set1_ps(a.beta1)),
          b2(_mm256_set1_ps(a.beta2)), ob1(_mm256_set1_ps(1.0f - a.beta1)), ob2(_mm256_set1_ps(1.0f - a.beta2)),
          ss(_mm256_set1_ps(a.step_size)), ibc2(_mm256_set1_ps(a.inv_sqrt_bc2)), eps(_mm256_set1_ps(a.eps)) {}
};

inline __m256i lanes_below(int64_t n) {  // lanes < n set (n in 0..8)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <bool Full>
inline __m256 load(__m256i k, const float* p) {
    if constexpr (Full) return _mm256_loadu_ps(p);
    else return _mm256_maskload_ps(p, k);
}

template <bool Full>
inline void store(float* p, __m256i k, __m256 x) {
    if constexpr (Full) _mm256_storeu_ps(p, x);
    else _mm256_maskstore_ps(p, k, x);
}

// 1/x from rcpps (12 bits) and one Newton step (~2 ulp) instead of a division, as update_avx512
// does with rcp14. x = +Inf: rcpps gives 0 and the Newton step would make 0 * Inf = NaN; keep the 0.
inline __m256 reciprocal(__m256 x) {
    const __m256 r = _mm256_rcp_ps(x);
    const __m256 refined = _mm256_mul_ps(r, _mm256_fnmadd_ps(x, r, _mm256_set1_ps(2.0f)));
    return _mm256_and_ps(refined, _mm256_cmp_ps(r, _mm256_setzero_ps(), _CMP_NEQ_OQ));
}

// One vector of 8 parameters at offset i (k: the lanes to touch when !Full). Plain: no clipping
// scale, no L2, no decoupled decay. The formulas and their order are update_avx512's.
template <int Kind, bool Full, bool Plain>
inline void update8(const Consts& c, bool momentum, bool nesterov, __m256i k, int64_t i, float* value,
                    const float* grad, float* m, float* v) {
    __m256 w = load<Full>(k, value + i);
    __m256 g = load<Full>(k, grad + i);
    if constexpr (!Plain) {
        g = _mm256_add_ps(_mm256_mul_ps(g, c.scale), _mm256_mul_ps(c.l2, w));
        w = _mm256_sub_ps(w, _mm256_mul_ps(c.decay, w));
    }
    if constexpr (Kind == KILN_OPT_SGD) {
        if (momentum) {
            const __m256 buf = _mm256_add_ps(_mm256_mul_ps(c.mom, load<Full>(k, m + i)), g);
            store<Full>(m + i, k, buf);
            g = nesterov ? _mm256_add_ps(g, _mm256_mul_ps(c.mom, buf)) : buf;
        }
        w = _mm256_sub_ps(w, _mm256_mul_ps(c.lr, g));
    } else if constexpr (Kind == KILN_OPT_ADAM) {  // Adam and AdamW (the decay is applied above)
        const __m256 mi = _mm256_fmadd_ps(c.b1, load<Full>(k, m + i), _mm256_mul_ps(c.ob1, g));
        const __m256 vi = _mm256_fmadd_ps(c.b2, load<Full>(k, v + i), _mm256_mul_ps(_mm256_mul_ps(c.ob2, g), g));
        store<Full>(m + i, k, mi);
        store<Full>(v + i, k, vi);
        const __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(vi), c.ibc2, c.eps);
        w = _mm256_fnmadd_ps(_mm256_mul_ps(c.ss, mi), reciprocal(den), w);
    } else {  // RMSprop
        const __m256 vi = _mm256_add_ps(_mm256_mul_ps(c.b2, load<Full>(k, v + i)),
                                        _mm256_mul_ps(_mm256_mul_ps(c.ob2, g), g));
        store<Full>(v + i, k, vi);
        w = _mm256_sub_ps(w, _mm256_div_ps(_mm256_mul_ps(c.lr, g), _mm256_add_ps(_mm256_sqrt_ps(vi), c.eps)));
    }
    store<Full>(value + i, k, w);
}

template <int Kind, bool Plain>
void run_loop(const Consts& c, bool momentum, bool nesterov, int64_t n, float* value, const float* grad, float* m,
              float* v) {
    const __m256i all = _mm256_set1_epi32(-1);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) update8<Kind, true, Plain>(c, momentum, nesterov, all, i, value, grad, m, v);
    if (i < n) update8<Kind, false, Plain>(c, momentum, nesterov, lanes_below(n - i), i, value, grad, m, v);
}

template <int Kind>
void run(const UpdateArgs& a, int64_t n, float* value, const float* grad, float* m, float* v) {
    const Consts c(a);
    const bool momentum = a.momentum != 0.0f, nesterov = a.nesterov != 0;
    if (a.grad_scale == 1.0f && a.l2 == 0.0f && a.decay == 0.0f)
        run_loop<Kind, true>(c, momentum, nesterov, n, value, grad, m, v);
    else
        run_loop<Kind, false>(c, momentum, nesterov, n, value, grad, m, v);
}

}  // namespace

void update_avx2(const UpdateArgs& a, int64_t n, float* value, const float* grad, float* m, float* v) {
    switch (a.kind) {
        case KILN_OPT_SGD: run<KILN_OPT_SGD>(a, n, value, grad, m, v); break;
        case KILN_OPT_ADAM:
        case KILN_OPT_ADAMW: run<KILN_OPT_ADAM>(a, n, value, grad, m, v); break;
        case KILN_OPT_RMSPROP: run<KILN_OPT_RMSPROP>(a, n, value, grad, m, v); break;
        default: break;
    }
}

float max_abs_avx2(int64_t n, const float* x) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lim = _mm256_set1_ps(3.4028234663852886e38f);
    __m256 mx = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, lim, _CMP_NLE_UQ));  // NaN or > FLT_MAX (Inf)
        mx = _mm256_max_ps(mx, a);
    }
    if (_mm256_movemask_ps(bad) != 0) return INFINITY;
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, mx);
    float m = 0.0f;
    for (float l : lanes) m = l > m ? l : m;
    for (; i < n; ++i) {
        const float a = std::fabs(x[i]);
        if (!(a <= 3.4028234663852886e38f)) return INFINITY;
        m = a > m ? a : m;
    }
    return m;
}

namespace {

// Columns [c0, c0 + 8 * V) over all rows (V strips of 8, or one masked strip when Full is false):
// g = g * act'(y) in place and, per column, the sum of the rows in row order. V strips side by
// side give V independent addition chains. Full strips use plain loads and stores: on Zen 3 a
// masked store (vmaskmovps) costs several cycles where a plain one costs one; with masked
// accesses for every strip the pass took 25 us for the 128 x 256 gradient of the Fashion-MNIST
// MLP's first layer (batch 128), about 0.75 ns an element.
template <int V, bool Full>
inline void act_bias_strips(int32_t act, __m256 neg, int64_t rows, int64_t cols, int64_t c0, __m256i k,
                            const float* y, float* g, float* gb) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 acc[V];
#pragma GCC unroll 4
    for (int s = 0; s < V; ++s) acc[s] = zero;
    for (int64_t r = 0; r < rows; ++r) {
#pragma GCC unroll 4
        for (int s = 0; s < V; ++s) {
            float* gr = g + r * cols + c0 + 8 * s;
            __m256 v = load<Full>(k, gr);
            if (act != KILN_UNARY_IDENTITY) {
                const __m256 pos = _mm256_cmp_ps(load<Full>(k, y + r * cols + c0 + 8 * s), zero, _CMP_GT_OQ);
                // y > 0 ? g : 0 (a NaN or Inf gradient under a zero output becomes +0), or alpha * g
                v = act == KILN_UNARY_RELU ? _mm256_and_ps(pos, v) : _mm256_blendv_ps(_mm256_mul_ps(neg, v), v, pos);
                store<Full>(gr, k, v);
            }
            acc[s] = _mm256_add_ps(acc[s], v);
        }
    }
    if (gb != nullptr)
#pragma GCC unroll 4
        for (int s = 0; s < V; ++s) store<Full>(gb + c0 + 8 * s, k, acc[s]);
}

}  // namespace

// As act_bias_grad_ref, vectorized across columns (8 at a time, the bias sums held in a register
// down the rows): every column is summed in row order, so the sums are the reference's bit for bit.
bool act_bias_grad_avx2(int32_t act, float alpha, int64_t rows, int64_t cols, const float* y, float* g, float* gb) {
    if (act != KILN_UNARY_IDENTITY && act != KILN_UNARY_RELU && act != KILN_UNARY_LEAKY_RELU) return false;
    if (act == KILN_UNARY_IDENTITY && gb == nullptr) return true;
    const __m256 neg = _mm256_set1_ps(alpha);
    const __m256i all = _mm256_set1_epi32(-1);
    int64_t c0 = 0;
    for (; c0 + 32 <= cols; c0 += 32) act_bias_strips<4, true>(act, neg, rows, cols, c0, all, y, g, gb);
    for (; c0 + 8 <= cols; c0 += 8) act_bias_strips<1, true>(act, neg, rows, cols, c0, all, y, g, gb);
    if (c0 < cols) act_bias_strips<1, false>(act, neg, rows, cols, c0, lanes_below(cols - c0), y, g, gb);
    return true;
}

double sum_squares_avx2(int64_t n, const float* x) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, _mm256_add_pd(s0, s1));
    double s = 0;
    for (double l : lanes) s += l;
    for (; i < n; ++i) s += double(x[i]) * double(x[i]);
    return s;
}

namespace {

inline __m256 sigmoid8(__m256 x) {
    return _mm256_div_ps(_mm256_set1_ps(1.0f),
                         _mm256_add_ps(_mm256_set1_ps(1.0f), vmath256::exp(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// act'(x) for the activations act_grad_x_avx2 takes (the derivatives of train.cpp's act_backward).
template <int ACT>
inline __m256 dact(__m256 x, float alpha) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    if constexpr (ACT == KILN_UNARY_GELU) {
        const __m256 cdf = _mm256_mul_ps(_mm256_set1_ps(0.5f),
                                         _mm256_add_ps(one, vmath256::erf(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)))));
        const __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(0.39894228040143268f),
                                         vmath256::exp(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x))));
        return _mm256_fmadd_ps(x, pdf, cdf);
    } else if constexpr (ACT == KILN_UNARY_GELU_TANH) {
        const __m256 c = _mm256_set1_ps(0.7978845608028654f), k = _mm256_set1_ps(0.044715f), x2 = _mm256_mul_ps(x, x);
        const __m256 u = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(k, x2), x, x));
        // With e = exp(2u): 1 + tanh(u) = 2 / (1 + 1/e) and 1 - tanh(u) = 2 / (e + 1), each without
        // cancellation (the derivative is tiny where tanh is near -1); 1 - tanh^2 is their product.
        const __m256 e = vmath256::exp(_mm256_add_ps(u, u)), two = _mm256_set1_ps(2.0f);
        const __m256 q = _mm256_div_ps(two, _mm256_add_ps(one, _mm256_div_ps(one, e)));
        const __m256 p = _mm256_div_ps(two, _mm256_add_ps(e, one));
        const __m256 du = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_set1_ps(3.0f * 0.044715f), x2, one));
        const __m256 half = _mm256_set1_ps(0.5f);
        return _mm256_mul_ps(half, _mm256_mul_ps(q, _mm256_fmadd_ps(_mm256_mul_ps(x, p), du, one)));
    } else if constexpr (ACT == KILN_UNARY_SILU) {
        // s (1 + x (1 - s)), 1 - s = exp(-x) s without cancellation for large x
        const __m256 e = vmath256::exp(_mm256_sub_ps(zero, x));
        const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
        return _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_mul_ps(e, s), one));
    } else if constexpr (ACT == KILN_UNARY_ELU || ACT == KILN_UNARY_SELU) {
        const float a = ACT == KILN_UNARY_ELU ? alpha : 1.6732632423543772f;
        const __m256 neg = _mm256_mul_ps(_mm256_set1_ps(a), vmath256::exp(_mm256_min_ps(x, zero)));
        const __m256 d = _mm256_blendv_ps(neg, one, _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
        return ACT == KILN_UNARY_ELU ? d : _mm256_mul_ps(_mm256_set1_ps(1.0507009873554805f), d);
    } else if constexpr (ACT == KILN_UNARY_SOFTPLUS) {
        return sigmoid8(x);
    } else if constexpr (ACT == KILN_UNARY_MISH) {
        // tanh(softplus(x)) = n / (n + 2), n = e (e + 2), e = exp(x) (1 in float above 20)
        const __m256 e = vmath256::exp(_mm256_min_ps(_mm256_set1_ps(20.0f), x));
        const __m256 n = _mm256_mul_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
        const __m256 n2 = _mm256_add_ps(n, _mm256_set1_ps(2.0f));
        const __m256 t = _mm256_div_ps(n, n2), omt = _mm256_div_ps(_mm256_set1_ps(2.0f), n2);  // tanh, 1 - tanh
        const __m256 sech2 = _mm256_mul_ps(omt, _mm256_add_ps(one, t));
        return _mm256_fmadd_ps(_mm256_mul_ps(x, sech2), sigmoid8(x), t);
    } else if constexpr (ACT == KILN_UNARY_BOUNDED_RELU || ACT == KILN_UNARY_HARDTANH) {
        const __m256 lo = ACT == KILN_UNARY_HARDTANH ? _mm256_set1_ps(-alpha) : zero, hi = _mm256_set1_ps(alpha);
        return _mm256_and_ps(one, _mm256_and_ps(_mm256_cmp_ps(x, lo, _CMP_GT_OQ), _mm256_cmp_ps(x, hi, _CMP_LT_OQ)));
    } else if constexpr (ACT == KILN_UNARY_HARD_SIGMOID) {
        const __m256 v = _mm256_fmadd_ps(_mm256_set1_ps(alpha), x, _mm256_set1_ps(0.5f));
        return _mm256_and_ps(_mm256_set1_ps(alpha), _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ),
                                                                 _mm256_cmp_ps(v, one, _CMP_LT_OQ)));
    } else if constexpr (ACT == KILN_UNARY_HARD_SWISH) {
        const __m256 mid = _mm256_fmadd_ps(x, _mm256_set1_ps(1.0f / 3.0f), _mm256_set1_ps(0.5f));
        const __m256 d = _mm256_blendv_ps(mid, one, _mm256_cmp_ps(x, _mm256_set1_ps(3.0f), _CMP_GT_OQ));
        return _mm256_and_ps(d, _mm256_cmp_ps(x, _mm256_set1_ps(-3.0f), _CMP_GE_OQ));
    } else {
        return one;
    }
}

template <int ACT>
void grad_x(float alpha, int64_t n, const float* x, const float* gy, float* gx, bool acc) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(gy + i), dact<ACT>(_mm256_loadu_ps(x + i), alpha));
        if (acc) v = _mm256_add_ps(v, _mm256_loadu_ps(gx + i));
        _mm256_storeu_ps(gx + i, v);
    }
    if (i < n) {
        const __m256i k = lanes_below(n - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(gy + i, k), dact<ACT>(_mm256_maskload_ps(x + i, k), alpha));
        if (acc) v = _mm256_add_ps(v, _mm256_maskload_ps(gx + i, k));
        _mm256_maskstore_ps(gx + i, k, v);
    }
}

}  // namespace

bool act_grad_x_avx2(int32_t act, float alpha, int64_t n, const float* x, const float* gy, float* gx, bool acc) {
    switch (act) {
        case KILN_UNARY_GELU: grad_x<KILN_UNARY_GELU>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_GELU_TANH: grad_x<KILN_UNARY_GELU_TANH>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_SILU: grad_x<KILN_UNARY_SILU>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_ELU: grad_x<KILN_UNARY_ELU>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_SELU: grad_x<KILN_UNARY_SELU>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_SOFTPLUS: grad_x<KILN_UNARY_SOFTPLUS>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_MISH: grad_x<KILN_UNARY_MISH>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_BOUNDED_RELU: grad_x<KILN_UNARY_BOUNDED_RELU>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_HARDTANH: grad_x<KILN_UNARY_HARDTANH>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_HARD_SIGMOID: grad_x<KILN_UNARY_HARD_SIGMOID>(alpha, n, x, gy, gx, acc); return true;
        case KILN_UNARY_HARD_SWISH: grad_x<KILN_UNARY_HARD_SWISH>(alpha, n, x, gy, gx, acc); return true;
        default: return false;
    }
}

}  // namespace kiln::train
