package dev.kiln.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.data.Dataset;
import dev.kiln.infer.InferenceSession;
import dev.kiln.io.ModelFile;
import dev.kiln.io.OnnxModels;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import dev.kiln.train.Loss;
import dev.kiln.train.Optimizer;
import dev.kiln.train.Trainer;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** L2 normalization of rows (torch's F.normalize): served, saved, exported and trained through. */
class L2NormalizeTest {
    @Test
    void servesUnitRowsAndSurvivesFilesAndOnnx() {
        try (Sequential m = Sequential.builder(3).dense(4, Init.XAVIER, 1).l2Normalize().build();
             Tensor x = Tensor.zeros(DType.F32, 5, 3).fillNormal(0, 2, 4); Tensor y = Tensor.zeros(DType.F32, 5, 4);
             Tensor y2 = Tensor.zeros(DType.F32, 5, 4)) {
            assertEquals("Sequential[3 -> dense 4 -> l2_normalize]", m.toString());
            assertEquals(1e-12f, m.layers().get(1).eps());
            x.copyFrom(new float[] {0, 0, 0, 1, 2, 3, -1, 0.5f, 2, 4, 4, -4, 1e-3f, 0, 0});
            try (InferenceSession s = m.compile(5)) {
                s.run(x, y);
            }
            float[] xs = x.toFloatArray(), w = m.layers().get(0).weight().toFloatArray(), got = y.toFloatArray();
            for (int r = 0; r < 5; r++) {
                double[] h = new double[4];
                double norm = 0;
                for (int j = 0; j < 4; j++) {
                    for (int k = 0; k < 3; k++) {
                        h[j] += xs[r * 3 + k] * (double) w[k * 4 + j];
                    }
                    norm += h[j] * h[j];
                }
                norm = Math.max(Math.sqrt(norm), 1e-12);
                for (int j = 0; j < 4; j++) {
                    assertEquals(h[j] / norm, got[r * 4 + j], 1e-6, "row " + r + " feature " + j);
                }
            }
            assertArrayEquals(new float[4], java.util.Arrays.copyOf(got, 4)); // the zero row stays zero (not NaN)
            try (Sequential back = ModelFile.fromBytes(ModelFile.toBytes(m, null));
                 Sequential onnx = OnnxModels.fromBytes(OnnxModels.toBytes(m))) {
                for (Sequential other : new Sequential[] {back, onnx}) {
                    assertEquals(m.toString(), other.toString());
                    assertEquals(1e-12f, other.layers().get(1).eps());
                    try (InferenceSession s = other.compile(5)) {
                        s.run(x, y2);
                    }
                    assertArrayEquals(got, y2.toFloatArray());
                }
            }
        }
    }

    @Test
    void trainsThroughTheNormalization() {
        // Targets on the unit circle at the angle of the first two inputs: learnable through the
        // normalization, MSE on its output.
        SplittableRandom r = new SplittableRandom(3);
        int n = 256;
        float[] xs = new float[n * 3], ts = new float[n * 2];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < 3; j++) {
                xs[i * 3 + j] = (float) r.nextGaussian();
            }
            double a = Math.atan2(xs[i * 3 + 1], xs[i * 3]);
            ts[i * 2] = (float) Math.cos(a);
            ts[i * 2 + 1] = (float) Math.sin(a);
        }
        try (Sequential m = Sequential.builder(3).dense(8, Init.HE, 1).tanh().dense(2, Init.XAVIER, 2).l2Normalize().build();
             Dataset d = Dataset.regression(Tensor.of(xs, n, 3), Tensor.of(ts, n, 2));
             Trainer tr = Trainer.builder(m).loss(Loss.mse()).optimizer(Optimizer.adam(2e-2)).batchSize(32).seed(5).build()) {
            double before = tr.evaluate(d).loss();
            tr.fit(d, null, 60);
            double after = tr.evaluate(d).loss();
            assertTrue(after < before * 0.25, before + " -> " + after);
            try (InferenceSession s = m.compile(n); Tensor out = Tensor.zeros(DType.F32, n, 2)) {
                s.run(d.features(), out);
                float[] p = out.toFloatArray();
                double mse = 0;
                for (int i = 0; i < n * 2; i++) {
                    mse += (p[i] - ts[i]) * (double) (p[i] - ts[i]);
                }
                assertEquals(after, mse / (n * 2), 1e-5 * Math.max(1, after));
                for (int i = 0; i < n; i++) {
                    assertEquals(1.0, Math.hypot(p[i * 2], p[i * 2 + 1]), 1e-6);
                }
            }
        }
    }

    @Test
    void badEpsIsRefusedByName() {
        assertEquals("l2Normalize: eps is -1.0: must be finite and >= 0",
                assertThrows(IllegalArgumentException.class, () -> Sequential.builder(3).l2Normalize(-1f)).getMessage());
        assertThrows(IllegalArgumentException.class, () -> Sequential.builder(3).l2Normalize(Float.NaN));
        assertThrows(IllegalArgumentException.class, () -> Sequential.builder(3).l2Normalize(Float.POSITIVE_INFINITY));
    }
}
