package dev.kiln.io;

import static dev.kiln.io.OnnxModelsTest.init;
import static dev.kiln.io.OnnxShapesTest.int1;
import static dev.kiln.io.OnnxShapesTest.int64s;
import static dev.kiln.io.OnnxShapesTest.ints;
import static dev.kiln.io.OnnxShapesTest.io;
import static dev.kiln.io.OnnxShapesTest.node;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.infer.InferenceSession;
import dev.kiln.internal.onnx.Onnx.GraphProto;
import dev.kiln.internal.onnx.Onnx.ModelProto;
import dev.kiln.internal.onnx.Onnx.OperatorSetIdProto;
import dev.kiln.internal.onnx.Onnx.TensorShapeProto;
import dev.kiln.internal.onnx.Onnx.TypeProto;
import dev.kiln.internal.onnx.Onnx.ValueInfoProto;
import dev.kiln.nn.Init;
import dev.kiln.nn.Pooling;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.util.Random;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

/**
 * Reductions over positions (torch's {@code x.mean(1)} of an embedding's [batch, positions, dim]
 * output, or of a 3-D input) import as pooling layers: ReduceMean, ReduceSum, ReduceMax with axes as
 * an attribute or an input, keepdims 0 or 1 (then flattened).
 */
class OnnxPoolingTest {
    private static final float[] TABLE = new float[10 * 3], W = new float[2 * 3], B = new float[2];

    static {
        Random r = new Random(12);
        for (float[] a : new float[][] {TABLE, W, B}) {
            for (int i = 0; i < a.length; i++) {
                a[i] = (float) (r.nextDouble() - 0.5);
            }
        }
    }

    private static ValueInfoProto ids(String name, long positions) {
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(TypeProto.Tensor.newBuilder()
                .setElemType(7).setShape(TensorShapeProto.newBuilder()
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("N"))
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(positions))))).build();
    }

    /** ids [N, 4] -> Gather(table) -> (nodes from "e" to "pooled" [N, 3]) -> Gemm -> y [N, 2]. */
    private static ModelProto file(int opset, Consumer<GraphProto.Builder> pool) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("bag").addInput(ids("ids", 4)).addOutput(io("y", 0, 2))
                .addInitializer(init("table", TABLE, 10, 3)).addInitializer(init("W", W, 2, 3)).addInitializer(init("B", B, 2))
                .addNode(node("Gather", "/emb/Gather", "e", "table", "ids"));
        pool.accept(g);
        g.addNode(node("Gemm", "/fc/Gemm", "y", "pooled", "W", "B").addAttribute(int1("transB", 1)));
        return ModelProto.newBuilder().setIrVersion(7).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(opset))
                .setGraph(g).build();
    }

    /** The same model from Kiln's builder. */
    private static float[] reference(Pooling mode, Tensor idv) {
        try (Sequential m = Sequential.builder(4).embedding(10, 3, Init.ZEROS, 0).pool(mode, 4).dense(2, Init.ZEROS, 0).build();
                Tensor w = Tensor.of(W, 2, 3); Tensor wt = w.transpose(0, 1).copy()) {
            m.layers().get(0).weight().copyFrom(TABLE);
            m.layers().get(2).weight().copyFrom(wt.toFloatArray());
            m.layers().get(2).bias().copyFrom(B);
            return run(m, idv);
        }
    }

    private static float[] run(Sequential m, Tensor x) {
        try (InferenceSession s = m.compile(8); Tensor y = Tensor.zeros(DType.F32, x.size(0), 2)) {
            s.run(x, y);
            return y.toFloatArray();
        }
    }

    private static void importsAs(ModelProto f, Pooling mode, String layers) {
        try (Sequential m = OnnxModels.fromBytes(f.toByteArray()); Tensor idv = Tensor.of(new int[] {1, 4, 4, 9, 0, 0, 2, 7}, 2, 4)) {
            assertEquals(layers, m.toString());
            assertArrayEquals(reference(mode, idv), run(m, idv), 1e-6f);
        }
    }

    @Test
    void reductionsOverPositionsImportAsPooling() {
        importsAs(file(13, g -> g.addNode(node("ReduceMean", "/ReduceMean", "pooled", "e").addAttribute(ints("axes", 1))
                .addAttribute(int1("keepdims", 0)))), Pooling.MEAN, "Sequential[4 ids -> embedding 10x3 -> mean_pool(4) -> dense 2]");
        importsAs(file(13, g -> g.addInitializer(int64s("ax", false, 1)).addNode(node("ReduceSum", "/ReduceSum", "kept", "e", "ax"))
                .addNode(node("Flatten", "/Flatten", "pooled", "kept"))), Pooling.SUM,
                "Sequential[4 ids -> embedding 10x3 -> sum_pool(4) -> dense 2]");
        importsAs(file(18, g -> g.addInitializer(int64s("ax", false, -2)).addNode(node("ReduceMax", "/ReduceMax", "pooled", "e", "ax")
                .addAttribute(int1("keepdims", 0)))), Pooling.MAX, "Sequential[4 ids -> embedding 10x3 -> max_pool(4) -> dense 2]");
    }

    @Test
    void aThreeDimensionalInputPoolsToo() {
        GraphProto.Builder g = GraphProto.newBuilder().setName("seq").addInput(io("x", 0, 4, 3)).addOutput(io("y", 0, 2))
                .addInitializer(init("W", W, 2, 3)).addInitializer(init("B", B, 2))
                .addNode(node("ReduceMean", "/ReduceMean", "pooled", "x").addAttribute(ints("axes", 1)).addAttribute(int1("keepdims", 0)))
                .addNode(node("Gemm", "/fc/Gemm", "y", "pooled", "W", "B").addAttribute(int1("transB", 1)));
        ModelProto f = ModelProto.newBuilder().setIrVersion(7).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(13))
                .setGraph(g).build();
        try (Sequential m = OnnxModels.fromBytes(f.toByteArray()); Tensor x = Tensor.zeros(DType.F32, 2, 12).fillNormal(0, 1, 3)) {
            assertEquals("Sequential[12 -> mean_pool(4) -> dense 2]", m.toString());
            float[] xv = x.toFloatArray(), got = run(m, x);
            for (int r = 0; r < 2; r++) {
                for (int k = 0; k < 2; k++) {
                    double want = B[k];
                    for (int j = 0; j < 3; j++) {
                        double mean = 0;
                        for (int p = 0; p < 4; p++) {
                            mean += xv[r * 12 + p * 3 + j] / 4.0;
                        }
                        want += mean * W[k * 3 + j];
                    }
                    assertEquals(want, got[r * 2 + k], 1e-5);
                }
            }
        }
    }

    @Test
    void otherReductionsAreRefusedByName() {
        String m = assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(file(13, g -> g.addNode(
                node("ReduceMean", "/ReduceMean", "pooled", "e").addAttribute(ints("axes", 2)).addAttribute(int1("keepdims", 0))))
                .toByteArray())).getMessage();
        assertEquals("onnx: unsupported a reduction over axes [2] of the [batch, 4, 3] value (Kiln pools over the positions: "
                + "axis 1) in op ReduceMean at node '/ReduceMean'", m);
        m = assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(file(13, g -> g.addNode(
                node("Relu", "/Relu", "pooled", "e"))).toByteArray())).getMessage();
        assertTrue(m.contains("or pool its positions with ReduceMean, ReduceSum or ReduceMax over axis 1"), m);
    }
}
