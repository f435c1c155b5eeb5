#include "convert.hpp"

#include "../../core/error.hpp"
#include "kiln/kiln.h"

extern "C" KILN_API kiln_status kiln_convert(int32_t src_dtype, const void* src, int32_t dst_dtype,
                                             void* dst, int64_t n) {
    static const char* fn = "kiln_convert";
    if (n < 0)
        return kiln::fail(KILN_ERR_INVALID_ARGUMENT, "%s: n is %lld: must be >= 0", fn, (long long)n);
    if (n > 0 && (src == nullptr || dst == nullptr))
        return kiln::fail(KILN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, src ? "dst" : "src");
    const float* fs = static_cast<const float*>(src);
    const uint16_t* hs = static_cast<const uint16_t*>(src);
    float* fd = static_cast<float*>(dst);
    uint16_t* hd = static_cast<uint16_t*>(dst);
    if (src_dtype == KILN_DTYPE_F32 && dst_dtype == KILN_DTYPE_BF16) {
        for (int64_t i = 0; i < n; ++i) hd[i] = kiln::f32_to_bf16(fs[i]);
    } else if (src_dtype == KILN_DTYPE_BF16 && dst_dtype == KILN_DTYPE_F32) {
        for (int64_t i = 0; i < n; ++i) fd[i] = kiln::bf16_to_f32(hs[i]);
    } else if (src_dtype == KILN_DTYPE_F32 && dst_dtype == KILN_DTYPE_F16) {
        for (int64_t i = 0; i < n; ++i) hd[i] = kiln::f32_to_f16(fs[i]);
    } else if (src_dtype == KILN_DTYPE_F16 && dst_dtype == KILN_DTYPE_F32) {
        for (int64_t i = 0; i < n; ++i) fd[i] = kiln::f16_to_f32(hs[i]);
    } else {
        return kiln::fail(KILN_ERR_UNSUPPORTED,
                          "%s: no conversion from dtype %d to dtype %d (supported: F32<->BF16, F32<->F16)",
                          fn, src_dtype, dst_dtype);
    }
    return KILN_OK;
}
