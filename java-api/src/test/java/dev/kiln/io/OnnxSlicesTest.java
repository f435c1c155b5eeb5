package dev.kiln.io;

import static dev.kiln.io.OnnxModelsTest.init;
import static dev.kiln.io.OnnxShapesTest.int1;
import static dev.kiln.io.OnnxShapesTest.int64s;
import static dev.kiln.io.OnnxShapesTest.ints;
import static dev.kiln.io.OnnxShapesTest.io;
import static dev.kiln.io.OnnxShapesTest.node;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.infer.InferenceSession;
import dev.kiln.internal.onnx.Onnx.AttributeProto;
import dev.kiln.internal.onnx.Onnx.GraphProto;
import dev.kiln.internal.onnx.Onnx.ModelProto;
import dev.kiln.internal.onnx.Onnx.OperatorSetIdProto;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.util.Random;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

/**
 * Parts of a value's features, as PyTorch writes {@code chunk}, {@code split} and {@code h[:, i:j]}:
 * Slice (inputs from opset 10, attributes before) and Split (a split input from opset 13, an
 * attribute before, equal parts by num_outputs from 18), in files built with the protobuf API.
 * The model: h = x W1 + B1 [N, 10]; a and b, two parts of h of 4 features; y = (a * b) W2 + B2.
 */
class OnnxSlicesTest {
    private static final float[] W1 = new float[10 * 6], B1 = new float[10], W2 = new float[3 * 4], B2 = new float[3];

    static {
        Random r = new Random(11);
        for (float[] a : new float[][] {W1, B1, W2, B2}) {
            for (int i = 0; i < a.length; i++) {
                a[i] = (float) (r.nextDouble() - 0.5);
            }
        }
    }

    private static ModelProto file(int opset, Consumer<GraphProto.Builder> parts) {
        AttributeProto transB = int1("transB", 1);
        GraphProto.Builder g = GraphProto.newBuilder().setName("slices").addInput(io("x", 0, 6)).addOutput(io("y", 0, 3))
                .addInitializer(init("W1", W1, 10, 6)).addInitializer(init("B1", B1, 10))
                .addInitializer(init("W2", W2, 3, 4)).addInitializer(init("B2", B2, 3))
                .addNode(node("Gemm", "/p/Gemm", "h", "x", "W1", "B1").addAttribute(transB));
        parts.accept(g);
        g.addNode(node("Mul", "/Mul", "m", "a", "b")).addNode(node("Gemm", "/o/Gemm", "y", "m", "W2", "B2").addAttribute(transB));
        return ModelProto.newBuilder().setIrVersion(opset >= 13 ? 7 : 6)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(opset)).setGraph(g).build();
    }

    /** The file's model on random rows against the formula, a and b starting at features {@code pa} and {@code pb}. */
    private static void importsAs(ModelProto f, int pa, int pb) {
        try (Sequential m = OnnxModels.fromBytes(f.toByteArray()); InferenceSession s = m.compile(4);
                Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 1, 3); Tensor y = Tensor.zeros(DType.F32, 4, 3)) {
            s.run(x, y);
            float[] xv = x.toFloatArray(), got = y.toFloatArray();
            for (int r = 0; r < 4; r++) {
                double[] h = new double[10];
                for (int j = 0; j < 10; j++) {
                    h[j] = B1[j];
                    for (int k = 0; k < 6; k++) {
                        h[j] += xv[r * 6 + k] * (double) W1[j * 6 + k];
                    }
                }
                for (int j = 0; j < 3; j++) {
                    double want = B2[j];
                    for (int k = 0; k < 4; k++) {
                        want += h[pa + k] * h[pb + k] * W2[j * 4 + k];
                    }
                    assertEquals(want, got[r * 3 + j], 1e-5 * Math.max(1, Math.abs(want)), m.toString());
                }
            }
        }
    }

    private static String refusal(ModelProto f) {
        return assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(f.toByteArray()).close()).getMessage();
    }

    @Test
    void slicesOfFeaturesImport() {
        // Opset 13: starts, ends and axes as inputs; a negative start and an end past the width (h[:, -4:]).
        importsAs(file(13, g -> g.addInitializer(int64s("s0", false, 0)).addInitializer(int64s("e0", false, 4))
                .addInitializer(int64s("ax", false, 1)).addInitializer(int64s("s1", false, -4))
                .addInitializer(int64s("e1", false, Long.MAX_VALUE)).addInitializer(int64s("axm", false, -1))
                .addNode(node("Slice", "/Slice", "a", "h", "s0", "e0", "ax"))
                .addNode(node("Slice", "/Slice_1", "b", "h", "s1", "e1", "axm"))), 0, 6);
        // Opset 9: attributes.
        importsAs(file(9, g -> g.addNode(node("Slice", "/Slice", "a", "h").addAttribute(ints("starts", 1))
                .addAttribute(ints("ends", 5)).addAttribute(ints("axes", 1)))
                .addNode(node("Slice", "/Slice_1", "b", "h").addAttribute(ints("starts", 5)).addAttribute(ints("ends", 9))
                        .addAttribute(ints("axes", 1)))), 1, 5);
        // The ends computed from the width, as torch's chunk writes them: Shape, Gather(-1), (w + 1) / 2.
        importsAs(file(13, g -> g.addInitializer(int64s("last", false, -1)).addInitializer(int64s("zero", false, 0))
                .addInitializer(int64s("one", false, 1)).addInitializer(int64s("two", false, 2))
                .addInitializer(int64s("ax", false, -1)).addInitializer(int64s("eight", false, 8))
                .addNode(node("Shape", "/Shape", "shape", "h")).addNode(node("Gather", "/Gather", "w", "shape", "last"))
                .addNode(node("Sub", "/Sub", "w2", "w", "two")).addNode(node("Div", "/Div", "half", "w2", "two"))
                .addNode(node("Slice", "/Slice", "a", "h", "zero", "half", "ax"))
                .addNode(node("Slice", "/Slice_1", "b", "h", "half", "eight", "ax"))), 0, 4);
    }

    @Test
    void splitsImportWithUnusedPartsLeftOut() {
        // Opset 13: the sizes as an input; the middle part is read by nothing.
        importsAs(file(13, g -> g.addInitializer(int64s("sizes", false, 4, 2, 4)).addNode(node("Split", "/Split", "a", "h", "sizes")
                .addOutput("unused").addOutput("b").addAttribute(int1("axis", 1)))), 0, 6);
        // Opset 11: the sizes as an attribute, axis -1, the parts read in the other order.
        importsAs(file(11, g -> g.addNode(node("Split", "/Split", "b", "h").addOutput("a").addOutput("rest")
                .addAttribute(ints("split", 4, 4, 2)).addAttribute(int1("axis", -1)))), 4, 0);
        // Opset 18: equal parts by num_outputs: 10 features in 3 parts of 4, 4 and 2.
        importsAs(file(18, g -> g.addNode(node("Split", "/Split", "a", "h").addOutput("b").addOutput("rest")
                .addAttribute(int1("axis", 1)).addAttribute(int1("num_outputs", 3)))), 0, 4);
        try (Sequential m = OnnxModels.fromBytes(file(13, g -> g.addInitializer(int64s("sizes", false, 4, 2, 4))
                .addNode(node("Split", "/Split", "a", "h", "sizes").addOutput("unused").addOutput("b")
                        .addAttribute(int1("axis", 1)))).toByteArray())) {
            assertEquals("Sequential[6 -> dense 10 -> features 0..3 -> | from value 1 -> features 6..9 -> * value 2 -> dense 3]",
                    m.toString());
            // Export writes the slices as Slice nodes; they come back the same.
            try (Sequential back = OnnxModels.fromBytes(OnnxModels.toBytes(m))) {
                assertEquals(m.toString(), back.toString());
            }
        }
    }

    @Test
    void otherPartsAreRefusedByName() {
        String m = refusal(file(13, g -> g.addInitializer(int64s("s", false, 0)).addInitializer(int64s("e", false, 2))
                .addInitializer(int64s("ax0", false, 0)).addNode(node("Slice", "/Slice", "a", "h", "s", "e", "ax0"))
                .addNode(node("Identity", "/Id", "b", "a"))));
        assertEquals("onnx: unsupported a Slice other than of features (axis 1) with step 1 in op Slice at node '/Slice'", m);
        m = refusal(file(13, g -> g.addInitializer(int64s("s", false, 0)).addInitializer(int64s("e", false, 8))
                .addInitializer(int64s("ax", false, 1)).addInitializer(int64s("st", false, 2))
                .addNode(node("Slice", "/Slice", "a", "h", "s", "e", "ax", "st")).addNode(node("Identity", "/Id", "b", "a"))));
        assertTrue(m.contains("with step 1 in op Slice at node '/Slice'"), m);
        m = refusal(file(13, g -> g.addInitializer(int64s("sizes", false, 5, 5)).addNode(node("Split", "/Split", "a", "h", "sizes")
                .addOutput("b"))));
        assertEquals("onnx: unsupported axis = 0 (Kiln splits the features of rows: axis 1) in op Split at node '/Split'", m);
        m = refusal(file(13, g -> g.addInitializer(int64s("sizes", false, 4, 4)).addNode(node("Split", "/Split", "a", "h", "sizes")
                .addOutput("b").addAttribute(int1("axis", 1)))));
        assertEquals("onnx: unsupported 2 parts of 8 features for 2 outputs of 10 features in op Split at node '/Split'", m);
        m = refusal(file(13, g -> g.addInitializer(int64s("s", false, 7)).addInitializer(int64s("e", false, 3))
                .addInitializer(int64s("ax", false, 1)).addNode(node("Slice", "/Slice", "a", "h", "s", "e", "ax"))
                .addNode(node("Identity", "/Id", "b", "a"))));
        assertTrue(m.startsWith("onnx: unsupported an empty Slice"), m);
    }
}
