package dev.kiln.train;

import dev.kiln.metrics.EpochMetrics;
import java.util.List;

/**
 * What a {@link Trainer#fit} did: one {@link EpochMetrics} per epoch run, whether early stopping
 * ended it, and the epoch (1-based) whose weights the model holds when best weights were restored
 * (otherwise the last).
 */
public record History(List<EpochMetrics> epochs, boolean stoppedEarly, int bestEpoch) {
    public History {
        epochs = List.copyOf(epochs);
    }

    public EpochMetrics last() {
        return epochs.isEmpty() ? null : epochs.get(epochs.size() - 1);
    }
}
