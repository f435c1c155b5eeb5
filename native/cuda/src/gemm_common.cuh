// Shared by the GEMM kernels: Kiln's epilogue in device form, and the Hopper kernel's entry points.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "device_ops.cuh"
#include "kiln/kiln_cuda.h"

namespace kiln_cuda {

// C = act(v + bias) + residual, applied to v = alpha op(A) op(B) + beta C as each element is stored.
struct Ep {
    const float* bias;
    int act;
    float alpha_act;
    const float* residual;
    int64_t ldr;
};

__device__ __forceinline__ float epilogue(const Ep& ep, float v, int64_t i, int64_t j) {
    if (ep.bias) v += ep.bias[j];
    v = unary_op(ep.act, ep.alpha_act, v);
    if (ep.residual) v += ep.residual[i * ep.ldr + j];
    return v;
}

// gemm_sm90.cu: the TMA + wgmma kernel (sm_90 devices only). B is given transposed (n x k). _fits
// says whether the operands meet TMA's alignment rules, the driver can encode tensor maps and the
// library holds sm_90a code (call it on an sm_90 device only: the first call runs a probe kernel).
bool gemm_bf16_sm90_fits(int64_t m, int64_t n, int64_t k, const void* a, int64_t lda, const void* bt, int64_t ldbt);
kiln_status gemm_bf16_sm90(const char* fn, int64_t m, int64_t n, int64_t k, float alpha, const __nv_bfloat16* a,
                           int64_t lda, const __nv_bfloat16* bt, int64_t ldbt, float beta, float* c, int64_t ldc,
                           const Ep& ep);

}  // namespace kiln_cuda
