// Validation and simplification of (ndim, shape, strides) descriptions shared by every strided op.
#pragma once

#include <cstdint>

#include "kiln/kiln.h"
#include "threads.hpp"

namespace kiln {

// Up to kMaxOperands operands laid over one shape, after validation and coalescing:
// dimensions of size 1 dropped, and neighbours merged where every operand is contiguous across
// them. A contiguous tensor becomes one dimension, so most calls take a single fast inner loop.
struct Layout {
    static constexpr int kMaxOperands = 3;
    int ndim = 0;  // >= 1 after coalescing (a scalar becomes shape {1})
    int operands = 0;
    int64_t shape[KILN_MAX_DIMS] = {};
    int64_t strides[kMaxOperands][KILN_MAX_DIMS] = {};
    int64_t numel = 0;

    int64_t rows() const;                     // product of all but the last dimension
    int64_t inner() const { return shape[ndim - 1]; }
    // Element offset of row `r`'s first element for operand `op`.
    int64_t row_offset(int op, int64_t r) const;
};

// Checks ndim, shape, strides and pointer arguments (named for messages) and builds a Layout.
// `ptrs[i]` may be NULL only when the shape has no elements; `elem_size` is used for the
// overflow check of byte offsets.
kiln_status make_layout(const char* fn, int32_t ndim, const int64_t* shape, int operands,
                        const int64_t* const* strides, const void* const* ptrs,
                        const char* const* names, int64_t elem_size, Layout* out);

// Byte span [lo, hi) touched by an operand (for overlap checks). Empty when numel == 0.
void byte_span(const Layout& l, int op, const void* base, int64_t elem_size, uintptr_t* lo,
               uintptr_t* hi);

// Output `out_op` must not partially overlap input `in_op`: identical placement is fine
// (an in-place op); any other intersection of their byte spans is refused.
kiln_status check_no_partial_overlap(const char* fn, const Layout& l, int out_op, const void* out,
                                     int in_op, const void* in, int64_t elem_size,
                                     const char* out_name, const char* in_name);

// Elements per parallel task for memory-bound strided ops: 32K floats (128 KiB) amortise waking a
// worker (~10 us).
constexpr int64_t kStridedGrain = int64_t(1) << 15;

// Runs body(row, begin, end) over every contiguous run of the layout (positions begin..end of row
// `row`), in parallel: split along the run when there is one row, else by rows.
template <typename Body>
void for_each_run(const Layout& l, Body&& body) {
    const int64_t rows = l.rows(), inner = l.inner();
    if (rows == 1) {
        parallel_for(inner, kStridedGrain, [&](int64_t b, int64_t e) { body(0, b, e); });
    } else {
        const int64_t grain = inner >= kStridedGrain ? 1 : kStridedGrain / (inner > 0 ? inner : 1);
        parallel_for(rows, grain, [&](int64_t rb, int64_t re) {
            for (int64_t r = rb; r < re; ++r) body(r, 0, inner);
        });
    }
}

}  // namespace kiln
