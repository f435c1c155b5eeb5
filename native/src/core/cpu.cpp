// CPU feature detection. A feature counts only when the CPU reports it (CPUID) AND the OS saves
// the registers it needs (XGETBV): AVX needs XMM|YMM state, AVX-512 also opmask/ZMM state.
#include "cpu.hpp"

#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "error.hpp"

namespace kiln {
namespace {

uint64_t xgetbv0() {
    uint32_t eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (uint64_t(edx) << 32) | eax;
}

uint64_t detect() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    uint64_t bits = 0;
    const bool sse42 = c & (1u << 20);
    const bool osxsave = c & (1u << 27);
    const bool avx = c & (1u << 28);
    const bool fma = c & (1u << 12);
    const bool f16c = c & (1u << 29);
    if (sse42) bits |= KILN_CPU_SSE42;
    if (!osxsave) return bits;
    const uint64_t xcr0 = xgetbv0();
    const bool os_ymm = (xcr0 & 0x6) == 0x6;
    const bool os_zmm = (xcr0 & 0xe6) == 0xe6;
    const bool os_amx = (xcr0 & 0x60000) == 0x60000;
    if (!os_ymm) return bits;
    if (avx) bits |= KILN_CPU_AVX;
    if (fma) bits |= KILN_CPU_FMA;
    if (f16c) bits |= KILN_CPU_F16C;
    unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0;
    if (!__get_cpuid_count(7, 0, &a7, &b7, &c7, &d7)) return bits;
    if (b7 & (1u << 5)) bits |= KILN_CPU_AVX2;
    if (os_zmm) {
        if (b7 & (1u << 16)) bits |= KILN_CPU_AVX512F;
        if (b7 & (1u << 17)) bits |= KILN_CPU_AVX512DQ;
        if (b7 & (1u << 30)) bits |= KILN_CPU_AVX512BW;
        if (b7 & (1u << 31)) bits |= KILN_CPU_AVX512VL;
        if (c7 & (1u << 11)) bits |= KILN_CPU_AVX512VNNI;
        unsigned a71 = 0, b71 = 0, c71 = 0, d71 = 0;
        if (__get_cpuid_count(7, 1, &a71, &b71, &c71, &d71) && (a71 & (1u << 5)))
            bits |= KILN_CPU_AVX512BF16;
    }
    if (os_amx && (d7 & (1u << 24))) bits |= KILN_CPU_AMX;
    return bits;
}

kiln_isa isa_from_bits(uint64_t bits) {
    const uint64_t avx512 = KILN_CPU_AVX512F | KILN_CPU_AVX512BW | KILN_CPU_AVX512DQ |
                            KILN_CPU_AVX512VL | KILN_CPU_AVX2 | KILN_CPU_FMA | KILN_CPU_F16C;
    const uint64_t avx2 = KILN_CPU_AVX2 | KILN_CPU_FMA | KILN_CPU_F16C;
    if ((bits & avx512) == avx512) return KILN_ISA_AVX512;
    if ((bits & avx2) == avx2) return KILN_ISA_AVX2;
    return KILN_ISA_PORTABLE;
}

struct State {
    uint64_t bits;
    kiln_isa best;
    std::atomic<int> current;
    State() : bits(detect()), best(isa_from_bits(bits)), current(best) {
        // KILN_ISA forces a lower level at load. A level above what the CPU has is clamped to the
        // best it has (the Java API refuses it instead, with a message).
        const char* env = std::getenv("KILN_ISA");
        if (env == nullptr) return;
        int want = -1;
        if (std::strcmp(env, "portable") == 0) want = KILN_ISA_PORTABLE;
        else if (std::strcmp(env, "avx2") == 0) want = KILN_ISA_AVX2;
        else if (std::strcmp(env, "avx512") == 0) want = KILN_ISA_AVX512;
        if (want >= 0) current.store(want <= best ? want : best);
    }
};

State& state() {
    static State s;  // thread-safe init; also forced at load below
    return s;
}

// Detect when the library loads, not in the middle of the first op.
[[maybe_unused]] const bool g_detected_at_load = (state(), true);

}  // namespace

uint64_t cpu_feature_bits() { return state().bits; }
kiln_isa best_isa() { return state().best; }
kiln_isa current_isa() { return kiln_isa(state().current.load(std::memory_order_relaxed)); }
bool isa_supported(kiln_isa isa) { return isa >= KILN_ISA_PORTABLE && isa <= best_isa(); }

}  // namespace kiln

extern "C" KILN_API const char* kiln_version(void) { return KILN_VERSION_STRING; }

extern "C" KILN_API kiln_status kiln_cpu_features(uint64_t* out) {
    if (out == nullptr) return kiln::fail(KILN_ERR_INVALID_ARGUMENT, "kiln_cpu_features: out is NULL");
    *out = kiln::cpu_feature_bits();
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_isa_best(int32_t* out) {
    if (out == nullptr) return kiln::fail(KILN_ERR_INVALID_ARGUMENT, "kiln_isa_best: out is NULL");
    *out = kiln::best_isa();
    return KILN_OK;
}

extern "C" KILN_API kiln_status kiln_isa_get(int32_t* out) {
    if (out == nullptr) return kiln::fail(KILN_ERR_INVALID_ARGUMENT, "kiln_isa_get: out is NULL");
    *out = kiln::current_isa();
    return KILN_OK;
}

extern "C" KILN_API const char* kiln_isa_name(int32_t isa) {
    switch (isa) {
        case KILN_ISA_PORTABLE: return "portable";
        case KILN_ISA_AVX2: return "avx2";
        case KILN_ISA_AVX512: return "avx512";
        default: return "unknown";
    }
}

extern "C" KILN_API kiln_status kiln_isa_set(int32_t isa) {
    if (isa < KILN_ISA_PORTABLE || isa > KILN_ISA_AVX512)
        return kiln::fail(KILN_ERR_INVALID_ARGUMENT,
                          "kiln_isa_set: isa is %d: must be 0 (portable), 1 (avx2) or 2 (avx512)", isa);
    if (!kiln::isa_supported(kiln_isa(isa)))
        return kiln::fail(KILN_ERR_UNSUPPORTED,
                          "kiln_isa_set: this CPU does not support %s (best available: %s)",
                          kiln_isa_name(isa), kiln_isa_name(kiln::best_isa()));
    kiln::state().current.store(isa, std::memory_order_relaxed);
    return KILN_OK;
}
