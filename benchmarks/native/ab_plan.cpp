// In-process A/B of two or more libkiln builds on inference plans (kiln_plan_run), as ab_gemm does
// for GEMMs: each build is loaded into its own link-map namespace (dlmopen) and the builds take
// turns, round by round, so that the shared machine's slow and fast phases hit them alike. The
// models are the inference suite's (BENCHMARKS.md), with He-normal weights and zero biases:
//   tiny       16 -> 16
//   mlp-small  784 -> 512 ReLU -> 256 ReLU -> 10, softmax
//   mlp-wide   1024 -> 4096 ReLU -> 4096 ReLU -> 1024
//
//   ab_plan ROUNDS MODEL BATCH THREADS -- LIB...
//
// A round runs about 0.25 s of forwards per build. Prints, per build, the median forward in
// microseconds (each round's value: the median of its calls), the best round in brackets, and the
// rounds' median of the 99th percentile.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ab_common.hpp"
#include "kiln/kiln.h"

namespace {

struct Lib {
    std::string path;
    decltype(&kiln_plan_run) run;
    decltype(&kiln_last_error) last_error;
    kiln_plan* plan = nullptr;
    void* work = nullptr;
    int64_t work_bytes = 0;
};

template <class F>
F symbol(void* h, const char* name) {
    return ab::symbol<F>("ab_plan", h, name);
}

void check(kiln_status st, const Lib& l, const char* what) {
    if (st != KILN_OK) ab::check("ab_plan", st, l.path.c_str(), what, l.last_error());
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 7 || std::strcmp(argv[5], "--") != 0) {
        std::fprintf(stderr, "usage: ab_plan ROUNDS tiny|mlp-small|mlp-wide BATCH THREADS -- libkiln.so...\n");
        return 2;
    }
    const int rounds = std::max(1, std::atoi(argv[1]));
    const std::string model = argv[2];
    const int64_t batch = std::max(1, std::atoi(argv[3]));
    const int threads = std::max(1, std::atoi(argv[4]));
    std::vector<int64_t> dims;
    if (model == "tiny") dims = {16, 16};
    else if (model == "mlp-small") dims = {784, 512, 256, 10};
    else if (model == "mlp-wide") dims = {1024, 4096, 4096, 1024};
    else {
        std::fprintf(stderr, "ab_plan: unknown model '%s' (tiny, mlp-small, mlp-wide)\n", model.c_str());
        return 2;
    }
    const size_t layers = dims.size() - 1;
    std::mt19937 rng(1);
    std::vector<std::vector<float>> w(layers), b(layers);
    for (size_t l = 0; l < layers; ++l) {
        std::normal_distribution<float> he(0.0f, std::sqrt(2.0f / float(dims[l])));
        w[l].resize(size_t(dims[l] * dims[l + 1]));
        for (float& v : w[l]) v = he(rng);
        b[l].assign(size_t(dims[l + 1]), 0.0f);
    }
    std::uniform_real_distribution<float> ud(0.0f, 1.0f);
    std::vector<float> x(size_t(batch * dims[0]));
    for (float& v : x) v = ud(rng);
    std::vector<float> y(size_t(batch * dims.back()));

    std::vector<Lib> libs;
    for (int i = 6; i < argc; ++i) {
        void* h = ab::open("ab_plan", argv[i]);
        Lib l{argv[i], symbol<decltype(&kiln_plan_run)>(h, "kiln_plan_run"),
              symbol<decltype(&kiln_last_error)>(h, "kiln_last_error")};
        check(symbol<decltype(&kiln_threads_set)>(h, "kiln_threads_set")(threads), l, "kiln_threads_set");
        check(symbol<decltype(&kiln_plan_create)>(h, "kiln_plan_create")(dims[0], batch, &l.plan), l,
              "kiln_plan_create");
        auto dense = symbol<decltype(&kiln_plan_add_dense)>(h, "kiln_plan_add_dense");
        for (size_t d = 0; d < layers; ++d) {
            const bool hidden = d + 1 < layers;  // ReLU after every layer but the last
            check(dense(l.plan, dims[d + 1], w[d].data(), b[d].data(),
                        hidden ? KILN_UNARY_RELU : KILN_UNARY_IDENTITY, 0.0f), l, "kiln_plan_add_dense");
        }
        if (model == "mlp-small")
            check(symbol<decltype(&kiln_plan_add_softmax)>(h, "kiln_plan_add_softmax")(l.plan, 0), l,
                  "kiln_plan_add_softmax");
        check(symbol<decltype(&kiln_plan_compile)>(h, "kiln_plan_compile")(l.plan), l, "kiln_plan_compile");
        check(symbol<decltype(&kiln_plan_info)>(h, "kiln_plan_info")(l.plan, nullptr, nullptr, nullptr,
                                                                      &l.work_bytes), l, "kiln_plan_info");
        check(symbol<decltype(&kiln_alloc)>(h, "kiln_alloc")(std::max<int64_t>(l.work_bytes, 64), &l.work), l,
              "kiln_alloc");
        libs.push_back(l);
    }
    // Each build's output is checked against the first's before timing.
    std::vector<float> first;
    for (Lib& l : libs) {
        check(l.run(l.plan, batch, x.data(), y.data(), l.work, l.work_bytes), l, "kiln_plan_run");
        if (first.empty()) {
            first = y;
            continue;
        }
        for (size_t i = 0; i < y.size(); ++i)
            if (std::fabs(y[i] - first[i]) > 1e-4f * std::max(1.0f, std::fabs(first[i]))) {
                std::fprintf(stderr, "ab_plan: %s: output %zu is %g, the first build's %g\n", l.path.c_str(), i,
                             double(y[i]), double(first[i]));
                return 1;
            }
    }
    std::vector<double> times;
    auto run = [&](Lib& l, int64_t calls, double* p99) {
        times.clear();
        for (int64_t c = 0; c < calls; ++c) {
            const auto t0 = std::chrono::steady_clock::now();
            check(l.run(l.plan, batch, x.data(), y.data(), l.work, l.work_bytes), l, "kiln_plan_run");
            times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e6);
        }
        std::sort(times.begin(), times.end());
        if (p99 != nullptr) *p99 = times[times.size() * 99 / 100];
        return times[times.size() / 2];
    };
    for (Lib& l : libs) run(l, 20, nullptr);
    const double per_call = run(libs[0], 50, nullptr) * 1e-6;
    const int64_t calls = std::max<int64_t>(20, int64_t(0.25 / per_call));
    std::vector<std::vector<double>> p50(libs.size()), p99(libs.size());
    for (int r = 0; r < rounds; ++r)
        for (size_t L = 0; L < libs.size(); ++L) {
            double q;
            p50[L].push_back(run(libs[L], calls, &q));
            p99[L].push_back(q);
        }
    std::printf("%s batch %lld threads %d, %d rounds of %lld calls: p50 us [best round] p99 us\n", model.c_str(),
                (long long)batch, threads, rounds, (long long)calls);
    for (size_t L = 0; L < libs.size(); ++L)
        std::printf("  %-44s %10.2f [%10.2f] %10.2f\n", libs[L].path.c_str(), ab::median(p50[L]),
                    *std::min_element(p50[L].begin(), p50[L].end()), ab::median(p99[L]));
    return 0;
}
