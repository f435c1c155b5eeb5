package dev.kiln.tensor;

import dev.kiln.internal.Native;
import dev.kiln.internal.bindings.KilnNative;
import java.lang.ref.Cleaner;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An n-dimensional array in native memory (up to {@value #MAX_RANK} dimensions), which Java reads
 * and writes without copies.
 *
 * <h2>Ownership</h2>
 * A tensor made by a factory ({@link #zeros}, {@link #of}, …) owns its memory and frees it on
 * {@link #close()}. A view ({@link #reshape}, {@link #slice}, {@link #transpose}, {@link #permute})
 * shares its parent's memory: closing a view only retires the view; closing the owner retires the
 * owner and every view of it (use after close throws {@link IllegalStateException}). Memory is
 * never freed under a running native call or under a reachable {@link ByteBuffer} view: the free
 * is deferred to the last user, so misuse cannot read freed memory. A forgotten tensor is freed by
 * a {@link Cleaner} once unreachable and counted ({@link #reclaimedByCleaner()}); with
 * {@code -Dkiln.debugLeaks=true} the allocation site is logged too.
 *
 * <h2>Layout</h2>
 * Row-major shape with strides in elements; views change shape, strides and offset only.
 * {@link DType#I4} tensors pack two values per byte and support contiguous views
 * ({@link #reshape}) only.
 *
 * <h2>Errors</h2>
 * Misuse is refused in Java before native code runs: {@link NullPointerException} for nulls,
 * {@link IllegalStateException} for a closed tensor or one without data ({@link Device#META}),
 * {@link IllegalArgumentException} for bad shapes, dtypes and devices,
 * {@link IndexOutOfBoundsException} for out-of-range indices and slices. Native code checks again
 * and reports with {@link dev.kiln.KilnException}.
 *
 * <p>A tensor is safe to read from many threads; concurrent writes to the same elements are the
 * caller's business, as with arrays.
 */
public final class Tensor implements AutoCloseable {
    /** Most dimensions a tensor may have ({@code KILN_MAX_DIMS}). */
    public static final int MAX_RANK = 8;

    private static final Cleaner CLEANER = Cleaner.create();
    private static final AtomicLong RECLAIMED = new AtomicLong();
    private static final System.Logger LOG = System.getLogger("dev.kiln.tensor");

    private final Storage storage;
    private final Tensor owner; // null for an owner; views keep their owner reachable
    private final Cleaner.Cleanable cleanable;
    private final DType dtype;
    private final long[] shape;
    private final long[] strides;
    private final long offset; // in elements
    private final long numel;
    private final AtomicBoolean closed = new AtomicBoolean();

    private Tensor(Storage storage, Tensor owner, DType dtype, long[] shape, long[] strides, long offset) {
        this.storage = storage;
        this.owner = owner;
        this.dtype = dtype;
        this.shape = shape;
        this.strides = strides;
        this.offset = offset;
        this.numel = product(shape);
        this.cleanable = owner == null ? CLEANER.register(this, new Reclaimer(storage)) : null;
    }

    /** Cleaner action: frees an owner that was never closed, and counts it. */
    private static final class Reclaimer implements Runnable {
        private final Storage storage;

        Reclaimer(Storage storage) {
            this.storage = storage;
        }

        @Override
        public void run() {
            if (storage.close()) {
                RECLAIMED.incrementAndGet();
                if (storage.allocationSite != null) {
                    LOG.log(System.Logger.Level.WARNING,
                            "a tensor of " + storage.bytes + " bytes was never closed; freed by the Cleaner",
                            storage.allocationSite);
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Factories
    // ---------------------------------------------------------------------------------------

    /** A zero-filled tensor in native CPU memory. */
    public static Tensor zeros(DType dtype, long... shape) {
        return zeros(dtype, Device.CPU, shape);
    }

    /** A zero-filled tensor on {@code device} ({@link Device#META}: shape only, no memory). */
    public static Tensor zeros(DType dtype, Device device, long... shape) {
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(device, "device");
        long[] s = checkShape(shape);
        long n = product(s);
        long bytes;
        try {
            bytes = dtype.bytesFor(n);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("shape " + Arrays.toString(s) + " of " + dtype
                    + " needs more than fits in 64 bits");
        }
        if (bytes > (1L << 62)) {
            throw new IllegalArgumentException("shape " + Arrays.toString(s) + " of " + dtype
                    + " needs " + bytes + " bytes: more than the 2^62-byte limit");
        }
        Storage storage = Storage.allocate(bytes, device);
        return new Tensor(storage, null, dtype, s, contiguousStrides(s), 0);
    }

    /** A contiguous tensor over a file mapping (see {@link NativeAccess#wrapMapped}). */
    static Tensor mapped(java.nio.ByteBuffer mapping, DType dtype, long[] shape) {
        long[] s = checkShape(shape);
        long bytes = dtype.bytesFor(product(s));
        if (!mapping.isDirect() || mapping.capacity() != bytes) {
            throw new IllegalArgumentException("mapped: a direct buffer of exactly " + bytes + " bytes is needed");
        }
        long address = bytes == 0 ? 0 : new org.bytedeco.javacpp.Pointer(mapping).address();
        return new Tensor(Storage.mapped(mapping, address), null, dtype, s, contiguousStrides(s), 0);
    }

    /** A tensor with no memory, for shape checks and planning: any data access throws. */
    public static Tensor meta(DType dtype, long... shape) {
        return zeros(dtype, Device.META, shape);
    }

    /** An F32 tensor holding a copy of {@code data}, of the given shape. */
    public static Tensor of(float[] data, long... shape) {
        Objects.requireNonNull(data, "data");
        Tensor t = zeros(DType.F32, shape);
        try {
            t.copyFrom(data);
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
        return t;
    }

    /** An I32 tensor holding a copy of {@code data}, of the given shape. */
    public static Tensor of(int[] data, long... shape) {
        Objects.requireNonNull(data, "data");
        Tensor t = zeros(DType.I32, shape);
        try {
            t.copyFrom(data);
        } catch (RuntimeException e) {
            t.close();
            throw e;
        }
        return t;
    }

    /** Tensors that were never closed and that the garbage-collector safety net freed. */
    public static long reclaimedByCleaner() {
        return RECLAIMED.get();
    }

    // ---------------------------------------------------------------------------------------
    // Description
    // ---------------------------------------------------------------------------------------

    public DType dtype() {
        return dtype;
    }

    public Device device() {
        return storage.device;
    }

    /** A copy of the shape. */
    public long[] shape() {
        return shape.clone();
    }

    /** Size of dimension {@code dim} (negative counts from the end). */
    public long size(int dim) {
        return shape[normalizeDim(dim)];
    }

    /** A copy of the strides, in elements. */
    public long[] strides() {
        return strides.clone();
    }

    public int rank() {
        return shape.length;
    }

    /** Number of elements. */
    public long numel() {
        return numel;
    }

    /** Offset of the first element from the start of the owner's memory, in elements. */
    public long offset() {
        return offset;
    }

    /** Bytes spanned by the elements if laid out contiguously. */
    public long byteSize() {
        return dtype.bytesFor(numel);
    }

    /** Whether elements lie in row-major order without gaps. */
    public boolean isContiguous() {
        long expected = 1;
        for (int i = shape.length - 1; i >= 0; i--) {
            if (shape[i] != 1 && strides[i] != expected) {
                return false;
            }
            expected *= shape[i];
        }
        return true;
    }

    public boolean isClosed() {
        return closed.get() || storage.isClosed();
    }

    /** Whether this tensor is a view of another one's memory. */
    public boolean isView() {
        return owner != null;
    }

    /**
     * The native address of the first element (for interop with other native code). Valid while
     * the tensor is open; the caller must not use it after {@link #close()}.
     */
    public long address() {
        checkData("address");
        return storage.address + byteOffset();
    }

    @Override
    public String toString() {
        return "Tensor[" + dtype + " " + Arrays.toString(shape) + " " + storage.device
                + (isContiguous() ? "" : " strided") + (isClosed() ? " closed" : "") + "]";
    }

    // ---------------------------------------------------------------------------------------
    // Views (no copies)
    // ---------------------------------------------------------------------------------------

    /**
     * The same elements under a new shape; one dimension may be -1 (inferred). Needs a contiguous
     * tensor: for a strided view, {@link #copy()} first.
     */
    public Tensor reshape(long... newShape) {
        checkOpen("reshape");
        Objects.requireNonNull(newShape, "shape");
        long[] s = newShape.clone();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < s.length; i++) {
            if (s[i] == -1) {
                if (infer >= 0) {
                    throw new IllegalArgumentException("reshape: more than one -1 in " + Arrays.toString(newShape));
                }
                infer = i;
            } else if (s[i] < 0) {
                throw new IllegalArgumentException("reshape: dimension " + i + " is " + s[i] + " in "
                        + Arrays.toString(newShape) + ": dimensions must be >= 0 (or one -1)");
            } else {
                known = multiplyShape(known, s[i], newShape);
            }
        }
        if (infer >= 0) {
            if (known == 0 || numel % known != 0) {
                throw new IllegalArgumentException("reshape: cannot infer -1 in " + Arrays.toString(newShape)
                        + " for " + numel + " elements");
            }
            s[infer] = numel / known;
        }
        checkShape(s);
        if (product(s) != numel) {
            throw new IllegalArgumentException("reshape: " + Arrays.toString(shape) + " has " + numel
                    + " elements but " + Arrays.toString(s) + " has " + product(s));
        }
        if (!isContiguous()) {
            throw new IllegalStateException("reshape: this view is not contiguous (strides "
                    + Arrays.toString(strides) + "); call copy() first");
        }
        return view(s, contiguousStrides(s), offset);
    }

    /** Elements {@code start} (inclusive) to {@code end} (exclusive) of dimension {@code dim}. */
    public Tensor slice(int dim, long start, long end) {
        checkOpen("slice");
        noPackedViews("slice");
        int d = normalizeDim(dim);
        if (start < 0 || end < start || end > shape[d]) {
            throw new IndexOutOfBoundsException("slice: [" + start + ", " + end + ") is outside dimension "
                    + d + " of size " + shape[d]);
        }
        long[] s = shape.clone();
        s[d] = end - start;
        return view(s, strides.clone(), offset + start * strides[d]);
    }

    /** Dimensions {@code d0} and {@code d1} swapped. */
    public Tensor transpose(int d0, int d1) {
        checkOpen("transpose");
        noPackedViews("transpose");
        int a = normalizeDim(d0);
        int b = normalizeDim(d1);
        int[] order = new int[shape.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        order[a] = b;
        order[b] = a;
        return permute(order);
    }

    /** Dimensions reordered: dimension i of the result is dimension {@code order[i]} of this. */
    public Tensor permute(int... order) {
        checkOpen("permute");
        noPackedViews("permute");
        Objects.requireNonNull(order, "order");
        if (order.length != shape.length) {
            throw new IllegalArgumentException("permute: " + Arrays.toString(order) + " has "
                    + order.length + " entries for a rank-" + shape.length + " tensor");
        }
        boolean[] seen = new boolean[shape.length];
        long[] s = new long[shape.length];
        long[] st = new long[shape.length];
        for (int i = 0; i < order.length; i++) {
            int d = order[i];
            if (d < 0 || d >= shape.length || seen[d]) {
                throw new IllegalArgumentException("permute: " + Arrays.toString(order)
                        + " is not a permutation of 0.." + (shape.length - 1));
            }
            seen[d] = true;
            s[i] = shape[d];
            st[i] = strides[d];
        }
        return view(s, st, offset);
    }

    private Tensor view(long[] s, long[] st, long off) {
        return new Tensor(storage, owner == null ? this : owner, dtype, s, st, off);
    }

    // ---------------------------------------------------------------------------------------
    // Zero-copy views for Java
    // ---------------------------------------------------------------------------------------

    /**
     * The elements as a {@link ByteBuffer} over the native memory (native byte order), no copy.
     * Needs a contiguous CPU tensor of at most 2 GiB - 1 bytes. The memory stays allocated while the
     * buffer (or any buffer derived from it) is reachable, even after {@link #close()}.
     */
    public ByteBuffer byteView() {
        return byteView("byteView");
    }

    private ByteBuffer byteView(String op) {
        checkData(op);
        if (!isContiguous()) {
            throw new IllegalStateException(op + ": this view is not contiguous (strides "
                    + Arrays.toString(strides) + "); call copy() first");
        }
        long bytes = byteSize();
        if (bytes > Integer.MAX_VALUE) {
            throw new UnsupportedOperationException(op + ": the tensor is " + bytes
                    + " bytes; a ByteBuffer holds at most 2^31 - 1: view a slice instead");
        }
        storage.acquire();
        try {
            ByteBuffer buf = rawBuffer(address(), bytes);
            storage.bufferViewCreated();
            CLEANER.register(buf, storage::bufferViewCollected);
            return buf;
        } finally {
            storage.release();
        }
    }

    /** The elements of a contiguous F32 tensor as a {@link FloatBuffer}, no copy (see {@link #byteView()}). */
    public FloatBuffer floatView() {
        requireDtype("floatView", DType.F32);
        return byteView("floatView").asFloatBuffer();
    }

    /**
     * The elements as an Agrona {@code UnsafeBuffer}, no copy (see {@link #byteView()}). Agrona 2
     * needs {@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED}.
     */
    public org.agrona.concurrent.UnsafeBuffer unsafeBufferView() {
        return new org.agrona.concurrent.UnsafeBuffer(byteView("unsafeBufferView"));
    }

    /** A buffer over native memory for Kiln's own short-lived use (not tracked). */
    static ByteBuffer rawBuffer(long address, long bytes) {
        if (bytes == 0) {
            return ByteBuffer.allocateDirect(0).order(ByteOrder.nativeOrder());
        }
        return KilnNative.byteBuffer(address, bytes).order(ByteOrder.nativeOrder());
    }

    // ---------------------------------------------------------------------------------------
    // Copies between Java arrays and the tensor
    // ---------------------------------------------------------------------------------------

    /** Copies {@code data} (row-major, length = numel) into this F32 tensor. */
    public void copyFrom(float[] data) {
        Objects.requireNonNull(data, "data");
        requireDtype("copyFrom(float[])", DType.F32);
        requireLength("copyFrom(float[])", data.length);
        withContiguous(true, buf -> buf.asFloatBuffer().put(data));
    }

    /** Copies {@code data} into this I32 tensor. */
    public void copyFrom(int[] data) {
        Objects.requireNonNull(data, "data");
        requireDtype("copyFrom(int[])", DType.I32);
        requireLength("copyFrom(int[])", data.length);
        withContiguous(true, buf -> buf.asIntBuffer().put(data));
    }

    /** Copies raw bits {@code data} into this BF16 or F16 tensor. */
    public void copyFrom(short[] data) {
        Objects.requireNonNull(data, "data");
        requireDtype("copyFrom(short[])", DType.BF16, DType.F16);
        requireLength("copyFrom(short[])", data.length);
        withContiguous(true, buf -> buf.asShortBuffer().put(data));
    }

    /** Copies raw bytes into this I8, U8 or I4 tensor (I4: packed bytes, length = (numel + 1) / 2). */
    public void copyFrom(byte[] data) {
        Objects.requireNonNull(data, "data");
        requireDtype("copyFrom(byte[])", DType.I8, DType.U8, DType.I4);
        if (data.length != byteSize()) {
            throw new IllegalArgumentException("copyFrom(byte[]): array has " + data.length
                    + " bytes but the tensor " + Arrays.toString(shape) + " of " + dtype + " has " + byteSize());
        }
        withContiguous(true, buf -> buf.put(data));
    }

    /** Copies the elements of this F32 tensor into {@code dest} (length = numel). */
    public void copyTo(float[] dest) {
        Objects.requireNonNull(dest, "dest");
        requireDtype("copyTo(float[])", DType.F32);
        requireLength("copyTo(float[])", dest.length);
        withContiguous(false, buf -> buf.asFloatBuffer().get(dest));
    }

    public void copyTo(int[] dest) {
        Objects.requireNonNull(dest, "dest");
        requireDtype("copyTo(int[])", DType.I32);
        requireLength("copyTo(int[])", dest.length);
        withContiguous(false, buf -> buf.asIntBuffer().get(dest));
    }

    public void copyTo(short[] dest) {
        Objects.requireNonNull(dest, "dest");
        requireDtype("copyTo(short[])", DType.BF16, DType.F16);
        requireLength("copyTo(short[])", dest.length);
        withContiguous(false, buf -> buf.asShortBuffer().get(dest));
    }

    public void copyTo(byte[] dest) {
        Objects.requireNonNull(dest, "dest");
        requireDtype("copyTo(byte[])", DType.I8, DType.U8, DType.I4);
        if (dest.length != byteSize()) {
            throw new IllegalArgumentException("copyTo(byte[]): array has " + dest.length
                    + " bytes but the tensor has " + byteSize());
        }
        withContiguous(false, buf -> buf.get(dest));
    }

    /** A new array with the elements of this F32 tensor (row-major, whatever the strides). */
    public float[] toFloatArray() {
        float[] out = new float[checkedArrayLength("toFloatArray")];
        copyTo(out);
        return out;
    }

    public int[] toIntArray() {
        int[] out = new int[checkedArrayLength("toIntArray")];
        copyTo(out);
        return out;
    }

    /** The F32 element at {@code index} (one index per dimension). */
    public float getFloat(long... index) {
        requireDtype("getFloat", DType.F32);
        long off = elementOffset("getFloat", index);
        storage.acquire();
        try {
            checkData("getFloat");
            return rawBuffer(storage.address + off * 4, 4).getFloat(0);
        } finally {
            storage.release();
        }
    }

    /** Sets the F32 element at {@code index}. */
    public void setFloat(float value, long... index) {
        requireDtype("setFloat", DType.F32);
        long off = elementOffset("setFloat", index);
        storage.acquire();
        try {
            checkData("setFloat");
            rawBuffer(storage.address + off * 4, 4).putFloat(0, value);
        } finally {
            storage.release();
        }
    }

    /** A contiguous copy (a new owner) of this tensor or view. */
    public Tensor copy() {
        checkData("copy");
        Tensor out = zeros(dtype, storage.device, shape);
        try {
            Ops.copyInto(this, out);
        } catch (RuntimeException e) {
            out.close();
            throw e;
        }
        return out;
    }

    /** A new contiguous tensor of {@code target} dtype: F32 to/from BF16 or F16 (round to nearest even). */
    public Tensor to(DType target) {
        Objects.requireNonNull(target, "target");
        checkData("to");
        if (target == dtype) {
            return copy();
        }
        boolean ok = (dtype == DType.F32 && (target == DType.BF16 || target == DType.F16))
                || (target == DType.F32 && (dtype == DType.BF16 || dtype == DType.F16));
        if (!ok) {
            throw new IllegalArgumentException("to: no conversion from " + dtype + " to " + target
                    + " (supported: F32 <-> BF16, F32 <-> F16)");
        }
        Tensor src = isContiguous() ? this : copy();
        try {
            Tensor out = zeros(target, shape);
            src.storage.acquire();
            try {
                Native.check(KilnNative.convert(dtype.nativeCode(), src.address(), target.nativeCode(),
                        out.address(), numel));
            } catch (RuntimeException e) {
                out.close();
                throw e;
            } finally {
                src.storage.release();
            }
            return out;
        } finally {
            if (src != this) {
                src.close();
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Fills
    // ---------------------------------------------------------------------------------------

    /**
     * Sets every element to {@code value}. Integer types need an integral value in their range
     * (I4: -8..7); floating types round to nearest.
     */
    public Tensor fill(double value) {
        checkData("fill");
        if (dtype == DType.I4) {
            requireIntegral(value, -8, 7);
            if (!isContiguous()) {
                throw new IllegalStateException("fill: I4 views must be contiguous");
            }
            int nib = ((int) value) & 0xF;
            byte packed = (byte) (nib | (nib << 4));
            withContiguous(true, buf -> {
                for (int i = 0; i < buf.capacity(); i++) {
                    buf.put(i, packed);
                }
            });
            return this;
        }
        Scratch s = Scratch.get();
        long pattern = s.slot(4);
        switch (dtype) {
            case F32:
                s.buffer.putFloat(4 * Scratch.SLOT_BYTES, (float) value);
                break;
            case BF16:
            case F16:
                s.buffer.putFloat(5 * Scratch.SLOT_BYTES, (float) value);
                Native.check(KilnNative.convert(DType.F32.nativeCode(), s.slot(5), dtype.nativeCode(), pattern, 1));
                break;
            case I8:
                requireIntegral(value, -128, 127);
                s.buffer.put(4 * Scratch.SLOT_BYTES, (byte) value);
                break;
            case U8:
                requireIntegral(value, 0, 255);
                s.buffer.put(4 * Scratch.SLOT_BYTES, (byte) (int) value);
                break;
            case I32:
                requireIntegral(value, Integer.MIN_VALUE, Integer.MAX_VALUE);
                s.buffer.putInt(4 * Scratch.SLOT_BYTES, (int) value);
                break;
            default:
                throw new AssertionError(dtype);
        }
        storage.acquire();
        try {
            Native.check(KilnNative.fillPattern(dtype.byteSize(), shape.length, s.put(0, shape),
                    address(), s.put(1, strides), pattern));
        } finally {
            storage.release();
        }
        return this;
    }

    /** Fills with values uniform in [low, high) from a counter-based generator seeded by {@code seed}. */
    public Tensor fillUniform(double low, double high, long seed) {
        if (!(low <= high) || !Double.isFinite(low) || !Double.isFinite(high)) {
            throw new IllegalArgumentException("fillUniform: need finite low <= high, got [" + low + ", " + high + ")");
        }
        return fillRandom("fillUniform", 0, low, high, seed);
    }

    /** Fills with normal values (mean, standard deviation >= 0), seeded; reproducible anywhere. */
    public Tensor fillNormal(double mean, double std, long seed) {
        if (!(std >= 0) || !Double.isFinite(mean) || !Double.isFinite(std)) {
            throw new IllegalArgumentException("fillNormal: need finite mean and std >= 0, got mean "
                    + mean + ", std " + std);
        }
        return fillRandom("fillNormal", 1, mean, std, seed);
    }

    private Tensor fillRandom(String op, int kind, double a, double b, long seed) {
        checkData(op);
        if (!dtype.isFloatingPoint()) {
            throw new IllegalArgumentException(op + ": dtype is " + dtype + ": random fills take F32, BF16 or F16");
        }
        Scratch s = Scratch.get();
        storage.acquire();
        try {
            Native.check(KilnNative.fillRandom(dtype.nativeCode(), kind, shape.length, s.put(0, shape),
                    address(), s.put(1, strides), a, b, seed));
        } finally {
            storage.release();
        }
        return this;
    }

    // ---------------------------------------------------------------------------------------
    // Ops (conveniences over Ops, each allocating its result)
    // ---------------------------------------------------------------------------------------

    /** A new tensor {@code this + other} (broadcasting). */
    public Tensor add(Tensor other) {
        return Ops.binaryNew(Ops.Binary.ADD, this, other);
    }

    /** A new tensor {@code this * other} (broadcasting). */
    public Tensor mul(Tensor other) {
        return Ops.binaryNew(Ops.Binary.MUL, this, other);
    }

    /** A new tensor {@code alpha * this}. */
    public Tensor scale(float alpha) {
        Tensor out = zeros(DType.F32, shape);
        try {
            Ops.scale(this, alpha, out);
        } catch (RuntimeException e) {
            out.close();
            throw e;
        }
        return out;
    }

    /** The sum of all elements (F32), accumulated in double across blocks. */
    public double sum() {
        return Ops.sum(this);
    }

    // ---------------------------------------------------------------------------------------
    // Lifetime
    // ---------------------------------------------------------------------------------------

    /**
     * Retires this tensor: an owner frees its memory (deferred while a native call or a buffer
     * view still uses it) and retires its views; a view only retires itself. Idempotent.
     */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        if (owner == null) {
            storage.close();
            cleanable.clean(); // the Reclaimer sees a closed storage and counts nothing
        }
    }

    // ---------------------------------------------------------------------------------------
    // Package-private access for Ops
    // ---------------------------------------------------------------------------------------

    Storage storage() {
        return storage;
    }

    long[] shapeRef() {
        return shape;
    }

    long[] stridesRef() {
        return strides;
    }

    long byteOffset() {
        return dtype.isPacked() ? offset / 2 : offset * dtype.byteSize();
    }

    /** Throws unless this tensor is open. */
    void checkOpen(String op) {
        if (closed.get()) {
            throw new IllegalStateException(op + ": " + describe() + " is closed");
        }
        if (storage.isClosed()) {
            throw new IllegalStateException(op + ": " + describe() + " is closed (its owner was closed)");
        }
    }

    /** Throws unless this tensor is open and has CPU memory. */
    void checkData(String op) {
        checkOpen(op);
        if (storage.device.kind() != Device.Kind.CPU) {
            throw new IllegalStateException(op + ": " + describe() + " is on " + storage.device
                    + " and has no CPU memory");
        }
    }

    String describe() {
        return "tensor " + dtype + Arrays.toString(shape);
    }

    // ---------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------

    private interface BufferAction {
        void run(ByteBuffer contiguous);
    }

    /**
     * Runs action on a buffer over the elements in row-major order: directly when contiguous,
     * else through a contiguous native copy (copied back when {@code writes}).
     */
    private void withContiguous(boolean writes, BufferAction action) {
        checkData(writes ? "copyFrom" : "copyTo");
        if (isContiguous()) {
            storage.acquire();
            try {
                action.run(rawBuffer(storage.address + byteOffset(), byteSize()));
            } finally {
                storage.release();
            }
            return;
        }
        try (Tensor tmp = zeros(dtype, shape)) {
            if (!writes) {
                Ops.copyInto(this, tmp);
            }
            tmp.storage.acquire();
            try {
                action.run(rawBuffer(tmp.storage.address, tmp.byteSize()));
            } finally {
                tmp.storage.release();
            }
            if (writes) {
                Ops.copyInto(tmp, this);
            }
        }
    }

    private long elementOffset(String op, long[] index) {
        checkData(op);
        Objects.requireNonNull(index, "index");
        if (index.length != shape.length) {
            throw new IllegalArgumentException(op + ": " + index.length + " indices for a rank-"
                    + shape.length + " tensor");
        }
        long off = offset;
        for (int i = 0; i < index.length; i++) {
            if (index[i] < 0 || index[i] >= shape[i]) {
                throw new IndexOutOfBoundsException(op + ": index " + index[i] + " is outside dimension "
                        + i + " of size " + shape[i]);
            }
            off += index[i] * strides[i];
        }
        return off;
    }

    private void requireDtype(String op, DType... allowed) {
        for (DType d : allowed) {
            if (d == dtype) {
                return;
            }
        }
        throw new IllegalArgumentException(op + ": " + describe() + " has dtype " + dtype + "; expected "
                + (allowed.length == 1 ? allowed[0] : Arrays.toString(allowed)));
    }

    private void requireLength(String op, int length) {
        if (length != numel) {
            throw new IllegalArgumentException(op + ": array has " + length + " elements but "
                    + describe() + " has " + numel);
        }
    }

    private int checkedArrayLength(String op) {
        if (numel > Integer.MAX_VALUE - 8) {
            throw new UnsupportedOperationException(op + ": " + numel + " elements do not fit in a Java array");
        }
        return (int) numel;
    }

    private void noPackedViews(String op) {
        if (dtype.isPacked()) {
            throw new UnsupportedOperationException(op + ": " + dtype
                    + " packs two elements per byte; only contiguous views (reshape) are supported");
        }
    }

    private static void requireIntegral(double value, double min, double max) {
        if (value != Math.rint(value) || value < min || value > max) {
            throw new IllegalArgumentException("fill: " + value + " is not an integer in [" + (long) min
                    + ", " + (long) max + "]");
        }
    }

    private int normalizeDim(int dim) {
        int d = dim < 0 ? dim + shape.length : dim;
        if (d < 0 || d >= shape.length) {
            throw new IndexOutOfBoundsException("dimension " + dim + " is out of range for a rank-"
                    + shape.length + " tensor");
        }
        return d;
    }

    static long[] checkShape(long[] shape) {
        Objects.requireNonNull(shape, "shape");
        if (shape.length > MAX_RANK) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " has rank "
                    + shape.length + ": at most " + MAX_RANK + " dimensions");
        }
        long n = 1;
        for (int i = 0; i < shape.length; i++) {
            if (shape[i] < 0) {
                throw new IllegalArgumentException("shape " + Arrays.toString(shape) + ": dimension " + i
                        + " is " + shape[i] + ": dimensions must be >= 0");
            }
            n = multiplyShape(n, shape[i], shape);
        }
        return shape.clone();
    }

    private static long multiplyShape(long n, long d, long[] shape) {
        try {
            return Math.multiplyExact(n, d);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape)
                    + ": the element count overflows a 64-bit integer");
        }
    }

    static long product(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    static long[] contiguousStrides(long[] shape) {
        long[] st = new long[shape.length];
        long s = 1;
        for (int i = shape.length - 1; i >= 0; i--) {
            st[i] = s;
            s *= Math.max(shape[i], 1);
        }
        return st;
    }
}
