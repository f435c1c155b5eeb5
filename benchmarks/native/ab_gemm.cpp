// In-process A/B of two or more libkiln builds on kiln_sgemm / kiln_sgemm_packed: each build is
// loaded into its own link-map namespace (dlmopen), and the builds take turns shape by shape,
// round by round, so that the machine's slow and fast phases hit them alike. The way to judge a
// kernel change on a shared, noisy machine: separate processes run minutes apart differ by more
// than most changes do.
//
//   ab_gemm ROUNDS SHAPE... -- LIB...
//   SHAPE: m,k,n[,packed[,ta[,tb]]]   (packed: B pre-packed with kiln_sgemm_pack_b; ta, tb: 0 or 1)
//   env T: threads (default 1); KILN_ISA applies to every build.
//
// Prints, per shape and build, the median of the rounds' GFLOP/s (each round's value: the median
// call of a batch) and, in brackets, the best round. Save a build with
//   cp target/native-release/lib/libkiln.so /tmp/before/
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ab_common.hpp"
#include "kiln/kiln.h"

namespace {

struct Lib {
    std::string path;
    decltype(&kiln_sgemm) sgemm;
    decltype(&kiln_sgemm_packed) sgemm_packed;
    decltype(&kiln_sgemm_pack_b) pack_b;
    decltype(&kiln_packed_b_destroy) packed_destroy;
    decltype(&kiln_threads_set) threads_set;
};

struct Shape {
    long m = 0, k = 0, n = 0;
    int packed = 0, ta = 0, tb = 0;
};

template <class F>
F symbol(void* h, const char* name) {
    return ab::symbol<F>("ab_gemm", h, name);
}

using ab::median;

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: ab_gemm ROUNDS m,k,n[,packed[,ta[,tb]]]... -- libkiln.so...\n");
        return 2;
    }
    const int rounds = std::max(1, std::atoi(argv[1]));
    std::vector<Shape> shapes;
    int i = 2;
    for (; i < argc && std::strcmp(argv[i], "--") != 0; ++i) {
        Shape s;
        if (std::sscanf(argv[i], "%ld,%ld,%ld,%d,%d,%d", &s.m, &s.k, &s.n, &s.packed, &s.ta, &s.tb) < 3 ||
            s.m < 1 || s.k < 1 || s.n < 1) {
            std::fprintf(stderr, "ab_gemm: bad shape '%s'\n", argv[i]);
            return 2;
        }
        shapes.push_back(s);
    }
    const int threads = std::getenv("T") ? std::atoi(std::getenv("T")) : 1;
    std::vector<Lib> libs;
    for (++i; i < argc; ++i) {
        void* h = ab::open("ab_gemm", argv[i]);
        Lib l{argv[i],
              symbol<decltype(&kiln_sgemm)>(h, "kiln_sgemm"),
              symbol<decltype(&kiln_sgemm_packed)>(h, "kiln_sgemm_packed"),
              symbol<decltype(&kiln_sgemm_pack_b)>(h, "kiln_sgemm_pack_b"),
              symbol<decltype(&kiln_packed_b_destroy)>(h, "kiln_packed_b_destroy"),
              symbol<decltype(&kiln_threads_set)>(h, "kiln_threads_set")};
        if (l.threads_set(threads) != KILN_OK) return 2;
        libs.push_back(l);
    }
    if (shapes.empty() || libs.empty()) {
        std::fprintf(stderr, "ab_gemm: no shapes or no libraries\n");
        return 2;
    }
    for (const Shape& s : shapes) {
        std::vector<float> a(size_t(s.m * s.k)), b(size_t(s.k * s.n)), c(size_t(s.m * s.n));
        for (size_t j = 0; j < a.size(); ++j) a[j] = float(j % 17) * 0.01f;
        for (size_t j = 0; j < b.size(); ++j) b[j] = float(j % 13) * 0.01f;
        const long lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
        std::vector<kiln_packed_b*> packed(libs.size(), nullptr);
        if (s.packed)
            for (size_t L = 0; L < libs.size(); ++L)
                if (libs[L].pack_b(s.tb, s.k, s.n, b.data(), ldb, &packed[L]) != KILN_OK) return 1;
        const double flop = 2.0 * double(s.m) * double(s.k) * double(s.n);
        const int reps = std::min(400, std::max(5, int(2e8 / flop)));  // calls timed a round
        const int group = std::max(1, int(2e5 / flop));                 // calls a timing (tiny ones)
        std::vector<std::vector<double>> gflops(libs.size());
        for (int r = 0; r < rounds; ++r)
            for (size_t L = 0; L < libs.size(); ++L) {
                std::vector<double> t;
                for (int q = 0; q < reps; ++q) {
                    const auto t0 = std::chrono::steady_clock::now();
                    for (int g = 0; g < group; ++g) {
                        const kiln_status st =
                            s.packed ? libs[L].sgemm_packed(s.ta, s.m, 1, a.data(), lda, packed[L], 0, c.data(),
                                                            s.n, nullptr)
                                     : libs[L].sgemm(s.ta, s.tb, s.m, s.n, s.k, 1, a.data(), lda, b.data(), ldb, 0,
                                                     c.data(), s.n, nullptr);
                        if (st != KILN_OK) return 1;
                    }
                    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                                group);
                }
                gflops[L].push_back(flop / median(t) / 1e9);
            }
        std::printf("%c%c %5ldx%ldx%ld %s", s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.m, s.k, s.n,
                    s.packed ? "packed" : "plain ");
        for (size_t L = 0; L < libs.size(); ++L)
            std::printf("  %6.1f [%5.1f]", median(gflops[L]), *std::max_element(gflops[L].begin(), gflops[L].end()));
        std::printf("\n");
        for (size_t L = 0; L < libs.size(); ++L)
            if (packed[L] != nullptr) libs[L].packed_destroy(packed[L]);
    }
    return 0;
}
