package dev.kiln.it;

import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import dev.kiln.infer.InferenceSession;
import dev.kiln.io.OnnxModels;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Conformance with ONNX Runtime: random Kiln models are exported to ONNX, ONNX Runtime runs the file,
 * Kiln runs the model, and the outputs agree within 1e-5 relative (fp32).
 */
class OnnxRuntimeConformanceIT {
    /**
     * Random chains; from model 25 on, also an embedding first (token-id input) and residual adds
     * (a square Dense block added back to its input, sometimes after its activation).
     */
    private static Sequential randomModel(Random r, int seed) {
        boolean dag = seed >= 25;
        long in = 4 + r.nextInt(60);
        Sequential.Builder b = Sequential.builder(dag && r.nextBoolean() ? 1 + r.nextInt(8) : in);
        if (dag && b.mark() == 0 && r.nextBoolean()) {
            b.embedding(2 + r.nextInt(30), 1 + r.nextInt(12), Init.HE, seed);
        }
        int depth = 1 + r.nextInt(4);
        for (int d = 0; d < depth; d++) {
            if (dag && r.nextBoolean() && b.mark() > 0) {
                int skip = b.mark();
                long w = widthAfter(b);
                b.dense(w, Init.HE, seed * 10L + d);
                if (r.nextBoolean()) {
                    b.relu();
                }
                b.residual(skip);
                continue;
            }
            b.dense(1 + r.nextInt(80), r.nextBoolean() ? Init.HE : Init.XAVIER, seed * 10L + d);
            switch (r.nextInt(7)) {
                case 0: b.relu(); break;
                case 1: b.gelu(); break;
                case 2: b.tanh(); break;
                case 3: b.sigmoid(); break;
                case 4: b.leakyRelu(0.1f); break;
                case 5: b.layerNorm(1e-5f); break;
                default: b.dropout(0.3); break;
            }
        }
        if (r.nextBoolean()) {
            b.softmax();
        }
        Sequential m = b.build();
        int i = 0;
        for (Tensor t : m.parameters().values()) {
            if (t.numel() > 1 || r.nextBoolean()) {
                t.fillUniform(-0.3, 0.3, seed * 100L + i++);
            }
        }
        return m;
    }

    /** The current width of a builder (built through a throwaway copy of its layers' widths). */
    private static long widthAfter(Sequential.Builder b) {
        return b.currentFeatures();
    }

    @Test
    void kilnEqualsOnnxRuntimeOnRandomModels() throws Exception {
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        Random r = new Random(20261129);
        int embeddings = 0, residuals = 0;
        for (int seed = 0; seed < 50; seed++) {
            try (Sequential m = randomModel(r, seed); InferenceSession kiln = m.compile(16)) {
                int batch = 1 + r.nextInt(16);
                boolean ids = m.inputDType() == DType.I32;
                embeddings += ids ? 1 : 0;
                residuals += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.RESIDUAL) ? 1 : 0;
                int cols = (int) m.inputFeatures();
                int[] idv = new int[batch * cols];
                if (ids) {
                    long vocab = m.layers().get(0).vocabulary();
                    for (int i = 0; i < idv.length; i++) {
                        idv[i] = r.nextInt((int) vocab);
                    }
                }
                try (Tensor x = ids ? Tensor.of(idv, batch, cols) : Tensor.zeros(DType.F32, batch, cols).fillNormal(0, 1, seed);
                        Tensor y = Tensor.zeros(DType.F32, batch, m.outputFeatures());
                        OrtSession.SessionOptions opts = new OrtSession.SessionOptions()) {
                    kiln.run(x, y);
                    Object rows;
                    if (ids) {
                        int[][] ir = new int[batch][cols];
                        for (int i = 0; i < batch; i++) {
                            System.arraycopy(idv, i * cols, ir[i], 0, cols);
                        }
                        rows = ir;
                    } else {
                        float[] xs = x.toFloatArray();
                        float[][] fr = new float[batch][cols];
                        for (int i = 0; i < batch; i++) {
                            System.arraycopy(xs, i * cols, fr[i], 0, cols);
                        }
                        rows = fr;
                    }
                    try (OrtSession ort = env.createSession(OnnxModels.toBytes(m), opts);
                            OnnxTensor in = OnnxTensor.createTensor(env, rows);
                            OrtSession.Result res = ort.run(Map.of("input", in))) {
                        float[][] want = (float[][]) res.get(0).getValue();
                        float[] got = y.toFloatArray();
                        for (int i = 0; i < batch; i++) {
                            for (int j = 0; j < want[i].length; j++) {
                                float w = want[i][j], g = got[(int) (i * m.outputFeatures() + j)];
                                assertEquals(w, g, 1e-5 * Math.abs(w) + 1e-5, "model " + seed + " [" + i + "," + j + "]");
                            }
                        }
                    }
                }
            }
        }
        // The random draw must really have exercised both features.
        org.junit.jupiter.api.Assertions.assertTrue(embeddings >= 3 && residuals >= 5,
                embeddings + " embedding models, " + residuals + " residual models");
    }
}
