// Portable elementwise kernels: the reference every ISA variant is tested against, and the path
// for CPUs without AVX2.
#include "eltwise_kernels.hpp"

namespace kiln {
namespace {

void binary_ref(int op, const float* a, int64_t as, const float* b, int64_t bs, float* out,
                int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = binary_scalar(op, a[i * as], b[i * bs]);
}

void scale_ref(const float* a, float alpha, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = alpha * a[i];
}

double sum_ref(const float* a, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += a[i];
    return s;
}

}  // namespace

const EltwiseKernels kEltwiseRef = {KILN_ISA_PORTABLE, "eltwise_f32_ref", binary_ref, scale_ref,
                                    sum_ref};

}  // namespace kiln
