// Strided copy, pattern fill and seeded random fill.
//
// Random values come from a counter-based generator: element i of the logical row-major order
// gets splitmix64(seed, i), so a fill is reproducible whatever the strides, thread count or ISA,
// and threads need no shared state.
#include <cmath>
#include <cstring>

#include "../../core/error.hpp"
#include "../../core/layout.hpp"
#include "../../core/random.hpp"
#include "../../core/threads.hpp"
#include "../convert/convert.hpp"

namespace kiln {
namespace {


bool valid_elem_size(int32_t s) { return s == 1 || s == 2 || s == 4 || s == 8; }

template <typename T>
void copy_run(const char* src, int64_t ss, char* dst, int64_t ds, int64_t n) {
    const T* s = reinterpret_cast<const T*>(src);
    T* d = reinterpret_cast<T*>(dst);
    if (ss == 1 && ds == 1) {
        std::memcpy(d, s, size_t(n) * sizeof(T));
        return;
    }
    for (int64_t i = 0; i < n; ++i) d[i * ds] = s[i * ss];
}

template <typename T>
void fill_run(char* dst, int64_t ds, int64_t n, const void* pattern) {
    T v;
    std::memcpy(&v, pattern, sizeof(T));
    T* d = reinterpret_cast<T*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i * ds] = v;
}

}  // namespace
}  // namespace kiln

using namespace kiln;

extern "C" KILN_API kiln_status kiln_copy_strided(int32_t elem_size, int32_t ndim,
                                                  const int64_t* shape, const void* src,
                                                  const int64_t* src_strides, void* dst,
                                                  const int64_t* dst_strides) {
    static const char* fn = "kiln_copy_strided";
    if (!valid_elem_size(elem_size))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: elem_size is %d: must be 1, 2, 4 or 8", fn,
                    elem_size);
    const int64_t* strides[2] = {src_strides, dst_strides};
    const void* ptrs[2] = {src, dst};
    const char* names[2] = {"src", "dst"};
    Layout l;
    if (kiln_status st = make_layout(fn, ndim, shape, 2, strides, ptrs, names, elem_size, &l))
        return st;
    if (kiln_status st = check_no_partial_overlap(fn, l, 1, dst, 0, src, elem_size, "dst", "src"))
        return st;
    if (l.numel == 0 || src == dst) return KILN_OK;
    const int last = l.ndim - 1;
    const int64_t ss = l.strides[0][last], ds = l.strides[1][last];
    const char* s = static_cast<const char*>(src);
    char* d = static_cast<char*>(dst);
    for_each_run(l, [&](int64_t r, int64_t b, int64_t e) {
        const char* ps = s + (l.row_offset(0, r) + b * ss) * elem_size;
        char* pd = d + (l.row_offset(1, r) + b * ds) * elem_size;
        switch (elem_size) {
            case 1: copy_run<uint8_t>(ps, ss, pd, ds, e - b); break;
            case 2: copy_run<uint16_t>(ps, ss, pd, ds, e - b); break;
            case 4: copy_run<uint32_t>(ps, ss, pd, ds, e - b); break;
            default: copy_run<uint64_t>(ps, ss, pd, ds, e - b); break;
        }
    });
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_fill_pattern(int32_t elem_size, int32_t ndim,
                                                  const int64_t* shape, void* dst,
                                                  const int64_t* dst_strides, const void* pattern) {
    static const char* fn = "kiln_fill_pattern";
    if (!valid_elem_size(elem_size))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: elem_size is %d: must be 1, 2, 4 or 8", fn,
                    elem_size);
    if (pattern == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: pattern is NULL", fn);
    const int64_t* strides[1] = {dst_strides};
    const void* ptrs[1] = {dst};
    const char* names[1] = {"dst"};
    Layout l;
    if (kiln_status st = make_layout(fn, ndim, shape, 1, strides, ptrs, names, elem_size, &l))
        return st;
    if (l.numel == 0) return KILN_OK;
    const int64_t ds = l.strides[0][l.ndim - 1];
    char* d = static_cast<char*>(dst);
    for_each_run(l, [&](int64_t r, int64_t b, int64_t e) {
        char* pd = d + (l.row_offset(0, r) + b * ds) * elem_size;
        switch (elem_size) {
            case 1: fill_run<uint8_t>(pd, ds, e - b, pattern); break;
            case 2: fill_run<uint16_t>(pd, ds, e - b, pattern); break;
            case 4: fill_run<uint32_t>(pd, ds, e - b, pattern); break;
            default: fill_run<uint64_t>(pd, ds, e - b, pattern); break;
        }
    });
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_fill_random(int32_t dtype, int32_t kind, int32_t ndim,
                                                 const int64_t* shape, void* dst,
                                                 const int64_t* dst_strides, double a, double b,
                                                 uint64_t seed) {
    static const char* fn = "kiln_fill_random";
    int64_t elem_size = 0;
    switch (dtype) {
        case KILN_DTYPE_F32: elem_size = 4; break;
        case KILN_DTYPE_BF16:
        case KILN_DTYPE_F16: elem_size = 2; break;
        default:
            return fail(KILN_ERR_DTYPE_MISMATCH,
                        "%s: dtype %d is not a floating type: random fill takes F32, BF16 or F16",
                        fn, dtype);
    }
    if (kind != KILN_RANDOM_UNIFORM && kind != KILN_RANDOM_NORMAL)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: kind is %d: not a kiln_random_kind", fn, kind);
    if (!std::isfinite(a) || !std::isfinite(b))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: parameters must be finite (got %g, %g)", fn, a, b);
    if (kind == KILN_RANDOM_UNIFORM && !(a <= b))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: uniform low %g is above high %g", fn, a, b);
    if (kind == KILN_RANDOM_NORMAL && b < 0)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: normal standard deviation is %g: must be >= 0",
                    fn, b);
    // Logical order: the unmerged, uncoalesced shape decides element numbers, so compute the
    // logical index from the original shape via a contiguous "index" operand.
    int64_t logical_strides[KILN_MAX_DIMS];
    {
        int64_t s = 1;
        for (int i = (ndim > 0 && ndim <= KILN_MAX_DIMS ? ndim : 0) - 1; i >= 0; --i) {
            logical_strides[i] = s;
            s *= (shape != nullptr && shape[i] > 0) ? shape[i] : 1;
        }
    }
    const int64_t* strides[2] = {dst_strides, logical_strides};
    int64_t dummy = 0;
    const void* ptrs[2] = {dst, &dummy};
    const char* names[2] = {"dst", "logical"};
    Layout l;
    if (kiln_status st = make_layout(fn, ndim, shape, 2, strides, ptrs, names, elem_size, &l))
        return st;
    if (l.numel == 0) return KILN_OK;
    const int last = l.ndim - 1;
    const int64_t ds = l.strides[0][last], ls = l.strides[1][last];
    char* d = static_cast<char*>(dst);
    const double lo = a, span = b - a;
    for_each_run(l, [&](int64_t r, int64_t begin, int64_t end) {
        char* pd = d + (l.row_offset(0, r) + begin * ds) * elem_size;
        const int64_t base = l.row_offset(1, r) + begin * ls;
        for (int64_t i = 0; i < end - begin; ++i) {
            const uint64_t idx = uint64_t(base + i * ls);
            double v;
            if (kind == KILN_RANDOM_UNIFORM) {
                const double u = double(counter_random(seed, idx) >> 11) * 0x1.0p-53;  // [0, 1)
                v = lo + span * u;
            } else {
                // Box-Muller over pairs (2k, 2k+1): both members share the pair's two uniforms.
                const uint64_t pair = idx >> 1;
                const double u1 =
                    (double(counter_random(seed, 2 * pair) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
                const double u2 = double(counter_random(seed, 2 * pair + 1) >> 11) * 0x1.0p-53;
                const double rad = std::sqrt(-2.0 * std::log(u1));
                const double ang = 6.283185307179586 * u2;
                v = a + b * rad * ((idx & 1) ? std::sin(ang) : std::cos(ang));
            }
            float f = float(v);
            // Rounding to float may land on `high`: keep the interval half-open.
            if (kind == KILN_RANDOM_UNIFORM && span > 0 && double(f) >= b)
                f = std::nextafter(float(b), float(a));
            if (dtype == KILN_DTYPE_F32) {
                reinterpret_cast<float*>(pd)[i * ds] = f;
            } else {
                const uint16_t h = dtype == KILN_DTYPE_BF16 ? f32_to_bf16(f) : f32_to_f16(f);
                reinterpret_cast<uint16_t*>(pd)[i * ds] = h;
            }
        }
    });
    return KILN_OK;
}
