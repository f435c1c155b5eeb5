package dev.kiln.eval;

/**
 * Classification metrics, computed in double precision to give scikit-learn's values (its tests
 * are reproduced in {@code tests/eval}). Labels are any ints; the label set is the sorted union of
 * y_true and y_pred, as scikit-learn's {@code unique_labels}. Empty input is refused with
 * IllegalArgumentException, as scikit-learn refuses it.
 */
public final class Classification {
    private Classification() {}

    /** How per-class precision, recall and F1 are combined. */
    public enum Average {
        /** Unweighted mean over labels. */
        MACRO,
        /** From the global counts of true positives, false negatives and false positives. */
        MICRO,
        /** Mean over labels weighted by support (the number of true samples of each). */
        WEIGHTED,
        /** The positive class (label 1) of a binary problem only. */
        BINARY
    }

    /** Confusion matrix: rows are true labels, columns predicted labels, both in {@link #labels} order. */
    public static long[][] confusionMatrix(int[] yTrue, int[] yPred) {
        check("confusion_matrix", yTrue, yPred);
        Labels l = Labels.of(yTrue, yPred);
        long[][] m = new long[l.size()][l.size()];
        for (int i = 0; i < yTrue.length; i++) {
            m[l.index(yTrue[i])][l.index(yPred[i])]++;
        }
        return m;
    }

    /** The sorted union of the labels in y_true and y_pred (the order of confusion-matrix rows). */
    public static int[] labels(int[] yTrue, int[] yPred) {
        return Labels.of(yTrue, yPred).values.clone();
    }

    public static double accuracy(int[] yTrue, int[] yPred) {
        check("accuracy", yTrue, yPred);
        long ok = 0;
        for (int i = 0; i < yTrue.length; i++) {
            if (yTrue[i] == yPred[i]) {
                ok++;
            }
        }
        return (double) ok / yTrue.length;
    }

    /** Mean recall over the classes present in y_true (classes only predicted are left out, as scikit-learn does). */
    public static double balancedAccuracy(int[] yTrue, int[] yPred) {
        long[][] c = confusionMatrix(yTrue, yPred);
        double sum = 0;
        int n = 0;
        for (int i = 0; i < c.length; i++) {
            long support = 0;
            for (long v : c[i]) {
                support += v;
            }
            if (support > 0) {
                sum += (double) c[i][i] / support;
                n++;
            }
        }
        return sum / n;
    }

    /** Per-class precision, recall, F1 and support, in {@link #labels} order; 0 where undefined (zero_division). */
    public static final class PerClass {
        public final int[] labels;
        public final double[] precision;
        public final double[] recall;
        public final double[] f1;
        public final long[] support;

        PerClass(int[] labels, double[] precision, double[] recall, double[] f1, long[] support) {
            this.labels = labels;
            this.precision = precision;
            this.recall = recall;
            this.f1 = f1;
            this.support = support;
        }
    }

    public static PerClass perClass(int[] yTrue, int[] yPred) {
        long[][] c = confusionMatrix(yTrue, yPred);
        int k = c.length;
        double[] p = new double[k], r = new double[k], f = new double[k];
        long[] support = new long[k];
        for (int j = 0; j < k; j++) {
            long tp = c[j][j], predicted = 0, actual = 0;
            for (int i = 0; i < k; i++) {
                predicted += c[i][j];
                actual += c[j][i];
            }
            support[j] = actual;
            p[j] = predicted == 0 ? 0 : (double) tp / predicted;
            r[j] = actual == 0 ? 0 : (double) tp / actual;
            f[j] = fbeta(tp, predicted, actual);
        }
        return new PerClass(Labels.of(yTrue, yPred).values.clone(), p, r, f, support);
    }

    public static double precision(int[] yTrue, int[] yPred, Average average) {
        return prf(yTrue, yPred, average, 0);
    }

    public static double recall(int[] yTrue, int[] yPred, Average average) {
        return prf(yTrue, yPred, average, 1);
    }

    public static double f1(int[] yTrue, int[] yPred, Average average) {
        return prf(yTrue, yPred, average, 2);
    }

    // F1 from counts as scikit-learn computes it: 2 tp / (2 tp + fp + fn); 0 when that is 0 / 0.
    private static double fbeta(long tp, long predicted, long actual) {
        long denom = predicted + actual;
        return denom == 0 ? 0 : 2.0 * tp / denom;
    }

    private static double prf(int[] yTrue, int[] yPred, Average average, int which) {
        java.util.Objects.requireNonNull(average, "average");
        long[][] c = confusionMatrix(yTrue, yPred);
        int[] labels = Labels.of(yTrue, yPred).values;
        int k = c.length;
        if (average == Average.BINARY) {
            if (k > 2) {
                throw new IllegalArgumentException("average BINARY needs at most two labels; got " + k
                        + ": choose MACRO, MICRO or WEIGHTED");
            }
            int pos = java.util.Arrays.binarySearch(labels, 1);
            if (pos < 0) {
                if (k == 2) {
                    throw new IllegalArgumentException("average BINARY: pos_label=1 is not a valid label: "
                            + java.util.Arrays.toString(labels));
                }
                return 0; // one label, not 1: no positive samples or predictions (zero_division)
            }
            long tp = c[pos][pos], predicted = 0, actual = 0;
            for (int i = 0; i < k; i++) {
                predicted += c[i][pos];
                actual += c[pos][i];
            }
            return pick(which, tp, predicted, actual);
        }
        if (average == Average.MICRO) {
            long tp = 0, total = 0;
            for (int i = 0; i < k; i++) {
                tp += c[i][i];
                for (int j = 0; j < k; j++) {
                    total += c[i][j];
                }
            }
            return pick(which, tp, total, total);
        }
        double sum = 0, weights = 0;
        for (int j = 0; j < k; j++) {
            long tp = c[j][j], predicted = 0, actual = 0;
            for (int i = 0; i < k; i++) {
                predicted += c[i][j];
                actual += c[j][i];
            }
            double v = pick(which, tp, predicted, actual);
            double w = average == Average.WEIGHTED ? actual : 1;
            sum += v * w;
            weights += w;
        }
        return weights == 0 ? 0 : sum / weights;
    }

    private static double pick(int which, long tp, long predicted, long actual) {
        switch (which) {
            case 0: return predicted == 0 ? 0 : (double) tp / predicted;
            case 1: return actual == 0 ? 0 : (double) tp / actual;
            default: return fbeta(tp, predicted, actual);
        }
    }

    /**
     * Fraction of samples whose true label is among the k highest scores. scores is n x C row-major;
     * class c is label c (labels must be 0..C-1). Ties rank the higher class index first, as
     * scikit-learn's stable argsort reversed does.
     */
    public static double topKAccuracy(int[] yTrue, double[] scores, int classes, int k) {
        java.util.Objects.requireNonNull(yTrue, "yTrue");
        java.util.Objects.requireNonNull(scores, "scores");
        Labels.checkNotEmpty("top_k_accuracy", yTrue.length);
        if (classes < 2 || (long) yTrue.length * classes != scores.length) {
            throw new IllegalArgumentException("top_k_accuracy: scores has " + scores.length + " values for "
                    + yTrue.length + " samples x " + classes + " classes");
        }
        if (k < 1) {
            throw new IllegalArgumentException("top_k_accuracy: k is " + k + ": must be >= 1");
        }
        for (int i = 0; i < scores.length; i++) {  // NaN compares false both ways: it would rank anywhere
            if (!Double.isFinite(scores[i])) {
                throw new IllegalArgumentException("top_k_accuracy: score " + scores[i] + " of sample " + i / classes
                        + ", class " + i % classes + " is not finite");
            }
        }
        long hits = 0;
        for (int i = 0; i < yTrue.length; i++) {
            int t = yTrue[i];
            if (t < 0 || t >= classes) {
                throw new IllegalArgumentException("top_k_accuracy: label " + t + " at sample " + i + " is outside 0.."
                        + (classes - 1));
            }
            double st = scores[i * classes + t];
            // rank of t = classes strictly above it, plus ties with a higher index (they come first)
            int above = 0;
            for (int c = 0; c < classes; c++) {
                double s = scores[i * classes + c];
                if (s > st || (s == st && c > t)) {
                    above++;
                }
            }
            if (above < k) {
                hits++;
            }
        }
        return (double) hits / yTrue.length;
    }

    static void check(String what, int[] yTrue, int[] yPred) {
        java.util.Objects.requireNonNull(yTrue, "yTrue");
        java.util.Objects.requireNonNull(yPred, "yPred");
        Labels.checkSameLength(what, yTrue.length, yPred.length);
        Labels.checkNotEmpty(what, yTrue.length);
    }
}
