package dev.kiln.metrics;

/**
 * Training metrics of one epoch, as delivered to {@link TrainingListener}s. Validation values are
 * NaN when the run has no validation set.
 */
public record EpochMetrics(int epoch, double loss, double accuracy, double validationLoss,
                           double validationAccuracy, double learningRate, double samplesPerSecond) {}
