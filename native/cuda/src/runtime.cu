// Devices, errors, the pooling allocator, copies through pinned staging, streams.
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.cuh"

namespace kiln_cuda {

namespace {
thread_local std::string t_error;
thread_local cudaStream_t t_stream = cudaStreamPerThread;
}  // namespace

kiln_status fail(kiln_status status, const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    t_error = buf;
    return status;
}

cudaStream_t stream() { return t_stream; }

namespace {

// Pool: blocks by power-of-two size class; a freed block is reusable once the work queued on the
// freeing thread's stream at free time has finished (an event recorded then).
struct Pooled {
    void* ptr;
    cudaEvent_t ready;
};

struct Pool {
    std::mutex mu;
    std::map<size_t, std::vector<Pooled>> free_blocks;  // class size -> blocks
    std::unordered_map<void*, size_t> live;             // pointer -> class size
    int64_t in_use = 0, pooled = 0;
};

Pool& pool() {
    static Pool* p = new Pool();  // never destroyed: frees may come during static destruction
    return *p;
}

size_t size_class(int64_t bytes) {
    size_t c = 256;
    while (c < size_t(bytes)) c <<= 1;
    return c;
}

}  // namespace
}  // namespace kiln_cuda

using namespace kiln_cuda;

extern "C" KILN_API const char* kiln_cuda_last_error(void) { return t_error.c_str(); }

extern "C" KILN_API kiln_status kiln_cuda_device_count(int32_t* count) {
    if (count == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_cuda_device_count: count is NULL");
    *count = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        fail(KILN_OK, "no usable CUDA device: %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
        cudaGetLastError();  // clear the sticky-free error
        return KILN_OK;
    }
    if (n == 0) fail(KILN_OK, "no CUDA device present");
    *count = n;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_device_info_get(int32_t device, kiln_cuda_device_info* out) {
    if (out == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_cuda_device_info_get: out is NULL");
    std::memset(out, 0, sizeof *out);
    cudaDeviceProp p;
    KILN_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    std::snprintf(out->name, sizeof out->name, "%s", p.name);
    out->major = p.major;
    out->minor = p.minor;
    out->multiprocessors = p.multiProcessorCount;
    out->total_memory = int64_t(p.totalGlobalMem);
    KILN_CUDA_CHECK(cudaDriverGetVersion(&out->driver_version));
    KILN_CUDA_CHECK(cudaRuntimeGetVersion(&out->runtime_version));
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_device_set(int32_t device) {
    KILN_CUDA_CHECK(cudaSetDevice(device));
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_alloc(int64_t bytes, void** out) {
    if (out == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_cuda_alloc: out is NULL");
    *out = nullptr;
    if (bytes < 0 || bytes > (int64_t(1) << 42))
        return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_cuda_alloc: bytes is %lld: must be in 0..2^42", (long long)bytes);
    const size_t cls = size_class(bytes);
    Pool& p = pool();
    {
        std::lock_guard<std::mutex> lock(p.mu);
        auto it = p.free_blocks.find(cls);
        if (it != p.free_blocks.end()) {
            auto& v = it->second;
            for (size_t i = 0; i < v.size(); ++i) {
                if (cudaEventQuery(v[i].ready) == cudaSuccess) {
                    void* ptr = v[i].ptr;
                    cudaEventDestroy(v[i].ready);
                    v.erase(v.begin() + long(i));
                    p.live[ptr] = cls;
                    p.in_use += int64_t(cls);
                    p.pooled -= int64_t(cls);
                    *out = ptr;
                    return KILN_OK;
                }
            }
        }
    }
    void* ptr = nullptr;
    cudaError_t e = cudaMalloc(&ptr, cls);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        kiln_cuda_trim();
        e = cudaMalloc(&ptr, cls);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return fail(e == cudaErrorMemoryAllocation ? KILN_ERR_OUT_OF_MEMORY : KILN_ERR_INTERNAL,
                    "kiln_cuda_alloc: cudaMalloc of %zu bytes failed: %s", cls, cudaGetErrorString(e));
    }
    std::lock_guard<std::mutex> lock(p.mu);
    p.live[ptr] = cls;
    p.in_use += int64_t(cls);
    *out = ptr;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_free(void* ptr) {
    if (ptr == nullptr) return KILN_OK;
    Pool& p = pool();
    cudaEvent_t ev;
    KILN_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    KILN_CUDA_CHECK(cudaEventRecord(ev, stream()));
    std::lock_guard<std::mutex> lock(p.mu);
    auto it = p.live.find(ptr);
    if (it == p.live.end()) {
        cudaEventDestroy(ev);
        return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_cuda_free: %p was not allocated by kiln_cuda_alloc (or freed twice)", ptr);
    }
    p.free_blocks[it->second].push_back({ptr, ev});
    p.in_use -= int64_t(it->second);
    p.pooled += int64_t(it->second);
    p.live.erase(it);
    return KILN_OK;
}

// Pinned staging for host<->device copies: 8 MiB per thread, reused, returned when the thread ends
// (or by kiln_cuda_trim on that thread).
constexpr size_t kStage = size_t(8) << 20;
struct Staging {
    void* p = nullptr;
    ~Staging() {
        if (p != nullptr) cudaFreeHost(p);
    }
};
thread_local Staging t_staging;

extern "C" KILN_API kiln_status kiln_cuda_trim(void) {
    if (t_staging.p != nullptr) {
        cudaFreeHost(t_staging.p);
        t_staging.p = nullptr;
    }
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    for (auto& kv : p.free_blocks) {
        for (Pooled& b : kv.second) {
            cudaEventSynchronize(b.ready);
            cudaEventDestroy(b.ready);
            cudaFree(b.ptr);
            p.pooled -= int64_t(kv.first);
        }
        kv.second.clear();
    }
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_memory(int64_t* in_use, int64_t* pooled) {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    if (in_use) *in_use = p.in_use;
    if (pooled) *pooled = p.pooled;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_copy(void* dst, const void* src, int64_t bytes, int32_t kind) {
    static const char* fn = "kiln_cuda_copy";
    if (bytes < 0) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: bytes is %lld", fn, (long long)bytes);
    if (bytes == 0) return KILN_OK;
    if (dst == nullptr || src == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: NULL pointer", fn);
    if (kind == 2) {
        KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDeviceToDevice, stream()));
        return KILN_OK;
    }
    if (kind != 0 && kind != 1) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: kind is %d: 0, 1 or 2", fn, kind);
    if (t_staging.p == nullptr) KILN_CUDA_CHECK(cudaMallocHost(&t_staging.p, kStage));
    void* const stage = t_staging.p;
    for (int64_t off = 0; off < bytes; off += int64_t(kStage)) {
        const size_t n = size_t(bytes - off < int64_t(kStage) ? bytes - off : int64_t(kStage));
        if (kind == 0) {
            std::memcpy(stage, static_cast<const char*>(src) + off, n);
            KILN_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, stage, n, cudaMemcpyHostToDevice, stream()));
            KILN_CUDA_CHECK(cudaStreamSynchronize(stream()));
        } else {
            KILN_CUDA_CHECK(cudaMemcpyAsync(stage, static_cast<const char*>(src) + off, n, cudaMemcpyDeviceToHost, stream()));
            KILN_CUDA_CHECK(cudaStreamSynchronize(stream()));
            std::memcpy(static_cast<char*>(dst) + off, stage, n);
        }
    }
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_synchronize(void) {
    KILN_CUDA_CHECK(cudaStreamSynchronize(stream()));
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_stream_set(void* s) {
    t_stream = s == nullptr ? cudaStreamPerThread : static_cast<cudaStream_t>(s);
    return KILN_OK;
}
