package dev.kiln;

/**
 * A failure reported by Kiln's native core: the status code of the call and the message native
 * code left for it (naming the check and the values). Misuse that Java can see before calling
 * native code (a closed tensor, a shape mismatch, a null) raises the standard Java exception
 * instead; a {@code KilnException} means native code refused or could not do the work.
 */
public class KilnException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** The native {@code kiln_status} codes. */
    public enum Status {
        OK(0), INVALID_ARGUMENT(1), OUT_OF_MEMORY(2), UNSUPPORTED(3), SHAPE_MISMATCH(4),
        DTYPE_MISMATCH(5), OVERFLOW(6), INTERNAL(7), UNKNOWN(-1);

        private final int code;

        Status(int code) {
            this.code = code;
        }

        public int code() {
            return code;
        }

        public static Status of(int code) {
            for (Status s : values()) {
                if (s.code == code) {
                    return s;
                }
            }
            return UNKNOWN;
        }
    }

    private final Status status;
    private final int code;

    public KilnException(Status status, String message) {
        this(status, status.code(), message);
    }

    public KilnException(Status status, int code, String message) {
        super(message);
        this.status = status;
        this.code = code;
    }

    /** The status of the failed call. */
    public Status status() {
        return status;
    }

    /** The raw native status code (equal to {@code status().code()} unless UNKNOWN). */
    public int code() {
        return code;
    }
}
