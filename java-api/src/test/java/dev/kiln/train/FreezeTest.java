package dev.kiln.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.data.Dataset;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.Tensor;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Freezing layers: fine-tuning a head, or training around a frozen layer. */
class FreezeTest {
    private static Dataset data() {
        SplittableRandom r = new SplittableRandom(7);
        int n = 240;
        float[] xs = new float[n * 4];
        int[] ys = new int[n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < 4; j++) {
                xs[i * 4 + j] = (float) r.nextGaussian();
            }
            ys[i] = xs[i * 4] + xs[i * 4 + 1] > 0 ? (xs[i * 4 + 2] > 0 ? 2 : 1) : 0;
        }
        return Dataset.classification(Tensor.of(xs, n, 4), Tensor.of(ys, n));
    }

    private static Sequential model() {
        return Sequential.builder(4).dense(16, Init.HE, 1).relu().layerNorm(1e-5f).dense(3, Init.XAVIER, 2).softmax().build();
    }

    @Test
    void frozenLayersKeepTheirValuesBitForBitAndTheRestTrains() {
        try (Dataset d = data(); Sequential m = model()) {
            float[] w0 = m.layers().get(0).weight().toFloatArray(), b0 = m.layers().get(0).bias().toFloatArray();
            float[] g2 = m.layers().get(2).gamma().toFloatArray(), w3 = m.layers().get(3).weight().toFloatArray();
            try (Trainer t = Trainer.builder(m).optimizer(Optimizer.adamW(1e-2, 0.1)).batchSize(16).seed(3).freeze(0, 2).build()) {
                double before = t.evaluate(d).loss();
                t.fit(d, null, 15);
                double after = t.evaluate(d).loss();
                assertTrue(after < before, before + " -> " + after); // the head alone learns
            }
            assertArrayEquals(w0, m.layers().get(0).weight().toFloatArray()); // weight decay did not touch them
            assertArrayEquals(b0, m.layers().get(0).bias().toFloatArray());
            assertArrayEquals(g2, m.layers().get(2).gamma().toFloatArray());
            assertFalse(Arrays.equals(w3, m.layers().get(3).weight().toFloatArray()), "the head did not move");
        }
    }

    @Test
    void theGradientFlowsThroughAFrozenLayer() {
        try (Dataset d = data(); Sequential m = model()) {
            float[] w0 = m.layers().get(0).weight().toFloatArray(), w3 = m.layers().get(3).weight().toFloatArray();
            try (Trainer t = Trainer.builder(m).optimizer(Optimizer.adam(1e-2)).batchSize(16).seed(3).freeze(3).build()) {
                double before = t.evaluate(d).loss();
                t.fit(d, null, 15);
                assertTrue(t.evaluate(d).loss() < before);
            }
            assertArrayEquals(w3, m.layers().get(3).weight().toFloatArray());
            assertFalse(Arrays.equals(w0, m.layers().get(0).weight().toFloatArray()), "layer 0 got no gradient through layer 3");
        }
    }

    @Test
    void freezingWhatHasNoParametersIsRefusedByName() {
        try (Sequential m = model()) {
            assertEquals("freeze: layer 1 (activation) has no parameters",
                    assertThrows(IllegalArgumentException.class, () -> Trainer.builder(m).freeze(1)).getMessage());
            assertEquals("freeze: layer 5: the model has layers 0..4",
                    assertThrows(IllegalArgumentException.class, () -> Trainer.builder(m).freeze(5)).getMessage());
            assertThrows(IllegalArgumentException.class, () -> Trainer.builder(m).freeze(-1));
        }
    }
}
