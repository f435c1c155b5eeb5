// Kiln's fixed thread pool.
//
// parallel_for splits [0, n) into at most `threads` contiguous chunks of at least `grain` items and
// runs them on the pool, the calling thread included. Work smaller than `grain`, and any call made
// while another thread owns the pool, runs on the caller alone: a serving thread never waits for
// another's job. Chunk boundaries depend only on n, grain and the pool size, so reductions that
// combine per-chunk results in chunk order are deterministic for a fixed thread count.
#pragma once

#include <cstdint>
#include <type_traits>

namespace kiln {

using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);

int pool_threads();
void parallel_for_raw(int64_t n, int64_t grain, RangeFn fn, void* ctx);

template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
    using Fn = std::remove_reference_t<F>;  // f may be a named lambda (an lvalue) or a temporary
    auto tramp = [](void* ctx, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(b, e); };
    parallel_for_raw(n, grain, tramp, const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace kiln
