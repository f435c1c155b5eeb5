package dev.kiln.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.data.Dataset;
import dev.kiln.infer.InferenceSession;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import dev.kiln.train.Optimizer;
import dev.kiln.train.Trainer;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class DagModelTest {
    @Test
    void residualSessionMatchesPlainJava() {
        Sequential.Builder b = Sequential.builder(6).dense(6, Init.HE, 1).relu();
        int skip = b.mark();
        b.dense(6, Init.HE, 2).residual(skip).relu().residual(0);
        try (Sequential m = b.build(); InferenceSession s = m.compile(4);
             Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 1, 3); Tensor y = Tensor.zeros(DType.F32, 4, 6)) {
            m.layers().get(0).bias().fillUniform(-0.5, 0.5, 9);
            try (InferenceSession s2 = m.compile(4)) {
                s2.run(x, y);
            }
            float[] xv = x.toFloatArray(), w1 = m.layers().get(0).weight().toFloatArray(),
                    b1 = m.layers().get(0).bias().toFloatArray(), w2 = m.layers().get(2).weight().toFloatArray(),
                    got = y.toFloatArray();
            for (int r = 0; r < 4; r++) {
                double[] h = new double[6];
                for (int j = 0; j < 6; j++) {
                    double a = b1[j];
                    for (int k = 0; k < 6; k++) {
                        a += xv[r * 6 + k] * w1[k * 6 + j];
                    }
                    h[j] = Math.max(0, a);
                }
                for (int j = 0; j < 6; j++) {
                    double a = 0;
                    for (int k = 0; k < 6; k++) {
                        a += h[k] * w2[k * 6 + j];
                    }
                    double want = Math.max(0, a + h[j]) + xv[r * 6 + j];
                    assertEquals(want, got[r * 6 + j], 1e-5);
                }
            }
        }
        assertThrows(IllegalArgumentException.class, () -> Sequential.builder(4).dense(5, Init.HE, 1).residual(0));
        assertThrows(IllegalArgumentException.class, () -> Sequential.builder(4).dense(4, Init.HE, 1).residual(1));
        assertThrows(IllegalStateException.class, () -> Sequential.builder(4).relu().embedding(3, 2, Init.HE, 1));
    }

    @Test
    void embeddingSessionTakesTokenIdsAndNamesBadOnes() {
        try (Sequential m = Sequential.builder(3).embedding(5, 2, Init.HE, 1).build(); InferenceSession s = m.compile(2);
             Tensor ids = Tensor.of(new int[] {4, 0, 2, 1, 1, 3}, 2, 3); Tensor y = Tensor.zeros(DType.F32, 2, 6)) {
            assertEquals(DType.I32, m.inputDType());
            s.run(ids, y);
            float[] table = m.layers().get(0).weight().toFloatArray(), got = y.toFloatArray();
            int[] idv = {4, 0, 2, 1, 1, 3};
            for (int p = 0; p < 6; p++) {
                assertEquals(table[idv[p] * 2], got[p * 2]);
                assertEquals(table[idv[p] * 2 + 1], got[p * 2 + 1]);
            }
            try (Tensor bad = Tensor.of(new int[] {4, 0, 2, 1, 5, 3}, 2, 3)) {
                var e = assertThrows(RuntimeException.class, () -> s.run(bad, y));
                assertTrue(e.getMessage().contains("token id 5 at row 1, position 1"), e.getMessage());
            }
            try (Tensor floats = Tensor.zeros(DType.F32, 2, 3)) {
                var e = assertThrows(IllegalArgumentException.class, () -> s.run(floats, y));
                assertTrue(e.getMessage().contains("takes I32"), e.getMessage());
            }
        }
    }

    /** Sequences of 6 tokens from 10; the class is (first token) mod 3. Needs the embedding and the residual. */
    @Test
    void trainsAnEmbeddingModelWithResiduals() {
        SplittableRandom r = new SplittableRandom(2);
        int n = 600;
        int[] x = new int[n * 6], y = new int[n];
        for (int i = 0; i < n; i++) {
            for (int p = 0; p < 6; p++) {
                x[i * 6 + p] = r.nextInt(10);
            }
            y[i] = x[i * 6] % 3;
        }
        Sequential.Builder b = Sequential.builder(6).embedding(10, 4, Init.HE, 1).dense(16, Init.HE, 2).relu();
        int skip = b.mark();
        b.dense(16, Init.HE, 3).relu().residual(skip).layerNorm(1e-5f).dense(3, Init.XAVIER, 4).softmax();
        try (Sequential m = b.build(); Dataset d = Dataset.classification(Tensor.of(x, n, 6), Tensor.of(y, n));
             Trainer t = Trainer.builder(m).optimizer(Optimizer.adam(1e-2)).batchSize(32).seed(1).build()) {
            t.fit(d, null, 15);
            double acc = t.evaluate(d).accuracy();
            assertTrue(acc > 0.97, "accuracy " + acc);
            // The trained model serves the same answers.
            try (InferenceSession s = m.compile(n); Tensor out = Tensor.zeros(DType.F32, n, 3);
                 Tensor idx = Tensor.zeros(DType.I32, n)) {
                s.run(d.features(), out);
                dev.kiln.tensor.Ops.argmax(out, idx);
                int[] pred = idx.toIntArray();
                int hits = 0;
                for (int i = 0; i < n; i++) {
                    hits += pred[i] == y[i] ? 1 : 0;
                }
                assertEquals(acc, hits / (double) n, 1e-9);
            }
        }
    }

    @Test
    void toStringListsTheLayersEvenAfterClose() {
        Sequential m = Sequential.builder(3).embedding(10, 4, Init.HE, 1).dense(12, Init.HE, 2).boundedRelu(6).residual(1)
                .dropout(0.2).dense(2, Init.HE, 3).softmax().build();
        String want = "Sequential[3 ids -> embedding 10x4 -> dense 12 -> bounded_relu(6.0) -> + value 1 -> dropout(0.2) -> "
                + "dense 2 -> softmax";
        org.junit.jupiter.api.Assertions.assertEquals(want + "]", m.toString());
        m.close();
        org.junit.jupiter.api.Assertions.assertEquals(want + "; closed]", m.toString());
    }
}
