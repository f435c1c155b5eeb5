package dev.kiln.io;

import static dev.kiln.io.OnnxModelsTest.init;
import static dev.kiln.io.OnnxShapesTest.constant;
import static dev.kiln.io.OnnxShapesTest.expected;
import static dev.kiln.io.OnnxShapesTest.int1;
import static dev.kiln.io.OnnxShapesTest.io;
import static dev.kiln.io.OnnxShapesTest.model;
import static dev.kiln.io.OnnxShapesTest.node;
import static dev.kiln.io.OnnxShapesTest.refusal;
import static dev.kiln.io.OnnxShapesTest.run;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.internal.onnx.Onnx.GraphProto;
import dev.kiln.internal.onnx.Onnx.ModelProto;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.util.function.Consumer;
import java.util.function.IntToDoubleFunction;
import org.junit.jupiter.api.Test;

/**
 * Preprocessing of the model input inside the graph, as PyTorch users write it in forward():
 * x / 255, (x - mean) / std with scalars or per-channel buffers, an input BatchNorm1d. Kiln folds it
 * into the first Gemm/MatMul's weights and bias, so the imported model computes the same function.
 */
class OnnxPreprocessingTest {
    /** Runs the file on x [3, 3, 4] and checks it against the reference on x' = f(feature index, x). */
    interface Feature {
        double at(int j, float x);
    }

    static void sameAs(ModelProto file, Feature f) {
        try (Tensor x = Tensor.zeros(DType.F32, 3, 3, 4).fillUniform(0, 255, 8)) {
            float[] v = x.toFloatArray(), t = new float[v.length];
            for (int i = 0; i < v.length; i++) {
                t[i] = (float) f.at(i % 12, v[i]);
            }
            try (Tensor xt = Tensor.of(t, 3, 12)) {
                float[] want = expected(xt), got = run(file, x);
                for (int i = 0; i < want.length; i++) {
                    assertEquals(want[i], got[i], 2e-5 * Math.max(1, Math.abs(want[i])), file.getGraph().getNodeList().toString());
                }
            }
        }
    }

    static Consumer<GraphProto.Builder> flattenAfter(Consumer<GraphProto.Builder> pre) {
        return g -> {
            pre.accept(g);
            g.addNode(node("Flatten", "/Flatten", "rows", "pre").addAttribute(int1("axis", 1)));
        };
    }

    @Test
    void scalarsAndPerChannelConstantsFoldIntoTheFirstLayer() {
        sameAs(model(13, flattenAfter(g -> g.addNode(constant("half", init("", new float[] {0.5f})))
                .addNode(constant("quarter", init("", new float[] {0.25f})))
                .addNode(node("Sub", "/Sub", "c", "x", "half")).addNode(node("Div", "/Div", "pre", "c", "quarter")))),
                (j, x) -> (x - 0.5) / 0.25);
        float[] mean = {10, -20, 30}, std = {2, 0.5f, 4};
        IntToDoubleFunction ch = j -> j / 4; // x is [N, 3, 4]: the channel of feature j
        sameAs(model(17, flattenAfter(g -> g.addInitializer(init("mean", mean, 1, 3, 1)).addInitializer(init("std", std, 3, 1))
                .addNode(node("Sub", "/Sub", "c", "x", "mean")).addNode(node("Div", "/Div", "pre", "c", "std")))),
                (j, x) -> (x - mean[(int) ch.applyAsDouble(j)]) / std[(int) ch.applyAsDouble(j)]);
        // c - x, a constant on the left of a Mul, and Add: still affine.
        sameAs(model(13, flattenAfter(g -> g.addInitializer(init("k", new float[] {3f})).addInitializer(init("m", new float[] {-2f}))
                .addInitializer(init("b", new float[] {1, 2, 3, 4}, 4))
                .addNode(node("Sub", "/Sub", "c", "k", "x")).addNode(node("Mul", "/Mul", "d", "m", "c"))
                .addNode(node("Add", "/Add", "pre", "d", "b")))),
                (j, x) -> -2 * (3 - x) + (j % 4 + 1));
    }

    @Test
    void anInputBatchNormFoldsPerChannelOrPerFeature() {
        float[] scale = {1.5f, 0.5f, 2f}, bias = {0.1f, -0.2f, 0.3f}, mean = {100, 120, 140}, var = {900, 400, 2500};
        sameAs(model(11, flattenAfter(g -> g.addInitializer(init("s", scale, 3)).addInitializer(init("b", bias, 3))
                .addInitializer(init("m", mean, 3)).addInitializer(init("v", var, 3))
                .addNode(node("BatchNormalization", "/bn", "pre", "x", "s", "b", "m", "v")))),
                (j, x) -> (x - mean[j / 4]) / Math.sqrt(var[j / 4] + 1e-5) * scale[j / 4] + bias[j / 4]);
        // PyTorch deduplicates equal parameters: the variance written as Identity(scale), the mean as Identity(bias).
        sameAs(model(14, flattenAfter(g -> g.addInitializer(init("s", scale, 3)).addInitializer(init("b", bias, 3))
                .addNode(node("Identity", "Identity_0", "v", "s")).addNode(node("Identity", "Identity_1", "m", "b"))
                .addNode(node("BatchNormalization", "/bn", "pre", "x", "s", "b", "m", "v")))),
                (j, x) -> (x - bias[j / 4]) / Math.sqrt(scale[j / 4] + 1e-5) * scale[j / 4] + bias[j / 4]);
        float[] s12 = new float[12], b12 = new float[12], m12 = new float[12], v12 = new float[12];
        for (int j = 0; j < 12; j++) {
            s12[j] = 1 + j / 10f;
            b12[j] = j - 6;
            m12[j] = 100 + j;
            v12[j] = 500 + 100 * j;
        }
        sameAs(model(17, g -> g.addNode(node("Flatten", "/Flatten", "f", "x").addAttribute(int1("axis", 1)))
                .addInitializer(init("s", s12, 12)).addInitializer(init("b", b12, 12))
                .addInitializer(init("m", m12, 12)).addInitializer(init("v", v12, 12))
                .addNode(node("BatchNormalization", "/bn", "rows", "f", "s", "b", "m", "v")
                        .addAttribute(dev.kiln.internal.onnx.Onnx.AttributeProto.newBuilder().setName("epsilon")
                                .setType(dev.kiln.internal.onnx.Onnx.AttributeProto.AttributeType.FLOAT).setF(1e-3f)))),
                (j, x) -> (x - m12[j]) / Math.sqrt(v12[j] + 1e-3) * s12[j] + b12[j]);
    }

    @Test
    void aMatMulWithItsBiasAddedAfterKeepsTheFoldedShift() {
        float[] w = new float[12 * 5], b = new float[5];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) Math.sin(i);
        }
        for (int j = 0; j < 5; j++) {
            b[j] = j * 0.25f;
        }
        GraphProto.Builder g = GraphProto.newBuilder().setName("mm").addInput(io("x", 0, 12)).addOutput(io("y", 0, 5))
                .addInitializer(init("k", new float[] {255f})).addInitializer(init("off", new float[] {0.5f}))
                .addInitializer(init("W", w, 12, 5)).addInitializer(init("B", b, 5))
                .addNode(node("Div", "/Div", "a", "x", "k")).addNode(node("Sub", "/Sub", "c", "a", "off"))
                .addNode(node("MatMul", "/MatMul", "h", "c", "W")).addNode(node("Add", "/Add", "y", "B", "h"));
        ModelProto f = ModelProto.newBuilder().setIrVersion(7).addOpsetImport(
                dev.kiln.internal.onnx.Onnx.OperatorSetIdProto.newBuilder().setVersion(13)).setGraph(g).build();
        try (dev.kiln.nn.Sequential m = OnnxModels.fromBytes(f.toByteArray()); var s = m.compile(2);
                Tensor x = Tensor.zeros(DType.F32, 2, 12).fillUniform(0, 255, 2); Tensor y = Tensor.zeros(DType.F32, 2, 5)) {
            assertEquals(1, m.layers().size());
            s.run(x, y);
            float[] xv = x.toFloatArray(), got = y.toFloatArray();
            for (int r = 0; r < 2; r++) {
                for (int j = 0; j < 5; j++) {
                    double acc = b[j];
                    for (int i = 0; i < 12; i++) {
                        acc += (xv[r * 12 + i] / 255.0 - 0.5) * w[i * 5 + j];
                    }
                    assertEquals(acc, got[r * 5 + j], 1e-5 * Math.max(1, Math.abs(acc)));
                }
            }
        }
    }

    @Test
    void preprocessingKilnCannotFoldIsRefusedByName() {
        // (the preprocessing becomes a layer of its own; the Relu on the image-shaped value is what is refused)
        assertEquals("onnx: unsupported an op on the input's [batch, 3, 4] value (Kiln's layers take rows: flatten it to "
                + "[batch, 12] first, or pool its positions with ReduceMean, ReduceSum or ReduceMax over axis 1) in op Relu at node '/Relu0'",
                refusal(model(13, g -> g.addInitializer(init("k", new float[] {2f})).addNode(node("Mul", "/Mul", "a", "x", "k"))
                        .addNode(node("Relu", "/Relu0", "b", "a")).addNode(node("Flatten", "/F", "rows", "b")))));
        assertEquals("onnx: unsupported preprocessing of the model input whose result is read by more than the next node "
                + "(Kiln folds it into the first Gemm/MatMul) in op Mul at node '/Mul'",
                refusal(model(13, g -> g.addInitializer(init("k", new float[] {2f})).addNode(node("Mul", "/Mul", "a", "x", "k"))
                        .addNode(node("Flatten", "/F", "f1", "a")).addNode(node("Flatten", "/F2", "f2", "a"))
                        .addNode(node("Add", "/Sum", "rows", "f1", "f2")))));
        assertEquals("onnx: node '/Div' (Div) makes feature 0 of the model input non-finite (a division by 0?)",
                refusal(model(13, flattenAfter(g -> g.addInitializer(init("z", new float[] {0f}))
                        .addNode(node("Div", "/Div", "pre", "x", "z"))))));
        assertTrue(refusal(model(13, flattenAfter(g -> g.addInitializer(init("c", new float[24], 2, 3, 4))
                .addNode(node("Sub", "/Sub", "pre", "x", "c"))))).contains("it must broadcast over the batch"));
        assertTrue(refusal(model(13, flattenAfter(g -> g.addInitializer(init("c", new float[2], 2))
                .addNode(node("Sub", "/Sub", "pre", "x", "c"))))).contains("that does not broadcast to the model input"));
        // Parameters built from scalars span the width: a tiny file declaring 2^30 features is refused
        // by name, not answered with gigabytes of allocation (an OutOfMemoryError before).
        String tooMany = " applies constants to 1073741824 features: too many (Kiln builds parameters from constants for at "
                + "most 16777216)";
        assertEquals("onnx: node '/Sub' (Sub)" + tooMany, refusal(model(13, io("x", 0, 1L << 30),
                g -> g.addInitializer(init("k", new float[] {2f})).addNode(node("Sub", "/Sub", "rows", "x", "k")))));
        assertEquals("onnx: node '/Mul' (Mul)" + tooMany, refusal(model(13, io("x", 0, 1L << 30),
                g -> g.addInitializer(init("k", new float[] {2f})).addNode(node("Relu", "/R", "r", "x"))
                        .addNode(node("Mul", "/Mul", "rows", "r", "k")))));
        assertEquals("onnx: node '/LN' (LayerNormalization)" + tooMany, refusal(model(17, io("x", 0, 1L << 30),
                g -> g.addNode(node("LayerNormalization", "/LN", "rows", "x")))));
        // x / c folds; c / x is not affine: refused as the op it is.
        assertTrue(refusal(model(13, flattenAfter(g -> g.addInitializer(init("c", new float[] {2f}))
                .addNode(node("Div", "/Div", "pre", "c", "x"))))).startsWith("onnx: unsupported an op on the input's [batch, 3, 4]"
                + " value (Kiln's layers take rows: flatten it to [batch, 12] first, or pool its positions with ReduceMean, ReduceSum or ReduceMax over axis 1) in op Div at node '/Div'"));
    }
}
