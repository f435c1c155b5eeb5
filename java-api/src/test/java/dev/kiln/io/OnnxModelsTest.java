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
import dev.kiln.internal.onnx.Onnx.TensorShapeProto;
import dev.kiln.internal.onnx.Onnx.TypeProto;
import dev.kiln.internal.onnx.Onnx.ValueInfoProto;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Epilogue;
import dev.kiln.tensor.Ops;
import dev.kiln.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class OnnxModelsTest {
    static Sequential sample() {
        Sequential m = Sequential.builder(12).dense(20, Init.HE, 1).relu().dense(16, Init.HE, 2).gelu().layerNorm(1e-5f)
                .dropout(0.2).dense(8, Init.XAVIER, 3).leakyRelu(0.05f).dense(5, Init.XAVIER, 4).softmax().build();
        int i = 0;
        for (Map.Entry<String, Tensor> e : m.parameters().entrySet()) {
            e.getValue().fillUniform(-0.5, 0.5, 100 + i++);
        }
        return m;
    }

    private static float[] run(Sequential m, Tensor x) {
        try (InferenceSession s = m.compile((int) x.size(0)); Tensor y = Tensor.zeros(DType.F32, x.size(0), m.outputFeatures())) {
            s.run(x, y);
            return y.toFloatArray();
        }
    }

    @Test
    void exportThenImportIsExact() {
        try (Sequential a = sample(); Sequential b = OnnxModels.fromBytes(OnnxModels.toBytes(a));
                Tensor x = Tensor.zeros(DType.F32, 3, 12).fillNormal(0, 1, 7)) {
            assertEquals(a.layers().size(), b.layers().size());
            for (Map.Entry<String, Tensor> e : a.parameters().entrySet()) {
                assertArrayEquals(e.getValue().toFloatArray(), b.parameters().get(e.getKey()).toFloatArray(), e.getKey());
            }
            assertEquals(0.2f, b.layers().get(5).activationAlpha());
            assertArrayEquals(run(a, x), run(b, x));
        }
    }

    static TensorProto init(String name, float[] v, long... dims) { // (OnnxFusionTest uses it too)
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            b.putFloat(f);
        }
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(1).setRawData(ByteString.copyFrom(b.array()));
        for (long d : dims) {
            t.addDims(d);
        }
        return t.build();
    }

    static ValueInfoProto io(String name, long f) {
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(TypeProto.Tensor.newBuilder()
                .setElemType(1).setShape(TensorShapeProto.newBuilder().addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("b"))
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(f))))).build();
    }

    private static float[] rnd(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (r.nextDouble() - 0.5);
        }
        return v;
    }

    /** A file built with the protobuf API alone (not Kiln's exporter): MatMul+Add, Relu, Flatten, Gemm(transB), Identity, Softmax. */
    private static ModelProto.Builder handBuilt(float[] w1, float[] b1, float[] w2t, float[] b2) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("hand")
                .addInitializer(init("W1", w1, 6, 4)).addInitializer(init("B1", b1, 4))
                .addInitializer(init("W2t", w2t, 3, 4)).addInitializer(init("B2", b2, 3))
                .addNode(NodeProto.newBuilder().setName("mm").setOpType("MatMul").addInput("x").addInput("W1").addOutput("a"))
                .addNode(NodeProto.newBuilder().setName("bias").setOpType("Add").addInput("a").addInput("B1").addOutput("b"))
                .addNode(NodeProto.newBuilder().setName("act").setOpType("Relu").addInput("b").addOutput("c"))
                .addNode(NodeProto.newBuilder().setName("flat").setOpType("Flatten").addInput("c").addOutput("d"))
                .addNode(NodeProto.newBuilder().setName("fc").setOpType("Gemm").addInput("d").addInput("W2t").addInput("B2")
                        .addAttribute(AttributeProto.newBuilder().setName("transB").setType(AttributeProto.AttributeType.INT).setI(1))
                        .addOutput("e"))
                .addNode(NodeProto.newBuilder().setName("id").setOpType("Identity").addInput("e").addOutput("f"))
                .addNode(NodeProto.newBuilder().setName("sm").setOpType("Softmax").addInput("f").addOutput("y")
                        .addAttribute(AttributeProto.newBuilder().setName("axis").setType(AttributeProto.AttributeType.INT).setI(1)))
                .addInput(io("x", 6)).addOutput(io("y", 3));
        return ModelProto.newBuilder().setIrVersion(8).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(17)).setGraph(g);
    }

    @Test
    void importsAnIndependentlyBuiltFile() {
        Random r = new Random(3);
        float[] w1 = rnd(r, 24), b1 = rnd(r, 4), w2t = rnd(r, 12), b2 = rnd(r, 3);
        try (Sequential m = OnnxModels.fromBytes(handBuilt(w1, b1, w2t, b2).build().toByteArray());
                Tensor x = Tensor.zeros(DType.F32, 2, 6).fillNormal(0, 1, 1);
                Tensor tw1 = Tensor.of(w1, 6, 4); Tensor tb1 = Tensor.of(b1, 4); Tensor tw2 = Tensor.of(w2t, 3, 4);
                Tensor tb2 = Tensor.of(b2, 3); Tensor h = Tensor.zeros(DType.F32, 2, 4); Tensor z = Tensor.zeros(DType.F32, 2, 3)) {
            Ops.matmul(x, tw1, h, Epilogue.bias(tb1).withActivation(dev.kiln.tensor.Activation.RELU));
            Ops.matmul(h, tw2.transpose(0, 1), z, Epilogue.bias(tb2));
            Ops.softmax(z, z);
            float[] want = z.toFloatArray(), got = run(m, x);
            for (int i = 0; i < want.length; i++) {
                assertEquals(want[i], got[i], 1e-6);
            }
        }
    }

    @Test
    void gemmAlphaAndBetaFoldIntoTheWeightsAndBias() {
        Random r = new Random(4);
        float[] w1 = rnd(r, 24), b1 = rnd(r, 4), w2t = rnd(r, 12), b2 = rnd(r, 3);
        float[] w2s = w2t.clone(), b2s = b2.clone();
        for (int i = 0; i < w2s.length; i++) {
            w2s[i] *= 2f;
        }
        for (int i = 0; i < b2s.length; i++) {
            b2s[i] *= 0.5f;
        }
        ModelProto.Builder scaled = handBuilt(w1, b1, w2t, b2);
        scaled.getGraphBuilder().getNodeBuilder(4)
                .addAttribute(AttributeProto.newBuilder().setName("alpha").setType(AttributeProto.AttributeType.FLOAT).setF(2f))
                .addAttribute(AttributeProto.newBuilder().setName("beta").setType(AttributeProto.AttributeType.FLOAT).setF(0.5f));
        try (Sequential got = OnnxModels.fromBytes(scaled.build().toByteArray());
                Sequential want = OnnxModels.fromBytes(handBuilt(w1, b1, w2s, b2s).build().toByteArray());
                Tensor x = Tensor.zeros(DType.F32, 3, 6).fillNormal(0, 1, 2)) {
            assertArrayEquals(run(want, x), run(got, x));
        }
    }

    @Test
    void unsupportedContentIsNamedInTheError() {
        float[] w = new float[24], b = new float[4], w2 = new float[12], b2 = new float[3];
        ModelProto.Builder conv = handBuilt(w, b, w2, b2);
        conv.getGraphBuilder().getNodeBuilder(2).setOpType("Conv");
        assertEquals("onnx: unsupported op Conv at node 'act' (Kiln imports Gemm, MatMul, Add, Mul of two results, Concat of results (axis 1), Relu, LeakyRelu, "
                + "PRelu (one slope, or one per feature), Elu, Selu, Softplus, Mish, x * Sigmoid(x) (SiLU), Clip to [0, inf), [0, b] or [-b, b], "
                + "HardSigmoid (beta 0.5), HardSwish (or x * HardSigmoid(x)), Gelu, "
                + "Sigmoid, Tanh, Exp, Log, Sqrt, Neg, Abs, Softmax, LogSoftmax, LayerNormalization, LpNormalization (p = 2), "
                + "F.normalize's ReduceL2, Clip, Expand and Div, Dropout, Identity, "
                + "Flatten, Reshape, Gather, Slice and Split of features, BatchNormalization, Add, Sub, Mul and Div by constants, "
                + "Constant, and GELU and LayerNorm as PyTorch decomposes them for older opsets)",
                assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(conv.build().toByteArray())).getMessage());
        ModelProto.Builder constantAdd = handBuilt(w, b, w2, b2); // relu(x W1 + B1) + B1: not a bias, a shift
        constantAdd.getGraphBuilder().getNodeBuilder(3).setOpType("Add").addInput("B1");
        try (Sequential m = OnnxModels.fromBytes(constantAdd.build().toByteArray())) {
            assertEquals("Sequential[6 -> dense 4 -> relu -> scale_shift -> dense 3 -> softmax]", m.toString());
            assertEquals(b[2], m.layers().get(2).beta().toFloatArray()[2]);
            assertEquals(1f, m.layers().get(2).gamma().toFloatArray()[2]);
        }
        ModelProto.Builder transA = handBuilt(w, b, w2, b2);
        transA.getGraphBuilder().getNodeBuilder(4).addAttribute(AttributeProto.newBuilder().setName("transA").setI(1));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(transA.build().toByteArray()))
                .getMessage().contains("at node 'fc'"));
        ModelProto.Builder odd = handBuilt(w, b, w2, b2);
        odd.getGraphBuilder().getNodeBuilder(2).addAttribute(AttributeProto.newBuilder().setName("weird").setI(1));
        assertEquals("onnx: unsupported attribute 'weird' in op Relu at node 'act'",
                assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(odd.build().toByteArray())).getMessage());
        // Flatten reads the MatMul's output: the bias Add and the Relu no longer reach the output and
        // are dropped, as a runtime would skip them.
        ModelProto.Builder dead = handBuilt(w, b, w2, b2);
        dead.getGraphBuilder().getNodeBuilder(3).setInput(0, "a");
        try (Sequential m = OnnxModels.fromBytes(dead.build().toByteArray())) {
            assertEquals("Sequential[6 -> dense 4 -> dense 3 -> softmax]", m.toString());
        }
        ModelProto.Builder ofWeights = handBuilt(w, b, w2, b2);
        ofWeights.getGraphBuilder().getNodeBuilder(2).setInput(0, "B1"); // Relu of a weight, not of a layer's result
        assertEquals("onnx: node 'act' (Relu) does not read the result of a layer (its first input is 'B1')",
                assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(ofWeights.build().toByteArray()))
                        .getMessage());
        byte[] good = handBuilt(w, b, w2, b2).build().toByteArray();
        assertTrue(assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(java.util.Arrays.copyOf(good, good.length / 2)))
                .getMessage().startsWith("onnx:"));
    }

    @Test
    void mutatedFilesNeverCrash() {
        byte[] seed;
        try (Sequential a = sample()) {
            seed = OnnxModels.toBytes(a);
        }
        long before = dev.kiln.tensor.NativeMemory.settledBytesInUse();
        Random r = new Random(11);
        int accepted = 0;
        for (int iter = 0; iter < 100_000; iter++) {
            byte[] f = seed.clone();
            int kind = r.nextInt(3);
            if (kind == 0) {
                for (int k = 0, n = 1 + r.nextInt(3); k < n; k++) {
                    f[r.nextInt(f.length)] ^= (byte) (1 << r.nextInt(8));
                }
            } else if (kind == 1) {
                f = java.util.Arrays.copyOf(f, r.nextInt(f.length));
            } else {
                f[r.nextInt(f.length)] = (byte) r.nextInt(256);
            }
            try (Sequential m = OnnxModels.fromBytes(f)) {
                accepted++;
                assertTrue(m.layers().size() <= 20);
            } catch (IllegalArgumentException | IllegalStateException expected) {
                // refused with a message
            }
        }
        assertTrue(accepted < 100_000, "accepted " + accepted);
        assertEquals(before, dev.kiln.Kiln.memoryStats().bytesInUse(), "no native memory left behind");
    }

    static Sequential residualEmbedding() {
        Sequential.Builder b = Sequential.builder(5).embedding(11, 4, Init.HE, 1).dense(20, Init.HE, 2).relu();
        int skip = b.mark();
        b.dense(20, Init.HE, 3).relu().dropout(0.1).dense(20, Init.HE, 4).residual(skip).tanh();
        int skip2 = b.mark();
        b.layerNorm(1e-5f).residual(skip2).dense(3, Init.XAVIER, 5).softmax();
        return b.build();
    }

    private static float[] runIds(Sequential m, int[] ids, int batch) {
        try (InferenceSession s = m.compile(batch); Tensor x = Tensor.of(ids, batch, m.inputFeatures());
             Tensor y = Tensor.zeros(DType.F32, batch, m.outputFeatures())) {
            s.run(x, y);
            return y.toFloatArray();
        }
    }

    @Test
    void residualAndEmbeddingModelsRoundTripExactly() {
        int[] ids = {0, 10, 3, 3, 7, 1, 2, 9, 4, 0};
        try (Sequential a = residualEmbedding(); Sequential b = OnnxModels.fromBytes(OnnxModels.toBytes(a))) {
            assertEquals(a.layers().size(), b.layers().size());
            for (int i = 0; i < a.layers().size(); i++) {
                assertEquals(a.layers().get(i).kind(), b.layers().get(i).kind());
                assertEquals(a.layers().get(i).residualFrom(), b.layers().get(i).residualFrom());
            }
            for (Map.Entry<String, Tensor> e : a.parameters().entrySet()) {
                assertArrayEquals(e.getValue().toFloatArray(), b.parameters().get(e.getKey()).toFloatArray(), e.getKey());
            }
            assertArrayEquals(runIds(a, ids, 2), runIds(b, ids, 2));
        }
    }

    /** x -> MatMul -> Relu -> MatMul -> Add(skip = relu output) -> y, nodes listed out of order. */
    private static ModelProto.Builder handResidual(float[] w1, float[] w2) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("res")
                .addInitializer(init("W1", w1, 4, 4)).addInitializer(init("W2", w2, 4, 4))
                .addNode(NodeProto.newBuilder().setName("add").setOpType("Add").addInput("skip").addInput("m2").addOutput("y"))
                .addNode(NodeProto.newBuilder().setName("mm2").setOpType("MatMul").addInput("skip").addInput("W2").addOutput("m2"))
                .addNode(NodeProto.newBuilder().setName("mm1").setOpType("MatMul").addInput("x").addInput("W1").addOutput("m1"))
                .addNode(NodeProto.newBuilder().setName("relu").setOpType("Relu").addInput("m1").addOutput("skip"))
                .addInput(io("x", 4)).addOutput(io("y", 4));
        return ModelProto.newBuilder().setIrVersion(8).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(17)).setGraph(g);
    }

    @Test
    void importsResidualGraphsInAnyNodeOrderAndRefusesCycles() {
        Random r = new Random(5);
        float[] w1 = rnd(r, 16), w2 = rnd(r, 16);
        try (Sequential m = OnnxModels.fromBytes(handResidual(w1, w2).build().toByteArray());
             Tensor x = Tensor.zeros(DType.F32, 3, 4).fillNormal(0, 1, 2)) {
            float[] xv = x.toFloatArray(), got = run(m, x);
            for (int row = 0; row < 3; row++) {
                float[] h = new float[4];
                for (int j = 0; j < 4; j++) {
                    double s = 0;
                    for (int k = 0; k < 4; k++) {
                        s += xv[row * 4 + k] * w1[k * 4 + j];
                    }
                    h[j] = (float) Math.max(0, s);
                }
                for (int j = 0; j < 4; j++) {
                    double s = h[j];
                    for (int k = 0; k < 4; k++) {
                        s += h[k] * w2[k * 4 + j];
                    }
                    assertEquals(s, got[row * 4 + j], 1e-5);
                }
            }
        }
        ModelProto.Builder cycle = handResidual(w1, w2);
        cycle.getGraphBuilder().getNodeBuilder(2).setInput(0, "y"); // mm1 reads the final Add's output
        String msg = assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(cycle.build().toByteArray()))
                .getMessage();
        assertTrue(msg.contains("cycle through node"), msg);
        ModelProto.Builder self = handResidual(w1, w2);
        self.getGraphBuilder().getNodeBuilder(3).setInput(0, "skip"); // relu reads itself
        assertTrue(assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(self.build().toByteArray()))
                .getMessage().contains("cycle"));
        ModelProto.Builder dangling = handResidual(w1, w2);
        dangling.getGraphBuilder().getNodeBuilder(1).setInput(0, "nowhere");
        assertTrue(assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(dangling.build().toByteArray()))
                .getMessage().contains("reads 'nowhere', which no node"));
        ModelProto.Builder twoBranches = handResidual(w1, w2);
        // A second path from x (m3 = x W1) added to the first: layers on both sides of the Add
        // (a projection shortcut), y = relu(x W1) W2 + x W1.
        twoBranches.getGraphBuilder().addNode(NodeProto.newBuilder().setName("mm3").setOpType("MatMul").addInput("x")
                .addInput("W1").addOutput("m3"));
        twoBranches.getGraphBuilder().getNodeBuilder(0).setInput(0, "m3");
        try (Sequential m = OnnxModels.fromBytes(twoBranches.build().toByteArray());
             Tensor x = Tensor.zeros(DType.F32, 3, 4).fillNormal(0, 1, 3)) {
            assertEquals("Sequential[4 -> dense 4 -> relu -> dense 4 -> | from value 0 -> dense 4 -> + value 3]", m.toString());
            float[] xv = x.toFloatArray(), got = run(m, x);
            for (int row = 0; row < 3; row++) {
                double[] m1 = new double[4];
                for (int j = 0; j < 4; j++) {
                    for (int k = 0; k < 4; k++) {
                        m1[j] += xv[row * 4 + k] * w1[k * 4 + j];
                    }
                }
                for (int j = 0; j < 4; j++) {
                    double s = m1[j];
                    for (int k = 0; k < 4; k++) {
                        s += Math.max(0, m1[k]) * w2[k * 4 + j];
                    }
                    assertEquals(s, got[row * 4 + j], 1e-5 * Math.max(1, Math.abs(s)));
                }
            }
        }
        // Add(m1, m2) is a residual from the pre-activation value: accepted.
        ModelProto.Builder preAct = handResidual(w1, w2);
        preAct.getGraphBuilder().getNodeBuilder(0).setInput(0, "m1");
        try (Sequential m = OnnxModels.fromBytes(preAct.build().toByteArray())) {
            assertEquals(1, m.layers().get(3).residualFrom());
        }
    }
}
