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
        acquireAll(ma, mb, mo, null, null);
        try {
            Native.check(KilnNative.binaryF32(op.ordinal(), shape.length, s.put(0, shape), a.address(), s.put(1, sa),
                    b.address(), s.put(2, sb), out.address(), s.put(3, out.stridesRef())));
        } finally {
            releaseAll(ma, mb, mo, null, null);
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
        acquireAll(ma, mo, null, null, null);
        try {
            Native.check(KilnNative.scaleF32(a.rank(), s.put(0, a.shapeRef()), a.address(),
                    s.put(1, a.stridesRef()), alpha, out.address(), s.put(2, out.stridesRef())));
        } finally {
            releaseAll(ma, mo, null, null, null);
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
        acquireAll(ms, md, null, null, null);
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
            releaseAll(ms, md, null, null, null);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Matrix products
    // ---------------------------------------------------------------------------------------

    /**
     * How a 2-D tensor maps onto a BLAS-style matrix, packed into one long so that a call allocates
     * nothing: {@code ld << 1 | trans} (row-major with leading dimension ld, or the transpose of
     * one: a transposed view), or -1 when neither (a copy is needed).
     */
    static final class MatrixLayout {
        private MatrixLayout() {}

        static long of(Tensor t) {
            long[] sh = t.shapeRef();
            long[] st = t.stridesRef();
            long rows = sh[0], cols = sh[1];
            if ((cols <= 1 || st[1] == 1) && (rows <= 1 || st[0] >= Math.max(cols, 1))) {
                return (rows <= 1 ? Math.max(cols, 1) : st[0]) << 1;
            }
            if ((rows <= 1 || st[0] == 1) && (cols <= 1 || st[1] >= Math.max(rows, 1))) {
                return ((cols <= 1 ? Math.max(rows, 1) : st[1]) << 1) | 1;
            }
            return -1;
        }

        static int trans(long layout) {
            return (int) (layout & 1);
        }

        static long ld(long layout) {
            return layout >>> 1;
        }
    }

    /** out = a · b (a: M x K, b: K x N, out: M x N; F32). Transposed views of a and b are used as
     *  they are, without copies. */
    public static void matmul(Tensor a, Tensor b, Tensor out) {
        gemm(1f, a, b, 0f, out, Epilogue.NONE);
    }

    /** out = epilogue(a · b): bias, activation and residual applied in the product's store. */
    public static void matmul(Tensor a, Tensor b, Tensor out, Epilogue epilogue) {
        gemm(1f, a, b, 0f, out, epilogue);
    }

    /**
     * out = epilogue(alpha · a · b + beta · out). beta = 0 never reads out. out must be a row-major
     * M x N matrix (unit column stride) that does not overlap a or b.
     */
    public static void gemm(float alpha, Tensor a, Tensor b, float beta, Tensor out, Epilogue epilogue) {
        Objects.requireNonNull(epilogue, "epilogue");
        DType dt = requireGemmInputs("matmul", a, b);
        requireF32Cpu("matmul", "out", out);
        requireMatrix("matmul", "a", a);
        requireMatrix("matmul", "b", b);
        requireMatrix("matmul", "out", out);
        long m = a.size(0), k = a.size(1), n = b.size(1);
        if (b.size(0) != k) {
            throw new IllegalArgumentException("matmul: a is " + Arrays.toString(a.shapeRef()) + " but b is "
                    + Arrays.toString(b.shapeRef()) + ": inner dimensions " + k + " and " + b.size(0) + " differ");
        }
        requireShape("matmul", "out", out, m, n);
        long ldc = outLd(out);
        checkDisjoint("matmul", out, a, "a");
        checkDisjoint("matmul", out, b, "b");
        long la = MatrixLayout.of(a);
        long lb = MatrixLayout.of(b);
        Tensor ca = la < 0 ? a.copy() : a;
        Tensor cb = lb < 0 ? b.copy() : b;
        try {
            long fa = la < 0 ? MatrixLayout.of(ca) : la;
            long fb = lb < 0 ? MatrixLayout.of(cb) : lb;
            long ep = writeEpilogue("matmul", epilogue, m, n);
            Storage sa = ca.storage(), sb = cb.storage(), so = out.storage();
            Storage sbias = epilogue.bias() == null ? null : epilogue.bias().storage();
            Storage sres = epilogue.residual() == null ? null : epilogue.residual().storage();
            acquireAll(sa, sb, so, sbias, sres);
            try {
                if (dt == DType.F32) {
                    Native.check(KilnNative.sgemm(MatrixLayout.trans(fa), MatrixLayout.trans(fb), m, n, k, alpha,
                            ca.address(), MatrixLayout.ld(fa), cb.address(), MatrixLayout.ld(fb), beta, out.address(),
                            ldc, ep));
                } else {
                    Native.check(KilnNative.gemmBf16(MatrixLayout.trans(fa), MatrixLayout.trans(fb), m, n, k, alpha,
                            ca.address(), MatrixLayout.ld(fa), cb.address(), MatrixLayout.ld(fb), beta, out.address(),
                            ldc, ep));
                }
            } finally {
                releaseAll(sa, sb, so, sbias, sres);
            }
        } finally {
            if (ca != a) {
                ca.close();
            }
            if (cb != b) {
                cb.close();
            }
        }
    }

    /** out = a · b with b packed once ({@link PackedMatrix#pack}). */
    public static void matmul(Tensor a, PackedMatrix b, Tensor out) {
        matmul(a, b, out, Epilogue.NONE);
    }

    /** out = epilogue(a · b) with b packed once ({@link PackedMatrix#pack}); the inference path. */
    public static void matmul(Tensor a, PackedMatrix b, Tensor out, Epilogue epilogue) {
        Objects.requireNonNull(b, "b");
        Objects.requireNonNull(epilogue, "epilogue");
        requireCpu("matmul", "a", a);
        if (a.dtype() != b.dtype()) {
            throw new IllegalArgumentException("matmul: a has dtype " + a.dtype() + " but b was packed from "
                    + b.dtype() + ": they must match (F32 or BF16)");
        }
        requireF32Cpu("matmul", "out", out);
        requireMatrix("matmul", "a", a);
        requireMatrix("matmul", "out", out);
        if (b.isClosed()) {
            throw new IllegalStateException("matmul: " + b + " is closed");
        }
        long m = a.size(0), k = a.size(1), n = b.columns();
        if (b.rows() != k) {
            throw new IllegalArgumentException("matmul: a is " + Arrays.toString(a.shapeRef()) + " but b is ["
                    + b.rows() + ", " + n + "]: inner dimensions " + k + " and " + b.rows() + " differ");
        }
        requireShape("matmul", "out", out, m, n);
        long ldc = outLd(out);
        checkDisjoint("matmul", out, a, "a");
        long la = MatrixLayout.of(a);
        Tensor ca = la < 0 ? a.copy() : a;
        try {
            long fa = la < 0 ? MatrixLayout.of(ca) : la;
            long ep = writeEpilogue("matmul", epilogue, m, n);
            Storage sa = ca.storage(), sb = b.storage(), so = out.storage();
            Storage sbias = epilogue.bias() == null ? null : epilogue.bias().storage();
            Storage sres = epilogue.residual() == null ? null : epilogue.residual().storage();
            acquireAll(sa, sb, so, sbias, sres);
            try {
                if (b.dtype() == DType.F32) {
                    Native.check(KilnNative.sgemmPacked(MatrixLayout.trans(fa), m, 1f, ca.address(), MatrixLayout.ld(fa),
                            b.handle(), 0f, out.address(), ldc, ep));
                } else {
                    Native.check(KilnNative.gemmBf16Packed(MatrixLayout.trans(fa), m, 1f, ca.address(),
                            MatrixLayout.ld(fa), b.handle(), 0f, out.address(), ldc, ep));
                }
            } finally {
                releaseAll(sa, sb, so, sbias, sres);
            }
        } finally {
            if (ca != a) {
                ca.close();
            }
        }
    }

    /** Checks a and b of a product (both F32, or both BF16, on the CPU) and returns their dtype. */
    static DType requireGemmInputs(String op, Tensor a, Tensor b) {
        requireCpu(op, "a", a);
        requireCpu(op, "b", b);
        if (a.dtype() != b.dtype() || (a.dtype() != DType.F32 && a.dtype() != DType.BF16)) {
            throw new IllegalArgumentException(op + ": a is " + a.dtype() + " and b is " + b.dtype()
                    + ": a product takes two F32 or two BF16 matrices (output F32)");
        }
        return a.dtype();
    }

    static void requireCpu(String op, String what, Tensor t) {
        Objects.requireNonNull(t, what);
        t.checkOpen(op);
        if (t.device().kind() != Device.Kind.CPU) {
            throw new IllegalArgumentException(op + ": " + what + " is on " + t.device() + " but this op runs on cpu");
        }
    }

    /** Writes the kiln_epilogue struct into the scratch block (0 for none) after checking it. */
    private static long writeEpilogue(String op, Epilogue e, long m, long n) {
        if (e.isNone()) {
            return 0L;
        }
        Scratch s = Scratch.get();
        int base = 6 * Scratch.SLOT_BYTES;
        long biasAddr = 0;
        if (e.bias() != null) {
            Tensor bias = e.bias();
            requireF32Cpu(op, "bias", bias);
            if (bias.numel() != n || !bias.isContiguous()) {
                throw new IllegalArgumentException(op + ": bias is " + Arrays.toString(bias.shapeRef())
                        + ": it must be a contiguous vector of " + n + " elements");
            }
            biasAddr = bias.address();
        }
        long resAddr = 0;
        long resLd = 0;
        if (e.residual() != null) {
            Tensor r = e.residual();
            requireF32Cpu(op, "residual", r);
            requireMatrix(op, "residual", r);
            requireShape(op, "residual", r, m, n);
            resLd = outLd(r);
            resAddr = r.address();
        }
        s.buffer.putLong(base, biasAddr);
        s.buffer.putInt(base + 8, e.activation().nativeCode());
        s.buffer.putFloat(base + 12, e.activationAlpha());
        s.buffer.putLong(base + 16, resAddr);
        s.buffer.putLong(base + 24, resLd);
        return s.slot(6);
    }

    /** Leading dimension of a row-major output (unit column stride), or IllegalArgumentException. */
    private static long outLd(Tensor out) {
        long l = MatrixLayout.of(out);
        if (l < 0 || (MatrixLayout.trans(l) == 1 && out.size(0) > 1 && out.size(1) > 1)) {
            throw new IllegalArgumentException("matmul: out has strides " + Arrays.toString(out.stridesRef())
                    + ": it must be row-major with unit column stride");
        }
        return MatrixLayout.trans(l) == 1 ? Math.max(out.size(1), 1) : MatrixLayout.ld(l);
    }

    private static void requireMatrix(String op, String what, Tensor t) {
        if (t.rank() != 2) {
            throw new IllegalArgumentException(op + ": " + what + " is " + Arrays.toString(t.shapeRef())
                    + ": a matrix must be 2-D");
        }
    }

    private static void requireShape(String op, String what, Tensor t, long rows, long cols) {
        if (t.size(0) != rows || t.size(1) != cols) {
            throw new IllegalArgumentException(op + ": " + what + " is " + Arrays.toString(t.shapeRef())
                    + " but must be [" + rows + ", " + cols + "]");
        }
    }

    private static void checkDisjoint(String op, Tensor out, Tensor in, String inName) {
        if (out.storage() != in.storage() || out.numel() == 0 || in.numel() == 0) {
            return;
        }
        long oLo = out.offset(), oHi = oLo + span(out.shapeRef(), out.stridesRef());
        long iLo = in.offset(), iHi = iLo + span(in.shapeRef(), in.stridesRef());
        if (oHi <= iLo || iHi <= oLo) {
            return;
        }
        throw new IllegalArgumentException(op + ": out overlaps " + inName + ": write to a separate tensor");
    }

    /**
     * Marks up to five storages (nulls skipped) as used by a native call; if one is closed, releases
     * those already taken and throws. Pair with {@link #releaseAll}.
     */
    static void acquireAll(Storage a, Storage b, Storage c, Storage d, Storage e) {
        acquire(a);
        try {
            acquire(b);
            try {
                acquire(c);
                try {
                    acquire(d);
                    try {
                        acquire(e);
                    } catch (RuntimeException x) {
                        release(d);
                        throw x;
                    }
                } catch (RuntimeException x) {
                    release(c);
                    throw x;
                }
            } catch (RuntimeException x) {
                release(b);
                throw x;
            }
        } catch (RuntimeException x) {
            release(a);
            throw x;
        }
    }

    static void releaseAll(Storage a, Storage b, Storage c, Storage d, Storage e) {
        release(e);
        release(d);
        release(c);
        release(b);
        release(a);
    }

    private static void acquire(Storage s) {
        if (s != null) {
            s.acquire();
        }
    }

    private static void release(Storage s) {
        if (s != null) {
            s.release();
        }
    }

    // ---------------------------------------------------------------------------------------
    // Elementwise functions, softmax, layer norm, reductions, argmax, top-k
    // ---------------------------------------------------------------------------------------

    /** out = f(a) elementwise (F32, same shape; in place allowed), with f's default alpha. */
    public static void unary(Activation f, Tensor a, Tensor out) {
        unary(f, Objects.requireNonNull(f, "f").defaultAlpha(), a, out);
    }

    /**
     * out = f(a) elementwise; {@code alpha} is LeakyReLU's negative slope, ELU's scale, the bound of
     * BOUNDED_RELU and HARDTANH (> 0), the slope of HARD_SIGMOID (> 0).
     */
    public static void unary(Activation f, float alpha, Tensor a, Tensor out) {
        Objects.requireNonNull(f, "f");
        String name = f.name().toLowerCase(java.util.Locale.ROOT);
        f.checkAlpha(alpha);
        requireF32Cpu(name, "a", a);
        requireF32Cpu(name, "out", out);
        if (!Arrays.equals(a.shapeRef(), out.shapeRef())) {
            throw new IllegalArgumentException(name + ": a is " + Arrays.toString(a.shapeRef()) + " but out is "
                    + Arrays.toString(out.shapeRef()));
        }
        checkOverlap(name, out, out.stridesRef(), a, a.stridesRef(), "a");
        Scratch s = Scratch.get();
        Storage ma = a.storage(), mo = out.storage();
        acquireAll(ma, mo, null, null, null);
        try {
            Native.check(KilnNative.unaryF32(f.nativeCode(), alpha, a.rank(), s.put(0, a.shapeRef()), a.address(),
                    s.put(1, a.stridesRef()), out.address(), s.put(2, out.stridesRef())));
        } finally {
            releaseAll(ma, mo, null, null, null);
        }
    }

    /** Softmax over the last dimension (F32; out may be x). */
    public static void softmax(Tensor x, Tensor out) {
        rowOp("softmax", x, out, 0);
    }

    /** Log-softmax over the last dimension (F32; out may be x). */
    public static void logSoftmax(Tensor x, Tensor out) {
        rowOp("logSoftmax", x, out, 1);
    }

    private static void rowOp(String op, Tensor x, Tensor out, int log) {
        requireF32Cpu(op, "x", x);
        requireF32Cpu(op, "out", out);
        if (x.rank() == 0) {
            throw new IllegalArgumentException(op + ": x is a scalar: it needs a last dimension");
        }
        if (!Arrays.equals(x.shapeRef(), out.shapeRef())) {
            throw new IllegalArgumentException(op + ": x is " + Arrays.toString(x.shapeRef()) + " but out is "
                    + Arrays.toString(out.shapeRef()));
        }
        checkOverlap(op, out, out.stridesRef(), x, x.stridesRef(), "x");
        long cols = x.size(-1);
        long rows = cols == 0 ? 0 : x.numel() / cols;
        withContiguousRows(x, out, (xa, oa) -> Native.check(KilnNative.softmaxF32(log, rows, cols, xa, oa)));
    }

    /**
     * Layer norm over the last dimension: out = (x - mean) / sqrt(var + eps) * gamma + beta (gamma and
     * beta: vectors of the last dimension's size, or null).
     */
    public static void layerNorm(Tensor x, Tensor gamma, Tensor beta, float eps, Tensor out) {
        requireF32Cpu("layerNorm", "x", x);
        requireF32Cpu("layerNorm", "out", out);
        if (x.rank() == 0) {
            throw new IllegalArgumentException("layerNorm: x is a scalar: it needs a last dimension");
        }
        if (!(eps >= 0) || Float.isInfinite(eps)) {
            throw new IllegalArgumentException("layerNorm: eps is " + eps + ": must be finite and >= 0");
        }
        if (!Arrays.equals(x.shapeRef(), out.shapeRef())) {
            throw new IllegalArgumentException("layerNorm: x is " + Arrays.toString(x.shapeRef()) + " but out is "
                    + Arrays.toString(out.shapeRef()));
        }
        checkOverlap("layerNorm", out, out.stridesRef(), x, x.stridesRef(), "x");
        long cols = x.size(-1);
        long rows = cols == 0 ? 0 : x.numel() / cols;
        for (Tensor v : new Tensor[] {gamma, beta}) {
            if (v != null) {
                requireF32Cpu("layerNorm", v == gamma ? "gamma" : "beta", v);
                if (v.numel() != cols || !v.isContiguous()) {
                    throw new IllegalArgumentException("layerNorm: " + (v == gamma ? "gamma" : "beta") + " is "
                            + Arrays.toString(v.shapeRef()) + ": it must be a contiguous vector of " + cols);
                }
            }
        }
        Storage sg = gamma == null ? null : gamma.storage();
        Storage sb = beta == null ? null : beta.storage();
        acquire(sg);
        try {
            acquire(sb);
            try {
                long ga = gamma == null ? 0 : gamma.address();
                long ba = beta == null ? 0 : beta.address();
                withContiguousRows(x, out, (xa, oa) -> Native.check(
                        KilnNative.layerNormF32(rows, cols, xa, ga, ba, eps, oa, 0, 0)));
            } finally {
                release(sb);
            }
        } finally {
            release(sg);
        }
    }

    /** Reductions along one axis. */
    public enum Reduction {
        SUM, MEAN, MAX, MIN
    }

    /** out = op of a along {@code axis}; out has a's shape without that axis. NaN propagates through MAX/MIN. */
    public static void reduce(Reduction op, Tensor a, int axis, Tensor out) {
        Objects.requireNonNull(op, "op");
        String name = "reduce " + op.name().toLowerCase(java.util.Locale.ROOT);
        requireF32Cpu(name, "a", a);
        requireF32Cpu(name, "out", out);
        int d = axis < 0 ? axis + a.rank() : axis;
        if (d < 0 || d >= a.rank()) {
            throw new IndexOutOfBoundsException(name + ": axis " + axis + " is out of range for a rank-" + a.rank() + " tensor");
        }
        long[] sh = a.shapeRef();
        long[] want = new long[sh.length - 1];
        long outer = 1, inner = 1;
        for (int i = 0, j = 0; i < sh.length; i++) {
            if (i == d) {
                continue;
            }
            want[j++] = sh[i];
            if (i < d) {
                outer *= sh[i];
            } else {
                inner *= sh[i];
            }
        }
        if (!Arrays.equals(want, out.shapeRef())) {
            throw new IllegalArgumentException(name + ": a " + Arrays.toString(sh) + " reduced along axis " + d
                    + " is " + Arrays.toString(want) + " but out is " + Arrays.toString(out.shapeRef()));
        }
        if (sh[d] == 0 && (op == Reduction.MAX || op == Reduction.MIN) && out.numel() > 0) {
            throw new IllegalArgumentException(name + ": axis " + d + " is empty: " + op + " has no value");
        }
        checkDisjoint(name, out, a, "a");
        long len = sh[d];
        long o = outer, in = inner;
        Tensor ca = a.isContiguous() ? a : a.copy();
        Tensor co = out.isContiguous() ? out : Tensor.zeros(DType.F32, want);
        try {
            Storage sa = ca.storage(), so = co.storage();
            acquireAll(sa, so, null, null, null);
            try {
                Native.check(KilnNative.reduceF32(op.ordinal(), o, len, in, ca.address(), co.address()));
            } finally {
                releaseAll(sa, so, null, null, null);
            }
            if (co != out) {
                copyInto(co, out);
            }
        } finally {
            if (ca != a) {
                ca.close();
            }
            if (co != out) {
                co.close();
            }
        }
    }

    /** t must be a contiguous tensor shaped like x with last dimension k (checked in place: a call allocates nothing). */
    private static void requireTopkShape(long[] x, int k, Tensor t, String name) {
        long[] s = t.shapeRef();
        boolean same = s.length == x.length && s[s.length - 1] == k;
        for (int i = 0; same && i < s.length - 1; i++) {
            same = s[i] == x[i];
        }
        if (!same || !t.isContiguous()) {
            long[] want = x.clone();
            want[want.length - 1] = k;
            throw new IllegalArgumentException("topk: " + name + " is " + Arrays.toString(s)
                    + " but must be a contiguous " + Arrays.toString(want));
        }
    }

    /** Whether {@code b} is {@code a} without its last dimension (compared in place: a call allocates nothing). */
    private static boolean shapeWithoutLast(long[] a, long[] b) {
        if (b.length != a.length - 1) {
            return false;
        }
        for (int i = 0; i < b.length; i++) {
            if (a[i] != b[i]) {
                return false;
            }
        }
        return true;
    }

    /** out[r] = index of the largest element of row r (last dimension) of x; out is I32 with x's shape
     *  minus its last dimension. Ties take the first; NaN counts as largest. */
    public static void argmax(Tensor x, Tensor out) {
        requireF32Cpu("argmax", "x", x);
        Objects.requireNonNull(out, "out");
        out.checkData("argmax");
        if (out.dtype() != DType.I32) {
            throw new IllegalArgumentException("argmax: out has dtype " + out.dtype() + "; indices are I32");
        }
        if (x.rank() == 0 || x.size(-1) == 0) {
            throw new IllegalArgumentException("argmax: x is " + Arrays.toString(x.shapeRef())
                    + ": it needs a non-empty last dimension");
        }
        if (!shapeWithoutLast(x.shapeRef(), out.shapeRef()) || !out.isContiguous()) {
            throw new IllegalArgumentException("argmax: out is " + Arrays.toString(out.shapeRef())
                    + " but must be a contiguous " + Arrays.toString(Arrays.copyOf(x.shapeRef(), x.rank() - 1)));
        }
        long cols = x.size(-1), rows = x.numel() / cols;
        Tensor cx = x.isContiguous() ? x : x.copy();
        try {
            Storage sx = cx.storage(), so = out.storage();
            acquireAll(sx, so, null, null, null);
            try {
                Native.check(KilnNative.argmaxF32(rows, cols, cx.address(), out.address()));
            } finally {
                releaseAll(sx, so, null, null, null);
            }
        } finally {
            if (cx != x) {
                cx.close();
            }
        }
    }

    /** The k largest elements of each row (last dimension) of x, largest first, and their indices
     *  (values F32, indices I32, both shaped like x with last dimension k, contiguous). */
    public static void topk(Tensor x, int k, Tensor values, Tensor indices) {
        requireF32Cpu("topk", "x", x);
        requireF32Cpu("topk", "values", values);
        Objects.requireNonNull(indices, "indices");
        indices.checkData("topk");
        if (indices.dtype() != DType.I32) {
            throw new IllegalArgumentException("topk: indices has dtype " + indices.dtype() + "; indices are I32");
        }
        if (x.rank() == 0) {
            throw new IllegalArgumentException("topk: x is a scalar: it needs a last dimension");
        }
        long cols = x.size(-1);
        if (k < 1 || k > cols) {
            throw new IllegalArgumentException("topk: k is " + k + ": must be in 1.." + cols);
        }
        requireTopkShape(x.shapeRef(), k, values, "values");
        requireTopkShape(x.shapeRef(), k, indices, "indices");
        long rows = x.numel() / cols;
        Tensor cx = x.isContiguous() ? x : x.copy();
        try {
            Storage sx = cx.storage(), sv = values.storage(), si = indices.storage();
            acquireAll(sx, sv, null, null, null);
            try {
                si.acquire();
                try {
                    Native.check(KilnNative.topkF32(rows, cols, k, cx.address(), values.address(), indices.address()));
                } finally {
                    si.release();
                }
            } finally {
                releaseAll(sx, sv, null, null, null);
            }
        } finally {
            if (cx != x) {
                cx.close();
            }
        }
    }

    private interface RowKernel {
        void run(long x, long out);
    }

    /** Runs a row kernel on contiguous data: directly when both are contiguous, else through copies. */
    private static void withContiguousRows(Tensor x, Tensor out, RowKernel kernel) {
        Tensor cx = x.isContiguous() ? x : x.copy();
        Tensor co = out.isContiguous() ? out : Tensor.zeros(DType.F32, out.shapeRef());
        try {
            Storage sx = cx.storage(), so = co.storage();
            acquireAll(sx, so, null, null, null);
            try {
                kernel.run(cx.address(), co.address());
            } finally {
                releaseAll(sx, so, null, null, null);
            }
            if (co != out) {
                copyInto(co, out);
            }
        } finally {
            if (cx != x) {
                cx.close();
            }
            if (co != out) {
                co.close();
            }
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

    static void requireF32Cpu(String op, String what, Tensor t) {
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
