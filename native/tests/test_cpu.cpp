#include <cstring>
#include <string>
#include <thread>

#include "test_support.hpp"

namespace {

TEST(Cpu, BestIsaMatchesFeatureBits) {
    uint64_t bits = 0;
    int32_t best = -1;
    ASSERT_EQ(kiln_cpu_features(&bits), KILN_OK);
    ASSERT_EQ(kiln_isa_best(&best), KILN_OK);
    if (best >= KILN_ISA_AVX2) {
        EXPECT_TRUE(bits & KILN_CPU_AVX2);
        EXPECT_TRUE(bits & KILN_CPU_FMA);
    }
    if (best >= KILN_ISA_AVX512) {
        EXPECT_TRUE(bits & KILN_CPU_AVX512F);
    }
}

TEST(Cpu, IsaCanBeForcedDownAndBack) {
    int32_t best = 0;
    kiln_isa_best(&best);
    for (int32_t isa = 0; isa <= best; ++isa) {
        ASSERT_EQ(kiln_isa_set(isa), KILN_OK);
        int32_t now = -1;
        kiln_isa_get(&now);
        EXPECT_EQ(now, isa);
    }
    for (int32_t isa = best + 1; isa <= KILN_ISA_AVX512; ++isa) {
        EXPECT_EQ(kiln_isa_set(isa), KILN_ERR_UNSUPPORTED);
        EXPECT_NE(std::strstr(kiln_last_error(), "does not support"), nullptr);
    }
    EXPECT_EQ(kiln_isa_set(7), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_isa_set(-1), KILN_ERR_INVALID_ARGUMENT);
    kiln_isa_set(best);
}

TEST(Cpu, NamesAreStable) {
    EXPECT_STREQ(kiln_isa_name(KILN_ISA_PORTABLE), "portable");
    EXPECT_STREQ(kiln_isa_name(KILN_ISA_AVX2), "avx2");
    EXPECT_STREQ(kiln_isa_name(KILN_ISA_AVX512), "avx512");
    EXPECT_STREQ(kiln_isa_name(42), "unknown");
    EXPECT_STREQ(kiln_status_name(KILN_ERR_SHAPE_MISMATCH), "KILN_ERR_SHAPE_MISMATCH");
    EXPECT_STREQ(kiln_status_name(1234), "KILN_ERR_UNKNOWN");
    EXPECT_STREQ(kiln_version(), KILN_VERSION_STRING);
}

TEST(Errors, MessageIsThreadLocal) {
    void* p = nullptr;
    kiln_alloc(-5, &p);
    std::string other;
    std::thread t([&] { other = kiln_last_error(); });
    t.join();
    EXPECT_EQ(other, "");
    EXPECT_NE(std::strstr(kiln_last_error(), "-5"), nullptr);
}

}  // namespace
