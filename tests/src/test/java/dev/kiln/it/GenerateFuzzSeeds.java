package dev.kiln.it;

import dev.kiln.internal.onnx.Onnx.AttributeProto;
import dev.kiln.internal.onnx.Onnx.GraphProto;
import dev.kiln.internal.onnx.Onnx.ModelProto;
import dev.kiln.internal.onnx.Onnx.NodeProto;
import dev.kiln.internal.onnx.Onnx.OperatorSetIdProto;
import dev.kiln.internal.onnx.Onnx.TensorProto;
import dev.kiln.internal.onnx.Onnx.TensorShapeProto;
import dev.kiln.internal.onnx.Onnx.TypeProto;
import dev.kiln.internal.onnx.Onnx.ValueInfoProto;
import dev.kiln.io.OnnxModels;
import dev.kiln.io.SafeTensors;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * Writes the fuzzing seeds of ImportFuzzIT (run by hand from the tests module's test class path,
 * argument: the seed directory). The seeds are Kiln's own output, or built here with the protobuf API
 * (a graph shaped as PyTorch's exporter writes one), so they are regenerated, not downloaded.
 */
public final class GenerateFuzzSeeds {
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        Files.createDirectories(dir);
        Sequential.Builder b = Sequential.builder(4).dense(6, Init.HE, 1).relu();
        int skip = b.mark();
        b.dense(6, Init.HE, 2).residual(skip).layerNorm(1e-5f).dense(3, Init.XAVIER, 3).softmax();
        try (Sequential m = b.build(); Sequential e = Sequential.builder(3).embedding(5, 2, Init.HE, 4)
                .dense(2, Init.HE, 5).build()) {
            Files.write(dir.resolve("onnx-residual"), prefixed(0, OnnxModels.toBytes(m)));
            Files.write(dir.resolve("onnx-embedding"), prefixed(0, OnnxModels.toBytes(e)));
            Files.write(dir.resolve("safetensors"), prefixed(1, SafeTensors.toBytes(m.parameters(), Map.of("k", "v"))));
        }
        // A projection shortcut: layers on both paths of the residual (a branch from the input), then a
        // PReLU with a slope per feature.
        Sequential.Builder p = Sequential.builder(4).dense(5, Init.HE, 6).gelu().dense(3, Init.HE, 7);
        int main = p.mark();
        p.branch(0).dense(3, Init.XAVIER, 8).residual(main).prelu();
        try (Sequential m = p.build()) {
            Files.write(dir.resolve("onnx-branch"), prefixed(0, OnnxModels.toBytes(m)));
        }
        // A gate (silu(x W1) * (x W2)), a concatenation with the input, halves sliced from one value, a
        // scale-shift (Mul and Add of constants).
        Sequential.Builder q = Sequential.builder(3).dense(4, Init.HE, 9).silu();
        int gate = q.mark();
        q.branch(0).dense(4, Init.HE, 10).multiply(gate).concat(0);
        int cat = q.mark();
        q.slice(0, 3);
        int left = q.mark();
        q.branch(cat).slice(4, 7).multiply(left).scaleShift().dense(2, Init.HE, 11);
        try (Sequential m = q.build()) {
            Files.write(dir.resolve("onnx-gate"), prefixed(0, OnnxModels.toBytes(m)));
        }
        // A bag of embeddings: the max and the sum over the positions, concatenated.
        Sequential.Builder bag = Sequential.builder(3).embedding(6, 2, Init.HE, 12);
        int e = bag.mark();
        bag.pool(dev.kiln.nn.Pooling.MAX, 3);
        int mx = bag.mark();
        bag.branch(e).pool(dev.kiln.nn.Pooling.SUM, 3).concat(mx).dense(2, Init.HE, 13);
        try (Sequential m = bag.build()) {
            Files.write(dir.resolve("onnx-bag"), prefixed(0, OnnxModels.toBytes(m)));
        }
        // A Kiln model file: a residual block with a layer norm, a scale-shift and a PReLU, then an L2
        // normalization.
        Sequential.Builder k = Sequential.builder(3).dense(4, Init.HE, 14);
        int kr = k.mark();
        k.layerNorm(1e-5f).prelu().residual(kr).scaleShift().dense(2, Init.XAVIER, 15).l2Normalize();
        try (Sequential m = k.build()) {
            Files.write(dir.resolve("kiln-model"), prefixed(2, dev.kiln.io.ModelFile.toBytes(m, Map.of("k", "v"))));
        }
        Files.write(dir.resolve("onnx-torch-decomposed"), prefixed(0, torchLike()));
        Files.write(dir.resolve("onnx-torch-view"), prefixed(0, torchView()));
        Files.write(dir.resolve("onnx-torch-normalize"), prefixed(0, torchNormalize()));
    }

    /**
     * A Gemm, nn.PReLU(3) (slopes [3]) and F.normalize(h, dim=1) as torch 1.13 writes it at opset 13:
     * ReduceL2 (kept), Clip with the eps as a Constant input, Expand to Shape(h), Div.
     */
    private static byte[] torchNormalize() {
        GraphProto.Builder g = GraphProto.newBuilder().setName("torch-normalize").addInput(io("x", 4)).addOutput(io("y", 3))
                .addInitializer(floats("w", 0.1f, 3, 4)).addInitializer(floats("b", 0.2f, 3)).addInitializer(floats("slope", 0.25f, 3));
        g.addNode(node("/fc/Gemm", "Gemm", "g", "x", "w", "b").toBuilder().addAttribute(AttributeProto.newBuilder()
                .setName("transB").setType(AttributeProto.AttributeType.INT).setI(1)));
        g.addNode(node("/act/PRelu", "PRelu", "h", "g", "slope"));
        g.addNode(node("/ReduceL2", "ReduceL2", "n", "h").toBuilder().addAttribute(AttributeProto.newBuilder()
                .setName("axes").setType(AttributeProto.AttributeType.INTS).addInts(1)).addAttribute(AttributeProto.newBuilder()
                .setName("keepdims").setType(AttributeProto.AttributeType.INT).setI(1)));
        g.addNode(constant("eps", 1e-12f));
        g.addNode(node("/Clip", "Clip", "c", "n", "eps", ""));
        g.addNode(node("/Shape", "Shape", "s", "h"));
        g.addNode(node("/Expand", "Expand", "e", "c", "s"));
        g.addNode(node("/Div", "Div", "y", "h", "e"));
        return ModelProto.newBuilder().setIrVersion(7).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(13))
                .setGraph(g).build().toByteArray();
    }

    /**
     * An image input [batch, 1, 2, 2] scaled (x / 255) and flattened as PyTorch writes
     * x.view(x.size(0), -1) at opset 11, then a Gemm and SiLU as x * Sigmoid(x).
     */
    private static byte[] torchView() {
        ValueInfoProto x = io("x", 1).toBuilder().setType(io("x", 1).getType().toBuilder().setTensorType(io("x", 1).getType()
                .getTensorType().toBuilder().setShape(io("x", 1).getType().getTensorType().getShape().toBuilder()
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(2))
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(2))))).build();
        GraphProto.Builder g = GraphProto.newBuilder().setName("torch-view").addInput(x).addOutput(io("y", 3))
                .addInitializer(floats("w", 0.1f, 3, 4)).addInitializer(floats("b", 0.2f, 3));
        g.addNode(constant("k255", 255f));
        g.addNode(node("/Div", "Div", "xs", "x", "k255"));
        g.addNode(node("/Shape", "Shape", "s", "xs"));
        g.addNode(longConstant("zero", true, 0));
        g.addNode(node("/Gather", "Gather", "n", "s", "zero"));
        g.addNode(node("/Unsqueeze", "Unsqueeze", "n1", "n").toBuilder().addAttribute(AttributeProto.newBuilder()
                .setName("axes").setType(AttributeProto.AttributeType.INTS).addInts(0)));
        g.addNode(longConstant("minus1", false, -1));
        g.addNode(node("/Concat", "Concat", "shape", "n1", "minus1").toBuilder().addAttribute(AttributeProto.newBuilder()
                .setName("axis").setType(AttributeProto.AttributeType.INT).setI(0)));
        g.addNode(node("/Reshape", "Reshape", "rows", "xs", "shape"));
        g.addNode(node("/fc/Gemm", "Gemm", "h", "rows", "w", "b").toBuilder().addAttribute(AttributeProto.newBuilder()
                .setName("transB").setType(AttributeProto.AttributeType.INT).setI(1)));
        g.addNode(node("/Sigmoid", "Sigmoid", "sg", "h"));
        g.addNode(node("/Mul", "Mul", "y", "h", "sg"));
        return ModelProto.newBuilder().setIrVersion(6).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(11))
                .setGraph(g).build().toByteArray();
    }

    private static NodeProto longConstant(String out, boolean scalar, long v) {
        TensorProto.Builder t = TensorProto.newBuilder().setDataType(TensorProto.DataType.INT64_VALUE).addInt64Data(v);
        if (!scalar) {
            t.addDims(1);
        }
        return NodeProto.newBuilder().setName(out + "/Constant").setOpType("Constant").addOutput(out)
                .addAttribute(AttributeProto.newBuilder().setName("value").setType(AttributeProto.AttributeType.TENSOR).setT(t))
                .build();
    }

    /** Gemm, BatchNorm, LayerNorm, GELU and GELU (tanh) as PyTorch's exporter writes them below opsets 17/20:
     *  Constant nodes and elementwise ops, which the importer fuses (OnnxFusion). */
    private static byte[] torchLike() {
        GraphProto.Builder g = GraphProto.newBuilder().setName("torch-like")
                .addInitializer(floats("w", 0.1f, 3, 4)).addInitializer(floats("g", 1f, 3)).addInitializer(floats("b", 0f, 3))
                .addInput(io("x", 4)).addOutput(io("y", 3));
        g.addNode(node("Gemm", "Gemm", "hg", "x", "w").toBuilder().addAttribute(AttributeProto.newBuilder().setName("transB")
                .setType(AttributeProto.AttributeType.INT).setI(1)));
        g.addInitializer(floats("mean", 0.1f, 3)).addInitializer(floats("var", 2f, 3));
        g.addNode(node("BatchNormalization", "BatchNormalization", "h0", "hg", "g", "b", "mean", "var"));
        AttributeProto axes = AttributeProto.newBuilder().setName("axes").setType(AttributeProto.AttributeType.INTS).addInts(-1).build();
        g.addNode(node("ReduceMean", "ReduceMean", "m", "h0").toBuilder().addAttribute(axes));
        g.addNode(node("Sub", "Sub", "d", "h0", "m"));
        g.addNode(constant("two", 2f));
        g.addNode(node("Pow", "Pow", "p", "d", "two"));
        g.addNode(node("ReduceMean_1", "ReduceMean", "v", "p").toBuilder().addAttribute(axes));
        g.addNode(constant("eps", 1e-5f));
        g.addNode(node("Add", "Add", "ve", "v", "eps"));
        g.addNode(node("Sqrt", "Sqrt", "s", "ve"));
        g.addNode(node("Div", "Div", "n", "d", "s"));
        g.addNode(node("Mul", "Mul", "ng", "n", "g"));
        g.addNode(node("Add_1", "Add", "h1", "ng", "b"));
        g.addNode(constant("sqrt2", (float) Math.sqrt(2)));
        g.addNode(node("Div_1", "Div", "e0", "h1", "sqrt2"));
        g.addNode(node("Erf", "Erf", "e1", "e0"));
        g.addNode(constant("one", 1f));
        g.addNode(node("Add_2", "Add", "e2", "e1", "one"));
        g.addNode(node("Mul_1", "Mul", "e3", "h1", "e2"));
        g.addNode(constant("half", 0.5f));
        g.addNode(node("Mul_2", "Mul", "h2", "e3", "half"));
        g.addNode(node("Mul_3", "Mul", "t0", "h2", "h2"));
        g.addNode(node("Mul_4", "Mul", "t1", "h2", "t0"));
        g.addNode(constant("c", 0.044715f));
        g.addNode(node("Mul_5", "Mul", "t2", "c", "t1"));
        g.addNode(node("Add_3", "Add", "t3", "h2", "t2"));
        g.addNode(constant("k", (float) Math.sqrt(2 / Math.PI)));
        g.addNode(node("Mul_6", "Mul", "t4", "k", "t3"));
        g.addNode(node("Tanh", "Tanh", "t5", "t4"));
        g.addNode(node("Add_4", "Add", "t6", "one", "t5"));
        g.addNode(node("Mul_7", "Mul", "t7", "h2", "t6"));
        g.addNode(node("Mul_8", "Mul", "y", "half", "t7"));
        return ModelProto.newBuilder().setIrVersion(8).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(13))
                .setGraph(g).build().toByteArray();
    }

    private static TensorProto floats(String name, float v, long... dims) {
        return floats(name, () -> v, dims);
    }

    /** A FLOAT tensor of the given dimensions, its values drawn in order (float_data, not raw). */
    static TensorProto floats(String name, java.util.function.DoubleSupplier next, long... dims) {
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(TensorProto.DataType.FLOAT_VALUE);
        long n = 1;
        for (long d : dims) {
            t.addDims(d);
            n *= d;
        }
        for (long i = 0; i < n; i++) {
            t.addFloatData((float) next.getAsDouble());
        }
        return t.build();
    }

    private static NodeProto constant(String out, float v) {
        return NodeProto.newBuilder().setName(out + "/Constant").setOpType("Constant").addOutput(out)
                .addAttribute(AttributeProto.newBuilder().setName("value").setType(AttributeProto.AttributeType.TENSOR)
                        .setT(floats("", v))).build();
    }

    private static NodeProto node(String name, String op, String out, String... in) {
        NodeProto.Builder n = NodeProto.newBuilder().setName(name).setOpType(op).addOutput(out);
        for (String s : in) {
            n.addInput(s);
        }
        return n.build();
    }

    private static ValueInfoProto io(String name, long features) {
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(TypeProto.Tensor.newBuilder()
                .setElemType(TensorProto.DataType.FLOAT_VALUE).setShape(TensorShapeProto.newBuilder()
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("batch"))
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(features))))).build();
    }

    private static byte[] prefixed(int selector, byte[] body) {
        byte[] out = new byte[body.length + 1];
        out[0] = (byte) selector;
        System.arraycopy(body, 0, out, 1, body.length);
        return out;
    }
}
