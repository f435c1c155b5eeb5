package dev.kiln.nn;

/** How a pooling layer combines positions ({@code kiln_pool_mode}): their mean, sum or elementwise maximum. */
public enum Pooling {
    MEAN, SUM, MAX;

    /** The native {@code kiln_pool_mode} value. */
    public int nativeCode() {
        return ordinal();
    }
}
