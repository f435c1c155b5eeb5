// Native training-step microbenchmark: the Fashion-MNIST MLP (784-256-128-10, ReLU, softmax
// cross-entropy, Adam) stepped through kiln_trainer_step on random data, without the JVM.
// For profiling the step (perf record) and for quick A/B of trainer changes; the suite that
// compares with PyTorch is `benchmarks/run training`.
//
// usage: bench_train [BATCH [THREADS [SECONDS [shuffle]]]]   prints the median samples/s of 7 repetitions;
// BENCH_ACTIVATION=gelu (or silu, mish, elu, selu, softplus, gelu_tanh, tanh, sigmoid, relu6) sets the
// hidden layers' activation (default relu);
// with `shuffle` each batch is first gathered from a random permutation (kiln_gather_rows), as the
// Java Trainer does, instead of read in place, and the gather's median time is printed too.
// BENCH_MODEL=resnorm trains a pre-norm residual MLP instead: 784 -> dense 256 -> act, then two
// blocks h + dense(act(dense(layer_norm(h)))) of width 256 (hidden 512), then dense 10: the
// non-GEMM layers (layer norm, residual adds) under load.
// BENCH_FREEZE=N freezes the first N parameters (kiln_trainer_freeze; 2: the first dense layer's
// weight and bias), as when fine-tuning the layers after them.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kiln/kiln.h"

namespace {
void check(kiln_status st, const char* what) {
    if (st != KILN_OK) {
        std::fprintf(stderr, "%s failed: %s\n", what, kiln_last_error());
        std::exit(1);
    }
}
}  // namespace

int main(int argc, char** argv) {
    const int64_t batch = argc > 1 ? std::atoll(argv[1]) : 32;
    const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
    const double seconds = argc > 3 ? std::atof(argv[3]) : 0.5;
    const bool shuffle = argc > 4 && std::string(argv[4]) == "shuffle";
    check(kiln_threads_set(threads), "kiln_threads_set");
    int32_t act = KILN_UNARY_RELU;
    float act_alpha = 0.0f;
    if (const char* a = std::getenv("BENCH_ACTIVATION")) {
        const std::string s(a);
        const struct { const char* name; int32_t code; float alpha; } names[] = {
            {"relu", KILN_UNARY_RELU, 0}, {"gelu", KILN_UNARY_GELU, 0}, {"gelu_tanh", KILN_UNARY_GELU_TANH, 0},
            {"silu", KILN_UNARY_SILU, 0}, {"mish", KILN_UNARY_MISH, 0}, {"elu", KILN_UNARY_ELU, 1},
            {"selu", KILN_UNARY_SELU, 0}, {"softplus", KILN_UNARY_SOFTPLUS, 0}, {"tanh", KILN_UNARY_TANH, 0},
            {"sigmoid", KILN_UNARY_SIGMOID, 0}, {"relu6", KILN_UNARY_BOUNDED_RELU, 6}};
        bool found = false;
        for (const auto& n : names)
            if (s == n.name) {
                act = n.code;
                act_alpha = n.alpha;
                found = true;
            }
        if (!found) {
            std::fprintf(stderr, "BENCH_ACTIVATION=%s: unknown\n", a);
            return 2;
        }
    }
    const int64_t dims[4] = {784, 256, 128, 10};
    const int64_t rows = 60000 / batch * batch;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    // The dataset through kiln_alloc, as the Java Dataset holds it (huge pages: a shuffled gather
    // reads rows scattered over 188 MB).
    float* x = nullptr;
    check(kiln_alloc(rows * 784 * int64_t(sizeof(float)), reinterpret_cast<void**>(&x)), "kiln_alloc");
    for (int64_t i = 0; i < rows * 784; ++i) x[i] = std::max(0.0f, nd(rng) * 0.3f + 0.3f);
    std::vector<int32_t> y(static_cast<size_t>(rows));
    for (int32_t& v : y) v = int32_t(rng() % 10);
    kiln_trainer* t;
    check(kiln_trainer_create(784, batch, &t), "create");
    auto dense = [&](int64_t in, int64_t out) {
        std::vector<float> w(size_t(in * out));
        const float s = std::sqrt(2.0f / float(in));
        for (float& v : w) v = nd(rng) * s;
        std::vector<float> b(size_t(out), 0.0f);
        check(kiln_trainer_add_dense(t, out, w.data(), b.data()), "dense");
    };
    const char* model = std::getenv("BENCH_MODEL");
    if (model != nullptr && std::string(model) == "resnorm") {
        dense(784, 256);
        check(kiln_trainer_add_activation(t, act, act_alpha), "activation");
        int64_t layers = 2;  // value ids: the output of layer i is value i + 1
        for (int block = 0; block < 2; ++block) {
            const int64_t skip = layers;
            check(kiln_trainer_add_layer_norm(t, nullptr, nullptr, 1e-5f), "layer norm");
            dense(256, 512);
            check(kiln_trainer_add_activation(t, act, act_alpha), "activation");
            dense(512, 256);
            check(kiln_trainer_add_residual(t, skip), "residual");
            layers += 5;
        }
        dense(256, 10);
    } else if (model != nullptr && std::string(model) != "mlp") {
        std::fprintf(stderr, "BENCH_MODEL=%s: unknown (mlp, resnorm)\n", model);
        return 2;
    } else {
        for (int l = 0; l < 3; ++l) {
            dense(dims[l], dims[l + 1]);
            if (l < 2) check(kiln_trainer_add_activation(t, act, act_alpha), "activation");
        }
    }
    check(kiln_trainer_set_loss(t, KILN_LOSS_SOFTMAX_CROSS_ENTROPY, 0, nullptr), "loss");
    kiln_optimizer o{};
    o.kind = KILN_OPT_ADAM;
    o.beta1 = 0.9f;
    o.beta2 = 0.999f;
    o.eps = 1e-8f;
    check(kiln_trainer_set_optimizer(t, &o), "optimizer");
    check(kiln_trainer_compile(t), "compile");
    if (const char* f = std::getenv("BENCH_FREEZE"))
        for (int64_t i = 0; i < std::atoll(f); ++i) check(kiln_trainer_freeze(t, i, 1), "freeze");
    std::vector<int32_t> perm(static_cast<size_t>(rows));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<float> xb(size_t(batch * 784));
    std::vector<int32_t> yb(static_cast<size_t>(batch));
    int64_t pos = 0;
    std::vector<double> gather_us;  // per step, with `shuffle`
    auto step = [&]() {
        double loss;
        const float* xs = x + pos * 784;
        const int32_t* ys = y.data() + pos;
        if (shuffle) {
            const auto g0 = std::chrono::steady_clock::now();
            check(kiln_gather_rows(batch, perm.data() + pos, rows, 784 * 4, x, xb.data()), "gather");
            check(kiln_gather_rows(batch, perm.data() + pos, rows, 4, y.data(), yb.data()), "gather");
            gather_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - g0).count());
            xs = xb.data();
            ys = yb.data();
        }
        check(kiln_trainer_step(t, batch, xs, ys, nullptr, 1e-3f, &loss, nullptr), "step");
        pos += batch;
        if (pos + batch > rows) pos = 0;
    };
    for (int i = 0; i < 200; ++i) step();
    std::vector<double> rates;
    for (int r = 0; r < 7; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        int64_t n = 0;
        double el = 0;
        do {
            for (int i = 0; i < 20; ++i) step();
            n += 20 * batch;
            el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        } while (el < seconds);
        rates.push_back(double(n) / el);
    }
    std::sort(rates.begin(), rates.end());
    std::printf("batch %lld threads %d%s: median %.0f samples/s (min %.0f, max %.0f)\n", (long long)batch, threads,
                shuffle ? " shuffled" : "", rates[3], rates[0], rates[6]);
    if (!gather_us.empty()) {
        std::sort(gather_us.begin(), gather_us.end());
        std::printf("gather (x and y) p50 %.1f us a step\n", gather_us[gather_us.size() / 2]);
    }
    kiln_trainer_destroy(t);
    kiln_free(x);
    return 0;
}
