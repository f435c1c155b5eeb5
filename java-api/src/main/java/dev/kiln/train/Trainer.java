package dev.kiln.train;

import dev.kiln.KilnException;
import dev.kiln.data.Dataset;
import dev.kiln.internal.Native;
import dev.kiln.internal.bindings.KilnNative;
import dev.kiln.metrics.EpochMetrics;
import dev.kiln.metrics.TrainingListener;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.Activation;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.NativeAccess;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * Trains a {@link Sequential} model natively: each step (forward, loss, backward, optimizer update)
 * is one native call over buffers allocated once, with no allocation in Java either. The model's
 * parameters are copied in when the trainer is built and written back at the end of
 * {@link #fit} (or by {@link #copyToModel()}).
 *
 * <pre>{@code
 * try (Trainer trainer = Trainer.builder(model)
 *          .loss(Loss.softmaxCrossEntropy())
 *          .optimizer(Optimizer.adam(1e-3))
 *          .batchSize(128).seed(42)
 *          .build()) {
 *     History h = trainer.fit(train, validation, 10);
 * }
 * }</pre>
 *
 * <p>Runs are deterministic for a fixed seed and thread count ({@link dev.kiln.Kiln#setThreads}):
 * shuffling, dropout masks and the kernels' reduction order depend on nothing else. A checkpoint
 * holds the weights, optimizer moments, step, position in the epoch and schedule state, so
 * {@link #resume} continues with the identical loss sequence. A trainer is used by one thread at a
 * time: a call from a second thread while one runs fails with {@link IllegalStateException}.
 */
public final class Trainer implements AutoCloseable {
    private final long handle;
    private final Sequential model;
    private final List<Tensor> modelParams;
    private final Loss loss;
    private final Optimizer optimizer;
    private final Schedule schedule;
    private final int batchSize;
    private final long seed;
    private final long outputs;
    private final List<TrainingListener> listeners;
    private final ProgressListener progress;
    private final int patience;
    private final boolean restoreBest;
    private final long checkpointEvery;
    private final Path checkpointPath;
    private final java.util.Set<Integer> frozenLayers;
    private final Tensor scratch; // bytes 0 loss (double), 8 loss sum, 16 weight sum, 24 correct, 32 steps (int64)
    private final ByteBuffer scratchView;
    // One thread at a time, and a close() that never frees memory under a call in flight: the
    // thread inside (null: none), how deep (fit's listeners may call back in), and whether close()
    // was called. The native trainer is freed by close(), or by the call in flight as it leaves.
    private final Object guard = new Object();
    private Thread user;
    private int depth;
    private volatile boolean closed;
    private boolean freed;
    private long steps; // mirrors the native count: successful steps only

    // Position and running state, saved in checkpoints.
    private int epoch;
    private long batchInEpoch;
    private double epochLossSum;
    private long epochCorrect;
    private long epochSeen;
    private double bestMonitored = Double.POSITIVE_INFINITY;
    private int badEpochs;
    private int bestEpoch;

    private Trainer(Builder b) {
        this.model = b.model;
        this.loss = b.loss;
        this.optimizer = b.optimizer;
        this.schedule = b.schedule;
        this.batchSize = b.batchSize;
        this.seed = b.seed;
        this.listeners = List.copyOf(b.listeners);
        this.progress = b.progress;
        this.patience = b.patience;
        this.restoreBest = b.restoreBest;
        this.checkpointEvery = b.checkpointEvery;
        this.checkpointPath = b.checkpointPath;
        this.frozenLayers = java.util.Set.copyOf(b.frozen);
        Native.ensureLoaded();
        long[] out = new long[1];
        Native.check(KilnNative.trainerCreate(model.inputFeatures(), batchSize, out));
        this.handle = out[0];
        List<Tensor> params = new ArrayList<>();
        Tensor scratchTensor = null;
        try {
            long width = build(params);
            this.outputs = width;
            scratchTensor = Tensor.zeros(DType.U8, 64);
            this.scratch = scratchTensor;
            setOptimizer();
            Native.check(KilnNative.trainerSetSeed(handle, seed));
            Native.check(KilnNative.trainerCompile(handle));
        } catch (RuntimeException e) {
            KilnNative.trainerDestroy(handle);
            if (scratchTensor != null) {
                scratchTensor.close();
            }
            throw e;
        }
        this.modelParams = List.copyOf(params);
        this.scratchView = scratch.byteView().order(ByteOrder.nativeOrder());
    }

    /** Adds the model's layers to the native trainer; returns the output width trained on. */
    private long build(List<Tensor> params) {
        List<Sequential.Layer> layers = model.layers();
        long width = model.inputFeatures();
        int[] value = new int[layers.size() + 1]; // model value -> trainer value
        int trainerLayers = 0;
        for (int i = 0; i < layers.size(); i++) {
            Sequential.Layer l = layers.get(i);
            boolean last = i == layers.size() - 1;
            int paramsBefore = params.size();
            switch (l.kind()) {
                case DENSE:
                    withAddresses(l.weight(), l.bias(), (w, bias) ->
                            Native.check(KilnNative.trainerAddDense(handle, l.outFeatures(), w, bias)));
                    params.add(l.weight());
                    params.add(l.bias());
                    trainerLayers++;
                    if (l.activation() != Activation.IDENTITY) {
                        addActivation(l.activation(), l.activationAlpha(), i);
                        trainerLayers++;
                    }
                    break;
                case ACTIVATION:
                    addActivation(l.activation(), l.activationAlpha(), i);
                    trainerLayers++;
                    break;
                case SOFTMAX:
                case LOG_SOFTMAX:
                    if (last && loss.kind == Loss.Kind.SOFTMAX_CROSS_ENTROPY) {
                        break; // fused into the loss: trained on the logits
                    }
                    Native.check(KilnNative.trainerAddSoftmax(handle, l.kind() == Sequential.Layer.Kind.LOG_SOFTMAX ? 1 : 0));
                    trainerLayers++;
                    break;
                case POOL:
                    Native.check(KilnNative.trainerAddPool(handle, l.pooling().nativeCode(), l.inFeatures() / l.outFeatures()));
                    trainerLayers++;
                    break;
                case SCALE_SHIFT:
                    withAddresses(l.gamma(), l.beta(), (g, bt) ->
                            Native.check(KilnNative.trainerAddScaleShift(handle, g, bt)));
                    params.add(l.gamma());
                    params.add(l.beta());
                    trainerLayers++;
                    break;
                case L2_NORMALIZE:
                    Native.check(KilnNative.trainerAddL2Normalize(handle, l.eps()));
                    trainerLayers++;
                    break;
                case PRELU:
                    withAddresses(l.weight(), l.weight(), (a, unused) -> Native.check(KilnNative.trainerAddPRelu(handle, a)));
                    params.add(l.weight());
                    trainerLayers++;
                    break;
                case LAYER_NORM:
                    withAddresses(l.gamma(), l.beta(), (g, bt) ->
                            Native.check(KilnNative.trainerAddLayerNorm(handle, g, bt, l.eps())));
                    params.add(l.gamma());
                    params.add(l.beta());
                    trainerLayers++;
                    break;
                case DROPOUT:
                    Native.check(KilnNative.trainerAddDropout(handle, l.activationAlpha()));
                    trainerLayers++;
                    break;
                case EMBEDDING:
                    withAddresses(l.weight(), l.weight(), (t, unused) -> Native.check(KilnNative.trainerAddEmbedding(
                            handle, l.weight().size(0), l.weight().size(1), t)));
                    params.add(l.weight());
                    trainerLayers++;
                    break;
                case RESIDUAL:
                    Native.check(KilnNative.trainerAddResidual(handle, value[l.residualFrom()]));
                    trainerLayers++;
                    break;
                case BRANCH:
                    Native.check(KilnNative.trainerAddBranch(handle, value[l.residualFrom()]));
                    trainerLayers++;
                    break;
                case MULTIPLY:
                    Native.check(KilnNative.trainerAddMultiply(handle, value[l.residualFrom()]));
                    trainerLayers++;
                    break;
                case CONCAT:
                    Native.check(KilnNative.trainerAddConcat(handle, value[l.residualFrom()]));
                    trainerLayers++;
                    break;
                case SLICE:
                    Native.check(KilnNative.trainerAddSlice(handle, l.sliceBegin(), l.sliceBegin() + l.outFeatures()));
                    trainerLayers++;
                    break;
                default:
                    throw new IllegalArgumentException("layer " + i + " (" + l.kind() + ") cannot be trained yet");
            }
            value[i + 1] = trainerLayers;
            width = l.outFeatures();
            if (frozenLayers.contains(i)) { // the native parameters this layer just added
                for (int k = paramsBefore; k < params.size(); k++) {
                    Native.check(KilnNative.trainerFreeze(handle, k, 1));
                }
            }
        }
        if (loss.classWeights != null) {
            if (loss.classWeights.length != width) {
                throw new IllegalArgumentException(loss.classWeights.length + " class weights but the model has "
                        + width + " outputs");
            }
            try (Tensor cw = Tensor.of(loss.classWeights, width)) {
                NativeAccess.acquire(cw);
                try {
                    Native.check(KilnNative.trainerSetLoss(handle, loss.kind.ordinal(), loss.delta, NativeAccess.address(cw)));
                } finally {
                    NativeAccess.release(cw);
                }
            }
        } else {
            Native.check(KilnNative.trainerSetLoss(handle, loss.kind.ordinal(), loss.delta, 0));
        }
        if (loss.kind == Loss.Kind.SOFTMAX_CROSS_ENTROPY && width < 2) {
            throw new IllegalArgumentException("softmax cross-entropy needs >= 2 outputs; the model has " + width
                    + " (use Loss.binaryCrossEntropyWithLogits for one output)");
        }
        return width;
    }

    private void addActivation(Activation a, float alpha, int layer) {
        try {
            Native.check(KilnNative.trainerAddActivation(handle, a.nativeCode(), alpha));
        } catch (KilnException e) {
            throw new IllegalArgumentException("layer " + layer + ": activation " + a + " cannot be trained", e);
        }
    }

    private interface Two {
        void run(long a, long b);
    }

    private static void withAddresses(Tensor a, Tensor b, Two body) {
        for (Tensor t : new Tensor[] {a, b}) {
            if (t.dtype() != DType.F32 || !t.isContiguous()) {
                throw new IllegalArgumentException("parameter " + t + " must be a contiguous F32 tensor");
            }
        }
        NativeAccess.acquireAll(a, b, null);
        try {
            body.run(NativeAccess.address(a), NativeAccess.address(b));
        } finally {
            NativeAccess.releaseAll(a, b, null);
        }
    }

    private void setOptimizer() {
        try (Tensor o = Tensor.zeros(DType.U8, 64)) {
            ByteBuffer bb = o.byteView().order(ByteOrder.nativeOrder());
            bb.putInt(0, optimizer.kind.ordinal()).putInt(4, optimizer.nesterov ? 1 : 0).putFloat(8, optimizer.momentum)
                    .putFloat(12, optimizer.beta1).putFloat(16, optimizer.beta2).putFloat(20, optimizer.eps)
                    .putFloat(24, optimizer.l2).putFloat(28, optimizer.weightDecay).putFloat(32, optimizer.clipNorm);
            NativeAccess.acquire(o);
            try {
                Native.check(KilnNative.trainerSetOptimizer(handle, NativeAccess.address(o)));
            } finally {
                NativeAccess.release(o);
            }
        }
    }

    public static Builder builder(Sequential model) {
        return new Builder(model);
    }

    /** Steps taken so far (across fits and resumes). */
    public long steps() {
        enter();
        try {
            return steps;
        } finally {
            exit();
        }
    }

    /** Re-reads the native step count (after a state load). */
    private void syncSteps() {
        Native.check(KilnNative.trainerSteps(handle, NativeAccess.address(scratch) + 32));
        steps = scratchView.getLong(32);
    }

    private void enter() {
        synchronized (guard) {
            Thread me = Thread.currentThread();
            if (closed) {
                throw new IllegalStateException(user == me ? "the trainer was closed during this call"
                        : "the trainer is closed");
            }
            if (user != null && user != me) {
                throw new IllegalStateException("the trainer is in use by thread '" + user.getName()
                        + "': a trainer is used by one thread at a time");
            }
            user = me;
            depth++;
        }
    }

    private void exit() {
        synchronized (guard) {
            if (--depth == 0) {
                user = null;
                if (closed) {
                    free();
                }
            }
        }
    }

    private void checkData(String what, Dataset d) {
        Objects.requireNonNull(d, what);
        if (d.features().dtype() != model.inputDType()) {
            throw new IllegalArgumentException(what + " has " + d.features().dtype() + " features but the model takes "
                    + model.inputDType() + (model.inputDType() == DType.I32 ? " token ids" : ""));
        }
        if (d.featureCount() != model.inputFeatures()) {
            throw new IllegalArgumentException(what + " has " + d.featureCount() + " features but the model takes "
                    + model.inputFeatures());
        }
        if (loss.takesClassIds()) {
            if (!d.isClassification()) {
                throw new IllegalArgumentException(what + " has real-valued targets but " + loss
                        + " takes class ids (use Dataset.classification)");
            }
            if (d.numClasses() > outputs) {
                throw new IllegalArgumentException(what + " has labels up to " + (d.numClasses() - 1) + " but the model has "
                        + outputs + " outputs");
            }
        } else {
            if (d.isClassification()) {
                throw new IllegalArgumentException(what + " has class ids but " + loss
                        + " takes one real target per output (use Dataset.regression)");
            }
            if (d.targetWidth() != outputs) {
                throw new IllegalArgumentException(what + " has " + d.targetWidth() + " targets per row but the model has "
                        + outputs + " outputs");
            }
        }
        if (d.sampleWeights() != null && "train".equals(what)) {
            // Each step's loss is the weighted mean: with every weight 0 it is 0 and nothing is learned.
            java.nio.FloatBuffer w = d.sampleWeights().floatView();
            boolean any = false;
            for (int i = 0; i < w.limit() && !any; i++) {
                any = w.get(i) != 0;
            }
            if (!any) {
                throw new IllegalArgumentException(what + ": every sample weight is 0: nothing would be learned");
            }
        }
    }

    /**
     * Trains for {@code epochs} epochs in all (an epoch count, not a count of further epochs: a
     * resumed trainer continues from its checkpoint's epoch up to {@code epochs}). The last batch
     * of an epoch may be smaller than the batch size. {@code validation} may be null: early
     * stopping and reduce-on-plateau then watch the training loss.
     */
    public History fit(Dataset train, Dataset validation, int epochs) {
        enter();
        try {
            return fitGuarded(train, validation, epochs);
        } finally {
            exit();
        }
    }

    private History fitGuarded(Dataset train, Dataset validation, int epochs) {
        checkData("train", train);
        if (validation != null) {
            checkData("validation", validation);
        }
        if (epochs < 1) {
            throw new IllegalArgumentException("epochs is " + epochs + ": must be >= 1");
        }
        final int n = train.size();
        final long batches = (n + batchSize - 1) / batchSize;
        final long f = train.featureCount();
        final boolean classes = train.isClassification();
        List<EpochMetrics> history = new ArrayList<>();
        boolean stopped = false;
        Tensor bestState = null;
        try (Tensor index = Tensor.zeros(DType.I32, n);
             Tensor xb = Tensor.zeros(model.inputDType(), batchSize, f);
             Tensor yb = classes ? Tensor.zeros(DType.I32, batchSize) : Tensor.zeros(DType.F32, batchSize, outputs);
             Tensor wb = train.sampleWeights() != null ? Tensor.zeros(DType.F32, batchSize) : null) {
            int[] perm = new int[n];
            for (; epoch < epochs; epoch++) {
                fillPermutation(perm, epoch);
                index.copyFrom(perm);
                long start = System.nanoTime();
                for (; batchInEpoch < batches; ) {
                    long from = batchInEpoch * batchSize;
                    int m = (int) Math.min(batchSize, n - from);
                    Dataset.gatherInto(train.features(), index, from, m, xb);
                    Dataset.gatherInto(train.targets(), index, from, m, yb);
                    if (wb != null) {
                        Dataset.gatherInto(train.sampleWeights(), index, from, m, wb);
                    }
                    long step = steps;
                    double lr = optimizer.learningRate * schedule.factor(step, epoch);
                    double l = step(m, xb, yb, wb, lr, step);
                    epochLossSum += l * m;
                    epochCorrect += scratchView.getLong(24);
                    epochSeen += m;
                    batchInEpoch++;
                    if (progress != null) {
                        progress.onStep(epoch, epochs, batchInEpoch, batches, step + 1, l, (System.nanoTime() - start) / 1e9);
                    }
                    if (checkpointEvery > 0 && (step + 1) % checkpointEvery == 0) {
                        checkpoint(checkpointPath);
                    }
                }
                double seconds = (System.nanoTime() - start) / 1e9;
                double trainLoss = epochLossSum / epochSeen;
                double trainAcc = classes ? epochCorrect / (double) epochSeen : Double.NaN;
                Evaluation v = validation != null ? evaluate(validation) : null;
                double lr = optimizer.learningRate * schedule.factor(steps, epoch);
                EpochMetrics em = new EpochMetrics(epoch + 1, trainLoss, trainAcc, v != null ? v.loss() : Double.NaN,
                        v != null ? v.accuracy() : Double.NaN, lr, epochSeen / seconds);
                history.add(em);
                double monitored = v != null ? v.loss() : trainLoss;
                schedule.epochEnd(monitored);
                batchInEpoch = 0;
                epochLossSum = 0;
                epochCorrect = 0;
                epochSeen = 0;
                if (monitored < bestMonitored) {
                    bestMonitored = monitored;
                    badEpochs = 0;
                    bestEpoch = epoch + 1;
                    if (patience > 0 && restoreBest) {
                        if (bestState == null) {
                            bestState = Tensor.zeros(DType.U8, stateBytes());
                        }
                        saveState(bestState);
                    }
                } else {
                    badEpochs++;
                }
                for (TrainingListener tl : listeners) {
                    tl.onEpoch(em);
                }
                if (patience > 0 && badEpochs >= patience) {
                    epoch++;
                    stopped = true;
                    break;
                }
            }
            if (stopped && restoreBest && bestState != null) {
                loadState(bestState);
            }
            copyToModel();
            return new History(history, stopped, stopped && restoreBest ? bestEpoch : epoch);
        } finally {
            if (bestState != null) {
                bestState.close();
            }
        }
    }

    private void fillPermutation(int[] perm, int ep) {
        for (int i = 0; i < perm.length; i++) {
            perm[i] = i;
        }
        SplittableRandom rng = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + ep);
        for (int i = perm.length - 1; i > 0; i--) {
            int j = rng.nextInt(i + 1);
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    }

    private double step(long m, Tensor x, Tensor y, Tensor w, double lr, long step) {
        if (closed) {
            throw new IllegalStateException("the trainer was closed during training, before step " + step);
        }
        long s = NativeAccess.address(scratch);
        NativeAccess.acquireAll(x, y, w);
        try {
            int st = KilnNative.trainerStep(handle, m, NativeAccess.address(x), NativeAccess.address(y),
                    w != null ? NativeAccess.address(w) : 0, (float) lr, s, s + 24);
            if (st != 0) {
                KilnException e = Native.failure(st);
                String msg = e.getMessage();
                if (msg != null && (msg.contains("not finite") || msg.contains("the loss is"))) {
                    throw new TrainingDivergedException(step, epoch, batchInEpoch + 1, msg);
                }
                if (msg != null && (msg.contains("label of row") || msg.contains("sample weight of row")
                        || msg.contains("token id"))) {
                    throw new IllegalArgumentException(msg, e);
                }
                throw e;
            }
        } finally {
            NativeAccess.releaseAll(x, y, w);
        }
        steps++;
        return scratchView.getDouble(0);
    }

    /**
     * One training step on a batch you assembled: x {@code [m, features]}, targets {@code [m]} I32
     * or {@code [m, outputs]} F32, weights {@code [m]} F32 or null; m up to the batch size. Returns
     * the batch's mean loss. The learning rate is the optimizer's times the schedule's factor.
     */
    public double trainBatch(Tensor x, Tensor targets, Tensor weights) {
        enter();
        try {
            return trainBatchGuarded(x, targets, weights);
        } finally {
            exit();
        }
    }

    private double trainBatchGuarded(Tensor x, Tensor targets, Tensor weights) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(targets, "targets");
        long m = checkBatch(x, targets, weights);
        long step = steps;
        return step(m, x, targets, weights, optimizer.learningRate * schedule.factor(step, epoch), step);
    }

    private long checkBatch(Tensor x, Tensor targets, Tensor weights) {
        if (x.dtype() != model.inputDType() || x.rank() != 2 || x.size(1) != model.inputFeatures() || !x.isContiguous()) {
            throw new IllegalArgumentException("x must be a contiguous " + model.inputDType() + " [batch, "
                    + model.inputFeatures() + "], not " + x);
        }
        long m = x.size(0);
        if (m < 1 || m > batchSize) {
            throw new IllegalArgumentException("batch of " + m + " rows: must be in 1.." + batchSize + " (the batch size)");
        }
        boolean ok = loss.takesClassIds()
                ? targets.dtype() == DType.I32 && targets.rank() == 1 && targets.size(0) == m
                : targets.dtype() == DType.F32 && targets.rank() == 2 && targets.size(0) == m && targets.size(1) == outputs;
        if (!ok || !targets.isContiguous()) {
            throw new IllegalArgumentException("targets must be contiguous " + (loss.takesClassIds() ? "I32 [" + m + "]"
                    : "F32 [" + m + ", " + outputs + "]") + ", not " + targets);
        }
        if (weights != null && (weights.dtype() != DType.F32 || weights.rank() != 1 || weights.size(0) != m
                || !weights.isContiguous())) {
            throw new IllegalArgumentException("weights must be contiguous F32 [" + m + "], not " + weights);
        }
        return m;
    }

    /** Loss and accuracy of the current weights on {@code data} (evaluation mode: no dropout). */
    public Evaluation evaluate(Dataset data) {
        enter();
        try {
            return evaluateGuarded(data);
        } finally {
            exit();
        }
    }

    private Evaluation evaluateGuarded(Dataset data) {
        checkData("data", data);
        int n = data.size();
        long f = data.featureCount();
        long tw = data.isClassification() ? 4 : 4 * outputs;
        ByteBuffer sb = scratchView;
        sb.putDouble(8, 0).putDouble(16, 0).putLong(24, 0);
        long s = NativeAccess.address(scratch);
        Tensor x = data.features(), y = data.targets(), w = data.sampleWeights();
        NativeAccess.acquireAll(x, y, w);
        try {
            for (long from = 0; from < n; from += batchSize) {
                long m = Math.min(batchSize, n - from);
                Native.check(KilnNative.trainerEvaluate(handle, m, NativeAccess.address(x) + from * f * 4,
                        NativeAccess.address(y) + from * tw, w != null ? NativeAccess.address(w) + from * 4 : 0,
                        s + 8, s + 16, s + 24));
            }
        } finally {
            NativeAccess.releaseAll(x, y, w);
        }
        double lossSum = sb.getDouble(8), weightSum = sb.getDouble(16);
        long correct = sb.getLong(24);
        return new Evaluation(weightSum > 0 ? lossSum / weightSum : Double.NaN,
                data.isClassification() ? correct / (double) n : Double.NaN, n);
    }

    /** Writes the trained parameters into the model's tensors. */
    public void copyToModel() {
        enter();
        try {
            copyToModelGuarded();
        } finally {
            exit();
        }
    }

    private void copyToModelGuarded() {
        for (int i = 0; i < modelParams.size(); i++) {
            Tensor t = modelParams.get(i);
            NativeAccess.acquire(t);
            try {
                Native.check(KilnNative.trainerParam(handle, i, 0, NativeAccess.address(t), t.numel()));
            } finally {
                NativeAccess.release(t);
            }
        }
    }

    private long stateBytes() {
        long[] b = new long[1];
        Native.check(KilnNative.trainerStateBytes(handle, b));
        return b[0];
    }

    private void saveState(Tensor dst) {
        NativeAccess.acquire(dst);
        try {
            Native.check(KilnNative.trainerSaveState(handle, NativeAccess.address(dst), dst.byteSize()));
        } finally {
            NativeAccess.release(dst);
        }
    }

    private void loadState(Tensor src) {
        NativeAccess.acquire(src);
        try {
            Native.check(KilnNative.trainerLoadState(handle, NativeAccess.address(src), src.byteSize()));
        } finally {
            NativeAccess.release(src);
        }
        syncSteps();
    }

    /**
     * Writes a checkpoint (weights, optimizer state, step, position in the epoch, schedule and
     * early-stopping state) atomically: to a temporary file in the same directory, fsynced, then
     * renamed over {@code path}. A crash leaves the previous checkpoint intact.
     */
    public void checkpoint(Path path) {
        enter();
        try {
            checkpointGuarded(path);
        } finally {
            exit();
        }
    }

    private void checkpointGuarded(Path path) {
        Objects.requireNonNull(path, "path");
        try (Tensor state = Tensor.zeros(DType.U8, stateBytes())) {
            saveState(state);
            Checkpoint.State s = new Checkpoint.State(epoch, batchInEpoch, seed, batchSize, epochLossSum, epochCorrect,
                    epochSeen, bestMonitored, badEpochs, bestEpoch, schedule.saveState(), optimizer.kind().name());
            Checkpoint.write(path, s, state.byteView());
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("checkpoint: cannot write " + path + ": " + e.getMessage(), e);
        }
    }

    /**
     * Restores a checkpoint written by a trainer built the same way (model structure, batch size,
     * seed, optimizer kind: each is checked); the next {@link #fit} continues where it stopped, with the identical loss sequence.
     */
    public void resume(Path path) throws IOException {
        enter();
        try {
            resumeGuarded(path);
        } finally {
            exit();
        }
    }

    private void resumeGuarded(Path path) throws IOException {
        Checkpoint.Loaded c = Checkpoint.read(path);
        try (Tensor state = Tensor.zeros(DType.U8, c.stateBytes().length)) {
            if (c.state().batchSize() != batchSize || c.state().seed() != seed) {
                throw new IllegalArgumentException(path + ": written with batch size " + c.state().batchSize() + " and seed "
                        + c.state().seed() + "; this trainer has " + batchSize + " and " + seed);
            }
            String kind = optimizer.kind().name();
            if (c.state().optimizer() != null && !c.state().optimizer().equals(kind)) {
                throw new IllegalArgumentException(path + ": written by a trainer with optimizer " + c.state().optimizer()
                        + "; this trainer's is " + kind + " (its state would be read as the other's)");
            }
            state.copyFrom(c.stateBytes());
            try {
                loadState(state);
            } catch (KilnException e) {
                throw new IllegalArgumentException(path + ": " + e.getMessage(), e);
            }
        }
        Checkpoint.State s = c.state();
        epoch = s.epoch();
        batchInEpoch = s.batch();
        epochLossSum = s.lossSum();
        epochCorrect = s.correct();
        epochSeen = s.seen();
        bestMonitored = s.best();
        badEpochs = s.bad();
        bestEpoch = s.bestEpoch();
        schedule.restore(s.schedule());
        copyToModel();
    }

    @Override
    /**
     * Frees the native trainer. Called while another thread is inside {@link #fit} (or any other
     * call), it does not wait: that call stops at its next step with an
     * {@link IllegalStateException}, and the memory is freed when it returns. Idempotent.
     */
    public void close() {
        synchronized (guard) {
            if (closed) {
                return;
            }
            closed = true;
            if (depth == 0) {
                free();
            }
        }
    }

    private void free() {
        if (!freed) {
            freed = true;
            KilnNative.trainerDestroy(handle);
            scratch.close();
        }
    }

    /** Settings of a {@link Trainer}. */
    public static final class Builder {
        private final Sequential model;
        private Loss loss = Loss.softmaxCrossEntropy();
        private Optimizer optimizer = Optimizer.adam(1e-3);
        private Schedule schedule = Schedule.constant();
        private int batchSize = 32;
        private long seed = 0;
        private final List<TrainingListener> listeners = new ArrayList<>();
        private ProgressListener progress;
        private int patience;
        private boolean restoreBest;
        private long checkpointEvery;
        private Path checkpointPath;
        private final java.util.Set<Integer> frozen = new java.util.TreeSet<>();

        private Builder(Sequential model) {
            this.model = Objects.requireNonNull(model, "model");
        }

        public Builder loss(Loss loss) {
            this.loss = Objects.requireNonNull(loss, "loss");
            return this;
        }

        public Builder optimizer(Optimizer optimizer) {
            this.optimizer = Objects.requireNonNull(optimizer, "optimizer");
            return this;
        }

        public Builder schedule(Schedule schedule) {
            this.schedule = Objects.requireNonNull(schedule, "schedule");
            return this;
        }

        public Builder batchSize(int batchSize) {
            if (batchSize < 1) {
                throw new IllegalArgumentException("batch size is " + batchSize + ": must be >= 1");
            }
            this.batchSize = batchSize;
            return this;
        }

        /**
         * Freezes the parameters of these layers (indices into {@link Sequential#layers()}): they are
         * not updated and keep their values bit for bit (optimizer moments and weight decay alike),
         * their gradients are not computed (a frozen dense layer skips its weight-gradient product),
         * and the gradient still flows through them to the layers before. For fine-tuning: train a
         * new head on an imported model, or everything but its embedding. A layer without parameters
         * (an activation, a residual) is refused by name.
         */
        public Builder freeze(int... layers) {
            Objects.requireNonNull(layers, "layers");
            List<Sequential.Layer> all = model.layers();
            for (int i : layers) {
                if (i < 0 || i >= all.size()) {
                    throw new IllegalArgumentException("freeze: layer " + i + ": the model has layers 0.." + (all.size() - 1));
                }
                Sequential.Layer l = all.get(i);
                if (l.weight() == null && l.gamma() == null) {
                    throw new IllegalArgumentException("freeze: layer " + i + " (" + l.kind().name().toLowerCase(java.util.Locale.ROOT)
                            + ") has no parameters");
                }
                frozen.add(i);
            }
            return this;
        }

        /** Seed of the shuffling and the dropout masks. */
        public Builder seed(long seed) {
            this.seed = seed;
            return this;
        }

        public Builder listener(TrainingListener listener) {
            listeners.add(Objects.requireNonNull(listener, "listener"));
            return this;
        }

        public Builder progress(ProgressListener progress) {
            this.progress = progress;
            return this;
        }

        /**
         * Stops when the validation loss (training loss without validation data) has not improved
         * for {@code patience} epochs; with {@code restoreBest} the model gets the best epoch's
         * weights back.
         */
        public Builder earlyStopping(int patience, boolean restoreBest) {
            if (patience < 1) {
                throw new IllegalArgumentException("patience is " + patience + ": must be >= 1");
            }
            this.patience = patience;
            this.restoreBest = restoreBest;
            return this;
        }

        /** Writes a checkpoint to {@code path} every {@code steps} steps (replacing the last one). */
        public Builder checkpointEvery(long steps, Path path) {
            if (steps < 1) {
                throw new IllegalArgumentException("checkpoint interval is " + steps + ": must be >= 1");
            }
            this.checkpointEvery = steps;
            this.checkpointPath = Objects.requireNonNull(path, "path");
            return this;
        }

        public Trainer build() {
            return new Trainer(this);
        }
    }
}
