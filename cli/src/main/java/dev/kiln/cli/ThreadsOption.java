package dev.kiln.cli;

import dev.kiln.Kiln;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;

/** The {@code --threads} option of the commands that run native code (a picocli mixin). */
final class ThreadsOption {
    @Option(names = "--threads", description = "Native threads (default: Kiln's pool size, the cores available).")
    Integer value;

    /**
     * Refuses a count outside 1..1024 as bad usage, and warns on stderr of more threads than the JVM
     * has cores: they take turns on the cores, and each step waits for the last of them (on 2 cores,
     * --threads 1000 trained 100 times slower than 2).
     */
    void check(CommandSpec spec) {
        if (value != null && (value < 1 || value > 1024)) {
            throw new ParameterException(spec.commandLine(), "--threads is " + value + ": must be in 1..1024");
        }
        int cores = Runtime.getRuntime().availableProcessors();
        if (value != null && value > cores) {
            spec.commandLine().getErr().println("kiln " + spec.name() + ": warning: --threads " + value + " is more than the "
                    + cores + (cores == 1 ? " core" : " cores") + " available; the threads will take turns, which is slower than "
                    + "--threads " + cores);
            spec.commandLine().getErr().flush();
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
