#include <cmath>
#include <limits>

#include "cpu/convert/convert.hpp"
#include "test_support.hpp"

namespace {

TEST(Convert, Bf16RoundsToNearestEven) {
    EXPECT_EQ(kiln::f32_to_bf16(1.0f), 0x3f80);
    // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even gives 1.0.
    EXPECT_EQ(kiln::f32_to_bf16(1.00390625f), 0x3f80);
    EXPECT_EQ(kiln::f32_to_bf16(1.01171875f), 0x3f82);  // halfway, rounds up to even
    EXPECT_TRUE(std::isnan(kiln::bf16_to_f32(kiln::f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    EXPECT_EQ(kiln::bf16_to_f32(kiln::f32_to_bf16(-INFINITY)), -INFINITY);
}

TEST(Convert, F16CoversNormalsSubnormalsAndOverflow) {
    EXPECT_EQ(kiln::f32_to_f16(1.0f), 0x3c00);
    EXPECT_EQ(kiln::f32_to_f16(65504.0f), 0x7bff);
    EXPECT_EQ(kiln::f32_to_f16(65520.0f), 0x7c00);
    EXPECT_EQ(kiln::f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
    EXPECT_EQ(kiln::f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even
    EXPECT_EQ(kiln::f32_to_f16(-std::ldexp(1.0f, -14)), 0x8400);
    EXPECT_TRUE(std::isnan(kiln::f16_to_f32(kiln::f32_to_f16(NAN))));
    // Every f16 value survives a round trip through f32.
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = kiln::f16_to_f32(uint16_t(h));
        if (std::isnan(f)) continue;
        ASSERT_EQ(kiln::f32_to_f16(f), h) << std::hex << h;
    }
    // And every bf16 value.
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float f = kiln::bf16_to_f32(uint16_t(h));
        if (std::isnan(f)) continue;
        ASSERT_EQ(kiln::f32_to_bf16(f), h) << std::hex << h;
    }
}

TEST(Convert, F16RoundTripErrorIsWithinHalfAnUlp) {
    // f16 has 11 significant bits: a round trip moves a value by at most 2^-11 of itself.
    auto v = kiln_test::random_floats(10000, 5, -70000.0f, 70000.0f);
    for (float f : v) {
        const float back = kiln::f16_to_f32(kiln::f32_to_f16(f));
        if (std::abs(f) >= 65520.0f) { EXPECT_TRUE(std::isinf(back)); continue; }
        EXPECT_LE(std::abs(back - f), std::abs(f) * (1.0 / 2048) + 1e-7) << f;
    }
}

TEST(Convert, AbiConvertsArraysAndRefusesUnknownPairs) {
    std::vector<float> src = {1.5f, -2.25f, 3.0f}, back(3);
    std::vector<uint16_t> mid(3);
    ASSERT_EQ(kiln_convert(KILN_DTYPE_F32, src.data(), KILN_DTYPE_BF16, mid.data(), 3), KILN_OK);
    ASSERT_EQ(kiln_convert(KILN_DTYPE_BF16, mid.data(), KILN_DTYPE_F32, back.data(), 3), KILN_OK);
    EXPECT_EQ(back, src);
    EXPECT_EQ(kiln_convert(KILN_DTYPE_I8, src.data(), KILN_DTYPE_F32, back.data(), 3), KILN_ERR_UNSUPPORTED);
    EXPECT_EQ(kiln_convert(KILN_DTYPE_F32, src.data(), KILN_DTYPE_F16, nullptr, 3), KILN_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kiln_convert(KILN_DTYPE_F32, src.data(), KILN_DTYPE_F16, mid.data(), -1), KILN_ERR_INVALID_ARGUMENT);
}

}  // namespace
