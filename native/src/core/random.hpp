// Counter-based random numbers: a pure function of (seed, index), so results never depend on the
// thread count, the ISA or the order of evaluation. SplitMix64's finalizer as the mixer.
#pragma once

#include <cstdint>

namespace kiln {

inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// The index-th 64-bit value of the stream named by seed.
inline uint64_t counter_random(uint64_t seed, uint64_t index) {
    return mix64(mix64(seed) + index * 0x9e3779b97f4a7c15ull);
}

}  // namespace kiln
