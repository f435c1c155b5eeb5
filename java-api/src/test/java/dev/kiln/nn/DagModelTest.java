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

    /** x W (x [rows, k] row-major, W [k, n]) in double. */
    private static double[] dense(float[] x, int rows, int k, float[] w, float[] b, int n) {
        double[] y = new double[rows * n];
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < n; j++) {
                double a = b == null ? 0 : b[j];
                for (int q = 0; q < k; q++) {
                    a += x[r * k + q] * (double) w[q * n + j];
                }
                y[r * n + j] = a;
            }
        }
        return y;
    }

    private static float[] floats(double[] v) {
        float[] f = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            f[i] = (float) v[i];
        }
        return f;
    }

    /**
     * Projection shortcut and a second branch from inside the first path:
     * h = relu(x W0 + b0) [8]; y1 = h W2 + x W4 [5]; y = y1 + h W6 [5].
     */
    private static Sequential shortcutModel() {
        Sequential.Builder b = Sequential.builder(6).dense(8, Init.HE, 1).relu();
        int h = b.mark();
        b.dense(5, Init.HE, 2);
        int main = b.mark();
        b.branch(0).dense(5, Init.XAVIER, 3).residual(main);
        int y1 = b.mark();
        b.branch(h).dense(5, Init.HE, 4).residual(y1);
        Sequential m = b.build();
        for (Sequential.Layer l : m.layers()) {
            if (l.bias() != null) {
                l.bias().fillUniform(-0.5, 0.5, 7);
            }
        }
        return m;
    }

    @Test
    void branchSessionMatchesPlainJavaAndSurvivesFilesAndOnnx() throws Exception {
        try (Sequential m = shortcutModel(); InferenceSession s = m.compile(4);
             Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 1, 3); Tensor y = Tensor.zeros(DType.F32, 4, 5)) {
            assertEquals("Sequential[6 -> dense 8 -> relu -> dense 5 -> | from value 0 -> dense 5 -> + value 3 -> "
                    + "| from value 2 -> dense 5 -> + value 6]", m.toString());
            assertEquals(5, m.layers().get(3).inFeatures()); // the branch: from the current value's width to value 0's
            assertEquals(6, m.layers().get(3).outFeatures());
            s.run(x, y);
            java.util.List<Sequential.Layer> l = m.layers();
            float[] xv = x.toFloatArray();
            float[] h = floats(dense(xv, 4, 6, l.get(0).weight().toFloatArray(), l.get(0).bias().toFloatArray(), 8));
            for (int i = 0; i < h.length; i++) {
                h[i] = Math.max(0, h[i]);
            }
            double[] main = dense(h, 4, 8, l.get(2).weight().toFloatArray(), l.get(2).bias().toFloatArray(), 5);
            double[] proj = dense(xv, 4, 6, l.get(4).weight().toFloatArray(), l.get(4).bias().toFloatArray(), 5);
            double[] side = dense(h, 4, 8, l.get(7).weight().toFloatArray(), l.get(7).bias().toFloatArray(), 5);
            float[] got = y.toFloatArray();
            for (int i = 0; i < got.length; i++) {
                double want = main[i] + proj[i] + side[i];
                assertEquals(want, got[i], 1e-5 * Math.max(1, Math.abs(want)), "element " + i);
            }
            // A Kiln file and an ONNX file give the same model back: same layers, same outputs.
            java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("kiln-branch");
            java.nio.file.Path kf = dir.resolve("m.kiln");
            dev.kiln.io.ModelFile.save(m, kf, null);
            try (Sequential back = dev.kiln.io.ModelFile.load(kf);
                 Sequential onnx = dev.kiln.io.OnnxModels.fromBytes(dev.kiln.io.OnnxModels.toBytes(m))) {
                for (Sequential other : new Sequential[] {back, onnx}) {
                    assertEquals(m.toString(), other.toString());
                    try (InferenceSession s2 = other.compile(4); Tensor y2 = Tensor.zeros(DType.F32, 4, 5)) {
                        s2.run(x, y2);
                        org.junit.jupiter.api.Assertions.assertArrayEquals(got, y2.toFloatArray());
                    }
                }
            } finally {
                java.nio.file.Files.deleteIfExists(kf);
                java.nio.file.Files.deleteIfExists(dir);
            }
        }
    }

    @Test
    void branchesAreCheckedWhenBuilt() {
        assertEquals("branch: from is 0: must be an earlier value (there is none yet)",
                assertThrows(IllegalArgumentException.class, () -> Sequential.builder(4).branch(0)).getMessage());
        assertEquals("branch: from is 1: must be an earlier value, 0..0", // value 1 is the current value
                assertThrows(IllegalArgumentException.class, () -> Sequential.builder(4).relu().branch(1)).getMessage());
        assertEquals("branch: value 0 is the token ids of the embedding, not features",
                assertThrows(IllegalArgumentException.class,
                        () -> Sequential.builder(4).embedding(5, 2, Init.HE, 1).branch(0)).getMessage());
        // The first path is never joined back: its result would be computed for nothing.
        assertEquals("build: value 2 (the output of layer 1, dense) is never read: join the branch that left it back "
                + "(residual, multiply or concat with 2)", assertThrows(IllegalStateException.class,
                        () -> Sequential.builder(4).relu().dense(3, Init.HE, 1).branch(0).dense(3, Init.HE, 2).build())
                        .getMessage());
        assertEquals("build: the last layer is a branch: the model's output must be computed",
                assertThrows(IllegalStateException.class, () -> Sequential.builder(4).relu().branch(0).build()).getMessage());
        assertEquals("build: layer 1 is a branch followed by another branch",
                assertThrows(IllegalStateException.class,
                        () -> Sequential.builder(4).relu().branch(0).branch(1).residual(0).build()).getMessage());
        // A branch that names another branch's value reads what that branch reads.
        Sequential.Builder b = Sequential.builder(4).dense(4, Init.HE, 1);
        int v = b.mark();
        b.branch(0);
        int alias = b.mark();
        b.dense(4, Init.HE, 2).residual(v).branch(alias).dense(4, Init.HE, 3).residual(4);
        try (Sequential m = b.build(); InferenceSession s = m.compile(2)) {
            assertEquals(4, s.outputFeatures());
        }
        // A residual across paths of different widths is named.
        assertEquals("residual: value 1 has 3 features, the current value 4",
                assertThrows(IllegalArgumentException.class,
                        () -> Sequential.builder(4).dense(3, Init.HE, 1).branch(0).relu().residual(1)).getMessage());
    }

    /** A gate and concatenations: g = silu(x W0 + b0) * (x W2 + b2) [8]; y = [g | x] W5 + b5 [3]. */
    @Test
    void gateAndConcatSessionMatchesPlainJavaAndSurvivesFilesAndOnnx() throws Exception {
        Sequential.Builder b = Sequential.builder(6).dense(8, Init.HE, 1).silu();
        int s = b.mark();
        b.branch(0).dense(8, Init.HE, 2).multiply(s).concat(0).dense(3, Init.XAVIER, 3);
        try (Sequential m = b.build(); InferenceSession session = m.compile(4);
             Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 1, 8); Tensor y = Tensor.zeros(DType.F32, 4, 3)) {
            for (Sequential.Layer l : m.layers()) {
                if (l.bias() != null) {
                    l.bias().fillUniform(-0.5, 0.5, 9);
                }
            }
            assertEquals("Sequential[6 -> dense 8 -> silu -> | from value 0 -> dense 8 -> * value 2 -> concat value 0 -> "
                    + "dense 3]", m.toString());
            assertEquals(14, m.layers().get(5).outFeatures());
            try (InferenceSession s2 = m.compile(4)) { // the session above was compiled before the biases were set
                s2.run(x, y);
            }
            java.util.List<Sequential.Layer> l = m.layers();
            float[] xv = x.toFloatArray();
            double[] h = dense(xv, 4, 6, l.get(0).weight().toFloatArray(), l.get(0).bias().toFloatArray(), 8);
            double[] u = dense(xv, 4, 6, l.get(3).weight().toFloatArray(), l.get(3).bias().toFloatArray(), 8);
            float[] cat = new float[4 * 14];
            for (int r = 0; r < 4; r++) {
                for (int j = 0; j < 8; j++) {
                    double a = h[r * 8 + j];
                    cat[r * 14 + j] = (float) (a / (1 + Math.exp(-a)) * u[r * 8 + j]);
                }
                System.arraycopy(xv, r * 6, cat, r * 14 + 8, 6);
            }
            double[] want = dense(cat, 4, 14, l.get(6).weight().toFloatArray(), l.get(6).bias().toFloatArray(), 3);
            float[] got = y.toFloatArray();
            for (int i = 0; i < got.length; i++) {
                assertEquals(want[i], got[i], 1e-5 * Math.max(1, Math.abs(want[i])), "element " + i);
            }
            try (Sequential back = dev.kiln.io.ModelFile.fromBytes(dev.kiln.io.ModelFile.toBytes(m, null));
                 Sequential onnx = dev.kiln.io.OnnxModels.fromBytes(dev.kiln.io.OnnxModels.toBytes(m))) {
                for (Sequential other : new Sequential[] {back, onnx}) {
                    assertEquals(m.toString(), other.toString());
                    try (InferenceSession s3 = other.compile(4); Tensor y3 = Tensor.zeros(DType.F32, 4, 3)) {
                        s3.run(x, y3);
                        org.junit.jupiter.api.Assertions.assertArrayEquals(got, y3.toFloatArray());
                    }
                }
            }
        }
        // The square, which Kiln exports as Mul(x, x), comes back as the square.
        try (Sequential sq = Sequential.builder(3).dense(4, Init.HE, 1).activation(dev.kiln.tensor.Activation.SQUARE)
                .dense(2, Init.HE, 2).build();
             Sequential back = dev.kiln.io.OnnxModels.fromBytes(dev.kiln.io.OnnxModels.toBytes(sq))) {
            assertEquals("Sequential[3 -> dense 4 -> square -> dense 2]", back.toString());
        }
        assertEquals("multiply: value 0 has 6 features, the current value 8",
                assertThrows(IllegalArgumentException.class, () -> Sequential.builder(6).dense(8, Init.HE, 1).multiply(0))
                        .getMessage());
        assertEquals("concat: value 0 is the token ids of the embedding, not features",
                assertThrows(IllegalArgumentException.class,
                        () -> Sequential.builder(2).embedding(5, 3, Init.HE, 1).concat(0)).getMessage());
    }

    /** A GEGLU whose halves come from one projection (torch's chunk): y = (h[:, 0:4] * gelu(h[:, 4:8])) W + b. */
    @Test
    void slicesServeTrainAndSurviveFiles() throws Exception {
        Sequential.Builder b = Sequential.builder(5).dense(8, Init.XAVIER, 1);
        int h = b.mark();
        b.slice(0, 4);
        int left = b.mark();
        b.branch(h).slice(4, 8).gelu().multiply(left).dense(2, Init.XAVIER, 2).softmax();
        assertEquals("slice: features 2..9: must satisfy 0 <= begin < end <= 8",
                assertThrows(IllegalArgumentException.class, () -> Sequential.builder(3).dense(8, Init.HE, 1).slice(2, 9))
                        .getMessage());
        assertThrows(IllegalArgumentException.class, () -> Sequential.builder(3).slice(2, 2));
        try (Sequential m = b.build(); Tensor x = Tensor.zeros(DType.F32, 3, 5).fillNormal(0, 1, 4);
             Tensor y = Tensor.zeros(DType.F32, 3, 2)) {
            assertEquals("Sequential[5 -> dense 8 -> features 0..3 -> | from value 1 -> features 4..7 -> gelu -> * value 2 -> "
                    + "dense 2 -> softmax]", m.toString());
            assertEquals(4, m.layers().get(3).sliceBegin());
            try (InferenceSession s = m.compile(3)) {
                s.run(x, y);
            }
            float[] xv = x.toFloatArray(), got = y.toFloatArray();
            double[] hv = dense(xv, 3, 5, m.layers().get(0).weight().toFloatArray(), m.layers().get(0).bias().toFloatArray(), 8);
            float[] g = new float[3 * 4];
            for (int r = 0; r < 3; r++) {
                for (int j = 0; j < 4; j++) {
                    double u = hv[r * 8 + 4 + j];
                    double gelu = 0.5 * u * (1 + erf(u / Math.sqrt(2)));
                    g[r * 4 + j] = (float) (hv[r * 8 + j] * gelu);
                }
            }
            double[] z = dense(g, 3, 4, m.layers().get(6).weight().toFloatArray(), m.layers().get(6).bias().toFloatArray(), 2);
            for (int r = 0; r < 3; r++) {
                double e0 = Math.exp(z[r * 2]), e1 = Math.exp(z[r * 2 + 1]);
                assertEquals(e0 / (e0 + e1), got[r * 2], 1e-5);
            }
            try (Sequential back = dev.kiln.io.ModelFile.fromBytes(dev.kiln.io.ModelFile.toBytes(m, null));
                 Sequential onnx = dev.kiln.io.OnnxModels.fromBytes(dev.kiln.io.OnnxModels.toBytes(m))) {
                for (Sequential other : new Sequential[] {back, onnx}) {
                    assertEquals(m.toString(), other.toString());
                    try (InferenceSession s3 = other.compile(3); Tensor y3 = Tensor.zeros(DType.F32, 3, 2)) {
                        s3.run(x, y3);
                        org.junit.jupiter.api.Assertions.assertArrayEquals(got, y3.toFloatArray());
                    }
                }
            }
            // It trains: a sign task that needs the product of the halves.
            SplittableRandom r = new SplittableRandom(8);
            int n = 600;
            float[] xs = new float[n * 5];
            int[] ys = new int[n];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < 5; j++) {
                    xs[i * 5 + j] = (float) r.nextGaussian();
                }
                ys[i] = xs[i * 5] * xs[i * 5 + 1] > 0 ? 1 : 0;
            }
            try (Dataset d = Dataset.classification(Tensor.of(xs, n, 5), Tensor.of(ys, n));
                 Trainer t = Trainer.builder(m).optimizer(Optimizer.adam(2e-2)).batchSize(32).seed(3).build()) {
                double before = t.evaluate(d).loss();
                t.fit(d, null, 40);
                var ev = t.evaluate(d);
                assertTrue(ev.loss() < before / 2 && ev.accuracy() > 0.9, before + " -> " + ev);
            }
        }
    }

    /** erf to 1e-7 (Abramowitz and Stegun 7.1.26 is too coarse for a 1e-5 check; this is a series plus a fraction). */
    private static double erf(double x) {
        double t = Math.abs(x);
        if (t < 2.5) { // Maclaurin series
            double sum = 0, term = t;
            for (int k = 0; k < 60; k++) {
                sum += term / (2 * k + 1);
                term *= -t * t / (k + 1);
            }
            return Math.signum(x) * 2 / Math.sqrt(Math.PI) * sum;
        }
        double f = 0; // continued fraction for erfc
        for (int k = 60; k >= 1; k--) {
            f = k / 2.0 / (t + f);
        }
        return Math.signum(x) * (1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f));
    }

    /** Scale-shift: x * gamma + beta per feature (a batch norm in inference mode), served, saved and trained. */
    @Test
    void scaleShiftServesTrainsAndSurvivesFiles() {
        try (Sequential m = Sequential.builder(3).dense(4, Init.XAVIER, 1).relu().scaleShift().dense(2, Init.XAVIER, 2)
                .softmax().build(); Tensor x = Tensor.zeros(DType.F32, 2, 3).fillNormal(0, 1, 4);
             Tensor y = Tensor.zeros(DType.F32, 2, 2); Tensor y2 = Tensor.zeros(DType.F32, 2, 2)) {
            m.layers().get(2).gamma().copyFrom(new float[] {2f, -1f, 0.5f, 3f});
            m.layers().get(2).beta().copyFrom(new float[] {0.25f, 1f, -3f, 0f});
            assertEquals("Sequential[3 -> dense 4 -> relu -> scale_shift -> dense 2 -> softmax]", m.toString());
            try (InferenceSession s = m.compile(2)) {
                s.run(x, y);
            }
            // The same model with the scale-shift folded into the next layer's weights by hand.
            float[] g = {2f, -1f, 0.5f, 3f}, t = {0.25f, 1f, -3f, 0f}, w2 = m.layers().get(3).weight().toFloatArray();
            float[] w2f = new float[8], b2f = new float[2];
            for (int i = 0; i < 4; i++) {
                for (int j = 0; j < 2; j++) {
                    w2f[i * 2 + j] = g[i] * w2[i * 2 + j];
                    b2f[j] += t[i] * w2[i * 2 + j];
                }
            }
            try (Sequential folded = Sequential.builder(3).dense(4, Init.ZEROS, 0).relu().dense(2, Init.ZEROS, 0).softmax().build()) {
                folded.layers().get(0).weight().copyFrom(m.layers().get(0).weight().toFloatArray());
                folded.layers().get(2).weight().copyFrom(w2f);
                folded.layers().get(2).bias().copyFrom(b2f);
                try (InferenceSession s = folded.compile(2)) {
                    s.run(x, y2);
                }
                org.junit.jupiter.api.Assertions.assertArrayEquals(y2.toFloatArray(), y.toFloatArray(), 1e-6f);
            }
            try (Sequential back = dev.kiln.io.ModelFile.fromBytes(dev.kiln.io.ModelFile.toBytes(m, null));
                 Sequential onnx = dev.kiln.io.OnnxModels.fromBytes(dev.kiln.io.OnnxModels.toBytes(m))) {
                for (Sequential other : new Sequential[] {back, onnx}) {
                    assertEquals(m.toString(), other.toString());
                    try (InferenceSession s3 = other.compile(2)) {
                        s3.run(x, y2);
                        org.junit.jupiter.api.Assertions.assertArrayEquals(y.toFloatArray(), y2.toFloatArray());
                    }
                }
            }
            // Trained: gamma and beta move, and the trainer's loss is the session's.
            SplittableRandom r = new SplittableRandom(9);
            int n = 200;
            float[] xs = new float[n * 3];
            int[] ys = new int[n];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < 3; j++) {
                    xs[i * 3 + j] = (float) r.nextGaussian();
                }
                ys[i] = xs[i * 3] > xs[i * 3 + 1] ? 1 : 0;
            }
            try (Dataset d = Dataset.classification(Tensor.of(xs, n, 3), Tensor.of(ys, n));
                 Trainer tr = Trainer.builder(m).optimizer(Optimizer.adam(1e-2)).batchSize(20).seed(2).build()) {
                double before = tr.evaluate(d).loss();
                tr.fit(d, null, 10);
                var ev = tr.evaluate(d);
                assertTrue(ev.loss() < before, before + " -> " + ev.loss());
                assertTrue(!java.util.Arrays.equals(g, m.layers().get(2).gamma().toFloatArray()), "gamma did not move");
                try (InferenceSession s = m.compile(n); Tensor out = Tensor.zeros(DType.F32, n, 2)) {
                    s.run(d.features(), out);
                    float[] p = out.toFloatArray();
                    double loss = 0;
                    for (int i = 0; i < n; i++) {
                        loss -= Math.log(p[i * 2 + ys[i]]);
                    }
                    assertEquals(ev.loss(), loss / n, 1e-4 * ev.loss());
                }
            }
        }
    }

    /** A bag of embeddings: ids -> embedding -> mean (sum, max) over positions -> dense; served, saved, trained. */
    @Test
    void poolingOverPositionsServesTrainsAndSurvivesFiles() {
        int[] idv = {3, 0, 7, 7, 1, 2, 5, 5, 5, 0, 9, 4};
        for (Pooling mode : Pooling.values()) {
            try (Sequential m = Sequential.builder(4).embedding(10, 3, Init.HE, 1).pool(mode, 4).dense(2, Init.XAVIER, 2).build();
                 Tensor ids = Tensor.of(idv, 3, 4); Tensor y = Tensor.zeros(DType.F32, 3, 2);
                 Tensor y2 = Tensor.zeros(DType.F32, 3, 2)) {
                assertEquals("Sequential[4 ids -> embedding 10x3 -> " + mode.name().toLowerCase(java.util.Locale.ROOT)
                        + "_pool(4) -> dense 2]", m.toString());
                try (InferenceSession s = m.compile(3)) {
                    s.run(ids, y);
                }
                float[] table = m.layers().get(0).weight().toFloatArray(), w = m.layers().get(2).weight().toFloatArray();
                float[] got = y.toFloatArray();
                for (int r = 0; r < 3; r++) {
                    double[] pooled = new double[3];
                    for (int j = 0; j < 3; j++) {
                        double v = table[idv[r * 4] * 3 + j];
                        for (int p = 1; p < 4; p++) {
                            double e = table[idv[r * 4 + p] * 3 + j];
                            v = mode == Pooling.MAX ? Math.max(v, e) : v + e;
                        }
                        pooled[j] = mode == Pooling.MEAN ? v / 4 : v;
                    }
                    for (int k = 0; k < 2; k++) {
                        double want = 0;
                        for (int j = 0; j < 3; j++) {
                            want += pooled[j] * w[j * 2 + k];
                        }
                        assertEquals(want, got[r * 2 + k], 1e-5, mode + " row " + r);
                    }
                }
                try (Sequential back = dev.kiln.io.ModelFile.fromBytes(dev.kiln.io.ModelFile.toBytes(m, null));
                     Sequential onnx = dev.kiln.io.OnnxModels.fromBytes(dev.kiln.io.OnnxModels.toBytes(m))) {
                    for (Sequential other : new Sequential[] {back, onnx}) {
                        assertEquals(m.toString(), other.toString());
                        try (InferenceSession s3 = other.compile(3)) {
                            s3.run(ids, y2);
                            org.junit.jupiter.api.Assertions.assertArrayEquals(got, y2.toFloatArray());
                        }
                    }
                }
            }
        }
        assertEquals("pool: 4 positions do not divide the 6 features",
                assertThrows(IllegalArgumentException.class, () -> Sequential.builder(6).meanPool(4)).getMessage());
        // Trained: the class is whether token 1 occurs in the sequence; a max over positions sees it.
        SplittableRandom r = new SplittableRandom(10);
        int n = 600;
        int[] x = new int[n * 5], y = new int[n];
        for (int i = 0; i < n; i++) {
            for (int p = 0; p < 5; p++) {
                x[i * 5 + p] = 2 + r.nextInt(8);
            }
            if (r.nextBoolean()) {
                x[i * 5 + r.nextInt(5)] = 1;
                y[i] = 1;
            }
        }
        try (Sequential m = Sequential.builder(5).embedding(10, 4, Init.HE, 3).pool(Pooling.MAX, 5).dense(2, Init.XAVIER, 4)
                .softmax().build(); Dataset d = Dataset.classification(Tensor.of(x, n, 5), Tensor.of(y, n));
             Trainer t = Trainer.builder(m).optimizer(Optimizer.adam(3e-2)).batchSize(32).seed(5).build()) {
            t.fit(d, null, 20);
            var ev = t.evaluate(d);
            assertTrue(ev.accuracy() > 0.97, "accuracy " + ev.accuracy());
        }
    }

    /** XOR-like classes: the product of two learned projections carries the decision. */
    @Test
    void trainsAGatedModelWithAConcatenation() {
        SplittableRandom r = new SplittableRandom(6);
        int n = 800;
        float[] x = new float[n * 4];
        int[] y = new int[n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < 4; j++) {
                x[i * 4 + j] = (float) r.nextGaussian();
            }
            y[i] = (x[i * 4] + x[i * 4 + 1]) * (x[i * 4 + 2] - x[i * 4 + 3]) > 0 ? 1 : 0;
        }
        Sequential.Builder b = Sequential.builder(4).dense(8, Init.XAVIER, 1);
        int a = b.mark();
        b.branch(0).dense(8, Init.XAVIER, 2).multiply(a).concat(0).dense(16, Init.HE, 3).relu().dense(2, Init.XAVIER, 4)
                .softmax();
        try (Sequential m = b.build(); Dataset d = Dataset.classification(Tensor.of(x, n, 4), Tensor.of(y, n));
             Trainer t = Trainer.builder(m).optimizer(Optimizer.adam(1e-2)).batchSize(32).seed(1).build()) {
            double before = t.evaluate(d).loss();
            t.fit(d, null, 30);
            var ev = t.evaluate(d);
            assertTrue(ev.loss() < before / 4, "loss " + before + " -> " + ev.loss());
            assertTrue(ev.accuracy() > 0.95, "accuracy " + ev.accuracy());
            try (InferenceSession s = m.compile(n); Tensor out = Tensor.zeros(DType.F32, n, 2)) {
                s.run(d.features(), out);
                float[] p = out.toFloatArray();
                double loss = 0;
                for (int i = 0; i < n; i++) {
                    loss -= Math.log(p[i * 2 + y[i]]);
                }
                assertEquals(ev.loss(), loss / n, 1e-4 * ev.loss());
            }
        }
    }

    /** Three classes by the sign pattern of two linear scores; the shortcut carries the linear part. */
    @Test
    void trainsABranchModelAndServesWhatItTrained() {
        SplittableRandom r = new SplittableRandom(4);
        int n = 800;
        float[] x = new float[n * 8];
        int[] y = new int[n];
        for (int i = 0; i < n; i++) {
            double s1 = 0, s2 = 0;
            for (int j = 0; j < 8; j++) {
                x[i * 8 + j] = (float) r.nextGaussian();
                s1 += x[i * 8 + j] * (j % 2 == 0 ? 1 : -0.5);
                s2 += x[i * 8 + j] * (j < 4 ? 0.7 : -0.3);
            }
            y[i] = s1 > 0 ? 0 : s2 > 0 ? 1 : 2;
        }
        Sequential.Builder b = Sequential.builder(8).dense(16, Init.HE, 1).relu();
        b.dense(3, Init.HE, 2);
        int main = b.mark();
        b.branch(0).dense(3, Init.XAVIER, 3).residual(main).softmax();
        try (Sequential m = b.build(); Dataset d = Dataset.classification(Tensor.of(x, n, 8), Tensor.of(y, n));
             Trainer t = Trainer.builder(m).optimizer(Optimizer.adam(1e-2)).batchSize(32).seed(1).build()) {
            double before = t.evaluate(d).loss();
            t.fit(d, null, 20);
            var ev = t.evaluate(d);
            assertTrue(ev.loss() < before / 4, "loss " + before + " -> " + ev.loss());
            assertTrue(ev.accuracy() > 0.95, "accuracy " + ev.accuracy());
            // The trained model serves the same answers, and the same loss.
            try (InferenceSession s = m.compile(n); Tensor out = Tensor.zeros(DType.F32, n, 3)) {
                s.run(d.features(), out);
                float[] p = out.toFloatArray();
                int hits = 0;
                double loss = 0;
                for (int i = 0; i < n; i++) {
                    int arg = 0;
                    for (int c = 1; c < 3; c++) {
                        arg = p[i * 3 + c] > p[i * 3 + arg] ? c : arg;
                    }
                    hits += arg == y[i] ? 1 : 0;
                    loss -= Math.log(p[i * 3 + y[i]]);
                }
                assertEquals(ev.accuracy(), hits / (double) n, 1e-9);
                assertEquals(ev.loss(), loss / n, 1e-4 * ev.loss());
            }
        }
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
