// Axis reductions, softmax, layer norm, argmax and top-k over contiguous rows. Row kernels live
// with the elementwise kernels (per ISA); this file validates, splits rows over the pool and
// handles the [outer, len, inner] reduction layout.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../../core/error.hpp"
#include "../../core/threads.hpp"
#include "../eltwise/eltwise_kernels.hpp"

namespace kiln {
const EltwiseKernels& eltwise_kernels();
namespace {

constexpr int64_t kGrainElems = int64_t(1) << 15;

int64_t row_grain(int64_t cols) { return cols >= kGrainElems ? 1 : kGrainElems / (cols > 0 ? cols : 1); }

kiln_status check_rows(const char* fn, int64_t rows, int64_t cols, const void* x, const void* y,
                       const char* yname) {
    if (rows < 0 || cols < 0)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: rows, cols are %lld, %lld: must be >= 0", fn, (long long)rows,
                    (long long)cols);
    if (cols != 0 && rows > INT64_MAX / 8 / cols) return fail(KILN_ERR_OVERFLOW, "%s: rows x cols overflows", fn);
    if (rows * cols > 0 && (x == nullptr || y == nullptr))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, x == nullptr ? "x" : yname);
    return KILN_OK;
}

// NaN-aware "a is larger than b" for argmax/top-k: NaN is larger than any number.
inline bool larger(float a, float b) { return (a != a && b == b) || a > b; }

}  // namespace
}  // namespace kiln

using namespace kiln;

extern "C" KILN_API kiln_status kiln_reduce_f32(int32_t op, int64_t outer, int64_t len, int64_t inner,
                                                const float* a, float* out) {
    static const char* fn = "kiln_reduce_f32";
    if (op < KILN_REDUCE_SUM || op > KILN_REDUCE_MIN)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: op is %d: not a kiln_reduce_op", fn, op);
    if (outer < 0 || len < 0 || inner < 0)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: outer, len, inner are %lld, %lld, %lld: must be >= 0", fn,
                    (long long)outer, (long long)len, (long long)inner);
    if ((len != 0 && outer > INT64_MAX / 8 / len) || (inner != 0 && outer * len > INT64_MAX / 8 / inner) ||
        (inner != 0 && outer > INT64_MAX / 8 / inner))
        return fail(KILN_ERR_OVERFLOW, "%s: the element count overflows", fn);
    const int64_t n_out = outer * inner;
    if (n_out == 0) return KILN_OK;
    if (len == 0 && (op == KILN_REDUCE_MAX || op == KILN_REDUCE_MIN))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: %s over an empty axis has no value", fn,
                    op == KILN_REDUCE_MAX ? "max" : "min");
    if (out == nullptr || (len > 0 && a == nullptr))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, out == nullptr ? "out" : "a");
    if (len > 0) {
        const auto ab = reinterpret_cast<uintptr_t>(a), ae = ab + uintptr_t(outer * len * inner * 4);
        const auto ob = reinterpret_cast<uintptr_t>(out), oe = ob + uintptr_t(n_out * 4);
        if (ob < ae && ab < oe) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out overlaps a", fn);
    }
    const EltwiseKernels& k = eltwise_kernels();
    if (inner == 1) {
        // Reduce contiguous rows of len elements.
        parallel_for(outer, row_grain(len), [&](int64_t o0, int64_t o1) {
            for (int64_t o = o0; o < o1; ++o) {
                const float* row = a + o * len;
                if (op == KILN_REDUCE_SUM || op == KILN_REDUCE_MEAN) {
                    double s = 0;
                    for (int64_t b = 0; b < len; b += kSumBlock) s += k.sum(row + b, std::min(kSumBlock, len - b));
                    out[o] = float(op == KILN_REDUCE_MEAN ? (len ? s / double(len) : std::nan("")) : s);
                } else {
                    float m = row[0];
                    const int bop = op == KILN_REDUCE_MAX ? KILN_BINARY_MAX : KILN_BINARY_MIN;
                    for (int64_t r = 1; r < len; ++r) m = binary_scalar(bop, m, row[r]);
                    out[o] = m;
                }
            }
        });
        return KILN_OK;
    }
    // Reduce across rows: out[o][:] = op_r a[o][r][:], vectorized along inner with the binary kernels;
    // sums accumulate in double per element for accuracy.
    parallel_for(outer, 1, [&](int64_t o0, int64_t o1) {
        std::vector<double> acc;
        for (int64_t o = o0; o < o1; ++o) {
            const float* base = a + o * len * inner;
            float* dst = out + o * inner;
            if (op == KILN_REDUCE_SUM || op == KILN_REDUCE_MEAN) {
                acc.assign(size_t(inner), 0.0);
                for (int64_t r = 0; r < len; ++r)
                    for (int64_t i = 0; i < inner; ++i) acc[size_t(i)] += base[r * inner + i];
                const double scale = op == KILN_REDUCE_MEAN ? (len ? 1.0 / double(len) : std::nan("")) : 1.0;
                for (int64_t i = 0; i < inner; ++i) dst[i] = float(acc[size_t(i)] * scale);
            } else {
                const int bop = op == KILN_REDUCE_MAX ? KILN_BINARY_MAX : KILN_BINARY_MIN;
                std::copy(base, base + inner, dst);
                for (int64_t r = 1; r < len; ++r) k.binary(bop, dst, 1, base + r * inner, 1, dst, inner);
            }
        }
    });
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_softmax_f32(int32_t log_softmax, int64_t rows, int64_t cols, const float* x,
                                                 float* y) {
    static const char* fn = "kiln_softmax_f32";
    if (log_softmax != 0 && log_softmax != 1)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: log_softmax is %d: must be 0 or 1", fn, log_softmax);
    if (kiln_status st = check_rows(fn, rows, cols, x, y, "y")) return st;
    if (x != y && rows * cols > 0) {
        const auto xb = reinterpret_cast<uintptr_t>(x), xe = xb + uintptr_t(rows * cols * 4);
        const auto yb = reinterpret_cast<uintptr_t>(y), ye = yb + uintptr_t(rows * cols * 4);
        if (yb < xe && xb < ye) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: y partially overlaps x", fn);
    }
    const EltwiseKernels& k = eltwise_kernels();
    parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) k.softmax_row(x + r * cols, y + r * cols, cols, log_softmax == 1);
    });
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_layer_norm_f32(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                                    const float* beta, float eps, float* y, float* mean,
                                                    float* rstd) {
    static const char* fn = "kiln_layer_norm_f32";
    if (kiln_status st = check_rows(fn, rows, cols, x, y, "y")) return st;
    if (!(eps >= 0.0f) || std::isinf(eps))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: eps is %g: must be finite and >= 0", fn, double(eps));
    if (x != y && rows * cols > 0) {
        const auto xb = reinterpret_cast<uintptr_t>(x), xe = xb + uintptr_t(rows * cols * 4);
        const auto yb = reinterpret_cast<uintptr_t>(y), ye = yb + uintptr_t(rows * cols * 4);
        if (yb < xe && xb < ye) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: y partially overlaps x", fn);
    }
    const EltwiseKernels& k = eltwise_kernels();
    parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
            k.layer_norm_row(x + r * cols, y + r * cols, cols, gamma, beta, eps, mean ? mean + r : nullptr,
                             rstd ? rstd + r : nullptr);
    });
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_argmax_f32(int64_t rows, int64_t cols, const float* x, int32_t* out) {
    static const char* fn = "kiln_argmax_f32";
    if (kiln_status st = check_rows(fn, rows, cols, x, out, "out")) return st;
    if (rows > 0 && cols < 1) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: cols is %lld: argmax of an empty row", fn, (long long)cols);
    if (cols > INT32_MAX) return fail(KILN_ERR_OVERFLOW, "%s: cols is %lld: indices are int32", fn, (long long)cols);
    parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* row = x + r * cols;
            int64_t best = 0;
            for (int64_t c = 1; c < cols; ++c)
                if (larger(row[c], row[best])) best = c;
            out[r] = int32_t(best);
        }
    });
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_topk_f32(int64_t rows, int64_t cols, int64_t k, const float* x, float* values,
                                              int32_t* indices) {
    static const char* fn = "kiln_topk_f32";
    if (kiln_status st = check_rows(fn, rows, cols, x, values, "values")) return st;
    if (rows > 0 && (k < 1 || k > cols))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: k is %lld: must be in 1..cols (%lld)", fn, (long long)k, (long long)cols);
    if (rows > 0 && indices == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: indices is NULL", fn);
    if (cols > INT32_MAX) return fail(KILN_ERR_OVERFLOW, "%s: cols is %lld: indices are int32", fn, (long long)cols);
    parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
        std::vector<int32_t> idx(static_cast<size_t>(cols));
        for (int64_t r = r0; r < r1; ++r) {
            const float* row = x + r * cols;
            for (int64_t c = 0; c < cols; ++c) idx[size_t(c)] = int32_t(c);
            std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t p, int32_t q) {
                if (larger(row[p], row[q])) return true;
                if (larger(row[q], row[p])) return false;
                return p < q;
            });
            for (int64_t j = 0; j < k; ++j) {
                values[r * k + j] = row[idx[size_t(j)]];
                indices[r * k + j] = idx[size_t(j)];
            }
        }
    });
    return KILN_OK;
}
