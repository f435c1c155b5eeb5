package dev.kiln.train;

/**
 * A training step produced a non-finite loss or gradient (learning rate too high, exploding
 * activations). Nothing was updated by the failing step; checkpoints already written are intact.
 */
public final class TrainingDivergedException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final long step;

    TrainingDivergedException(long step, int epoch, long batch, String detail) {
        super("training diverged at step " + step + " (epoch " + (epoch + 1) + ", batch " + batch + "): " + detail
                + "; lower the learning rate or clip gradients (Optimizer.withClipNorm)");
        this.step = step;
    }

    /** The global step (0-based count of steps done before it) that failed. */
    public long step() {
        return step;
    }
}
