package dev.kiln.eval;

import java.util.Arrays;
import java.util.Objects;

/**
 * Score-based metrics: ROC curve and AUC (binary and one-vs-rest), precision-recall curve and
 * average precision, log loss. They follow scikit-learn 1.2's definitions step by step (stable
 * descending sort of the scores, one threshold per distinct score, roc_curve's drop_intermediate,
 * log_loss clipping at the float64 epsilon then renormalising each row), so the values agree to
 * rounding. Binary labels are 0/1 with 1 positive.
 */
public final class Ranking {
    private Ranking() {}

    /** A curve: x, y and the score threshold at each point (scikit-learn's output order). */
    public static final class Curve {
        public final double[] x;
        public final double[] y;
        public final double[] thresholds;

        Curve(double[] x, double[] y, double[] thresholds) {
            this.x = x;
            this.y = y;
            this.thresholds = thresholds;
        }
    }

    /** scikit-learn's _binary_clf_curve: false and true positive counts at each distinct score, descending. */
    private static final class Counts {
        double[] fps;
        double[] tps;
        double[] thresholds;
    }

    private static Counts counts(int[] yTrue, double[] score) {
        int n = yTrue.length;
        int[] order = descendingOrder(score);
        double[] fps = new double[n], tps = new double[n], th = new double[n];
        int m = 0;
        double tp = 0;
        for (int i = 0; i < n; i++) {
            int s = order[i];
            if (yTrue[s] == 1) {
                tp += 1;
            }
            boolean last = i == n - 1 || score[order[i + 1]] != score[s];
            if (last) {
                tps[m] = tp;
                fps[m] = (i + 1) - tp;
                th[m] = score[s];
                m++;
            }
        }
        Counts c = new Counts();
        c.fps = Arrays.copyOf(fps, m);
        c.tps = Arrays.copyOf(tps, m);
        c.thresholds = Arrays.copyOf(th, m);
        return c;
    }

    /**
     * Sample indices by descending score; among equal scores the later sample first (numpy's stable
     * ascending argsort, reversed). A bottom-up merge sort on primitive ints: O(n log n), no boxing,
     * so millions of rows sort in well under a second.
     */
    static int[] descendingOrder(double[] score) {
        int n = score.length;
        int[] a = new int[n], b = new int[n];
        for (int i = 0; i < n; i++) {
            a[i] = i;
        }
        for (int width = 1; width < n; width *= 2) {
            for (int lo = 0; lo < n; lo += 2 * width) {
                int mid = Math.min(lo + width, n), hi = Math.min(lo + 2 * width, n);
                int i = lo, j = mid, k = lo;
                while (i < mid && j < hi) {
                    // ascending by score, stable: left wins ties
                    b[k++] = score[a[j]] < score[a[i]] ? a[j++] : a[i++];
                }
                while (i < mid) {
                    b[k++] = a[i++];
                }
                while (j < hi) {
                    b[k++] = a[j++];
                }
            }
            int[] t = a;
            a = b;
            b = t;
        }
        // reverse the stable ascending order
        for (int i = 0, j = n - 1; i < j; i++, j--) {
            int t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
        return a;
    }

    /** ROC curve (x = false positive rate, y = true positive rate), with scikit-learn's drop_intermediate. */
    public static Curve rocCurve(int[] yTrue, double[] score) {
        checkBinary("roc_curve", yTrue, score, false);
        Counts c = counts(yTrue, score);
        double[] fps = c.fps, tps = c.tps, th = c.thresholds;
        if (fps.length > 2) {
            // keep the first, the last, and every point where the curve changes direction
            int[] keep = new int[fps.length];
            int k = 0;
            keep[k++] = 0;
            for (int i = 1; i < fps.length - 1; i++) {
                double d2f = fps[i + 1] - 2 * fps[i] + fps[i - 1];
                double d2t = tps[i + 1] - 2 * tps[i] + tps[i - 1];
                if (d2f != 0 || d2t != 0) {
                    keep[k++] = i;
                }
            }
            keep[k++] = fps.length - 1;
            double[] f2 = new double[k], t2 = new double[k], h2 = new double[k];
            for (int i = 0; i < k; i++) {
                f2[i] = fps[keep[i]];
                t2[i] = tps[keep[i]];
                h2[i] = th[keep[i]];
            }
            fps = f2;
            tps = t2;
            th = h2;
        }
        int n = fps.length + 1;
        double[] fpr = new double[n], tpr = new double[n], thr = new double[n];
        double fLast = fps[fps.length - 1], tLast = tps[tps.length - 1];
        thr[0] = th[0] + 1;
        for (int i = 1; i < n; i++) {
            fpr[i] = fLast <= 0 ? Double.NaN : fps[i - 1] / fLast;
            tpr[i] = tLast <= 0 ? Double.NaN : tps[i - 1] / tLast;
            thr[i] = th[i - 1];
        }
        fpr[0] = fLast <= 0 ? Double.NaN : 0;
        tpr[0] = tLast <= 0 ? Double.NaN : 0;
        return new Curve(fpr, tpr, thr);
    }

    /** Area under the ROC curve; both classes must be present (else IllegalArgumentException, as scikit-learn's ValueError). */
    public static double rocAuc(int[] yTrue, double[] score) {
        checkBinary("roc_auc", yTrue, score, true);
        Curve c = rocCurve(yTrue, score);
        return trapezoid(c.x, c.y);
    }

    /**
     * One-vs-rest ROC AUC, macro average (scikit-learn's roc_auc_ovr). proba is n x C row-major, rows
     * summing to 1; classes are 0..C-1 and every class must occur in y_true.
     */
    public static double rocAucOvr(int[] yTrue, double[] proba, int classes) {
        checkProba("roc_auc_ovr", yTrue, proba, classes);
        for (int i = 0; i < yTrue.length; i++) {
            double s = 0;
            for (int c = 0; c < classes; c++) {
                s += proba[i * classes + c];
            }
            if (Math.abs(s - 1) > 1e-8 + 1e-5) { // numpy.allclose(1, sum): atol 1e-8, rtol 1e-5
                throw new IllegalArgumentException("roc_auc_ovr: the scores of sample " + i + " sum to " + s
                        + ": they must be probabilities summing to 1 over classes");
            }
        }
        boolean[] present = new boolean[classes];
        for (int t : yTrue) {
            present[t] = true;
        }
        for (int c = 0; c < classes; c++) {
            if (!present[c]) {
                throw new IllegalArgumentException("roc_auc_ovr: class " + c + " never occurs in y_true; the number of"
                        + " classes in y_true must equal the number of score columns (" + classes + ")");
            }
        }
        double sum = 0;
        int[] bin = new int[yTrue.length];
        double[] col = new double[yTrue.length];
        for (int c = 0; c < classes; c++) {
            for (int i = 0; i < yTrue.length; i++) {
                bin[i] = yTrue[i] == c ? 1 : 0;
                col[i] = proba[i * classes + c];
            }
            sum += rocAuc(bin, col);
        }
        return sum / classes;
    }

    /** Precision-recall curve (x = recall, y = precision), scikit-learn's order: recall decreasing, ending at (0, 1). */
    public static Curve precisionRecallCurve(int[] yTrue, double[] score) {
        checkBinary("precision_recall_curve", yTrue, score, false);
        Counts c = counts(yTrue, score);
        int m = c.tps.length;
        double[] precision = new double[m + 1], recall = new double[m + 1], th = new double[m];
        double tLast = c.tps[m - 1];
        for (int i = 0; i < m; i++) {
            int j = m - 1 - i; // reversed
            double ps = c.tps[j] + c.fps[j];
            precision[i] = ps != 0 ? c.tps[j] / ps : 0;
            recall[i] = tLast == 0 ? 1 : c.tps[j] / tLast;
            th[i] = c.thresholds[j];
        }
        precision[m] = 1;
        recall[m] = 0;
        return new Curve(recall, precision, th);
    }

    /** Average precision: sum over thresholds of (R_n - R_{n-1}) P_n (no interpolation), as scikit-learn. */
    public static double averagePrecision(int[] yTrue, double[] score) {
        Curve c = precisionRecallCurve(yTrue, score);
        double s = 0;
        for (int i = 0; i + 1 < c.x.length; i++) {
            s += (c.x[i + 1] - c.x[i]) * c.y[i];
        }
        return -s;
    }

    /** Binary log loss from the probability of class 1; both classes must occur in y_true. */
    public static double logLossBinary(int[] yTrue, double[] p1) {
        checkBinary("log_loss", yTrue, p1, true);
        double eps = Math.ulp(1.0); // numpy.finfo(float64).eps
        double sum = 0;
        for (int i = 0; i < yTrue.length; i++) {
            double p = Math.min(Math.max(p1[i], eps), 1 - eps);
            double q = 1 - p;
            double s = q + p;
            double v = yTrue[i] == 1 ? p / s : q / s;
            sum += -Math.log(v);
        }
        return sum / yTrue.length;
    }

    /** Multiclass log loss from n x C probabilities (clipped, then each row renormalised, as scikit-learn). */
    public static double logLoss(int[] yTrue, double[] proba, int classes) {
        checkProba("log_loss", yTrue, proba, classes);
        double eps = Math.ulp(1.0);
        double sum = 0;
        for (int i = 0; i < yTrue.length; i++) {
            double rowSum = 0;
            for (int c = 0; c < classes; c++) {
                rowSum += Math.min(Math.max(proba[i * classes + c], eps), 1 - eps);
            }
            double p = Math.min(Math.max(proba[i * classes + yTrue[i]], eps), 1 - eps) / rowSum;
            sum += -Math.log(p);
        }
        return sum / yTrue.length;
    }

    /** numpy.trapz(y, x) = sum of (x[i+1] - x[i]) * (y[i+1] + y[i]) / 2. */
    static double trapezoid(double[] x, double[] y) {
        double s = 0;
        for (int i = 0; i + 1 < x.length; i++) {
            s += (x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2.0;
        }
        return s;
    }

    private static void checkBinary(String what, int[] yTrue, double[] score, boolean bothClasses) {
        Objects.requireNonNull(yTrue, "yTrue");
        Objects.requireNonNull(score, "score");
        Labels.checkSameLength(what, yTrue.length, score.length);
        Labels.checkNotEmpty(what, yTrue.length);
        boolean pos = false, neg = false;
        for (int i = 0; i < yTrue.length; i++) {
            if (yTrue[i] == 1) {
                pos = true;
            } else if (yTrue[i] == 0) {
                neg = true;
            } else {
                throw new IllegalArgumentException(what + ": label " + yTrue[i] + " at sample " + i
                        + ": binary labels are 0 and 1");
            }
            if (!Double.isFinite(score[i])) {
                throw new IllegalArgumentException(what + ": score " + score[i] + " at sample " + i + " is not finite");
            }
        }
        if (bothClasses && !(pos && neg)) {
            throw new IllegalArgumentException(what + ": only one class present in y_true; " + what
                    + " is not defined in that case");
        }
    }

    private static void checkProba(String what, int[] yTrue, double[] proba, int classes) {
        Objects.requireNonNull(yTrue, "yTrue");
        Objects.requireNonNull(proba, "proba");
        Labels.checkNotEmpty(what, yTrue.length);
        if (classes < 2 || (long) yTrue.length * classes != proba.length) {
            throw new IllegalArgumentException(what + ": " + proba.length + " scores for " + yTrue.length
                    + " samples x " + classes + " classes");
        }
        for (int i = 0; i < yTrue.length; i++) {
            if (yTrue[i] < 0 || yTrue[i] >= classes) {
                throw new IllegalArgumentException(what + ": label " + yTrue[i] + " at sample " + i + " is outside 0.."
                        + (classes - 1));
            }
        }
        for (int i = 0; i < proba.length; i++) {
            if (!Double.isFinite(proba[i])) {
                throw new IllegalArgumentException(what + ": score " + proba[i] + " at index " + i + " is not finite");
            }
        }
    }
}
