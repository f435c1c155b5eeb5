package dev.kiln.data;

import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.nio.FloatBuffer;
import java.util.Objects;

/**
 * Per-feature standardization, {@code (x - mean) / std}, fitted on training features (means and
 * standard deviations accumulated in double) and applied in place to any features of the same
 * width. A constant feature (std 0) is only centred.
 */
public final class Standardizer {
    private final double[] mean;
    private final double[] std;

    private Standardizer(double[] mean, double[] std) {
        this.mean = mean;
        this.std = std;
    }

    /** Fits on {@code features} ({@code [n, f]} contiguous F32, n >= 1, every value finite). */
    public static Standardizer fit(Tensor features) {
        check(features, -1);
        int n = (int) features.size(0), f = (int) features.size(1);
        FloatBuffer x = features.floatView();
        double[] mean = new double[f], m2 = new double[f];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < f; j++) {
                double v = x.get(i * f + j);
                if (!Double.isFinite(v)) {
                    throw new IllegalArgumentException("fit: feature " + j + " of row " + i + " is " + (float) v
                            + ": the data must be finite (impute or drop that row)");
                }
                double d = v - mean[j];
                mean[j] += d / (i + 1);
                m2[j] += d * (v - mean[j]);
            }
        }
        double[] std = new double[f];
        for (int j = 0; j < f; j++) {
            std[j] = Math.sqrt(m2[j] / n);
        }
        return new Standardizer(mean, std);
    }

    /** Standardizes {@code features} in place; returns it. */
    public Tensor apply(Tensor features) {
        check(features, mean.length);
        int n = (int) features.size(0), f = mean.length;
        FloatBuffer x = features.floatView();
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < f; j++) {
                double s = std[j] > 0 ? std[j] : 1;
                x.put(i * f + j, (float) ((x.get(i * f + j) - mean[j]) / s));
            }
        }
        return features;
    }

    public double[] means() {
        return mean.clone();
    }

    public double[] stds() {
        return std.clone();
    }

    private static void check(Tensor t, int width) {
        Objects.requireNonNull(t, "features");
        if (t.dtype() != DType.F32 || t.rank() != 2 || !t.isContiguous() || t.size(0) < 1
                || (width >= 0 && t.size(1) != width)) {
            throw new IllegalArgumentException("features must be a contiguous F32 [n >= 1, "
                    + (width >= 0 ? String.valueOf(width) : "f") + "], not " + t);
        }
    }
}
