package dev.kiln.cli;

import dev.kiln.Kiln;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;

/** The {@code --threads} option of the commands that run native code (a picocli mixin). */
final class ThreadsOption {
    @Option(names = "--threads", description = "Native threads (default: Kiln's pool size, the cores available).")
    Integer value;

    /** Refuses a count outside 1..1024 as bad usage. */
    void check(CommandSpec spec) {
        if (value != null && (value < 1 || value > 1024)) {
            throw new ParameterException(spec.commandLine(), "--threads is " + value + ": must be in 1..1024");
        }
    }

    /** Sets Kiln's pool size for a command and puts the previous one back on close (tests share the JVM). */
    Scope scope() {
        return new Scope(value);
    }

    static final class Scope implements AutoCloseable {
        private final int before = Kiln.threads();
        private final boolean set;

        private Scope(Integer threads) {
            set = threads != null;
            if (set) {
                Kiln.setThreads(threads);
            }
        }

        @Override
        public void close() {
            if (set) {
                Kiln.setThreads(before);
            }
        }
    }
}
