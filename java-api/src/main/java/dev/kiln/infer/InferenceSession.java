package dev.kiln.infer;

import dev.kiln.KilnException;
import dev.kiln.internal.Native;
import dev.kiln.internal.bindings.KilnNative;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Device;
import dev.kiln.tensor.NativeAccess;
import dev.kiln.tensor.Tensor;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A compiled model: an immutable native plan (weights packed, Dense + activation fused, buffers
 * sized for {@link #maxBatch()} rows). {@link #run} is one native call with no allocation and no
 * copy. One session serves many threads at once: each thread gets its own workspace (created on its
 * first call, freed when the session closes), and the hot path takes no lock.
 *
 * <p>A batch larger than {@link #maxBatch()} is refused with IllegalArgumentException (compile with
 * a larger maximum, or split the batch).
 */
public final class InferenceSession implements AutoCloseable {
    private static final long CLOSED = 1L << 62;

    private final long plan;
    private final long inputFeatures;
    private final long outputFeatures;
    private final int maxBatch;
    private final long workspaceBytes;
    private final DType inputDType;
    private final AtomicLong state = new AtomicLong(); // CLOSED bit | calls in flight
    private final ConcurrentLinkedQueue<Tensor> workspaces = new ConcurrentLinkedQueue<>();
    private final ThreadLocal<Tensor> workspace;

    private InferenceSession(long plan, long in, long out, int maxBatch, long workspaceBytes, DType inputDType) {
        this.plan = plan;
        this.inputDType = inputDType;
        this.inputFeatures = in;
        this.outputFeatures = out;
        this.maxBatch = maxBatch;
        this.workspaceBytes = workspaceBytes;
        this.workspace = ThreadLocal.withInitial(() -> {
            Tensor t;
            try {
                t = Tensor.zeros(DType.U8, Math.max(workspaceBytes, 1));
            } catch (KilnException e) {
                throw new KilnException(e.status(), e.code(), "run: cannot allocate this thread's workspace of "
                        + workspaceBytes + " bytes (buffers for the compiled maximum batch " + maxBatch
                        + "): compile with a smaller maxBatch (" + e.getMessage() + ")");
            }
            workspaces.add(t);
            return t;
        });
    }

    /** Compiles {@code model} (see {@link Sequential#compile}). */
    public static InferenceSession compile(Sequential model, int maxBatch) {
        Objects.requireNonNull(model, "model");
        if (maxBatch < 1) {
            throw new IllegalArgumentException("compile: maxBatch is " + maxBatch + ": must be >= 1");
        }
        Native.ensureLoaded();
        long[] out = new long[1];
        Native.check(KilnNative.planCreate(model.inputFeatures(), maxBatch, out));
        long p = out[0];
        try {
            for (Sequential.Layer l : model.layers()) {
                switch (l.kind()) {
                    case DENSE:
                        withTensors(l.weight(), l.bias(), (w, b) -> Native.check(KilnNative.planAddDense(p,
                                l.outFeatures(), w, b, l.activation().nativeCode(), l.activationAlpha())));
                        break;
                    case ACTIVATION:
                        Native.check(KilnNative.planAddActivation(p, l.activation().nativeCode(), l.activationAlpha()));
                        break;
                    case SOFTMAX:
                        Native.check(KilnNative.planAddSoftmax(p, 0));
                        break;
                    case LOG_SOFTMAX:
                        Native.check(KilnNative.planAddSoftmax(p, 1));
                        break;
                    case POOL:
                        Native.check(KilnNative.planAddPool(p, l.pooling().nativeCode(), l.inFeatures() / l.outFeatures()));
                        break;
                    case SCALE_SHIFT:
                        withTensors(l.gamma(), l.beta(), (g, b) -> Native.check(KilnNative.planAddScaleShift(p, g, b)));
                        break;
                    case L2_NORMALIZE:
                        Native.check(KilnNative.planAddL2Normalize(p, l.eps()));
                        break;
                    case PRELU:
                        withTensors(l.weight(), l.weight(), (a, unused) -> Native.check(KilnNative.planAddPRelu(p, a)));
                        break;
                    case LAYER_NORM:
                        withTensors(l.gamma(), l.beta(), (g, b) -> Native.check(KilnNative.planAddLayerNorm(p, g, b, l.eps())));
                        break;
                    case DROPOUT:
                        // the identity at inference: a no-op layer keeps value numbering for residuals
                        Native.check(KilnNative.planAddActivation(p, 0, 0f));
                        break;
                    case RESIDUAL:
                        Native.check(KilnNative.planAddResidual(p, l.residualFrom()));
                        break;
                    case BRANCH:
                        Native.check(KilnNative.planAddBranch(p, l.residualFrom()));
                        break;
                    case MULTIPLY:
                        Native.check(KilnNative.planAddMultiply(p, l.residualFrom()));
                        break;
                    case CONCAT:
                        Native.check(KilnNative.planAddConcat(p, l.residualFrom()));
                        break;
                    case SLICE:
                        Native.check(KilnNative.planAddSlice(p, l.sliceBegin(), l.sliceBegin() + l.outFeatures()));
                        break;
                    case EMBEDDING:
                        checkParam(l.weight());
                        NativeAccess.acquire(l.weight());
                        try {
                            Native.check(KilnNative.planAddEmbedding(p, l.weight().size(0), l.weight().size(1),
                                    NativeAccess.address(l.weight())));
                        } finally {
                            NativeAccess.release(l.weight());
                        }
                        break;
                    default:
                        throw new AssertionError(l.kind());
                }
            }
            Native.check(KilnNative.planCompile(p));
            long[] in = new long[1], o = new long[1], mb = new long[1], ws = new long[1];
            Native.check(KilnNative.planInfo(p, in, o, mb, ws));
            return new InferenceSession(p, in[0], o[0], maxBatch, ws[0], model.inputDType());
        } catch (RuntimeException e) {
            KilnNative.planDestroy(p);
            throw e;
        }
    }

    private interface TwoAddresses {
        void run(long a, long b);
    }

    private static void withTensors(Tensor x, Tensor y, TwoAddresses body) {
        checkParam(x);
        checkParam(y);
        NativeAccess.acquireAll(x, y, null);
        try {
            body.run(NativeAccess.address(x), NativeAccess.address(y));
        } finally {
            NativeAccess.releaseAll(x, y, null);
        }
    }

    private static void checkParam(Tensor t) {
        if (t.dtype() != DType.F32 || !t.isContiguous()) {
            throw new IllegalArgumentException("compile: parameter " + t + " must be a contiguous F32 tensor");
        }
    }

    public long inputFeatures() {
        return inputFeatures;
    }

    public long outputFeatures() {
        return outputFeatures;
    }

    public int maxBatch() {
        return maxBatch;
    }

    /**
     * One forward pass: input [batch, inputFeatures] to output [batch, outputFeatures], both
     * contiguous CPU tensors (output F32; input F32, or I32 token ids when the model starts with an
     * embedding: an id out of range fails the call naming its row and position), 1 <= batch <=
     * maxBatch, not overlapping each other. An input of rank above 2, [batch, d1, ..., dk] with
     * d1 * ... * dk = inputFeatures (images [batch, 1, 28, 28] for a model imported from ONNX
     * that flattens them), is read as its rows, without a copy.
     */
    public void run(Tensor input, Tensor output) {
        if (!runIfOpen(input, output)) {
            throw new IllegalStateException("run: the session is closed");
        }
    }

    /**
     * As {@link #run}, but returns false, having done nothing, when the session is closed (for
     * routers that swap sessions under load: take the new one and retry).
     */
    public boolean runIfOpen(Tensor input, Tensor output) {
        Objects.requireNonNull(input, "input");
        Objects.requireNonNull(output, "output");
        long batch = check("input", input, inputFeatures, -1, inputDType);
        check("output", output, outputFeatures, batch, DType.F32);
        if (batch > maxBatch) {
            throw new IllegalArgumentException("run: batch " + batch + " is above the compiled maximum " + maxBatch
                    + ": compile with a larger maxBatch or split the batch");
        }
        if (!enter()) {
            return false;
        }
        try {
            Tensor ws = workspace.get();
            NativeAccess.acquireAll(input, output, ws);
            try {
                long in = NativeAccess.address(input), out = NativeAccess.address(output);
                if (in < out + output.byteSize() && out < in + input.byteSize()) {
                    throw new IllegalArgumentException("run: output overlaps input: write to a separate tensor");
                }
                Native.check(KilnNative.planRun(plan, batch, NativeAccess.address(input), NativeAccess.address(output),
                        NativeAccess.address(ws), workspaceBytes));
            } finally {
                NativeAccess.releaseAll(input, output, ws);
            }
        } finally {
            exit();
        }
        return true;
    }

    private long check(String what, Tensor t, long features, long batch, DType dtype) {
        if (t.dtype() != dtype) {
            throw new IllegalArgumentException("run: " + what + " has dtype " + t.dtype() + "; the model "
                    + (what.equals("input") ? "takes " : "writes ") + dtype
                    + (dtype == DType.I32 ? " (token ids for its embedding)" : ""));
        }
        if (t.device().kind() != Device.Kind.CPU) {
            throw new IllegalArgumentException("run: " + what + " is on " + t.device() + " but the session runs on cpu");
        }
        long rowSize = 1; // an input of rank > 2 is read as rows [batch, d1 * ... * dk]
        for (int i = 1; i < t.rank(); i++) {
            rowSize *= t.size(i);
        }
        boolean rows = t.rank() == 2 || (what.equals("input") && t.rank() > 2);
        if (!rows || rowSize != features || (batch >= 0 && t.size(0) != batch) || t.size(0) < 1) {
            throw new IllegalArgumentException("run: " + what + " is " + Arrays.toString(t.shape()) + " but must be [" +
                    (batch >= 0 ? String.valueOf(batch) : "batch") + ", " + features + "]" + (t.rank() >= 2 && t.size(0) < 1
                    ? " with batch >= 1" : ""));
        }
        if (!t.isContiguous()) {
            throw new IllegalArgumentException("run: " + what + " must be contiguous (call copy())");
        }
        return t.size(0);
    }

    private boolean enter() {
        for (;;) {
            long s = state.get();
            if ((s & CLOSED) != 0) {
                return false;
            }
            if (state.compareAndSet(s, s + 1)) {
                return true;
            }
        }
    }

    private void exit() {
        if (state.decrementAndGet() == CLOSED) {
            free();
        }
    }

    public boolean isClosed() {
        return (state.get() & CLOSED) != 0;
    }

    /** Frees the plan and every workspace after the calls in flight finish. Never blocks. Idempotent. */
    @Override
    public void close() {
        long before = state.getAndUpdate(s -> s | CLOSED);
        if ((before & CLOSED) == 0 && before == 0) {
            free();
        }
    }

    private final java.util.concurrent.atomic.AtomicBoolean freed = new java.util.concurrent.atomic.AtomicBoolean();

    private void free() {
        if (freed.compareAndSet(false, true)) {
            KilnNative.planDestroy(plan);
            Tensor t;
            while ((t = workspaces.poll()) != null) {
                t.close();
            }
        }
    }

    @Override
    public String toString() {
        return "InferenceSession[" + inputFeatures + " -> " + outputFeatures + ", max batch " + maxBatch
                + (isClosed() ? ", closed" : "") + "]";
    }
}
