// GPU inference plans: the CPU plan's sequential layers (Dense with a fused activation, activation,
// softmax, layer norm) on the device. Weights are uploaded once at compile time (Dense weights stored
// out x in, so that each output is a dot product of a contiguous row); the forward pass of each
// (batch, input, output) met is captured once as a CUDA graph and replayed after, so a forward costs
// one graph launch.
//
// Dense layers run as a warp-per-output GEMV for batches of up to 8 rows (each weight row read once
// for all rows) and as kiln_cuda_sgemm (B transposed) above; bias and activation in the store.
// Kernels may be loaded lazily during a capture: drivers for CUDA 12.3 and later allow it, and this
// library's CUDA 13 runtime needs a newer driver than that anyway.
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "common.cuh"
#include "gemm_common.cuh"

using namespace kiln_cuda;

namespace {

enum Kind { kDense, kActivation, kSoftmax, kLayerNorm };

struct Layer {
    Kind kind;
    int64_t in = 0, out = 0;  // features in and out
    std::vector<float> w, b, gamma, beta;  // host copies until compile (w: out x in)
    float* dw = nullptr;
    float* db = nullptr;
    float* dgamma = nullptr;
    float* dbeta = nullptr;
    int act = KILN_UNARY_IDENTITY;
    float alpha = 0.f;
    int log_softmax = 0;
    float eps = 0.f;
};

struct Graph {
    int64_t batch;
    const float* x;
    float* y;
    cudaGraphExec_t exec;
};

constexpr int64_t kMaxDim = 2147483647;  // features and batch sizes
constexpr size_t kMaxGraphs = 16;  // cached (batch, input, output) graphs per plan
constexpr int kGemvRows = 8;       // batches up to this many rows take the GEMV kernel
constexpr int kGemvWarps = 8;      // outputs per block of the GEMV kernel

// y[r][j] = epilogue(sum_i x[r][i] w[j][i]) for r < R: one warp per output j, lanes over i.
template <int R>
__global__ void __launch_bounds__(32 * kGemvWarps) gemv_kernel(int64_t in, int64_t out, const float* __restrict__ x,
                                                               const float* __restrict__ w, float* __restrict__ y,
                                                               Ep ep, int vec4) {
    const int64_t j = int64_t(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (j >= out) return;
    const float* wj = w + j * in;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f;
    if (vec4) {
        const int64_t in4 = in / 4;
        const float4* w4 = reinterpret_cast<const float4*>(wj);
        for (int64_t i = lane; i < in4; i += 32) {
            const float4 wv = w4[i];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const float4 xv = reinterpret_cast<const float4*>(x + r * in)[i];
                acc[r] += wv.x * xv.x + wv.y * xv.y + wv.z * xv.z + wv.w * xv.w;
            }
        }
    } else {
        for (int64_t i = lane; i < in; i += 32) {
            const float wv = wj[i];
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r] += wv * x[r * in + i];
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        float v = acc[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) y[r * out + j] = epilogue(ep, v, r, j);
    }
}

template <int R>
cudaError_t launch_gemv(int64_t in, int64_t out, const float* x, const float* w, float* y, const Ep& ep) {
    const int vec4 = in % 4 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0 &&
                     (reinterpret_cast<uintptr_t>(w) & 15) == 0;
    gemv_kernel<R><<<unsigned((out + kGemvWarps - 1) / kGemvWarps), 32 * kGemvWarps, 0, stream()>>>(in, out, x, w, y,
                                                                                                   ep, vec4);
    return cudaGetLastError();
}

kiln_status dense(const char* fn, const Layer& l, int64_t batch, const float* x, float* y) {
    const Ep ep{l.db, l.act, l.alpha, nullptr, 0};
    if (batch <= kGemvRows) {
        cudaError_t e = cudaSuccess;
        switch (batch) {
            case 1: e = launch_gemv<1>(l.in, l.out, x, l.dw, y, ep); break;
            case 2: e = launch_gemv<2>(l.in, l.out, x, l.dw, y, ep); break;
            case 3: e = launch_gemv<3>(l.in, l.out, x, l.dw, y, ep); break;
            case 4: e = launch_gemv<4>(l.in, l.out, x, l.dw, y, ep); break;
            case 5: e = launch_gemv<5>(l.in, l.out, x, l.dw, y, ep); break;
            case 6: e = launch_gemv<6>(l.in, l.out, x, l.dw, y, ep); break;
            case 7: e = launch_gemv<7>(l.in, l.out, x, l.dw, y, ep); break;
            default: e = launch_gemv<8>(l.in, l.out, x, l.dw, y, ep); break;
        }
        if (e != cudaSuccess) return fail(KILN_ERR_INTERNAL, "%s: GEMV launch failed: %s", fn, cudaGetErrorString(e));
        return KILN_OK;
    }
    const kiln_epilogue kep{l.db, l.act, l.alpha, nullptr, 0};
    return kiln_cuda_sgemm(0, 1, batch, l.out, l.in, 1.f, x, l.in, l.dw, l.in, 0.f, y, l.out, &kep);
}

kiln_status check_activation(const char* fn, int32_t act, float alpha) {
    if (act < KILN_UNARY_IDENTITY || act > KILN_UNARY_LAST)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: activation is %d: not a kiln_unary_op", fn, act);
    if (!std::isfinite(alpha)) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: activation_alpha is not finite", fn);
    return KILN_OK;
}

}  // namespace

struct kiln_cuda_plan {
    int64_t in = 0, max_batch = 0, width = 0;  // width: features after the last layer added
    bool compiled = false;
    std::vector<Layer> layers;
    float* act[2] = {nullptr, nullptr};  // ping-pong activations, max_batch x widest layer
    float* host_in = nullptr;            // device buffers for kiln_cuda_plan_run_host
    float* host_out = nullptr;
    std::mutex mu;       // graphs and the ordering event
    std::mutex host_mu;  // one kiln_cuda_plan_run_host at a time (it shares host_in/host_out)
    std::vector<Graph> graphs;
    cudaStream_t capture = nullptr;
    cudaEvent_t done = nullptr;  // recorded after each forward: the next one waits for it

    // Queues the forward pass on this thread's stream (or the capture stream during a capture).
    kiln_status enqueue(int64_t batch, const float* x, float* y) const {
        static const char* fn = "kiln_cuda_plan_run";
        const float* cur = x;
        int64_t w = in;
        for (size_t i = 0; i < layers.size(); ++i) {
            const Layer& l = layers[i];
            float* dst = i + 1 == layers.size() ? y : act[i % 2];
            kiln_status st = KILN_OK;
            switch (l.kind) {
                case kDense: st = dense(fn, l, batch, cur, dst); break;
                case kActivation: st = kiln_cuda_unary_f32(l.act, l.alpha, batch * w, cur, dst); break;
                case kSoftmax: st = kiln_cuda_softmax_f32(l.log_softmax, batch, w, cur, dst); break;
                case kLayerNorm: st = kiln_cuda_layer_norm_f32(batch, w, cur, l.dgamma, l.dbeta, l.eps, dst); break;
            }
            if (st != KILN_OK) return st;
            cur = dst;
            w = l.out;
        }
        return KILN_OK;
    }

    void release() {
        for (Graph& g : graphs) cudaGraphExecDestroy(g.exec);
        graphs.clear();
        for (Layer& l : layers)
            for (float* p : {l.dw, l.db, l.dgamma, l.dbeta})
                if (p) kiln_cuda_free(p);
        for (float* p : {act[0], act[1], host_in, host_out})
            if (p) kiln_cuda_free(p);
        if (capture) cudaStreamDestroy(capture);
        if (done) cudaEventDestroy(done);
    }
};

namespace {

kiln_status check_open(const char* fn, const kiln_cuda_plan* p) {
    if (p == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: plan is NULL", fn);
    if (p->compiled) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the plan is compiled: no layer may be added", fn);
    return KILN_OK;
}

kiln_status upload(const std::vector<float>& h, float** out) {
    if (h.empty()) return KILN_OK;
    void* d = nullptr;
    if (kiln_status st = kiln_cuda_alloc(int64_t(h.size() * sizeof(float)), &d)) return st;
    *out = static_cast<float*>(d);
    return kiln_cuda_copy(d, h.data(), int64_t(h.size() * sizeof(float)), 0);
}

}  // namespace

extern "C" KILN_API kiln_status kiln_cuda_plan_create(int64_t input_features, int64_t max_batch,
                                                     kiln_cuda_plan** out) {
    static const char* fn = "kiln_cuda_plan_create";
    if (out == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = nullptr;
    if (input_features < 1 || max_batch < 1 || input_features > kMaxDim || max_batch > kMaxDim)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: input_features %lld and max_batch %lld must be in 1..2^31-1", fn,
                    (long long)input_features, (long long)max_batch);
    auto* p = new (std::nothrow) kiln_cuda_plan();
    if (p == nullptr) return fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    p->in = p->width = input_features;
    p->max_batch = max_batch;
    *out = p;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_plan_add_dense(kiln_cuda_plan* p, int64_t out_features, const float* weight,
                                                        const float* bias, int32_t activation,
                                                        float activation_alpha) {
    static const char* fn = "kiln_cuda_plan_add_dense";
    if (kiln_status st = check_open(fn, p)) return st;
    if (out_features < 1 || out_features > kMaxDim)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: out_features is %lld: must be in 1..2^31-1", fn,
                    (long long)out_features);
    if (weight == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: weight is NULL", fn);
    if (kiln_status st = check_activation(fn, activation, activation_alpha)) return st;
    Layer l;
    l.kind = kDense;
    l.in = p->width;
    l.out = out_features;
    l.act = activation;
    l.alpha = activation_alpha;
    try {
        l.w.resize(size_t(l.in * l.out));
        for (int64_t i = 0; i < l.in; ++i)  // in x out row-major -> out x in
            for (int64_t j = 0; j < l.out; ++j) l.w[size_t(j * l.in + i)] = weight[i * l.out + j];
        if (bias) l.b.assign(bias, bias + l.out);
        p->layers.push_back(std::move(l));
    } catch (const std::bad_alloc&) {
        return fail(KILN_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    }
    p->width = out_features;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_plan_add_activation(kiln_cuda_plan* p, int32_t activation,
                                                             float activation_alpha) {
    static const char* fn = "kiln_cuda_plan_add_activation";
    if (kiln_status st = check_open(fn, p)) return st;
    if (kiln_status st = check_activation(fn, activation, activation_alpha)) return st;
    Layer l;
    l.kind = kActivation;
    l.in = l.out = p->width;
    l.act = activation;
    l.alpha = activation_alpha;
    p->layers.push_back(std::move(l));
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_plan_add_softmax(kiln_cuda_plan* p, int32_t log_softmax) {
    static const char* fn = "kiln_cuda_plan_add_softmax";
    if (kiln_status st = check_open(fn, p)) return st;
    if (log_softmax != 0 && log_softmax != 1)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: log_softmax is %d: 0 or 1", fn, log_softmax);
    Layer l;
    l.kind = kSoftmax;
    l.in = l.out = p->width;
    l.log_softmax = log_softmax;
    p->layers.push_back(std::move(l));
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_plan_add_layer_norm(kiln_cuda_plan* p, const float* gamma,
                                                             const float* beta, float eps) {
    static const char* fn = "kiln_cuda_plan_add_layer_norm";
    if (kiln_status st = check_open(fn, p)) return st;
    if (!(eps >= 0.f) || !std::isfinite(eps))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0", fn);
    Layer l;
    l.kind = kLayerNorm;
    l.in = l.out = p->width;
    l.eps = eps;
    if (gamma) l.gamma.assign(gamma, gamma + p->width);
    if (beta) l.beta.assign(beta, beta + p->width);
    p->layers.push_back(std::move(l));
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_plan_compile(kiln_cuda_plan* p) {
    static const char* fn = "kiln_cuda_plan_compile";
    if (kiln_status st = check_open(fn, p)) return st;
    if (p->layers.empty()) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the plan has no layer", fn);
    int32_t devices = 0;
    if (kiln_status st = kiln_cuda_device_count(&devices)) return st;
    if (devices == 0)
        return fail(KILN_ERR_UNSUPPORTED, "%s: no CUDA device: %s", fn, kiln_cuda_last_error());
    // Fuse an activation into the Dense before it (when that Dense has none of its own).
    std::vector<Layer> fused;
    for (Layer& l : p->layers) {
        if (l.kind == kActivation && !fused.empty() && fused.back().kind == kDense &&
            fused.back().act == KILN_UNARY_IDENTITY) {
            fused.back().act = l.act;
            fused.back().alpha = l.alpha;
            continue;
        }
        fused.push_back(std::move(l));
    }
    p->layers = std::move(fused);
    int64_t widest = p->in;
    for (const Layer& l : p->layers) widest = l.out > widest ? l.out : widest;
    if (double(p->max_batch) * double(widest) * sizeof(float) > double(int64_t(1) << 50))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: max_batch %lld x %lld features is too large to allocate", fn,
                    (long long)p->max_batch, (long long)widest);
    kiln_status st = KILN_OK;
    for (Layer& l : p->layers) {
        if (st == KILN_OK) st = upload(l.w, &l.dw);
        if (st == KILN_OK) st = upload(l.b, &l.db);
        if (st == KILN_OK) st = upload(l.gamma, &l.dgamma);
        if (st == KILN_OK) st = upload(l.beta, &l.dbeta);
    }
    void* buf = nullptr;
    const int64_t act_bytes = p->max_batch * widest * int64_t(sizeof(float));
    for (int i = 0; i < 2 && st == KILN_OK; ++i) {
        st = kiln_cuda_alloc(act_bytes, &buf);
        if (st == KILN_OK) p->act[i] = static_cast<float*>(buf);
    }
    if (st == KILN_OK) st = kiln_cuda_alloc(p->max_batch * p->in * int64_t(sizeof(float)), &buf);
    if (st == KILN_OK) p->host_in = static_cast<float*>(buf);
    if (st == KILN_OK) st = kiln_cuda_alloc(p->max_batch * p->width * int64_t(sizeof(float)), &buf);
    if (st == KILN_OK) p->host_out = static_cast<float*>(buf);
    if (st == KILN_OK && cudaStreamCreateWithFlags(&p->capture, cudaStreamNonBlocking) != cudaSuccess)
        st = fail(KILN_ERR_INTERNAL, "%s: cannot create a stream", fn);
    if (st == KILN_OK && cudaEventCreateWithFlags(&p->done, cudaEventDisableTiming) != cudaSuccess)
        st = fail(KILN_ERR_INTERNAL, "%s: cannot create an event", fn);
    if (st == KILN_OK && kiln_cuda_synchronize() != KILN_OK) st = KILN_ERR_INTERNAL;  // uploads done
    if (st != KILN_OK) {  // nothing kept on the device; the host copies stay, so compile may be retried
        const std::string why = kiln_cuda_last_error();
        p->release();
        for (Layer& l : p->layers) l.dw = l.db = l.dgamma = l.dbeta = nullptr;
        p->act[0] = p->act[1] = p->host_in = p->host_out = nullptr;
        p->capture = nullptr;
        p->done = nullptr;
        return fail(st, "%s: %s", fn, why.c_str());
    }
    for (Layer& l : p->layers) {  // the device holds them now
        std::vector<float>().swap(l.w);
        std::vector<float>().swap(l.b);
        std::vector<float>().swap(l.gamma);
        std::vector<float>().swap(l.beta);
    }
    p->compiled = true;
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_plan_info(const kiln_cuda_plan* p, int64_t* input_features,
                                                   int64_t* output_features, int64_t* max_batch) {
    if (p == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "kiln_cuda_plan_info: plan is NULL");
    if (input_features) *input_features = p->in;
    if (output_features) *output_features = p->width;
    if (max_batch) *max_batch = p->max_batch;
    return KILN_OK;
}

namespace {

kiln_status check_run(const char* fn, const kiln_cuda_plan* p, int64_t batch, const float* x, const float* y) {
    if (p == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: plan is NULL", fn);
    if (!p->compiled) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the plan is not compiled", fn);
    if (batch < 1 || batch > p->max_batch)
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: batch is %lld: must be in 1..%lld (the compiled maximum)", fn,
                    (long long)batch, (long long)p->max_batch);
    if (x == nullptr || y == nullptr) return fail(KILN_ERR_INVALID_ARGUMENT, "%s: NULL input or output", fn);
    return KILN_OK;
}

}  // namespace

extern "C" KILN_API kiln_status kiln_cuda_plan_run(kiln_cuda_plan* p, int64_t batch, const float* x, float* y) {
    static const char* fn = "kiln_cuda_plan_run";
    if (kiln_status st = check_run(fn, p, batch, x, y)) return st;
    const char* xb = reinterpret_cast<const char*>(x);
    const char* yb = reinterpret_cast<const char*>(y);
    if (xb < yb + batch * p->width * int64_t(sizeof(float)) && yb < xb + batch * p->in * int64_t(sizeof(float)))
        return fail(KILN_ERR_INVALID_ARGUMENT, "%s: the output overlaps the input", fn);
    std::lock_guard<std::mutex> lock(p->mu);
    Graph* g = nullptr;
    for (Graph& c : p->graphs)
        if (c.batch == batch && c.x == x && c.y == y) g = &c;
    if (g == nullptr) {
        if (p->graphs.size() == kMaxGraphs) {  // the oldest goes, once its last replay is done
            KILN_CUDA_CHECK(cudaEventSynchronize(p->done));
            cudaGraphExecDestroy(p->graphs.front().exec);
            p->graphs.erase(p->graphs.begin());
        }
        cudaStream_t caller = stream();
        KILN_CUDA_CHECK(cudaStreamBeginCapture(p->capture, cudaStreamCaptureModeThreadLocal));
        kiln_cuda_stream_set(p->capture);
        const kiln_status st = p->enqueue(batch, x, y);
        kiln_cuda_stream_set(caller == cudaStreamPerThread ? nullptr : caller);
        cudaGraph_t graph = nullptr;
        const cudaError_t end = cudaStreamEndCapture(p->capture, &graph);
        if (st != KILN_OK) {
            if (graph) cudaGraphDestroy(graph);
            return st;
        }
        if (end != cudaSuccess)
            return fail(KILN_ERR_INTERNAL, "%s: graph capture failed: %s", fn, cudaGetErrorString(end));
        cudaGraphExec_t exec = nullptr;
        const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        if (inst != cudaSuccess)
            return fail(KILN_ERR_INTERNAL, "%s: graph instantiation failed: %s", fn, cudaGetErrorString(inst));
        p->graphs.push_back(Graph{batch, x, y, exec});
        g = &p->graphs.back();
    }
    // After the previous forward (its activations are reused), whatever stream it ran on.
    KILN_CUDA_CHECK(cudaStreamWaitEvent(stream(), p->done, 0));
    KILN_CUDA_CHECK(cudaGraphLaunch(g->exec, stream()));
    KILN_CUDA_CHECK(cudaEventRecord(p->done, stream()));
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_cuda_plan_run_host(kiln_cuda_plan* p, int64_t batch, const float* x, float* y) {
    static const char* fn = "kiln_cuda_plan_run_host";
    if (kiln_status st = check_run(fn, p, batch, x, y)) return st;
    std::lock_guard<std::mutex> lock(p->host_mu);
    if (kiln_status st = kiln_cuda_copy(p->host_in, x, batch * p->in * int64_t(sizeof(float)), 0)) return st;
    if (kiln_status st = kiln_cuda_plan_run(p, batch, p->host_in, p->host_out)) return st;
    return kiln_cuda_copy(y, p->host_out, batch * p->width * int64_t(sizeof(float)), 1);
}

extern "C" KILN_API kiln_status kiln_cuda_plan_destroy(kiln_cuda_plan* p) {
    if (p == nullptr) return KILN_OK;
    if (p->done) cudaEventSynchronize(p->done);
    p->release();
    delete p;
    return KILN_OK;
}
