// Helpers shared by the native tests: seeded random data, and running a test body once per ISA
// that this CPU supports (so every variant is checked against the reference on this machine).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kiln/kiln.h"

namespace kiln_test {

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
