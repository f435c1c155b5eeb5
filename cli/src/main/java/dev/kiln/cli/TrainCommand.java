package dev.kiln.cli;

import dev.kiln.Kiln;
import dev.kiln.data.Dataset;
import dev.kiln.data.FashionMnist;
import dev.kiln.io.OnnxModels;
import dev.kiln.io.SafeTensors;
import dev.kiln.metrics.EpochMetrics;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.train.Evaluation;
import dev.kiln.train.History;
import dev.kiln.train.Optimizer;
import dev.kiln.train.Trainer;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kiln train}: trains an MLP classifier on Fashion-MNIST. */
@Command(name = "train", mixinStandardHelpOptions = true,
        description = {"Trains an MLP classifier (ReLU or --activation hidden layers, softmax output) on Fashion-MNIST from Debian's "
                + "dataset-fashion-mnist package, printing per-epoch loss, accuracy on the test set, time and "
                + "samples/s.", "Exit code 0 on success, 1 when training failed (reason on stderr), 2 on bad usage."})
final class TrainCommand implements Callable<Integer> {
    @Option(names = "--data", defaultValue = "/usr/share/datasets/fashion-mnist",
            description = "Directory with the Fashion-MNIST IDX files (default: ${DEFAULT-VALUE}).")
    Path data;

    @Option(names = "--epochs", defaultValue = "10", description = "Epochs (default: ${DEFAULT-VALUE}).")
    int epochs;

    @Option(names = "--batch-size", defaultValue = "128", description = "Mini-batch size (default: ${DEFAULT-VALUE}).")
    int batchSize;

    @Option(names = "--lr", defaultValue = "1e-3", description = "Learning rate (default: ${DEFAULT-VALUE}).")
    double lr;

    @Option(names = "--optimizer", defaultValue = "adam",
            description = "adam, adamw, sgd (momentum 0.9) or rmsprop (default: ${DEFAULT-VALUE}).")
    String optimizer;

    @Option(names = "--hidden", defaultValue = "256,128", split = ",",
            description = "Hidden layer widths (default: ${DEFAULT-VALUE}).")
    List<Integer> hidden;

    @Option(names = "--activation", defaultValue = "relu", description = "Activation of the hidden layers: relu, "
            + "leaky_relu, gelu, gelu_tanh, sigmoid, tanh, silu, elu, softplus, selu, mish, bounded_relu (ReLU6), "
            + "hardtanh, hard_sigmoid or hard_swish, with PyTorch's default alpha (default: ${DEFAULT-VALUE}).")
    String activation;

    @Option(names = "--seed", defaultValue = "42", description = "Seed of initialization, shuffling and dropout (default: ${DEFAULT-VALUE}).")
    long seed;

    @picocli.CommandLine.Mixin
    ThreadsOption threads;

    @Option(names = "--limit", description = "Train on the first N training rows only (a quick run).")
    Integer limit;

    @Option(names = "--checkpoint", description = "Checkpoint file, written every --checkpoint-every steps and at the end.")
    Path checkpoint;

    @Option(names = "--checkpoint-every", defaultValue = "500", description = "Steps between checkpoints (default: ${DEFAULT-VALUE}).")
    long checkpointEvery;

    @Option(names = "--resume", description = "Resume from this checkpoint (same model, batch size and seed).")
    Path resume;

    @Option(names = "--save", description = "Save the trained model: .onnx (ONNX) or .safetensors (weights).")
    Path save;

    @Option(names = "--progress", negatable = true, description = "Progress bar on stderr (default: when stderr is a terminal).")
    Boolean progress;

    @Option(names = "--json", description = "Print one JSON object (per-epoch metrics and the result) instead of text.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    /**
     * The directory a file will be written to: created now if missing (as Kiln's writers do), and
     * checked writable, so that a bad path fails before the training rather than after it.
     */
    private static void prepareDirectory(String option, Path file) {
        if (file == null) {
            return;
        }
        Path dir = file.toAbsolutePath().getParent();
        try {
            java.nio.file.Files.createDirectories(dir);
        } catch (java.io.IOException | SecurityException e) {
            throw new IllegalStateException(option + " " + file + ": cannot create the directory " + dir + " ("
                    + e.getClass().getSimpleName() + ")", e);
        }
        if (!java.nio.file.Files.isWritable(dir)) {
            throw new IllegalStateException(option + " " + file + ": the directory " + dir + " is not writable");
        }
    }

    private picocli.CommandLine.ParameterException usage(String msg) {
        return new picocli.CommandLine.ParameterException(spec.commandLine(), msg);
    }

    @Override
    public Integer call() throws Exception {
        if (epochs < 1) {
            throw usage("--epochs is " + epochs + ": must be >= 1");
        }
        if (batchSize < 1) {
            throw usage("--batch-size is " + batchSize + ": must be >= 1");
        }
        if (!(lr > 0) || Double.isInfinite(lr)) {
            throw usage("--lr is " + lr + ": must be finite and > 0");
        }
        dev.kiln.tensor.Activation act;
        try {
            act = dev.kiln.tensor.Activation.valueOf(activation.toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            act = null;
        }
        if (act == null || !java.util.Set.of("RELU", "LEAKY_RELU", "GELU", "GELU_TANH", "SIGMOID", "TANH", "SILU", "ELU",
                "SOFTPLUS", "SELU", "MISH", "BOUNDED_RELU", "HARDTANH", "HARD_SIGMOID", "HARD_SWISH").contains(act.name())) {
            throw usage("--activation is '" + activation + "': use relu, leaky_relu, gelu, gelu_tanh, sigmoid, tanh, silu, "
                    + "elu, softplus, selu, mish, bounded_relu, hardtanh, hard_sigmoid or hard_swish");
        }
        if (hidden.stream().anyMatch(h -> h < 1)) {
            throw usage("--hidden widths must be >= 1");
        }
        if (limit != null && limit < 1) {
            throw usage("--limit must be >= 1");
        }
        threads.check(spec);
        if (checkpointEvery < 1) {
            throw usage("--checkpoint-every is " + checkpointEvery + ": must be >= 1");
        }
        if (checkpoint != null && java.nio.file.Files.isDirectory(checkpoint)) {
            throw usage("--checkpoint " + checkpoint + " is a directory: give a file name");
        }
        if (save != null) {
            String name = save.getFileName().toString();
            if (!name.endsWith(".onnx") && !name.endsWith(".safetensors")) {
                throw usage("--save " + save + ": the name must end in .onnx or .safetensors");
            }
        }
        if (save != null && java.nio.file.Files.isDirectory(save)) {
            throw usage("--save " + save + " is a directory: give a file name");
        }
        // Before any data loads or a step runs: a file that cannot be written there would fail only
        // after the whole training.
        prepareDirectory("--save", save);
        prepareDirectory("--checkpoint", checkpoint);
        if (resume != null && !java.nio.file.Files.isRegularFile(resume)) {
            throw new IllegalStateException("--resume " + resume + ": no such checkpoint file");
        }
        Optimizer opt = switch (optimizer.toLowerCase(Locale.ROOT)) {
            case "adam" -> Optimizer.adam(lr);
            case "adamw" -> Optimizer.adamW(lr, 0.01);
            case "sgd" -> Optimizer.sgd(lr).withMomentum(0.9, false);
            case "rmsprop" -> Optimizer.rmsprop(lr);
            default -> throw usage("--optimizer is '" + optimizer + "': use adam, adamw, sgd or rmsprop");
        };
        if (threads.value != null) {
            Kiln.setThreads(threads.value);
        }
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        boolean bar = progress != null ? progress : System.console() != null;

        try (Dataset fullTrain = FashionMnist.train(data); Dataset test = FashionMnist.test(data)) {
            final Dataset train;
            if (limit != null && limit < fullTrain.size()) {
                int[] rows = new int[limit];
                for (int i = 0; i < limit; i++) {
                    rows[i] = i;
                }
                train = fullTrain.rows(rows);
            } else {
                train = fullTrain;
            }
            Sequential.Builder mb = Sequential.builder(784);
            long layerSeed = seed;
            for (int h : hidden) {
                mb.dense(h, Init.HE, layerSeed++).activation(act);
            }
            mb.dense(10, Init.HE, layerSeed).softmax();
            List<EpochMetrics> epochsDone = new ArrayList<>();
            try (Sequential model = mb.build()) {
                if (!json) {
                    out.printf(Locale.ROOT, "Fashion-MNIST: %d training rows, %d test rows; MLP 784-%s-10 (%s), %s, batch %d, "
                            + "%d thread(s), %s kernels%n", train.size(), test.size(),
                            hidden.stream().map(String::valueOf).reduce((a, b) -> a + "-" + b).orElse(""),
                            activation.toLowerCase(Locale.ROOT), opt, batchSize,
                            Kiln.threads(), Kiln.isa());
                    out.flush();
                }
                ProgressBar pb = bar ? new ProgressBar(err) : null;
                Trainer.Builder tb = Trainer.builder(model).optimizer(opt).batchSize(batchSize).seed(seed)
                        .listener(m -> {
                            if (pb != null) {
                                pb.clear();
                            }
                            epochsDone.add(m);
                            if (!json) {
                                out.printf(Locale.ROOT, "epoch %2d/%d  loss %.4f  accuracy %5.2f%%  test loss %.4f  test "
                                        + "accuracy %5.2f%%  %5.1f s  %,.0f samples/s%n", m.epoch(), epochs, m.loss(),
                                        100 * m.accuracy(), m.validationLoss(), 100 * m.validationAccuracy(),
                                        train.size() / m.samplesPerSecond(), m.samplesPerSecond());
                                out.flush();
                            }
                        });
                if (pb != null) {
                    tb.progress(pb);
                }
                if (checkpoint != null) {
                    tb.checkpointEvery(checkpointEvery, checkpoint);
                }
                long t0 = System.nanoTime();
                History h;
                Evaluation finalTest;
                try (Trainer trainer = tb.build()) {
                    if (resume != null) {
                        trainer.resume(resume);
                    }
                    h = trainer.fit(train, test, epochs);
                    if (checkpoint != null) {
                        trainer.checkpoint(checkpoint); // the end state too, whatever --checkpoint-every
                    }
                    finalTest = trainer.evaluate(test);
                }
                double seconds = (System.nanoTime() - t0) / 1e9;
                double meanRate = h.epochs().stream().mapToDouble(EpochMetrics::samplesPerSecond).average().orElse(0);
                if (save != null) {
                    String name = save.getFileName().toString();
                    if (name.endsWith(".onnx")) {
                        OnnxModels.save(model, save);
                    } else if (name.endsWith(".safetensors")) {
                        SafeTensors.write(save, model.parameters(), Map.of("model", "mlp", "dataset", "fashion-mnist"));
                    } else {
                        throw new IllegalArgumentException("--save " + save + ": the name must end in .onnx or .safetensors");
                    }
                }
                if (json) {
                    Map<String, Object> o = new LinkedHashMap<>();
                    List<Object> eps = new ArrayList<>();
                    for (EpochMetrics m : epochsDone) {
                        Map<String, Object> e = new LinkedHashMap<>();
                        e.put("epoch", m.epoch());
                        e.put("loss", m.loss());
                        e.put("accuracy", m.accuracy());
                        e.put("test_loss", m.validationLoss());
                        e.put("test_accuracy", m.validationAccuracy());
                        e.put("samples_per_second", m.samplesPerSecond());
                        eps.add(e);
                    }
                    o.put("epochs", eps);
                    o.put("test_accuracy", finalTest.accuracy());
                    o.put("test_loss", finalTest.loss());
                    o.put("samples_per_second", h.epochs().isEmpty() ? null : meanRate);
                    o.put("seconds", seconds);
                    o.put("threads", Kiln.threads());
                    o.put("batch_size", batchSize);
                    o.put("seed", seed);
                    out.println(Json.write(o));
                } else {
                    if (h.epochs().isEmpty()) {
                        out.printf(Locale.ROOT, "nothing left to train: the checkpoint had already reached epoch %d; "
                                + "test accuracy %.2f%% (loss %.4f)%n", epochs, 100 * finalTest.accuracy(),
                                finalTest.loss());
                    } else {
                        out.printf(Locale.ROOT, "final test accuracy %.2f%% (loss %.4f); training %,.0f samples/s on "
                                + "average; %.1f s in all%n", 100 * finalTest.accuracy(), finalTest.loss(), meanRate, seconds);
                    }
                    if (save != null) {
                        out.println("saved " + save);
                    }
                }
                out.flush();
                return 0;
            } finally {
                if (train != fullTrain) {
                    train.close();
                }
            }
        } catch (java.nio.file.NoSuchFileException e) {
            throw new IllegalStateException(e.getReason() != null ? e.getReason() : "no such file: " + e.getFile(), e);
        }
    }

    /** A one-line progress bar with ETA on stderr, redrawn at most 10 times a second. */
    static final class ProgressBar implements dev.kiln.train.ProgressListener {
        private final PrintWriter err;
        private long lastDraw;
        private boolean drawn;

        ProgressBar(PrintWriter err) {
            this.err = err;
        }

        @Override
        public void onStep(int epoch, int epochs, long batch, long batches, long step, double loss, double sec) {
            long now = System.nanoTime();
            if (batch != batches && now - lastDraw < 100_000_000L) {
                return;
            }
            lastDraw = now;
            int width = 30;
            int filled = (int) (width * batch / batches);
            double eta = batch > 0 ? sec * (batches - batch) / batch : 0;
            err.printf(Locale.ROOT, "\repoch %d/%d [%s%s] %d/%d  loss %.4f  ETA %.0f s ", epoch + 1, epochs,
                    "=".repeat(filled), " ".repeat(width - filled), batch, batches, loss, eta);
            err.flush();
            drawn = true;
        }

        void clear() {
            if (drawn) {
                err.print("\r" + " ".repeat(79) + "\r");
                err.flush();
                drawn = false;
            }
        }
    }
}
