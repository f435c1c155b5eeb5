// Helpers shared by the native tests: seeded random data, and running a test body once per ISA
// that this CPU supports (so every variant is checked against the reference on this machine).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kiln/kiln.h"

namespace kiln_test {

// Each kiln_unary_op in double precision, from its definition (the reference of the unary and
// training tests).
inline double ref_activation(int op, double alpha, double x) {
    switch (op) {
        case KILN_UNARY_IDENTITY: return x;
        case KILN_UNARY_RELU: return x < 0 ? 0 : x;
        case KILN_UNARY_LEAKY_RELU: return x < 0 ? alpha * x : x;
        case KILN_UNARY_GELU: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
        case KILN_UNARY_GELU_TANH: return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        case KILN_UNARY_SIGMOID: return 1 / (1 + std::exp(-x));
        case KILN_UNARY_TANH: return std::tanh(x);
        case KILN_UNARY_EXP: return std::exp(x);
        case KILN_UNARY_LOG: return std::log(x);
        case KILN_UNARY_SQRT: return std::sqrt(x);
        case KILN_UNARY_NEG: return -x;
        case KILN_UNARY_ABS: return std::fabs(x);
        case KILN_UNARY_SQUARE: return x * x;
        case KILN_UNARY_SILU: return x / (1 + std::exp(-x));
        case KILN_UNARY_ELU: return x > 0 ? x : alpha * std::expm1(x);
        case KILN_UNARY_SOFTPLUS: return std::log1p(std::exp(x));
        case KILN_UNARY_SELU: return 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * std::expm1(x));
        case KILN_UNARY_MISH: return x * std::tanh(std::log1p(std::exp(x)));
        case KILN_UNARY_BOUNDED_RELU: return std::min(std::max(x, 0.0), alpha);
        case KILN_UNARY_HARDTANH: return std::min(std::max(x, -alpha), alpha);
        case KILN_UNARY_HARD_SIGMOID: return std::min(std::max(alpha * x + 0.5, 0.0), 1.0);
        case KILN_UNARY_HARD_SWISH: return x * std::min(std::max(x + 3, 0.0), 6.0) / 6;
        default: return NAN;
    }
}

inline std::vector<int32_t> supported_isas() {
    int32_t best = 0;
    kiln_isa_best(&best);
    std::vector<int32_t> out;
    for (int32_t i = 0; i <= best; ++i) out.push_back(i);
    return out;
}

// Runs body(isa) with dispatch forced to each supported ISA, restoring the best one after.
template <typename F>
void for_each_isa(F&& body) {
    int32_t before = 0;
    kiln_isa_get(&before);
    for (int32_t isa : supported_isas()) {
        ASSERT_EQ(kiln_isa_set(isa), KILN_OK) << kiln_last_error();
        SCOPED_TRACE(std::string("isa=") + kiln_isa_name(isa));
        body(isa);
    }
    kiln_isa_set(before);
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

}  // namespace kiln_test
