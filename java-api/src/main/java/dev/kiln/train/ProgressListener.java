package dev.kiln.train;

/**
 * Called after every training step (on the training thread; keep it cheap). Primitive arguments
 * only, so a listener that allocates nothing keeps the step loop allocation-free.
 */
@FunctionalInterface
public interface ProgressListener {
    /**
     * @param epoch 0-based epoch
     * @param epochs epochs in this fit
     * @param batch 1-based batch within the epoch
     * @param batches batches per epoch
     * @param step global step count after this step
     * @param loss this step's mean loss
     * @param epochSeconds seconds since the epoch started
     */
    void onStep(int epoch, int epochs, long batch, long batches, long step, double loss, double epochSeconds);
}
