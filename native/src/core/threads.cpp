#include "threads.hpp"

#include <sched.h>

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "error.hpp"

namespace kiln {
namespace {

// Set while this thread runs a chunk of a pool job: a parallel_for inside it (a GEMM inside a
// training step's per-thread share) runs inline on this thread, without touching the pool (which
// the job's owner holds: trying its lock again from that thread would be undefined behavior).
thread_local bool t_in_job = false;

int default_threads() {
    if (const char* env = std::getenv("KILN_NUM_THREADS")) {
        char* end = nullptr;
        const long v = std::strtol(env, &end, 10);
        if (end != env && *end == '\0' && v >= 1 && v <= 1024) return int(v);
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

class Pool {
public:
    explicit Pool(int threads) : threads_(threads) {
        for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
            stop_flag_ = true;
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
    }
    int threads() const { return threads_; }

    // Returns false (and runs nothing) when another thread owns the pool.
    bool try_run(int64_t n, int64_t chunks, RangeFn fn, void* ctx) {
        std::unique_lock<std::mutex> owner(owner_mu_, std::try_to_lock);
        if (!owner.owns_lock()) return false;
        {
            std::lock_guard<std::mutex> lock(mu_);
            fn_ = fn;
            ctx_ = ctx;
            n_ = n;
            chunks_ = chunks;
            next_ = 0;
            pending_.store(chunks, std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
            if (sleepers_ > 0) wake_.notify_all();
        }
        work();  // the caller takes chunks too
        // Spin briefly (the other chunks are usually nearly done), then sleep.
        for (int i = 0; i < kSpin && pending_.load(std::memory_order_acquire) != 0; ++i) _mm_pause();
        std::unique_lock<std::mutex> lock(mu_);
        done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
        fn_ = nullptr;
        return true;
    }

private:
    // Takes and runs chunks of the current job until none is left.
    void work() {
        for (;;) {
            int64_t c, chunks, n;
            RangeFn fn;
            void* ctx;
            {
                std::lock_guard<std::mutex> lock(mu_);
                if (fn_ == nullptr || next_ >= chunks_) return;
                c = next_++;
                chunks = chunks_;
                n = n_;
                fn = fn_;
                ctx = ctx_;
            }
            const int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
            t_in_job = true;
            fn(ctx, begin, end);
            t_in_job = false;
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lock(mu_);
                done_.notify_all();
            }
        }
    }

    // Workers spin on the generation counter for a short while after each job (jobs often come
    // in bursts: one per layer), then sleep on the condition variable.
    void worker_loop() {
        uint64_t seen = 0;
        for (;;) {
            for (int i = 0; i < kSpin && generation_.load(std::memory_order_acquire) == seen &&
                            !stop_flag_.load(std::memory_order_relaxed);
                 ++i)
                _mm_pause();
            {
                std::unique_lock<std::mutex> lock(mu_);
                ++sleepers_;
                wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
                --sleepers_;
                if (stop_) return;
                seen = generation_.load(std::memory_order_acquire);
            }
            work();
        }
    }

    const int threads_;
    std::vector<std::thread> workers_;
    std::mutex owner_mu_;  // one job at a time
    std::mutex mu_;
    std::condition_variable wake_, done_;
    static constexpr int kSpin = 2000;  // pause is ~65 cycles on Zen 2+: ~40 us
    bool stop_ = false;
    std::atomic<bool> stop_flag_{false};
    int sleepers_ = 0;
    std::atomic<uint64_t> generation_{0};
    RangeFn fn_ = nullptr;
    void* ctx_ = nullptr;
    int64_t n_ = 0, chunks_ = 0, next_ = 0;
    std::atomic<int64_t> pending_{0};
};

std::mutex g_pool_mu;  // guards replacing the pool
std::shared_ptr<Pool> g_pool;
// The pool's size, 0 before it exists: read by every GEMM call to choose its split, without the
// lock that many serving threads calling at once would otherwise queue on.
std::atomic<int> g_threads{0};

std::shared_ptr<Pool> pool() {
    std::lock_guard<std::mutex> lock(g_pool_mu);
    if (!g_pool) {
        g_pool = std::make_shared<Pool>(default_threads());
        g_threads.store(g_pool->threads(), std::memory_order_relaxed);
    }
    return g_pool;
}

}  // namespace

int pool_threads() {
    const int n = g_threads.load(std::memory_order_relaxed);
    return n > 0 ? n : pool()->threads();
}

void parallel_for_raw(int64_t n, int64_t grain, RangeFn fn, void* ctx) {
    if (n <= 0) return;
    if (t_in_job) {
        fn(ctx, 0, n);
        return;
    }
    grain = std::max<int64_t>(grain, 1);
    // One chunk, or one thread: run here without touching the pool (its lock is shared by every
    // thread that calls into Kiln).
    if (n <= grain || pool_threads() <= 1) {
        fn(ctx, 0, n);
        return;
    }
    const auto p = pool();
    const int64_t chunks = std::min<int64_t>(p->threads(), (n + grain - 1) / grain);
    if (chunks <= 1 || !p->try_run(n, chunks, fn, ctx)) fn(ctx, 0, n);
}

}  // namespace kiln

extern "C" KILN_API kiln_status kiln_threads_set(int32_t n) {
    if (n < 1 || n > 1024)
        return kiln::fail(KILN_ERR_INVALID_ARGUMENT, "kiln_threads_set: n is %d: must be in 1..1024", n);
    auto fresh = std::make_shared<kiln::Pool>(n);
    std::lock_guard<std::mutex> lock(kiln::g_pool_mu);
    kiln::g_pool = std::move(fresh);  // the old pool ends when its last user lets go
    kiln::g_threads.store(n, std::memory_order_relaxed);
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_threads_get(int32_t* out) {
    if (out == nullptr) return kiln::fail(KILN_ERR_INVALID_ARGUMENT, "kiln_threads_get: out is NULL");
    *out = kiln::pool_threads();
    return KILN_OK;
}
