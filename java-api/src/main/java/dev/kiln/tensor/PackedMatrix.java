package dev.kiln.tensor;

import dev.kiln.internal.Native;
import dev.kiln.internal.bindings.KilnNative;
import java.lang.ref.Cleaner;
import java.util.Arrays;
import java.util.Objects;

/**
 * The right-hand matrix of a product (a layer's weights, K x N) packed once into the layout the
 * GEMM kernels of this CPU read, so each {@link Ops#matmul(Tensor, PackedMatrix, Tensor, Epilogue)}
 * skips packing. Independent of the source tensor once made. Close it to free its memory; a
 * forgotten one is freed by a Cleaner.
 */
public final class PackedMatrix implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    private final Storage storage;
    private final Cleaner.Cleanable cleanable;
    private final long k;
    private final long n;
    private final DType dtype;

    private PackedMatrix(Storage storage, long k, long n, DType dtype) {
        this.storage = storage;
        this.dtype = dtype;
        this.k = k;
        this.n = n;
        Storage s = storage;
        this.cleanable = CLEANER.register(this, s::close);
    }

    /**
     * Packs a K x N F32 or BF16 matrix (a plain or transposed 2-D view; other layouts are copied
     * first). A BF16 matrix is multiplied with BF16 inputs (f32 accumulation and output).
     */
    public static PackedMatrix pack(Tensor b) {
        Objects.requireNonNull(b, "b");
        Ops.requireCpu("pack", "b", b);
        if (b.dtype() != DType.F32 && b.dtype() != DType.BF16) {
            throw new IllegalArgumentException("pack: b has dtype " + b.dtype() + "; packed matrices take F32 or BF16");
        }
        if (b.rank() != 2) {
            throw new IllegalArgumentException("pack: b is " + Arrays.toString(b.shapeRef()) + ": a matrix must be 2-D");
        }
        long lb = Ops.MatrixLayout.of(b);
        Tensor src = lb < 0 ? b.copy() : b;
        try {
            long l = lb < 0 ? Ops.MatrixLayout.of(src) : lb;
            long[] out = new long[1];
            Storage s = src.storage();
            s.acquire();
            try {
                if (b.dtype() == DType.F32) {
                    Native.check(KilnNative.sgemmPackB(Ops.MatrixLayout.trans(l), b.size(0), b.size(1), src.address(),
                            Ops.MatrixLayout.ld(l), out));
                } else {
                    Native.check(KilnNative.gemmBf16PackB(Ops.MatrixLayout.trans(l), b.size(0), b.size(1),
                            src.address(), Ops.MatrixLayout.ld(l), out));
                }
            } finally {
                s.release();
            }
            return new PackedMatrix(Storage.packedB(out[0], b.byteSize()), b.size(0), b.size(1), b.dtype());
        } finally {
            if (src != b) {
                src.close();
            }
        }
    }

    /** The dtype of the matrix it was packed from (F32 or BF16). */
    public DType dtype() {
        return dtype;
    }

    /** Rows (K). */
    public long rows() {
        return k;
    }

    /** Columns (N). */
    public long columns() {
        return n;
    }

    public boolean isClosed() {
        return storage.isClosed();
    }

    Storage storage() {
        return storage;
    }

    long handle() {
        return storage.address;
    }

    @Override
    public void close() {
        storage.close();
        cleanable.clean();
    }

    @Override
    public String toString() {
        return "PackedMatrix[" + (dtype == DType.F32 ? "" : dtype + " ") + k + " x " + n + (isClosed() ? " closed" : "") + "]";
    }
}
