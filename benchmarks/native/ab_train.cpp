// In-process A/B of two or more libkiln builds on the training step (kiln_trainer_step), as
// ab_gemm does for GEMMs: each build is loaded into its own link-map namespace (dlmopen) and the
// builds take turns, round by round, so that the shared machine's slow and fast phases hit them
// alike. The model is bench_train's: the Fashion-MNIST MLP 784-256-128-10 (ReLU, softmax
// cross-entropy, Adam lr 1e-3), on random data of the same shape, or on Fashion-MNIST itself with
// AB_DATA=DIR (the directory of train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz, read
// through gzip -dc; pixels / 255). Real images matter where values do: their blank borders and dead
// units leave gradients that are mostly zero, and Adam's moments decay through the subnormal range.
//
//   ab_train ROUNDS BATCH THREADS -- LIB...
//
// A round runs about 0.25 s of steps per build. Prints, per build, the median of the rounds'
// samples/s and, in brackets, the best round.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
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
    decltype(&kiln_threads_set) threads_set;
    decltype(&kiln_trainer_step) step;
    decltype(&kiln_last_error) last_error;
    kiln_trainer* t = nullptr;
};

template <class F>
F symbol(void* h, const char* name) {
    return ab::symbol<F>("ab_train", h, name);
}

// The bytes of a gzipped IDX file after its header (magic 0x0000080N, N dimensions of 4 bytes),
// and the count of items (the first dimension).
std::vector<unsigned char> read_idx_gz(const std::string& path, int64_t* items) {
    const std::string cmd = "gzip -dc '" + path + "'";
    FILE* f = popen(cmd.c_str(), "r");
    std::vector<unsigned char> all;
    if (f != nullptr) {
        unsigned char buf[1 << 16];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) all.insert(all.end(), buf, buf + n);
        if (pclose(f) != 0) all.clear();
    }
    if (all.size() < 8 || all[0] != 0 || all[1] != 0 || all[2] != 8) {
        std::fprintf(stderr, "ab_train: %s: not a gzipped IDX file of unsigned bytes\n", path.c_str());
        std::exit(2);
    }
    const size_t dims = all[3], head = 4 + 4 * dims;
    auto dim = [&](size_t d) {
        const unsigned char* q = all.data() + 4 + 4 * d;
        return int64_t(q[0]) << 24 | int64_t(q[1]) << 16 | int64_t(q[2]) << 8 | int64_t(q[3]);
    };
    *items = dim(0);
    return std::vector<unsigned char>(all.begin() + std::min(head, all.size()), all.end());
}

void check(kiln_status st, const Lib& l, const char* what) {
    if (st != KILN_OK) ab::check("ab_train", st, l.path.c_str(), what, l.last_error());
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 6 || std::strcmp(argv[4], "--") != 0) {
        std::fprintf(stderr, "usage: ab_train ROUNDS BATCH THREADS -- libkiln.so...\n");
        return 2;
    }
    const int rounds = std::max(1, std::atoi(argv[1]));
    const int64_t batch = std::max(1, std::atoi(argv[2]));
    const int threads = std::max(1, std::atoi(argv[3]));
    const int64_t dims[4] = {784, 256, 128, 10};
    int64_t rows = std::max<int64_t>(8192 / batch, 1) * batch;
    std::mt19937 rng(1);
    std::vector<float> x;
    std::vector<int32_t> y;
    const char* dir = std::getenv("AB_DATA");
    if (dir != nullptr && *dir != '\0') {
        int64_t n = 0, nl = 0;
        const auto px = read_idx_gz(std::string(dir) + "/train-images-idx3-ubyte.gz", &n);
        const auto lb = read_idx_gz(std::string(dir) + "/train-labels-idx1-ubyte.gz", &nl);
        if (n != nl || n < batch || int64_t(px.size()) != n * 784 || int64_t(lb.size()) != n) {
            std::fprintf(stderr, "ab_train: AB_DATA=%s: images and labels do not match (%lld, %lld)\n", dir,
                         (long long)n, (long long)nl);
            return 2;
        }
        rows = n / batch * batch;
        x.resize(size_t(rows * 784));
        for (size_t i = 0; i < x.size(); ++i) x[i] = float(px[i]) / 255.0f;
        y.assign(lb.begin(), lb.begin() + rows);
    } else {
        std::normal_distribution<float> nd(0.0f, 1.0f);
        x.resize(size_t(rows * 784));
        for (float& v : x) v = std::max(0.0f, nd(rng) * 0.3f + 0.3f);
        y.resize(size_t(rows));
        for (int32_t& v : y) v = int32_t(rng() % 10);
    }
    std::vector<std::vector<float>> w(3), b(3);
    for (int l = 0; l < 3; ++l) {
        w[size_t(l)].resize(size_t(dims[l] * dims[l + 1]));
        b[size_t(l)].assign(size_t(dims[l + 1]), 0.0f);
        std::normal_distribution<float> he(0.0f, std::sqrt(2.0f / float(dims[l])));
        for (float& v : w[size_t(l)]) v = he(rng);
    }
    std::vector<Lib> libs;
    for (int i = 5; i < argc; ++i) {
        void* h = ab::open("ab_train", argv[i]);
        Lib l{argv[i], symbol<decltype(&kiln_threads_set)>(h, "kiln_threads_set"),
              symbol<decltype(&kiln_trainer_step)>(h, "kiln_trainer_step"),
              symbol<decltype(&kiln_last_error)>(h, "kiln_last_error")};
        check(l.threads_set(threads), l, "kiln_threads_set");
        auto create = symbol<decltype(&kiln_trainer_create)>(h, "kiln_trainer_create");
        auto dense = symbol<decltype(&kiln_trainer_add_dense)>(h, "kiln_trainer_add_dense");
        auto act = symbol<decltype(&kiln_trainer_add_activation)>(h, "kiln_trainer_add_activation");
        auto loss = symbol<decltype(&kiln_trainer_set_loss)>(h, "kiln_trainer_set_loss");
        auto opt = symbol<decltype(&kiln_trainer_set_optimizer)>(h, "kiln_trainer_set_optimizer");
        auto compile = symbol<decltype(&kiln_trainer_compile)>(h, "kiln_trainer_compile");
        check(create(784, batch, &l.t), l, "kiln_trainer_create");
        for (int d = 0; d < 3; ++d) {
            check(dense(l.t, dims[d + 1], w[size_t(d)].data(), b[size_t(d)].data()), l, "kiln_trainer_add_dense");
            if (d < 2) check(act(l.t, KILN_UNARY_RELU, 0.0f), l, "kiln_trainer_add_activation");
        }
        check(loss(l.t, KILN_LOSS_SOFTMAX_CROSS_ENTROPY, 0.0f, nullptr), l, "kiln_trainer_set_loss");
        const kiln_optimizer o{KILN_OPT_ADAM, 0, 0.0f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, 0.0f};
        check(opt(l.t, &o), l, "kiln_trainer_set_optimizer");
        check(compile(l.t), l, "kiln_trainer_compile");
        libs.push_back(l);
    }
    // Steps a round: about 0.25 s at the first build's speed, measured on a warm-up.
    int64_t at = 0;
    auto run = [&](Lib& l, int64_t steps) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t s = 0; s < steps; ++s) {
            double lv;
            check(l.step(l.t, batch, x.data() + at * 784, y.data() + at, nullptr, 1e-3f, &lv, nullptr), l,
                  "kiln_trainer_step");
            at = (at + batch) % rows;
        }
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    for (Lib& l : libs) run(l, 20);
    const double per_step = run(libs[0], 50) / 50;
    const int64_t steps = std::max<int64_t>(5, int64_t(0.25 / per_step));
    std::vector<std::vector<double>> rate(libs.size());
    for (int r = 0; r < rounds; ++r)
        for (size_t L = 0; L < libs.size(); ++L) rate[L].push_back(double(steps * batch) / run(libs[L], steps));
    std::printf("batch %lld threads %d, %d rounds of %lld steps\n", (long long)batch, threads, rounds,
                (long long)steps);
    for (size_t L = 0; L < libs.size(); ++L) {
        std::printf("  %-40s %9.0f samples/s [best %9.0f]\n", libs[L].path.c_str(), ab::median(rate[L]),
                    *std::max_element(rate[L].begin(), rate[L].end()));
    }
    return 0;
}
