package dev.kiln.internal;

import dev.kiln.KilnException;
import dev.kiln.internal.bindings.KilnNative;

/**
 * Loads the native core once, applies start-up configuration, and turns native statuses into
 * exceptions. Not API.
 *
 * <p>Configuration read once at load (system property first, then environment):
 * <ul>
 *   <li>{@code kiln.isa} / {@code KILN_ISA}: {@code portable}, {@code avx2}, {@code avx512} or
 *       {@code best} (default). Forces kernel dispatch down to that level; a level this CPU lacks
 *       is refused with a {@link KilnException} (UNSUPPORTED) rather than silently ignored.</li>
 *   <li>{@code kiln.threads} / {@code KILN_NUM_THREADS}: size of the native thread pool
 *       (default: the cores this process may use).</li>
 * </ul>
 */
public final class Native {
    private Native() {}

    private static final class Holder {
        static final KilnException CONFIG_ERROR;

        static {
            KilnNative.load();
            KilnException error = null;
            try {
                configure();
            } catch (KilnException e) {
                error = e;
            }
            CONFIG_ERROR = error;
        }
    }

    /**
     * Loads and configures the native library (idempotent, thread-safe). A configuration error is
     * thrown again on every call, not only the first.
     */
    public static void ensureLoaded() {
        KilnException error = Holder.CONFIG_ERROR;
        if (error != null) {
            throw new KilnException(error.status(), error.code(), error.getMessage());
        }
    }

    /** Throws a {@link KilnException} carrying the native message when status is not OK. */
    public static void check(int status) {
        if (status != 0) {
            throw failure(status);
        }
    }

    public static KilnException failure(int status) {
        String message = KilnNative.lastError();
        if (message == null || message.isEmpty()) {
            message = KilnNative.statusName(status);
        }
        return new KilnException(KilnException.Status.of(status), status, message);
    }

    private static void configure() {
        String isa = setting("kiln.isa", "KILN_ISA");
        if (isa != null && !isa.isEmpty() && !isa.equals("best")) {
            int level = isaLevel(isa);
            if (level < 0) {
                throw new KilnException(KilnException.Status.INVALID_ARGUMENT,
                        "kiln.isa/KILN_ISA is '" + isa + "': use portable, avx2, avx512 or best");
            }
            int st = KilnNative.isaSet(level);
            if (st != 0) {
                KilnException e = failure(st);
                throw new KilnException(e.status(), st, "kiln.isa/KILN_ISA is '" + isa + "': "
                        + e.getMessage().replaceFirst("^kiln_isa_set: ", "") + "; use best or a level it has");
            }
        }
        String threads = setting("kiln.threads", null);
        if (threads != null && !threads.isEmpty()) {
            int n;
            try {
                n = Integer.parseInt(threads.trim());
            } catch (NumberFormatException e) {
                throw new KilnException(KilnException.Status.INVALID_ARGUMENT,
                        "kiln.threads is '" + threads + "': not an integer");
            }
            check(KilnNative.threadsSet(n));
        }
    }

    /** Maps an ISA name to its native level, or -1. */
    public static int isaLevel(String name) {
        switch (name) {
            case "portable": return 0;
            case "avx2": return 1;
            case "avx512": return 2;
            default: return -1;
        }
    }

    private static String setting(String property, String env) {
        String v = System.getProperty(property);
        if ((v == null || v.isEmpty()) && env != null) {
            v = System.getenv(env);
        }
        return v;
    }
}
