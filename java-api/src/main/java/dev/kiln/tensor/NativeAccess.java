package dev.kiln.tensor;

/**
 * For Kiln's own packages (inference, training) that pass tensors to native code: marks a tensor's
 * memory as in use by a native call and gives its address. Not API: applications use
 * {@link Ops} and the session classes.
 */
public final class NativeAccess {
    private NativeAccess() {}

    /** Throws if the tensor is closed; otherwise its memory stays allocated until {@link #release}. */
    public static void acquire(Tensor t) {
        t.checkData("native call");
        t.storage().acquire();
    }

    public static void release(Tensor t) {
        t.storage().release();
    }

    /**
     * {@link #acquire} of up to three tensors (nulls skipped) as one step: if one is closed, none
     * stays acquired. Fixed arity, so a call on the hot path allocates nothing.
     */
    public static void acquireAll(Tensor a, Tensor b, Tensor c) {
        check(a);
        check(b);
        check(c);
        Ops.acquireAll(storage(a), storage(b), storage(c), null, null);
    }

    /** Releases what {@link #acquireAll} acquired. */
    public static void releaseAll(Tensor a, Tensor b, Tensor c) {
        Ops.releaseAll(storage(a), storage(b), storage(c), null, null);
    }

    private static void check(Tensor t) {
        if (t != null) {
            t.checkData("native call");
        }
    }

    private static Storage storage(Tensor t) {
        return t == null ? null : t.storage();
    }

    /**
     * A ByteBuffer over a contiguous tensor's bytes for Kiln's own bulk I/O, valid only between
     * acquire and release; it must not escape (unlike {@link Tensor#byteView()}, it does not keep the
     * memory alive).
     */
    public static java.nio.ByteBuffer rawBytes(Tensor t) {
        if (!t.isContiguous()) {
            throw new IllegalArgumentException("rawBytes: " + t + " is not contiguous");
        }
        long bytes = t.byteSize();
        if (bytes > Integer.MAX_VALUE) {
            throw new UnsupportedOperationException("rawBytes: " + bytes + " bytes exceed one ByteBuffer");
        }
        return Tensor.rawBuffer(t.address(), bytes);
    }

    /** Address of the first element (call between acquire and release). */
    public static long address(Tensor t) {
        return t.address();
    }

    /**
     * A tensor over a direct buffer that maps a file region (copy-on-write or read-only mapping
     * owned by the caller's file reader): no copy, no heap. The mapping stays alive until the tensor
     * is closed (or collected) and no native call or view uses it.
     */
    public static Tensor wrapMapped(java.nio.ByteBuffer mapping, DType dtype, long... shape) {
        return Tensor.mapped(mapping, dtype, shape);
    }
}
