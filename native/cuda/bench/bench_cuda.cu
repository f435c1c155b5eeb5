// GPU microbenchmarks of libkiln_cuda (run by benchmarks/gpu/run.sh). Each case: warm-up, then the
// median of 20 timed runs (CUDA events); inputs random (never zeros), rotated where they would fit
// in L2. Prints one JSON object per line: {"case", "metric", "kiln", "unit"}.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kiln/kiln_cuda.h"

namespace {

void check(kiln_status st, const char* what) {
    if (st != KILN_OK) {
        std::fprintf(stderr, "%s failed: %s\n", what, kiln_cuda_last_error());
        std::exit(1);
    }
}

float* dev_random(size_t n, uint32_t seed) {
    std::vector<float> h(n);
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    for (float& x : h) x = d(g);
    void* p;
    check(kiln_cuda_alloc(int64_t(n * 4), &p), "alloc");
    check(kiln_cuda_copy(p, h.data(), int64_t(n * 4), 0), "copy");
    return static_cast<float*>(p);
}

double median_ms(const std::function<void()>& body, int reps = 20) {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 3; ++i) body();
    std::vector<float> t;
    for (int i = 0; i < reps; ++i) {
        cudaEventRecord(a, cudaStreamPerThread);
        body();
        cudaEventRecord(b, cudaStreamPerThread);
        cudaEventSynchronize(b);
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        std::fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e));
        std::exit(1);
    }
    return t[t.size() / 2];
}

void row(const char* name, const char* metric, double v, const char* unit) {
    std::printf("{\"case\": \"%s\", \"metric\": \"%s\", \"kiln\": %.3f, \"unit\": \"%s\"}\n", name, metric, v, unit);
    std::fflush(stdout);
}

}  // namespace

// Weights and biases of a 3-layer MLP (widths[0] -> ... -> widths[3]), uniform in +-0.05.
std::vector<std::vector<float>> random_mlp(const int64_t (&widths)[4], uint32_t seed) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> d(-0.05f, 0.05f);
    std::vector<std::vector<float>> out;
    for (int i = 0; i < 3; ++i) {
        out.emplace_back(size_t(widths[i] * widths[i + 1]));
        out.emplace_back(size_t(widths[i + 1]));
        for (int k = 0; k < 2; ++k)
            for (float& x : out[out.size() - 2 + k]) x = d(g);
    }
    return out;
}

// `bench_cuda gemm S`: only S^3 bf16 GEMMs (B n x k), three of them, for a profiler (ncu) to look at;
// KILN_CUDA_GEMM and KILN_CUDA_SM90_VARIANT choose the kernel.
int profile_gemm(int64_t s) {
    std::vector<uint16_t> h(size_t(s * s));
    std::mt19937 g(1);
    for (uint16_t& x : h) x = uint16_t(0x3c00 + g() % 0x200 - 0x100 + ((g() & 1) << 15));  // near +-2^-7, random
    void *a, *c;
    check(kiln_cuda_alloc(s * s * 2, &a), "alloc");
    check(kiln_cuda_alloc(s * s * 4, &c), "alloc");
    check(kiln_cuda_copy(a, h.data(), s * s * 2, 0), "copy");
    for (int i = 0; i < 3; ++i)
        check(kiln_cuda_gemm_bf16(1, s, s, s, 1.f, static_cast<uint16_t*>(a), s, static_cast<uint16_t*>(a), s, 0.f,
                                  static_cast<float*>(c), s, nullptr), "gemm_bf16");
    check(kiln_cuda_synchronize(), "synchronize");
    return 0;
}

int main(int argc, char** argv) {
    int32_t n = 0;
    check(kiln_cuda_device_count(&n), "device count");
    if (n == 0) {
        std::fprintf(stderr, "no CUDA device: %s\n", kiln_cuda_last_error());
        return 1;
    }
    if (argc == 3 && std::strcmp(argv[1], "gemm") == 0) return profile_gemm(std::atoll(argv[2]));
    // Device-to-device copy bandwidth (bytes read + written), the elementwise ceiling.
    {
        const size_t count = size_t(1) << 28;  // 1 GiB of floats
        float* a = dev_random(count, 1);
        void* b;
        check(kiln_cuda_alloc(int64_t(count * 4), &b), "alloc");
        double ms = median_ms([&] { check(kiln_cuda_copy(b, a, int64_t(count * 4), 2), "d2d"); });
        row("d2d copy 1GiB", "GB/s", 2.0 * count * 4 / (ms * 1e6), "GB/s");
        double ms_add = median_ms([&] { check(kiln_cuda_binary_f32(KILN_BINARY_ADD, int64_t(count / 2), a, a + count / 2,
                                                                    static_cast<float*>(b)), "add"); });
        row("add 2^27 floats", "GB/s", 3.0 * (count / 2) * 4 / (ms_add * 1e6), "GB/s");
        kiln_cuda_free(a);
        kiln_cuda_free(b);
    }
    {
        const int64_t count = int64_t(1) << 26;  // Adam over 64M parameters: 7 floats of traffic each
        float* w = dev_random(size_t(count), 2);
        float* g = dev_random(size_t(count), 3);
        float* m = dev_random(size_t(count), 4);
        float* v = dev_random(size_t(count), 5);
        int64_t step = 1;
        double ms = median_ms([&] {
            check(kiln_cuda_adam_f32(count, w, g, m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, step++), "adam");
        });
        row("adam 2^26 params", "GB/s", 7.0 * count * 4 / (ms * 1e6), "GB/s");
        for (float* p : {w, g, m, v}) kiln_cuda_free(p);
    }
    // mlp-small (784-512-256-10, ReLU, softmax) forward through a GPU plan: the whole call, from the
    // host, including the wait for the result (median of 2000 after 50 warm-up runs).
    {
        kiln_cuda_plan* plan = nullptr;
        check(kiln_cuda_plan_create(784, 256, &plan), "plan");
        const int64_t widths[] = {784, 512, 256, 10};
        const auto params = random_mlp(widths, 3);
        for (int i = 0; i < 3; ++i)
            check(kiln_cuda_plan_add_dense(plan, widths[i + 1], params[2 * i].data(), params[2 * i + 1].data(),
                                           i < 2 ? KILN_UNARY_RELU : KILN_UNARY_IDENTITY, 0.f), "dense");
        check(kiln_cuda_plan_add_softmax(plan, 0), "softmax");
        check(kiln_cuda_plan_compile(plan), "compile");
        float* x = dev_random(size_t(256 * 784), 9);
        void* y;
        check(kiln_cuda_alloc(256 * 10 * 4, &y), "alloc");
        std::vector<float> hx(784), hy(10);
        for (int64_t batch : {1, 256}) {
            auto timed = [&](const std::function<void()>& body) {
                for (int i = 0; i < 50; ++i) body();
                std::vector<double> t;
                for (int i = 0; i < 2000; ++i) {
                    const auto t0 = std::chrono::steady_clock::now();
                    body();
                    const auto dt = std::chrono::steady_clock::now() - t0;
                    t.push_back(std::chrono::duration<double, std::micro>(dt).count());
                }
                std::sort(t.begin(), t.end());
                return t[t.size() / 2];
            };
            const double us = timed([&] {
                check(kiln_cuda_plan_run(plan, batch, x, static_cast<float*>(y)), "plan run");
                check(kiln_cuda_synchronize(), "synchronize");
            });
            char name[80];
            std::snprintf(name, sizeof name, "mlp-small b%lld forward (CUDA graph, device buffers)", (long long)batch);
            row(name, "us", us, "us");
            if (batch == 1) {
                const double host_us =
                    timed([&] { check(kiln_cuda_plan_run_host(plan, 1, hx.data(), hy.data()), "run"); });
                row("mlp-small b1 forward (host in and out)", "us", host_us, "us");
            }
        }
        kiln_cuda_free(x);
        kiln_cuda_free(y);
        kiln_cuda_plan_destroy(plan);
    }
    // Training: the Fashion-MNIST MLP (784-256-128-10, ReLU, Adam), batch 128, steps from the host
    // (each waits for its loss, as a training loop that reads it does): samples per second over 300
    // steps after 30 warm-up steps.
    {
        kiln_cuda_trainer* t = nullptr;
        check(kiln_cuda_trainer_create(784, 128, &t), "trainer");
        const int64_t widths[] = {784, 256, 128, 10};
        const auto params = random_mlp(widths, 5);
        std::mt19937 g(5);
        for (int i = 0; i < 3; ++i) {
            check(kiln_cuda_trainer_add_dense(t, widths[i + 1], params[2 * i].data(), params[2 * i + 1].data()),
                  "dense");
            if (i < 2) check(kiln_cuda_trainer_add_activation(t, KILN_UNARY_RELU, 0.f), "relu");
        }
        const kiln_optimizer adam{KILN_OPT_ADAM, 0, 0.f, 0.9f, 0.999f, 1e-8f, 0.f, 0.f, 0.f};
        check(kiln_cuda_trainer_set_optimizer(t, &adam), "optimizer");
        check(kiln_cuda_trainer_compile(t), "compile");
        float* x = dev_random(size_t(128 * 784), 10);
        std::vector<int32_t> labels(128);
        for (int32_t& l : labels) l = int32_t(g() % 10);
        void* dl;
        check(kiln_cuda_alloc(128 * 4, &dl), "alloc");
        check(kiln_cuda_copy(dl, labels.data(), 128 * 4, 0), "copy");
        double loss = 0;
        auto step = [&] { check(kiln_cuda_trainer_step(t, 128, x, static_cast<int32_t*>(dl), 1e-3f, &loss), "step"); };
        for (int i = 0; i < 30; ++i) step();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 300; ++i) step();
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        row("mlp-fmnist train b128 (Adam)", "samples/s", 300.0 * 128 / sec, "samples/s");
        kiln_cuda_free(x);
        kiln_cuda_free(dl);
        kiln_cuda_trainer_destroy(t);
    }
    for (int64_t s : {4096, 8192}) {
        // bf16 operands made on the device from random floats.
        float* af = dev_random(size_t(s * s), 6);
        std::vector<float> h(size_t(s * s));
        check(kiln_cuda_copy(h.data(), af, s * s * 4, 1), "copy");
        std::vector<uint16_t> hb(h.size());
        for (size_t i = 0; i < h.size(); ++i) {
            uint32_t u;
            std::memcpy(&u, &h[i], 4);
            hb[i] = uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
        }
        void *a, *b, *c;
        check(kiln_cuda_alloc(s * s * 2, &a), "alloc");
        check(kiln_cuda_alloc(s * s * 2, &b), "alloc");
        check(kiln_cuda_alloc(s * s * 4, &c), "alloc");
        check(kiln_cuda_copy(a, hb.data(), s * s * 2, 0), "copy");
        check(kiln_cuda_copy(b, hb.data(), s * s * 2, 0), "copy");
        // B k x n (row-major, transposed on the fly for sm90), then B n x k (no transpose).
        for (int trans_b : {0, 1}) {
            double ms = median_ms([&] {
                check(kiln_cuda_gemm_bf16(trans_b, s, s, s, 1.f, static_cast<uint16_t*>(a), s,
                                          static_cast<uint16_t*>(b), s, 0.f, static_cast<float*>(c), s, nullptr),
                      "gemm_bf16");
            }, 10);
            char name[80];
            std::snprintf(name, sizeof name, "gemm bf16 %lldx%lldx%lld%s", (long long)s, (long long)s, (long long)s,
                          trans_b ? " (B n x k)" : "");
            row(name, "TFLOP/s", 2.0 * s * s * s / (ms * 1e9), "TFLOP/s");
        }
        if (s == 4096) {  // the general epilogue: bias and GELU in the store
            float* bias = dev_random(size_t(s), 8);
            const kiln_epilogue ep{bias, KILN_UNARY_GELU, 0.f, nullptr, 0};
            double ms = median_ms([&] {
                check(kiln_cuda_gemm_bf16(1, s, s, s, 1.f, static_cast<uint16_t*>(a), s, static_cast<uint16_t*>(b), s,
                                          0.f, static_cast<float*>(c), s, &ep), "gemm_bf16 epilogue");
            }, 10);
            row("gemm bf16 4096x4096x4096 (B n x k) + bias + gelu", "TFLOP/s", 2.0 * s * s * s / (ms * 1e9), "TFLOP/s");
            kiln_cuda_free(bias);
        }
        // The sm90 kernel's variants, B n x k (gemm_sm90.cu: bit 0 pipelined, bit 1 persistent, bit 2 clusters).
        for (int variant : {0, 1, 3, 7, 3 + 16, 3 + 32}) {
            setenv("KILN_CUDA_SM90_VARIANT", std::to_string(variant).c_str(), 1);
            setenv("KILN_CUDA_GEMM", "sm90", 1);
            double ms = median_ms([&] {
                check(kiln_cuda_gemm_bf16(1, s, s, s, 1.f, static_cast<uint16_t*>(a), s, static_cast<uint16_t*>(b), s,
                                          0.f, static_cast<float*>(c), s, nullptr), "gemm_bf16 sm90");
            }, 10);
            unsetenv("KILN_CUDA_SM90_VARIANT");
            unsetenv("KILN_CUDA_GEMM");
            // Variants 19 and 35 are timing probes that leave a stage out (their results are wrong): their
            // figure is the rate the full product would have at that speed.
            char name[96];
            const char* what = variant == 19 ? "probe: copies only" : variant == 35 ? "probe: wgmma only" : "variant";
            std::snprintf(name, sizeof name, "gemm bf16 %lldx%lldx%lld (B n x k) sm90 %s %d", (long long)s,
                          (long long)s, (long long)s, what, variant);
            row(name, variant >= 16 ? "TFLOP/s equivalent" : "TFLOP/s", 2.0 * s * s * s / (ms * 1e9), "TFLOP/s");
        }
        if (s == 4096) {
            float* bf = dev_random(size_t(s * s), 7);
            double ms32 = median_ms([&] {
                check(kiln_cuda_sgemm(0, 0, s, s, s, 1.f, af, s, bf, s, 0.f, static_cast<float*>(c), s, nullptr), "sgemm");
            }, 5);
            row("sgemm 4096x4096x4096", "TFLOP/s", 2.0 * s * s * s / (ms32 * 1e9), "TFLOP/s");
            kiln_cuda_free(bf);
        }
        kiln_cuda_free(a);
        kiln_cuda_free(b);
        kiln_cuda_free(c);
        kiln_cuda_free(af);
    }
    return 0;
}
