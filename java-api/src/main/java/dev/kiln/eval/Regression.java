package dev.kiln.eval;

import java.util.Objects;

/** Regression metrics as scikit-learn 1.2 defines them (R² with force_finite: 1 or 0 when y_true is constant). */
public final class Regression {
    private Regression() {}

    public static double meanSquaredError(double[] yTrue, double[] yPred) {
        check("mean_squared_error", yTrue, yPred);
        double s = 0;
        for (int i = 0; i < yTrue.length; i++) {
            double d = yTrue[i] - yPred[i];
            s += d * d;
        }
        return s / yTrue.length;
    }

    public static double rootMeanSquaredError(double[] yTrue, double[] yPred) {
        return Math.sqrt(meanSquaredError(yTrue, yPred));
    }

    public static double meanAbsoluteError(double[] yTrue, double[] yPred) {
        check("mean_absolute_error", yTrue, yPred);
        double s = 0;
        for (int i = 0; i < yTrue.length; i++) {
            s += Math.abs(yTrue[i] - yPred[i]);
        }
        return s / yTrue.length;
    }

    /**
     * Coefficient of determination, as scikit-learn's {@code r2_score}: 1 for a perfect fit of a
     * constant target, 0 for an imperfect one, and NaN for a single sample (not defined there).
     */
    public static double r2(double[] yTrue, double[] yPred) {
        check("r2", yTrue, yPred);
        if (yTrue.length < 2) {
            return Double.NaN;
        }
        double mean = 0;
        for (double v : yTrue) {
            mean += v;
        }
        mean /= yTrue.length;
        double num = 0, den = 0;
        for (int i = 0; i < yTrue.length; i++) {
            num += (yTrue[i] - yPred[i]) * (yTrue[i] - yPred[i]);
            den += (yTrue[i] - mean) * (yTrue[i] - mean);
        }
        if (den == 0) {
            return num == 0 ? 1.0 : 0.0;
        }
        return 1 - num / den;
    }

    private static void check(String what, double[] yTrue, double[] yPred) {
        Objects.requireNonNull(yTrue, "yTrue");
        Objects.requireNonNull(yPred, "yPred");
        Labels.checkSameLength(what, yTrue.length, yPred.length);
        Labels.checkNotEmpty(what, yTrue.length);
        for (int i = 0; i < yTrue.length; i++) {
            if (!Double.isFinite(yTrue[i]) || !Double.isFinite(yPred[i])) {
                throw new IllegalArgumentException(what + ": a value at sample " + i + " is not finite");
            }
        }
    }
}
