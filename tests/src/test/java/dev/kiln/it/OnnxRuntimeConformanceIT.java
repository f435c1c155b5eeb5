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
import dev.kiln.internal.onnx.Onnx.AttributeProto;
import dev.kiln.internal.onnx.Onnx.GraphProto;
import dev.kiln.internal.onnx.Onnx.ModelProto;
import dev.kiln.internal.onnx.Onnx.NodeProto;
import dev.kiln.internal.onnx.Onnx.OperatorSetIdProto;
import dev.kiln.internal.onnx.Onnx.TensorProto;
import dev.kiln.internal.onnx.Onnx.TensorShapeProto;
import dev.kiln.internal.onnx.Onnx.TypeProto;
import dev.kiln.internal.onnx.Onnx.ValueInfoProto;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Conformance with ONNX Runtime: random Kiln models are exported to ONNX, ONNX Runtime runs the file,
 * Kiln runs the model, and the outputs agree within 1e-5 relative (fp32).
 */
class OnnxRuntimeConformanceIT {
    /** ONNX Runtime's rows equal Kiln's (rows of want[0].length) within 1e-5 relative plus abs. */
    static void assertClose(float[][] want, float[] got, double abs, String what) {
        for (int i = 0; i < want.length; i++) {
            for (int j = 0; j < want[i].length; j++) {
                float w = want[i][j], g = got[i * want[i].length + j];
                assertEquals(w, g, 1e-5 * Math.abs(w) + abs, what + " [" + i + "," + j + "]");
            }
        }
    }

    /**
     * Random chains; from model 25 on, also an embedding first (token-id input), residual adds (a
     * square Dense block added back to its input, sometimes after its activation), projection
     * shortcuts (two Dense layers on one path, one on a branch from the same value, of a new width,
     * joined by a residual), gates (silu(x W1) * (x W2), or both halves sliced from one projection)
     * and concatenations with an earlier value.
     */
    private static Sequential randomModel(Random r, int seed) {
        boolean dag = seed >= 25;
        long in = 4 + r.nextInt(60);
        long inputs = dag && r.nextBoolean() ? 1 + r.nextInt(8) : in;
        Sequential.Builder b = Sequential.builder(inputs);
        boolean ids = dag && r.nextBoolean();
        if (ids) {
            b.embedding(2 + r.nextInt(30), 1 + r.nextInt(12), Init.HE, seed);
            if (r.nextBoolean()) { // a bag of embeddings: mean, sum or max over the positions
                b.pool(dev.kiln.nn.Pooling.values()[r.nextInt(3)], inputs);
            }
        }
        int depth = 1 + r.nextInt(4);
        for (int d = 0; d < depth; d++) {
            if (dag && b.mark() > 0 && r.nextInt(4) == 0) {
                int from = b.mark();
                long w = 1 + r.nextInt(40);
                if (r.nextBoolean()) { // one projection, split in halves (torch's chunk)
                    b.dense(2 * w, Init.XAVIER, seed * 10L + d);
                    int both = b.mark();
                    b.slice(0, w);
                    int left = b.mark();
                    b.branch(both).slice(w, 2 * w).gelu().multiply(left);
                } else {
                    b.dense(w, Init.XAVIER, seed * 10L + d).silu();
                    int gate = b.mark();
                    b.branch(from).dense(w, Init.XAVIER, seed * 10L + d + 3).multiply(gate);
                }
                if (r.nextBoolean()) {
                    int v = r.nextInt(b.mark()); // any earlier value but the token ids
                    b.concat(v == 0 && ids ? 1 : v);
                }
                continue;
            }
            if (dag && r.nextBoolean() && b.mark() > 0 && r.nextBoolean()) {
                int from = b.mark();
                long out = 1 + r.nextInt(40);
                b.dense(1 + r.nextInt(40), Init.HE, seed * 10L + d).gelu().dense(out, Init.HE, seed * 10L + d + 5);
                int main = b.mark();
                b.branch(from).dense(out, Init.XAVIER, seed * 10L + d + 7).residual(main);
                continue;
            }
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
            switch (r.nextInt(10)) {
                case 0: b.relu(); break;
                case 1: b.gelu(); break;
                case 2: b.tanh(); break;
                case 3: b.sigmoid(); break;
                case 4: b.leakyRelu(0.1f); break;
                case 5: b.layerNorm(1e-5f); break;
                case 6: b.scaleShift(); break;
                case 7: b.prelu(); break;
                case 8: b.l2Normalize(); break;
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
        int embeddings = 0, residuals = 0, branches = 0, gates = 0, concats = 0, slices = 0, scales = 0, pools = 0, prelus = 0, norms = 0;
        for (int seed = 0; seed < 50; seed++) {
            try (Sequential m = randomModel(r, seed); InferenceSession kiln = m.compile(16)) {
                int batch = 1 + r.nextInt(16);
                boolean ids = m.inputDType() == DType.I32;
                embeddings += ids ? 1 : 0;
                residuals += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.RESIDUAL) ? 1 : 0;
                branches += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.BRANCH) ? 1 : 0;
                gates += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.MULTIPLY) ? 1 : 0;
                concats += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.CONCAT) ? 1 : 0;
                slices += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.SLICE) ? 1 : 0;
                scales += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.SCALE_SHIFT) ? 1 : 0;
                pools += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.POOL) ? 1 : 0;
                prelus += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.PRELU) ? 1 : 0;
                norms += m.layers().stream().anyMatch(l -> l.kind() == Sequential.Layer.Kind.L2_NORMALIZE) ? 1 : 0;
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
                        assertClose(want, got, 1e-5, "model " + seed);
                    }
                }
            }
        }
        // The random draw must really have exercised each feature.
        org.junit.jupiter.api.Assertions.assertTrue(embeddings >= 3 && residuals >= 5 && branches >= 3 && gates >= 3
                && concats >= 2 && slices >= 2 && scales >= 3 && pools >= 2 && prelus >= 3 && norms >= 3, embeddings + " embedding models, " + residuals + " residual models, " + branches
                + " with branches, " + gates + " with gates, " + concats + " with concatenations, " + slices + " with slices, " + scales + " with scale-shifts, " + pools + " with pooling, "
                + prelus + " with PReLUs, " + norms + " with L2 normalizations");
    }

    /** Each activation Kiln exports, between two dense layers, on inputs spread over [-9, 9]. */
    @Test
    void everyActivationEqualsOnnxRuntime() throws Exception {
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        dev.kiln.tensor.Activation[] all = {dev.kiln.tensor.Activation.RELU, dev.kiln.tensor.Activation.LEAKY_RELU,
                dev.kiln.tensor.Activation.GELU, dev.kiln.tensor.Activation.GELU_TANH, dev.kiln.tensor.Activation.SIGMOID,
                dev.kiln.tensor.Activation.TANH, dev.kiln.tensor.Activation.SILU, dev.kiln.tensor.Activation.ELU,
                dev.kiln.tensor.Activation.SOFTPLUS, dev.kiln.tensor.Activation.SELU, dev.kiln.tensor.Activation.MISH,
                dev.kiln.tensor.Activation.BOUNDED_RELU, dev.kiln.tensor.Activation.HARDTANH,
                dev.kiln.tensor.Activation.HARD_SIGMOID, dev.kiln.tensor.Activation.HARD_SWISH};
        for (dev.kiln.tensor.Activation a : all) {
            float alpha = a == dev.kiln.tensor.Activation.ELU ? 0.7f : a == dev.kiln.tensor.Activation.LEAKY_RELU ? 0.1f
                    : a == dev.kiln.tensor.Activation.BOUNDED_RELU ? 1.5f : a == dev.kiln.tensor.Activation.HARDTANH ? 0.8f
                    : a == dev.kiln.tensor.Activation.HARD_SIGMOID ? 0.25f : 0f;
            int batch = 9;
            try (Sequential m = Sequential.builder(10).dense(24, Init.HE, 1).activation(a, alpha).dense(4, Init.XAVIER, 2)
                    .build(); InferenceSession kiln = m.compile(batch);
                    Tensor x = Tensor.zeros(DType.F32, batch, 10).fillUniform(-3, 3, 3);
                    Tensor y = Tensor.zeros(DType.F32, batch, 4);
                    OrtSession.SessionOptions opts = new OrtSession.SessionOptions();
                    OrtSession ort = env.createSession(OnnxModels.toBytes(m), opts);
                    OnnxTensor in = OnnxTensor.createTensor(env, java.nio.FloatBuffer.wrap(x.toFloatArray()), new long[] {batch, 10});
                    OrtSession.Result res = ort.run(Map.of("input", in))) {
                kiln.run(x, y);
                float[][] want = (float[][]) res.get(0).getValue();
                float[] got = y.toFloatArray();
                assertClose(want, got, 1e-5, a.toString());
            }
        }
    }

    /** Kiln's external-data layout (saveWithExternalData) is ONNX's: ONNX Runtime loads the file from its path. */
    @Test
    void externalDataKilnWritesIsReadByOnnxRuntime(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        int batch = 6;
        java.nio.file.Path f = dir.resolve("m.onnx");
        try (Sequential m = Sequential.builder(12).dense(20, Init.HE, 1).gelu().layerNorm(1e-5f).dense(5, Init.XAVIER, 2)
                .softmax().build(); InferenceSession kiln = m.compile(batch);
                Tensor x = Tensor.zeros(DType.F32, batch, 12).fillUniform(-2, 2, 3);
                Tensor y = Tensor.zeros(DType.F32, batch, 5)) {
            OnnxModels.saveWithExternalData(m, f);
            try (OrtSession.SessionOptions opts = new OrtSession.SessionOptions();
                    OrtSession ort = env.createSession(f.toString(), opts);
                    OnnxTensor in = OnnxTensor.createTensor(env, java.nio.FloatBuffer.wrap(x.toFloatArray()), new long[] {batch, 12});
                    OrtSession.Result res = ort.run(Map.of("input", in))) {
                kiln.run(x, y);
                float[][] want = (float[][]) res.get(0).getValue();
                float[] got = y.toFloatArray();
                assertClose(want, got, 1e-6, "external data");
            }
        }
    }

    /**
     * Files laid out as PyTorch exports an image MLP, built here with the protobuf API: input
     * [N, 1, 4, 3], x.view(x.size(0), -1) as Shape/Gather/Unsqueeze/Concat/Reshape (Unsqueeze's axes an
     * attribute at opset 11, an input at 13) or Flatten (opset 9), then Gemm, Relu, Gemm, Softmax; at
     * opsets 11 and 17 the graph first preprocesses x (Div by 255, Sub of a mean per image row).
     * ONNX Runtime runs the file on the image tensor, Kiln on the same memory as rows.
     */
    @Test
    void imageInputsFlattenedAsPyTorchWritesThemEqualOnnxRuntime() throws Exception {
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        Random r = new Random(7);
        for (int opset : new int[] {9, 11, 13, 17}) {
            byte[] file = imageMlp(r, opset);
            int batch = 5;
            try (Sequential m = OnnxModels.fromBytes(file); InferenceSession kiln = m.compile(8);
                    Tensor x = Tensor.zeros(DType.F32, batch, 1, 4, 3).fillNormal(0, 1, opset);
                    Tensor y = Tensor.zeros(DType.F32, batch, 3);
                    OrtSession.SessionOptions opts = new OrtSession.SessionOptions();
                    OrtSession ort = env.createSession(file, opts);
                    OnnxTensor in = OnnxTensor.createTensor(env, java.nio.FloatBuffer.wrap(x.toFloatArray()),
                            new long[] {batch, 1, 4, 3});
                    OrtSession.Result res = ort.run(Map.of("x", in))) {
                assertEquals(12, m.inputFeatures());
                kiln.run(x, y);
                float[][] want = (float[][]) res.get(0).getValue();
                float[] got = y.toFloatArray();
                assertClose(want, got, 1e-6, "opset " + opset);
            }
        }
    }

    private static byte[] imageMlp(Random r, int opset) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("image-mlp")
                .addInput(value("x", 1, 4, 3)).addOutput(value("y", 3))
                .addInitializer(floats("w1", r, 7, 12)).addInitializer(floats("b1", r, 7))
                .addInitializer(floats("w2", r, 3, 7)).addInitializer(floats("b2", r, 3));
        String src = "x";
        if (opset == 11 || opset == 17) { // preprocessing in the graph: x / 255 - mean per image row, folded by Kiln
            g.addInitializer(TensorProto.newBuilder().setName("k255").setDataType(TensorProto.DataType.FLOAT_VALUE)
                    .addFloatData(255f)).addInitializer(floats("mean", r, 1, 4, 1))
                    .addNode(node("Div", "x1", "x", "k255")).addNode(node("Sub", "x2", "x1", "mean"));
            src = "x2";
        }
        if (opset == 9) {
            g.addNode(node("Flatten", "rows", src));
        } else {
            g.addNode(node("Shape", "s", src)).addInitializer(longs("zero", true, 0))
                    .addNode(node("Gather", "n", "s", "zero"))
                    .addInitializer(longs("minus1", false, -1));
            if (opset < 13) {
                g.addNode(node("Unsqueeze", "n1", "n").toBuilder().addAttribute(AttributeProto.newBuilder().setName("axes")
                        .setType(AttributeProto.AttributeType.INTS).addInts(0)));
            } else {
                g.addInitializer(longs("axes", false, 0)).addNode(node("Unsqueeze", "n1", "n", "axes"));
            }
            g.addNode(node("Concat", "shape", "n1", "minus1").toBuilder().addAttribute(AttributeProto.newBuilder()
                    .setName("axis").setType(AttributeProto.AttributeType.INT).setI(0)))
                    .addNode(node("Reshape", "rows", src, "shape"));
        }
        AttributeProto transB = AttributeProto.newBuilder().setName("transB").setType(AttributeProto.AttributeType.INT).setI(1).build();
        g.addNode(node("Gemm", "h1", "rows", "w1", "b1").toBuilder().addAttribute(transB))
                .addNode(node("Relu", "h2", "h1"))
                .addNode(node("Gemm", "h3", "h2", "w2", "b2").toBuilder().addAttribute(transB))
                .addNode(node("Softmax", "y", "h3"));
        return ModelProto.newBuilder().setIrVersion(opset >= 13 ? 7 : 4)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(opset)).setGraph(g).build().toByteArray();
    }

    private static NodeProto node(String op, String out, String... in) {
        NodeProto.Builder n = NodeProto.newBuilder().setOpType(op).setName("/" + out + "/" + op).addOutput(out);
        for (String i : in) {
            n.addInput(i);
        }
        return n.build();
    }

    private static ValueInfoProto value(String name, long... dims) {
        TensorShapeProto.Builder s = TensorShapeProto.newBuilder().addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("N"));
        for (long d : dims) {
            s.addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(d));
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(
                TypeProto.Tensor.newBuilder().setElemType(TensorProto.DataType.FLOAT_VALUE).setShape(s))).build();
    }

    private static TensorProto floats(String name, Random r, long... dims) {
        return GenerateFuzzSeeds.floats(name, () -> r.nextDouble() - 0.5, dims);
    }

    private static TensorProto longs(String name, boolean scalar, long v) {
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(TensorProto.DataType.INT64_VALUE).addInt64Data(v);
        if (!scalar) {
            t.addDims(1);
        }
        return t.build();
    }
}
