package dev.kiln.train;

/** Weighted mean loss over a dataset and, for class ids, the accuracy (NaN otherwise). */
public record Evaluation(double loss, double accuracy, long rows) {}
