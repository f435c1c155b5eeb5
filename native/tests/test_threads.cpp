#include <atomic>
#include <chrono>
#include <vector>
#include <thread>

#include "core/threads.hpp"
#include "test_support.hpp"

namespace {

TEST(Threads, ParallelForCoversEveryIndexOnce) {
    for (int64_t n : {0, 1, 7, 1000, 100000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        kiln::parallel_for(n, 10, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "n=" << n << " i=" << i;
    }
}

TEST(Threads, ConcurrentCallersBothFinish) {
    std::atomic<int64_t> total{0};
    auto job = [&] {
        for (int rep = 0; rep < 200; ++rep)
            kiln::parallel_for(10000, 100, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    };
    std::thread t1(job), t2(job), t3(job);
    t1.join();
    t2.join();
    t3.join();
    EXPECT_EQ(total.load(), 3 * 200 * 10000);
}

// A parallel_for inside a chunk of another (a GEMM called from pool work) runs inline on that
// chunk's thread: every index once, on the same thread, from the caller's chunk and the workers'.
TEST(Threads, NestedParallelForRunsInlineOnTheChunksThread) {
    int32_t before = 0;
    ASSERT_EQ(kiln_threads_get(&before), KILN_OK);
    ASSERT_EQ(kiln_threads_set(3), KILN_OK);
    std::atomic<int64_t> total{0};
    std::atomic<int> foreign{0};
    kiln::parallel_for(3, 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
            const std::thread::id me = std::this_thread::get_id();
            kiln::parallel_for(5000, 1, [&](int64_t ib, int64_t ie) {
                if (std::this_thread::get_id() != me) foreign.fetch_add(1);
                total.fetch_add(ie - ib);
            });
        }
    });
    EXPECT_EQ(total.load(), 3 * 5000);
    EXPECT_EQ(foreign.load(), 0);
    ASSERT_EQ(kiln_threads_set(before), KILN_OK);
}

// Chunks are claimed without a lock and the threads sleep only after spinning: jobs of every
// chunk count, jobs after the workers have gone to sleep (idle past their spin), jobs whose other
// chunks outlast the caller's spin (the caller sleeps until the last one ends), and several
// callers at once; every index is run exactly once each time.
TEST(Threads, EveryJobRunsEachIndexOnceAcrossSleepsAndWakes) {
    int32_t before = 0;
    ASSERT_EQ(kiln_threads_get(&before), KILN_OK);
    for (int32_t pool : {2, 3, 8}) {
        ASSERT_EQ(kiln_threads_set(pool), KILN_OK);
        auto caller = [&](uint32_t seed, int64_t* wrong) {
            uint32_t r = seed;
            for (int rep = 0; rep < 400; ++rep) {
                r = r * 1664525u + 1013904223u;
                const int64_t n = 1 + (r >> 8) % 40, grain = 1 + (r >> 20) % 3;
                std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
                const bool slow = rep % 50 == 7, idle = rep % 50 == 13;
                kiln::parallel_for(n, grain, [&](int64_t b, int64_t e) {
                    if (slow && b > 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
                    for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
                });
                for (int64_t i = 0; i < n; ++i) *wrong += hits[size_t(i)].load() != 1;
                if (idle) std::this_thread::sleep_for(std::chrono::microseconds(500));
            }
        };
        int64_t wrong[3] = {0, 0, 0};
        caller(1, &wrong[0]);  // alone: the caller owns the pool on every job
        std::thread t1(caller, 2u, &wrong[1]), t2(caller, 3u, &wrong[2]);
        t1.join();
        t2.join();
        EXPECT_EQ(wrong[0] + wrong[1] + wrong[2], 0) << "pool of " << pool;
    }
    ASSERT_EQ(kiln_threads_set(before), KILN_OK);
}

TEST(Threads, PoolSizeCanBeChanged) {
    int32_t before = 0;
    ASSERT_EQ(kiln_threads_get(&before), KILN_OK);
    EXPECT_GE(before, 1);
    ASSERT_EQ(kiln_threads_set(3), KILN_OK);
    int32_t now = 0;
    kiln_threads_get(&now);
    EXPECT_EQ(now, 3);
    std::atomic<int64_t> sum{0};
    kiln::parallel_for(1000, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
    EXPECT_EQ(sum.load(), 1000);
    EXPECT_EQ(kiln_threads_set(0), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_threads_set(5000), KILN_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kiln_threads_set(before), KILN_OK);
}

// Callers keep using the pool while another thread replaces it (the pool size is read without the
// pool's lock): every job still covers its range once, and work of one chunk stays on its caller.
TEST(Threads, PoolReplacedWhileCallersRun) {
    int32_t before = 0;
    ASSERT_EQ(kiln_threads_get(&before), KILN_OK);
    std::atomic<bool> stop{false};
    std::atomic<int64_t> total{0};
    std::atomic<int> foreign{0};
    auto job = [&] {
        const std::thread::id me = std::this_thread::get_id();
        for (int rep = 0; rep < 300; ++rep) {
            kiln::parallel_for(10000, 100, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
            kiln::parallel_for(50, 100, [&](int64_t b, int64_t e) {
                if (std::this_thread::get_id() != me) foreign.fetch_add(1);
                total.fetch_add(e - b);
            });
        }
    };
    std::thread resizer([&] {
        for (int i = 0; !stop.load(); ++i) ASSERT_EQ(kiln_threads_set(1 + i % 4), KILN_OK);
    });
    std::thread t1(job), t2(job);
    t1.join();
    t2.join();
    stop = true;
    resizer.join();
    EXPECT_EQ(total.load(), 2 * 300 * (10000 + 50));
    EXPECT_EQ(foreign.load(), 0);
    ASSERT_EQ(kiln_threads_set(before), KILN_OK);
}

}  // namespace
