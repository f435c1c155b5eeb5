package dev.kiln.nn;

import dev.kiln.infer.InferenceSession;
import dev.kiln.tensor.Activation;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * A feed-forward model: layers applied in order to rows of {@code inputFeatures} floats. Parameters
 * are tensors the model owns (close the model to free them); read or set them through
 * {@link Layer#weight()}, {@link Layer#bias()} and friends. {@link #compile(int)} freezes a copy into
 * an {@link InferenceSession}.
 *
 * <pre>{@code
 * try (Sequential model = Sequential.builder(784)
 *          .dense(512, Init.HE, 1).relu()
 *          .dense(10, Init.XAVIER, 2).softmax()
 *          .build();
 *      InferenceSession session = model.compile(256)) {
 *     session.run(x, y);     // x: [batch, 784], y: [batch, 10]
 * }
 * }</pre>
 */
public final class Sequential implements AutoCloseable {
    /** One layer and its parameters (null where the layer has none). */
    public static final class Layer {
        public enum Kind { DENSE, ACTIVATION, SOFTMAX, LOG_SOFTMAX, LAYER_NORM, DROPOUT, EMBEDDING, RESIDUAL, BRANCH, MULTIPLY,
            CONCAT, SLICE, SCALE_SHIFT, POOL, PRELU, L2_NORMALIZE }

        final Kind kind;
        final long in;
        final long out;
        final Tensor weight;
        final Tensor bias;
        final Tensor gamma;
        final Tensor beta;
        final Activation activation;
        final float alpha;
        final float eps;
        int from = -1;
        long begin;
        Pooling pooling;

        Layer(Kind kind, long in, long out, Tensor weight, Tensor bias, Tensor gamma, Tensor beta,
                Activation activation, float alpha, float eps) {
            this.kind = kind;
            this.in = in;
            this.out = out;
            this.weight = weight;
            this.bias = bias;
            this.gamma = gamma;
            this.beta = beta;
            this.activation = activation;
            this.alpha = alpha;
            this.eps = eps;
        }

        public Kind kind() {
            return kind;
        }

        public long inFeatures() {
            return in;
        }

        public long outFeatures() {
            return out;
        }

        /**
         * Residual, multiply, concat: the other operand (added, multiplied by, or whose features
         * follow this layer's input's); branch: the value the next layer reads (0: the model input,
         * i: the output of layer i - 1, as {@link Builder#mark()} returns it); -1 for other layers.
         */
        public int residualFrom() {
            return from;
        }

        /** Slice: the first feature taken (it takes {@link #outFeatures()} from there); 0 for other layers. */
        public long sliceBegin() {
            return begin;
        }

        /** Pool: how positions are combined (over {@code inFeatures() / outFeatures()} positions); null for other layers. */
        public Pooling pooling() {
            return pooling;
        }

        /** Embedding: rows of the table. */
        public long vocabulary() {
            return kind == Kind.EMBEDDING ? weight.size(0) : 0;
        }

        /**
         * Dense: [in, out] weights (row-major: y = x W + b); embedding: the [vocab, dim] table;
         * PReLU: the [features] slopes.
         */
        public Tensor weight() {
            return weight;
        }

        /** Dense: [out] bias. */
        public Tensor bias() {
            return bias;
        }

        /** Layer norm, scale-shift: [features] scale. */
        public Tensor gamma() {
            return gamma;
        }

        /** Layer norm, scale-shift: [features] shift. */
        public Tensor beta() {
            return beta;
        }

        public Activation activation() {
            return activation;
        }

        public float activationAlpha() {
            return alpha;
        }

        public float eps() {
            return eps;
        }
    }

    private final long inputFeatures;
    private final List<Layer> layers;
    private volatile boolean closed;

    private Sequential(long inputFeatures, List<Layer> layers) {
        this.inputFeatures = inputFeatures;
        this.layers = Collections.unmodifiableList(layers);
    }

    public static Builder builder(long inputFeatures) {
        if (inputFeatures < 1) {
            throw new IllegalArgumentException("inputFeatures is " + inputFeatures + ": must be >= 1");
        }
        return new Builder(inputFeatures);
    }

    public long inputFeatures() {
        return inputFeatures;
    }

    /**
     * I32 (token ids) when the first layer is an embedding, else F32: what {@code run} and the
     * trainer take as input.
     */
    public DType inputDType() {
        return !layers.isEmpty() && layers.get(0).kind == Layer.Kind.EMBEDDING ? DType.I32 : DType.F32;
    }

    public long outputFeatures() {
        return layers.isEmpty() ? inputFeatures : layers.get(layers.size() - 1).out;
    }

    public List<Layer> layers() {
        return layers;
    }

    /**
     * Compiles the model into an immutable native plan for batches of up to {@code maxBatch} rows:
     * weights are copied and packed, Dense + activation fused, buffers sized. Later changes to the
     * model's parameters do not affect the session.
     */
    public InferenceSession compile(int maxBatch) {
        if (closed) {
            throw new IllegalStateException("compile: the model is closed");
        }
        return InferenceSession.compile(this, maxBatch);
    }

    /**
     * The parameters by name: {@code "<layer index>.weight"}, {@code ".bias"} (Dense, weight
     * [in, out]), {@code ".weight"} (embedding table [vocab, dim]; PReLU slopes [features]), {@code ".gamma"}, {@code ".beta"}
     * (layer norm, scale-shift). The tensors are the model's own
     * (not copies): write them with {@link dev.kiln.io.SafeTensors#write}.
     */
    public java.util.Map<String, Tensor> parameters() {
        java.util.Map<String, Tensor> out = new java.util.LinkedHashMap<>();
        for (int i = 0; i < layers.size(); i++) {
            Layer l = layers.get(i);
            if (l.weight != null) {
                out.put(i + ".weight", l.weight);
            }
            if (l.bias != null) {
                out.put(i + ".bias", l.bias);
            }
            if (l.gamma != null) {
                out.put(i + ".gamma", l.gamma);
                out.put(i + ".beta", l.beta);
            }
        }
        return java.util.Collections.unmodifiableMap(out);
    }

    /**
     * Copies parameters into this model by the names of {@link #parameters()} (for example from
     * {@link dev.kiln.io.SafeTensors#read}). Every parameter must be present with the same dtype and
     * shape; nothing is changed when one is missing or mismatched.
     */
    public void loadParameters(java.util.Map<String, Tensor> source) {
        Objects.requireNonNull(source, "source");
        if (closed) {
            throw new IllegalStateException("loadParameters: the model is closed");
        }
        java.util.Map<String, Tensor> mine = parameters();
        for (java.util.Map.Entry<String, Tensor> e : mine.entrySet()) {
            Tensor src = source.get(e.getKey());
            if (src == null) {
                throw new IllegalArgumentException("loadParameters: no tensor named '" + e.getKey() + "'");
            }
            if (src.dtype() != e.getValue().dtype() || !java.util.Arrays.equals(src.shape(), e.getValue().shape())) {
                throw new IllegalArgumentException("loadParameters: '" + e.getKey() + "' is " + src.dtype()
                        + java.util.Arrays.toString(src.shape()) + " but the model needs " + e.getValue().dtype()
                        + java.util.Arrays.toString(e.getValue().shape()));
            }
        }
        for (java.util.Map.Entry<String, Tensor> e : mine.entrySet()) {
            dev.kiln.tensor.Ops.copy(source.get(e.getKey()), e.getValue());
        }
    }

    /** As {@link #loadPyTorchStateDict(java.util.Map, String)} with no prefix. */
    public void loadPyTorchStateDict(java.util.Map<String, Tensor> stateDict) {
        loadPyTorchStateDict(stateDict, "");
    }

    /**
     * Copies the weights of a PyTorch {@code nn.Sequential}'s {@code state_dict()} (saved with
     * {@code safetensors.torch.save_file} and read with {@link dev.kiln.io.SafeTensors#read}) into
     * this model, whose layers must line up with the torch modules one to one (an activation or
     * dropout is a module in both): a Linear's {@code "<prefix><i>.weight"} [out, in] (transposed
     * here) and {@code ".bias"} (zeros when the Linear has none), a LayerNorm's {@code ".weight"}
     * and {@code ".bias"} (ones and zeros without them), an Embedding's {@code ".weight"}, a PReLU's
     * {@code ".weight"} (one slope per feature, or [1]: one for all). F16 and
     * BF16 tensors are converted to F32. Every entry under the prefix must be taken by a layer and
     * every weight found, with the right shape; otherwise nothing is changed and the exception names
     * the entry.
     */
    public void loadPyTorchStateDict(java.util.Map<String, Tensor> stateDict, String prefix) {
        Objects.requireNonNull(stateDict, "stateDict");
        Objects.requireNonNull(prefix, "prefix");
        if (closed) {
            throw new IllegalStateException("loadPyTorchStateDict: the model is closed");
        }
        java.util.Set<String> used = new java.util.HashSet<>();
        java.util.List<Tensor> made = new java.util.ArrayList<>(); // converted copies and filler tensors, closed after
        java.util.Map<String, Tensor> mine = new java.util.LinkedHashMap<>();
        try {
            for (int i = 0; i < layers.size(); i++) {
                Layer l = layers.get(i);
                String w = prefix + i + ".weight", b = prefix + i + ".bias";
                switch (l.kind) {
                    case DENSE: {
                        Tensor t = torchTensor(stateDict, w, true, used, made);
                        if (t.rank() != 2 || t.size(0) != l.out || t.size(1) != l.in) {
                            throw new IllegalArgumentException("loadPyTorchStateDict: '" + w + "' is " + java.util.Arrays.toString(t.shape())
                                    + " but layer " + i + " is Linear(" + l.in + ", " + l.out + "): PyTorch's weight is ["
                                    + l.out + ", " + l.in + "]");
                        }
                        mine.put(i + ".weight", t.transpose(0, 1));
                        Tensor bias = torchTensor(stateDict, b, false, used, made);
                        mine.put(i + ".bias", bias != null ? bias : filled(made, l.out, 0f));
                        break;
                    }
                    case LAYER_NORM: {
                        Tensor g = torchTensor(stateDict, w, false, used, made), be = torchTensor(stateDict, b, false, used, made);
                        mine.put(i + ".gamma", g != null ? g : filled(made, l.out, 1f));
                        mine.put(i + ".beta", be != null ? be : filled(made, l.out, 0f));
                        break;
                    }
                    case EMBEDDING:
                        mine.put(i + ".weight", torchTensor(stateDict, w, true, used, made));
                        break;
                    case PRELU: { // nn.PReLU(features): [features]; nn.PReLU(): [1], one slope for every feature
                        Tensor t = torchTensor(stateDict, w, true, used, made);
                        if (t.rank() != 1 || (t.size(0) != l.out && t.size(0) != 1)) {
                            throw new IllegalArgumentException("loadPyTorchStateDict: '" + w + "' is " + java.util.Arrays.toString(t.shape())
                                    + " but layer " + i + " is PReLU over " + l.out + " features: PyTorch's weight is [" + l.out
                                    + "] or [1]");
                        }
                        if (t.size(0) == 1 && l.out != 1) {
                            t = filled(made, l.out, t.getFloat(0));
                        }
                        mine.put(i + ".weight", t);
                        break;
                    }
                    case SCALE_SHIFT:
                        throw new IllegalArgumentException("loadPyTorchStateDict: layer " + i + " is a scale-shift, which no "
                                + "torch module is (set its gamma and beta with loadParameters)");
                    default:
                        break;
                }
            }
            java.util.List<String> unused = new java.util.ArrayList<>();
            for (String k : stateDict.keySet()) {
                if (k.startsWith(prefix) && !used.contains(k)) {
                    unused.add(k);
                }
            }
            if (!unused.isEmpty()) {
                java.util.Collections.sort(unused);
                throw new IllegalArgumentException("loadPyTorchStateDict: no layer of this model takes " + unused
                        + " (the torch modules must line up with the layers one to one)");
            }
            loadParameters(mine);
        } finally {
            made.forEach(Tensor::close);
        }
    }

    private static Tensor torchTensor(java.util.Map<String, Tensor> dict, String name, boolean required,
            java.util.Set<String> used, java.util.List<Tensor> made) {
        Tensor t = dict.get(name);
        if (t == null) {
            if (required) {
                throw new IllegalArgumentException("loadPyTorchStateDict: no tensor named '" + name + "'");
            }
            return null;
        }
        used.add(name);
        if (t.dtype() == DType.BF16 || t.dtype() == DType.F16) {
            Tensor f = t.to(DType.F32);
            made.add(f);
            return f;
        }
        return t;
    }

    private static Tensor filled(java.util.List<Tensor> made, long n, float v) {
        Tensor t = Tensor.zeros(DType.F32, n);
        made.add(t);
        if (v != 0f) {
            t.fill(v);
        }
        return t;
    }

    /**
     * The layers in one line, for logs: {@code Sequential[784 -> dense 128 -> silu -> dense 10 ->
     * softmax]} (a residual as {@code + value i}, a product as {@code * value i}, a concatenation as
     * {@code concat value i}, a branch as {@code | from value i}, an alpha where the function has one).
     */
    @Override
    public String toString() {
        StringBuilder b = new StringBuilder("Sequential[").append(inputFeatures);
        if (inputDType() == DType.I32) {
            b.append(" ids");
        }
        for (Layer l : layers) {
            b.append(" -> ");
            switch (l.kind) {
                case DENSE: b.append("dense ").append(l.out); break;
                case EMBEDDING: b.append("embedding ").append(l.vocabulary()).append('x').append(l.out / Math.max(1, l.in)); break;
                case ACTIVATION:
                    b.append(l.activation.name().toLowerCase(java.util.Locale.ROOT));
                    if (l.activation.takesAlpha()) {
                        b.append('(').append(l.alpha).append(')');
                    }
                    break;
                case DROPOUT: b.append("dropout(").append(l.alpha).append(')'); break;
                case LAYER_NORM: b.append("layer_norm"); break;
                case SCALE_SHIFT: b.append("scale_shift"); break;
                case PRELU: b.append("prelu"); break;
                case L2_NORMALIZE: b.append("l2_normalize"); break;
                case POOL: b.append(l.pooling.name().toLowerCase(java.util.Locale.ROOT)).append("_pool(").append(l.in / l.out)
                        .append(')'); break;
                case RESIDUAL: b.append("+ value ").append(l.from); break;
                case BRANCH: b.append("| from value ").append(l.from); break;
                case MULTIPLY: b.append("* value ").append(l.from); break;
                case CONCAT: b.append("concat value ").append(l.from); break;
                case SLICE: b.append("features ").append(l.begin).append("..").append(l.begin + l.out - 1); break;
                default: b.append(l.kind.name().toLowerCase(java.util.Locale.ROOT)); break;
            }
        }
        return b.append(closed ? "; closed]" : "]").toString();
    }

    /** Frees every parameter tensor. Sessions compiled from the model keep working. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (Layer l : layers) {
            for (Tensor t : new Tensor[] {l.weight, l.bias, l.gamma, l.beta}) {
                if (t != null) {
                    t.close();
                }
            }
        }
    }

    /** Builds a {@link Sequential}; each call appends a layer to the current width. */
    public static final class Builder {
        private final long inputFeatures;
        private final List<Layer> layers = new ArrayList<>();
        private long features;
        private boolean built;

        private Builder(long inputFeatures) {
            this.inputFeatures = inputFeatures;
            this.features = inputFeatures;
        }

        /** Dense layer of {@code out} features with weights from {@code init} (seeded) and zero bias. */
        public Builder dense(long out, Init init, long seed) {
            Objects.requireNonNull(init, "init");
            if (out < 1) {
                throw new IllegalArgumentException("dense: out is " + out + ": must be >= 1");
            }
            Tensor w = Tensor.zeros(DType.F32, features, out);
            Tensor b = Tensor.zeros(DType.F32, out);
            switch (init) {
                case HE:
                    w.fillNormal(0, Math.sqrt(2.0 / features), seed);
                    break;
                case XAVIER:
                    double a = Math.sqrt(6.0 / (features + out));
                    w.fillUniform(-a, a, seed);
                    break;
                default:
                    break;
            }
            layers.add(new Layer(Layer.Kind.DENSE, features, out, w, b, null, null, Activation.IDENTITY, 0, 0));
            features = out;
            return this;
        }

        /**
         * Embedding lookup as the first layer: the model's input becomes {@code inputFeatures}
         * int32 token ids per row (0..vocab-1), and this layer outputs them as
         * {@code inputFeatures * dim} floats (the rows of the table, one after the other). The
         * table is initialized N(0, 1) like PyTorch's ({@code Init.XAVIER}: uniform Glorot;
         * {@code ZEROS}: zeros).
         */
        public Builder embedding(long vocab, long dim, Init init, long seed) {
            Objects.requireNonNull(init, "init");
            if (!layers.isEmpty()) {
                throw new IllegalStateException("embedding: must be the first layer (its input is token ids)");
            }
            if (vocab < 1 || dim < 1) {
                throw new IllegalArgumentException("embedding: vocab " + vocab + " and dim " + dim + " must be >= 1");
            }
            Tensor table = Tensor.zeros(DType.F32, vocab, dim);
            switch (init) {
                case HE:
                    table.fillNormal(0, 1, seed);
                    break;
                case XAVIER:
                    double a = Math.sqrt(6.0 / (vocab + dim));
                    table.fillUniform(-a, a, seed);
                    break;
                default:
                    break;
            }
            long out = Math.multiplyExact(features, dim);
            layers.add(new Layer(Layer.Kind.EMBEDDING, features, out, table, null, null, null, null, 0, 0));
            features = out;
            return this;
        }

        /** Features per row of the current value (what the next layer receives). */
        public long currentFeatures() {
            return features;
        }

        /**
         * The id of the current value, for a later {@link #residual(int)}: 0 is the model input,
         * i the output of the i-th layer added.
         */
        public int mark() {
            return layers.size();
        }

        /** Residual add: the current value plus the value {@code from} ({@link #mark()}), same width. */
        public Builder residual(int from) {
            if (from < 0 || from >= layers.size()) {
                throw new IllegalArgumentException("residual: from is " + from + ": must be an earlier value"
                        + (layers.isEmpty() ? " (there is none yet)" : ", 0.." + (layers.size() - 1)));
            }
            long w = from == 0 ? inputFeatures : layers.get(from - 1).out;
            if (w != features) {
                throw new IllegalArgumentException("residual: value " + from + " has " + w + " features, the current value "
                        + features);
            }
            if (from == 0 && !layers.isEmpty() && layers.get(0).kind == Layer.Kind.EMBEDDING) {
                throw new IllegalArgumentException("residual: value 0 is the token ids of the embedding, not features");
            }
            Layer l = new Layer(Layer.Kind.RESIDUAL, features, features, null, null, null, null, null, 0, 0);
            l.from = from;
            layers.add(l);
            return this;
        }

        /**
         * Elementwise product of the current value and the earlier value {@code from}
         * ({@link #mark()}), same width: a gate, as in GLU-style blocks,
         * {@code silu(x W1) * (x W3)}.
         */
        public Builder multiply(int from) {
            return join(Layer.Kind.MULTIPLY, "multiply", from);
        }

        /**
         * Concatenation of each row's features: the current value's, then those of the earlier
         * value {@code from} ({@link #mark()}); the width becomes their sum.
         */
        public Builder concat(int from) {
            return join(Layer.Kind.CONCAT, "concat", from);
        }

        private Builder join(Layer.Kind kind, String what, int from) {
            if (from < 0 || from >= layers.size()) {
                throw new IllegalArgumentException(what + ": from is " + from + ": must be an earlier value"
                        + (layers.isEmpty() ? " (there is none yet)" : ", 0.." + (layers.size() - 1)));
            }
            if (from == 0 && layers.get(0).kind == Layer.Kind.EMBEDDING) {
                throw new IllegalArgumentException(what + ": value 0 is the token ids of the embedding, not features");
            }
            long w = from == 0 ? inputFeatures : layers.get(from - 1).out;
            if (kind == Layer.Kind.MULTIPLY && w != features) {
                throw new IllegalArgumentException(what + ": value " + from + " has " + w + " features, the current value "
                        + features);
            }
            long out = kind == Layer.Kind.CONCAT ? features + w : features;
            if (out > (1L << 31)) {
                throw new IllegalArgumentException(what + ": " + features + " + " + w + " features is over 2^31");
            }
            Layer l = new Layer(kind, features, out, null, null, null, null, null, 0, 0);
            l.from = from;
            layers.add(l);
            features = out;
            return this;
        }

        /**
         * Features {@code begin..end-1} of each row of the current value: one part of a value split
         * in two (torch's {@code chunk} and {@code split}); with a {@link #branch(int)} back to the
         * split value, the next part.
         */
        public Builder slice(long begin, long end) {
            if (!(begin >= 0 && begin < end && end <= features)) {
                throw new IllegalArgumentException("slice: features " + begin + ".." + end + ": must satisfy 0 <= begin < end <= "
                        + features);
            }
            Layer l = new Layer(Layer.Kind.SLICE, features, end - begin, null, null, null, null, null, 0, 0);
            l.begin = begin;
            layers.add(l);
            features = end - begin;
            return this;
        }

        /**
         * Branch: the next layer reads the earlier value {@code from} ({@link #mark()}) instead of
         * the current one, which starts a second path through the model; a {@link #residual(int)},
         * {@link #multiply(int)} or {@link #concat(int)} joins the two. Every value but the model's output must be read by a later layer (checked
         * by {@link #build()}). A projection shortcut, {@code y = relu(x W1) W2 + x W3}:
         *
         * <pre>{@code
         * int x = b.mark();
         * b.dense(256, Init.HE, 1).relu().dense(128, Init.HE, 2);
         * int main = b.mark();
         * b.branch(x).dense(128, Init.XAVIER, 3).residual(main);
         * }</pre>
         */
        public Builder branch(int from) {
            if (from < 0 || from >= layers.size()) {
                throw new IllegalArgumentException("branch: from is " + from + ": must be an earlier value"
                        + (layers.isEmpty() ? " (there is none yet)" : ", 0.." + (layers.size() - 1)));
            }
            if (from == 0 && layers.get(0).kind == Layer.Kind.EMBEDDING) {
                throw new IllegalArgumentException("branch: value 0 is the token ids of the embedding, not features");
            }
            long w = from == 0 ? inputFeatures : layers.get(from - 1).out;
            Layer l = new Layer(Layer.Kind.BRANCH, features, w, null, null, null, null, null, 0, 0);
            l.from = from;
            layers.add(l);
            features = w;
            return this;
        }

        /** The function with its default alpha ({@link Activation#defaultAlpha()}). */
        public Builder activation(Activation f) {
            return activation(f, Objects.requireNonNull(f, "activation").defaultAlpha());
        }

        /**
     * The function with alpha: LEAKY_RELU's slope, ELU's scale, the bound of BOUNDED_RELU and HARDTANH,
     * the slope of HARD_SIGMOID.
     */
        public Builder activation(Activation f, float alpha) {
            Objects.requireNonNull(f, "activation");
            f.checkAlpha(alpha);
            layers.add(new Layer(Layer.Kind.ACTIVATION, features, features, null, null, null, null, f, alpha, 0));
            return this;
        }

        public Builder relu() {
            return activation(Activation.RELU);
        }

        public Builder leakyRelu(float slope) {
            return activation(Activation.LEAKY_RELU, slope);
        }

        public Builder gelu() {
            return activation(Activation.GELU);
        }

        public Builder sigmoid() {
            return activation(Activation.SIGMOID);
        }

        public Builder tanh() {
            return activation(Activation.TANH);
        }

        /** x * sigmoid(x) (swish). */
        public Builder silu() {
            return activation(Activation.SILU);
        }

        /** x > 0 ? x : alpha (exp(x) - 1); PyTorch's default alpha is 1. */
        public Builder elu(float alpha) {
            return activation(Activation.ELU, alpha);
        }

        public Builder softplus() {
            return activation(Activation.SOFTPLUS);
        }

        public Builder selu() {
            return activation(Activation.SELU);
        }

        public Builder mish() {
            return activation(Activation.MISH);
        }

        /** min(max(x, 0), max): ReLU6 with max 6. */
        public Builder boundedRelu(float max) {
            return activation(Activation.BOUNDED_RELU, max);
        }

        /** min(max(x, -bound), bound); PyTorch's nn.Hardtanh() has bound 1. */
        public Builder hardtanh(float bound) {
            return activation(Activation.HARDTANH, bound);
        }

        /** PyTorch's nn.Hardsigmoid: min(max(x / 6 + 1/2, 0), 1). */
        public Builder hardSigmoid() {
            return activation(Activation.HARD_SIGMOID, Activation.HARD_SIGMOID.defaultAlpha());
        }

        /** min(max(slope x + 1/2, 0), 1), slope > 0 (ONNX's HardSigmoid default: 0.2). */
        public Builder hardSigmoid(float slope) {
            return activation(Activation.HARD_SIGMOID, slope);
        }

        /** PyTorch's nn.Hardswish: x min(max(x + 3, 0), 6) / 6. */
        public Builder hardSwish() {
            return activation(Activation.HARD_SWISH);
        }

        public Builder softmax() {
            layers.add(new Layer(Layer.Kind.SOFTMAX, features, features, null, null, null, null, null, 0, 0));
            return this;
        }

        public Builder logSoftmax() {
            layers.add(new Layer(Layer.Kind.LOG_SOFTMAX, features, features, null, null, null, null, null, 0, 0));
            return this;
        }

        /** Layer norm with gamma = 1 and beta = 0 (set them through the layer's tensors). */
        public Builder layerNorm(float eps) {
            if (!(eps >= 0) || Float.isInfinite(eps)) {
                throw new IllegalArgumentException("layerNorm: eps is " + eps + ": must be finite and >= 0");
            }
            Tensor g = Tensor.zeros(DType.F32, features).fill(1);
            Tensor b = Tensor.zeros(DType.F32, features);
            layers.add(new Layer(Layer.Kind.LAYER_NORM, features, features, null, null, g, b, null, 0, eps));
            return this;
        }

        /**
         * Pooling over positions: the current value's features are {@code positions} vectors of
         * {@code currentFeatures() / positions} features, one after the other (an embedding's
         * output), and this layer outputs their mean, sum or elementwise maximum: a bag of
         * embeddings ({@code x.mean(1)} of torch, its EmbeddingBag).
         */
        public Builder pool(Pooling mode, long positions) {
            Objects.requireNonNull(mode, "mode");
            if (positions < 1 || features % positions != 0) {
                throw new IllegalArgumentException("pool: " + positions + " positions do not divide the " + features + " features");
            }
            Layer l = new Layer(Layer.Kind.POOL, features, features / positions, null, null, null, null, null, 0, 0);
            l.pooling = mode;
            layers.add(l);
            features /= positions;
            return this;
        }

        /** {@link #pool(Pooling, long)} by the mean. */
        public Builder meanPool(long positions) {
            return pool(Pooling.MEAN, positions);
        }

        /**
         * x * gamma + beta per feature, gamma = 1 and beta = 0 to start (set them through the
         * layer's tensors; both are trained): a batch norm in inference mode, or a constant scaling.
         */
        public Builder scaleShift() {
            Tensor g = Tensor.zeros(DType.F32, features).fill(1);
            Tensor b = Tensor.zeros(DType.F32, features);
            layers.add(new Layer(Layer.Kind.SCALE_SHIFT, features, features, null, null, g, b, null, 0, 0));
            return this;
        }

        /**
         * PReLU with a slope per feature, trained: x where x > 0, else x * slope (PyTorch's
         * {@code nn.PReLU(num_parameters=features)}); every slope starts at 0.25, as PyTorch's (set
         * them through the layer's {@link Layer#weight()}). A fixed slope shared by every feature
         * is {@link #leakyRelu(float)}.
         */
        public Builder prelu() {
            Tensor a = Tensor.zeros(DType.F32, features).fill(0.25f);
            layers.add(new Layer(Layer.Kind.PRELU, features, features, a, null, null, null, null, 0, 0));
            return this;
        }

        /**
         * L2 normalization of each row: x / max(||x||, eps), as torch's {@code F.normalize(x, dim=1)}
         * (whose eps is 1e-12): the unit-length vectors an embedding model ends with, compared by
         * their dot products. Trained through (it has no parameters).
         */
        public Builder l2Normalize(float eps) {
            if (!(eps >= 0) || Float.isInfinite(eps)) {
                throw new IllegalArgumentException("l2Normalize: eps is " + eps + ": must be finite and >= 0");
            }
            layers.add(new Layer(Layer.Kind.L2_NORMALIZE, features, features, null, null, null, null, null, 0, eps));
            return this;
        }

        /** {@link #l2Normalize(float)} with eps 1e-12, PyTorch's. */
        public Builder l2Normalize() {
            return l2Normalize(1e-12f);
        }

        /** Dropout with drop probability p: the identity at inference (it acts only in training). */
        public Builder dropout(double p) {
            if (!(p >= 0 && p < 1)) {
                throw new IllegalArgumentException("dropout: p is " + p + ": must be in [0, 1)");
            }
            layers.add(new Layer(Layer.Kind.DROPOUT, features, features, null, null, null, null, null, (float) p, 0));
            return this;
        }

        /** Every value but the output is read by a later layer; the model does not end on a branch. */
        private void checkEveryValueRead() {
            int n = layers.size();
            if (layers.get(n - 1).kind == Layer.Kind.BRANCH) {
                throw new IllegalStateException("build: the last layer is a branch: the model's output must be computed");
            }
            boolean[] read = new boolean[n + 1];
            for (int i = 0; i < n; i++) {
                Layer l = layers.get(i);
                if (l.kind != Layer.Kind.BRANCH) {
                    read[i] = true;
                }
                if (l.kind == Layer.Kind.RESIDUAL || l.kind == Layer.Kind.BRANCH || l.kind == Layer.Kind.MULTIPLY
                        || l.kind == Layer.Kind.CONCAT) {
                    int v = l.from;
                    while (v > 0 && layers.get(v - 1).kind == Layer.Kind.BRANCH) {
                        v = layers.get(v - 1).from; // a branch's value is the value it names
                    }
                    read[v] = true;
                }
            }
            for (int v = 1; v < n; v++) {
                if (read[v]) {
                    continue;
                }
                if (layers.get(v - 1).kind == Layer.Kind.BRANCH) {
                    throw new IllegalStateException("build: layer " + (v - 1) + " is a branch followed by another branch");
                }
                throw new IllegalStateException("build: value " + v + " (the output of layer " + (v - 1) + ", "
                        + layers.get(v - 1).kind.name().toLowerCase(java.util.Locale.ROOT)
                        + ") is never read: join the branch that left it back (residual, multiply or concat with " + v
                        + ")");
            }
        }

        public Sequential build() {
            if (built) {
                throw new IllegalStateException("build: already built");
            }
            if (layers.isEmpty()) {
                throw new IllegalStateException("build: the model has no layers");
            }
            checkEveryValueRead();
            built = true;
            return new Sequential(inputFeatures, new ArrayList<>(layers));
        }
    }
}
