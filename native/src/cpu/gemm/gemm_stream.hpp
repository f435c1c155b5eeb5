// Stream kernels (see GemmStreamKernel in gemm_kernels.hpp): products of a few rows with a B read
// in place, B's rows read front to back.
//
// Included by the AVX2 and the AVX-512 kernel files, each compiling its own copy (internal
// linkage: no copy built for one ISA can stand in for the other's) with its own blocking per row
// count, as its register file allows, and its vector width: AVX-512 streams B not transposed in
// 512-bit vectors (256-bit ones ran ~10% slower) but takes the dot products of B transposed in
// 256-bit ones (512-bit ones streamed B's rows slower: 1 thread, GFLOP/s, 1x1024x1024 34 against
// 38-40, 3x1024x1024 60 against 94, 4x784x512 84 against 100).
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "gemm_vec.hpp"

namespace kiln {
namespace {

// ---- B not transposed: C[i][:] = sum_k op(A)[i][k] B[k][:], one FMA chain per element in k order.
// A pass takes U k steps: U rows of B are read once across the nc columns; each accumulator row
// (in L1) is loaded, takes U FMAs and is stored.
template <class V, int M, int U, bool Tail>
__attribute__((always_inline)) inline void stream_columns(const typename V::Reg (&av)[M][U], const float* bp,
                                                          int64_t ldb, int64_t j, typename V::Mask m, float* acc,
                                                          int64_t ld_acc) {
    typename V::Reg bv[U];
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) bv[u] = Tail ? V::load_tail(bp + u * ldb + j, m) : V::loadu(bp + u * ldb + j);
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
        typename V::Reg x = V::load(acc + i * ld_acc + j);
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) x = V::fma(av[i][u], bv[u], x);
        V::store(acc + i * ld_acc + j, x);
    }
}

template <class V, int M, int U>
__attribute__((always_inline)) inline void stream_pass(const float* a, int64_t lda, bool ta, int64_t p,
                                                       const float* b, int64_t ldb, int64_t nc, float* acc,
                                                       int64_t ld_acc) {
    typename V::Reg av[M][U];
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) av[i][u] = V::set1(ta ? a[(p + u) * lda + i] : a[i * lda + p + u]);
    const float* bp = b + p * ldb;
    constexpr int L = V::kLanes;
    int64_t j = 0;
    for (; j + L <= nc; j += L) stream_columns<V, M, U, false>(av, bp, ldb, j, typename V::Mask(), acc, ld_acc);
    if (j < nc) stream_columns<V, M, U, true>(av, bp, ldb, j, V::tail(nc - j), acc, ld_acc);
}

// A GemmStreamKernel for B not transposed: M rows, U k steps a pass, vectors V.
template <class V, int M, int U>
void stream_rows(int64_t k, const float* a, int64_t lda, bool ta, const float* b, int64_t ldb, int64_t nc, float* acc,
                 float* c, int64_t ldc, float alpha, float beta, bool load_c) {
    constexpr int L = V::kLanes;
    const int64_t ld_acc = stream_ld(nc);
    for (int64_t i = 0; i < M * ld_acc; i += L) V::store(acc + i, V::zero());
    int64_t p = 0;
    for (; p + U <= k; p += U) stream_pass<V, M, U>(a, lda, ta, p, b, ldb, nc, acc, ld_acc);
    for (; p < k; ++p) stream_pass<V, M, 1>(a, lda, ta, p, b, ldb, nc, acc, ld_acc);
    // alpha * sum (+ beta * C), as the tiles store.
    const typename V::Reg va = V::set1(alpha), vb = V::set1(beta);
    for (int i = 0; i < M; ++i)
        for (int64_t j = 0; j < nc; j += L) {
            const typename V::Mask m = V::tail(nc - j < L ? nc - j : L);
            float* cp = c + i * ldc + j;
            typename V::Reg x = V::mul(V::load(acc + i * ld_acc + j), va);
            if (load_c) x = V::fma(vb, V::load_tail(cp, m), x);
            V::store_tail(cp, m, x);
        }
}

// ---- B transposed (op(B)[k][j] = b[j * ldb + k]): C[i][j] is the dot product of A's row i and
// B's row j. J rows of B at a time against the M rows of A, M x J accumulators over k, each summed
// across its lanes (halves added pairwise) at the end.
// Lane q of the result: the sum of g[q]'s 8 lanes, always as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) +
// (l6 + l7)), so a dot product's bits do not depend on which kernel, group or thread computed it.
// Four horizontal adds and a cross-half add for 8 sums (the store and 7 scalar adds a sum it
// replaced were ~8 cycles each: 128 / K of a dot kernel's time).
__attribute__((always_inline)) inline __m256 sum8(const __m256 (&g)[8]) {
    const __m256 t0 = _mm256_hadd_ps(g[0], g[1]), t1 = _mm256_hadd_ps(g[2], g[3]);
    const __m256 t2 = _mm256_hadd_ps(g[4], g[5]), t3 = _mm256_hadd_ps(g[6], g[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

template <int M, int J>
inline void dot_rows(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* out) {
    __m256 s[M][J];
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < J; ++j) s[i][j] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        __m256 bv[J];
#pragma GCC unroll 8
        for (int j = 0; j < J; ++j) {
            bv[j] = _mm256_loadu_ps(b + j * ldb + p);
            // Loaded once for all M rows: GCC folded it into every row's FMA. 1 thread, GFLOP/s,
            // NT (B transposed, in place): 2x512x256 80 -> 95, 2x1024x1024 42 -> 57.
            if constexpr (M > 1) __asm__("" : "+x"(bv[j]));
        }
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i) {
            __m256 av = _mm256_loadu_ps(a + i * lda + p);
            // In a register, loaded once: left alone, GCC folded the load into each of the J FMAs
            // (AVX2, J = 2: 10 loads for 8 FMAs instead of 6).
            __asm__("" : "+x"(av));
#pragma GCC unroll 8
            for (int j = 0; j < J; ++j) s[i][j] = _mm256_fmadd_ps(av, bv[j], s[i][j]);
        }
    }
    if (p < k) {
        const __m256i m = lanes_below(k - p);
        __m256 bv[J];
#pragma GCC unroll 8
        for (int j = 0; j < J; ++j) bv[j] = _mm256_maskload_ps(b + j * ldb + p, m);
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i) {
            const __m256 av = _mm256_maskload_ps(a + i * lda + p, m);
#pragma GCC unroll 8
            for (int j = 0; j < J; ++j) s[i][j] = _mm256_fmadd_ps(av, bv[j], s[i][j]);
        }
    }
    // Eight accumulators at a time, out[i * J + j] in order; the last group padded with zeros.
    constexpr int kSums = M * J, kFull = kSums / 8 * 8;
    __m256 g[8];
#pragma GCC unroll 4
    for (int c0 = 0; c0 < kFull; c0 += 8) {
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) g[q] = s[(c0 + q) / J][(c0 + q) % J];
        _mm256_storeu_ps(out + c0, sum8(g));
    }
    if constexpr (kFull < kSums) {
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) g[q] = kFull + q < kSums ? s[(kFull + q) / J][(kFull + q) % J] : _mm256_setzero_ps();
        alignas(32) float l[8];
        _mm256_store_ps(l, sum8(g));
        for (int q = 0; q < kSums - kFull; ++q) out[kFull + q] = l[q];
    }
}

// A GemmStreamKernel for B transposed: M rows, J rows of B per group.
template <int M, int J>
void stream_rows_t(int64_t k, const float* a, int64_t lda, bool, const float* b, int64_t ldb, int64_t nc, float*,
                   float* c, int64_t ldc, float alpha, float beta, bool load_c) {
    float dots[M * J];
    // C[i][j0 + j] for j < w from dots[i * w + j]: alpha * dot (+ beta * C), as the tiles store.
    auto finish = [&](int64_t j0, int w) {
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < w; ++j) {
                float x = alpha * dots[i * w + j];
                float* cp = c + i * ldc + j0 + j;
                if (load_c) x = std::fma(beta, *cp, x);
                *cp = x;
            }
    };
    int64_t j0 = 0;
    for (; j0 + J <= nc; j0 += J) {
        dot_rows<M, J>(k, a, lda, b + j0 * ldb, ldb, dots);
        finish(j0, J);
    }
    if (J > 2 && j0 + 2 <= nc) {  // a pair left: one pass over A's rows for both
        dot_rows<M, 2>(k, a, lda, b + j0 * ldb, ldb, dots);
        finish(j0, 2);
        j0 += 2;
    }
    for (; j0 < nc; ++j0) {
        dot_rows<M, 1>(k, a, lda, b + j0 * ldb, ldb, dots);
        finish(j0, 1);
    }
}

}  // namespace
}  // namespace kiln
