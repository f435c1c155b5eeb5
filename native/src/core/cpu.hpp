// CPU feature detection (once, at load) and the ISA the dispatch tables use.
#pragma once

#include <cstdint>

#include "kiln/kiln.h"

namespace kiln {

uint64_t cpu_feature_bits();      // OR of kiln_cpu_feature, detected once
kiln_isa best_isa();              // the best level this CPU and OS support
kiln_isa current_isa();           // the level dispatch uses now (best, or forced lower)
bool isa_supported(kiln_isa isa); // may kernels of this level run here?

// Picks the entry of a per-op table for the current ISA: the table lists entries best first and
// ends with the portable `_ref` one, which always qualifies.
template <typename Entry, int N>
const Entry& select_kernel(const Entry (&table)[N]) {
    const kiln_isa isa = current_isa();
    for (int i = 0; i < N; ++i)
        if (table[i].isa <= isa) return table[i];
    return table[N - 1];
}

}  // namespace kiln
