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
    private static Sequential randomModel(Random r, int seed) {
        long in = 4 + r.nextInt(60);
        Sequential.Builder b = Sequential.builder(in);
        int depth = 1 + r.nextInt(4);
        for (int d = 0; d < depth; d++) {
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

    @Test
    void kilnEqualsOnnxRuntimeOnRandomModels() throws Exception {
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        Random r = new Random(20261129);
        for (int seed = 0; seed < 25; seed++) {
            try (Sequential m = randomModel(r, seed); InferenceSession kiln = m.compile(16)) {
                int batch = 1 + r.nextInt(16);
                try (Tensor x = Tensor.zeros(DType.F32, batch, m.inputFeatures()).fillNormal(0, 1, seed);
                        Tensor y = Tensor.zeros(DType.F32, batch, m.outputFeatures());
                        OrtSession.SessionOptions opts = new OrtSession.SessionOptions()) {
                    kiln.run(x, y);
                    float[] xs = x.toFloatArray();
                    float[][] rows = new float[batch][(int) m.inputFeatures()];
                    for (int i = 0; i < batch; i++) {
                        System.arraycopy(xs, (int) (i * m.inputFeatures()), rows[i], 0, (int) m.inputFeatures());
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
    }
}
