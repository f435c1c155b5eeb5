package dev.kiln.tensor;

import dev.kiln.internal.Native;
import dev.kiln.internal.bindings.KilnNative;
import java.util.Arrays;
import java.util.Objects;

/**
 * Native ops over tensors, writing into caller-owned outputs: each is one JNI call that allocates
 * nothing, after Java checks every argument (nulls, liveness, device, dtype, shapes, overlap).
 * Binary ops broadcast as NumPy does: shapes are aligned from the right, and a dimension of size 1
 * (or a missing one) stretches to match.
 */
public final class Ops {
    private Ops() {}

    /** Elementwise binary operations ({@code kiln_binary_op}). MAX and MIN propagate NaN. */
    public enum Binary {
        ADD, SUB, MUL, DIV, MAX, MIN
    }

    /** out = a + b. */
    public static void add(Tensor a, Tensor b, Tensor out) {
        binary(Binary.ADD, a, b, out);
    }

    /** out = a - b. */
    public static void sub(Tensor a, Tensor b, Tensor out) {
        binary(Binary.SUB, a, b, out);
    }

    /** out = a * b. */
    public static void mul(Tensor a, Tensor b, Tensor out) {
        binary(Binary.MUL, a, b, out);
    }

    /** out = a / b. */
    public static void div(Tensor a, Tensor b, Tensor out) {
        binary(Binary.DIV, a, b, out);
    }

    /**
     * out = a (op) b elementwise, F32, with broadcasting; out must have the broadcast shape. out
     * may be a or b itself (in place) but must not otherwise overlap them.
     */
    public static void binary(Binary op, Tensor a, Tensor b, Tensor out) {
        Objects.requireNonNull(op, "op");
        String name = op.name().toLowerCase(java.util.Locale.ROOT);
        requireF32Cpu(name, "a", a);
        requireF32Cpu(name, "b", b);
        requireF32Cpu(name, "out", out);
        long[] shape = broadcastShape(name, a.shapeRef(), b.shapeRef());
        if (!Arrays.equals(shape, out.shapeRef())) {
            throw new IllegalArgumentException(name + ": a " + Arrays.toString(a.shapeRef()) + " and b "
                    + Arrays.toString(b.shapeRef()) + " broadcast to " + Arrays.toString(shape)
                    + " but out is " + Arrays.toString(out.shapeRef()));
        }
        long[] sa = broadcastStrides(a, shape);
        long[] sb = broadcastStrides(b, shape);
        checkOverlap(name, out, out.stridesRef(), a, sa, "a");
        checkOverlap(name, out, out.stridesRef(), b, sb, "b");
        Scratch s = Scratch.get();
        Storage ma = a.storage(), mb = b.storage(), mo = out.storage();
        ma.acquire();
        try {
            mb.acquire();
            try {
                mo.acquire();
                try {
                    Native.check(KilnNative.binaryF32(op.ordinal(), shape.length, s.put(0, shape),
                            a.address(), s.put(1, sa), b.address(), s.put(2, sb),
                            out.address(), s.put(3, out.stridesRef())));
                } finally {
                    mo.release();
                }
            } finally {
                mb.release();
            }
        } finally {
            ma.release();
        }
    }

    /** out = alpha * a (F32, same shape; in place allowed). */
    public static void scale(Tensor a, float alpha, Tensor out) {
        requireF32Cpu("scale", "a", a);
        requireF32Cpu("scale", "out", out);
        if (!Arrays.equals(a.shapeRef(), out.shapeRef())) {
            throw new IllegalArgumentException("scale: a is " + Arrays.toString(a.shapeRef())
                    + " but out is " + Arrays.toString(out.shapeRef()));
        }
        checkOverlap("scale", out, out.stridesRef(), a, a.stridesRef(), "a");
        Scratch s = Scratch.get();
        Storage ma = a.storage(), mo = out.storage();
        ma.acquire();
        try {
            mo.acquire();
            try {
                Native.check(KilnNative.scaleF32(a.rank(), s.put(0, a.shapeRef()), a.address(),
                        s.put(1, a.stridesRef()), alpha, out.address(), s.put(2, out.stridesRef())));
            } finally {
                mo.release();
            }
        } finally {
            ma.release();
        }
    }

    /** The sum of all elements of an F32 tensor; 0 for an empty one. */
    public static double sum(Tensor a) {
        requireF32Cpu("sum", "a", a);
        Scratch s = Scratch.get();
        Storage ma = a.storage();
        ma.acquire();
        try {
            Native.check(KilnNative.sumF32(a.rank(), s.put(0, a.shapeRef()), a.address(),
                    s.put(1, a.stridesRef()), s.slot(4)));
            return s.buffer.getDouble(4 * Scratch.SLOT_BYTES);
        } finally {
            ma.release();
        }
    }

    /** Copies src's elements into dst (same dtype and shape; any strides; not overlapping). */
    public static void copy(Tensor src, Tensor dst) {
        Objects.requireNonNull(src, "src");
        Objects.requireNonNull(dst, "dst");
        copyInto(src, dst);
    }

    static void copyInto(Tensor src, Tensor dst) {
        src.checkData("copy");
        dst.checkData("copy");
        if (src.dtype() != dst.dtype()) {
            throw new IllegalArgumentException("copy: src is " + src.dtype() + " but dst is " + dst.dtype());
        }
        if (!Arrays.equals(src.shapeRef(), dst.shapeRef())) {
            throw new IllegalArgumentException("copy: src is " + Arrays.toString(src.shapeRef())
                    + " but dst is " + Arrays.toString(dst.shapeRef()));
        }
        Scratch s = Scratch.get();
        Storage ms = src.storage(), md = dst.storage();
        ms.acquire();
        try {
            md.acquire();
            try {
                if (src.dtype().isPacked()) {
                    // I4 views are contiguous (enforced): copy the packed bytes.
                    long bytes = src.byteSize();
                    long[] one = {bytes};
                    long[] unit = {1};
                    Native.check(KilnNative.copyStrided(1, 1, s.put(0, one), src.address(), s.put(1, unit),
                            dst.address(), s.put(2, unit)));
                } else {
                    Native.check(KilnNative.copyStrided(src.dtype().byteSize(), src.rank(),
                            s.put(0, src.shapeRef()), src.address(), s.put(1, src.stridesRef()),
                            dst.address(), s.put(2, dst.stridesRef())));
                }
            } finally {
                md.release();
            }
        } finally {
            ms.release();
        }
    }

    /** The NumPy broadcast of two shapes, or IllegalArgumentException naming both. */
    public static long[] broadcastShape(String op, long[] x, long[] y) {
        int rank = Math.max(x.length, y.length);
        long[] out = new long[rank];
        for (int i = 0; i < rank; i++) {
            long dx = i < rank - x.length ? 1 : x[i - (rank - x.length)];
            long dy = i < rank - y.length ? 1 : y[i - (rank - y.length)];
            if (dx != dy && dx != 1 && dy != 1) {
                throw new IllegalArgumentException(op + ": shapes " + Arrays.toString(x) + " and "
                        + Arrays.toString(y) + " do not broadcast (dimension " + i + ": " + dx + " vs " + dy + ")");
            }
            out[i] = dx == 1 ? dy : dx;
        }
        return out;
    }

    static Tensor binaryNew(Binary op, Tensor a, Tensor b) {
        String name = op.name().toLowerCase(java.util.Locale.ROOT);
        requireF32Cpu(name, "a", a);
        requireF32Cpu(name, "b", b);
        Tensor out = Tensor.zeros(DType.F32, broadcastShape(name, a.shapeRef(), b.shapeRef()));
        try {
            binary(op, a, b, out);
        } catch (RuntimeException e) {
            out.close();
            throw e;
        }
        return out;
    }

    private static long[] broadcastStrides(Tensor t, long[] shape) {
        long[] ts = t.shapeRef();
        long[] st = t.stridesRef();
        long[] out = new long[shape.length];
        int lead = shape.length - ts.length;
        for (int i = lead; i < shape.length; i++) {
            out[i] = ts[i - lead] == 1 && shape[i] != 1 ? 0 : st[i - lead];
        }
        return out;
    }

    private static void requireF32Cpu(String op, String what, Tensor t) {
        Objects.requireNonNull(t, what);
        t.checkOpen(op);
        if (t.device().kind() != Device.Kind.CPU) {
            throw new IllegalArgumentException(op + ": " + what + " is on " + t.device()
                    + " but this op runs on cpu");
        }
        if (t.dtype() != DType.F32) {
            throw new IllegalArgumentException(op + ": " + what + " has dtype " + t.dtype()
                    + "; this op takes F32");
        }
    }

    /** Refuses an output that shares memory with an input without being exactly the same elements. */
    private static void checkOverlap(String op, Tensor out, long[] outStrides, Tensor in, long[] inStrides,
            String inName) {
        if (out.storage() != in.storage() || out.numel() == 0 || in.numel() == 0) {
            return;
        }
        long[] shape = out.shapeRef();
        long oLo = out.offset(), oHi = oLo + span(shape, outStrides);
        long iLo = in.offset(), iHi = iLo + span(shape, inStrides);
        if (oHi <= iLo || iHi <= oLo) {
            return;
        }
        if (oLo == iLo && Arrays.equals(outStrides, inStrides)) {
            return;
        }
        throw new IllegalArgumentException(op + ": out overlaps " + inName
                + " without being the same elements: write to a separate tensor");
    }

    private static long span(long[] shape, long[] strides) {
        long max = 0;
        for (int i = 0; i < shape.length; i++) {
            max += (shape[i] - 1) * strides[i];
        }
        return max + 1;
    }
}
