package dev.kiln.train;

/**
 * An optimizer's settings; the update itself runs natively, fused (one pass over each parameter).
 * Immutable: the {@code with*} methods return a changed copy.
 *
 * <pre>{@code
 * Optimizer.adam(1e-3);                              // PyTorch's defaults: betas 0.9, 0.999, eps 1e-8
 * Optimizer.adamW(1e-3, 0.01);                       // decoupled weight decay
 * Optimizer.sgd(0.1).withMomentum(0.9, true);        // Nesterov
 * Optimizer.adam(1e-3).withL2(1e-4).withClipNorm(1); // L2 on weights, global-norm clipping
 * }</pre>
 *
 * L2 and weight decay apply to Dense weights only (not to biases or layer-norm parameters). The
 * update reads subnormal values (below 1.2e-38: weights, gradients, moments) as zero and writes none:
 * Adam's moments decay through that range wherever gradients are zero, where the CPU computes at
 * half speed; values so small move no weight.
 */
public final class Optimizer {
    public enum Kind { SGD, ADAM, ADAMW, RMSPROP }

    final Kind kind;
    final double learningRate;
    final float momentum;
    final boolean nesterov;
    final float beta1;
    final float beta2;
    final float eps;
    final float l2;
    final float weightDecay;
    final float clipNorm;

    private Optimizer(Kind kind, double lr, float momentum, boolean nesterov, float beta1, float beta2, float eps,
            float l2, float weightDecay, float clipNorm) {
        if (!(lr >= 0) || Double.isInfinite(lr)) {
            throw new IllegalArgumentException("learning rate is " + lr + ": must be finite and >= 0");
        }
        check("momentum", momentum);
        check("beta1", beta1);
        check("beta2", beta2);
        if (!(eps > 0) || Float.isInfinite(eps)) {
            throw new IllegalArgumentException("eps is " + eps + ": must be finite and > 0");
        }
        for (float v : new float[] {l2, weightDecay, clipNorm}) {
            if (!(v >= 0) || Float.isInfinite(v)) {
                throw new IllegalArgumentException("l2, weight decay and clip norm must be finite and >= 0 (got " + v + ")");
            }
        }
        if (nesterov && momentum == 0) {
            throw new IllegalArgumentException("nesterov needs momentum > 0");
        }
        this.kind = kind;
        this.learningRate = lr;
        this.momentum = momentum;
        this.nesterov = nesterov;
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.l2 = l2;
        this.weightDecay = weightDecay;
        this.clipNorm = clipNorm;
    }

    private static void check(String name, float v) {
        if (!(v >= 0 && v < 1)) {
            throw new IllegalArgumentException(name + " is " + v + ": must be in [0, 1)");
        }
    }

    public static Optimizer sgd(double lr) {
        return new Optimizer(Kind.SGD, lr, 0, false, 0.9f, 0.999f, 1e-8f, 0, 0, 0);
    }

    public static Optimizer adam(double lr) {
        return new Optimizer(Kind.ADAM, lr, 0, false, 0.9f, 0.999f, 1e-8f, 0, 0, 0);
    }

    public static Optimizer adamW(double lr, double weightDecay) {
        return new Optimizer(Kind.ADAMW, lr, 0, false, 0.9f, 0.999f, 1e-8f, 0, (float) weightDecay, 0);
    }

    /** RMSprop (PyTorch's form: squared-gradient decay alpha = 0.99, eps 1e-8). */
    public static Optimizer rmsprop(double lr) {
        return new Optimizer(Kind.RMSPROP, lr, 0, false, 0.9f, 0.99f, 1e-8f, 0, 0, 0);
    }

    public Optimizer withMomentum(double momentum, boolean nesterov) {
        if (kind != Kind.SGD) {
            throw new IllegalArgumentException("momentum is an SGD setting (this is " + kind + ")");
        }
        return new Optimizer(kind, learningRate, (float) momentum, nesterov, beta1, beta2, eps, l2, weightDecay, clipNorm);
    }

    /** Adam's betas; RMSprop's decay is {@code beta2}. */
    public Optimizer withBetas(double beta1, double beta2) {
        return new Optimizer(kind, learningRate, momentum, nesterov, (float) beta1, (float) beta2, eps, l2, weightDecay,
                clipNorm);
    }

    public Optimizer withEps(double eps) {
        return new Optimizer(kind, learningRate, momentum, nesterov, beta1, beta2, (float) eps, l2, weightDecay, clipNorm);
    }

    /** Coupled L2 regularization: adds {@code l2 * w} to each weight's gradient. */
    public Optimizer withL2(double l2) {
        return new Optimizer(kind, learningRate, momentum, nesterov, beta1, beta2, eps, (float) l2, weightDecay, clipNorm);
    }

    /** Decoupled weight decay: {@code w -= lr * decay * w} each step. */
    public Optimizer withWeightDecay(double decay) {
        return new Optimizer(kind, learningRate, momentum, nesterov, beta1, beta2, eps, l2, (float) decay, clipNorm);
    }

    /** Scales the gradient down to this global L2 norm when it is larger (0: off). */
    public Optimizer withClipNorm(double maxNorm) {
        return new Optimizer(kind, learningRate, momentum, nesterov, beta1, beta2, eps, l2, weightDecay, (float) maxNorm);
    }

    public Kind kind() {
        return kind;
    }

    public double learningRate() {
        return learningRate;
    }

    @Override
    public String toString() {
        return kind.name().toLowerCase(java.util.Locale.ROOT) + "(lr " + learningRate
                + (momentum != 0 ? ", momentum " + momentum + (nesterov ? " nesterov" : "") : "")
                + (kind == Kind.ADAM || kind == Kind.ADAMW ? ", betas " + beta1 + "/" + beta2 : "")
                + (l2 != 0 ? ", l2 " + l2 : "") + (weightDecay != 0 ? ", weight decay " + weightDecay : "")
                + (clipNorm != 0 ? ", clip " + clipNorm : "") + ")";
    }
}
