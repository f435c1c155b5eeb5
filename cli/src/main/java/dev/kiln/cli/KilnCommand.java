package dev.kiln.cli;

import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code kiln} command. Exit codes: 0 success; 1 the command ran and failed (a one-line reason
 * on stderr); 2 bad usage.
 */
@Command(name = "kiln", mixinStandardHelpOptions = true, versionProvider = KilnCommand.Version.class,
        description = "Kiln: train, compile and serve neural networks from the JVM over native kernels.",
        subcommands = {InfoCommand.class, DemoCommand.class, TrainCommand.class, EvalCommand.class, ReportCommand.class,
                ModelCommands.Inspect.class, ModelCommands.Predict.class, ModelCommands.Bench.class,
                CryptCommands.Encrypt.class, CryptCommands.Decrypt.class, RegistryCommand.class,
                CommandLine.HelpCommand.class})
public final class KilnCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        spec.commandLine().usage(spec.commandLine().getOut());
        return 0;
    }

    public static void main(String[] args) {
        System.exit(run(args, new PrintWriter(System.out, true), new PrintWriter(System.err, true)));
    }

    /** Runs the command line with the given streams and returns the exit code (for tests). */
    public static int run(String[] args, PrintWriter out, PrintWriter err) {
        CommandLine cl = new CommandLine(new KilnCommand());
        cl.setOut(out);
        cl.setErr(err);
        cl.setExecutionExceptionHandler((ex, line, parsed) -> {
            String msg = ex.getMessage() == null ? ex.getClass().getSimpleName() : ex.getMessage();
            // The JDK's file errors say only the path when they carry no reason: say what it is.
            if (ex instanceof java.nio.file.NoSuchFileException f && f.getReason() == null) {
                msg = f.getFile() + ": no such file";
            } else if (ex instanceof java.nio.file.AccessDeniedException f && f.getReason() == null) {
                msg = f.getFile() + ": permission denied";
            } else if (ex instanceof java.nio.file.FileAlreadyExistsException f && f.getReason() == null) {
                msg = f.getFile() + ": already exists";
            }
            line.getErr().println("kiln " + line.getCommandName() + ": " + msg.lines().findFirst().orElse(""));
            return 1;
        });
        return cl.execute(args);
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"kiln " + dev.kiln.Kiln.version()};
        }
    }
}
