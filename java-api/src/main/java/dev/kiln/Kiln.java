package dev.kiln;

import dev.kiln.internal.Native;
import dev.kiln.internal.bindings.KilnNative;
import dev.kiln.tensor.Tensor;
import java.util.Collections;
import java.util.EnumSet;
import java.util.Set;

/**
 * Library-wide facts and settings: version, CPU features and the kernel level in use, the native
 * thread pool, and memory accounting.
 *
 * <p>The native library loads itself from the jar on first use (JavaCPP extracts it to its cache,
 * {@code org.bytedeco.javacpp.cachedir}, default {@code ~/.javacpp/cache}). Start-up settings:
 * {@code kiln.isa} / {@code KILN_ISA} ({@code portable|avx2|avx512|best}) and {@code kiln.threads} /
 * {@code KILN_NUM_THREADS}.
 */
public final class Kiln {
    private Kiln() {}

    /** Instruction-set levels Kiln's kernels are built for, lowest first. */
    public enum Isa {
        PORTABLE, AVX2, AVX512;

        /** The name used by {@code kiln.isa} and {@code KILN_ISA}. */
        public String settingName() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /** CPU features as detected by the native core (CPUID, and the OS saving the registers). */
    public enum CpuFeature {
        SSE42, AVX, AVX2, FMA, F16C, AVX512F, AVX512BW, AVX512DQ, AVX512VL, AVX512VNNI, AVX512BF16, AMX
    }

    /**
     * Native memory accounting.
     *
     * @param bytesInUse bytes allocated by Kiln and not yet freed
     * @param peakBytesInUse high-water mark of {@code bytesInUse}
     * @param liveAllocations allocations not yet freed
     * @param totalAllocations allocations ever made
     * @param reclaimedByCleaner tensors that were never closed and whose memory the garbage-collector
     *     safety net freed (should stay 0 in a correct program)
     */
    public record MemoryStats(long bytesInUse, long peakBytesInUse, long liveAllocations,
                              long totalAllocations, long reclaimedByCleaner) {}

    /** The native library's version ("MAJOR.MINOR.PATCH"). */
    public static String version() {
        Native.ensureLoaded();
        return KilnNative.version();
    }

    public static Set<CpuFeature> cpuFeatures() {
        Native.ensureLoaded();
        long[] bits = new long[1];
        Native.check(KilnNative.cpuFeatures(bits));
        EnumSet<CpuFeature> set = EnumSet.noneOf(CpuFeature.class);
        for (CpuFeature f : CpuFeature.values()) {
            if ((bits[0] & (1L << f.ordinal())) != 0) {
                set.add(f);
            }
        }
        return Collections.unmodifiableSet(set);
    }

    /** The best level this CPU supports. */
    public static Isa bestIsa() {
        Native.ensureLoaded();
        int[] out = new int[1];
        Native.check(KilnNative.isaBest(out));
        return Isa.values()[out[0]];
    }

    /** The level kernel dispatch uses now. */
    public static Isa isa() {
        Native.ensureLoaded();
        int[] out = new int[1];
        Native.check(KilnNative.isaGet(out));
        return Isa.values()[out[0]];
    }

    /**
     * Forces kernel dispatch to {@code isa} (tests, or working around a CPU problem). Refused with
     * {@link KilnException.Status#UNSUPPORTED} when this CPU lacks it. Meant for start-up.
     */
    public static void setIsa(Isa isa) {
        java.util.Objects.requireNonNull(isa, "isa");
        Native.ensureLoaded();
        Native.check(KilnNative.isaSet(isa.ordinal()));
    }

    /** Size of the native thread pool (the calling thread counts as one). */
    public static int threads() {
        Native.ensureLoaded();
        int[] out = new int[1];
        Native.check(KilnNative.threadsGet(out));
        return out[0];
    }

    /** Resizes the native thread pool (1..1024). Do not call while ops run on other threads. */
    public static void setThreads(int n) {
        if (n < 1 || n > 1024) {
            throw new IllegalArgumentException("threads is " + n + ": must be in 1..1024");
        }
        Native.ensureLoaded();
        Native.check(KilnNative.threadsSet(n));
    }

    public static MemoryStats memoryStats() {
        Native.ensureLoaded();
        long[] s = new long[4];
        Native.check(KilnNative.memoryStats(s));
        return new MemoryStats(s[0], s[1], s[2], s[3], Tensor.reclaimedByCleaner());
    }
}
