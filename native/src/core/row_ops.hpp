// Row-wise layer kernels shared by inference plans and trainers: one definition of each forward
// pass, so the plan serves exactly what the trainer trained.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kiln/kiln.h"

namespace kiln {

// y = x[:, begin:begin + out] for `rows` rows of `in` features.
inline void slice_rows(int64_t rows, int64_t in, int64_t begin, int64_t out, const float* x, float* y) {
    for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * out, x + r * in + begin, size_t(out) * sizeof(float));
}

// y = [a | b] row by row (a: wa features, b: wb).
inline void concat_rows(int64_t rows, int64_t wa, int64_t wb, const float* a, const float* b, float* y) {
    for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(y + r * (wa + wb), a + r * wa, size_t(wa) * sizeof(float));
        std::memcpy(y + r * (wa + wb) + wa, b + r * wb, size_t(wb) * sizeof(float));
    }
}

// Mean, sum or maximum (a NaN stays NaN) over the in / d positions of d features of each row.
inline void pool_rows(int32_t mode, int64_t rows, int64_t in, int64_t d, const float* x, float* y) {
    const int64_t positions = in / d;
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * in;
        float* yr = y + r * d;
        std::memcpy(yr, xr, size_t(d) * sizeof(float));
        for (int64_t p = 1; p < positions; ++p)
            for (int64_t j = 0; j < d; ++j) {
                const float v = xr[p * d + j];
                yr[j] = mode != KILN_POOL_MAX ? yr[j] + v : v > yr[j] || std::isnan(v) ? v : yr[j];
            }
        if (mode == KILN_POOL_MEAN)
            for (int64_t j = 0; j < d; ++j) yr[j] /= float(positions);
    }
}

// y = x * scale + shift per feature.
inline void scale_shift_rows(int64_t rows, int64_t n, const float* x, const float* scale, const float* shift, float* y) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) y[r * n + j] = x[r * n + j] * scale[j] + shift[j];
}

// PReLU: y = x where x > 0, else x * slope per feature (a NaN stays NaN).
inline void prelu_rows(int64_t rows, int64_t n, const float* x, const float* slope, float* y) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] > 0.0f ? xr[j] : xr[j] * slope[j];
    }
}

// Sum of a[j] * b[j] in double over four interleaved partial sums: with one chain of dependent
// adds, the L2 normalization of 256 rows of 512 features took 154-158 us on Zen 3 (a plan of that
// layer alone, median of 2000 runs), 65 us with four.
inline double dot_double(int64_t n, const float* a, const float* b) {
    double s[4] = {0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        for (int k = 0; k < 4; ++k) s[k] += double(a[j + k]) * double(b[j + k]);
    for (; j < n; ++j) s[0] += double(a[j]) * double(b[j]);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

// y = x / max(||x||_2, eps) row by row, as torch's F.normalize (the sum of squares in double; a
// row holding a NaN or an infinity gives NaNs). norm (may be null): each row's ||x||_2.
inline void l2_normalize_rows(int64_t rows, int64_t n, float eps, const float* x, float* y, float* norm) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        const float nr = float(std::sqrt(dot_double(n, xr, xr)));
        const float d = nr > eps || std::isnan(nr) ? nr : eps;
        for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] / d;
        if (norm != nullptr) norm[r] = nr;
    }
}

}  // namespace kiln
