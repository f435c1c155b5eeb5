package dev.kiln.io;

import static dev.kiln.io.OnnxModelsTest.init;
import static dev.kiln.io.OnnxShapesTest.node;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.infer.InferenceSession;
import dev.kiln.internal.onnx.Onnx.AttributeProto;
import dev.kiln.internal.onnx.Onnx.GraphProto;
import dev.kiln.internal.onnx.Onnx.ModelProto;
import dev.kiln.internal.onnx.Onnx.NodeProto;
import dev.kiln.internal.onnx.Onnx.OperatorSetIdProto;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.Activation;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Ops;
import dev.kiln.tensor.Tensor;
import java.util.function.Consumer;
import java.util.function.DoubleUnaryOperator;
import org.junit.jupiter.api.Test;

/**
 * SiLU, ELU, Softplus, SELU, Mish, ReLU6, hardtanh, hard sigmoid and hardswish: the ops against
 * double-precision formulas, export and import round trips, the forms PyTorch's exporter writes
 * (x * Sigmoid(x); Softplus, Tanh, Mul below opset 18; x * HardSigmoid(x) below opset 14; PRelu with
 * one slope, and with one per feature; Clip to [0, inf)), and what is refused.
 */
class OnnxActivationsTest {
    static double softplus(double x) {
        return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
    }

    @Test
    void theOpsMatchTheirFormulas() {
        Object[][] cases = {
            {Activation.SILU, 0f, (DoubleUnaryOperator) x -> x / (1 + Math.exp(-x))},
            {Activation.ELU, 0.7f, (DoubleUnaryOperator) x -> x > 0 ? x : 0.7 * Math.expm1(x)},
            {Activation.SOFTPLUS, 0f, (DoubleUnaryOperator) OnnxActivationsTest::softplus},
            {Activation.SELU, 0f, (DoubleUnaryOperator) x -> 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * Math.expm1(x))},
            {Activation.MISH, 0f, (DoubleUnaryOperator) x -> x * Math.tanh(softplus(x))},
            {Activation.BOUNDED_RELU, 6f, (DoubleUnaryOperator) x -> Math.min(Math.max(x, 0), 6)},
            {Activation.HARDTANH, 2f, (DoubleUnaryOperator) x -> Math.min(Math.max(x, -2), 2)},
            // alpha x + 1/2 cancels near the lower kink: an absolute bound of a float's rounding at 1/2
            {Activation.HARD_SIGMOID, 1f / 6f, (DoubleUnaryOperator) x -> Math.min(Math.max(x * (1f / 6f) + 0.5, 0), 1), 1.5e-7},
            {Activation.HARD_SIGMOID, 0.2f, (DoubleUnaryOperator) x -> Math.min(Math.max(x * 0.2f + 0.5, 0), 1), 1.5e-7},
            {Activation.HARD_SWISH, 0f, (DoubleUnaryOperator) x -> x * Math.min(Math.max(x + 3, 0), 6) / 6},
        };
        try (Tensor x = Tensor.zeros(DType.F32, 1001).fillUniform(-15, 15, 1); Tensor y = Tensor.zeros(DType.F32, 1001)) {
            float[] xs = x.toFloatArray();
            for (Object[] c : cases) {
                Ops.unary((Activation) c[0], (float) c[1], x, y);
                float[] ys = y.toFloatArray();
                for (int i = 0; i < xs.length; i++) {
                    double want = ((DoubleUnaryOperator) c[2]).applyAsDouble(xs[i]);
                    double abs = c.length > 3 ? (double) c[3] : 1e-30;
                    assertEquals(want, ys[i], 2e-6 * Math.abs(want) + abs, c[0] + " at " + xs[i]);
                }
            }
        }
    }

    @Test
    void exportThenImportIsExact() {
        for (Activation a : new Activation[] {Activation.SILU, Activation.ELU, Activation.SOFTPLUS, Activation.SELU, Activation.MISH,
                Activation.BOUNDED_RELU, Activation.HARDTANH, Activation.HARD_SIGMOID, Activation.HARD_SWISH}) {
            try (Sequential m = Sequential.builder(6).dense(8, Init.HE, 1).activation(a, 0.7f).dense(3, Init.XAVIER, 2).build();
                    Sequential back = OnnxModels.fromBytes(OnnxModels.toBytes(m));
                    Tensor x = Tensor.zeros(DType.F32, 5, 6).fillNormal(0, 2, 3)) {
                assertEquals(a, back.layers().get(1).activation());
                boolean hasAlpha = a.takesAlpha();
                assertEquals(hasAlpha ? 0.7f : 0f, back.layers().get(1).activationAlpha(), a.name());
                assertArrayEquals(run(m, x), run(back, x), a.name());
            }
        }
    }

    static float[] run(Sequential m, Tensor x) {
        try (InferenceSession s = m.compile((int) x.size(0)); Tensor y = Tensor.zeros(DType.F32, x.size(0), m.outputFeatures())) {
            s.run(x, y);
            return y.toFloatArray();
        }
    }

    private static final float[] W1 = new float[8 * 6], B1 = new float[8], W2 = new float[3 * 8], B2 = new float[3];

    static {
        java.util.Random r = new java.util.Random(2);
        for (float[] v : new float[][] {W1, B1, W2, B2}) {
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) (r.nextGaussian() * 0.6);
            }
        }
    }

    /** x [N, 6] -> Gemm(transB) -> "h"; the nodes {@code act} adds read "h" and end in "a" -> Gemm -> y. */
    static ModelProto file(int opset, Consumer<GraphProto.Builder> act) {
        AttributeProto transB = AttributeProto.newBuilder().setName("transB").setType(AttributeProto.AttributeType.INT).setI(1).build();
        GraphProto.Builder g = GraphProto.newBuilder().setName("act").addInput(OnnxModelsTest.io("x", 6))
                .addOutput(OnnxModelsTest.io("y", 3)).addInitializer(init("W1", W1, 8, 6)).addInitializer(init("B1", B1, 8))
                .addInitializer(init("W2", W2, 3, 8)).addInitializer(init("B2", B2, 3))
                .addNode(node("Gemm", "/0/Gemm", "h", "x", "W1", "B1").addAttribute(transB));
        act.accept(g);
        g.addNode(node("Gemm", "/2/Gemm", "y", "a", "W2", "B2").addAttribute(transB));
        return ModelProto.newBuilder().setIrVersion(7).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(opset))
                .setGraph(g).build();
    }

    /** The same network built with Kiln's builder, the activation given. */
    static Sequential reference(Activation a, float alpha) {
        Sequential m = Sequential.builder(6).dense(8, Init.ZEROS, 0).activation(a, alpha).dense(3, Init.ZEROS, 0).build();
        try (Tensor w1 = Tensor.of(W1, 8, 6); Tensor w2 = Tensor.of(W2, 3, 8); Tensor w1t = w1.transpose(0, 1).copy();
                Tensor w2t = w2.transpose(0, 1).copy(); Tensor b1 = Tensor.of(B1, 8); Tensor b2 = Tensor.of(B2, 3)) {
            m.loadParameters(java.util.Map.of("0.weight", w1t, "0.bias", b1, "2.weight", w2t, "2.bias", b2));
        }
        return m;
    }

    static void importsAs(ModelProto f, Activation a, float alpha) {
        try (Sequential got = OnnxModels.fromBytes(f.toByteArray()); Sequential want = reference(a, alpha);
                Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 2, 5)) {
            assertEquals(3, got.layers().size(), got.layers().toString());
            assertEquals(a, got.layers().get(1).activation());
            assertEquals(alpha, got.layers().get(1).activationAlpha());
            assertArrayEquals(run(want, x), run(got, x), 1e-6f);
        }
    }

    static String refusal(ModelProto f) {
        return assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(f.toByteArray()).close()).getMessage();
    }

    static AttributeProto f1(String name, float v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.FLOAT).setF(v).build();
    }

    @Test
    void pyTorchsFormsImportAsTheActivation() {
        importsAs(file(17, g -> g.addNode(node("Sigmoid", "/1/Sigmoid", "s", "h")).addNode(node("Mul", "/1/Mul", "a", "h", "s"))),
                Activation.SILU, 0f);
        importsAs(file(13, g -> g.addNode(node("Sigmoid", "/1/Sigmoid", "s", "h")).addNode(node("Mul", "/1/Mul", "a", "s", "h"))),
                Activation.SILU, 0f);
        importsAs(file(17, g -> g.addNode(node("Softplus", "/1/Softplus", "sp", "h")).addNode(node("Tanh", "/1/Tanh", "t", "sp"))
                .addNode(node("Mul", "/1/Mul", "a", "h", "t"))), Activation.MISH, 0f);
        importsAs(file(18, g -> g.addNode(node("Mish", "/1/Mish", "a", "h"))), Activation.MISH, 0f);
        importsAs(file(11, g -> g.addNode(node("Elu", "/1/Elu", "a", "h").addAttribute(f1("alpha", 0.5f)))), Activation.ELU, 0.5f);
        importsAs(file(11, g -> g.addNode(node("Elu", "/1/Elu", "a", "h"))), Activation.ELU, 1f);
        importsAs(file(13, g -> g.addNode(node("Selu", "/1/Selu", "a", "h"))), Activation.SELU, 0f);
        importsAs(file(13, g -> g.addNode(node("Softplus", "/1/Softplus", "a", "h"))), Activation.SOFTPLUS, 0f);
        importsAs(file(13, g -> g.addInitializer(init("slope", new float[] {0.25f}, 1))
                .addNode(node("PRelu", "/1/PRelu", "a", "h", "slope"))), Activation.LEAKY_RELU, 0.25f);
        importsAs(file(13, g -> g.addInitializer(init("zero", new float[] {0f}))
                .addNode(node("Clip", "/1/Clip", "a", "h", "zero"))), Activation.RELU, 0f);
        importsAs(file(9, g -> g.addNode(node("Clip", "/1/Clip", "a", "h").addAttribute(f1("min", 0f)))), Activation.RELU, 0f);
        importsAs(file(13, g -> g.addInitializer(init("lo", new float[] {0f})).addInitializer(init("hi", new float[] {6f}))
                .addNode(node("Clip", "/1/Clip", "a", "h", "lo", "hi"))), Activation.BOUNDED_RELU, 6f); // nn.ReLU6
        importsAs(file(9, g -> g.addNode(node("Clip", "/1/Clip", "a", "h").addAttribute(f1("min", -1f))
                .addAttribute(f1("max", 1f)))), Activation.HARDTANH, 1f); // nn.Hardtanh, opset 9 attributes
        // nn.Hardsigmoid (alpha 1/6 written), and ONNX's default alpha 0.2
        importsAs(file(9, g -> g.addNode(node("HardSigmoid", "/1/HardSigmoid", "a", "h").addAttribute(f1("alpha", 1f / 6f)))),
                Activation.HARD_SIGMOID, 1f / 6f);
        importsAs(file(13, g -> g.addNode(node("HardSigmoid", "/1/HardSigmoid", "a", "h"))), Activation.HARD_SIGMOID, 0.2f);
        // nn.Hardswish: HardSwish from opset 14, x * HardSigmoid(x) (alpha 1/6) below it, either order
        importsAs(file(14, g -> g.addNode(node("HardSwish", "/1/HardSwish", "a", "h"))), Activation.HARD_SWISH, 0f);
        importsAs(file(13, g -> g.addNode(node("HardSigmoid", "/1/HardSigmoid", "s", "h").addAttribute(f1("alpha", 1f / 6f)))
                .addNode(node("Mul", "/1/Mul", "a", "h", "s"))), Activation.HARD_SWISH, 0f);
        importsAs(file(9, g -> g.addNode(node("HardSigmoid", "/1/HardSigmoid", "s", "h").addAttribute(f1("alpha", 1f / 6f))
                .addAttribute(f1("beta", 0.5f))).addNode(node("Mul", "/1/Mul", "a", "s", "h"))), Activation.HARD_SWISH, 0f);
    }

    /** x * HardSigmoid(x) with another slope is no hardswish: it imports as what it is, a gate. */
    @Test
    void aHardSigmoidGateOfAnotherSlopeStaysAGate() {
        ModelProto f = file(13, g -> g.addNode(node("HardSigmoid", "/1/HardSigmoid", "s", "h").addAttribute(f1("alpha", 0.2f)))
                .addNode(node("Mul", "/1/Mul", "a", "h", "s")));
        try (Sequential got = OnnxModels.fromBytes(f.toByteArray());
                Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 2, 5)) {
            assertEquals("Sequential[6 -> dense 8 -> hard_sigmoid(0.2) -> * value 1 -> dense 3]", got.toString());
            matchesTheFormula(got, x, (j, h) -> h * Math.min(Math.max(0.2f * h + 0.5, 0), 1));
        }
    }

    /** nn.PReLU(8) as PyTorch exports it (slopes [8]; [1, 8] as another exporter may write them): a PReLU layer. */
    @Test
    void preluWithASlopePerFeatureImportsAsAPReluLayer() {
        float[] slopes = {0.25f, -0.5f, 1.5f, 0f, 0.1f, 2f, -1f, 0.3f};
        for (long[] shape : new long[][] {{8}, {1, 8}}) {
            ModelProto f = file(13, g -> g.addInitializer(init("slope", slopes, shape))
                    .addNode(node("PRelu", "/1/PRelu", "a", "h", "slope")));
            try (Sequential got = OnnxModels.fromBytes(f.toByteArray());
                    Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 2, 5)) {
                assertEquals("Sequential[6 -> dense 8 -> prelu -> dense 3]", got.toString());
                assertArrayEquals(slopes, got.layers().get(1).weight().toFloatArray());
                matchesTheFormula(got, x, (j, h) -> h > 0 ? h : h * slopes[j]);
            }
        }
    }

    @Test
    void whatKilnCannotRunIsRefusedByName() {
        assertEquals("bounded_relu: the bound is 0.0: must be > 0",
                assertThrows(IllegalArgumentException.class, () -> Sequential.builder(2).boundedRelu(0)).getMessage());
        assertEquals("hardtanh: the bound is -1.0: must be > 0",
                assertThrows(IllegalArgumentException.class, () -> Sequential.builder(2).hardtanh(-1)).getMessage());
        assertEquals("hard_sigmoid: the slope is 0.0: must be > 0",
                assertThrows(IllegalArgumentException.class, () -> Sequential.builder(2).hardSigmoid(0)).getMessage());
        assertEquals("onnx: unsupported beta = 0.25 (Kiln's hard sigmoid is centred: beta 0.5) in op HardSigmoid at node "
                + "'/1/HardSigmoid'", refusal(file(13, g -> g.addNode(node("HardSigmoid", "/1/HardSigmoid", "a", "h")
                        .addAttribute(f1("beta", 0.25f))))));
        assertEquals("onnx: unsupported alpha = -0.5 (the slope must be finite and > 0) in op HardSigmoid at node "
                + "'/1/HardSigmoid'", refusal(file(13, g -> g.addNode(node("HardSigmoid", "/1/HardSigmoid", "a", "h")
                        .addAttribute(f1("alpha", -0.5f))))));
        assertEquals("onnx: unsupported bounds [-1.0, 2.0] (Kiln imports Clip to [0, inf), [0, b] and [-b, b]) in op Clip at "
                + "node '/1/Clip'", refusal(file(13, g -> g.addInitializer(init("lo", new float[] {-1f}))
                        .addInitializer(init("hi", new float[] {2f})).addNode(node("Clip", "/1/Clip", "a", "h", "lo", "hi")))));
        assertEquals("onnx: unsupported slopes of shape [5] (Kiln takes one slope, or one per feature: [8] or [1, 8]) in op PRelu "
                + "at node '/1/PRelu'", refusal(file(13, g -> g.addInitializer(init("slope", new float[5], 5))
                        .addNode(node("PRelu", "/1/PRelu", "a", "h", "slope")))));
        assertEquals("onnx: unsupported slopes of shape [8, 1] (Kiln takes one slope, or one per feature: [8] or [1, 8]) in op PRelu "
                + "at node '/1/PRelu'", refusal(file(13, g -> g.addInitializer(init("slope", new float[8], 8, 1))
                        .addNode(node("PRelu", "/1/PRelu", "a", "h", "slope")))));
        float[] nan = new float[8];
        nan[3] = Float.NaN;
        assertEquals("onnx: unsupported slope 3 is NaN (slopes must be finite) in op PRelu at node '/1/PRelu'",
                refusal(file(13, g -> g.addInitializer(init("slope", nan, 8)).addNode(node("PRelu", "/1/PRelu", "a", "h", "slope")))));
        assertTrue(refusal(file(13, g -> g.addNode(node("Selu", "/1/Selu", "a", "h").addAttribute(f1("alpha", 2f)))))
                .startsWith("onnx: unsupported alpha or gamma other than SELU's"));
        assertEquals("onnx: unsupported op Silu outside Kiln's fusion (write x * Sigmoid(x)) in op Silu at node '/1/Silu'",
                refusal(file(13, g -> g.addNode(node("Silu", "/1/Silu", "a", "h")))));
        // The sigmoid's output read by something else too: not a SiLU, left alone; it imports as what it
        // is, a gate h * s and a residual + s.
        ModelProto unfused = file(13, g -> g.addNode(node("Sigmoid", "/1/Sigmoid", "s", "h"))
                .addNode(node("Mul", "/1/Mul", "m", "h", "s")).addNode(node("Add", "/1/Add", "a", "m", "s")));
        try (Sequential got = OnnxModels.fromBytes(unfused.toByteArray());
                Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 2, 5)) {
            assertEquals("Sequential[6 -> dense 8 -> sigmoid -> * value 1 -> + value 2 -> dense 3]",
                    got.toString());
            matchesTheFormula(got, x, (j, h) -> h / (1 + Math.exp(-h)) + 1 / (1 + Math.exp(-h)));
        }
    }

    /** Feature j of the hidden layer, h = x W1^T + B1, through the function between the two Gemms. */
    private interface Hidden {
        double apply(int j, double h);
    }

    /** The model's outputs on x [rows, 6] equal W2 f(x W1^T + B1) + B2 computed in double. */
    private static void matchesTheFormula(Sequential got, Tensor x, Hidden f) {
        float[] xv = x.toFloatArray(), y = run(got, x);
        for (int r = 0; r < x.size(0); r++) {
            double[] a = new double[8];
            for (int j = 0; j < 8; j++) {
                double h = B1[j];
                for (int k = 0; k < 6; k++) {
                    h += xv[r * 6 + k] * (double) W1[j * 6 + k];
                }
                a[j] = f.apply(j, h);
            }
            for (int j = 0; j < 3; j++) {
                double want = B2[j];
                for (int k = 0; k < 8; k++) {
                    want += a[k] * W2[j * 8 + k];
                }
                assertEquals(want, y[(int) (r * 3 + j)], 1e-5 * Math.max(1, Math.abs(want)));
            }
        }
    }
}
