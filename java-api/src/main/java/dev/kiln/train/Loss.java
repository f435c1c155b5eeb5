package dev.kiln.train;

import java.util.Arrays;

/**
 * The training objective, reduced as the (sample- and class-weighted) mean over the batch.
 * Softmax cross-entropy takes class ids and fuses the softmax (a model ending in a softmax layer is
 * trained on the logits before it); the others take one real target per output.
 */
public final class Loss {
    enum Kind { SOFTMAX_CROSS_ENTROPY, BCE_WITH_LOGITS, MSE, HUBER }

    final Kind kind;
    final float delta;
    final float[] classWeights;

    private Loss(Kind kind, float delta, float[] classWeights) {
        this.kind = kind;
        this.delta = delta;
        this.classWeights = classWeights;
    }

    public static Loss softmaxCrossEntropy() {
        return new Loss(Kind.SOFTMAX_CROSS_ENTROPY, 0, null);
    }

    /** Cross-entropy where class c's rows weigh {@code classWeights[c]} (finite, >= 0). */
    public static Loss softmaxCrossEntropy(float[] classWeights) {
        float[] w = classWeights.clone();
        boolean any = false;
        for (int i = 0; i < w.length; i++) {
            if (!(w[i] >= 0) || Float.isInfinite(w[i])) {
                throw new IllegalArgumentException("class weight " + i + " is " + w[i] + ": must be finite and >= 0");
            }
            any |= w[i] > 0;
        }
        if (!any) {  // the weighted mean would be 0 at every step: nothing learned, no error
            throw new IllegalArgumentException("class weights " + java.util.Arrays.toString(w)
                    + ": at least one must be > 0");
        }
        return new Loss(Kind.SOFTMAX_CROSS_ENTROPY, 0, w);
    }

    /** Binary cross-entropy on logits (a sigmoid fused), targets in [0, 1]. */
    public static Loss binaryCrossEntropyWithLogits() {
        return new Loss(Kind.BCE_WITH_LOGITS, 0, null);
    }

    /** Mean squared error. */
    public static Loss mse() {
        return new Loss(Kind.MSE, 0, null);
    }

    /** Huber loss: quadratic within {@code delta} of the target, linear beyond. */
    public static Loss huber(float delta) {
        if (!(delta > 0) || Float.isInfinite(delta)) {
            throw new IllegalArgumentException("huber: delta is " + delta + ": must be finite and > 0");
        }
        return new Loss(Kind.HUBER, delta, null);
    }

    public boolean takesClassIds() {
        return kind == Kind.SOFTMAX_CROSS_ENTROPY;
    }

    @Override
    public String toString() {
        return kind.name().toLowerCase(java.util.Locale.ROOT) + (kind == Kind.HUBER ? "(" + delta + ")" : "")
                + (classWeights != null ? " class weights " + Arrays.toString(classWeights) : "");
    }
}
