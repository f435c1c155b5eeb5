// Shared pieces of libkiln_cuda: the thread-local error, the CUDA-call check, this thread's stream.
#pragma once

#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdint>

#include "kiln/kiln_cuda.h"

namespace kiln_cuda {

kiln_status fail(kiln_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
cudaStream_t stream();

// Fails with the CUDA error's name and text, naming the call.
#define KILN_CUDA_CHECK(call)                                                                              \
    do {                                                                                                  \
        cudaError_t kiln_e_ = (call);                                                                     \
        if (kiln_e_ != cudaSuccess)                                                                       \
            return ::kiln_cuda::fail(KILN_ERR_INTERNAL, "%s: %s (%s)", #call, cudaGetErrorName(kiln_e_), \
                                     cudaGetErrorString(kiln_e_));                                        \
    } while (0)

// After a launch: the launch error, if any.
#define KILN_CUDA_LAUNCHED(fn)                                                                             \
    do {                                                                                                  \
        cudaError_t kiln_e_ = cudaGetLastError();                                                         \
        if (kiln_e_ != cudaSuccess)                                                                       \
            return ::kiln_cuda::fail(KILN_ERR_INTERNAL, "%s: kernel launch failed: %s", fn,               \
                                     cudaGetErrorString(kiln_e_));                                        \
    } while (0)

inline unsigned blocks_for(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return unsigned(b > 65535 * 16 ? 65535 * 16 : (b < 1 ? 1 : b));
}

}  // namespace kiln_cuda
