// 16 x 16 transpose of 32-bit elements in AVX-512 registers, for the packers of the AVX-512 GEMMs
// (f32 values, or bf16 pairs as one 32-bit unit). Include only from files built with AVX-512.
#pragma once

#include <immintrin.h>

namespace kiln {

// Round s swaps bit s of the row index with bit s of the column index (rows i and i | 2^s trade
// the halves of each 2^(s+1)-lane group); four rounds swap all four bits: r[i][j] -> r[j][i].
inline void transpose16_u32(__m512i r[16]) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) {
        const int bit = 1 << s;
        alignas(64) int lo[16], hi[16];
        for (int c = 0; c < 16; ++c) {
            lo[c] = (c & bit) ? 16 + (c & ~bit) : c;
            hi[c] = (c & bit) ? 16 + c : (c | bit);
        }
        const __m512i il = _mm512_load_si512(lo), ih = _mm512_load_si512(hi);
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
            if (i & bit) continue;
            const __m512i a = r[i], b = r[i | bit];
            r[i] = _mm512_permutex2var_epi32(a, il, b);
            r[i | bit] = _mm512_permutex2var_epi32(a, ih, b);
        }
    }
}

}  // namespace kiln
