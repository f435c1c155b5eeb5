package dev.kiln.tensor;

/**
 * Elementwise functions ({@code kiln_unary_op}), usable alone ({@link Ops#unary}) or fused into a
 * matrix product's store ({@link Epilogue}). Vector versions agree with the scalar definitions to
 * about 2e-6 relative; NaN stays NaN. The {@code alpha} of the calls that take one is LEAKY_RELU's
 * slope and ELU's scale of the negative side (1 in PyTorch's {@code nn.ELU()}); the others ignore it.
 * SILU is {@code x * sigmoid(x)} (swish), ELU {@code x > 0 ? x : alpha (exp(x) - 1)}, SOFTPLUS
 * {@code log(1 + exp(x))}, SELU {@code 1.0507 (x > 0 ? x : 1.6733 (exp(x) - 1))}, MISH
 * {@code x * tanh(softplus(x))}; BOUNDED_RELU {@code min(max(x, 0), alpha)} (ReLU6: alpha 6),
 * HARDTANH {@code min(max(x, -alpha), alpha)} (PyTorch's default: alpha 1), HARD_SIGMOID
 * {@code min(max(alpha x + 1/2, 0), 1)} (PyTorch's {@code nn.Hardsigmoid}: alpha 1/6; ONNX's default:
 * 0.2), HARD_SWISH {@code x min(max(x + 3, 0), 6) / 6} (PyTorch's {@code nn.Hardswish}).
 */
public enum Activation {
    IDENTITY, RELU, LEAKY_RELU, GELU, SIGMOID, TANH, EXP, LOG, SQRT, NEG, ABS, SQUARE, GELU_TANH,
    SILU, ELU, SOFTPLUS, SELU, MISH, BOUNDED_RELU, HARDTANH, HARD_SIGMOID, HARD_SWISH;

    /**
     * The alpha used when none is given: PyTorch's defaults, LEAKY_RELU 0.01, ELU 1, BOUNDED_RELU 6
     * (ReLU6), HARDTANH 1, HARD_SIGMOID 1/6; 0 (unused) for the others.
     */
    public float defaultAlpha() {
        switch (this) {
            case LEAKY_RELU: return 0.01f;
            case ELU: case HARDTANH: return 1f;
            case BOUNDED_RELU: return 6f;
            case HARD_SIGMOID: return 1f / 6f;
            default: return 0f;
        }
    }

    /** Whether alpha means something to this function: LEAKY_RELU, ELU, BOUNDED_RELU, HARDTANH and HARD_SIGMOID. */
    public boolean takesAlpha() {
        return this == LEAKY_RELU || this == ELU || this == BOUNDED_RELU || this == HARDTANH || this == HARD_SIGMOID;
    }

    /**
     * Checks an alpha for this function: finite, and > 0 for the bounds of BOUNDED_RELU and HARDTANH
     * and the slope of HARD_SIGMOID.
     */
    public float checkAlpha(float alpha) {
        String name = name().toLowerCase(java.util.Locale.ROOT);
        if (!Float.isFinite(alpha)) {
            throw new IllegalArgumentException(name + ": alpha is " + alpha + ": must be finite");
        }
        if ((this == BOUNDED_RELU || this == HARDTANH) && !(alpha > 0)) {
            throw new IllegalArgumentException(name + ": the bound is " + alpha + ": must be > 0");
        }
        if (this == HARD_SIGMOID && !(alpha > 0)) {
            throw new IllegalArgumentException(name + ": the slope is " + alpha + ": must be > 0");
        }
        return alpha;
    }

    /** The native {@code kiln_unary_op} value. */
    public int nativeCode() {
        return ordinal();
    }
}
