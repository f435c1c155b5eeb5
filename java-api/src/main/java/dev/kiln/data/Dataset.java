package dev.kiln.data;

import dev.kiln.internal.Native;
import dev.kiln.internal.bindings.KilnNative;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.NativeAccess;
import dev.kiln.tensor.Tensor;
import java.nio.FloatBuffer;
import java.nio.IntBuffer;
import java.util.Arrays;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * Rows of features ({@code [n, features]} F32, or I32 token ids for a model that starts with an
 * embedding) with their targets: class ids ({@code [n]} I32, for
 * classification) or values ({@code [n, outputs]} F32, for regression and binary cross-entropy).
 * A dataset owns its tensors (close it to free them) and is checked once when made: no NaN or
 * infinite feature, no negative class id, at least one row.
 */
public final class Dataset implements AutoCloseable {
    private final Tensor features;
    private final Tensor targets;
    private Tensor sampleWeights;
    private final int numClasses;

    private Dataset(Tensor features, Tensor targets, Tensor sampleWeights, int numClasses) {
        this.features = features;
        this.targets = targets;
        this.sampleWeights = sampleWeights;
        this.numClasses = numClasses;
    }

    /**
     * A classification dataset; takes ownership of both tensors. {@code labels} holds ids in
     * {@code 0..max}; the class count is {@code max + 1} (or more: pass it with
     * {@link #classification(Tensor, Tensor, int)}).
     */
    public static Dataset classification(Tensor features, Tensor labels) {
        return classification(features, labels, -1);
    }

    public static Dataset classification(Tensor features, Tensor labels, int numClasses) {
        long n = checkFeatures(features);
        Objects.requireNonNull(labels, "labels");
        if (labels.dtype() != DType.I32 || labels.rank() != 1 || labels.size(0) != n || !labels.isContiguous()) {
            throw new IllegalArgumentException("labels must be a contiguous I32 tensor of shape [" + n + "], not "
                    + labels);
        }
        IntBuffer ids = labels.byteView().asIntBuffer();
        int max = -1;
        for (int i = 0; i < n; i++) {
            int y = ids.get(i);
            if (y < 0) {
                throw new IllegalArgumentException("label of row " + i + " is " + y + ": class ids must be >= 0");
            }
            if (numClasses > 0 && y >= numClasses) {
                throw new IllegalArgumentException("label of row " + i + " is " + y + ": must be below the "
                        + numClasses + " classes");
            }
            max = Math.max(max, y);
        }
        return new Dataset(features, labels, null, numClasses > 0 ? numClasses : max + 1);
    }

    /** A dataset of real-valued targets {@code [n, outputs]}; takes ownership of both tensors. */
    public static Dataset regression(Tensor features, Tensor targets) {
        long n = checkFeatures(features);
        Objects.requireNonNull(targets, "targets");
        if (targets.dtype() != DType.F32 || targets.rank() != 2 || targets.size(0) != n || !targets.isContiguous()) {
            throw new IllegalArgumentException("targets must be a contiguous F32 tensor of shape [" + n
                    + ", outputs], not " + targets);
        }
        checkFinite("target", targets);
        return new Dataset(features, targets, null, 0);
    }

    /** Sets per-row weights ({@code [n]} F32, finite, >= 0; ownership taken) and returns this dataset. */
    public Dataset withSampleWeights(Tensor weights) {
        Objects.requireNonNull(weights, "weights");
        if (weights.dtype() != DType.F32 || weights.rank() != 1 || weights.size(0) != size() || !weights.isContiguous()) {
            throw new IllegalArgumentException("sample weights must be a contiguous F32 tensor of shape [" + size()
                    + "], not " + weights);
        }
        FloatBuffer w = weights.floatView();
        for (int i = 0; i < w.limit(); i++) {
            if (!(w.get(i) >= 0) || Float.isInfinite(w.get(i))) {
                throw new IllegalArgumentException("sample weight of row " + i + " is " + w.get(i)
                        + ": must be finite and >= 0");
            }
        }
        if (sampleWeights != null) {
            sampleWeights.close();
        }
        sampleWeights = weights;
        return this;
    }

    private static long checkFeatures(Tensor features) {
        Objects.requireNonNull(features, "features");
        if ((features.dtype() != DType.F32 && features.dtype() != DType.I32) || features.rank() != 2
                || !features.isContiguous()) {
            throw new IllegalArgumentException("features must be a contiguous F32 tensor [rows, features] (or I32 token"
                    + " ids [rows, positions] for a model starting with an embedding), not " + features);
        }
        if (features.size(0) < 1 || features.size(1) < 1) {
            throw new IllegalArgumentException("the dataset is empty: features are " + Arrays.toString(features.shape()));
        }
        if (features.size(0) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("a dataset holds at most 2^31 - 1 rows");
        }
        if (features.dtype() == DType.F32) {
            checkFinite("feature", features);
        }
        return features.size(0);
    }

    private static void checkFinite(String what, Tensor t) {
        FloatBuffer f = t.floatView();
        long cols = t.size(1);
        for (int i = 0, n = f.limit(); i < n; i++) {
            float v = f.get(i);
            if (Float.isNaN(v) || Float.isInfinite(v)) {
                throw new IllegalArgumentException(what + " " + (i % cols) + " of row " + (i / cols) + " is " + v
                        + ": the data must be finite (impute or drop that row)");
            }
        }
    }

    public int size() {
        return (int) features.size(0);
    }

    public long featureCount() {
        return features.size(1);
    }

    /** Number of classes (classification), 0 for real-valued targets. */
    public int numClasses() {
        return numClasses;
    }

    public boolean isClassification() {
        return targets.dtype() == DType.I32;
    }

    /** Outputs per row of the targets: 1 for class ids. */
    public long targetWidth() {
        return isClassification() ? 1 : targets.size(1);
    }

    public Tensor features() {
        return features;
    }

    public Tensor targets() {
        return targets;
    }

    /** Per-row weights, or null. */
    public Tensor sampleWeights() {
        return sampleWeights;
    }

    /** The rows at {@code index} (copied, in that order) as a new dataset. */
    public Dataset rows(int[] index) {
        Objects.requireNonNull(index, "index");
        if (index.length == 0) {
            throw new IllegalArgumentException("rows: no index: a dataset has at least one row");
        }
        try (Tensor idx = Tensor.of(index, index.length)) {
            Tensor f = gather(features, idx, index.length);
            Tensor t = gather(targets, idx, index.length);
            Tensor w = sampleWeights == null ? null : gather(sampleWeights, idx, index.length);
            return new Dataset(f, t, w, numClasses);
        }
    }

    /**
     * Splits the rows at random (seeded) into two datasets: the first gets {@code fraction} of the
     * rows, rounded down (at least one row each).
     */
    public Dataset[] split(double fraction, long seed) {
        if (!(fraction > 0 && fraction < 1)) {
            throw new IllegalArgumentException("split: fraction is " + fraction + ": must be in (0, 1)");
        }
        int n = size();
        int first = (int) Math.floor(n * fraction);
        if (first < 1 || first >= n) {
            throw new IllegalArgumentException("split: " + n + " rows cannot be split at " + fraction
                    + " with a row on each side");
        }
        int[] perm = permutation(n, new SplittableRandom(seed));
        return new Dataset[] {rows(Arrays.copyOfRange(perm, 0, first)), rows(Arrays.copyOfRange(perm, first, n))};
    }

    /** A seeded Fisher-Yates permutation of 0..n-1. */
    public static int[] permutation(int n, SplittableRandom rng) {
        int[] p = new int[n];
        for (int i = 0; i < n; i++) {
            p[i] = i;
        }
        shuffle(p, rng);
        return p;
    }

    static void shuffle(int[] p, SplittableRandom rng) {
        for (int i = p.length - 1; i > 0; i--) {
            int j = rng.nextInt(i + 1);
            int t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
    }

    static Tensor gather(Tensor src, Tensor index, int n) {
        long[] shape = src.shape().clone();
        shape[0] = n;
        Tensor dst = Tensor.zeros(src.dtype(), shape);
        gatherInto(src, index, 0, n, dst);
        return dst;
    }

    /** dst rows 0..n-1 = src rows index[from .. from + n). No allocation. */
    public static void gatherInto(Tensor src, Tensor index, long from, long n, Tensor dst) {
        long rowBytes = src.byteSize() / src.size(0);
        NativeAccess.acquireAll(src, index, dst);
        try {
            Native.check(KilnNative.gatherRows(n, NativeAccess.address(index) + 4 * from, src.size(0), rowBytes,
                    NativeAccess.address(src), NativeAccess.address(dst)));
        } finally {
            NativeAccess.releaseAll(src, index, dst);
        }
    }

    @Override
    public void close() {
        features.close();
        targets.close();
        if (sampleWeights != null) {
            sampleWeights.close();
        }
    }

    @Override
    public String toString() {
        return "Dataset[" + size() + " rows x " + featureCount() + " features, "
                + (isClassification() ? numClasses + " classes" : targetWidth() + " targets") + "]";
    }
}
