package dev.kiln.tensor;

/**
 * Element types. {@link #I4} packs two signed 4-bit values per byte (element 2k in the low
 * nibble); its tensors support contiguous views only.
 */
public enum DType {
    F32(0, 32, true),
    BF16(1, 16, true),
    F16(2, 16, true),
    I8(3, 8, false),
    U8(4, 8, false),
    I32(5, 32, false),
    I4(6, 4, false);

    private final int nativeCode;
    private final int bits;
    private final boolean floating;

    DType(int nativeCode, int bits, boolean floating) {
        this.nativeCode = nativeCode;
        this.bits = bits;
        this.floating = floating;
    }

    /** The {@code kiln_dtype} value. */
    public int nativeCode() {
        return nativeCode;
    }

    /** Bits per element (4 for I4). */
    public int bits() {
        return bits;
    }

    public boolean isFloatingPoint() {
        return floating;
    }

    /** Whether elements pack several per byte (I4). */
    public boolean isPacked() {
        return bits < 8;
    }

    /** Bytes per element for byte-aligned types; throws for I4. */
    public int byteSize() {
        if (isPacked()) {
            throw new UnsupportedOperationException(this + " packs two elements per byte");
        }
        return bits / 8;
    }

    /** Bytes needed by {@code elements} contiguous elements (I4 rounds up to whole bytes). */
    public long bytesFor(long elements) {
        if (elements < 0) {
            throw new IllegalArgumentException("element count is " + elements + ": must be >= 0");
        }
        if (isPacked()) {
            return (elements + 1) / 2;
        }
        return Math.multiplyExact(elements, (long) (bits / 8));
    }
}
