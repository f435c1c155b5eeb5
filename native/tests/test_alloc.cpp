#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "test_support.hpp"

namespace {

kiln_memory_stats stats() {
    kiln_memory_stats s{};
    EXPECT_EQ(kiln_memory_stats_get(&s), KILN_OK);
    return s;
}

TEST(Alloc, ReturnsZeroedMemoryAligned64AndAccountsBytes) {
    const auto before = stats();
    void* p = nullptr;
    ASSERT_EQ(kiln_alloc(1000, &p), KILN_OK) << kiln_last_error();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    const auto* bytes = static_cast<const unsigned char*>(p);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(bytes[i], 0) << "byte " << i;
    const auto during = stats();
    EXPECT_EQ(during.bytes_in_use - before.bytes_in_use, 1000);
    EXPECT_EQ(during.live_allocations - before.live_allocations, 1);
    EXPECT_EQ(during.total_allocations - before.total_allocations, 1);
    EXPECT_GE(during.peak_bytes_in_use, during.bytes_in_use);
    ASSERT_EQ(kiln_free(p), KILN_OK);
    const auto after = stats();
    EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
    EXPECT_EQ(after.live_allocations, before.live_allocations);
}

// Blocks of 2 MiB and more are advised to use transparent huge pages: where the kernel's THP mode
// allows it ("madvise" or "always"), a 16 MiB block is backed by huge pages (AnonHugePages of its
// mapping in /proc/self/smaps). Small blocks stay 64-byte aligned; big ones start on 2 MiB + 64.
TEST(Alloc, BigBlocksAreAdvisedToUseHugePages) {
    void* p = nullptr;
    ASSERT_EQ(kiln_alloc(int64_t(16) << 20, &p), KILN_OK) << kiln_last_error();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (uintptr_t(2) << 20), 64u);
    std::string mode;
    std::getline(std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled"), mode);
    if (mode.find("[madvise]") == std::string::npos && mode.find("[always]") == std::string::npos) {
        kiln_free(p);
        GTEST_SKIP() << "transparent huge pages are off here: '" << mode << "'";
    }
    const auto a = reinterpret_cast<uintptr_t>(p);
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool inside = false;
    long huge_kb = -1;
    while (std::getline(smaps, line)) {
        unsigned long lo = 0, hi = 0;
        char dash = 0;
        if (std::sscanf(line.c_str(), "%lx%c%lx", &lo, &dash, &hi) == 3 && dash == '-') {
            inside = a >= lo && a < hi;
            continue;
        }
        if (inside && line.rfind("AnonHugePages:", 0) == 0) {
            huge_kb = std::atol(line.c_str() + 14);
            break;
        }
    }
    ASSERT_EQ(kiln_free(p), KILN_OK);
    if (huge_kb == 0) GTEST_SKIP() << "the kernel had no huge page to give (fragmented memory)";
    EXPECT_GT(huge_kb, 0) << "no smaps entry for the block";
}

TEST(Alloc, ZeroBytesGivesAUniquePointerThatMustBeFreed) {
    void *a = nullptr, *b = nullptr;
    ASSERT_EQ(kiln_alloc(0, &a), KILN_OK);
    ASSERT_EQ(kiln_alloc(0, &b), KILN_OK);
    EXPECT_NE(a, nullptr);
    EXPECT_NE(a, b);
    EXPECT_EQ(kiln_free(a), KILN_OK);
    EXPECT_EQ(kiln_free(b), KILN_OK);
}

TEST(Alloc, RefusesNegativeHugeAndNullOut) {
    void* p = reinterpret_cast<void*>(0x1);
    EXPECT_EQ(kiln_alloc(-1, &p), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(p, nullptr) << "out must be cleared on failure";
    EXPECT_NE(std::strstr(kiln_last_error(), "bytes is -1"), nullptr) << kiln_last_error();
    EXPECT_EQ(kiln_alloc(INT64_MAX, &p), KILN_ERR_OVERFLOW);
    EXPECT_EQ(kiln_alloc(16, nullptr), KILN_ERR_INVALID_ARGUMENT);
}

TEST(Alloc, OutOfMemoryIsAStatusNotACrash) {
    void* p = nullptr;
    // 2^61 bytes passes the overflow guard but no machine can provide it.
    const kiln_status st = kiln_alloc(int64_t(1) << 61, &p);
    EXPECT_EQ(st, KILN_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(p, nullptr);
}

TEST(Alloc, FreeRefusesPointersItDidNotAllocate) {
    alignas(64) static unsigned char foreign[256] = {};
    EXPECT_EQ(kiln_free(foreign + 128), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::strstr(kiln_last_error(), "not allocated by kiln_alloc"), nullptr);
    EXPECT_EQ(kiln_free(foreign + 3), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_free(nullptr), KILN_OK);
}

TEST(Alloc, ManyAllocationsReturnToZeroOutstanding) {
    const auto before = stats();
    std::vector<void*> ptrs;
    for (int i = 0; i < 10000; ++i) {
        void* p = nullptr;
        ASSERT_EQ(kiln_alloc(i % 257, &p), KILN_OK);
        ptrs.push_back(p);
    }
    for (void* p : ptrs) ASSERT_EQ(kiln_free(p), KILN_OK);
    const auto after = stats();
    EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
    EXPECT_EQ(after.live_allocations, before.live_allocations);
    EXPECT_EQ(after.total_allocations - before.total_allocations, 10000);
}

}  // namespace
