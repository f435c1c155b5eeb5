package dev.kiln.metrics;

/**
 * Receives per-epoch training metrics. The trainer of the training work calls it after each
 * epoch; {@link HtmlReport#epochs} plots a collected history.
 */
@FunctionalInterface
public interface TrainingListener {
    void onEpoch(EpochMetrics metrics);
}
