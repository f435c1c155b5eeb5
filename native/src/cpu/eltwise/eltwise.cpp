// Elementwise driver: validates, coalesces dimensions, splits work over the pool and calls the
// ISA kernel on each contiguous run (or a strided scalar loop where a run is not contiguous).
#include <cmath>
#include <vector>

#include "../../core/cpu.hpp"
#include "../../core/error.hpp"
#include "../../core/layout.hpp"
#include "../../core/threads.hpp"
#include "eltwise_kernels.hpp"

namespace kiln {
namespace {

const EltwiseKernels kTable[] = {kEltwiseAvx512, kEltwiseAvx2, kEltwiseRef};

}  // namespace
}  // namespace kiln

using namespace kiln;

extern "C" KILN_API kiln_status kiln_binary_f32(int32_t op, int32_t ndim, const int64_t* shape,
                                                const float* a, const int64_t* a_strides,
                                                const float* b, const int64_t* b_strides,
                                                float* out, const int64_t* out_strides) {
    static const char* fn = "kiln_binary_f32";
    if (op < KILN_BINARY_ADD || op > KILN_BINARY_MIN)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: op is %d: not a kiln_binary_op", fn, op);
    const int64_t* strides[3] = {a_strides, b_strides, out_strides};
    const void* ptrs[3] = {a, b, out};
    const char* names[3] = {"a", "b", "out"};
    Layout l;
    if (kiln_status st = make_layout(fn, ndim, shape, 3, strides, ptrs, names, 4, &l)) return st;
    if (kiln_status st = check_no_partial_overlap(fn, l, 2, out, 0, a, 4, "out", "a")) return st;
    if (kiln_status st = check_no_partial_overlap(fn, l, 2, out, 1, b, 4, "out", "b")) return st;
    if (l.numel == 0) return KILN_OK;
    const EltwiseKernels& k = select_kernel(kTable);
    const int last = l.ndim - 1;
    const int64_t sa = l.strides[0][last], sb = l.strides[1][last], so = l.strides[2][last];
    const bool fast = so == 1 && (sa == 0 || sa == 1) && (sb == 0 || sb == 1);
    for_each_run(l, [&](int64_t r, int64_t begin, int64_t end) {
        const float* pa = a + l.row_offset(0, r) + begin * sa;
        const float* pb = b + l.row_offset(1, r) + begin * sb;
        float* po = out + l.row_offset(2, r) + begin * so;
        if (fast) {
            k.binary(op, pa, sa, pb, sb, po, end - begin);
        } else {
            for (int64_t i = 0; i < end - begin; ++i)
                po[i * so] = binary_scalar(op, pa[i * sa], pb[i * sb]);
        }
    });
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_scale_f32(int32_t ndim, const int64_t* shape, const float* a,
                                               const int64_t* a_strides, float alpha, float* out,
                                               const int64_t* out_strides) {
    static const char* fn = "kiln_scale_f32";
    const int64_t* strides[2] = {a_strides, out_strides};
    const void* ptrs[2] = {a, out};
    const char* names[2] = {"a", "out"};
    Layout l;
    if (kiln_status st = make_layout(fn, ndim, shape, 2, strides, ptrs, names, 4, &l)) return st;
    if (kiln_status st = check_no_partial_overlap(fn, l, 1, out, 0, a, 4, "out", "a")) return st;
    if (l.numel == 0) return KILN_OK;
    const EltwiseKernels& k = select_kernel(kTable);
    const int last = l.ndim - 1;
    const int64_t sa = l.strides[0][last], so = l.strides[1][last];
    for_each_run(l, [&](int64_t r, int64_t begin, int64_t end) {
        const float* pa = a + l.row_offset(0, r) + begin * sa;
        float* po = out + l.row_offset(1, r) + begin * so;
        if (sa == 1 && so == 1) {
            k.scale(pa, alpha, po, end - begin);
        } else {
            for (int64_t i = 0; i < end - begin; ++i) po[i * so] = alpha * pa[i * sa];
        }
    });
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_sum_f32(int32_t ndim, const int64_t* shape, const float* a,
                                             const int64_t* a_strides, double* out) {
    static const char* fn = "kiln_sum_f32";
    if (out == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = 0.0;
    const int64_t* strides[1] = {a_strides};
    const void* ptrs[1] = {a};
    const char* names[1] = {"a"};
    Layout l;
    if (kiln_status st = make_layout(fn, ndim, shape, 1, strides, ptrs, names, 4, &l)) return st;
    if (l.numel == 0) return KILN_OK;
    const EltwiseKernels& k = select_kernel(kTable);
    const int64_t rows = l.rows(), inner = l.inner(), sa = l.strides[0][l.ndim - 1];
    // Sum of one row: fixed blocks, partials added in order (deterministic at any thread count).
    auto row_sum = [&](const float* p, int64_t b0, int64_t b1) {
        double s = 0.0;
        for (int64_t blk = b0; blk < b1; ++blk) {
            const int64_t begin = blk * kSumBlock;
            const int64_t len = (inner - begin) < kSumBlock ? (inner - begin) : kSumBlock;
            if (sa == 1) {
                s += k.sum(p + begin, len);
            } else {
                for (int64_t i = 0; i < len; ++i) s += p[(begin + i) * sa];
            }
        }
        return s;
    };
    const int64_t blocks = (inner + kSumBlock - 1) / kSumBlock;
    double total = 0.0;
    if (rows == 1) {
        std::vector<double> partial(size_t(blocks), 0.0);
        parallel_for(blocks, kStridedGrain / kSumBlock, [&](int64_t b0, int64_t b1) {
            for (int64_t blk = b0; blk < b1; ++blk) partial[size_t(blk)] = row_sum(a, blk, blk + 1);
        });
        for (double v : partial) total += v;
    } else {
        std::vector<double> partial(size_t(rows), 0.0);
        const int64_t grain = inner >= kStridedGrain ? 1 : kStridedGrain / inner;
        parallel_for(rows, grain, [&](int64_t rb, int64_t re) {
            for (int64_t r = rb; r < re; ++r)
                partial[size_t(r)] = row_sum(a + l.row_offset(0, r), 0, blocks);
        });
        for (double v : partial) total += v;
    }
    *out = total;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_unary_f32(int32_t op, float alpha, int32_t ndim,
                                               const int64_t* shape, const float* a,
                                               const int64_t* a_strides, float* out,
                                               const int64_t* out_strides) {
    static const char* fn = "kiln_unary_f32";
    if (op < KILN_UNARY_IDENTITY || op > KILN_UNARY_LAST)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: op is %d: not a kiln_unary_op", fn, op);
    if (!std::isfinite(alpha)) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: alpha is not finite", fn);
    const int64_t* strides[2] = {a_strides, out_strides};
    const void* ptrs[2] = {a, out};
    const char* names[2] = {"a", "out"};
    Layout l;
    if (kiln_status st = make_layout(fn, ndim, shape, 2, strides, ptrs, names, 4, &l)) return st;
    if (kiln_status st = check_no_partial_overlap(fn, l, 1, out, 0, a, 4, "out", "a")) return st;
    if (l.numel == 0) return KILN_OK;
    const EltwiseKernels& k = select_kernel(kTable);
    const int last = l.ndim - 1;
    const int64_t sa = l.strides[0][last], so = l.strides[1][last];
    for_each_run(l, [&](int64_t r, int64_t begin, int64_t end) {
        const float* pa = a + l.row_offset(0, r) + begin * sa;
        float* po = out + l.row_offset(1, r) + begin * so;
        if (sa == 1 && so == 1) {
            k.unary(op, pa, po, end - begin, alpha);
        } else {
            for (int64_t i = 0; i < end - begin; ++i) po[i * so] = unary_scalar(op, pa[i * sa], alpha);
        }
    });
    return KILN_OK;
}

namespace kiln {
// Used by the GEMM epilogue: the eltwise table of the current ISA.
const EltwiseKernels& eltwise_kernels() { return select_kernel(kTable); }
}  // namespace kiln
