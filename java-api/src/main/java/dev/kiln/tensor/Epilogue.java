package dev.kiln.tensor;

import java.util.Objects;

/**
 * What a matrix product applies to each tile of its output while the tile is still in L1:
 * {@code out = activation(out + bias) + residual}. Bias is a vector of N floats, residual an
 * M x N tensor (both F32 on the CPU, any of them may be absent). Immutable; build once, reuse.
 */
public final class Epilogue {
    /** No bias, no activation, no residual. */
    public static final Epilogue NONE = new Epilogue(null, Activation.IDENTITY, 0f, null);

    private final Tensor bias;
    private final Activation activation;
    private final float alpha;
    private final Tensor residual;

    private Epilogue(Tensor bias, Activation activation, float alpha, Tensor residual) {
        this.bias = bias;
        this.activation = activation;
        this.alpha = alpha;
        this.residual = residual;
    }

    public static Epilogue bias(Tensor bias) {
        return NONE.withBias(bias);
    }

    public static Epilogue activation(Activation activation) {
        return NONE.withActivation(activation);
    }

    public Epilogue withBias(Tensor bias) {
        return new Epilogue(Objects.requireNonNull(bias, "bias"), activation, alpha, residual);
    }

    /** The function with its default alpha ({@link Activation#defaultAlpha()}). */
    public Epilogue withActivation(Activation activation) {
        return withActivation(activation, Objects.requireNonNull(activation, "activation").defaultAlpha());
    }

    /**
     * The function with alpha: LEAKY_RELU's slope, ELU's scale, the bound of BOUNDED_RELU and HARDTANH,
     * the slope of HARD_SIGMOID.
     */
    public Epilogue withActivation(Activation activation, float alpha) {
        Objects.requireNonNull(activation, "activation").checkAlpha(alpha);
        return new Epilogue(bias, activation, alpha, residual);
    }

    /** LeakyReLU with negative slope {@code alpha}. */
    public Epilogue withLeakyRelu(float alpha) {
        if (!Float.isFinite(alpha)) {
            throw new IllegalArgumentException("leaky_relu: alpha is " + alpha + ": must be finite");
        }
        return new Epilogue(bias, Activation.LEAKY_RELU, alpha, residual);
    }

    public Epilogue withResidual(Tensor residual) {
        return new Epilogue(bias, activation, alpha, Objects.requireNonNull(residual, "residual"));
    }

    public Tensor bias() {
        return bias;
    }

    public Activation activation() {
        return activation;
    }

    public float activationAlpha() {
        return alpha;
    }

    public Tensor residual() {
        return residual;
    }

    boolean isNone() {
        return bias == null && residual == null && activation == Activation.IDENTITY;
    }
}
