package dev.kiln.cli;

import dev.kiln.eval.Classification;
import dev.kiln.metrics.EpochMetrics;
import dev.kiln.metrics.HtmlReport;
import dev.kiln.metrics.MetricsRegistry;
import dev.kiln.metrics.ModelMetrics;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** kiln report: one self-contained HTML file from predictions, a training history and latencies. */
@Command(name = "report", mixinStandardHelpOptions = true,
        description = {"Write a self-contained HTML report (inline SVG, no scripts): training curves, confusion matrix, "
                + "ROC curves, per-class table, latency histogram. Give any of the inputs; at least one."})
final class ReportCommand implements Callable<Integer> {
    @Option(names = "--out", required = true, description = "HTML file to write.")
    Path out;

    @Option(names = "--title", defaultValue = "Kiln report", description = "Report title (default: ${DEFAULT-VALUE}).")
    String title;

    @Option(names = "--labels", description = "CSV of true class labels 0..C-1 (with --scores).")
    Path labels;

    @Option(names = "--scores", description = "CSV of class probabilities, one column per class (two or more).")
    Path scores;

    @Option(names = "--history", description = "CSV of epochs: epoch,loss,accuracy[,val_loss,val_accuracy[,lr[,samples_per_s]]] (header allowed).")
    Path history;

    @Option(names = "--latencies", description = "File of request latencies in nanoseconds, one per line.")
    Path latencies;

    @Option(names = "--json", description = "Print one JSON object (the file written and its sections) instead of its path.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (labels == null && scores == null && history == null && latencies == null) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(),
                    "give at least one of --labels/--scores, --history, --latencies");
        }
        if ((labels == null) != (scores == null)) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--labels and --scores go together");
        }
        HtmlReport report = new HtmlReport(title);
        if (history != null) {
            List<EpochMetrics> epochs = new ArrayList<>();
            for (double[] r : EvalCommand.readCsv(history, "history")) {
                if (r.length < 3) {
                    throw new IllegalArgumentException(history + ": each row needs epoch,loss,accuracy");
                }
                epochs.add(new EpochMetrics((int) r[0], r[1], r[2], r.length > 3 ? r[3] : Double.NaN,
                        r.length > 4 ? r[4] : Double.NaN, r.length > 5 ? r[5] : Double.NaN, r.length > 6 ? r[6] : Double.NaN));
            }
            report.epochs(epochs);
        }
        if (labels != null) {
            double[][] y = EvalCommand.readCsv(labels, "labels");
            double[][] s = EvalCommand.readCsv(scores, "scores");
            if (y.length != s.length) {
                throw new IllegalArgumentException(labels + " has " + y.length + " rows but " + scores + " has " + s.length);
            }
            int classes = s[0].length;
            if (classes < 2) {
                throw new IllegalArgumentException(scores + ": one probability column per class is needed (two or more)");
            }
            int[] yt = EvalCommand.intLabels(y, classes, scores + " has " + classes + " probability columns, one per class");
            int[] yp = new int[y.length];
            double[] proba = new double[y.length * classes];
            for (int i = 0; i < y.length; i++) {
                if (s[i].length != classes) {
                    throw new IllegalArgumentException(scores + ": row " + (i + 1) + " has " + s[i].length + " columns");
                }
                for (int c = 0; c < classes; c++) {
                    proba[i * classes + c] = s[i][c];
                    if (s[i][c] > s[i][yp[i]]) {
                        yp[i] = c;
                    }
                }
            }
            report.classification(yt, yp);
            report.roc(yt, proba, classes);
            Classification.accuracy(yt, yp); // validates lengths
        }
        if (latencies != null) {
            ModelMetrics m = new MetricsRegistry().forModel(title, "-");
            double[][] ns = EvalCommand.readCsv(latencies, "latencies");
            for (int i = 0; i < ns.length; i++) {
                // The histogram holds 1 ns .. 1 hour; anything else is not a latency (and would be clamped).
                if (!(ns[i][0] >= 0 && ns[i][0] <= 3.6e12)) {
                    throw new IllegalArgumentException(latencies + ": row " + (i + 1) + ": " + ns[i][0]
                            + " ns is not a latency in 0 .. 1 hour");
                }
                m.recordRequest(Math.round(ns[i][0]), 1);
            }
            report.latency(m);
        }
        report.write(out);
        if (json) {
            java.util.Map<String, Object> o = new java.util.LinkedHashMap<>();
            o.put("output", out.toAbsolutePath().toString());
            o.put("bytes", java.nio.file.Files.size(out));
            List<Object> sections = new ArrayList<>();
            if (history != null) {
                sections.add("history");
            }
            if (labels != null) {
                sections.add("classification");
            }
            if (latencies != null) {
                sections.add("latency");
            }
            o.put("sections", sections);
            spec.commandLine().getOut().println(Json.write(o));
        } else {
            spec.commandLine().getOut().println(out.toAbsolutePath());
        }
        return 0;
    }
}
