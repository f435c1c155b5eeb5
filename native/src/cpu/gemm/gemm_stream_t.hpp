// Stream kernels for B transposed (see GemmStreamKernel): C[i][j] is the dot product of A's row i
// and B's row j, both read front to back. J rows of B at a time against the M rows of A, M x J
// 256-bit accumulators over k, each summed across its lanes (halves added pairwise) at the end.
//
// Included by the AVX2 and the AVX-512 kernel files, each compiling its own copy (internal
// linkage: no copy built for one ISA can stand in for the other's) with its own J per M, as its
// register file allows. The AVX-512 file uses 256-bit vectors too: 512-bit ones streamed B's
// rows slower (measured there).
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace kiln {
namespace {

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
        for (int j = 0; j < J; ++j) bv[j] = _mm256_loadu_ps(b + j * ldb + p);
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i) {
            const __m256 av = _mm256_loadu_ps(a + i * lda + p);
#pragma GCC unroll 8
            for (int j = 0; j < J; ++j) s[i][j] = _mm256_fmadd_ps(av, bv[j], s[i][j]);
        }
    }
    if (p < k) {  // lanes < k - p
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(k - p)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
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
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < J; ++j) {
            alignas(32) float l[8];
            _mm256_store_ps(l, s[i][j]);
            for (int w = 4; w >= 1; w /= 2)
                for (int q = 0; q < w; ++q) l[q] += l[q + w];
            out[i * J + j] = l[0];
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
    for (; j0 < nc; ++j0) {
        dot_rows<M, 1>(k, a, lda, b + j0 * ldb, ldb, dots);
        finish(j0, 1);
    }
}

}  // namespace
}  // namespace kiln
