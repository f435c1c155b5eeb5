package dev.kiln.io;

import dev.kiln.nn.Init;
import dev.kiln.nn.Pooling;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.Activation;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A {@link Sequential} model as a {@link KilnFile}: its parameters as tensors (named as
 * {@link Sequential#parameters()}) and its structure in the metadata key {@code kiln.model} (JSON:
 * input features and one entry per layer; float settings stored as their exact IEEE bits). Other
 * metadata is the caller's. Loading checks every layer's tensors against the structure (present,
 * F32, the shape the structure gives them) before allocating the layer, so a file cannot make Kiln
 * allocate more than the data it holds.
 */
public final class ModelFile {
    public static final String STRUCTURE_KEY = "kiln.model";

    private ModelFile() {}

    /** The metadata describing the model's structure (to store beside its parameters). */
    public static String structure(Sequential model) {
        StringBuilder s = new StringBuilder("{\"input\":").append(model.inputFeatures()).append(",\"layers\":[");
        List<Sequential.Layer> layers = model.layers();
        for (int i = 0; i < layers.size(); i++) {
            Sequential.Layer l = layers.get(i);
            s.append(i == 0 ? "" : ",").append("{\"kind\":\"").append(l.kind().name()).append("\",\"out\":").append(l.outFeatures())
                    .append(",\"activation\":\"").append(l.activation() == null ? "" : l.activation().name())
                    .append("\",\"alpha\":").append(Float.floatToRawIntBits(l.activationAlpha()))
                    .append(",\"eps\":").append(Float.floatToRawIntBits(l.eps())).append(",\"from\":").append(l.residualFrom())
                    .append(",\"vocab\":").append(l.vocabulary());
            if (l.kind() == Sequential.Layer.Kind.SLICE) {
                s.append(",\"begin\":").append(l.sliceBegin()); // (absent for other layers: files stay as they were)
            }
            if (l.kind() == Sequential.Layer.Kind.POOL) {
                s.append(",\"pool\":\"").append(l.pooling().name()).append('"');
            }
            s.append('}');
        }
        return s.append("]}").toString();
    }

    public static void save(Sequential model, Path file, Map<String, String> metadata) throws IOException {
        KilnFile.write(file, model.parameters(), withStructure(model, metadata));
    }

    public static byte[] toBytes(Sequential model, Map<String, String> metadata) {
        return KilnFile.toBytes(model.parameters(), withStructure(model, metadata));
    }

    private static Map<String, String> withStructure(Sequential model, Map<String, String> metadata) {
        Objects.requireNonNull(model, "model");
        Map<String, String> meta = new LinkedHashMap<>();
        if (metadata != null) {
            meta.putAll(metadata);
        }
        meta.put(STRUCTURE_KEY, structure(model));
        return meta;
    }

    /** The model in a Kiln file; a refused file throws IllegalArgumentException whose message starts with the path. */
    public static Sequential load(Path file) throws IOException {
        try (TensorSet t = KilnFile.read(file)) {
            return fromTensors(t);
        } catch (IllegalArgumentException e) {
            throw FileErrors.naming(file, "kiln file", e);
        }
    }

    public static Sequential fromBytes(byte[] image) {
        try (TensorSet t = KilnFile.fromBytes(image)) {
            return fromTensors(t);
        }
    }

    /** The file holds an F32 tensor {@code name} of exactly {@code shape}. */
    private static void needs(TensorSet set, String name, long... shape) {
        Tensor t = set.tensors().get(name);
        if (t == null) {
            throw new IllegalArgumentException("the structure needs a tensor '" + name + "' " + java.util.Arrays.toString(shape)
                    + ", which the file does not hold");
        }
        if (t.dtype() != dev.kiln.tensor.DType.F32 || !java.util.Arrays.equals(t.shape(), shape)) {
            throw new IllegalArgumentException("the structure needs '" + name + "' to be F32" + java.util.Arrays.toString(shape)
                    + " but the file holds " + t.dtype() + java.util.Arrays.toString(t.shape()));
        }
    }

    /** Builds the model a {@link KilnFile}'s tensors and structure describe (parameters copied). */
    public static Sequential fromTensors(TensorSet set) {
        String json = set.metadata().get(STRUCTURE_KEY);
        if (json == null) {
            throw new IllegalArgumentException("kiln file: no model structure (metadata '" + STRUCTURE_KEY + "')");
        }
        Object root = Json.parse(json);
        if (!(root instanceof Map<?, ?> m) || !(m.get("input") instanceof Long in) || !(m.get("layers") instanceof List<?> ls)
                || in < 1 || ls.isEmpty() || ls.size() > 10_000) {
            throw new IllegalArgumentException("kiln file: invalid model structure");
        }
        Sequential.Builder b = Sequential.builder(in);
        Sequential model;
        try {
            for (int i = 0; i < ls.size(); i++) {
                Object o = ls.get(i);
                if (!(o instanceof Map<?, ?> l) || !(l.get("kind") instanceof String kind) || !(l.get("out") instanceof Long out)
                        || !(l.get("alpha") instanceof Long alpha) || !(l.get("eps") instanceof Long eps)
                        || !(l.get("from") instanceof Long from) || !(l.get("vocab") instanceof Long vocab)
                        || !(l.get("activation") instanceof String act)) {
                    throw new IllegalArgumentException("kiln file: invalid layer in the model structure");
                }
                float a = Float.intBitsToFloat(alpha.intValue());
                Sequential.Layer.Kind k = Sequential.Layer.Kind.valueOf(kind);
                long cur = b.currentFeatures();
                // A layer's parameters must be in the file, with the shapes the structure gives them,
                // before the builder allocates them: a structure naming huge layers over a small file
                // would otherwise allocate (and zero) gigabytes before loadParameters refused it.
                switch (k) {
                    case DENSE -> {
                        needs(set, i + ".weight", cur, out);
                        needs(set, i + ".bias", out);
                    }
                    case EMBEDDING -> {
                        if (in < 1 || out % in != 0) {
                            throw new IllegalArgumentException("an embedding of " + out + " features over " + in + " positions");
                        }
                        needs(set, i + ".weight", vocab, out / in);
                    }
                    case LAYER_NORM, SCALE_SHIFT -> {
                        needs(set, i + ".gamma", cur);
                        needs(set, i + ".beta", cur);
                    }
                    case PRELU -> needs(set, i + ".weight", cur);
                    default -> { }
                }
                switch (k) {
                    case DENSE -> b.dense(out, Init.ZEROS, 0);
                    case ACTIVATION -> b.activation(Activation.valueOf(act), a);
                    case SOFTMAX -> b.softmax();
                    case LOG_SOFTMAX -> b.logSoftmax();
                    case LAYER_NORM -> b.layerNorm(Float.intBitsToFloat(eps.intValue()));
                    case SCALE_SHIFT -> b.scaleShift();
                    case PRELU -> b.prelu();
                    case L2_NORMALIZE -> b.l2Normalize(Float.intBitsToFloat(eps.intValue()));
                    case POOL -> {
                        if (!(l.get("pool") instanceof String mode) || out < 1) {
                            throw new IllegalArgumentException("a pooling layer without its mode ('pool')");
                        }
                        b.pool(Pooling.valueOf(mode), b.currentFeatures() / out);
                    }
                    case DROPOUT -> b.dropout(a);
                    case EMBEDDING -> b.embedding(vocab, out / in, Init.ZEROS, 0);
                    case RESIDUAL -> b.residual(Math.toIntExact(from));
                    case BRANCH -> b.branch(Math.toIntExact(from));
                    case MULTIPLY -> b.multiply(Math.toIntExact(from));
                    case CONCAT -> b.concat(Math.toIntExact(from));
                    case SLICE -> {
                        if (!(l.get("begin") instanceof Long begin)) {
                            throw new IllegalArgumentException("a slice without its first feature ('begin')");
                        }
                        b.slice(begin, Math.addExact(begin, out));
                    }
                }
            }
            model = b.build();
        } catch (IllegalArgumentException | IllegalStateException | ArithmeticException e) {
            throw new IllegalArgumentException("kiln file: invalid model structure (" + e.getMessage() + ")", e);
        }
        try {
            Map<String, Tensor> params = new LinkedHashMap<>(set.tensors());
            model.loadParameters(params);
        } catch (RuntimeException e) {
            model.close();
            throw new IllegalArgumentException("kiln file: " + e.getMessage(), e);
        }
        return model;
    }
}
