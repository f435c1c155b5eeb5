package dev.kiln.tensor;

import java.util.Objects;

/**
 * Where a tensor's elements live. {@link #CPU}: native memory Java can view. {@link #META}: no
 * memory at all, only dtype and shape (for planning and shape checks; any data access throws).
 * {@link #cuda(int)}: an NVIDIA GPU, served by the separate CUDA backend, which this build does not
 * include: allocating there throws {@code KilnException} (UNSUPPORTED).
 */
public final class Device {
    /** Kinds of device. */
    public enum Kind { CPU, META, CUDA }

    public static final Device CPU = new Device(Kind.CPU, 0);
    public static final Device META = new Device(Kind.META, 0);

    private final Kind kind;
    private final int index;

    private Device(Kind kind, int index) {
        this.kind = kind;
        this.index = index;
    }

    /** The CUDA device with ordinal {@code index} (>= 0). */
    public static Device cuda(int index) {
        if (index < 0) {
            throw new IllegalArgumentException("CUDA device index is " + index + ": must be >= 0");
        }
        return new Device(Kind.CUDA, index);
    }

    public Kind kind() {
        return kind;
    }

    public int index() {
        return index;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Device && ((Device) o).kind == kind && ((Device) o).index == index;
    }

    @Override
    public int hashCode() {
        return Objects.hash(kind, index);
    }

    @Override
    public String toString() {
        return kind == Kind.CUDA ? "cuda:" + index : kind.name().toLowerCase(java.util.Locale.ROOT);
    }
}
