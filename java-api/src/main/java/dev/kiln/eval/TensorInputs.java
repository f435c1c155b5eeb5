package dev.kiln.eval;

import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.util.Objects;

/**
 * Bridges off-heap tensors to the metric functions: labels from an I32 tensor, scores or values
 * from an F32 tensor (one bulk copy each, row-major; a 2-D [n, C] tensor gives the flat n x C
 * layout that {@link Ranking#rocAucOvr} and {@link Classification#topKAccuracy} take).
 */
public final class TensorInputs {
    private TensorInputs() {}

    public static int[] labels(Tensor t) {
        Objects.requireNonNull(t, "labels");
        if (t.dtype() != DType.I32) {
            throw new IllegalArgumentException("labels: tensor has dtype " + t.dtype() + "; labels are I32");
        }
        return t.toIntArray();
    }

    public static double[] values(Tensor t) {
        Objects.requireNonNull(t, "values");
        if (t.dtype() != DType.F32) {
            throw new IllegalArgumentException("values: tensor has dtype " + t.dtype() + "; scores are F32");
        }
        float[] f = t.toFloatArray();
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }
}
