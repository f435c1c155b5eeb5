package dev.kiln.nn;

/** Seeded weight initializers. */
public enum Init {
    /** He (Kaiming) normal: N(0, 2 / fan_in), for ReLU-family layers. */
    HE,
    /** Xavier (Glorot) uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)). */
    XAVIER,
    /** All zeros. */
    ZEROS
}
