#include "layout.hpp"

#include "error.hpp"

namespace kiln {

int64_t Layout::rows() const {
    int64_t r = 1;
    for (int i = 0; i + 1 < ndim; ++i) r *= shape[i];
    return r;
}

int64_t Layout::row_offset(int op, int64_t r) const {
    int64_t off = 0;
    for (int i = ndim - 2; i >= 0; --i) {
        const int64_t idx = r % shape[i];
        r /= shape[i];
        off += idx * strides[op][i];
    }
    return off;
}

kiln_status make_layout(const char* fn, int32_t ndim, const int64_t* shape, int operands,
                        const int64_t* const* strides, const void* const* ptrs,
                        const char* const* names, int64_t elem_size, Layout* out) {
    *out = Layout{};
    if (ndim < 0 || ndim > KILN_MAX_DIMS)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: ndim is %d: must be in 0..%d", fn, ndim,
                    KILN_MAX_DIMS);
    if (ndim > 0 && shape == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: shape is NULL", fn);
    int64_t numel = 1;
    for (int i = 0; i < ndim; ++i) {
        if (shape[i] < 0)
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: shape[%d] is %lld: dimensions must be >= 0",
                        fn, i, (long long)shape[i]);
        if (shape[i] != 0 && numel > INT64_MAX / shape[i])
            return fail(KILN_ERR_OVERFLOW, "%s: the shape's element count overflows int64", fn);
        numel *= shape[i];
    }
    for (int op = 0; op < operands; ++op) {
        if (ndim > 0 && strides[op] == nullptr)
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: %s strides are NULL", fn, names[op]);
        if (numel > 0 && ptrs[op] == nullptr)
            return fail(KILN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, names[op]);
        // The largest element offset must fit in int64 bytes.
        int64_t max_off = 0;
        for (int i = 0; i < ndim; ++i) {
            const int64_t s = strides[op][i];
            if (s < 0)
                return fail(KILN_ERR_INVALID_ARGUMENT, "%s: %s stride[%d] is %lld: must be >= 0", fn,
                            names[op], i, (long long)s);
            if (numel == 0) continue;
            const int64_t extent = shape[i] - 1;
            if (s != 0 && extent > (INT64_MAX / elem_size - max_off) / s)
                return fail(KILN_ERR_OVERFLOW, "%s: %s's byte offsets overflow int64", fn, names[op]);
            max_off += extent * s;
        }
    }
    out->operands = operands;
    out->numel = numel;
    // Coalesce: drop size-1 dims, then merge i into i+1 where every operand has
    // stride[i] == stride[i+1] * shape[i+1].
    int n = 0;
    for (int i = 0; i < ndim; ++i) {
        if (shape[i] == 1) continue;
        if (n > 0) {
            bool merge = true;
            for (int op = 0; op < operands; ++op)
                if (out->strides[op][n - 1] != strides[op][i] * shape[i]) merge = false;
            if (merge) {
                out->shape[n - 1] *= shape[i];
                for (int op = 0; op < operands; ++op) out->strides[op][n - 1] = strides[op][i];
                continue;
            }
        }
        out->shape[n] = shape[i];
        for (int op = 0; op < operands; ++op) out->strides[op][n] = strides[op][i];
        ++n;
    }
    if (n == 0) {  // a scalar, or all dims of size 1
        out->shape[0] = numel == 0 ? 0 : 1;
        for (int op = 0; op < operands; ++op) out->strides[op][0] = 1;
        n = 1;
    }
    if (numel == 0) {  // canonical empty layout
        out->shape[0] = 0;
        n = 1;
    }
    out->ndim = n;
    return KILN_OK;
}

void byte_span(const Layout& l, int op, const void* base, int64_t elem_size, uintptr_t* lo,
               uintptr_t* hi) {
    const auto b = reinterpret_cast<uintptr_t>(base);
    if (l.numel == 0) {
        *lo = *hi = b;
        return;
    }
    int64_t max_off = 0;
    for (int i = 0; i < l.ndim; ++i) max_off += (l.shape[i] - 1) * l.strides[op][i];
    *lo = b;
    *hi = b + uintptr_t((max_off + 1) * elem_size);
}

kiln_status check_no_partial_overlap(const char* fn, const Layout& l, int out_op, const void* out,
                                     int in_op, const void* in, int64_t elem_size,
                                     const char* out_name, const char* in_name) {
    if (l.numel == 0) return KILN_OK;
    uintptr_t olo, ohi, ilo, ihi;
    byte_span(l, out_op, out, elem_size, &olo, &ohi);
    byte_span(l, in_op, in, elem_size, &ilo, &ihi);
    if (ohi <= ilo || ihi <= olo) return KILN_OK;
    if (out == in) {
        bool same = true;
        for (int i = 0; i < l.ndim; ++i)
            if (l.strides[out_op][i] != l.strides[in_op][i]) same = false;
        if (same) return KILN_OK;
    }
    return fail(KILN_ERR_INVALID_ARGUMENT,
                "%s: %s overlaps %s without being the same elements: write to a separate tensor", fn,
                out_name, in_name);
}

}  // namespace kiln
