// Vector types and the loops that the AVX2 and the AVX-512 kernel files share, written once over
// the vector type. Each file compiles its own copy (internal linkage: no copy built for one ISA can
// stand in for the other's).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "gemm_kernels.hpp"

namespace kiln {
namespace {

inline __m256i lanes_below(int64_t n) {  // lanes < n set (n in 0..8)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Vector types: 8 lanes (AVX2) and, where AVX-512 is enabled, 16.
struct Vec8 {
    using Reg = __m256;
    using Mask = __m256i;
    static constexpr int kLanes = 8;
    static Reg zero() { return _mm256_setzero_ps(); }
    static Reg set1(float x) { return _mm256_set1_ps(x); }
    static Reg load(const float* p) { return _mm256_load_ps(p); }
    static Reg loadu(const float* p) { return _mm256_loadu_ps(p); }
    static Mask tail(int64_t n) { return lanes_below(n); }
    static Reg load_tail(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
    static void store(float* p, Reg x) { _mm256_store_ps(p, x); }
    static void storeu(float* p, Reg x) { _mm256_storeu_ps(p, x); }
    static void store_tail(float* p, Mask m, Reg x) { _mm256_maskstore_ps(p, m, x); }
    static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
    static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
};
#ifdef __AVX512F__
struct Vec16 {
    using Reg = __m512;
    using Mask = __mmask16;
    static constexpr int kLanes = 16;
    static Reg zero() { return _mm512_setzero_ps(); }
    static Reg set1(float x) { return _mm512_set1_ps(x); }
    static Reg load(const float* p) { return _mm512_load_ps(p); }
    static Reg loadu(const float* p) { return _mm512_loadu_ps(p); }
    static Mask tail(int64_t n) { return Mask((1u << n) - 1); }
    static Reg load_tail(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
    static void store(float* p, Reg x) { _mm512_store_ps(p, x); }
    static void storeu(float* p, Reg x) { _mm512_storeu_ps(p, x); }
    static void store_tail(float* p, Mask m, Reg x) { _mm512_mask_storeu_ps(p, m, x); }
    static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
    static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
};
#endif

// pack_b for op(B) not transposed, n >= NR: whole NR-column panels copied row by row with full
// vectors, the source rows prefetched kRowsAhead rows ahead (they come from L3 or DRAM, a row
// stride apart); the columns past the last whole panel through the generic pack_b. 2048^3 on
// AVX-512, 1 thread: packing B 2.0% -> 1.4-1.6% of the time; KILN_ISA=avx2: 3.7% -> 2.7%. (12 rows
// ahead was worse; so was the generic pack_b with the same prefetch.)
template <class V, int NR>
void pack_b_rows(const float* b, int64_t ldb, int64_t j0, int64_t n, int64_t p0, int64_t kc, float* dst) {
    constexpr int64_t kRowsAhead = 4;
    constexpr int L = V::kLanes;
    const int64_t full = n / NR * NR;
    for (int64_t k = 0; k < kc; ++k) {
        const float* src = b + (p0 + k) * ldb + j0;
        if (k + kRowsAhead < kc)
            for (int64_t j = 0; j < n; j += 16)
                _mm_prefetch(reinterpret_cast<const char*>(src + kRowsAhead * ldb + j), _MM_HINT_T0);
        float* o = dst + k * NR;
        for (int64_t jp = 0; jp < full; jp += NR)
#pragma GCC unroll 4
            for (int q = 0; q < NR / L; ++q) V::storeu(o + jp * kc + q * L, V::loadu(src + jp + q * L));
    }
    if (full < n) pack_b(false, b, ldb, j0 + full, n - full, p0, kc, NR, dst + full * kc);
}

}  // namespace
}  // namespace kiln
