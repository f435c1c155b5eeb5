package dev.kiln.tensor;

/**
 * Elementwise functions ({@code kiln_unary_op}), usable alone ({@link Ops#unary}) or fused into a
 * matrix product's store ({@link Epilogue}). Vector versions agree with the scalar definitions to
 * about 2e-6 relative; NaN stays NaN.
 */
public enum Activation {
    IDENTITY, RELU, LEAKY_RELU, GELU, SIGMOID, TANH, EXP, LOG, SQRT, NEG, ABS, SQUARE, GELU_TANH;

    /** The native {@code kiln_unary_op} value. */
    public int nativeCode() {
        return ordinal();
    }
}
