package dev.kiln.io;

import dev.kiln.internal.onnx.Onnx.AttributeProto;
import dev.kiln.internal.onnx.Onnx.GraphProto;
import dev.kiln.internal.onnx.Onnx.NodeProto;
import dev.kiln.internal.onnx.Onnx.TensorProto;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Rewrites what exporters write for ops Kiln imports whole, before {@link OnnxModels} walks the graph:
 * <ul>
 *   <li>Constant nodes (value, value_float(s), value_int(s)), and Identity nodes of a constant (PyTorch
 *       writes them for parameters equal to another), become initializers;</li>
 *   <li>GELU as PyTorch exports it below opset 20, {@code x * 0.5 * (1 + erf(x / sqrt 2))} (Div by
 *       sqrt 2 or Mul by its inverse, Erf, Add 1, Mul by x, Mul by 0.5, the two Muls in either order),
 *       becomes one Gelu node, as does its tanh form {@code 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))}
 *       (x^3 as x * (x * x) or Pow 3; Gelu with approximate = tanh);</li>
 *   <li>LayerNorm as PyTorch exports it below opset 17 (ReduceMean over the last axis, Sub, Pow 2,
 *       ReduceMean, Add eps, Sqrt, Div, then Mul by the scale and Add of the bias when the layer has
 *       them) becomes one LayerNormalization node;</li>
 *   <li>SiLU (swish) as every exporter writes it, {@code x * Sigmoid(x)}, becomes one node of op
 *       {@link #SILU} in domain {@link #DOMAIN} (ONNX has no such op), Mish below opset 18,
 *       {@code x * Tanh(Softplus(x))}, one Mish node, and hardswish below opset 14,
 *       {@code x * HardSigmoid(x)} with PyTorch's alpha 1/6 and beta 1/2, one HardSwish node;</li>
 *   <li>an L2 normalization of rows as PyTorch writes {@code F.normalize(x, dim=1)}, ReduceL2 over
 *       the last axis (kept), Clip with a min eps (or Max with eps, as Kiln exports it), an optional
 *       Expand back to x's shape, Div of x by it, becomes one node of op {@link #L2_NORMALIZE}.</li>
 * </ul>
 * A pattern is fused only when each value inside it feeds nothing but the next node of the pattern
 * and is not a graph output, and its constants have the values the formula needs; anything else is
 * left as it is (and then refused by the importer, naming the op it cannot take).
 */
final class OnnxFusion {
    /** The domain and op of the fused SiLU node, which only this class makes. */
    static final String DOMAIN = "dev.kiln.fused", SILU = "Silu";
    /** The fused op of an L2 normalization x / max(||x||, eps), attribute epsilon (in {@link #DOMAIN}). */
    static final String L2_NORMALIZE = "L2Normalize";
    private final List<NodeProto> nodes;
    private final boolean[] removed;
    private final Map<String, TensorProto> inits;
    private final Map<String, List<Integer>> consumers = new HashMap<>();
    private final Set<String> graphOutputs = new HashSet<>();
    // fused node by the position of its pattern's last node: it takes that place in the graph, so a
    // file in topological order stays in it (the importer walks the nodes in the file's order)
    private final java.util.Map<Integer, NodeProto> added = new java.util.HashMap<>();

    private OnnxFusion(List<NodeProto> nodes, Map<String, TensorProto> inits, GraphProto g) {
        this.nodes = nodes;
        this.removed = new boolean[nodes.size()];
        this.inits = inits;
        for (int i = 0; i < nodes.size(); i++) {
            for (String in : nodes.get(i).getInputList()) {
                consumers.computeIfAbsent(in, k -> new ArrayList<>()).add(i);
            }
        }
        g.getOutputList().forEach(o -> graphOutputs.add(o.getName()));
    }

    /** The graph with Constant nodes turned into initializers and the patterns above fused. */
    static GraphProto fuse(GraphProto g) {
        Map<String, TensorProto> inits = new HashMap<>();
        for (TensorProto t : g.getInitializerList()) {
            inits.put(t.getName(), t);
        }
        List<NodeProto> kept = new ArrayList<>();
        List<TensorProto> constants = new ArrayList<>();
        for (NodeProto n : g.getNodeList()) {
            TensorProto t = n.getOpType().equals("Constant") && isOnnxDomain(n) ? constant(n) : null;
            // Identity of a constant: PyTorch's exporter writes one for each parameter equal to another
            // (deduplicated: a fresh BatchNorm's running_var is its weight, all ones).
            if (n.getOpType().equals("Identity") && isOnnxDomain(n) && n.getInputCount() == 1 && n.getOutputCount() == 1
                    && !n.getOutput(0).isEmpty() && inits.containsKey(n.getInput(0)) && n.getAttributeCount() == 0) {
                t = inits.get(n.getInput(0)).toBuilder().setName(n.getOutput(0)).build();
            }
            if (t == null) {
                kept.add(n);
                continue;
            }
            if (inits.put(t.getName(), t) != null) {
                throw new IllegalArgumentException("onnx: tensor '" + t.getName() + "' is produced twice (node '"
                        + n.getName() + "')");
            }
            constants.add(t);
        }
        // A value produced twice is refused here, before fusing could drop one of its producers.
        Set<String> produced = new HashSet<>(inits.keySet());
        for (NodeProto n : kept) {
            for (String o : n.getOutputList()) {
                if (!o.isEmpty() && !produced.add(o)) {
                    throw new IllegalArgumentException("onnx: tensor '" + o + "' is produced twice (node '" + n.getName() + "')");
                }
            }
        }
        OnnxFusion f = new OnnxFusion(kept, inits, g);
        for (int i = 0; i < kept.size(); i++) {
            if (!f.removed[i]) {
                f.tryGelu(i);
            }
            if (!f.removed[i]) {
                f.tryGeluTanh(i);
            }
            if (!f.removed[i]) {
                f.tryLayerNorm(i);
            }
            if (!f.removed[i]) {
                f.trySiluOrMish(i);
            }
            if (!f.removed[i]) {
                f.tryL2Normalize(i);
            }
        }
        if (constants.isEmpty() && f.added.isEmpty()) {
            return g;
        }
        GraphProto.Builder b = g.toBuilder().clearNode().addAllInitializer(constants);
        for (int i = 0; i < kept.size(); i++) {
            if (f.added.containsKey(i)) {
                b.addNode(f.added.get(i));
            }
            if (!f.removed[i]) {
                b.addNode(kept.get(i));
            }
        }
        return b.build();
    }

    private static boolean isOnnxDomain(NodeProto n) {
        return n.getDomain().isEmpty() || n.getDomain().equals("ai.onnx");
    }

    /** The tensor a Constant node makes, named as its output; null for forms left to the importer. */
    private static TensorProto constant(NodeProto n) {
        if (n.getOutputCount() != 1 || n.getAttributeCount() != 1 || n.getOutput(0).isEmpty()) {
            return null;
        }
        AttributeProto a = n.getAttribute(0);
        String out = n.getOutput(0);
        switch (a.getName()) {
            case "value":
                return a.hasT() ? a.getT().toBuilder().setName(out).build() : null;
            case "value_float":
                return TensorProto.newBuilder().setName(out).setDataType(TensorProto.DataType.FLOAT_VALUE)
                        .addFloatData(a.getF()).build();
            case "value_floats":
                return TensorProto.newBuilder().setName(out).setDataType(TensorProto.DataType.FLOAT_VALUE)
                        .addDims(a.getFloatsCount()).addAllFloatData(a.getFloatsList()).build();
            case "value_int":
                return TensorProto.newBuilder().setName(out).setDataType(TensorProto.DataType.INT64_VALUE)
                        .addInt64Data(a.getI()).build();
            case "value_ints":
                return TensorProto.newBuilder().setName(out).setDataType(TensorProto.DataType.INT64_VALUE)
                        .addDims(a.getIntsCount()).addAllInt64Data(a.getIntsList()).build();
            default:
                return null;
        }
    }

    // ---- GELU ----------------------------------------------------------------------------------

    private void tryGelu(int i) {
        NodeProto scale = nodes.get(i);
        String op = scale.getOpType();
        if (!isOnnxDomain(scale) || scale.getInputCount() != 2 || scale.getOutputCount() != 1) {
            return;
        }
        String x;
        if (op.equals("Div") && near(scalar(scale.getInput(1)), (float) Math.sqrt(2))) {
            x = scale.getInput(0);
        } else if (op.equals("Mul")) {
            x = otherThanConstant(scale, (float) Math.sqrt(0.5));
            if (x == null) {
                return;
            }
        } else {
            return;
        }
        Integer erf = only(scale.getOutput(0), "Erf");
        if (erf == null) {
            return;
        }
        Integer plus1 = only(nodes.get(erf).getOutput(0), "Add");
        if (plus1 == null || !exactly(nodes.get(plus1), nodes.get(erf).getOutput(0), 1f)) {
            return;
        }
        geluTail(x, plus1, new ArrayList<>(List.of(i, erf, plus1)), scale.getName(), "none");
    }

    /** GELU's tanh form, {@code 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))}: x^3 as Mul(x, Mul(x, x))
     *  or Pow(x, 3). */
    private void tryGeluTanh(int i) {
        NodeProto first = nodes.get(i);
        if (!isOnnxDomain(first) || first.getInputCount() != 2 || first.getOutputCount() != 1) {
            return;
        }
        String x = first.getInput(0);
        List<Integer> parts = new ArrayList<>(List.of(i));
        Integer cube;
        if (first.getOpType().equals("Pow") && exactlyInput(first, 1, 3f)) {
            cube = i;
        } else if (first.getOpType().equals("Mul") && first.getInput(1).equals(x)) {
            cube = only(first.getOutput(0), "Mul");
            if (cube == null || !x.equals(other(nodes.get(cube), first.getOutput(0)))) {
                return;
            }
            parts.add(cube);
        } else {
            return;
        }
        Integer c = only(nodes.get(cube).getOutput(0), "Mul");
        if (c == null || !near(scalar(other(nodes.get(c), nodes.get(cube).getOutput(0))), 0.044715f)) {
            return;
        }
        Integer sum = only(nodes.get(c).getOutput(0), "Add");
        if (sum == null || !x.equals(other(nodes.get(sum), nodes.get(c).getOutput(0)))) {
            return;
        }
        Integer scaled = only(nodes.get(sum).getOutput(0), "Mul");
        if (scaled == null
                || !near(scalar(other(nodes.get(scaled), nodes.get(sum).getOutput(0))), (float) Math.sqrt(2 / Math.PI))) {
            return;
        }
        Integer tanh = only(nodes.get(scaled).getOutput(0), "Tanh");
        if (tanh == null) {
            return;
        }
        Integer plus1 = only(nodes.get(tanh).getOutput(0), "Add");
        if (plus1 == null || !exactly(nodes.get(plus1), nodes.get(tanh).getOutput(0), 1f)) {
            return;
        }
        parts.addAll(List.of(c, sum, scaled, tanh, plus1));
        geluTail(x, plus1, parts, first.getName(), "tanh");
    }

    /** The end both GELU forms share, after the Add of 1: times x, times 0.5, in either order. */
    private void geluTail(String x, int plus1, List<Integer> parts, String name, String approximate) {
        Integer m1 = only(nodes.get(plus1).getOutput(0), "Mul");
        if (m1 == null) {
            return;
        }
        String y = other(nodes.get(m1), nodes.get(plus1).getOutput(0));
        if (y == null) {
            return;
        }
        parts.add(m1);
        String out;
        if (y.equals(x)) { // (x * (1 + f)) * 0.5
            Integer half = only(nodes.get(m1).getOutput(0), "Mul");
            if (half == null || !exactly(nodes.get(half), nodes.get(m1).getOutput(0), 0.5f)) {
                return;
            }
            parts.add(half);
            out = nodes.get(half).getOutput(0);
        } else { // (x * 0.5) * (1 + f)
            Integer half = producerOf(y);
            if (half == null || !nodes.get(half).getOpType().equals("Mul") || !isOnnxDomain(nodes.get(half))
                    || !x.equals(otherThanConstant(nodes.get(half), 0.5f)) || !feedsOnly(y, m1)) {
                return;
            }
            parts.add(half);
            out = nodes.get(m1).getOutput(0);
        }
        NodeProto.Builder gelu = NodeProto.newBuilder().setOpType("Gelu").setName(name + " (Gelu, fused)").addInput(x)
                .addOutput(out);
        if (!approximate.equals("none")) {
            gelu.addAttribute(AttributeProto.newBuilder().setName("approximate").setType(AttributeProto.AttributeType.STRING)
                    .setS(com.google.protobuf.ByteString.copyFromUtf8(approximate)));
        }
        replace(parts, gelu.build());
    }

    // ---- SiLU and Mish ---------------------------------------------------------------------------

    /** Sigmoid(x), Tanh(Softplus(x)) or HardSigmoid(x) (alpha 1/6, beta 1/2), then a Mul of that by x (either order). */
    private void trySiluOrMish(int i) {
        NodeProto first = nodes.get(i);
        boolean silu = first.getOpType().equals("Sigmoid"), hard = first.getOpType().equals("HardSigmoid");
        if (!(silu || hard || first.getOpType().equals("Softplus")) || !isOnnxDomain(first) || first.getInputCount() != 1
                || first.getOutputCount() != 1 || (hard ? !torchHardSigmoid(first) : first.getAttributeCount() != 0)) {
            return;
        }
        String x = first.getInput(0);
        List<Integer> parts = new ArrayList<>(List.of(i));
        String gate = first.getOutput(0);
        if (!silu && !hard) {
            Integer tanh = only(gate, "Tanh");
            if (tanh == null || nodes.get(tanh).getAttributeCount() != 0) {
                return;
            }
            parts.add(tanh);
            gate = nodes.get(tanh).getOutput(0);
        }
        Integer mul = only(gate, "Mul");
        if (mul == null || !x.equals(other(nodes.get(mul), gate)) || nodes.get(mul).getAttributeCount() != 0) {
            return;
        }
        parts.add(mul);
        NodeProto.Builder fused = NodeProto.newBuilder().setName(first.getName() + (silu ? " (SiLU, fused)"
                        : hard ? " (HardSwish, fused)" : " (Mish, fused)"))
                .addInput(x).addOutput(nodes.get(mul).getOutput(0));
        if (silu) {
            fused.setOpType(SILU).setDomain(DOMAIN);
        } else {
            fused.setOpType(hard ? "HardSwish" : "Mish");
        }
        replace(parts, fused.build());
    }

    /** A HardSigmoid with PyTorch's alpha 1/6 and beta 1/2 (the default or written), nothing else. */
    private static boolean torchHardSigmoid(NodeProto n) {
        float alpha = Float.NaN, beta = 0.5f;
        for (AttributeProto a : n.getAttributeList()) {
            if (a.getName().equals("alpha") && a.getType() == AttributeProto.AttributeType.FLOAT) {
                alpha = a.getF();
            } else if (a.getName().equals("beta") && a.getType() == AttributeProto.AttributeType.FLOAT) {
                beta = a.getF();
            } else {
                return false;
            }
        }
        return alpha == 1f / 6f && beta == 0.5f;
    }

    // ---- LayerNorm -----------------------------------------------------------------------------

    private void tryLayerNorm(int i) {
        NodeProto mean = nodes.get(i);
        if (!mean.getOpType().equals("ReduceMean") || !isOnnxDomain(mean) || mean.getOutputCount() != 1
                || !lastAxisKept(mean)) {
            return;
        }
        String x = mean.getInput(0);
        Integer sub = only(mean.getOutput(0), "Sub");
        if (sub == null || !binary(nodes.get(sub)) || !nodes.get(sub).getInput(0).equals(x)
                || !nodes.get(sub).getInput(1).equals(mean.getOutput(0))) {
            return;
        }
        String d = nodes.get(sub).getOutput(0);
        List<Integer> users = consumers.getOrDefault(d, List.of());
        if (users.size() != 2 || graphOutputs.contains(d)) {
            return;
        }
        Integer pow = null, div = null;
        for (int u : users) {
            String uop = nodes.get(u).getOpType();
            if (uop.equals("Pow") && pow == null) {
                pow = u;
            } else if (uop.equals("Div") && div == null) {
                div = u;
            }
        }
        if (pow == null || div == null || !binary(nodes.get(pow)) || !binary(nodes.get(div)) || !nodes.get(pow).getInput(0).equals(d)
                || !exactlyInput(nodes.get(pow), 1, 2f) || !nodes.get(div).getInput(0).equals(d)) {
            return;
        }
        Integer var = only(nodes.get(pow).getOutput(0), "ReduceMean");
        if (var == null || !lastAxisKept(nodes.get(var))) {
            return;
        }
        Integer addEps = only(nodes.get(var).getOutput(0), "Add");
        if (addEps == null) {
            return;
        }
        String epsName = other(nodes.get(addEps), nodes.get(var).getOutput(0));
        Float eps = epsName == null ? null : scalar(epsName);
        if (eps == null || !(eps >= 0) || Float.isInfinite(eps)) {
            return;
        }
        Integer sqrt = only(nodes.get(addEps).getOutput(0), "Sqrt");
        if (sqrt == null || only(nodes.get(sqrt).getOutput(0), "Div") == null
                || !nodes.get(div).getInput(1).equals(nodes.get(sqrt).getOutput(0))) {
            return;
        }
        List<Integer> parts = new ArrayList<>(List.of(i, sub, pow, var, addEps, sqrt, div));
        String out = nodes.get(div).getOutput(0), gamma = null, beta = null;
        Integer mul = only(out, "Mul");
        if (mul != null) {
            gamma = otherInit(nodes.get(mul), out);
            if (gamma != null) {
                parts.add(mul);
                out = nodes.get(mul).getOutput(0);
                Integer add = only(out, "Add");
                if (add != null) {
                    beta = otherInit(nodes.get(add), out);
                    if (beta != null) {
                        parts.add(add);
                        out = nodes.get(add).getOutput(0);
                    }
                }
            }
        }
        NodeProto.Builder ln = NodeProto.newBuilder().setOpType("LayerNormalization")
                .setName(mean.getName() + " (LayerNormalization, fused)").addInput(x).addOutput(out)
                .addAttribute(AttributeProto.newBuilder().setName("axis").setType(AttributeProto.AttributeType.INT).setI(-1))
                .addAttribute(AttributeProto.newBuilder().setName("epsilon").setType(AttributeProto.AttributeType.FLOAT)
                        .setF(eps));
        // No scale: the importer takes ones; no bias: zeros ("" marks an absent optional input).
        if (gamma != null) {
            ln.addInput(gamma);
            if (beta != null) {
                ln.addInput(beta);
            }
        }
        replace(parts, ln.build());
    }

    // ---- L2 normalization ------------------------------------------------------------------------

    /** ReduceL2(x) over the last axis, kept; Clip(min eps) or Max(eps); [Expand to Shape(x)]; Div(x, that). */
    private void tryL2Normalize(int i) {
        NodeProto norm = nodes.get(i);
        if (!norm.getOpType().equals("ReduceL2") || !isOnnxDomain(norm) || norm.getOutputCount() != 1
                || norm.getInputCount() < 1 || !lastAxisKept(norm)) {
            return;
        }
        String x = norm.getInput(0);
        List<Integer> parts = new ArrayList<>(List.of(i));
        String n = norm.getOutput(0);
        Float eps = null;
        Integer floor = only(n, "Clip");
        if (floor != null) {
            NodeProto c = nodes.get(floor);
            boolean noMax = c.getInputCount() < 3 || c.getInput(2).isEmpty();
            if (c.getInputCount() >= 2 && !c.getInput(1).isEmpty() && c.getAttributeCount() == 0 && noMax) {
                eps = scalar(c.getInput(1)); // opset 11+: min as an input
            } else if (c.getInputCount() == 1 && c.getAttributeCount() == 1 && c.getAttribute(0).getName().equals("min")) {
                eps = c.getAttribute(0).getF(); // below opset 11: min as an attribute
            }
        } else {
            floor = only(n, "Max");
            if (floor != null && binary(nodes.get(floor)) && nodes.get(floor).getAttributeCount() == 0) {
                String o = other(nodes.get(floor), n);
                eps = o == null ? null : scalar(o);
            }
        }
        if (eps == null || !(eps >= 0) || Float.isInfinite(eps)) {
            return;
        }
        parts.add(floor);
        String den = nodes.get(floor).getOutput(0);
        Integer expand = only(den, "Expand");
        if (expand != null) { // expand_as(x): back to x's shape, computed by a Shape of x
            NodeProto e = nodes.get(expand);
            Integer shape = e.getInputCount() == 2 && e.getInput(0).equals(den) ? producerOf(e.getInput(1)) : null;
            if (shape == null || !nodes.get(shape).getOpType().equals("Shape") || nodes.get(shape).getInputCount() != 1
                    || !nodes.get(shape).getInput(0).equals(x) || nodes.get(shape).getAttributeCount() != 0) {
                return;
            }
            parts.add(expand);
            den = e.getOutput(0);
        }
        Integer div = only(den, "Div");
        if (div == null || !binary(nodes.get(div)) || !nodes.get(div).getInput(0).equals(x)
                || !nodes.get(div).getInput(1).equals(den)) {
            return;
        }
        parts.add(div);
        replace(parts, NodeProto.newBuilder().setOpType(L2_NORMALIZE).setDomain(DOMAIN)
                .setName(norm.getName() + " (L2 normalization, fused)").addInput(x).addOutput(nodes.get(div).getOutput(0))
                .addAttribute(AttributeProto.newBuilder().setName("epsilon").setType(AttributeProto.AttributeType.FLOAT).setF(eps))
                .build());
    }

    /** A reduction (ReduceMean, ReduceL2) over the last axis (of rows: -1 or 1) keeping it, axes as attribute or input. */
    private boolean lastAxisKept(NodeProto n) {
        long keep = 1;
        List<Long> axes = null;
        for (AttributeProto a : n.getAttributeList()) {
            switch (a.getName()) {
                case "keepdims":
                    keep = a.getI();
                    break;
                case "axes":
                    axes = a.getIntsList();
                    break;
                default:
                    return false;
            }
        }
        if (n.getInputCount() == 2 && axes == null) {
            TensorProto t = inits.get(n.getInput(1));
            if (t == null || t.getDataType() != TensorProto.DataType.INT64_VALUE) {
                return false;
            }
            axes = longs(t);
        } else if (n.getInputCount() != 1) {
            return false;
        }
        return keep == 1 && axes != null && axes.size() == 1 && (axes.get(0) == -1 || axes.get(0) == 1);
    }

    // ---- helpers -------------------------------------------------------------------------------

    /** Two inputs and one output, as every binary op of a pattern has (a malformed node has not). */
    private static boolean binary(NodeProto n) {
        return n.getInputCount() == 2 && n.getOutputCount() == 1;
    }

    /** The one node reading `value` when it has that op and nothing else reads it; else null. */
    private Integer only(String value, String op) {
        List<Integer> users = consumers.getOrDefault(value, List.of());
        if (users.size() != 1 || graphOutputs.contains(value)) {
            return null;
        }
        int u = users.get(0);
        NodeProto n = nodes.get(u);
        return !removed[u] && n.getOpType().equals(op) && isOnnxDomain(n) && n.getOutputCount() == 1 ? u : null;
    }

    private boolean feedsOnly(String value, int node) {
        List<Integer> users = consumers.getOrDefault(value, List.of());
        return users.size() == 1 && users.get(0) == node && !graphOutputs.contains(value);
    }

    private Integer producerOf(String value) {
        for (int i = 0; i < nodes.size(); i++) {
            if (!removed[i] && nodes.get(i).getOutputList().contains(value)) {
                return i;
            }
        }
        return null;
    }

    /** The input of a binary node other than `known` (null when both are `known` or it has not two). */
    private static String other(NodeProto n, String known) {
        if (n.getInputCount() != 2) {
            return null;
        }
        if (n.getInput(0).equals(known) && !n.getInput(1).equals(known)) {
            return n.getInput(1);
        }
        if (n.getInput(1).equals(known) && !n.getInput(0).equals(known)) {
            return n.getInput(0);
        }
        return null;
    }

    /** Whether the input of n other than `known` is the scalar constant v. */
    private boolean exactly(NodeProto n, String known, float v) {
        String o = other(n, known);
        Float s = o == null ? null : scalar(o);
        return s != null && s == v;
    }

    private boolean exactlyInput(NodeProto n, int index, float v) {
        Float s = n.getInputCount() > index ? scalar(n.getInput(index)) : null;
        return s != null && s == v;
    }

    /** For a binary node with one input the scalar constant v (within float rounding), the other input. */
    private String otherThanConstant(NodeProto n, float v) {
        if (n.getInputCount() != 2) {
            return null;
        }
        for (int c = 0; c < 2; c++) {
            if (near(scalar(n.getInput(c)), v) && !inits.containsKey(n.getInput(1 - c))) {
                return n.getInput(1 - c);
            }
        }
        return null;
    }

    /** The initializer input of a binary node other than `known`, if it is a FLOAT initializer. */
    private String otherInit(NodeProto n, String known) {
        String o = other(n, known);
        TensorProto t = o == null ? null : inits.get(o);
        return t != null && t.getDataType() == TensorProto.DataType.FLOAT_VALUE ? o : null;
    }

    private static boolean near(Float a, float b) {
        return a != null && Math.abs(a - b) <= 1e-6f * Math.abs(b);
    }

    /** The value of a FLOAT initializer holding one element, else null. */
    private Float scalar(String name) {
        TensorProto t = inits.get(name);
        if (t == null || t.getDataType() != TensorProto.DataType.FLOAT_VALUE
                || t.getDataLocation() == TensorProto.DataLocation.EXTERNAL) {
            return null;
        }
        for (long d : t.getDimsList()) {
            if (d != 1) {
                return null;
            }
        }
        if (t.hasRawData()) {
            return t.getRawData().size() == 4
                    ? t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).getFloat(0) : null;
        }
        return t.getFloatDataCount() == 1 ? t.getFloatData(0) : null;
    }

    private static List<Long> longs(TensorProto t) {
        List<Long> out = new ArrayList<>();
        if (t.hasRawData()) {
            ByteBuffer b = t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
            while (b.remaining() >= 8) {
                out.add(b.getLong());
            }
            return out;
        }
        return t.getInt64DataList();
    }

    private void replace(List<Integer> parts, NodeProto fused) {
        for (int p : parts) {
            removed[p] = true;
        }
        added.put(java.util.Collections.max(parts), fused);
    }
}
