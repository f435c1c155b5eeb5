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
import dev.kiln.train.Optimizer;
import dev.kiln.train.Trainer;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** PReLU with a slope per feature: served, saved, exported, trained, loaded from a PyTorch state dict. */
class PReluTest {
    private static final float[] SLOPES = {0.25f, -1f, 2f, 0f};

    /** x [n, 3] -> dense 4 -> prelu -> dense 2 -> softmax, computed in double. */
    private static double[] reference(Sequential m, float[] x, int n, float[] slopes) {
        float[] w1 = m.layers().get(0).weight().toFloatArray(), b1 = m.layers().get(0).bias().toFloatArray();
        float[] w2 = m.layers().get(2).weight().toFloatArray(), b2 = m.layers().get(2).bias().toFloatArray();
        double[] out = new double[n * 2];
        for (int r = 0; r < n; r++) {
            double[] h = new double[4];
            for (int j = 0; j < 4; j++) {
                double v = b1[j];
                for (int k = 0; k < 3; k++) {
                    v += x[r * 3 + k] * (double) w1[k * 4 + j];
                }
                h[j] = v > 0 ? v : v * slopes[j];
            }
            double[] z = new double[2];
            double max = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < 2; j++) {
                z[j] = b2[j];
                for (int k = 0; k < 4; k++) {
                    z[j] += h[k] * w2[k * 2 + j];
                }
                max = Math.max(max, z[j]);
            }
            double sum = Math.exp(z[0] - max) + Math.exp(z[1] - max);
            for (int j = 0; j < 2; j++) {
                out[r * 2 + j] = Math.exp(z[j] - max) / sum;
            }
        }
        return out;
    }

    @Test
    void servesAsTheFormulaAndSurvivesFilesAndOnnx() {
        try (Sequential m = Sequential.builder(3).dense(4, Init.XAVIER, 1).prelu().dense(2, Init.XAVIER, 2).softmax().build();
             Tensor x = Tensor.zeros(DType.F32, 6, 3).fillNormal(0, 2, 4); Tensor y = Tensor.zeros(DType.F32, 6, 2);
             Tensor y2 = Tensor.zeros(DType.F32, 6, 2)) {
            assertEquals("Sequential[3 -> dense 4 -> prelu -> dense 2 -> softmax]", m.toString());
            Sequential.Layer p = m.layers().get(1);
            assertEquals(Sequential.Layer.Kind.PRELU, p.kind());
            assertArrayEquals(new float[] {0.25f, 0.25f, 0.25f, 0.25f}, p.weight().toFloatArray()); // PyTorch's start
            assertEquals(Map.of("0.weight", 0, "0.bias", 0, "1.weight", 0, "2.weight", 0, "2.bias", 0).keySet(),
                    m.parameters().keySet());
            p.weight().copyFrom(SLOPES);
            try (InferenceSession s = m.compile(6)) {
                s.run(x, y);
            }
            double[] want = reference(m, x.toFloatArray(), 6, SLOPES);
            float[] got = y.toFloatArray();
            for (int i = 0; i < got.length; i++) {
                assertEquals(want[i], got[i], 1e-6, "output " + i);
            }
            try (Sequential back = ModelFile.fromBytes(ModelFile.toBytes(m, null));
                 Sequential onnx = OnnxModels.fromBytes(OnnxModels.toBytes(m))) {
                for (Sequential other : new Sequential[] {back, onnx}) {
                    assertEquals(m.toString(), other.toString());
                    assertArrayEquals(SLOPES, other.layers().get(1).weight().toFloatArray());
                    try (InferenceSession s = other.compile(6)) {
                        s.run(x, y2);
                    }
                    assertArrayEquals(got, y2.toFloatArray());
                }
            }
        }
    }

    @Test
    void slopesAreTrainedAndTheTrainerServesWhatItTrained() {
        // Classes by |x0| > 1: a PReLU whose slopes start at 0.25 must learn to use the negative side.
        SplittableRandom r = new SplittableRandom(9);
        int n = 256;
        float[] xs = new float[n * 3];
        int[] ys = new int[n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < 3; j++) {
                xs[i * 3 + j] = (float) (r.nextGaussian() * 1.5);
            }
            ys[i] = Math.abs(xs[i * 3]) > 1 ? 1 : 0;
        }
        try (Sequential m = Sequential.builder(3).dense(4, Init.XAVIER, 1).prelu().dense(2, Init.XAVIER, 2).softmax().build();
             Dataset d = Dataset.classification(Tensor.of(xs, n, 3), Tensor.of(ys, n));
             Trainer tr = Trainer.builder(m).optimizer(Optimizer.adam(3e-2)).batchSize(32).seed(2).build()) {
            double before = tr.evaluate(d).loss();
            tr.fit(d, null, 40);
            var ev = tr.evaluate(d);
            assertTrue(ev.loss() < before * 0.6, before + " -> " + ev.loss());
            assertTrue(ev.accuracy() > 0.85, "accuracy " + ev.accuracy());
            float[] slopes = m.layers().get(1).weight().toFloatArray();
            assertTrue(!java.util.Arrays.equals(new float[] {0.25f, 0.25f, 0.25f, 0.25f}, slopes), "the slopes did not move");
            try (InferenceSession s = m.compile(n); Tensor out = Tensor.zeros(DType.F32, n, 2)) {
                s.run(d.features(), out);
                float[] prob = out.toFloatArray();
                double[] want = reference(m, xs, n, slopes);
                double loss = 0;
                for (int i = 0; i < n; i++) {
                    loss -= Math.log(prob[i * 2 + ys[i]]);
                    assertEquals(want[i * 2], prob[i * 2], 1e-5);
                }
                assertEquals(ev.loss(), loss / n, 1e-4 * ev.loss());
            }
        }
    }

    @Test
    void loadsPyTorchSlopesPerFeatureOrShared() {
        try (Sequential m = Sequential.builder(3).dense(4, Init.ZEROS, 0).prelu().build();
             Tensor w = Tensor.zeros(DType.F32, 4, 3); Tensor b = Tensor.zeros(DType.F32, 4);
             Tensor four = Tensor.of(SLOPES, 4); Tensor one = Tensor.of(new float[] {0.5f}, 1);
             Tensor three = Tensor.zeros(DType.F32, 3)) {
            m.loadPyTorchStateDict(Map.of("0.weight", w, "0.bias", b, "1.weight", four));
            assertArrayEquals(SLOPES, m.layers().get(1).weight().toFloatArray());
            m.loadPyTorchStateDict(Map.of("0.weight", w, "0.bias", b, "1.weight", one)); // nn.PReLU(): one slope for all
            assertArrayEquals(new float[] {0.5f, 0.5f, 0.5f, 0.5f}, m.layers().get(1).weight().toFloatArray());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> m.loadPyTorchStateDict(Map.of("0.weight", w, "0.bias", b, "1.weight", three)));
            assertEquals("loadPyTorchStateDict: '1.weight' is [3] but layer 1 is PReLU over 4 features: PyTorch's weight is [4] "
                    + "or [1]", e.getMessage());
            assertArrayEquals(new float[] {0.5f, 0.5f, 0.5f, 0.5f}, m.layers().get(1).weight().toFloatArray()); // unchanged
        }
    }

    @Test
    void nonFiniteSlopesAreRefusedByName() {
        try (Sequential m = Sequential.builder(3).prelu().build()) {
            m.layers().get(0).weight().copyFrom(new float[] {0.25f, Float.NaN, 1f});
            RuntimeException e = assertThrows(RuntimeException.class, () -> m.compile(2).close());
            assertTrue(e.getMessage().contains("the slope of feature 1 is not finite"), e.getMessage());
            e = assertThrows(RuntimeException.class, () -> Trainer.builder(m).build().close());
            assertTrue(e.getMessage().contains("the slope of feature 1 is not finite"), e.getMessage());
        }
    }
}
