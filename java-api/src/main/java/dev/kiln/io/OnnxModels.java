package dev.kiln.io;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
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
import dev.kiln.tensor.Activation;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * ONNX import and export of {@link Sequential} models, for the subset Kiln runs: Gemm, MatMul (+ Add
 * of a bias), Relu, LeakyRelu, PRelu (one slope: a leaky ReLU; one per feature: a
 * {@link Sequential.Builder#prelu() PReLU layer}), Gelu, Sigmoid, Tanh, Exp, Log, Sqrt, Neg, Abs, Softmax, LogSoftmax,
 * LayerNormalization, Dropout, Identity, Flatten/Reshape that keep rows 2-D, BatchNormalization (inference
 * mode) right after a Gemm or MatMul, folded into its weights, Gather as an embedding
 * lookup of the integer model input, Add of two earlier values (residual connections, with layers on
 * one path or on both: a projection shortcut imports as a {@link Sequential.Builder#branch branch}),
 * Mul of two (a gate; Mul(x, x) is the square) and Concat of results along the features (axis 1);
 * Slice and Split of features; a BatchNormalization that does not directly follow a Gemm/MatMul, and
 * Add, Sub, Mul, Div by constants after the first layer, as scale-shift layers (folded into the
 * Gemm/MatMul right before them when its result feeds nothing else);
 * nodes whose results never reach the output are dropped; Constant
 * nodes, and GELU (below opset 20) and LayerNorm (below opset 17) as PyTorch's exporter decomposes
 * them into elementwise ops, are fused back first (see {@link OnnxFusion}). Graphs run
 * from the one input to the one output. Opsets 7 to 23 are read. An input of rank above 2
 * ([N, 1, 28, 28] images) must be flattened into rows before the first layer, by Flatten (axis 1) or
 * a Reshape to [batch, features] whose shape is a constant or a shape computation (Shape, Gather,
 * Unsqueeze, Squeeze, Concat, Slice, Cast, arithmetic of sizes: PyTorch's {@code x.view(x.size(0), -1)}), evaluated here;
 * the model then takes rows of d1 x ... x dk features, and {@link dev.kiln.infer.InferenceSession#run}
 * also accepts the [N, d1, ..., dk] tensor. Preprocessing of the input by constants (Sub, Add, Mul,
 * Div by a constant, an inference BatchNormalization: {@code x / 255}, {@code (x - mean) / std}) is
 * folded into the first Gemm/MatMul's weights and bias. An unsupported op, attribute or graph shape is refused with
 * IllegalArgumentException naming the op and the node. Tensors kept in files beside the model (external data, as
 * PyTorch writes models over 2 GiB) are read by {@link #load(Path)}.
 *
 * <p>Export writes opset 20 (Gelu), IR version 9, weights as initializers in raw little-endian
 * floats; the batch dimension is symbolic ("N").
 */
public final class OnnxModels {
    /** The opset Kiln writes. */
    public static final int OPSET = 20;
    /** SELU's constants as ONNX writes them (float). */
    private static final float SELU_ALPHA = 1.67326319217681884765625f, SELU_GAMMA = 1.05070102214813232421875f;
    /** The opsets Kiln reads (of the default domain). */
    public static final int MIN_OPSET = 7, MAX_OPSET = 23;
    /** The batch dimension, in the shapes the importer evaluates. */
    private static final long BATCH = Long.MIN_VALUE;

    // Named in the error for any other op.
    private static final String IMPORTED_OPS = "Gemm, MatMul, Add, Mul of two results, Concat of results (axis 1), Relu, LeakyRelu, PRelu (one slope, or one per feature), Elu, Selu, "
            + "Softplus, Mish, x * Sigmoid(x) (SiLU), Clip to [0, inf), [0, b] or [-b, b], HardSigmoid (beta 0.5), HardSwish "
            + "(or x * HardSigmoid(x)), Gelu, Sigmoid, Tanh, Exp, Log, "
            + "Sqrt, Neg, Abs, Softmax, LogSoftmax, LayerNormalization, LpNormalization (p = 2), F.normalize's ReduceL2, Clip, "
            + "Expand and Div, Dropout, Identity, Flatten, Reshape, Gather, Slice and "
            + "Split of features, BatchNormalization, Add, Sub, Mul and Div by constants, Constant, and GELU and LayerNorm as PyTorch decomposes them for "
            + "older opsets";

    private OnnxModels() {}

    // ---- export -----------------------------------------------------------------------------------

    /** Models whose weights take more bytes than this are saved with their weights beside them. */
    static final long EXTERNAL_ABOVE = 1L << 30;

    /**
     * Writes the model to an ONNX file (fsynced, then renamed into place). A model whose weights
     * take over 1 GiB keeps them in a file beside it (ONNX external data, as
     * {@link #saveWithExternalData} writes it): protobuf cannot hold one message over 2 GiB.
     */
    public static void save(Sequential model, Path file) throws IOException {
        Objects.requireNonNull(file, "file");
        ModelProto m = toProto(model);
        if (OnnxExternalData.rawBytes(m.getGraph()) > EXTERNAL_ABOVE) {
            OnnxExternalData.save(m, file);
        } else {
            AtomicFiles.write(file, m.toByteArray());  // the directory is created if missing; fsynced, renamed
        }
    }

    /**
     * Writes the model to an ONNX file with its weights in a second file beside it, named after it
     * with {@code .data} appended (ONNX external data: each tensor at a 64-byte aligned offset, with
     * its location, offset, length and SHA-1 checksum). The data file is written first, each file
     * fsynced and renamed into place; {@link #load(Path)} reads them back, checking the checksums.
     */
    public static void saveWithExternalData(Sequential model, Path file) throws IOException {
        Objects.requireNonNull(file, "file");
        OnnxExternalData.save(toProto(model), file);
    }

    /**
     * The model as ONNX bytes, weights included. Refused (IllegalArgumentException) where they
     * would pass protobuf's 2 GiB limit: {@link #save} keeps such weights in a file beside the model.
     */
    public static byte[] toBytes(Sequential model) {
        ModelProto m = toProto(model);
        long weights = OnnxExternalData.rawBytes(m.getGraph());
        if (weights > Integer.MAX_VALUE - (64L << 20)) {
            throw new IllegalArgumentException("onnx: the model's weights take " + weights + " bytes, more than one ONNX "
                    + "message holds (2 GiB): save it with OnnxModels.save(model, path), which keeps them in a file beside it");
        }
        return m.toByteArray();
    }

    private static ModelProto toProto(Sequential model) {
        Objects.requireNonNull(model, "model");
        GraphProto.Builder g = GraphProto.newBuilder().setName("kiln");
        String cur = "input";
        List<Sequential.Layer> layers = model.layers();
        List<String> names = new ArrayList<>();
        names.add(cur);
        for (int i = 0; i < layers.size(); i++) {
            Sequential.Layer l = layers.get(i);
            if (l.kind() == Sequential.Layer.Kind.BRANCH) { // no node: the next layer reads the earlier value
                cur = names.get(l.residualFrom());
                names.add(cur);
                continue;
            }
            String out = i == layers.size() - 1 ? "output" : "t" + i;
            String node = l.kind().name().toLowerCase(java.util.Locale.ROOT) + "_" + i;
            NodeProto.Builder n = NodeProto.newBuilder().setName(node).addInput(cur).addOutput(out);
            switch (l.kind()) {
                case EMBEDDING: {
                    g.addInitializer(floats(i + ".weight", l.weight()));
                    String rows = "t" + i + "_rows";
                    g.addNode(NodeProto.newBuilder().setName(node).setOpType("Gather").addInput(i + ".weight").addInput(cur)
                            .addOutput(rows).addAttribute(intAttr("axis", 0)));
                    n = NodeProto.newBuilder().setName(node + "_flatten").setOpType("Flatten").addInput(rows).addOutput(out)
                            .addAttribute(intAttr("axis", 1));
                    break;
                }
                case RESIDUAL:
                    n.setOpType("Add").addInput(names.get(l.residualFrom()));
                    break;
                case MULTIPLY:
                    n.setOpType("Mul").addInput(names.get(l.residualFrom()));
                    break;
                case CONCAT:
                    n.setOpType("Concat").addInput(names.get(l.residualFrom())).addAttribute(intAttr("axis", 1));
                    break;
                case SLICE:
                    g.addInitializer(int64s(i + ".starts", l.sliceBegin()));
                    g.addInitializer(int64s(i + ".ends", l.sliceBegin() + l.outFeatures()));
                    g.addInitializer(int64s(i + ".axes", 1));
                    n.setOpType("Slice").addInput(i + ".starts").addInput(i + ".ends").addInput(i + ".axes");
                    break;
                case DENSE:
                    g.addInitializer(floats(i + ".weight", l.weight()));
                    g.addInitializer(floats(i + ".bias", l.bias()));
                    n.setOpType("Gemm").addInput(i + ".weight").addInput(i + ".bias");
                    break;
                case ACTIVATION:
                    if (l.activation() == Activation.BOUNDED_RELU || l.activation() == Activation.HARDTANH) {
                        float hi = l.activationAlpha(), lo = l.activation() == Activation.HARDTANH ? -hi : 0f;
                        g.addInitializer(TensorProto.newBuilder().setName(i + ".min").setDataType(TensorProto.DataType.FLOAT_VALUE)
                                .addFloatData(lo));
                        g.addInitializer(TensorProto.newBuilder().setName(i + ".max").setDataType(TensorProto.DataType.FLOAT_VALUE)
                                .addFloatData(hi));
                        n.setOpType("Clip").addInput(i + ".min").addInput(i + ".max");
                        break;
                    }
                    if (l.activation() == Activation.SILU) { // no SiLU op in ONNX: x * Sigmoid(x)
                        g.addNode(NodeProto.newBuilder().setName(node + "_sigmoid").setOpType("Sigmoid").addInput(cur)
                                .addOutput(out + "_sigmoid"));
                        n.setOpType("Mul").addInput(out + "_sigmoid");
                        break;
                    }
                    activationNode(n, l.activation(), l.activationAlpha(), cur);
                    break;
                case SOFTMAX:
                    n.setOpType("Softmax").addAttribute(intAttr("axis", -1));
                    break;
                case LOG_SOFTMAX:
                    n.setOpType("LogSoftmax").addAttribute(intAttr("axis", -1));
                    break;
                case POOL: { // rows [N, positions * d] -> [N, positions, d] -> ReduceX over axis 1
                    long d = l.outFeatures(), positions = l.inFeatures() / d;
                    g.addInitializer(int64s(i + ".shape", 0, positions, d));
                    g.addInitializer(int64s(i + ".axes", 1));
                    String grid = "t" + i + "_positions";
                    g.addNode(NodeProto.newBuilder().setName(node + "_reshape").setOpType("Reshape").addInput(cur)
                            .addInput(i + ".shape").addOutput(grid));
                    String reduce = l.pooling() == dev.kiln.nn.Pooling.MEAN ? "ReduceMean"
                            : l.pooling() == dev.kiln.nn.Pooling.SUM ? "ReduceSum" : "ReduceMax";
                    n = NodeProto.newBuilder().setName(node).setOpType(reduce).addInput(grid).addInput(i + ".axes").addOutput(out)
                            .addAttribute(intAttr("keepdims", 0));
                    break;
                }
                case SCALE_SHIFT: { // x * gamma + beta: Mul, then Add
                    g.addInitializer(floats(i + ".gamma", l.gamma()));
                    g.addInitializer(floats(i + ".beta", l.beta()));
                    String scaled = "t" + i + "_scaled";
                    g.addNode(NodeProto.newBuilder().setName(node + "_mul").setOpType("Mul").addInput(cur).addInput(i + ".gamma")
                            .addOutput(scaled));
                    n = NodeProto.newBuilder().setName(node).setOpType("Add").addInput(scaled).addInput(i + ".beta").addOutput(out);
                    break;
                }
                case L2_NORMALIZE: { // x / Max(ReduceL2(x, axis 1, keepdims), eps)
                    g.addInitializer(int64s(i + ".axes", 1));
                    g.addInitializer(TensorProto.newBuilder().setName(i + ".eps").setDataType(TensorProto.DataType.FLOAT_VALUE)
                            .addFloatData(l.eps()));
                    String norm = "t" + i + "_norm", den = "t" + i + "_den";
                    g.addNode(NodeProto.newBuilder().setName(node + "_norm").setOpType("ReduceL2").addInput(cur).addInput(i + ".axes")
                            .addOutput(norm).addAttribute(intAttr("keepdims", 1)));
                    g.addNode(NodeProto.newBuilder().setName(node + "_max").setOpType("Max").addInput(norm).addInput(i + ".eps")
                            .addOutput(den));
                    n.setOpType("Div").addInput(den);
                    break;
                }
                case PRELU: // slopes [features], broadcast over the batch
                    g.addInitializer(floats(i + ".weight", l.weight()));
                    n.setOpType("PRelu").addInput(i + ".weight");
                    break;
                case LAYER_NORM:
                    g.addInitializer(floats(i + ".gamma", l.gamma()));
                    g.addInitializer(floats(i + ".beta", l.beta()));
                    n.setOpType("LayerNormalization").addInput(i + ".gamma").addInput(i + ".beta")
                            .addAttribute(intAttr("axis", -1)).addAttribute(floatAttr("epsilon", l.eps()));
                    break;
                case DROPOUT:
                    g.addInitializer(TensorProto.newBuilder().setName(i + ".ratio").setDataType(TensorProto.DataType.FLOAT_VALUE)
                            .setRawData(ByteString.copyFrom(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN)
                                    .putFloat(0, l.activationAlpha()).array())));
                    n.setOpType("Dropout").addInput(i + ".ratio");
                    break;
                default:
                    throw new AssertionError(l.kind());
            }
            g.addNode(n);
            cur = out;
            names.add(cur);
        }
        g.addInput(valueInfo("input", model.inputFeatures(),
                model.inputDType() == dev.kiln.tensor.DType.I32 ? TensorProto.DataType.INT32_VALUE : TensorProto.DataType.FLOAT_VALUE));
        g.addOutput(valueInfo("output", model.outputFeatures(), TensorProto.DataType.FLOAT_VALUE));
        return ModelProto.newBuilder().setIrVersion(9).setProducerName("kiln").setProducerVersion(dev.kiln.Kiln.version())
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(OPSET)).setGraph(g).build();
    }

    private static void activationNode(NodeProto.Builder n, Activation f, float alpha, String input) {
        switch (f) {
            case IDENTITY: n.setOpType("Identity"); break;
            case RELU: n.setOpType("Relu"); break;
            case LEAKY_RELU: n.setOpType("LeakyRelu").addAttribute(floatAttr("alpha", alpha)); break;
            case GELU: n.setOpType("Gelu"); break;
            case GELU_TANH: n.setOpType("Gelu").addAttribute(AttributeProto.newBuilder().setName("approximate")
                    .setType(AttributeProto.AttributeType.STRING).setS(ByteString.copyFromUtf8("tanh"))); break;
            case SIGMOID: n.setOpType("Sigmoid"); break;
            case TANH: n.setOpType("Tanh"); break;
            case EXP: n.setOpType("Exp"); break;
            case LOG: n.setOpType("Log"); break;
            case SQRT: n.setOpType("Sqrt"); break;
            case NEG: n.setOpType("Neg"); break;
            case ABS: n.setOpType("Abs"); break;
            case SQUARE: n.setOpType("Mul").addInput(input); break;
            case ELU: n.setOpType("Elu").addAttribute(floatAttr("alpha", alpha)); break;
            case SOFTPLUS: n.setOpType("Softplus"); break;
            case SELU: n.setOpType("Selu"); break;
            case MISH: n.setOpType("Mish"); break;
            case HARD_SIGMOID: n.setOpType("HardSigmoid").addAttribute(floatAttr("alpha", alpha))
                    .addAttribute(floatAttr("beta", 0.5f)); break;
            case HARD_SWISH: n.setOpType("HardSwish"); break; // opset 14 on
            default: throw new AssertionError(f);
        }
    }

    private static ValueInfoProto valueInfo(String name, long features, int elemType) {
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(
                TypeProto.Tensor.newBuilder().setElemType(elemType).setShape(TensorShapeProto.newBuilder()
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("N"))
                        .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(features))))).build();
    }

    private static TensorProto int64s(String name, long... v) {
        TensorProto.Builder p = TensorProto.newBuilder().setName(name).setDataType(TensorProto.DataType.INT64_VALUE)
                .addDims(v.length);
        for (long x : v) {
            p.addInt64Data(x);
        }
        return p.build();
    }

    private static TensorProto floats(String name, Tensor t) {
        if (t.numel() > (Integer.MAX_VALUE - 8) / 4) {
            throw new IllegalArgumentException("onnx: tensor '" + name + "' has " + t.numel() + " floats: one ONNX tensor "
                    + "Kiln writes holds at most 2 GiB");
        }
        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(4 * t.numel())).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(t.isContiguous() ? t.floatView() : java.nio.FloatBuffer.wrap(t.toFloatArray()));
        TensorProto.Builder p = TensorProto.newBuilder().setName(name).setDataType(TensorProto.DataType.FLOAT_VALUE)
                .setRawData(com.google.protobuf.UnsafeByteOperations.unsafeWrap(b.array())); // b is not written again
        for (long d : t.shape()) {
            p.addDims(d);
        }
        return p.build();
    }

    private static AttributeProto intAttr(String name, long v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(v).build();
    }

    private static AttributeProto floatAttr(String name, float v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.FLOAT).setF(v).build();
    }

    // ---- import -----------------------------------------------------------------------------------

    /**
     * The model in an ONNX file. Tensors kept in files beside it (external data: keys location,
     * offset, length, checksum) are read from the file's directory. Each location must be a relative
     * path to a regular file inside that directory (no {@code ..}, no absolute path, no link out of
     * it); each range must lie inside its file, hold exactly the tensor's bytes and not overlap
     * another's; a SHA-1 checksum, when given, must match. Anything else is refused with
     * IllegalArgumentException naming the tensor (NoSuchFileException for a missing file). Every
     * IllegalArgumentException of a load from a path starts with the path ({@code "m.onnx: unsupported
     * op Erf at node '/2/Erf'"}) where {@link #fromBytes(byte[])} starts with {@code "onnx: "}.
     */
    public static Sequential load(Path file) throws IOException {
        try {
            ModelProto m = OnnxExternalData.resolve(parse(Files.readAllBytes(file)), file);
            return importModel(m);
        } catch (IllegalArgumentException e) {
            throw FileErrors.naming(file, "onnx", e);
        }
    }

    /** One layer being imported, and its parameters (as float arrays with shapes). */
    private static final class Pending {
        String kind;
        long out;
        Activation activation = Activation.IDENTITY;
        float alpha;
        float eps;
        float[] weight;
        float[] bias;
        boolean shiftOnly; // bias holds only the folded input preprocessing: a bias Add still comes
        float[] gamma;
        float[] beta;
        int from = -1;   // residual, branch
        long vocab;      // embedding (weight holds the table)
        long begin;      // slice: first feature
        dev.kiln.nn.Pooling pooling; // pool, over `positions`
        long positions;
    }

    /**
     * The model in ONNX bytes, which must hold all their tensors: a model that keeps some in files
     * beside it (external data) is refused, naming the tensor; {@link #load(Path)} reads those.
     */
    public static Sequential fromBytes(byte[] bytes) {
        ModelProto m = parse(bytes);
        String external = OnnxExternalData.firstExternal(m.getGraph());
        if (external != null) {
            throw new IllegalArgumentException("onnx: tensor '" + external + "' keeps its data in a file beside the model "
                    + "(external data): load the model from its path (OnnxModels.load) so that Kiln can read it");
        }
        return importModel(m);
    }

    private static ModelProto parse(byte[] bytes) {
        Objects.requireNonNull(bytes, "bytes");
        try {
            return ModelProto.parseFrom(bytes);
        } catch (InvalidProtocolBufferException e) {
            throw new IllegalArgumentException("onnx: not a valid ONNX model (" + e.getMessage() + ")");
        }
    }

    private static Sequential importModel(ModelProto m) {
        if (!m.hasGraph()) {
            throw new IllegalArgumentException("onnx: the model has no graph");
        }
        for (OperatorSetIdProto o : m.getOpsetImportList()) {
            if ((o.getDomain().isEmpty() || o.getDomain().equals("ai.onnx"))
                    && (o.getVersion() < MIN_OPSET || o.getVersion() > MAX_OPSET)) {
                throw new IllegalArgumentException("onnx: opset " + o.getVersion() + " is not supported (" + MIN_OPSET + ".."
                        + MAX_OPSET + ")");
            }
        }
        return new Walk(withoutDeadNodes(OnnxFusion.fuse(m.getGraph()))).run();
    }

    /**
     * The import's walk over the graph's nodes, with its state in fields: one method per kind of
     * node (each small enough for the JIT and for Jazzer's instrumentation: one method of over 10 KB
     * of bytecode made an instrumented JVM fail).
     */
    private static final class Walk {
        final GraphProto g;
        final Map<String, TensorProto> inits = new HashMap<>();
        final List<ValueInfoProto> inputs = new ArrayList<>();
        final long[] inputDims;
        final long features;
        final boolean ids;
        String cur;
        long width;
        // Shape computations (Shape, Gather, Unsqueeze, Concat, ... of shapes, as PyTorch writes
        // x.view(x.size(0), -1)), evaluated here; BATCH stands for the batch dimension.
        final Map<String, long[]> shapes = new HashMap<>();
        final Map<String, long[]> dimsOf = new HashMap<>(); // values that are not [batch, width]
        final List<Pending> layers = new ArrayList<>();
        final Map<String, Integer> valueOf = new HashMap<>(); // tensor name -> Kiln value (0 input, i+1 layer i)
        final Map<String, Long> widthOf = new HashMap<>();
        // The embedding's 3-D output, or an input of rank > 2, until Flatten/Reshape makes rows of it.
        String unflattened;
        double[][] affine; // pending input preprocessing: x * affine[0] + affine[1], per feature
        final java.util.Set<String> preprocessed = new java.util.HashSet<>();
        final Map<String, Integer> readers = new HashMap<>(); // how many node inputs and graph outputs read each value
        final Map<String, Integer> dataReaders = new HashMap<>(); // the same, less the Shape nodes (which read sizes only)

        Walk(GraphProto g) {
            this.g = g;
            for (TensorProto t : g.getInitializerList()) {
                inits.put(t.getName(), t);
            }
            for (ValueInfoProto v : g.getInputList()) {
                if (!inits.containsKey(v.getName())) {
                    inputs.add(v);
                }
            }
            if (inputs.size() != 1 || g.getOutputCount() != 1) {
                throw new IllegalArgumentException("onnx: the graph has " + inputs.size() + " inputs and " + g.getOutputCount()
                        + " outputs: Kiln imports models with one input and one output");
            }
            inputDims = inputDims(inputs.get(0));
            long f = 1;
            for (int i = 1; i < inputDims.length; i++) {
                f = Math.multiplyExact(f, inputDims[i]);
            }
            features = f;
            ids = isIdsInput(inputs.get(0));
            if (ids && inputDims.length != 2) {
                throw new IllegalArgumentException("onnx: input '" + inputs.get(0).getName() + "' holds token ids of rank "
                        + inputDims.length + ": Kiln takes them as [batch, positions]");
            }
            cur = inputs.get(0).getName();
            width = features;
            if (inputDims.length > 2) {
                dimsOf.put(cur, inputDims);
            }
            valueOf.put(cur, 0);
            widthOf.put(cur, width);
            unflattened = inputDims.length > 2 ? "the input's " + dimsString(inputDims) + " value" : null;
            for (NodeProto n : g.getNodeList()) {
                n.getInputList().forEach(in -> readers.merge(in, 1, Integer::sum));
                if (!n.getOpType().equals("Shape")) {
                    n.getInputList().forEach(in -> dataReaders.merge(in, 1, Integer::sum));
                }
            }
            g.getOutputList().forEach(o -> readers.merge(o.getName(), 1, Integer::sum));
            g.getOutputList().forEach(o -> dataReaders.merge(o.getName(), 1, Integer::sum));
        }

        Sequential run() {
            for (NodeProto n : topologicalOrder(g, inits.keySet(), cur)) {
                node(n);
            }
            if (unflattened != null) {
                throw new IllegalArgumentException("onnx: " + unflattened + " must be flattened to [batch, " + width + "]");
            }
            if (!cur.equals(g.getOutput(0).getName())) {
                throw new IllegalArgumentException("onnx: the graph output '" + g.getOutput(0).getName()
                        + "' is not the last node's result '" + cur + "'");
            }
            if (affine != null) { // preprocessing with no Gemm/MatMul after it: a scale-shift layer
                layers.add(scaleShift(affine, width, "(the model input)", "preprocessing"));
                valueOf.put(cur, layers.size());
            }
            if (layers.isEmpty()) {
                throw new IllegalArgumentException("onnx: the graph has no layer Kiln can run");
            }
            if (ids && !layers.get(0).kind.equals("embedding")) {
                throw new IllegalArgumentException("onnx: input '" + inputs.get(0).getName() + "' holds integers: Kiln takes "
                        + "them only as token ids into a Gather (embedding)");
            }
            return build(features, layers);
        }

        /**
         * A branch to the earlier result {@code v}: the next layer reads it. Refused while the current
         * value is still being preprocessed or flattened ({@code midway}), and from a value that is
         * not rows of features.
         */
        void branchTo(String v, String op, String name, boolean midway) {
            if (midway || preprocessed.contains(v)) {
                throw unsupported(op, name, "a second path from '" + v + "' before the model input's preprocessing or "
                        + "flattening is done (Kiln folds preprocessing into the first layer; flatten once, before the paths split)");
            }
            if (dimsOf.containsKey(v)) {
                throw unsupported(op, name, "a second path from the " + dimsString(dimsOf.get(v)) + " value '" + v
                        + "' (Kiln's layers take rows: flatten once, before the paths split)");
            }
            if (ids && valueOf.get(v) == 0) {
                throw unsupported(op, name, "a second reader of the token ids (Kiln reads them once, by the embedding)");
            }
            addBranch(valueOf.get(v), widthOf.get(v));
            cur = v;
            width = widthOf.get(v);
        }

        /** A layer that computes the node's (first) output: it becomes the current value, of {@code width} features. */
        void addLayer(Pending p, NodeProto n) {
            layers.add(p);
            cur = n.getOutput(0);
            valueOf.put(cur, layers.size());
            widthOf.put(cur, width);
        }

        /** A branch layer to value {@code from} of {@code w} features (the caller moves {@code cur}). */
        void addBranch(int from, long w) {
            Pending p = new Pending();
            p.kind = "branch";
            p.from = from;
            p.out = w;
            layers.add(p);
        }

        void node(NodeProto n) {
            String op = n.getOpType(), name = n.getName().isEmpty() ? "(unnamed " + op + ")" : n.getName();
            if (!prelude(n, op, name) && !joins(n, op, name)) {
                layer(n, op, name);
            }
        }

        /** Checks, shape computations, the embedding, preprocessing, scale-shifts, pooling; true when the node is done. */
        boolean prelude(NodeProto n, String op, String name) {
            boolean fused = n.getDomain().equals(OnnxFusion.DOMAIN) && (op.equals(OnnxFusion.SILU)
                    || op.equals(OnnxFusion.L2_NORMALIZE));
            if (!n.getDomain().isEmpty() && !n.getDomain().equals("ai.onnx") && !fused) {
                throw unsupported(op, name, "domain '" + n.getDomain() + "'");
            }
            if (n.getOutputCount() < 1) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") has no output");
            }
            if (shapeOp(n, name, op, inits, shapes, valueOf, widthOf, dimsOf, inputDims[0])) {
                return true;
            }
            for (int k = 0; k < n.getInputCount(); k++) {
                String in = n.getInput(k);
                boolean sizesInput = k >= 1 && (op.equals("Reshape") || op.equals("Slice") || op.equals("Split"));
                if (shapes.containsKey(in) && !sizesInput) {
                    throw unsupported(op, name, "a shape computation (Kiln evaluates Shape, Gather, Unsqueeze, Squeeze,"
                            + " Concat, Slice, Cast, Mul, Add, Sub and Div of shapes, read by a Reshape)");
                }
            }
            if (op.equals("Gather")) {
                checkAttrs(n, name, "axis");
                if (intAttr(n, "axis", 0) != 0 || !layers.isEmpty() || !ids || n.getInputCount() != 2
                        || !n.getInput(1).equals(cur)) {
                    throw unsupported(op, name, "a Gather that is not an embedding lookup of the integer model input "
                            + "(axis 0, table as initializer, first node)");
                }
                TensorProto table = initializer(inits, n, 0, name, op);
                long[] td = dims(table, name, op);
                if (td.length != 2) {
                    throw unsupported(op, name, "an embedding table of rank " + td.length);
                }
                Pending p = new Pending();
                p.kind = "embedding";
                p.vocab = td[0];
                p.out = Math.multiplyExact(width, td[1]);
                p.weight = floatData(table, td, name, op);
                layers.add(p);
                width = p.out;
                cur = n.getOutput(0);
                valueOf.put(cur, layers.size());
                widthOf.put(cur, width);
                dimsOf.put(cur, new long[] {BATCH, features, td[1]});
                unflattened = "the embedding's 3-D output";
                return true;
            }
            // Preprocessing of the model input by constants (x / 255, (x - mean) / std, an input
            // BatchNormalization): an affine map per feature, folded into the first Gemm/MatMul.
            int xi = n.getInputCount() == 2 ? (n.getInput(0).equals(cur) ? 0 : n.getInput(1).equals(cur) ? 1 : -1) : -1;
            boolean onInput = layers.isEmpty() && !ids && valueOf.containsKey(cur) && valueOf.get(cur) == 0;
            boolean affineOp = (op.equals("Sub") || op.equals("Add") || op.equals("Mul") || (op.equals("Div") && xi == 0))
                    && xi >= 0 && inits.containsKey(n.getInput(1 - xi));
            boolean inputNorm = op.equals("BatchNormalization") && n.getInputCount() == 5 && n.getInput(0).equals(cur);
            if (onInput && (affineOp || inputNorm)) {
                checkAffineAttrs(n, op, name, inputNorm);
                if (dataReaders.getOrDefault(n.getOutput(0), 0) != 1 || g.getOutputList().stream()
                        .anyMatch(o -> o.getName().equals(n.getOutput(0)))) {
                    throw unsupported(op, name, "preprocessing of the model input whose result is read by more than the "
                            + "next node (Kiln folds it into the first Gemm/MatMul)");
                }
                long[] vd = dimsOf.getOrDefault(cur, new long[] {BATCH, width});
                if (affine == null) {
                    affine = new double[2][(int) constantWidth(width, name, op)];
                    java.util.Arrays.fill(affine[0], 1.0);
                }
                preprocess(affine, n, op, xi, vd, inits, name);
                String before = cur;
                cur = alias(n, cur, valueOf, widthOf, width);
                if (dimsOf.containsKey(before)) {
                    dimsOf.put(cur, dimsOf.get(before));
                }
                preprocessed.add(cur);
                return true;
            }
            if (affine != null && !op.equals("Flatten") && !op.equals("Reshape") && !op.equals("Identity")
                    && !op.equals("Gemm") && !op.equals("MatMul")) {
                // no Gemm/MatMul to fold the preprocessing into: it becomes a scale-shift layer
                layers.add(scaleShift(affine, width, name, op));
                affine = null;
                preprocessed.remove(cur);
                valueOf.put(cur, layers.size());
            }
            // Scaling and shifting by constants after the first layer, and a batch norm that does not
            // directly follow a Gemm/MatMul: a scale-shift layer (merged into one just before).
            int constAt = n.getInputCount() == 2 ? (inits.containsKey(n.getInput(1)) && !inits.containsKey(n.getInput(0)) ? 1
                    : inits.containsKey(n.getInput(0)) && !inits.containsKey(n.getInput(1)) ? 0 : -1) : -1;
            boolean constOp = constAt >= 0 && (op.equals("Add") || op.equals("Sub") || op.equals("Mul")
                    || (op.equals("Div") && constAt == 1)) && valueOf.containsKey(n.getInput(1 - constAt));
            Pending prev = layers.isEmpty() ? null : layers.get(layers.size() - 1);
            boolean freshDense = prev != null && prev.kind.equals("dense") && prev.activation == Activation.IDENTITY
                    && valueOf.containsKey(cur) && valueOf.get(cur) == layers.size() && readers.getOrDefault(cur, 0) == 1;
            boolean biasOfMatMul = constOp && op.equals("Add") && freshDense && (prev.bias == null || prev.shiftOnly)
                    && n.getInput(1 - constAt).equals(cur);
            boolean midNorm = op.equals("BatchNormalization") && n.getInputCount() == 5 && valueOf.containsKey(n.getInput(0))
                    && !(freshDense && n.getInput(0).equals(cur)); // (that one folds into the Gemm/MatMul)
            if (!layers.isEmpty() && affine == null && unflattened == null && ((constOp && !biasOfMatMul) || midNorm)) {
                String data = midNorm ? n.getInput(0) : n.getInput(1 - constAt);
                checkAffineAttrs(n, op, name, midNorm);
                if (!data.equals(cur)) {
                    branchTo(data, op, name, false);
                }
                Pending last = layers.get(layers.size() - 1);
                boolean merge = last.kind.equals("scaleshift") && valueOf.get(cur) == layers.size()
                        && dataReaders.getOrDefault(cur, 0) == 1;
                // Right after a Gemm/MatMul (with its bias, no activation) whose result feeds nothing else:
                // folded into its weights and bias, as a batch norm there is.
                boolean intoDense = last.kind.equals("dense") && last.activation == Activation.IDENTITY
                        && valueOf.get(cur) == layers.size() && readers.getOrDefault(cur, 0) == 1;
                double[][] a = new double[2][(int) constantWidth(width, name, op)];
                for (int j = 0; j < width; j++) {
                    a[0][j] = merge ? last.gamma[j] : 1.0;
                    a[1][j] = merge ? last.beta[j] : 0.0;
                }
                preprocess(a, n, op, midNorm ? 0 : 1 - constAt, new long[] {BATCH, width}, inits, name);
                Pending ss = scaleShift(a, width, name, op);
                if (intoDense) {
                    foldOutput(last, a, name, op);
                } else if (merge) {
                    last.gamma = ss.gamma;
                    last.beta = ss.beta;
                } else {
                    layers.add(ss);
                }
                cur = n.getOutput(0);
                valueOf.put(cur, layers.size());
                widthOf.put(cur, width);
                return true;
            }
            boolean reduce = op.equals("ReduceMean") || op.equals("ReduceSum") || op.equals("ReduceMax");
            if (reduce && n.getInputCount() >= 1 && valueOf.containsKey(n.getInput(0)) && dimsOf.containsKey(n.getInput(0))
                    && dimsOf.get(n.getInput(0)).length == 3 && affine == null && !preprocessed.contains(n.getInput(0))) {
                // A reduction over the positions of a [batch, positions, dim] value (an embedding's output,
                // or a 3-D input): a pooling layer; x.mean(1) of torch. A second one of the same value
                // (max and sum of an embedding's output) starts a branch.
                checkAttrs(n, name, "axes", "keepdims", "noop_with_empty_axes");
                if (!n.getInput(0).equals(cur)) {
                    addBranch(valueOf.get(n.getInput(0)), widthOf.get(n.getInput(0)));
                    cur = n.getInput(0);
                    width = widthOf.get(cur);
                }
                long[] axes = n.getInputCount() > 1 && !n.getInput(1).isEmpty() ? sizes(n, 1, inits, shapes, name, op)
                        : attr(n, "axes") != null ? longsAttr(n, "axes") : new long[0];
                if (axes.length != 1 || (axes[0] != 1 && axes[0] != -2)) {
                    throw unsupported(op, name, "a reduction over axes " + java.util.Arrays.toString(axes) + " of the "
                            + dimsString(dimsOf.get(cur)) + " value (Kiln pools over the positions: axis 1)");
                }
                long[] d = dimsOf.get(cur);
                Pending p = new Pending();
                p.kind = "pool";
                p.pooling = op.equals("ReduceMean") ? dev.kiln.nn.Pooling.MEAN : op.equals("ReduceSum") ? dev.kiln.nn.Pooling.SUM
                        : dev.kiln.nn.Pooling.MAX;
                p.positions = d[1];
                p.out = d[2];
                layers.add(p);
                width = d[2];
                cur = n.getOutput(0);
                valueOf.put(cur, layers.size());
                widthOf.put(cur, width);
                if (intAttr(n, "keepdims", 1) != 0) { // [batch, 1, dim]: still to be flattened
                    dimsOf.put(cur, new long[] {BATCH, 1, d[2]});
                    unflattened = "the pooled " + dimsString(dimsOf.get(cur)) + " value";
                } else {
                    unflattened = null;
                }
                return true;
            }
            if (unflattened != null && !op.equals("Flatten") && !op.equals("Reshape") && !op.equals("Identity")) {
                throw unsupported(op, name, "an op on " + unflattened + " (Kiln's layers take rows: flatten it to [batch, "
                        + width + "] first" + (dimsOf.getOrDefault(cur, new long[0]).length == 3 ? ", or pool its positions with"
                        + " ReduceMean, ReduceSum or ReduceMax over axis 1" : "") + ")");
            }
            return false;
        }

        /** Add and Mul of two results, Split, Concat; true when the node is done. */
        boolean joins(NodeProto n, String op, String name) {
            boolean twoValues = n.getInputCount() == 2 && !inits.containsKey(n.getInput(0)) && !inits.containsKey(n.getInput(1));
            if ((op.equals("Add") || op.equals("Mul")) && twoValues) {
                // A join of two results: a residual add, or a product (a gate)
                checkAttrs(n, name);
                String a = n.getInput(0), b = n.getInput(1);
                boolean add = op.equals("Add");
                if (a.equals(cur) && b.equals(cur)) {
                    if (add) {
                        throw unsupported(op, name, "an Add of a value to itself");
                    }
                    Pending sq = new Pending(); // Mul(x, x): the square, as Kiln exports it
                    activation(sq, Activation.SQUARE, 0f, op, name);
                    sq.out = width;
                    addLayer(sq, n);
                    return true;
                }
                if (!a.equals(cur) && !b.equals(cur) && valueOf.containsKey(a) && valueOf.containsKey(b)) {
                    // neither path's end is the current value: continue from one, join the other
                    branchTo(a, op, name, affine != null || unflattened != null);
                }
                String other = a.equals(cur) ? b : b.equals(cur) ? a : null;
                if (preprocessed.contains(other)) {
                    throw unsupported(op, name, "an " + op + " of the preprocessed model input (Kiln folds the preprocessing "
                            + "into the first layer)");
                }
                if (other == null || !valueOf.containsKey(other)) {
                    throw unsupported(op, name, "an " + op + " of '" + (other == null ? a : other) + "', which is not the "
                            + "result of a layer (Kiln " + (add ? "adds two results of its layers, or a constant bias after a "
                            + "MatMul)" : "multiplies two results of its layers of the same width)"));
                }
                if (dimsOf.containsKey(other)) {
                    throw unsupported(op, name, "an " + op + " with the " + dimsString(dimsOf.get(other)) + " value '" + other
                            + "' (Kiln's layers take rows)");
                }
                if (widthOf.get(other) != width) {
                    throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") " + (add ? "adds " : "multiplies ")
                            + widthOf.get(other) + " features " + (add ? "to " : "by ") + width + " (Kiln does not broadcast)");
                }
                Pending p = new Pending();
                p.kind = add ? "residual" : "multiply";
                p.from = valueOf.get(other);
                if (p.from == 0 && ids) {
                    throw unsupported(op, name, "an " + op + " of the token ids");
                }
                p.out = width;
                addLayer(p, n);
                return true;
            }
            if (op.equals("Split")) { // parts of the features: a slice for each part read
                checkAttrs(n, name, "axis", "split", "num_outputs");
                String data = n.getInput(0);
                if (intAttr(n, "axis", 0) != 1 && intAttr(n, "axis", 0) != -1) {
                    throw unsupported(op, name, "axis = " + intAttr(n, "axis", 0) + " (Kiln splits the features of rows: axis 1)");
                }
                if (!valueOf.containsKey(data)) {
                    throw unsupported(op, name, "a Split of '" + data + "', which is not the result of a layer");
                }
                if (!data.equals(cur)) {
                    branchTo(data, op, name, affine != null || unflattened != null);
                } else if (affine != null || unflattened != null || preprocessed.contains(data) || dimsOf.containsKey(data)
                        || (ids && valueOf.get(data) == 0)) {
                    throw unsupported(op, name, "a Split of '" + data + "', which is not rows of features a layer computed");
                }
                long w = width;
                int parts = n.getOutputCount();
                long[] sizes;
                if (n.getInputCount() > 1 && !n.getInput(1).isEmpty()) {
                    sizes = sizes(n, 1, inits, shapes, name, op);
                } else if (attr(n, "split") != null) {
                    sizes = attr(n, "split").getIntsList().stream().mapToLong(Long::longValue).toArray();
                } else { // equal parts (the last one smaller when they do not divide the width)
                    long each = (w + parts - 1) / parts;
                    sizes = new long[parts];
                    for (int k = 0; k < parts; k++) {
                        sizes[k] = Math.max(0, Math.min(each, w - k * each));
                    }
                }
                long sum = 0;
                for (long v : sizes) {
                    if (v < 1) {
                        throw unsupported(op, name, "a part of " + v + " features");
                    }
                    sum += v;
                }
                if (sizes.length != parts || sum != w) {
                    throw unsupported(op, name, sizes.length + " parts of " + sum + " features for " + parts + " outputs of "
                            + w + " features");
                }
                int dataValue = valueOf.get(data);
                boolean first = true;
                long at = 0;
                for (int k = 0; k < parts; k++) {
                    String o = n.getOutput(k);
                    if (!o.isEmpty() && dataReaders.getOrDefault(o, 0) > 0) {
                        if (!first) {
                            addBranch(dataValue, w);
                        }
                        first = false;
                        Pending sl = new Pending();
                        sl.kind = "slice";
                        sl.begin = at;
                        sl.out = sizes[k];
                        layers.add(sl);
                        valueOf.put(o, layers.size());
                        widthOf.put(o, sizes[k]);
                        cur = o;
                        width = sizes[k];
                    }
                    at += sizes[k];
                }
                return true;
            }
            if (op.equals("Concat")) {
                checkAttrs(n, name, "axis");
                long axis = intAttr(n, "axis", Long.MIN_VALUE);
                if (axis != 1 && axis != -1) {
                    throw unsupported(op, name, "axis = " + (axis == Long.MIN_VALUE ? "(none)" : axis)
                            + " (Kiln concatenates the features of rows: axis 1)");
                }
                if (affine != null || unflattened != null) {
                    throw unsupported(op, name, "a Concat before the model input's preprocessing or flattening is done");
                }
                for (String in : n.getInputList()) {
                    if (!valueOf.containsKey(in) || preprocessed.contains(in) || dimsOf.containsKey(in) || (ids && valueOf.get(in) == 0)) {
                        throw unsupported(op, name, "a Concat of '" + in + "', which is not rows of features a layer computed"
                                + " (Kiln concatenates results of its layers)");
                    }
                }
                if (n.getInputCount() == 0) {
                    throw unsupported(op, name, "a Concat of nothing");
                }
                if (!n.getInput(0).equals(cur)) {
                    branchTo(n.getInput(0), op, name, false);
                }
                for (int i = 1; i < n.getInputCount(); i++) {
                    String in = n.getInput(i);
                    if (valueOf.get(in) == layers.size()) {
                        throw unsupported(op, name, "a Concat of '" + in + "' with itself");
                    }
                    Pending p = new Pending();
                    p.kind = "concat";
                    p.from = valueOf.get(in);
                    width = Math.addExact(width, widthOf.get(in));
                    p.out = width;
                    layers.add(p);
                }
                String out = n.getOutput(0);
                valueOf.put(out, n.getInputCount() == 1 ? valueOf.get(cur) : layers.size());
                widthOf.put(out, width);
                cur = out;
                return true;
            }
            return false;
        }

        /** A layer on the current value (a branch first if the node reads an earlier one). */
        void layer(NodeProto n, String op, String name) {
            boolean fusedSilu = n.getDomain().equals(OnnxFusion.DOMAIN) && op.equals(OnnxFusion.SILU);
            boolean biasAdd = op.equals("Add") && n.getInputCount() == 2 && inits.containsKey(n.getInput(0))
                    && n.getInput(1).equals(cur);
            if ((op.equals("Mul") || op.equals("Sub") || op.equals("Div")) && n.getInputCount() == 2
                    && (inits.containsKey(n.getInput(0)) || inits.containsKey(n.getInput(1)))) {
                throw unsupported(op, name, "a " + op + " with a constant after the first layer (Kiln folds constants into the "
                        + "preprocessing of the model input and into a layer's weights and bias only)");
            }
            if (n.getInputCount() > 0 && !n.getInput(0).equals(cur) && !biasAdd && valueOf.containsKey(n.getInput(0))) {
                // a second path from an earlier result (joined back later by an Add)
                branchTo(n.getInput(0), op, name, affine != null || unflattened != null);
            }
            if (n.getInputCount() == 0 || (!n.getInput(0).equals(cur) && !biasAdd)) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") does not read the result of a "
                        + "layer (its first input is '" + (n.getInputCount() == 0 ? "" : n.getInput(0)) + "')");
            }
            Pending p = new Pending();
            Boolean made = weightLayer(n, op, name, p);
            if (made == null) {
                made = otherLayer(n, op, name, p, fusedSilu);
            }
            if (!made) {
                return; // an alias or a fold into an earlier layer: no layer of its own
            }
            if (p.kind.equals("dense") || p.kind.equals("slice")) {
                width = p.out;
            } else {
                p.out = width;
            }
            addLayer(p, n);
        }

        /** Gemm, MatMul, bias Add, BatchNormalization folded back: true with p filled, false when done, null when not one. */
        Boolean weightLayer(NodeProto n, String op, String name, Pending p) {
            switch (op) {
                case "Gemm": {
                    checkAttrs(n, name, "alpha", "beta", "transA", "transB");
                    float gemmAlpha = floatAttr(n, "alpha", 1f), gemmBeta = floatAttr(n, "beta", 1f);
                    if (intAttr(n, "transA", 0) != 0) {
                        throw unsupported(op, name, "transA = 1");
                    }
                    if (!Float.isFinite(gemmAlpha) || !Float.isFinite(gemmBeta)) {
                        throw unsupported(op, name, "alpha " + gemmAlpha + " or beta " + gemmBeta);
                    }
                    TensorProto w = initializer(inits, n, 1, name, op);
                    boolean transB = intAttr(n, "transB", 0) != 0;
                    dense(p, w, transB, width, name, op);
                    if (gemmAlpha != 1f) { // alpha (x W) + beta C: alpha folded into W, beta into the bias
                        for (int i = 0; i < p.weight.length; i++) {
                            p.weight[i] *= gemmAlpha;
                        }
                    }
                    if (n.getInputCount() > 2 && !n.getInput(2).isEmpty()) {
                        p.bias = vector(initializer(inits, n, 2, name, op), p.out, name, op);
                        for (int j = 0; j < p.bias.length && gemmBeta != 1f; j++) {
                            p.bias[j] *= gemmBeta;
                        }
                    }
                    if (affine != null) {
                        foldInput(p, affine, name, op);
                        affine = null;
                    }
                    break;
                }
                case "MatMul": {
                    checkAttrs(n, name);
                    dense(p, initializer(inits, n, 1, name, op), false, width, name, op);
                    if (affine != null) {
                        foldInput(p, affine, name, op);
                        affine = null;
                    }
                    break;
                }
                case "Add": {
                    checkAttrs(n, name);
                    Pending last = layers.isEmpty() ? null : layers.get(layers.size() - 1);
                    if (last == null || !last.kind.equals("dense") || (last.bias != null && !last.shiftOnly)
                            || last.activation != Activation.IDENTITY || valueOf.get(cur) != layers.size()) {
                        throw unsupported(op, name, "an Add of a constant that is not the bias of a MatMul without one (a residual"
                                + " Add takes two earlier values)");
                    }
                    float[] add = vector(initializer(inits, n, n.getInput(0).equals(cur) ? 1 : 0, name, op), last.out, name, op);
                    if (last.bias != null) { // the folded preprocessing's shift, then this bias
                        for (int j = 0; j < add.length; j++) {
                            add[j] += last.bias[j];
                        }
                    }
                    last.bias = add;
                    last.shiftOnly = false;
                    cur = n.getOutput(0);
                    valueOf.put(cur, layers.size());
                    widthOf.put(cur, width);
                    return false;
                }
                case "BatchNormalization": {
                    // Inference-mode batch norm right after a Gemm/MatMul whose result feeds nothing else
                    // (PyTorch's Linear + BatchNorm1d) folds into that layer: W'[i][j] = W[i][j] s_j,
                    // b'_j = (b_j - mean_j) s_j + B_j, s_j = scale_j / sqrt(var_j + eps), in double.
                    checkAffineAttrs(n, op, name, true);
                    Pending last = layers.isEmpty() ? null : layers.get(layers.size() - 1);
                    if (last == null || !last.kind.equals("dense") || last.activation != Activation.IDENTITY
                            || valueOf.get(cur) != layers.size() || readers.getOrDefault(cur, 0) != 1) {
                        throw unsupported(op, name, "a BatchNormalization that does not directly follow a Gemm or MatMul"
                                + " (Kiln folds it into that layer's weights)");
                    }
                    float[] scale = vector(initializer(inits, n, 1, name, op), width, name, op);
                    float[] shift = vector(initializer(inits, n, 2, name, op), width, name, op);
                    float[] mean = vector(initializer(inits, n, 3, name, op), width, name, op);
                    float[] var = vector(initializer(inits, n, 4, name, op), width, name, op);
                    double eps = floatAttr(n, "epsilon", 1e-5f);
                    int out = (int) width, in = last.weight.length / out;
                    float[] bias = new float[out];
                    for (int j = 0; j < out; j++) {
                        if (!(var[j] + eps > 0)) {
                            throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + "): variance "
                                    + var[j] + " + epsilon " + eps + " of feature " + j + " is not positive");
                        }
                        double sj = scale[j] / Math.sqrt(var[j] + eps);
                        for (int i = 0; i < in; i++) {
                            last.weight[i * out + j] = (float) (last.weight[i * out + j] * sj);
                        }
                        bias[j] = (float) (((last.bias == null ? 0 : last.bias[j]) - (double) mean[j]) * sj + shift[j]);
                    }
                    last.bias = bias;
                    cur = n.getOutput(0);
                    valueOf.put(cur, layers.size());
                    widthOf.put(cur, width);
                    return false;
                }
                default:
                    return null;
            }
            return true;
        }

        /** Activations, softmax, norms, slices, dropout, aliases: true with p filled, false when done. */
        boolean otherLayer(NodeProto n, String op, String name, Pending p, boolean fusedSilu) {
            switch (op) {
                case "Relu": case "Sigmoid": case "Tanh": case "Exp": case "Log": case "Sqrt": case "Neg": case "Abs": {
                    checkAttrs(n, name);
                    activation(p, Activation.valueOf(op.toUpperCase(java.util.Locale.ROOT)), 0f, op, name);
                    break;
                }
                case "LeakyRelu":
                    checkAttrs(n, name, "alpha");
                    activation(p, Activation.LEAKY_RELU, floatAttr(n, "alpha", 0.01f), op, name);
                    break;
                case "PRelu": { // one slope shared by every feature (PyTorch's nn.PReLU()) is a leaky ReLU
                    checkAttrs(n, name);
                    TensorProto slope = initializer(inits, n, 1, name, op);
                    long[] sd = dims(slope, name, op);
                    long count = 1;
                    for (long d : sd) {
                        count *= d;
                    }
                    if (count == 1) {
                        activation(p, Activation.LEAKY_RELU, floatData(slope, sd, name, op)[0], op, name);
                        break;
                    }
                    // One slope per feature (nn.PReLU(num_parameters=features)): [features] or [1, features],
                    // broadcast over the rows' batch dimension.
                    boolean perFeature = (sd.length == 1 && sd[0] == width) || (sd.length == 2 && sd[0] == 1 && sd[1] == width);
                    if (!perFeature) {
                        throw unsupported(op, name, "slopes of shape " + java.util.Arrays.toString(sd) + " (Kiln takes one slope, or one "
                                + "per feature: [" + width + "] or [1, " + width + "])");
                    }
                    float[] a = floatData(slope, sd, name, op);
                    for (int j = 0; j < a.length; j++) {
                        if (!Float.isFinite(a[j])) {
                            throw unsupported(op, name, "slope " + j + " is " + a[j] + " (slopes must be finite)");
                        }
                    }
                    p.kind = "prelu";
                    p.weight = a;
                    break;
                }
                case "Elu":
                    checkAttrs(n, name, "alpha");
                    activation(p, Activation.ELU, floatAttr(n, "alpha", 1f), op, name);
                    break;
                case "Selu":
                    checkAttrs(n, name, "alpha", "gamma");
                    if (floatAttr(n, "alpha", SELU_ALPHA) != SELU_ALPHA || floatAttr(n, "gamma", SELU_GAMMA) != SELU_GAMMA) {
                        throw unsupported(op, name, "alpha or gamma other than SELU's (" + SELU_ALPHA + ", " + SELU_GAMMA + ")");
                    }
                    activation(p, Activation.SELU, 0f, op, name);
                    break;
                case "Softplus": case "Mish": case OnnxFusion.SILU:
                    checkAttrs(n, name);
                    if (op.equals(OnnxFusion.SILU) && !fusedSilu) {
                        throw unsupported(op, name, "op Silu outside Kiln's fusion (write x * Sigmoid(x))");
                    }
                    activation(p, op.equals("Softplus") ? Activation.SOFTPLUS : op.equals("Mish") ? Activation.MISH
                            : Activation.SILU, 0f, op, name);
                    break;
                case "Clip": { // [0, inf): ReLU; [0, b]: bounded ReLU (ReLU6); [-b, b]: hardtanh
                    checkAttrs(n, name, "min", "max"); // attributes below opset 11, inputs from 11
                    float lo = n.getInputCount() > 1 && !n.getInput(1).isEmpty()
                            ? vector(initializer(inits, n, 1, name, op), 1, name, op)[0] : floatAttr(n, "min", Float.NEGATIVE_INFINITY);
                    float hi = n.getInputCount() > 2 && !n.getInput(2).isEmpty()
                            ? vector(initializer(inits, n, 2, name, op), 1, name, op)[0] : floatAttr(n, "max", Float.POSITIVE_INFINITY);
                    if (lo == 0f && hi == Float.POSITIVE_INFINITY) {
                        activation(p, Activation.RELU, 0f, op, name);
                    } else if (lo == 0f && hi > 0 && Float.isFinite(hi)) {
                        activation(p, Activation.BOUNDED_RELU, hi, op, name);
                    } else if (lo == -hi && hi > 0 && Float.isFinite(hi)) {
                        activation(p, Activation.HARDTANH, hi, op, name);
                    } else {
                        throw unsupported(op, name, "bounds [" + lo + ", " + hi + "] (Kiln imports Clip to [0, inf), [0, b] "
                                + "and [-b, b])");
                    }
                    break;
                }
                case "HardSigmoid": { // min(max(alpha x + beta, 0), 1); PyTorch writes alpha 1/6
                    checkAttrs(n, name, "alpha", "beta");
                    float alpha = floatAttr(n, "alpha", 0.2f), beta = floatAttr(n, "beta", 0.5f);
                    if (beta != 0.5f) {
                        throw unsupported(op, name, "beta = " + beta + " (Kiln's hard sigmoid is centred: beta 0.5)");
                    }
                    if (!(alpha > 0) || !Float.isFinite(alpha)) {
                        throw unsupported(op, name, "alpha = " + alpha + " (the slope must be finite and > 0)");
                    }
                    activation(p, Activation.HARD_SIGMOID, alpha, op, name);
                    break;
                }
                case "HardSwish": // x * HardSigmoid(x) with alpha 1/6 (fused by OnnxFusion below opset 14)
                    checkAttrs(n, name);
                    activation(p, Activation.HARD_SWISH, 0f, op, name);
                    break;
                case "Gelu": {
                    checkAttrs(n, name, "approximate");
                    String approx = stringAttr(n, "approximate", "none");
                    if (!approx.equals("none") && !approx.equals("tanh")) {
                        throw unsupported(op, name, "approximate = '" + approx + "'");
                    }
                    activation(p, approx.equals("tanh") ? Activation.GELU_TANH : Activation.GELU, 0f, op, name);
                    break;
                }
                case "LpNormalization": { // x / ||x||_p along the features; p = 2 only (no eps: a zero row gives NaN)
                    checkAttrs(n, name, "axis", "p");
                    long axis = intAttr(n, "axis", -1), pn = intAttr(n, "p", 2);
                    if (axis != -1 && axis != 1) {
                        throw unsupported(op, name, "axis = " + axis + " (rows are 2-D: the axis must be -1 or 1)");
                    }
                    if (pn != 2) {
                        throw unsupported(op, name, "p = " + pn + " (Kiln normalizes by the L2 norm, p = 2)");
                    }
                    p.kind = "l2normalize";
                    p.eps = 0f;
                    break;
                }
                case OnnxFusion.L2_NORMALIZE: // x / max(ReduceL2(x), eps) as PyTorch writes F.normalize (fused)
                    if (!n.getDomain().equals(OnnxFusion.DOMAIN)) {
                        throw new IllegalArgumentException("onnx: unsupported op " + op + " at node '" + name
                                + "' (Kiln imports " + IMPORTED_OPS + ")");
                    }
                    p.kind = "l2normalize";
                    p.eps = floatAttr(n, "epsilon", 0f);
                    break;
                case "Softmax": case "LogSoftmax": {
                    checkAttrs(n, name, "axis");
                    long axis = intAttr(n, "axis", -1);
                    if (axis != -1 && axis != 1) {
                        throw unsupported(op, name, "axis = " + axis + " (rows are 2-D: the axis must be -1 or 1)");
                    }
                    p.kind = op.equals("Softmax") ? "softmax" : "logsoftmax";
                    break;
                }
                case "LayerNormalization": {
                    checkAttrs(n, name, "axis", "epsilon", "stash_type");
                    long axis = intAttr(n, "axis", -1);
                    if (axis != -1 && axis != 1) {
                        throw unsupported(op, name, "axis = " + axis);
                    }
                    p.kind = "layernorm";
                    p.eps = floatAttr(n, "epsilon", 1e-5f);
                    // No scale (OnnxFusion's LayerNorm without one; PyTorch 1.13 writes '' at opset 17): ones.
                    boolean scaled = n.getInputCount() > 1 && !n.getInput(1).isEmpty();
                    if (!scaled) { // (with a scale, its data bounds the width)
                        constantWidth(width, name, op);
                    }
                    p.gamma = scaled ? vector(initializer(inits, n, 1, name, op), width, name, op) : ones(width);
                    p.beta = n.getInputCount() > 2 && !n.getInput(2).isEmpty() ? vector(initializer(inits, n, 2, name, op), width, name, op) : new float[(int) width];
                    break;
                }
                case "Slice": { // features begin..end-1 of rows (torch's chunk and split)
                    checkAttrs(n, name, "starts", "ends", "axes"); // attributes below opset 10, inputs from 10
                    long[] starts, ends, axes, steps = {1};
                    if (n.getInputCount() >= 3) {
                        starts = sizes(n, 1, inits, shapes, name, op);
                        ends = sizes(n, 2, inits, shapes, name, op);
                        axes = n.getInputCount() > 3 && !n.getInput(3).isEmpty() ? sizes(n, 3, inits, shapes, name, op) : null;
                        if (n.getInputCount() > 4 && !n.getInput(4).isEmpty()) {
                            steps = sizes(n, 4, inits, shapes, name, op);
                        }
                    } else {
                        starts = longsAttr(n, "starts");
                        ends = longsAttr(n, "ends");
                        axes = attr(n, "axes") != null ? longsAttr(n, "axes") : null;
                    }
                    if (axes == null || axes.length != 1 || (axes[0] != 1 && axes[0] != -1) || starts.length != 1
                            || ends.length != 1 || steps.length != 1 || steps[0] != 1) {
                        throw unsupported(op, name, "a Slice other than of features (axis 1) with step 1");
                    }
                    long b0 = starts[0] < 0 ? starts[0] + width : starts[0], e0 = ends[0] < 0 ? ends[0] + width : ends[0];
                    b0 = Math.max(0, Math.min(b0, width));
                    e0 = Math.max(0, Math.min(e0, width));
                    if (b0 >= e0) {
                        throw unsupported(op, name, "an empty Slice (features " + starts[0] + ".." + ends[0] + " of " + width + ")");
                    }
                    p.kind = "slice";
                    p.begin = b0;
                    p.out = e0 - b0;
                    break;
                }
                case "Dropout": {
                    checkAttrs(n, name, "seed", "ratio"); // ratio: an attribute below opset 12
                    p.kind = "dropout";
                    p.alpha = n.getInputCount() > 1 && !n.getInput(1).isEmpty()
                            ? vector(initializer(inits, n, 1, name, op), 1, name, op)[0] : floatAttr(n, "ratio", 0.5f);
                    if (!(p.alpha >= 0 && p.alpha < 1)) {
                        throw unsupported(op, name, "ratio " + p.alpha);
                    }
                    break;
                }
                case "Identity":
                    checkAttrs(n, name);
                    if (dimsOf.containsKey(cur)) {
                        dimsOf.put(n.getOutput(0), dimsOf.get(cur));
                    }
                    if (preprocessed.contains(cur)) {
                        preprocessed.add(n.getOutput(0));
                    }
                    cur = alias(n, cur, valueOf, widthOf, width);
                    return false;
                case "Flatten": {
                    checkAttrs(n, name, "axis");
                    long rank = dimsOf.getOrDefault(cur, new long[2]).length, axis = intAttr(n, "axis", 1);
                    if (axis != 1 && axis + rank != 1) {
                        throw unsupported(op, name, "axis = " + axis + " (Kiln's rows are [batch, features]: axis 1)");
                    }
                    unflattened = null;
                    if (preprocessed.contains(cur)) {
                        preprocessed.add(n.getOutput(0));
                    }
                    cur = alias(n, cur, valueOf, widthOf, width);
                    return false;
                }
                case "Reshape": {
                    checkAttrs(n, name, "allowzero");
                    long[] s = n.getInputCount() == 2 && shapes.containsKey(n.getInput(1)) ? shapes.get(n.getInput(1))
                            : longs(initializer(inits, n, 1, name, op), name, op);
                    long[] from = dimsOf.getOrDefault(cur, new long[] {BATCH, width});
                    boolean batchFirst = s.length == 3 && (s[0] == BATCH || (s[0] == 0 && intAttr(n, "allowzero", 0) == 0)
                            || (inputDims[0] != BATCH && s[0] == inputDims[0]));
                    if (batchFirst && !dimsOf.containsKey(cur) && !preprocessed.contains(cur)) {
                        // rows [batch, p * d] viewed as [batch, p, d] positions (for a pooling after it)
                        long pp = s[1], dd = s[2];
                        if (pp == -1 && dd > 0 && width % dd == 0) {
                            pp = width / dd;
                        } else if (dd == -1 && pp > 0 && width % pp == 0) {
                            dd = width / pp;
                        }
                        if (pp > 0 && dd > 0 && pp * dd == width) {
                            String before = cur;
                            cur = alias(n, cur, valueOf, widthOf, width);
                            dimsOf.put(cur, new long[] {BATCH, pp, dd});
                            unflattened = "the " + dimsString(dimsOf.get(cur)) + " value of '" + before + "'";
                            return false;
                        }
                    }
                    if (!rowsShape(s, from, width, inputDims[0], intAttr(n, "allowzero", 0) != 0)) {
                        throw unsupported(op, name, "a shape other than [batch, " + width + "] (got " + dimsString(s)
                                + "; Kiln's rows are [batch, features])");
                    }
                    unflattened = null;
                    if (preprocessed.contains(cur)) {
                        preprocessed.add(n.getOutput(0));
                    }
                    cur = alias(n, cur, valueOf, widthOf, width);
                    return false;
                }
                default:
                    throw new IllegalArgumentException("onnx: unsupported op " + op + " at node '" + name
                            + "' (Kiln imports " + IMPORTED_OPS + ")");
            }
            return true;
        }
    }

    private static Sequential build(long features, List<Pending> layers) {
        Sequential.Builder b = Sequential.builder(features);
        for (Pending p : layers) {
            switch (p.kind) {
                case "dense": b.dense(p.out, Init.ZEROS, 0); break;
                case "activation": b.activation(p.activation, p.alpha); break;
                case "softmax": b.softmax(); break;
                case "logsoftmax": b.logSoftmax(); break;
                case "layernorm": b.layerNorm(p.eps); break;
                case "scaleshift": b.scaleShift(); break;
                case "prelu": b.prelu(); break;
                case "l2normalize": b.l2Normalize(p.eps); break;
                case "pool": b.pool(p.pooling, p.positions); break;
                case "dropout": b.dropout(p.alpha); break;
                case "embedding": b.embedding(p.vocab, p.out / features, Init.ZEROS, 0); break;
                case "residual": b.residual(p.from); break;
                case "slice": b.slice(p.begin, p.begin + p.out); break;
                case "branch": b.branch(p.from); break;
                case "multiply": b.multiply(p.from); break;
                case "concat": b.concat(p.from); break;
                default: throw new AssertionError(p.kind);
            }
        }
        Sequential model;
        try {
            model = b.build();
        } catch (IllegalStateException e) { // a value no later node reads
            throw new IllegalArgumentException("onnx: the graph is not one Kiln runs: " + e.getMessage(), e);
        }
        Map<String, Tensor> params = new LinkedHashMap<>();
        try {
            for (int i = 0; i < layers.size(); i++) {
                Pending p = layers.get(i);
                Sequential.Layer l = model.layers().get(i);
                if (p.kind.equals("embedding")) {
                    params.put(i + ".weight", Tensor.of(p.weight, p.vocab, p.out / features));
                } else if (p.kind.equals("prelu")) {
                    params.put(i + ".weight", Tensor.of(p.weight, p.out));
                } else if (p.weight != null) {
                    params.put(i + ".weight", Tensor.of(p.weight, l.inFeatures(), l.outFeatures()));
                    params.put(i + ".bias", Tensor.of(p.bias != null ? p.bias : new float[(int) p.out], p.out));
                }
                if (p.gamma != null) {
                    params.put(i + ".gamma", Tensor.of(p.gamma, p.out));
                    params.put(i + ".beta", Tensor.of(p.beta, p.out));
                }
            }
            model.loadParameters(params);
        } catch (RuntimeException e) {
            model.close();
            throw e;
        } finally {
            params.values().forEach(Tensor::close);
        }
        return model;
    }

    /** An activation layer, its alpha checked as the builder will ({@link Activation#checkAlpha}), the node named. */
    private static void activation(Pending p, Activation f, float alpha, String op, String name) {
        try {
            p.alpha = f.checkAlpha(alpha);
        } catch (IllegalArgumentException e) {
            throw unsupported(op, name, e.getMessage());
        }
        p.kind = "activation";
        p.activation = f;
    }

    private static String alias(NodeProto n, String cur, Map<String, Integer> valueOf, Map<String, Long> widthOf, long width) {
        String out = n.getOutput(0);
        valueOf.put(out, valueOf.get(cur));
        widthOf.put(out, width);
        return out;
    }

    /**
     * The graph without the nodes whose results never reach its output. A name produced twice is
     * refused, naming the node.
     */
    private static GraphProto withoutDeadNodes(GraphProto g) {
        List<NodeProto> nodes = g.getNodeList();
        Map<String, Integer> producer = new HashMap<>();
        for (int i = 0; i < nodes.size(); i++) {
            for (String o : nodes.get(i).getOutputList()) {
                if (!o.isEmpty() && producer.put(o, i) != null) {
                    throw new IllegalArgumentException("onnx: tensor '" + o + "' is produced twice (node '"
                            + nodes.get(i).getName() + "')");
                }
            }
        }
        boolean[] live = new boolean[nodes.size()];
        java.util.ArrayDeque<String> work = new java.util.ArrayDeque<>();
        g.getOutputList().forEach(o -> work.add(o.getName()));
        int kept = 0;
        while (!work.isEmpty()) {
            Integer p = producer.get(work.poll());
            if (p == null || live[p]) {
                continue;
            }
            live[p] = true;
            kept++;
            work.addAll(nodes.get(p).getInputList());
        }
        if (kept == nodes.size()) {
            return g;
        }
        GraphProto.Builder b = g.toBuilder().clearNode();
        for (int i = 0; i < nodes.size(); i++) {
            if (live[i]) {
                b.addNode(nodes.get(i));
            }
        }
        return b.build();
    }

    /**
     * The nodes in an order where every node comes after the producers of its inputs (Kahn's
     * algorithm taking the earliest ready node in the file: a file already in order, as ONNX asks
     * and exporters write it, keeps its order, and with it the order of the paths through the graph).
     * An input no node, initializer or graph input provides, a name produced twice, or a cycle is
     * refused, naming the node.
     */
    private static List<NodeProto> topologicalOrder(GraphProto g, java.util.Set<String> inits, String input) {
        List<NodeProto> nodes = g.getNodeList();
        Map<String, Integer> producer = new HashMap<>();
        for (int i = 0; i < nodes.size(); i++) {
            for (String o : nodes.get(i).getOutputList()) {
                if (o.isEmpty()) {
                    continue;
                }
                if (producer.put(o, i) != null || o.equals(input) || inits.contains(o)) {
                    throw new IllegalArgumentException("onnx: tensor '" + o + "' is produced twice (node '"
                            + nodes.get(i).getName() + "')");
                }
            }
        }
        int[] pending = new int[nodes.size()];
        List<List<Integer>> users = new ArrayList<>();
        for (int i = 0; i < nodes.size(); i++) {
            users.add(new ArrayList<>());
        }
        for (int i = 0; i < nodes.size(); i++) {
            for (String in : nodes.get(i).getInputList()) {
                if (in.isEmpty() || inits.contains(in) || in.equals(input)) {
                    continue;
                }
                Integer p = producer.get(in);
                if (p == null) {
                    throw new IllegalArgumentException("onnx: node '" + nodes.get(i).getName() + "' (" + nodes.get(i).getOpType()
                            + ") reads '" + in + "', which no node, initializer or graph input provides");
                }
                pending[i]++;
                users.get(p).add(i);
            }
        }
        java.util.PriorityQueue<Integer> ready = new java.util.PriorityQueue<>();
        for (int i = 0; i < nodes.size(); i++) {
            if (pending[i] == 0) {
                ready.add(i);
            }
        }
        List<NodeProto> order = new ArrayList<>();
        while (!ready.isEmpty()) {
            int i = ready.poll();
            order.add(nodes.get(i));
            for (int u : users.get(i)) {
                if (--pending[u] == 0) {
                    ready.add(u);
                }
            }
        }
        if (order.size() != nodes.size()) {
            for (int i = 0; i < nodes.size(); i++) {
                if (pending[i] > 0) {
                    throw new IllegalArgumentException("onnx: the graph has a cycle through node '" + nodes.get(i).getName()
                            + "' (" + nodes.get(i).getOpType() + ")");
                }
            }
        }
        return order;
    }

    private static void dense(Pending p, TensorProto w, boolean transB, long width, String name, String op) {
        long[] dims = dims(w, name, op);
        if (dims.length != 2) {
            throw unsupported(op, name, "a weight of rank " + dims.length);
        }
        long k = transB ? dims[1] : dims[0], n = transB ? dims[0] : dims[1];
        if (k != width) {
            throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") multiplies " + width
                    + " features by a weight of " + k + " rows");
        }
        float[] v = floatData(w, dims, name, op);
        if (transB) {
            float[] t = new float[v.length];
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < k; j++) {
                    t[(int) (j * n + i)] = v[(int) (i * k + j)];
                }
            }
            v = t;
        }
        p.kind = "dense";
        p.out = n;
        p.weight = v;
    }

    private static float[] ones(long n) {
        float[] v = new float[Math.toIntExact(n)];
        java.util.Arrays.fill(v, 1f);
        return v;
    }

    private static float[] vector(TensorProto t, long n, String name, String op) {
        long[] dims = dims(t, name, op);
        long count = 1;
        for (long d : dims) {
            count *= d;
        }
        if (count != n) {
            throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + "): initializer '" + t.getName() + "' has "
                    + count + " values, expected " + n);
        }
        return floatData(t, dims, name, op);
    }

    private static long[] dims(TensorProto t, String name, String op) {
        long[] d = new long[t.getDimsCount()];
        long count = 1;
        for (int i = 0; i < d.length; i++) {
            d[i] = t.getDims(i);
            if (d[i] < 0 || d[i] > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + "): initializer '" + t.getName()
                        + "' has dimension " + d[i]);
            }
            count *= d[i];
            if (count > Integer.MAX_VALUE / 4) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + "): initializer '" + t.getName()
                        + "' is too large");
            }
        }
        return d;
    }

    private static float[] floatData(TensorProto t, long[] dims, String name, String op) {
        if (t.getDataType() != TensorProto.DataType.FLOAT_VALUE) {
            throw unsupported(op, name, "initializer '" + t.getName() + "' of data type " + t.getDataType() + " (FLOAT only)");
        }
        if (t.getDataLocation() == TensorProto.DataLocation.EXTERNAL) {
            throw unsupported(op, name, "external data for '" + t.getName() + "'");
        }
        int count = 1;
        for (long d : dims) {
            count *= (int) d;
        }
        // Check the data really holds `count` floats before allocating anything for it.
        if (t.hasRawData()) {
            ByteBuffer b = t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
            if (b.remaining() != 4L * count) {
                throw new IllegalArgumentException("onnx: initializer '" + t.getName() + "' holds " + b.remaining()
                        + " bytes for " + count + " floats");
            }
            float[] out = new float[count];
            b.asFloatBuffer().get(out);
            return out;
        }
        if (t.getFloatDataCount() != count) {
            throw new IllegalArgumentException("onnx: initializer '" + t.getName() + "' holds " + t.getFloatDataCount()
                    + " floats, its shape needs " + count);
        }
        float[] out = new float[count];
        for (int i = 0; i < count; i++) {
            out[i] = t.getFloatData(i);
        }
        return out;
    }

    private static long[] longs(TensorProto t, String name, String op) {
        if (t.getDataType() != TensorProto.DataType.INT64_VALUE) {
            throw unsupported(op, name, "a shape initializer that is not INT64");
        }
        if (t.hasRawData()) {
            ByteBuffer b = t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
            if (b.remaining() % 8 != 0) {
                throw new IllegalArgumentException("onnx: initializer '" + t.getName() + "' holds " + b.remaining()
                        + " bytes, not a whole number of INT64 values");
            }
            long[] out = new long[b.remaining() / 8];
            b.asLongBuffer().get(out);
            return out;
        }
        long[] out = new long[t.getInt64DataCount()];
        for (int i = 0; i < out.length; i++) {
            out[i] = t.getInt64Data(i);
        }
        return out;
    }

    private static TensorProto initializer(Map<String, TensorProto> inits, NodeProto n, int index, String name, String op) {
        if (n.getInputCount() <= index) {
            throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") lacks input " + index);
        }
        TensorProto t = inits.get(n.getInput(index));
        if (t == null) {
            throw unsupported(op, name, "input '" + n.getInput(index) + "' that is not an initializer (weights must be constants)");
        }
        return t;
    }

    /**
     * The model input's dimensions: [batch, d1, ..., dk] with every d known and positive (a rank
     * above 2 must be flattened into rows before the first layer); the batch is BATCH unless the
     * file fixes it.
     */
    private static long[] inputDims(ValueInfoProto v) {
        if (!v.hasType() || !v.getType().hasTensorType()) {
            throw new IllegalArgumentException("onnx: input '" + v.getName() + "' is not a tensor");
        }
        TypeProto.Tensor t = v.getType().getTensorType();
        if (t.getElemType() != TensorProto.DataType.FLOAT_VALUE && t.getElemType() != TensorProto.DataType.INT32_VALUE
                && t.getElemType() != TensorProto.DataType.INT64_VALUE) {
            throw new IllegalArgumentException("onnx: input '" + v.getName() + "' has element type " + t.getElemType()
                    + ": Kiln takes FLOAT inputs (or INT32/INT64 token ids into an embedding)");
        }
        int rank = t.hasShape() ? t.getShape().getDimCount() : 0;
        if (rank < 2 || rank > 8) {
            throw new IllegalArgumentException("onnx: input '" + v.getName() + "' must be [batch, features] (or [batch, d1, "
                    + "..., dk], flattened before the first layer), with known sizes; it has " + (t.hasShape() ? "rank " + rank
                    : "no shape"));
        }
        long[] d = new long[rank];
        long features = 1;
        for (int i = 0; i < rank; i++) {
            TensorShapeProto.Dimension dim = t.getShape().getDim(i);
            if (i == 0) {
                d[0] = dim.hasDimValue() && dim.getDimValue() > 0 ? dim.getDimValue() : BATCH;
                continue;
            }
            if (!dim.hasDimValue() || dim.getDimValue() < 1) {
                throw new IllegalArgumentException("onnx: input '" + v.getName() + "' must have known sizes after the batch; "
                        + "dimension " + i + " is " + (dim.hasDimValue() ? String.valueOf(dim.getDimValue())
                        : "'" + dim.getDimParam() + "'"));
            }
            d[i] = dim.getDimValue();
            features *= d[i];
            if (features > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("onnx: input '" + v.getName() + "' has too many features per row");
            }
        }
        return d;
    }

    private static String dimsString(long[] d) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < d.length; i++) {
            b.append(i > 0 ? ", " : "").append(d[i] == BATCH ? "batch" : String.valueOf(d[i]));
        }
        return b.append(']').toString();
    }

    /**
     * Whether Reshape's target {@code s} (zeros copying {@code from}'s sizes unless allowzero)
     * makes rows [batch, width] of a value of dimensions {@code from}.
     */
    private static boolean rowsShape(long[] s, long[] from, long width, long declaredBatch, boolean allowzero) {
        if (s.length != 2) {
            return false;
        }
        long[] t = s.clone();
        for (int i = 0; i < 2; i++) {
            if (t[i] == 0 && !allowzero) {
                t[i] = from[i];
            }
        }
        boolean batch = t[0] == BATCH || (declaredBatch != BATCH && t[0] == declaredBatch);
        return (t[0] == -1 && t[1] == width) || (batch && (t[1] == width || t[1] == -1));
    }

    /**
     * Evaluates a node of a shape computation (the sizes PyTorch's exporter computes for
     * {@code x.view(x.size(0), -1)}): Shape of a model value, and Gather, Unsqueeze, Squeeze,
     * Concat, Slice and Cast of shapes. Returns false, doing nothing, when the node is not one.
     */
    private static boolean shapeOp(NodeProto n, String name, String op, Map<String, TensorProto> inits,
            Map<String, long[]> shapes, Map<String, Integer> valueOf, Map<String, Long> widthOf, Map<String, long[]> dimsOf,
            long declaredBatch) {
        if (n.getInputCount() == 0) {
            return false;
        }
        String in = n.getInput(0);
        long[] r;
        switch (op) {
            case "Shape": {
                if (!valueOf.containsKey(in)) {
                    return false;
                }
                checkAttrs(n, name, "start", "end");
                long[] d = dimsOf.getOrDefault(in, new long[] {BATCH, widthOf.get(in)});
                r = slice(d, intAttr(n, "start", 0), intAttr(n, "end", Long.MAX_VALUE));
                break;
            }
            case "Gather": {
                if (!shapes.containsKey(in)) {
                    return false;
                }
                checkAttrs(n, name, "axis");
                if (intAttr(n, "axis", 0) != 0) {
                    throw unsupported(op, name, "axis " + intAttr(n, "axis", 0) + " of a shape");
                }
                long[] d = shapes.get(in), idx = ints(initializer(inits, n, 1, name, op), name, op);
                r = new long[idx.length];
                for (int i = 0; i < idx.length; i++) {
                    long j = idx[i] < 0 ? idx[i] + d.length : idx[i];
                    if (j < 0 || j >= d.length) {
                        throw new IllegalArgumentException("onnx: node '" + name + "' (Gather) reads index " + idx[i]
                                + " of a shape of " + d.length + " sizes");
                    }
                    r[i] = d[(int) j];
                }
                break;
            }
            case "Unsqueeze": case "Squeeze": {
                if (!shapes.containsKey(in)) {
                    return false;
                }
                checkAttrs(n, name, "axes"); // an attribute below opset 13, an input from 13
                long[] axes = attr(n, "axes") != null ? attr(n, "axes").getIntsList().stream().mapToLong(Long::longValue).toArray()
                        : n.getInputCount() > 1 && !n.getInput(1).isEmpty() ? ints(initializer(inits, n, 1, name, op), name, op)
                        : new long[0];
                r = shapes.get(in);
                boolean scalarAxis = axes.length == 1 && (axes[0] == 0 || axes[0] == -1);
                if (!(scalarAxis || (axes.length == 0 && op.equals("Squeeze"))) || (op.equals("Squeeze") && r.length != 1)) {
                    throw unsupported(op, name, "an " + op + " of a shape that is not between a size and a one-size list");
                }
                break;
            }
            case "Concat": {
                boolean any = false;
                for (String i : n.getInputList()) {
                    any |= shapes.containsKey(i);
                }
                if (!any) {
                    return false;
                }
                checkAttrs(n, name, "axis");
                if (intAttr(n, "axis", 0) != 0 && intAttr(n, "axis", 0) != -1) {
                    throw unsupported(op, name, "axis " + intAttr(n, "axis", 0) + " of shapes");
                }
                List<Long> all = new ArrayList<>();
                for (int i = 0; i < n.getInputCount(); i++) {
                    long[] part = shapes.containsKey(n.getInput(i)) ? shapes.get(n.getInput(i))
                            : ints(initializer(inits, n, i, name, op), name, op);
                    for (long v : part) {
                        all.add(v);
                    }
                    if (all.size() > 64) {
                        throw unsupported(op, name, "a shape of more than 64 sizes");
                    }
                }
                r = all.stream().mapToLong(Long::longValue).toArray();
                break;
            }
            case "Mul": case "Add": case "Sub": case "Div": { // sizes computed from sizes: x.size(1) * x.size(2)
                if (n.getInputCount() != 2 || !(shapes.containsKey(in) || shapes.containsKey(n.getInput(1)))) {
                    return false;
                }
                checkAttrs(n, name);
                long[] a = shapes.containsKey(in) ? shapes.get(in) : ints(initializer(inits, n, 0, name, op), name, op);
                long[] b = shapes.containsKey(n.getInput(1)) ? shapes.get(n.getInput(1))
                        : ints(initializer(inits, n, 1, name, op), name, op);
                if (a.length != b.length && a.length != 1 && b.length != 1) {
                    throw unsupported(op, name, "an " + op + " of shapes of " + a.length + " and " + b.length + " sizes");
                }
                r = new long[Math.max(a.length, b.length)];
                for (int i = 0; i < r.length; i++) {
                    long x = a[a.length == 1 ? 0 : i], y = b[b.length == 1 ? 0 : i];
                    if (x == BATCH || y == BATCH) {
                        if (op.equals("Mul") && (x == 1 || y == 1)) {
                            r[i] = BATCH;
                            continue;
                        }
                        throw unsupported(op, name, "arithmetic on the batch size (Kiln's batch is only known at run time)");
                    }
                    try {
                        r[i] = switch (op) {
                            case "Mul" -> Math.multiplyExact(x, y);
                            case "Add" -> Math.addExact(x, y);
                            case "Sub" -> Math.subtractExact(x, y);
                            default -> {
                                if (y == 0) {
                                    throw new IllegalArgumentException("onnx: node '" + name + "' (Div) divides a size by 0");
                                }
                                yield x / y;
                            }
                        };
                    } catch (ArithmeticException e) {
                        throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") overflows a size");
                    }
                }
                break;
            }
            case "Cast": {
                if (!shapes.containsKey(in)) {
                    return false;
                }
                checkAttrs(n, name, "to", "saturate", "round_mode");
                long to = intAttr(n, "to", 0);
                if (to != TensorProto.DataType.INT64_VALUE && to != TensorProto.DataType.INT32_VALUE) {
                    throw unsupported(op, name, "a Cast of a shape to data type " + to);
                }
                r = shapes.get(in);
                break;
            }
            case "Slice": {
                if (!shapes.containsKey(in)) {
                    return false;
                }
                long[] starts, ends, axes, steps;
                if (n.getInputCount() == 1) { // below opset 10: attributes
                    checkAttrs(n, name, "starts", "ends", "axes");
                    starts = longsAttr(n, "starts");
                    ends = longsAttr(n, "ends");
                    axes = attr(n, "axes") == null ? new long[] {0} : longsAttr(n, "axes");
                    steps = new long[] {1};
                } else {
                    checkAttrs(n, name);
                    starts = ints(initializer(inits, n, 1, name, op), name, op);
                    ends = ints(initializer(inits, n, 2, name, op), name, op);
                    axes = n.getInputCount() > 3 && !n.getInput(3).isEmpty()
                            ? ints(initializer(inits, n, 3, name, op), name, op) : new long[] {0};
                    steps = n.getInputCount() > 4 && !n.getInput(4).isEmpty()
                            ? ints(initializer(inits, n, 4, name, op), name, op) : new long[] {1};
                }
                if (starts.length != 1 || ends.length != 1 || axes.length != 1 || (axes[0] != 0 && axes[0] != -1)
                        || steps.length != 1 || steps[0] != 1) {
                    throw unsupported(op, name, "a Slice of a shape other than one range with step 1");
                }
                r = slice(shapes.get(in), starts[0], ends[0]);
                break;
            }
            default:
                return false;
        }
        if (n.getOutputCount() < 1 || n.getOutput(0).isEmpty()) {
            throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") has no output");
        }
        shapes.put(n.getOutput(0), r);
        return true;
    }

    /**
     * Applies one preprocessing node to the pending per-feature map x * a[0] + a[1]: Sub, Add, Mul of
     * a constant (either side), Div by one, or an inference BatchNormalization (per channel, dim 1).
     * Constants broadcast to the value's dimensions {@code vd} ([batch, d1, ..., dk]) as ONNX's rules say.
     */
    private static void preprocess(double[][] a, NodeProto n, String op, int xi, long[] vd, Map<String, TensorProto> inits,
            String name) {
        int f = a[0].length;
        if (op.equals("BatchNormalization")) {
            long channels = vd[1];
            long[] cd = new long[vd.length - 1];
            java.util.Arrays.fill(cd, 1);
            cd[0] = channels;
            double[][] v = new double[4][];
            for (int i = 0; i < 4; i++) {
                TensorProto t = initializer(inits, n, i + 1, name, op);
                float[] data = vector(t, channels, name, op);
                v[i] = expand(data, cd, vd, name, op);
            }
            double eps = floatAttr(n, "epsilon", 1e-5f);
            for (int j = 0; j < f; j++) {
                if (!(v[3][j] + eps > 0)) {
                    throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + "): variance " + v[3][j]
                            + " + epsilon " + eps + " is not positive");
                }
                double s = v[0][j] / Math.sqrt(v[3][j] + eps), t = v[1][j] - v[2][j] * s;
                a[0][j] *= s;
                a[1][j] = a[1][j] * s + t;
            }
        } else {
            TensorProto t = initializer(inits, n, 1 - xi, name, op);
            long[] cd = dims(t, name, op);
            double[] c = expand(floatData(t, cd, name, op), cd, vd, name, op);
            for (int j = 0; j < f; j++) {
                switch (op) {
                    case "Add": a[1][j] += c[j]; break;
                    case "Sub":
                        if (xi == 0) { // x - c
                            a[1][j] -= c[j];
                        } else { // c - x
                            a[0][j] = -a[0][j];
                            a[1][j] = c[j] - a[1][j];
                        }
                        break;
                    case "Mul": a[0][j] *= c[j]; a[1][j] *= c[j]; break;
                    default: a[0][j] /= c[j]; a[1][j] /= c[j]; break; // Div: x / c
                }
            }
        }
        for (int j = 0; j < f; j++) {
            if (!Double.isFinite(a[0][j]) || !Double.isFinite(a[1][j])) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") makes feature " + j
                        + " of the model input non-finite (a division by 0?)");
            }
        }
    }

    /** A constant of dimensions cd, broadcast to one value per feature of [batch, d1, ..., dk]. */
    private static double[] expand(float[] c, long[] cd, long[] vd, String name, String op) {
        int k = vd.length - 1;
        if (cd.length > vd.length || (cd.length == vd.length && cd[0] != 1)) {
            throw unsupported(op, name, "a constant of shape " + java.util.Arrays.toString(cd) + " applied to the model input "
                    + dimsString(vd) + " (it must broadcast over the batch)");
        }
        long[] stride = new long[k];
        long s = 1;
        for (int i = 0; i < cd.length; i++) {
            int ci = cd.length - 1 - i, vi = vd.length - 1 - i;
            if (vi == 0) {
                break;
            }
            if (cd[ci] == vd[vi]) {
                stride[vi - 1] = s;
            } else if (cd[ci] != 1) {
                throw unsupported(op, name, "a constant of shape " + java.util.Arrays.toString(cd) + " that does not broadcast "
                        + "to the model input " + dimsString(vd));
            }
            s *= cd[ci];
        }
        int f = 1;
        for (int i = 1; i < vd.length; i++) {
            f *= (int) vd[i];
        }
        double[] out = new double[f];
        for (int idx = 0; idx < f; idx++) {
            long rest = idx, off = 0;
            for (int d = k - 1; d >= 0; d--) {
                off += (rest % vd[d + 1]) * stride[d];
                rest /= vd[d + 1];
            }
            out[idx] = c[(int) off];
        }
        return out;
    }

    /** The attributes of a BatchNormalization in inference mode ({@code norm}), or of an elementwise op (none). */
    private static void checkAffineAttrs(NodeProto n, String op, String name, boolean norm) {
        if (!norm) {
            checkAttrs(n, name);
            return;
        }
        checkAttrs(n, name, "epsilon", "momentum", "training_mode", "spatial");
        if (intAttr(n, "training_mode", 0) != 0) {
            throw unsupported(op, name, "training_mode = 1 (Kiln imports inference graphs)");
        }
    }

    /**
     * The most features that parameters made from scalars may span (a scale-shift from {@code x / 255}
     * or {@code h * 0.5}, a layer norm without a scale): 2^24. Other parameters come from the file's
     * data, which bounds them; these do not, and a tiny file declaring an input of 2^31 features
     * would otherwise make the importer allocate gigabytes.
     */
    static final long MAX_CONSTANT_FEATURES = 1L << 24;

    /** {@code width}, checked against {@link #MAX_CONSTANT_FEATURES} for parameters made from constants at the node. */
    private static long constantWidth(long width, String name, String op) {
        if (width > MAX_CONSTANT_FEATURES) {
            throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") applies constants to " + width
                    + " features: too many (Kiln builds parameters from constants for at most " + MAX_CONSTANT_FEATURES + ")");
        }
        return width;
    }

    /** A scale-shift layer x * a[0] + a[1], its values checked as floats. */
    private static Pending scaleShift(double[][] a, long width, String name, String op) {
        Pending p = new Pending();
        p.kind = "scaleshift";
        p.out = width;
        p.gamma = new float[(int) width];
        p.beta = new float[(int) width];
        for (int j = 0; j < width; j++) {
            p.gamma[j] = (float) a[0][j];
            p.beta[j] = (float) a[1][j];
            if (!Float.isFinite(p.gamma[j]) || !Float.isFinite(p.beta[j])) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + ") makes feature " + j
                        + " non-finite (a division by 0?)");
            }
        }
        return p;
    }

    /**
     * Folds the input preprocessing x * s + t into the first dense layer: W'[i][j] = s_i W[i][j],
     * b'_j = b_j + sum_i t_i W[i][j], in double precision.
     */
    private static void foldInput(Pending p, double[][] a, String name, String op) {
        int in = a[0].length, out = (int) p.out;
        double[] shift = new double[out];
        for (int i = 0; i < in; i++) {
            double s = a[0][i], t = a[1][i];
            for (int j = 0; j < out; j++) {
                double w = p.weight[i * out + j];
                shift[j] += t * w;
                p.weight[i * out + j] = (float) (s * w);
            }
        }
        boolean hadBias = p.bias != null;
        float[] b = hadBias ? p.bias : new float[out];
        for (int j = 0; j < out; j++) {
            b[j] = (float) (b[j] + shift[j]);
            if (!Float.isFinite(b[j])) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + "): folding the input preprocessing "
                        + "into its weights overflows float");
            }
        }
        for (float w : p.weight) {
            if (!Float.isFinite(w)) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + "): folding the input preprocessing "
                        + "into its weights overflows float");
            }
        }
        p.bias = b;
        p.shiftOnly = !hadBias;
    }

    /**
     * Folds a scale-shift y * s + t of a dense layer's output y into that layer: W'[i][j] = W[i][j] s_j,
     * b'_j = b_j s_j + t_j, in double precision; a layer without a bias keeps none when t is 0.
     */
    private static void foldOutput(Pending p, double[][] a, String name, String op) {
        int out = (int) p.out, in = p.weight.length / out;
        float[] w = p.weight.clone();
        for (int i = 0; i < in; i++) {
            for (int j = 0; j < out; j++) {
                w[i * out + j] = (float) (w[i * out + j] * a[0][j]);
            }
        }
        boolean shifts = p.bias != null;
        for (int j = 0; j < out && !shifts; j++) {
            shifts = a[1][j] != 0;
        }
        float[] b = shifts ? new float[out] : null;
        for (int j = 0; shifts && j < out; j++) {
            b[j] = (float) ((p.bias == null ? 0 : p.bias[j]) * a[0][j] + a[1][j]);
        }
        for (float v : w) {
            if (!Float.isFinite(v)) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + "): folding it into the weights of the "
                        + "layer before overflows float");
            }
        }
        for (int j = 0; shifts && j < out; j++) {
            if (!Float.isFinite(b[j])) {
                throw new IllegalArgumentException("onnx: node '" + name + "' (" + op + "): folding it into the bias of the "
                        + "layer before overflows float");
            }
        }
        p.weight = w;
        p.bias = b;
    }

    /** d[start:end] with ONNX's rules: negative bounds count from the end, then both are clamped. */
    private static long[] slice(long[] d, long start, long end) {
        long len = d.length;
        long s = Math.max(0, Math.min(len, start < 0 ? start + len : start));
        long e = Math.max(0, Math.min(len, end < 0 ? end + len : end));
        return e <= s ? new long[0] : java.util.Arrays.copyOfRange(d, (int) s, (int) e);
    }

    /**
     * Integers a node takes as input {@code i}: a constant, or sizes evaluated from a shape
     * computation (which must not involve the batch).
     */
    private static long[] sizes(NodeProto n, int i, Map<String, TensorProto> inits, Map<String, long[]> shapes, String name,
            String op) {
        long[] v = shapes.containsKey(n.getInput(i)) ? shapes.get(n.getInput(i)) : ints(initializer(inits, n, i, name, op), name, op);
        for (long x : v) {
            if (x == BATCH) {
                throw unsupported(op, name, "sizes computed from the batch size");
            }
        }
        return v;
    }

    private static long[] longsAttr(NodeProto n, String key) {
        AttributeProto a = attr(n, key);
        if (a == null) {
            throw new IllegalArgumentException("onnx: node '" + n.getName() + "' (" + n.getOpType() + ") lacks attribute '"
                    + key + "'");
        }
        return a.getIntsList().stream().mapToLong(Long::longValue).toArray();
    }

    /** The values of an INT64 or INT32 initializer. */
    private static long[] ints(TensorProto t, String name, String op) {
        if (t.getDataType() == TensorProto.DataType.INT32_VALUE) {
            if (t.hasRawData()) {
                ByteBuffer b = t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
                if (b.remaining() % 4 != 0) {
                    throw new IllegalArgumentException("onnx: initializer '" + t.getName() + "' holds " + b.remaining()
                            + " bytes, not a whole number of INT32 values");
                }
                long[] out = new long[b.remaining() / 4];
                for (int i = 0; i < out.length; i++) {
                    out[i] = b.getInt();
                }
                return out;
            }
            return t.getInt32DataList().stream().mapToLong(Integer::longValue).toArray();
        }
        return longs(t, name, op);
    }

    private static boolean isIdsInput(ValueInfoProto v) {
        return v.getType().getTensorType().getElemType() != TensorProto.DataType.FLOAT_VALUE;
    }

    private static void checkAttrs(NodeProto n, String name, String... allowed) {
        for (AttributeProto a : n.getAttributeList()) {
            boolean ok = false;
            for (String s : allowed) {
                ok |= s.equals(a.getName());
            }
            if (!ok) {
                throw unsupported(n.getOpType(), name, "attribute '" + a.getName() + "'");
            }
        }
    }

    private static AttributeProto attr(NodeProto n, String key) {
        for (AttributeProto a : n.getAttributeList()) {
            if (a.getName().equals(key)) {
                return a;
            }
        }
        return null;
    }

    private static long intAttr(NodeProto n, String key, long dflt) {
        AttributeProto a = attr(n, key);
        return a == null ? dflt : a.getI();
    }

    private static float floatAttr(NodeProto n, String key, float dflt) {
        AttributeProto a = attr(n, key);
        return a == null ? dflt : a.getF();
    }

    private static String stringAttr(NodeProto n, String key, String dflt) {
        AttributeProto a = attr(n, key);
        return a == null ? dflt : a.getS().toStringUtf8();
    }

    private static IllegalArgumentException unsupported(String op, String node, String what) {
        return new IllegalArgumentException("onnx: unsupported " + what + " in op " + op + " at node '" + node + "'");
    }
}
