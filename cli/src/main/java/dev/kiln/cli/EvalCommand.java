package dev.kiln.cli;

import dev.kiln.eval.Classification;
import dev.kiln.eval.Ranking;
import dev.kiln.eval.Regression;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * kiln eval: every applicable metric of labels against scores, as JSON keyed by scikit-learn's
 * scorer names.
 */
@Command(name = "eval", mixinStandardHelpOptions = true,
        description = {"Evaluate predictions: prints every applicable metric as JSON, named as scikit-learn names its scorers.",
                "Labels: one value per line (a header line is skipped). Scores: one row per sample:",
                "  binary      the probability (or score) of class 1, or two columns of class probabilities",
                "  multiclass  one probability column per class (labels 0..C-1)",
                "  regression  the predicted value"})
final class EvalCommand implements Callable<Integer> {
    enum Task { binary, multiclass, regression }

    @Option(names = "--labels", required = true, description = "CSV file of true labels (or target values).")
    Path labels;

    @Option(names = "--scores", required = true, description = "CSV file of scores, probabilities or predicted values.")
    Path scores;

    @Option(names = "--task", description = "binary, multiclass or regression (default: inferred from the files).")
    Task task;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        double[][] y = readCsv(labels, "labels");
        double[][] s = readCsv(scores, "scores");
        if (y.length != s.length) {
            throw new IllegalArgumentException(labels + " has " + y.length + " rows but " + scores + " has " + s.length);
        }
        for (double[] row : y) {
            if (row.length != 1) {
                throw new IllegalArgumentException(labels + ": each row must hold one label, found " + row.length + " columns");
            }
        }
        int cols = s[0].length;
        for (int i = 0; i < s.length; i++) {
            if (s[i].length != cols) {
                throw new IllegalArgumentException(scores + ": row " + (i + 1) + " has " + s[i].length + " columns, the first has " + cols);
            }
        }
        Task t = task != null ? task : infer(y, cols);
        Map<String, Object> out = new LinkedHashMap<>();
        switch (t) {
            case regression: {
                if (cols != 1) {
                    throw new IllegalArgumentException("regression takes one predicted value per row; " + scores + " has " + cols + " columns");
                }
                double[] yt = column(y, 0), yp = column(s, 0);
                out.put("r2", Regression.r2(yt, yp));
                out.put("mean_squared_error", Regression.meanSquaredError(yt, yp));
                out.put("root_mean_squared_error", Regression.rootMeanSquaredError(yt, yp));
                out.put("mean_absolute_error", Regression.meanAbsoluteError(yt, yp));
                break;
            }
            case binary: {
                int[] yt = intLabels(y, 2, "binary labels are 0 or 1");
                if (cols > 2) {
                    throw new IllegalArgumentException("binary takes one score column (class 1) or two probability columns; found " + cols);
                }
                double[] p1 = column(s, cols - 1);
                boolean probabilities = Arrays.stream(p1).allMatch(v -> v >= 0 && v <= 1);
                double threshold = probabilities ? 0.5 : 0.0;
                int[] yp = new int[p1.length];
                for (int i = 0; i < p1.length; i++) {
                    yp[i] = p1[i] > threshold ? 1 : 0;
                }
                labelMetrics(out, yt, yp, true);
                putOrSkip(out, "roc_auc", () -> Ranking.rocAuc(yt, p1));
                putOrSkip(out, "average_precision", () -> Ranking.averagePrecision(yt, p1));
                if (probabilities) {
                    putOrSkip(out, "log_loss", () -> Ranking.logLossBinary(yt, p1));
                }
                out.put("confusion_matrix", matrix(Classification.confusionMatrix(yt, yp)));
                break;
            }
            default: {
                int[] yt = intLabels(y, cols, scores + " has " + cols + " probability columns, one per class");
                double[] proba = new double[s.length * cols];
                int[] yp = new int[s.length];
                for (int i = 0; i < s.length; i++) {
                    int best = 0;
                    for (int c = 0; c < cols; c++) {
                        proba[i * cols + c] = s[i][c];
                        if (s[i][c] > s[i][best]) {
                            best = c;
                        }
                    }
                    yp[i] = best;
                }
                labelMetrics(out, yt, yp, false);
                putOrSkip(out, "top_k_accuracy", () -> Classification.topKAccuracy(yt, proba, cols, 2));
                putOrSkip(out, "roc_auc_ovr", () -> Ranking.rocAucOvr(yt, proba, cols));
                putOrSkip(out, "log_loss", () -> Ranking.logLoss(yt, proba, cols));
                out.put("confusion_matrix", matrix(Classification.confusionMatrix(yt, yp)));
            }
        }
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("task", t.name());
        result.put("samples", y.length);
        result.putAll(out);
        spec.commandLine().getOut().println(Json.write(result));
        return 0;
    }

    private static void labelMetrics(Map<String, Object> out, int[] yt, int[] yp, boolean binary) {
        out.put("accuracy", Classification.accuracy(yt, yp));
        out.put("balanced_accuracy", Classification.balancedAccuracy(yt, yp));
        if (binary) {
            putOrSkip(out, "precision", () -> Classification.precision(yt, yp, Classification.Average.BINARY));
            putOrSkip(out, "recall", () -> Classification.recall(yt, yp, Classification.Average.BINARY));
            putOrSkip(out, "f1", () -> Classification.f1(yt, yp, Classification.Average.BINARY));
        }
        for (Classification.Average a : new Classification.Average[] {Classification.Average.MACRO,
                Classification.Average.MICRO, Classification.Average.WEIGHTED}) {
            String suffix = "_" + a.name().toLowerCase(java.util.Locale.ROOT);
            out.put("precision" + suffix, Classification.precision(yt, yp, a));
            out.put("recall" + suffix, Classification.recall(yt, yp, a));
            out.put("f1" + suffix, Classification.f1(yt, yp, a));
        }
    }

    /** Adds a metric, or leaves it out when it is undefined for this data (e.g. AUC with one class). */
    private static void putOrSkip(Map<String, Object> out, String key, java.util.function.DoubleSupplier f) {
        try {
            out.put(key, f.getAsDouble());
        } catch (IllegalArgumentException undefined) {
            // not applicable to this data (as scikit-learn raises): omitted
        }
    }

    private static Task infer(double[][] y, int cols) {
        boolean integral = Arrays.stream(y).allMatch(r -> r[0] == Math.rint(r[0]));
        if (!integral) {
            return Task.regression;
        }
        if (cols >= 3) {
            return Task.multiclass;
        }
        boolean zeroOne = Arrays.stream(y).allMatch(r -> r[0] == 0 || r[0] == 1);
        if (zeroOne) {
            return Task.binary;
        }
        throw new IllegalArgumentException("cannot tell the task from the files: pass --task binary|multiclass|regression");
    }

    /**
     * The labels as class indices, each checked to be an integer in 0..classes-1 (why: what fixes the
     * number of classes, for the message). A label past the score columns has no score to rank.
     */
    static int[] intLabels(double[][] y, int classes, String why) {
        int[] out = new int[y.length];
        for (int i = 0; i < y.length; i++) {
            double v = y[i][0];
            if (v != Math.rint(v)) {
                throw new IllegalArgumentException("label " + v + " on row " + (i + 1) + " is not an integer");
            }
            if (v < 0 || v >= classes) {
                throw new IllegalArgumentException("label " + (long) v + " on row " + (i + 1) + " is outside 0.."
                        + (classes - 1) + " (" + why + ")");
            }
            out[i] = (int) v;
        }
        return out;
    }

    private static double[] column(double[][] rows, int c) {
        double[] out = new double[rows.length];
        for (int i = 0; i < rows.length; i++) {
            out[i] = rows[i][c];
        }
        return out;
    }

    private static List<List<Long>> matrix(long[][] m) {
        List<List<Long>> out = new ArrayList<>();
        for (long[] row : m) {
            List<Long> r = new ArrayList<>();
            for (long v : row) {
                r.add(v);
            }
            out.add(r);
        }
        return out;
    }

    /** Reads a numeric CSV (comma, semicolon, tab or space separated); a non-numeric first line is a header. */
    static double[][] readCsv(Path file, String what) throws IOException {
        if (Files.isDirectory(file)) {
            throw new IllegalArgumentException(what + " file " + file + " is a directory");
        }
        if (!Files.isRegularFile(file)) {
            throw new IllegalArgumentException(what + " file " + file + " does not exist");
        }
        byte[] bytes = Files.readAllBytes(file);
        java.nio.ByteBuffer in = java.nio.ByteBuffer.wrap(bytes);
        java.nio.CharBuffer text = java.nio.CharBuffer.allocate(bytes.length);  // UTF-8: never more chars than bytes
        java.nio.charset.CoderResult cr = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT).decode(in, text, true);
        if (cr.isError()) {  // before: "Input length = 1", naming neither the file nor the line
            long line = 1;
            for (int i = 0; i < in.position(); i++) {
                line += bytes[i] == '\n' ? 1 : 0;
            }
            throw new IllegalArgumentException(file + " line " + line + " is not valid UTF-8");
        }
        List<String> lines = text.flip().toString().lines().toList();
        List<double[]> rows = new ArrayList<>();
        for (int i = 0; i < lines.size(); i++) {
            String line = lines.get(i).trim();
            if (line.isEmpty()) {
                continue;
            }
            String[] cells = line.split("[,;\\t ]+");
            double[] row = new double[cells.length];
            try {
                for (int c = 0; c < cells.length; c++) {
                    row[c] = Double.parseDouble(cells[c]);
                    if (!Double.isFinite(row[c])) {
                        throw new IllegalArgumentException(file + " line " + (i + 1) + ": " + cells[c] + " is not finite");
                    }
                }
            } catch (NumberFormatException e) {
                if (rows.isEmpty() && i == firstNonEmpty(lines)) {
                    continue; // header
                }
                throw new IllegalArgumentException(file + " line " + (i + 1) + ": '" + line + "' is not numeric");
            }
            rows.add(row);
        }
        if (rows.isEmpty()) {
            throw new IllegalArgumentException(what + " file " + file + " holds no rows");
        }
        return rows.toArray(new double[0][]);
    }

    private static int firstNonEmpty(List<String> lines) {
        for (int i = 0; i < lines.size(); i++) {
            if (!lines.get(i).trim().isEmpty()) {
                return i;
            }
        }
        return -1;
    }
}
