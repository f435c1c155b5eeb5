package dev.kiln.io;

import static dev.kiln.io.OnnxModelsTest.init;
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
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.Activation;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Epilogue;
import dev.kiln.tensor.Ops;
import dev.kiln.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

/**
 * Inputs of rank above 2 flattened into rows (images), the shape computations PyTorch writes for
 * {@code x.view(x.size(0), -1)}, and the older opsets, in files built with the protobuf API the way
 * PyTorch's exporter lays them out.
 */
class OnnxShapesTest {
    private static final float[] W = new float[5 * 12], B = new float[5];

    static {
        Random r = new Random(5);
        for (int i = 0; i < W.length; i++) {
            W[i] = (float) (r.nextDouble() - 0.5);
        }
        for (int i = 0; i < B.length; i++) {
            B[i] = (float) (r.nextDouble() - 0.5);
        }
    }

    /** A tensor [batch, dims...] value; the batch symbolic when {@code batch} is 0. */
    static ValueInfoProto io(String name, long batch, long... dims) {
        TensorShapeProto.Builder s = TensorShapeProto.newBuilder().addDim(batch > 0
                ? TensorShapeProto.Dimension.newBuilder().setDimValue(batch) : TensorShapeProto.Dimension.newBuilder().setDimParam("N"));
        for (long d : dims) {
            s.addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(d));
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(
                TypeProto.Tensor.newBuilder().setElemType(1).setShape(s))).build();
    }

    static TensorProto int64s(String name, boolean scalar, long... v) {
        ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (long x : v) {
            b.putLong(x);
        }
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(7).setRawData(ByteString.copyFrom(b.array()));
        if (!scalar) {
            t.addDims(v.length);
        }
        return t.build();
    }

    static NodeProto.Builder node(String op, String name, String out, String... in) {
        NodeProto.Builder n = NodeProto.newBuilder().setOpType(op).setName(name).addOutput(out);
        for (String i : in) {
            n.addInput(i);
        }
        return n;
    }

    static NodeProto.Builder constant(String out, TensorProto value) {
        return node("Constant", out, out).addAttribute(AttributeProto.newBuilder().setName("value")
                .setType(AttributeProto.AttributeType.TENSOR).setT(value.toBuilder().setName("")));
    }

    static AttributeProto ints(String name, long... v) {
        AttributeProto.Builder a = AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INTS);
        for (long x : v) {
            a.addInts(x);
        }
        return a.build();
    }

    static AttributeProto int1(String name, long v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(v).build();
    }

    /**
     * x [N, 3, 4] -> (the nodes {@code rows} adds, ending in value "rows") -> Gemm(W, B, transB) ->
     * Relu -> y [N, 5].
     */
    static ModelProto model(int opset, ValueInfoProto input, Consumer<GraphProto.Builder> rows) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("shapes").addInput(input).addOutput(io("y", 0, 5))
                .addInitializer(init("W", W, 5, 12)).addInitializer(init("B", B, 5));
        rows.accept(g);
        g.addNode(node("Gemm", "/fc/Gemm", "h", "rows", "W", "B").addAttribute(int1("transB", 1)))
                .addNode(node("Relu", "/Relu", "y", "h"));
        return ModelProto.newBuilder().setIrVersion(opset >= 13 ? 7 : 6)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(opset)).setGraph(g).build();
    }

    static ModelProto model(int opset, Consumer<GraphProto.Builder> rows) {
        return model(opset, io("x", 0, 3, 4), rows);
    }

    /** relu(x W^T + B) for x [rows, 12], computed with Kiln's ops. */
    static float[] expected(Tensor x) {
        try (Tensor w = Tensor.of(W, 5, 12); Tensor b = Tensor.of(B, 5); Tensor y = Tensor.zeros(DType.F32, x.size(0), 5)) {
            Ops.matmul(x, w.transpose(0, 1), y, Epilogue.bias(b).withActivation(Activation.RELU));
            return y.toFloatArray();
        }
    }

    static float[] run(ModelProto file, Tensor x) {
        try (Sequential m = OnnxModels.fromBytes(file.toByteArray()); InferenceSession s = m.compile(8);
                Tensor y = Tensor.zeros(DType.F32, x.size(0), 5)) {
            assertEquals(12, m.inputFeatures());
            s.run(x, y);
            return y.toFloatArray();
        }
    }

    static String refusal(ModelProto file) {
        return assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(file.toByteArray()).close()).getMessage();
    }

    /** PyTorch's x.view(x.size(0), -1) with dynamic axes, at opset 13 (Unsqueeze's axes an input). */
    static final Consumer<GraphProto.Builder> VIEW_13 = g -> g.addNode(node("Shape", "/Shape", "s", "x"))
            .addNode(constant("zero", int64s("", true, 0))).addNode(node("Gather", "/Gather", "n", "s", "zero").addAttribute(int1("axis", 0)))
            .addNode(constant("axes", int64s("", false, 0))).addNode(node("Unsqueeze", "/Unsqueeze", "n1", "n", "axes"))
            .addNode(constant("minus1", int64s("", false, -1))).addNode(node("Concat", "/Concat", "shape", "n1", "minus1")
                    .addAttribute(int1("axis", 0)))
            .addNode(node("Reshape", "/Reshape", "rows", "x", "shape"));

    @Test
    void aRankFourInputIsFlattenedIntoRowsAndTheSessionTakesEitherShape() {
        ModelProto f = model(17, io("x", 0, 1, 3, 4), g -> g.addNode(node("Flatten", "/Flatten", "rows", "x")
                .addAttribute(int1("axis", 1))));
        try (Tensor x = Tensor.zeros(DType.F32, 4, 1, 3, 4).fillNormal(0, 1, 3); Tensor flat = x.reshape(4, 12)) {
            float[] want = expected(flat);
            assertArrayEquals(want, run(f, x), 1e-6f);
            assertArrayEquals(want, run(f, flat), 1e-6f);
        }
        ModelProto negativeAxis = model(17, io("x", 0, 1, 3, 4), g -> g.addNode(node("Flatten", "/Flatten", "rows", "x")
                .addAttribute(int1("axis", -3))));
        try (Tensor x = Tensor.zeros(DType.F32, 2, 12).fillNormal(0, 1, 4)) {
            assertArrayEquals(expected(x), run(negativeAxis, x), 1e-6f);
        }
    }

    @Test
    void theShapeComputationOfViewIsEvaluatedAtEveryOpset() {
        ModelProto view11 = model(11, g -> g.addNode(node("Shape", "/Shape", "s", "x"))
                .addNode(constant("zero", int64s("", true, 0))).addNode(node("Gather", "/Gather", "n", "s", "zero"))
                .addNode(node("Unsqueeze", "/Unsqueeze", "n1", "n").addAttribute(ints("axes", 0)))
                .addNode(constant("minus1", int64s("", false, -1))).addNode(node("Concat", "/Concat", "shape", "n1", "minus1")
                        .addAttribute(int1("axis", 0)))
                .addNode(node("Reshape", "/Reshape", "rows", "x", "shape")));
        ModelProto slice = model(13, g -> g.addInitializer(int64s("st", false, 0)).addInitializer(int64s("en", false, 1))
                .addInitializer(int64s("rest", false, 12))
                .addNode(node("Shape", "/Shape", "s", "x")).addNode(node("Slice", "/Slice", "n1", "s", "st", "en"))
                .addNode(node("Cast", "/Cast", "n2", "n1").addAttribute(int1("to", 7)))
                .addNode(node("Concat", "/Concat", "shape", "n2", "rest").addAttribute(int1("axis", 0)))
                .addNode(node("Reshape", "/Reshape", "rows", "x", "shape")));
        // x.view(x.size(0), x.size(1) * x.size(2)): sizes multiplied.
        ModelProto product = model(17, g -> g.addInitializer(int64s("i0", true, 0)).addInitializer(int64s("i1", true, 1))
                .addInitializer(int64s("i2", true, 2)).addInitializer(int64s("axes", false, 0))
                .addNode(node("Shape", "/Shape", "s", "x")).addNode(node("Gather", "/G0", "n", "s", "i0"))
                .addNode(node("Gather", "/G1", "d1", "s", "i1")).addNode(node("Gather", "/G2", "d2", "s", "i2"))
                .addNode(node("Mul", "/Mul", "f", "d1", "d2")).addNode(node("Unsqueeze", "/U0", "n1", "n", "axes"))
                .addNode(node("Unsqueeze", "/U1", "f1", "f", "axes"))
                .addNode(node("Concat", "/Concat", "shape", "n1", "f1").addAttribute(int1("axis", 0)))
                .addNode(node("Reshape", "/Reshape", "rows", "x", "shape")));
        ModelProto constantShape = model(9, g -> g.addInitializer(int64s("shape", false, -1, 12))
                .addNode(node("Reshape", "/Reshape", "rows", "x", "shape")));
        ModelProto zeroCopiesTheBatch = model(14, g -> g.addInitializer(int64s("shape", false, 0, -1))
                .addNode(node("Reshape", "/Reshape", "rows", "x", "shape")));
        ModelProto fixedBatch = model(13, io("x", 1, 3, 4), g -> g.addInitializer(int64s("shape", false, 1, -1))
                .addNode(node("Reshape", "/Reshape", "rows", "x", "shape")));
        try (Tensor x = Tensor.zeros(DType.F32, 3, 3, 4).fillNormal(0, 1, 9); Tensor flat = x.reshape(3, 12)) {
            float[] want = expected(flat);
            for (ModelProto f : new ModelProto[] {model(13, VIEW_13), view11, slice, product, constantShape, zeroCopiesTheBatch,
                    fixedBatch}) {
                assertArrayEquals(want, run(f, x), 1e-6f, f.getGraph().getNodeList().toString());
            }
        }
    }

    @Test
    void whatDoesNotMakeRowsIsRefusedByName() {
        assertEquals("onnx: unsupported an op on the input's [batch, 3, 4] value (Kiln's layers take rows: flatten it to "
                + "[batch, 12] first, or pool its positions with ReduceMean, ReduceSum or ReduceMax over axis 1) in op Gemm at node '/fc/Gemm'", refusal(model(17, g -> g.addNode(node("Identity", "/Id", "rows", "x")))));
        assertEquals("onnx: unsupported a shape other than [batch, 12] (got [-1, 6]; Kiln's rows are [batch, features]) in "
                + "op Reshape at node '/Reshape'", refusal(model(17, g -> g.addInitializer(int64s("shape", false, -1, 6))
                        .addNode(node("Reshape", "/Reshape", "rows", "x", "shape")))));
        assertTrue(refusal(model(17, g -> g.addInitializer(int64s("shape", false, 0, 0)) // 0 copies the 3 of [N, 3, 4]
                .addNode(node("Reshape", "/Reshape", "rows", "x", "shape")))).contains("(got [0, 0];"));
        assertEquals("onnx: unsupported axis = 2 (Kiln's rows are [batch, features]: axis 1) in op Flatten at node '/Flatten'",
                refusal(model(17, g -> g.addNode(node("Flatten", "/Flatten", "rows", "x").addAttribute(int1("axis", 2))))));
        assertEquals("onnx: node '/Gather' (Gather) reads index 5 of a shape of 3 sizes", refusal(model(13, g -> {
            VIEW_13.accept(g);
            g.getNodeBuilder(1).getAttributeBuilder(0).setT(int64s("", true, 5));
        })));
        assertEquals("onnx: unsupported a shape computation (Kiln evaluates Shape, Gather, Unsqueeze, Squeeze, Concat, "
                + "Slice, Cast, Mul, Add, Sub and Div of shapes, read by a Reshape) in op Neg at node '/Neg'", refusal(model(13, g -> {
                    VIEW_13.accept(g);
                    g.addNode(2, node("Neg", "/Neg", "s2", "s"));
                    g.getNodeBuilder(3).setInput(0, "s2");
                })));
        assertEquals("onnx: unsupported arithmetic on the batch size (Kiln's batch is only known at run time) in op Mul at node "
                + "'/Mul'", refusal(model(13, g -> {
                    VIEW_13.accept(g);
                    g.addNode(2, node("Mul", "/Mul", "s2", "s", "s"));
                    g.getNodeBuilder(3).setInput(0, "s2");
                })));
        assertEquals("onnx: input 'x' must have known sizes after the batch; dimension 2 is 'W'", refusal(model(17,
                io("x", 0, 3, 4).toBuilder().setType(io("x", 0, 3, 4).getType().toBuilder().setTensorType(
                        io("x", 0, 3, 4).getType().getTensorType().toBuilder().setShape(TensorShapeProto.newBuilder()
                                .addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("N"))
                                .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(3))
                                .addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("W"))))).build(),
                g -> g.addNode(node("Flatten", "/Flatten", "rows", "x")))));
        assertEquals("onnx: opset 6 is not supported (7..23)", refusal(model(6, g -> g.addNode(node("Flatten", "/F", "rows", "x")))));
    }

    @Test
    void theSessionRefusesAnInputWhoseRowsAreNotTheFeatures() {
        ModelProto f = model(17, g -> g.addNode(node("Flatten", "/Flatten", "rows", "x")));
        try (Sequential m = OnnxModels.fromBytes(f.toByteArray()); InferenceSession s = m.compile(4);
                Tensor x = Tensor.zeros(DType.F32, 2, 3, 5); Tensor y = Tensor.zeros(DType.F32, 2, 5)) {
            assertEquals("run: input is [2, 3, 5] but must be [batch, 12]",
                    assertThrows(IllegalArgumentException.class, () -> s.run(x, y)).getMessage());
        }
    }

    @Test
    void dropoutTakesItsRatioAsAnAttributeBelowOpset12() {
        ModelProto f = model(11, g -> g.addNode(node("Flatten", "/Flatten", "rows0", "x"))
                .addNode(node("Dropout", "/Dropout", "rows", "rows0").addAttribute(AttributeProto.newBuilder().setName("ratio")
                        .setType(AttributeProto.AttributeType.FLOAT).setF(0.25f))));
        try (Sequential m = OnnxModels.fromBytes(f.toByteArray())) {
            assertEquals(0.25f, m.layers().get(0).activationAlpha());
        }
    }
}
