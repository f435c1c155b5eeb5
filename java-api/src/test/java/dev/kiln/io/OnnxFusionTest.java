package dev.kiln.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.kiln.infer.InferenceSession;
import dev.kiln.internal.onnx.Onnx.AttributeProto;
import dev.kiln.internal.onnx.Onnx.GraphProto;
import dev.kiln.internal.onnx.Onnx.ModelProto;
import dev.kiln.internal.onnx.Onnx.NodeProto;
import dev.kiln.internal.onnx.Onnx.OperatorSetIdProto;
import dev.kiln.internal.onnx.Onnx.TensorProto;
import dev.kiln.internal.onnx.Onnx.ValueInfoProto;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.Activation;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.util.Random;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;

/**
 * Graphs as PyTorch's exporter writes them for older opsets (built here with the protobuf API, node
 * for node as torch 1.13 wrote them for nn.LayerNorm, nn.GELU() and nn.GELU(approximate='tanh'), with
 * Constant nodes for the scalars) import as the same model as their one-op forms.
 */
class OnnxFusionTest {
    private static final Random R = new Random(11);
    private static final float[] W1 = rnd(4 * 6), B1 = rnd(4), G = rnd(4), BETA = rnd(4), W2 = rnd(3 * 4), B2 = rnd(3);

    private static float[] rnd(int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (R.nextDouble() - 0.5);
        }
        return v;
    }

    private static TensorProto floats(String name, float[] v, long... dims) {
        return OnnxModelsTest.init(name, v, dims);
    }

    private static ValueInfoProto io(String name, long f) {
        return OnnxModelsTest.io(name, f);
    }

    private static NodeProto node(String name, String op, String out, String... in) {
        NodeProto.Builder n = NodeProto.newBuilder().setName(name).setOpType(op).addOutput(out);
        for (String s : in) {
            n.addInput(s);
        }
        return n.build();
    }

    /** A Constant node holding a scalar float as PyTorch writes it (a rank-0 tensor in `value`). */
    private static NodeProto constant(String out, float v) {
        return NodeProto.newBuilder().setName(out + "/Constant").setOpType("Constant").addOutput(out)
                .addAttribute(AttributeProto.newBuilder().setName("value").setType(AttributeProto.AttributeType.TENSOR)
                        .setT(floats("", new float[] {v})))
                .build();
    }

    private static AttributeProto ints(String name, long... v) {
        AttributeProto.Builder a = AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INTS);
        for (long x : v) {
            a.addInts(x);
        }
        return a.build();
    }

    /** Gemm -> LayerNorm -> GELU (erf) -> Gemm -> GELU (tanh): decomposed as PyTorch writes them, or as single ops. */
    private static GraphProto.Builder graph(boolean decomposed) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("torch-like")
                .addInitializer(floats("0.weight", W1, 4, 6)).addInitializer(floats("0.bias", B1, 4))
                .addInitializer(floats("1.weight", G, 4)).addInitializer(floats("1.bias", BETA, 4))
                .addInitializer(floats("3.weight", W2, 3, 4)).addInitializer(floats("3.bias", B2, 3))
                .addInput(io("x", 6)).addOutput(io("y", 3));
        AttributeProto transB = AttributeProto.newBuilder().setName("transB").setType(AttributeProto.AttributeType.INT).setI(1).build();
        g.addNode(node("/0/Gemm", "Gemm", "h0", "x", "0.weight", "0.bias").toBuilder().addAttribute(transB));
        if (decomposed) {
            g.addNode(node("/1/ReduceMean", "ReduceMean", "m", "h0").toBuilder().addAttribute(ints("axes", -1)));
            g.addNode(node("/1/Sub", "Sub", "d", "h0", "m"));
            g.addNode(constant("two", 2f));
            g.addNode(node("/1/Pow", "Pow", "p", "d", "two"));
            g.addNode(node("/1/ReduceMean_1", "ReduceMean", "v", "p").toBuilder().addAttribute(ints("axes", -1)));
            g.addNode(constant("eps", 1e-5f));
            g.addNode(node("/1/Add", "Add", "ve", "v", "eps"));
            g.addNode(node("/1/Sqrt", "Sqrt", "s", "ve"));
            g.addNode(node("/1/Div", "Div", "n", "d", "s"));
            g.addNode(node("/1/Mul", "Mul", "ng", "n", "1.weight"));
            g.addNode(node("/1/Add_1", "Add", "h1", "ng", "1.bias"));
            g.addNode(constant("sqrt2", (float) Math.sqrt(2)));
            g.addNode(node("/2/Div", "Div", "e0", "h1", "sqrt2"));
            g.addNode(node("/2/Erf", "Erf", "e1", "e0"));
            g.addNode(constant("one", 1f));
            g.addNode(node("/2/Add", "Add", "e2", "e1", "one"));
            g.addNode(node("/2/Mul", "Mul", "e3", "h1", "e2"));
            g.addNode(constant("half", 0.5f));
            g.addNode(node("/2/Mul_1", "Mul", "h2", "e3", "half"));
        } else {
            g.addNode(node("ln", "LayerNormalization", "h1", "h0", "1.weight", "1.bias").toBuilder()
                    .addAttribute(AttributeProto.newBuilder().setName("epsilon").setType(AttributeProto.AttributeType.FLOAT).setF(1e-5f)));
            g.addNode(node("gelu", "Gelu", "h2", "h1"));
        }
        g.addNode(node("/3/Gemm", "Gemm", "h3", "h2", "3.weight", "3.bias").toBuilder().addAttribute(transB));
        if (decomposed) { // the constants before their users, as the exporter orders them; Mul(c, .) with the constant first
            g.addNode(node("/4/Mul", "Mul", "t0", "h3", "h3"));
            g.addNode(node("/4/Mul_1", "Mul", "t1", "h3", "t0"));
            g.addNode(constant("c", 0.044715f));
            g.addNode(node("/4/Mul_2", "Mul", "t2", "c", "t1"));
            g.addNode(node("/4/Add", "Add", "t3", "h3", "t2"));
            g.addNode(constant("k", (float) Math.sqrt(2 / Math.PI)));
            g.addNode(node("/4/Mul_3", "Mul", "t4", "k", "t3"));
            g.addNode(node("/4/Tanh", "Tanh", "t5", "t4"));
            g.addNode(constant("one_t", 1f));
            g.addNode(node("/4/Add_1", "Add", "t6", "one_t", "t5"));
            g.addNode(node("/4/Mul_4", "Mul", "t7", "h3", "t6"));
            g.addNode(constant("half_t", 0.5f));
            g.addNode(node("/4/Mul_5", "Mul", "y", "half_t", "t7"));
        } else {
            g.addNode(node("gelu_t", "Gelu", "y", "h3").toBuilder()
                    .addAttribute(AttributeProto.newBuilder().setName("approximate").setType(AttributeProto.AttributeType.STRING)
                            .setS(ByteString.copyFromUtf8("tanh"))));
        }
        return g;
    }

    private static byte[] model(GraphProto.Builder g, int opset) {
        return ModelProto.newBuilder().setIrVersion(8).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(opset))
                .setGraph(g).build().toByteArray();
    }

    private static float[] run(Sequential m, Tensor x) {
        try (InferenceSession s = m.compile((int) x.size(0)); Tensor y = Tensor.zeros(DType.F32, x.size(0), m.outputFeatures())) {
            s.run(x, y);
            return y.toFloatArray();
        }
    }

    @Test
    void pytorchDecompositionsImportAsTheOpsTheyStandFor() {
        try (Sequential decomposed = OnnxModels.fromBytes(model(graph(true), 13));
                Sequential fused = OnnxModels.fromBytes(model(graph(false), 20));
                Tensor x = Tensor.zeros(DType.F32, 5, 6).fillNormal(0, 2, 3)) {
            assertEquals(fused.layers().size(), decomposed.layers().size());
            assertEquals(Activation.GELU, decomposed.layers().get(2).activation());
            assertEquals(Activation.GELU_TANH, decomposed.layers().get(4).activation());
            assertArrayEquals(run(fused, x), run(decomposed, x));
        }
    }

    /** Rewrites the decomposed graph with one node changed. */
    private static byte[] decomposedWith(String nodeName, UnaryOperator<NodeProto> change) {
        GraphProto.Builder g = graph(true);
        for (int i = 0; i < g.getNodeCount(); i++) {
            if (g.getNode(i).getName().equals(nodeName)) {
                g.setNode(i, change.apply(g.getNode(i)));
            }
        }
        return model(g, 13);
    }

    private static String refusal(byte[] model) {
        return assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(model)).getMessage();
    }

    /** The other spellings: axes as an input (opset 18), x / sqrt 2 as x * (1 / sqrt 2), (x * 0.5) * (1 + erf),
     *  x^3 as Pow(x, 3). */
    @Test
    void otherSpellingsOfThePatternsFuseToo() {
        GraphProto.Builder g = graph(true);
        g.addNode(NodeProto.newBuilder().setName("axes").setOpType("Constant").addOutput("axes")
                .addAttribute(ints("value_ints", -1).toBuilder().setName("value_ints")));
        g.addNode(constant("three", 3f));
        g.addNode(constant("rsqrt2", (float) Math.sqrt(0.5)));
        for (int i = 0; i < g.getNodeCount(); i++) {
            NodeProto n = g.getNode(i);
            switch (n.getName()) {
                case "/1/ReduceMean":
                case "/1/ReduceMean_1":
                    g.setNode(i, n.toBuilder().clearAttribute().addInput("axes").build());
                    break;
                case "/2/Div":
                    g.setNode(i, node("/2/Mul_scale", "Mul", "e0", "rsqrt2", "h1"));
                    break;
                case "/2/Mul": // x * 0.5 first, then times (1 + erf)
                    g.setNode(i, node("/2/Mul", "Mul", "e3", "h1", "half"));
                    break;
                case "/2/Mul_1":
                    g.setNode(i, node("/2/Mul_1", "Mul", "h2", "e2", "e3"));
                    break;
                case "/4/Mul": // Pow(x, 3) for x * (x * x)
                    g.setNode(i, node("/4/Pow", "Pow", "t1", "h3", "three"));
                    break;
                default:
                    break;
            }
        }
        for (int i = 0; i < g.getNodeCount(); i++) {
            if (g.getNode(i).getName().equals("/4/Mul_1")) { // (its x * x * x is the Pow now)
                g.removeNode(i);
                break;
            }
        }
        try (Sequential decomposed = OnnxModels.fromBytes(model(g, 18));
                Sequential fused = OnnxModels.fromBytes(model(graph(false), 20));
                Tensor x = Tensor.zeros(DType.F32, 5, 6).fillNormal(0, 2, 4)) {
            assertEquals(fused.layers().size(), decomposed.layers().size());
            assertArrayEquals(run(fused, x), run(decomposed, x));
        }
    }

    @Test
    void anythingElseIsLeftUnfusedAndRefusedNamingTheOp() {
        // GELU's constant 1 is 2: not GELU.
        String m = refusal(decomposedWith("one/Constant", n -> constant("one", 2f)));
        assertTrue(m.startsWith("onnx: unsupported op Erf at node '/2/Erf'"), m); // (the Div by a constant is a scale-shift)
        // The variance over the batch axis (0): not a LayerNorm of rows.
        m = refusal(decomposedWith("/1/ReduceMean_1", n -> n.toBuilder().clearAttribute().addAttribute(ints("axes", 0)).build()));
        assertTrue(m.startsWith("onnx: unsupported op ReduceMean at node '/1/ReduceMean'"), m);
        // keepdims = 0 (another shape), and a value inside the pattern that another node also reads.
        m = refusal(decomposedWith("/1/ReduceMean", n -> n.toBuilder().addAttribute(AttributeProto.newBuilder().setName("keepdims")
                .setType(AttributeProto.AttributeType.INT).setI(0)).build()));
        assertTrue(m.startsWith("onnx: unsupported op ReduceMean at node '/1/ReduceMean'"), m);
        m = refusal(decomposedWith("/2/Mul_1", n -> node("/2/Mul_1", "Mul", "h2", "e3", "e2")));
        assertTrue(m.startsWith("onnx: unsupported op Erf at node '/2/Erf'"), m); // (the Div by a constant is a scale-shift)
        // Malformed nodes where a pattern starts or ends (found by the fuzzer: an IndexOutOfBoundsException).
        for (String name : new String[] {"/1/ReduceMean", "/1/Sub", "/1/Pow", "/1/Div", "/2/Div", "/4/Mul", "/2/Mul_1"}) {
            refusal(decomposedWith(name, n -> n.toBuilder().clearOutput().build()));
            if (!name.equals("/1/ReduceMean")) { // (binary ops: one input only)
                refusal(decomposedWith(name, n -> n.toBuilder().clearInput().addInput(n.getInput(0)).build()));
            }
        }
        // A value inside a pattern produced twice: refused, not fused away.
        m = refusal(decomposedWith("/2/Erf", n -> n.toBuilder().addOutput("h0").build()));
        assertEquals("onnx: tensor 'h0' is produced twice (node '/2/Erf')", m);
        // The tanh form with another cubic coefficient: not fused, imported op by op (a square, products
        // with earlier values, scale-shifts for the constants), it computes what the graph says.
        GraphProto.Builder head = graph(true);
        while (!head.getNode(head.getNodeCount() - 1).getName().equals("/3/Gemm")) {
            head.removeNode(head.getNodeCount() - 1);
        }
        head.setOutput(0, io("h3", 3)).setNode(head.getNodeCount() - 1, head.getNode(head.getNodeCount() - 1).toBuilder()
                .setOutput(0, "h3").build());
        try (Sequential other = OnnxModels.fromBytes(decomposedWith("c/Constant", n -> constant("c", 0.05f)));
                Sequential h3 = OnnxModels.fromBytes(model(head, 13));
                Tensor x = Tensor.zeros(DType.F32, 5, 6).fillNormal(0, 2, 3)) {
            assertTrue(other.toString().endsWith("dense 3 -> square -> * value 4 -> scale_shift -> + value 4 -> scale_shift -> "
                    + "tanh -> scale_shift -> * value 4 -> scale_shift]"), other.toString());
            float[] h = run(h3, x), got = run(other, x);
            double k = (float) Math.sqrt(2 / Math.PI);
            for (int i = 0; i < h.length; i++) {
                double want = 0.5 * h[i] * (1 + Math.tanh(k * (h[i] + 0.05f * h[i] * h[i] * h[i])));
                assertEquals(want, got[i], 1e-5 * Math.max(1, Math.abs(want)), "element " + i);
            }
        }
    }

    /** Linear + BatchNorm1d + ReLU as PyTorch exports it in eval mode: the batch norm folds into the Gemm. */
    private static GraphProto.Builder batchNorm(float[] mean, float[] var) {
        AttributeProto transB = AttributeProto.newBuilder().setName("transB").setType(AttributeProto.AttributeType.INT).setI(1).build();
        return GraphProto.newBuilder().setName("bn")
                .addInitializer(floats("0.weight", W1, 4, 6)).addInitializer(floats("0.bias", B1, 4))
                .addInitializer(floats("1.weight", G, 4)).addInitializer(floats("1.bias", BETA, 4))
                .addInitializer(floats("1.running_mean", mean, 4)).addInitializer(floats("1.running_var", var, 4))
                .addInput(io("x", 6)).addOutput(io("y", 4))
                .addNode(node("/0/Gemm", "Gemm", "h0", "x", "0.weight", "0.bias").toBuilder().addAttribute(transB))
                .addNode(node("/1/BatchNormalization", "BatchNormalization", "h1", "h0", "1.weight", "1.bias",
                        "1.running_mean", "1.running_var").toBuilder()
                        .addAttribute(AttributeProto.newBuilder().setName("epsilon").setType(AttributeProto.AttributeType.FLOAT).setF(1e-3f))
                        .addAttribute(AttributeProto.newBuilder().setName("momentum").setType(AttributeProto.AttributeType.FLOAT).setF(0.9f)))
                .addNode(node("/2/Relu", "Relu", "y", "h1"));
    }

    /** Feature j of row r of the graph's first Gemm, x W1^T + B1, in double. */
    private static double firstGemm(float[] xs, int r, int j) {
        double h = B1[j];
        for (int k = 0; k < 6; k++) {
            h += (double) xs[r * 6 + k] * W1[j * 6 + k];
        }
        return h;
    }

    @Test
    void batchNormAfterAGemmFoldsIntoIt() {
        float[] mean = {0.1f, -0.2f, 0.3f, 0f}, var = {0.5f, 2f, 0.01f, 1f};
        try (Sequential m = OnnxModels.fromBytes(model(batchNorm(mean, var), 13));
                Tensor x = Tensor.zeros(DType.F32, 3, 6).fillNormal(0, 1, 5)) {
            assertEquals(2, m.layers().size()); // the Gemm (batch norm folded in) and the ReLU
            float[] xs = x.toFloatArray(), got = run(m, x);
            for (int r = 0; r < 3; r++) {
                for (int j = 0; j < 4; j++) {
                    double h = firstGemm(xs, r, j);
                    double want = Math.max(0, (h - mean[j]) / Math.sqrt(var[j] + 1e-3) * G[j] + BETA[j]);
                    assertEquals(want, got[r * 4 + j], 1e-5 * (1 + Math.abs(want)), "row " + r + " feature " + j);
                }
            }
        }
        String msg = refusal(model(batchNorm(mean, new float[] {0.5f, -2f, 0.01f, 1f}), 13));
        assertEquals("onnx: node '/1/BatchNormalization' (BatchNormalization): variance -2.0 + epsilon 0.0010000000474974513"
                + " of feature 1 is not positive", msg);
        // Not right after a Gemm (after the ReLU), or after one whose result also feeds a residual Add:
        // a scale-shift layer, x * s + t with s = gamma / sqrt(var + eps), t = beta - mean s.
        GraphProto.Builder late = batchNorm(mean, var);
        NodeProto bn = late.getNode(1);
        late.setNode(1, node("/2/Relu", "Relu", "h1", "h0")).setNode(2, bn.toBuilder().setInput(0, "h1").setOutput(0, "y").build());
        GraphProto.Builder shared = batchNorm(mean, var);
        shared.setNode(2, node("/2/Relu", "Relu", "h2", "h1")).addNode(node("res", "Add", "y", "h2", "h0"));
        for (boolean after : new boolean[] {true, false}) {
            try (Sequential m = OnnxModels.fromBytes(model(after ? late : shared, 13));
                    Tensor x = Tensor.zeros(DType.F32, 3, 6).fillNormal(0, 1, 5)) {
                assertEquals(after ? "Sequential[6 -> dense 4 -> relu -> scale_shift]"
                        : "Sequential[6 -> dense 4 -> scale_shift -> relu -> + value 1]", m.toString());
                float[] xs = x.toFloatArray(), got = run(m, x);
                for (int r = 0; r < 3; r++) {
                    for (int j = 0; j < 4; j++) {
                        double h = firstGemm(xs, r, j);
                        double s = G[j] / Math.sqrt(var[j] + 1e-3), t = BETA[j] - mean[j] * s;
                        double want = after ? Math.max(0, h) * s + t : Math.max(0, h * s + t) + h;
                        assertEquals(want, got[r * 4 + j], 1e-5 * (1 + Math.abs(want)), "row " + r + " feature " + j);
                    }
                }
            }
        }
    }

    /**
     * Mul, Sub, Div and Add by constants right after a Gemm (or a MatMul without bias) whose result
     * feeds nothing else fold into its weights and bias, in double, as a batch norm there does.
     */
    @Test
    void constantsRightAfterAGemmFoldIntoIt() {
        AttributeProto transB = AttributeProto.newBuilder().setName("transB").setType(AttributeProto.AttributeType.INT).setI(1).build();
        float[] k = {2f, -0.5f, 3f, 0.25f}, c = {0.1f, -0.2f, 0.3f, 0f}, d = {4f, 0.5f, -2f, 1f};
        float[] w1t = new float[6 * 4]; // W1^T: [6, 4] for the MatMul
        for (int i = 0; i < 6; i++) {
            for (int j = 0; j < 4; j++) {
                w1t[i * 4 + j] = W1[j * 6 + i];
            }
        }
        for (boolean gemm : new boolean[] {true, false}) {
            GraphProto.Builder g = GraphProto.newBuilder().setName("consts").addInitializer(floats("w", W1, 4, 6))
                    .addInitializer(floats("wt", w1t, 6, 4)).addInitializer(floats("b", B1, 4))
                    .addInitializer(floats("k", k, 4)).addInitializer(floats("c", c, 1, 4)).addInitializer(floats("d", d, 4))
                    .addInput(io("x", 6)).addOutput(io("y", 4));
            if (gemm) {
                g.addNode(node("/0/Gemm", "Gemm", "h0", "x", "w", "b").toBuilder().addAttribute(transB));
            } else { // MatMul, then the scaling, then the bias Add: x W k + b ...
                g.addNode(node("/0/MatMul", "MatMul", "h0", "x", "wt"));
            }
            g.addNode(node("/1/Mul", "Mul", "h1", "h0", "k"));
            if (!gemm) {
                g.addNode(node("/1/Add", "Add", "h1b", "h1", "b"));
            }
            g.addNode(node("/2/Sub", "Sub", "h2", gemm ? "h1" : "h1b", "c")).addNode(node("/3/Div", "Div", "h3", "h2", "d"))
                    .addNode(node("/4/Relu", "Relu", "y", "h3"));
            try (Sequential m = OnnxModels.fromBytes(model(g, 13)); Tensor x = Tensor.zeros(DType.F32, 3, 6).fillNormal(0, 1, 5)) {
                assertEquals("Sequential[6 -> dense 4 -> relu]", m.toString());
                float[] xs = x.toFloatArray(), got = run(m, x);
                for (int r = 0; r < 3; r++) {
                    for (int j = 0; j < 4; j++) {
                        double h = firstGemm(xs, r, j) - B1[j]; // x W^T
                        double lin = gemm ? (h + B1[j]) * k[j] : h * k[j] + B1[j];
                        double want = Math.max(0, (lin - c[j]) / d[j]);
                        assertEquals(want, got[r * 4 + j], 1e-5 * (1 + Math.abs(want)), "row " + r + " feature " + j);
                    }
                }
            }
        }
    }

    /**
     * F.normalize(x W1^T + B1, dim=1) as torch 1.13 writes it (ReduceL2 kept; Clip with min eps as an
     * attribute below opset 11, as an input from 11; Expand to Shape(h); Div), Kiln's own Max form, and
     * LpNormalization (no eps) import as one L2 normalization; what differs is left to be refused.
     */
    @Test
    void fNormalizeImportsAsAnL2Normalization() {
        AttributeProto transB = AttributeProto.newBuilder().setName("transB").setType(AttributeProto.AttributeType.INT).setI(1).build();
        AttributeProto keep = AttributeProto.newBuilder().setName("keepdims").setType(AttributeProto.AttributeType.INT).setI(1).build();
        AttributeProto min = AttributeProto.newBuilder().setName("min").setType(AttributeProto.AttributeType.FLOAT).setF(1e-12f).build();
        java.util.function.IntFunction<GraphProto.Builder> base = form -> {
            GraphProto.Builder g = GraphProto.newBuilder().setName("normalize").addInitializer(floats("w", W1, 4, 6))
                    .addInitializer(floats("b", B1, 4)).addInput(io("x", 6)).addOutput(io("y", 4))
                    .addNode(node("/0/Gemm", "Gemm", "h", "x", "w", "b").toBuilder().addAttribute(transB))
                    .addNode(node("/ReduceL2", "ReduceL2", "n", "h").toBuilder().addAttribute(ints("axes", form == 3 ? -1 : 1))
                            .addAttribute(keep));
            switch (form) {
                case 0 -> g.addNode(node("/Clip", "Clip", "c", "n").toBuilder().addAttribute(min)); // opset 9
                case 1, 3 -> g.addNode(constant("eps", 1e-12f)).addNode(node("/Clip", "Clip", "c", "n", "eps", "")); // 11+
                default -> g.addNode(constant("eps", 1e-12f)).addNode(node("/Max", "Max", "c", "n", "eps")); // Kiln's
            }
            if (form == 2) {
                return g.addNode(node("/Div", "Div", "y", "h", "c"));
            }
            return g.addNode(node("/Shape", "Shape", "s", "h")).addNode(node("/Expand", "Expand", "e", "c", "s"))
                    .addNode(node("/Div", "Div", "y", "h", "e"));
        };
        try (Tensor x = Tensor.zeros(DType.F32, 3, 6).fillNormal(0, 1, 5)) {
            float[] xs = x.toFloatArray();
            for (int form = 0; form < 5; form++) {
                byte[] file = form == 4
                        ? model(GraphProto.newBuilder().setName("lp").addInitializer(floats("w", W1, 4, 6)).addInitializer(floats("b", B1, 4))
                                .addInput(io("x", 6)).addOutput(io("y", 4))
                                .addNode(node("/0/Gemm", "Gemm", "h", "x", "w", "b").toBuilder().addAttribute(transB))
                                .addNode(node("/Lp", "LpNormalization", "y", "h").toBuilder().addAttribute(AttributeProto.newBuilder()
                                        .setName("axis").setType(AttributeProto.AttributeType.INT).setI(-1))), 13)
                        : model(base.apply(form), form == 0 ? 9 : 13);
                try (Sequential m = OnnxModels.fromBytes(file)) {
                    assertEquals("Sequential[6 -> dense 4 -> l2_normalize]", m.toString(), "form " + form);
                    assertEquals(form == 4 ? 0f : 1e-12f, m.layers().get(1).eps());
                    float[] got = run(m, x);
                    for (int r = 0; r < 3; r++) {
                        double norm = 0;
                        for (int j = 0; j < 4; j++) {
                            norm += firstGemm(xs, r, j) * firstGemm(xs, r, j);
                        }
                        for (int j = 0; j < 4; j++) {
                            assertEquals(firstGemm(xs, r, j) / Math.sqrt(norm), got[r * 4 + j], 1e-6, "form " + form);
                        }
                    }
                }
            }
            // A Clip with a max too is not F.normalize: left as it is, the ReduceL2 is refused by name.
            GraphProto.Builder capped = base.apply(1);
            capped.addNode(constant("cap", 5f)).setNode(capped.getNodeList().indexOf(capped.getNodeList().stream()
                    .filter(n -> n.getOpType().equals("Clip")).findFirst().orElseThrow()), node("/Clip", "Clip", "c", "n", "eps", "cap"));
            assertTrue(refusal(model(capped, 13)).startsWith("onnx: unsupported op ReduceL2 at node '/ReduceL2'"));
            GraphProto.Builder l1 = GraphProto.newBuilder().setName("lp1").addInitializer(floats("w", W1, 4, 6))
                    .addInitializer(floats("b", B1, 4)).addInput(io("x", 6)).addOutput(io("y", 4))
                    .addNode(node("/0/Gemm", "Gemm", "h", "x", "w", "b").toBuilder().addAttribute(transB))
                    .addNode(node("/Lp", "LpNormalization", "y", "h").toBuilder().addAttribute(
                            AttributeProto.newBuilder().setName("p").setType(AttributeProto.AttributeType.INT).setI(1)));
            assertEquals("onnx: unsupported p = 1 (Kiln normalizes by the L2 norm, p = 2) in op LpNormalization at node '/Lp'",
                    refusal(model(l1, 13)));
        }
    }

    @Test
    void constantNodesActAsInitializers() {
        // A Reshape whose shape comes from a Constant node (value_ints), and a Constant whose name an
        // initializer already has.
        GraphProto.Builder g = GraphProto.newBuilder().setName("c").addInitializer(floats("w", W1, 6, 4))
                .addInput(io("x", 6)).addOutput(io("y", 4))
                .addNode(NodeProto.newBuilder().setName("shape").setOpType("Constant").addOutput("s")
                        .addAttribute(ints("value_ints", -1, 6).toBuilder().setName("value_ints")))
                .addNode(node("r", "Reshape", "x2", "x", "s"))
                .addNode(node("mm", "MatMul", "y", "x2", "w"));
        try (Sequential m = OnnxModels.fromBytes(model(g, 13)); Tensor x = Tensor.zeros(DType.F32, 2, 6).fillNormal(0, 1, 1)) {
            assertEquals(4, m.outputFeatures());
            assertEquals(8, run(m, x).length);
        }
        g.addNode(NodeProto.newBuilder().setName("dup").setOpType("Constant").addOutput("w")
                .addAttribute(AttributeProto.newBuilder().setName("value_float").setType(AttributeProto.AttributeType.FLOAT).setF(1f)));
        assertEquals("onnx: tensor 'w' is produced twice (node 'dup')", refusal(model(g, 13)));
    }
}
