package dev.kiln.train;

/**
 * A learning-rate schedule: the factor applied to the optimizer's base rate at each step. Pure
 * functions of (step, epoch) except {@link #reduceOnPlateau}, whose state the trainer saves in
 * checkpoints.
 */
public abstract class Schedule {
    /** The factor for this step (0-based) in this epoch (0-based). */
    public abstract double factor(long step, int epoch);

    /** Called after each epoch with the monitored value (validation loss, or training loss). */
    void epochEnd(double monitored) {}

    void restore(double[] state) {}

    double[] saveState() {
        return new double[0];
    }

    public static Schedule constant() {
        return new Schedule() {
            @Override
            public double factor(long step, int epoch) {
                return 1;
            }

            @Override
            public String toString() {
                return "constant";
            }
        };
    }

    /** Multiplies the rate by {@code gamma} every {@code everyEpochs} epochs. */
    public static Schedule step(int everyEpochs, double gamma) {
        if (everyEpochs < 1 || !(gamma > 0)) {
            throw new IllegalArgumentException("step schedule: everyEpochs >= 1 and gamma > 0");
        }
        return new Schedule() {
            @Override
            public double factor(long step, int epoch) {
                return Math.pow(gamma, epoch / everyEpochs);
            }

            @Override
            public String toString() {
                return "step(" + everyEpochs + ", " + gamma + ")";
            }
        };
    }

    /** Multiplies the rate by {@code gamma} each epoch. */
    public static Schedule exponential(double gamma) {
        if (!(gamma > 0)) {
            throw new IllegalArgumentException("exponential schedule: gamma must be > 0");
        }
        return new Schedule() {
            @Override
            public double factor(long step, int epoch) {
                return Math.pow(gamma, epoch);
            }

            @Override
            public String toString() {
                return "exponential(" + gamma + ")";
            }
        };
    }

    /**
     * Linear warm-up from 0 over {@code warmupSteps}, then a cosine decay to {@code minFactor} at
     * {@code totalSteps} (held after).
     */
    public static Schedule cosine(long warmupSteps, long totalSteps, double minFactor) {
        if (warmupSteps < 0 || totalSteps <= warmupSteps || !(minFactor >= 0 && minFactor <= 1)) {
            throw new IllegalArgumentException("cosine schedule: 0 <= warmupSteps < totalSteps and minFactor in [0, 1]");
        }
        return new Schedule() {
            @Override
            public double factor(long step, int epoch) {
                if (step < warmupSteps) {
                    return (step + 1) / (double) warmupSteps;
                }
                double progress = Math.min(1.0, (step - warmupSteps) / (double) (totalSteps - warmupSteps));
                return minFactor + (1 - minFactor) * 0.5 * (1 + Math.cos(Math.PI * progress));
            }

            @Override
            public String toString() {
                return "cosine(warmup " + warmupSteps + ", total " + totalSteps + ", min " + minFactor + ")";
            }
        };
    }

    /**
     * Multiplies the rate by {@code factor} when the monitored loss has not improved (by more than
     * 1e-4 relative) for {@code patience} epochs; never below {@code minFactor}.
     */
    public static Schedule reduceOnPlateau(double factor, int patience, double minFactor) {
        if (!(factor > 0 && factor < 1) || patience < 0 || !(minFactor >= 0)) {
            throw new IllegalArgumentException("reduceOnPlateau: factor in (0, 1), patience >= 0, minFactor >= 0");
        }
        return new Schedule() {
            double current = 1;
            double best = Double.POSITIVE_INFINITY;
            int bad;

            @Override
            public double factor(long step, int epoch) {
                return current;
            }

            @Override
            void epochEnd(double monitored) {
                if (monitored < best * (1 - 1e-4)) {
                    best = monitored;
                    bad = 0;
                } else if (++bad > patience) {
                    current = Math.max(minFactor, current * factor);
                    bad = 0;
                }
            }

            @Override
            double[] saveState() {
                return new double[] {current, best, bad};
            }

            @Override
            void restore(double[] s) {
                current = s[0];
                best = s[1];
                bad = (int) s[2];
            }

            @Override
            public String toString() {
                return "reduceOnPlateau(" + factor + ", patience " + patience + ")";
            }
        };
    }
}
