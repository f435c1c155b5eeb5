package dev.kiln.cli;

import dev.kiln.Kiln;
import dev.kiln.data.Csv;
import dev.kiln.data.Idx;
import dev.kiln.infer.InferenceSession;
import dev.kiln.io.AtomicFiles;
import dev.kiln.io.ModelFile;
import dev.kiln.io.OnnxModels;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * Commands over a model file: {@code kiln inspect}, {@code kiln predict} and {@code kiln bench}. A
 * model is an ONNX file ({@code .onnx}, imported as {@link OnnxModels} does: what Kiln cannot run
 * is named) or a Kiln model file ({@code .kiln}, {@link ModelFile}).
 */
final class ModelCommands {
    private ModelCommands() {}

    static Sequential load(Path file, CommandSpec spec, String option) throws IOException {
        String name = file.getFileName() == null ? "" : file.getFileName().toString().toLowerCase(Locale.ROOT);
        if (name.endsWith(".onnx")) {
            return OnnxModels.load(file);
        }
        if (name.endsWith(".kiln")) {
            return ModelFile.load(file);
        }
        throw new ParameterException(spec.commandLine(), option + " " + file + ": the name must end in .onnx or .kiln");
    }

    /** What the ONNX file says of itself: producer, opset, the graph's input (name, shape) and output. */
    static Map<String, Object> onnxSource(Path file) throws IOException {
        var m = dev.kiln.internal.onnx.Onnx.ModelProto.parseFrom(java.nio.file.Files.readAllBytes(file));
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("producer", (m.getProducerName() + " " + m.getProducerVersion()).strip());
        long opset = 0;
        for (var o : m.getOpsetImportList()) {
            if (o.getDomain().isEmpty() || o.getDomain().equals("ai.onnx")) {
                opset = o.getVersion();
            }
        }
        s.put("opset", opset);
        java.util.Set<String> inits = new java.util.HashSet<>();
        m.getGraph().getInitializerList().forEach(t -> inits.add(t.getName()));
        for (var v : m.getGraph().getInputList()) {
            if (!inits.contains(v.getName())) {
                s.put("input", v.getName());
                List<String> dims = new ArrayList<>();
                for (var d : v.getType().getTensorType().getShape().getDimList()) {
                    dims.add(d.hasDimValue() ? String.valueOf(d.getDimValue()) : d.getDimParam().isEmpty() ? "?" : d.getDimParam());
                }
                s.put("input_shape", "[" + String.join(", ", dims) + "]");
                break;
            }
        }
        s.put("output", m.getGraph().getOutputCount() > 0 ? m.getGraph().getOutput(0).getName() : "");
        return s;
    }

    /** A float setting as the decimal it was written as (1e-5, not 9.999999747378752E-6). */
    static double exact(float f) {
        return Double.parseDouble(Float.toString(f));
    }

        static String lower(Enum<?> e) {
        return e.name().toLowerCase(Locale.ROOT);
    }

    @Command(name = "inspect", mixinStandardHelpOptions = true,
            description = {"Describe a model file (.onnx or .kiln): its input, output, layers and parameters.",
                "An ONNX file is imported as Kiln runs it: an op or graph Kiln cannot run is named, and the command "
                        + "exits with 1."})
    static final class Inspect implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "MODEL", description = "The model file (.onnx or .kiln).")
        Path model;

        @Option(names = "--json", description = "Print one JSON object instead of text.")
        boolean json;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() throws IOException {
            try (Sequential m = load(model, spec, "MODEL")) {
                List<Map<String, Object>> layers = new ArrayList<>();
                for (int i = 0; i < m.layers().size(); i++) {
                    Sequential.Layer l = m.layers().get(i);
                    Map<String, Object> d = new LinkedHashMap<>();
                    d.put("index", i);
                    d.put("kind", lower(l.kind()));
                    d.put("in", l.inFeatures());
                    d.put("out", l.outFeatures());
                    switch (l.kind()) {
                        case ACTIVATION:
                            d.put("activation", lower(l.activation()));
                            if (l.activation().takesAlpha()) {
                                d.put("alpha", exact(l.activationAlpha()));
                            }
                            break;
                        case DROPOUT:
                            d.put("p", exact(l.activationAlpha()));
                            break;
                        case LAYER_NORM:
                        case L2_NORMALIZE:
                            d.put("eps", exact(l.eps()));
                            break;
                        case RESIDUAL:
                        case BRANCH:
                        case MULTIPLY:
                        case CONCAT:
                            d.put("from", l.residualFrom());
                            break;
                        case EMBEDDING:
                            d.put("vocabulary", l.vocabulary());
                            break;
                        case POOL:
                            d.put("pooling", lower(l.pooling()));
                            d.put("positions", l.inFeatures() / l.outFeatures());
                            break;
                        case SLICE:
                            d.put("begin", l.sliceBegin());
                            d.put("end", l.sliceBegin() + l.outFeatures());
                            break;
                        default:
                            break;
                    }
                    layers.add(d);
                }
                long params = 0;
                for (Tensor t : m.parameters().values()) {
                    params += t.numel();
                }
                Map<String, Object> info = new LinkedHashMap<>();
                info.put("model", model.toString());
                info.put("format", model.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".onnx") ? "onnx" : "kiln");
                info.put("input_features", m.inputFeatures());
                info.put("input_dtype", m.inputDType().name());
                info.put("output_features", m.outputFeatures());
                info.put("parameters", params);
                info.put("parameter_bytes", 4 * params);
                info.put("layers", layers);
                Map<String, Object> source = info.get("format").equals("onnx") ? onnxSource(model) : null;
                if (source != null) {
                    info.put("onnx", source);
                }
                var out = spec.commandLine().getOut();
                if (json) {
                    out.println(Json.write(info));
                    return 0;
                }
                out.printf("%-12s %s (%s)%n", "model", model, info.get("format"));
                if (source != null) {
                    out.printf("%-12s %s, opset %s, input '%s' %s, output '%s'%n", "onnx",
                            source.get("producer").toString().isEmpty() ? "no producer named" : source.get("producer"),
                            source.get("opset"), source.get("input"), source.get("input_shape"), source.get("output"));
                }
                boolean flattened = source != null && source.get("input_shape").toString().chars().filter(c -> c == ',').count() > 1;
                out.printf("%-12s [batch, %d] %s%s%n", "input", m.inputFeatures(), m.inputDType(),
                        m.inputDType() == DType.I32 ? " (token ids)"
                                : flattened ? " (the ONNX input's rows; run() takes either shape)" : "");
                out.printf("%-12s [batch, %d] F32%n", "output", m.outputFeatures());
                out.printf("%-12s %d (%.1f KiB)%n", "parameters", params, 4 * params / 1024.0);
                out.println("layers");
                for (Map<String, Object> d : layers) {
                    StringBuilder extra = new StringBuilder();
                    d.forEach((k, v) -> {
                        if (!List.of("index", "kind", "in", "out").contains(k)) {
                            extra.append(' ').append(k).append('=').append(v);
                        }
                    });
                    out.println(String.format("  %3d  %-12s %6d -> %-6d%s", d.get("index"), d.get("kind"), d.get("in"),
                            d.get("out"), extra).stripTrailing());
                }
                return 0;
            }
        }
    }

    @Command(name = "predict", mixinStandardHelpOptions = true,
            description = {"Run a model (.onnx or .kiln) on rows of features and write its outputs as CSV, one line "
                    + "per input row, after a header line (y0,y1,... or class), to stdout or --output.",
                "Inputs: CSV (numbers only, one row per sample, as many columns as the model takes; --header skips a "
                        + "first line; a model that starts with an embedding takes integer token ids), or IDX images "
                        + "(Fashion-MNIST's files, gzipped or not; pixels scaled to [0, 1] as kiln train does).",
                "The output file is written whole or not at all. Its rows feed kiln eval --scores."})
    static final class Predict implements Callable<Integer> {
        @Option(names = "--model", required = true, description = "The model file (.onnx or .kiln).")
        Path model;

        @Option(names = "--input", required = true,
                description = "Rows to score: a .csv file, or an IDX image file (a name containing 'idx').")
        Path input;

        @Option(names = "--header", description = "The CSV input starts with a header line.")
        boolean header;

        @Option(names = "--output", description = "Write the CSV here (default: stdout).")
        Path output;

        @Option(names = "--argmax", description = "Write the index of each row's largest output (the class) instead of "
                + "the outputs.")
        boolean argmax;

        @Option(names = "--no-header", description = "Write no header line.")
        boolean noHeader;

        @Option(names = "--batch", defaultValue = "256", description = "Rows per native call (default: ${DEFAULT-VALUE}).")
        int batch;

        @Option(names = "--json", description = "With --output: print a JSON summary instead of a line of text.")
        boolean json;

        @picocli.CommandLine.Mixin
        ThreadsOption threads;

        @Spec
        CommandSpec spec;

        private ParameterException usage(String msg) {
            return new ParameterException(spec.commandLine(), msg);
        }

        @Override
        public Integer call() throws IOException {
            if (batch < 1 || batch > 65536) {
                throw usage("--batch is " + batch + ": must be in 1..65536");
            }
            if (json && output == null) {
                throw usage("--json needs --output (without it the predictions go to stdout)");
            }
            threads.check(spec);
            if (output != null && java.nio.file.Files.isDirectory(output)) {
                throw usage("--output " + output + " is a directory: give a file name");
            }
            String name = input.getFileName() == null ? "" : input.getFileName().toString().toLowerCase(Locale.ROOT);
            boolean csv = name.endsWith(".csv");
            if (!csv && !name.contains("idx")) {
                throw usage("--input " + input + ": give a .csv file or an IDX file (a name containing 'idx')");
            }
            long t0 = System.nanoTime();
            try (ThreadsOption.Scope ts = threads.scope(); Sequential m = load(model, spec, "--model");
                    Tensor read = csv ? readCsv() : Idx.readImages(input);
                    Tensor x = m.inputDType() == DType.I32 ? ids(read) : read.reshape(read.shape())) {
                long rows = x.size(0), cols = x.size(1), outs = m.outputFeatures();
                if (cols != m.inputFeatures()) {
                    throw new IllegalArgumentException("--input " + input + " has " + cols + " values per row; the model takes "
                            + m.inputFeatures());
                }
                StringBuilder sb = new StringBuilder();
                if (!noHeader) {
                    if (argmax) {
                        sb.append("class");
                    } else {
                        for (long j = 0; j < outs; j++) {
                            sb.append(j > 0 ? "," : "").append('y').append(j);
                        }
                    }
                    sb.append('\n');
                }
                int chunk = (int) Math.min(batch, rows);
                try (InferenceSession s = m.compile(chunk); Tensor y = Tensor.zeros(DType.F32, chunk, outs)) {
                    float[] row = new float[(int) outs];
                    for (long r0 = 0; r0 < rows; r0 += chunk) {
                        long n = Math.min(chunk, rows - r0);
                        try (Tensor xs = x.slice(0, r0, r0 + n); Tensor ys = y.slice(0, 0, n)) {
                            s.run(xs, ys);
                            java.nio.FloatBuffer fb = ys.floatView();
                            for (long r = 0; r < n; r++) {
                                fb.get(row);
                                appendRow(sb, row);
                            }
                        }
                    }
                }
                byte[] text = sb.toString().getBytes(StandardCharsets.UTF_8);
                var out = spec.commandLine().getOut();
                if (output == null) {
                    out.print(sb);
                    out.flush();
                    return 0;
                }
                AtomicFiles.write(output, text);
                double sec = (System.nanoTime() - t0) / 1e9;
                if (json) {
                    Map<String, Object> sum = new LinkedHashMap<>();
                    sum.put("rows", rows);
                    sum.put("columns", argmax ? 1L : outs);
                    sum.put("output", output.toString());
                    sum.put("seconds", sec);
                    out.println(Json.write(sum));
                } else {
                    out.printf("%d rows -> %s (%s) in %.2f s%n", rows, output, argmax ? "classes" : outs + " outputs each", sec);
                }
                return 0;
            }
        }

        private void appendRow(StringBuilder sb, float[] row) {
            if (argmax) {
                int best = 0;
                for (int j = 1; j < row.length; j++) {
                    if (row[j] > row[best] || (Float.isNaN(row[j]) && !Float.isNaN(row[best]))) {
                        best = j;
                    }
                }
                sb.append(best).append('\n');
                return;
            }
            for (int j = 0; j < row.length; j++) {
                if (j > 0) {
                    sb.append(',');
                }
                sb.append(row[j]);
            }
            sb.append('\n');
        }

        private Tensor readCsv() throws IOException {
            try {
                return Csv.readFeatures(input, header);
            } catch (IOException e) {
                if (!header && e.getMessage() != null && e.getMessage().contains(": line 1, column ")
                        && e.getMessage().endsWith("is not a number")) {
                    throw new IOException(e.getMessage() + " (a header line? give --header)", e);
                }
                throw e;
            }
        }

        /** Token ids from the values read: each must be an integer in int's range. */
        private Tensor ids(Tensor read) {
            float[] v = read.toFloatArray();
            int[] ids = new int[v.length];
            for (int i = 0; i < v.length; i++) {
                if (v[i] != Math.rint(v[i]) || Math.abs(v[i]) > Integer.MAX_VALUE) {
                    throw new IllegalArgumentException("--input " + input + ": row " + i / read.size(1) + ", column "
                            + i % read.size(1) + ": " + v[i] + " is not a token id (the model starts with an embedding)");
                }
                ids[i] = (int) v[i];
            }
            return Tensor.of(ids, read.size(0), read.size(1));
        }
    }

    @Command(name = "bench", mixinStandardHelpOptions = true,
            description = {"Measure a model's latency and throughput in this JVM: a compiled session, one native call per "
                    + "batch of random rows (seeded; token ids within the vocabulary), after a warm-up.",
                "Prints the calls made, rows per second, and the latency per call at p50, p90, p99, p99.9 and max. The "
                        + "native thread pool is sized by -Dkiln.threads or KILN_NUM_THREADS (default: the cores). On a "
                        + "shared machine compare runs made side by side, not lone figures."})
    static final class Bench implements Callable<Integer> {
        @Option(names = "--model", required = true, description = "The model file (.onnx or .kiln).")
        Path model;

        @Option(names = "--batch", defaultValue = "1", description = "Rows per call (default: ${DEFAULT-VALUE}).")
        int batch;

        @Option(names = "--seconds", defaultValue = "3", description = "Time measured (default: ${DEFAULT-VALUE}).")
        double seconds;

        @Option(names = "--warmup", defaultValue = "1", description = "Seconds run first, not measured (default: "
                + "${DEFAULT-VALUE}).")
        double warmup;

        @Option(names = "--json", description = "Print one JSON object instead of text.")
        boolean json;

        @picocli.CommandLine.Mixin
        ThreadsOption threads;

        @Spec
        CommandSpec spec;

        /** The most calls recorded (their latencies are kept to take percentiles). */
        static final int MAX_CALLS = 20_000_000;

        @Override
        public Integer call() throws IOException {
            if (batch < 1 || batch > 65536) {
                throw new ParameterException(spec.commandLine(), "--batch is " + batch + ": must be in 1..65536");
            }
            if (!(seconds > 0 && seconds <= 3600)) {
                throw new ParameterException(spec.commandLine(), "--seconds is " + seconds + ": must be in (0, 3600]");
            }
            if (!(warmup >= 0 && warmup <= 600)) {
                throw new ParameterException(spec.commandLine(), "--warmup is " + warmup + ": must be in [0, 600]");
            }
            threads.check(spec);
            try (ThreadsOption.Scope ts = threads.scope(); Sequential m = load(model, spec, "--model"); InferenceSession s = m.compile(batch);
                    Tensor x = input(m); Tensor y = Tensor.zeros(DType.F32, batch, m.outputFeatures())) {
                long end = System.nanoTime() + (long) (warmup * 1e9);
                do {
                    s.run(x, y);
                } while (System.nanoTime() < end);
                long[] lat = new long[(int) Math.min(MAX_CALLS, Math.max(1024, seconds * 2_000_000))];
                int n = 0;
                long start = System.nanoTime(), stop = start + (long) (seconds * 1e9), t = start;
                while (t < stop && n < lat.length) {
                    s.run(x, y);
                    long t1 = System.nanoTime();
                    lat[n++] = t1 - t;
                    t = t1;
                }
                double sec = (t - start) / 1e9;
                long[] sorted = Arrays.copyOf(lat, n);
                Arrays.sort(sorted);
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("model", model.toString());
                r.put("batch", batch);
                r.put("threads", Kiln.threads());
                r.put("isa", Kiln.isa().settingName());
                r.put("calls", n);
                r.put("seconds", sec);
                r.put("rows_per_second", n * (double) batch / sec);
                for (double[] q : new double[][] {{50, 0.5}, {90, 0.9}, {99, 0.99}, {99.9, 0.999}}) {
                    String key = "p" + (q[0] == 99.9 ? "99_9" : String.valueOf((int) q[0])) + "_us";
                    r.put(key, sorted[Math.max(0, (int) Math.ceil(q[1] * n) - 1)] / 1e3);
                }
                r.put("max_us", sorted[n - 1] / 1e3);
                var out = spec.commandLine().getOut();
                if (json) {
                    out.println(Json.write(r));
                } else {
                    out.printf("%s: batch %d, %d threads (%s), %d calls in %.2f s%n", model, batch, Kiln.threads(),
                            r.get("isa"), n, sec);
                    out.printf("  %.0f rows/s%n", (double) r.get("rows_per_second"));
                    out.printf("  latency per call: p50 %.1f us, p90 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us%n",
                            r.get("p50_us"), r.get("p90_us"), r.get("p99_us"), r.get("p99_9_us"), r.get("max_us"));
                }
                return 0;
            }
        }

        private Tensor input(Sequential m) {
            if (m.inputDType() == DType.I32) {
                long vocab = m.layers().get(0).vocabulary();
                java.util.SplittableRandom r = new java.util.SplittableRandom(1);
                int[] ids = new int[(int) (batch * m.inputFeatures())];
                for (int i = 0; i < ids.length; i++) {
                    ids[i] = r.nextInt((int) Math.min(vocab, Integer.MAX_VALUE));
                }
                return Tensor.of(ids, batch, m.inputFeatures());
            }
            return Tensor.zeros(DType.F32, batch, m.inputFeatures()).fillNormal(0, 1, 1);
        }
    }
}
