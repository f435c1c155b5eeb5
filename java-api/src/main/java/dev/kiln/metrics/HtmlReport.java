package dev.kiln.metrics;

import dev.kiln.eval.Classification;
import dev.kiln.eval.Ranking;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * One self-contained HTML file (inline SVG and CSS; no script, font or other external resource)
 * with whatever parts were given: training curves per epoch, a confusion-matrix heat map, ROC
 * curves, a per-class table, and a latency histogram with its percentiles.
 *
 * <pre>{@code
 * new HtmlReport("MLP on Fashion-MNIST")
 *     .epochs(history)
 *     .classification(yTrue, yPred)
 *     .roc(yTrue, probabilities, 10)
 *     .latency(metrics.forModel("mlp", "3"))
 *     .write(Path.of("report.html"));
 * }</pre>
 */
public final class HtmlReport {
    private static final String[] PALETTE = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
        "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

    private final String title;
    private final List<String> sections = new ArrayList<>();

    public HtmlReport(String title) {
        this.title = Objects.requireNonNull(title, "title");
    }

    /** Loss and accuracy curves (training and, where present, validation) per epoch. */
    public HtmlReport epochs(List<EpochMetrics> history) {
        Objects.requireNonNull(history, "history");
        if (history.isEmpty()) {
            throw new IllegalArgumentException("epochs: the history is empty");
        }
        int n = history.size();
        double[] x = new double[n], loss = new double[n], acc = new double[n], vloss = new double[n], vacc = new double[n];
        boolean hasVal = true;
        for (int i = 0; i < n; i++) {
            EpochMetrics e = history.get(i);
            x[i] = e.epoch();
            loss[i] = e.loss();
            acc[i] = e.accuracy();
            vloss[i] = e.validationLoss();
            vacc[i] = e.validationAccuracy();
            hasVal &= !Double.isNaN(e.validationLoss());
        }
        StringBuilder sb = new StringBuilder("<section><h2>Training</h2><div class=\"row\">");
        List<double[]> ls = new ArrayList<>(List.of(loss));
        List<String> ln = new ArrayList<>(List.of("train loss"));
        List<double[]> as = new ArrayList<>(List.of(acc));
        List<String> an = new ArrayList<>(List.of("train accuracy"));
        if (hasVal) {
            ls.add(vloss);
            ln.add("validation loss");
            as.add(vacc);
            an.add("validation accuracy");
        }
        sb.append(lineChart("Loss per epoch", "epoch", "loss", x, ls, ln));
        sb.append(lineChart("Accuracy per epoch", "epoch", "accuracy", x, as, an));
        sb.append("</div><table><tr><th>epoch</th><th>loss</th><th>accuracy</th><th>learning rate</th><th>samples/s</th></tr>");
        for (EpochMetrics e : history) {
            sb.append(String.format(Locale.ROOT, "<tr><td>%d</td><td>%.4f</td><td>%.4f</td><td>%.3g</td><td>%.0f</td></tr>",
                    e.epoch(), e.loss(), e.accuracy(), e.learningRate(), e.samplesPerSecond()));
        }
        sections.add(sb.append("</table></section>").toString());
        return this;
    }

    /** Confusion-matrix heat map and per-class precision, recall, F1 and support. */
    public HtmlReport classification(int[] yTrue, int[] yPred) {
        long[][] m = Classification.confusionMatrix(yTrue, yPred);
        Classification.PerClass pc = Classification.perClass(yTrue, yPred);
        StringBuilder sb = new StringBuilder("<section><h2>Classification</h2>");
        sb.append(String.format(Locale.ROOT, "<p>accuracy %.4f &middot; balanced accuracy %.4f &middot; macro F1 %.4f</p>",
                Classification.accuracy(yTrue, yPred), Classification.balancedAccuracy(yTrue, yPred),
                Classification.f1(yTrue, yPred, Classification.Average.MACRO)));
        sb.append("<div class=\"row\">").append(heatMap(m, pc.labels)).append("<table><tr><th>class</th><th>precision</th>"
                + "<th>recall</th><th>F1</th><th>support</th></tr>");
        for (int i = 0; i < pc.labels.length; i++) {
            sb.append(String.format(Locale.ROOT, "<tr><td>%d</td><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%d</td></tr>",
                    pc.labels[i], pc.precision[i], pc.recall[i], pc.f1[i], pc.support[i]));
        }
        sections.add(sb.append("</table></div></section>").toString());
        return this;
    }

    /** ROC curves: one per class, one-vs-rest (classes 0..C-1; probabilities n x C row-major). */
    public HtmlReport roc(int[] yTrue, double[] probabilities, int classes) {
        Objects.requireNonNull(yTrue, "yTrue");
        Objects.requireNonNull(probabilities, "probabilities");
        if (classes < 2 || (long) yTrue.length * classes != probabilities.length) {
            throw new IllegalArgumentException("roc: " + probabilities.length + " probabilities for " + yTrue.length
                    + " samples x " + classes + " classes");
        }
        List<double[]> xs = new ArrayList<>(), ys = new ArrayList<>();
        List<String> names = new ArrayList<>();
        int[] bin = new int[yTrue.length];
        double[] col = new double[yTrue.length];
        for (int c = 0; c < classes; c++) {
            boolean pos = false, neg = false;
            for (int i = 0; i < yTrue.length; i++) {
                bin[i] = yTrue[i] == c ? 1 : 0;
                pos |= bin[i] == 1;
                neg |= bin[i] == 0;
                col[i] = probabilities[i * classes + c];
            }
            if (!pos || !neg) {
                continue; // AUC undefined for this class
            }
            Ranking.Curve curve = Ranking.rocCurve(bin, col);
            xs.add(curve.x);
            ys.add(curve.y);
            names.add(String.format(Locale.ROOT, "class %d (AUC %.3f)", c, Ranking.rocAuc(bin, col)));
        }
        if (names.isEmpty()) {
            throw new IllegalArgumentException("roc: no class has both positive and negative samples");
        }
        sections.add("<section><h2>ROC curves (one vs rest)</h2>" + xyChart("ROC", "false positive rate",
                "true positive rate", xs, ys, names, true) + "</section>");
        return this;
    }

    /** Latency histogram (log-spaced buckets) and percentiles of a model version. */
    public HtmlReport latency(ModelMetrics metrics) {
        Objects.requireNonNull(metrics, "metrics");
        ModelMetrics.Snapshot s = metrics.snapshot();
        long[][] h = metrics.histogram(30);
        StringBuilder sb = new StringBuilder("<section><h2>Latency: ").append(escape(metrics.model())).append(" v")
                .append(escape(metrics.version())).append("</h2>");
        sb.append(String.format(Locale.ROOT, "<p>%d requests, %d errors &middot; p50 %s &middot; p90 %s &middot; p99 %s"
                + " &middot; p99.9 %s &middot; max %s</p>", s.requests(), s.errors(), micros(s.p50Nanos()),
                micros(s.p90Nanos()), micros(s.p99Nanos()), micros(s.p999Nanos()), micros(s.maxNanos())));
        sb.append(barChart("Latency histogram", h[0], h[1]));
        sections.add(sb.append("</section>").toString());
        return this;
    }

    /** The whole document. */
    public String html() {
        StringBuilder sb = new StringBuilder();
        sb.append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>").append(escape(title))
                .append("</title><style>")
                .append("body{font-family:sans-serif;margin:24px;color:#222;background:#fff}h1{font-size:22px}")
                .append("h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px}")
                .append(".row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}")
                .append("table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}")
                .append("svg text{font-size:11px;fill:#333}.title{font-size:13px;font-weight:bold}")
                .append("</style></head><body><h1>").append(escape(title)).append("</h1><p class=\"meta\">Generated by Kiln ")
                .append(escape(dev.kiln.Kiln.version())).append(" at ").append(Instant.now()).append("</p>\n");
        for (String s : sections) {
            sb.append(s).append('\n');
        }
        return sb.append("</body></html>\n").toString();
    }

    /** Writes the report to {@code file} (via a temporary file renamed into place; see AtomicFiles). */
    public Path write(Path file) throws IOException {
        Objects.requireNonNull(file, "file");
        dev.kiln.io.AtomicFiles.write(file, html().getBytes(StandardCharsets.UTF_8));
        return file;
    }

    // ---- SVG --------------------------------------------------------------------------------------

    private static final int W = 460, H = 300, L = 55, R = 15, T = 25, B = 40;

    private static String lineChart(String title, String xLabel, String yLabel, double[] x, List<double[]> ys,
            List<String> names) {
        List<double[]> xs = new ArrayList<>();
        for (int i = 0; i < ys.size(); i++) {
            xs.add(x);
        }
        return xyChart(title, xLabel, yLabel, xs, ys, names, false);
    }

    private static String xyChart(String title, String xLabel, String yLabel, List<double[]> xs, List<double[]> ys,
            List<String> names, boolean unitSquare) {
        double x0 = Double.POSITIVE_INFINITY, x1 = Double.NEGATIVE_INFINITY;
        double y0 = Double.POSITIVE_INFINITY, y1 = Double.NEGATIVE_INFINITY;
        for (int s = 0; s < xs.size(); s++) {
            for (int i = 0; i < xs.get(s).length; i++) {
                double xv = xs.get(s)[i], yv = ys.get(s)[i];
                if (Double.isFinite(xv) && Double.isFinite(yv)) {
                    x0 = Math.min(x0, xv);
                    x1 = Math.max(x1, xv);
                    y0 = Math.min(y0, yv);
                    y1 = Math.max(y1, yv);
                }
            }
        }
        if (unitSquare) {
            x0 = 0;
            y0 = 0;
            x1 = 1;
            y1 = 1;
        }
        if (!(x1 > x0)) {
            x1 = x0 + 1;
        }
        if (!(y1 > y0)) {
            y1 = y0 + 1;
        }
        double pad = (y1 - y0) * 0.05;
        if (!unitSquare) {
            y0 -= pad;
            y1 += pad;
        }
        StringBuilder sb = svgOpen(title);
        axes(sb, x0, x1, y0, y1, xLabel, yLabel, true);
        if (unitSquare) {
            sb.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#bbb\" stroke-dasharray=\"4 3\"/>",
                    px(0, x0, x1), py(0, y0, y1), px(1, x0, x1), py(1, y0, y1)));
        }
        for (int s = 0; s < xs.size(); s++) {
            StringBuilder pts = new StringBuilder();
            for (int i = 0; i < xs.get(s).length; i++) {
                double xv = xs.get(s)[i], yv = ys.get(s)[i];
                if (Double.isFinite(xv) && Double.isFinite(yv)) {
                    pts.append(String.format(Locale.ROOT, "%.1f,%.1f ", px(xv, x0, x1), py(yv, y0, y1)));
                }
            }
            String color = PALETTE[s % PALETTE.length];
            sb.append("<polyline fill=\"none\" stroke-width=\"1.8\" stroke=\"").append(color).append("\" points=\"")
                    .append(pts.toString().trim()).append("\"/>");
            sb.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                    + "<text x=\"%d\" y=\"%d\">%s</text>", W - R - 170, T + 6 + 14 * s, color, W - R - 156, T + 15 + 14 * s,
                    escape(names.get(s))));
        }
        return sb.append("</svg>").toString();
    }

    private static String heatMap(long[][] m, int[] labels) {
        int k = m.length;
        int cell = Math.max(14, Math.min(40, 360 / Math.max(k, 1)));
        int w = Math.max(340, 70 + cell * k + 20), h = 50 + cell * k + 40;
        long max = 1;
        for (long[] row : m) {
            for (long v : row) {
                max = Math.max(max, v);
            }
        }
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" role=\"img\"><title>Confusion matrix</title>"
                        + "<text class=\"title\" x=\"10\" y=\"16\">Confusion matrix (rows: true, columns: predicted)</text>", w, h));
        for (int i = 0; i < k; i++) {
            sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>", 62,
                    50 + cell * i + cell / 2 + 4, labels[i]));
            sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>",
                    70 + cell * i + cell / 2, 44, labels[i]));
            for (int j = 0; j < k; j++) {
                double f = (double) m[i][j] / max;
                int shade = (int) Math.round(255 - 200 * f);
                sb.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,255)\""
                        + " stroke=\"#fff\"><title>true %d, predicted %d: %d</title></rect>", 70 + cell * j, 50 + cell * i, cell,
                        cell, shade, shade, labels[i], labels[j], m[i][j]));
                if (cell >= 24) {
                    sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" style=\"fill:%s\">%d</text>",
                            70 + cell * j + cell / 2, 50 + cell * i + cell / 2 + 4, f > 0.6 ? "#fff" : "#222", m[i][j]));
                }
            }
        }
        return sb.append("</svg>").toString();
    }

    private static String barChart(String title, long[] upper, long[] counts) {
        StringBuilder sb = svgOpen(title);
        long max = 1;
        for (long c : counts) {
            max = Math.max(max, c);
        }
        int n = counts.length;
        double bw = (W - L - R) / (double) Math.max(n, 1);
        axes(sb, 0, n, 0, max, "latency (bucket upper bound)", "requests", false);
        for (int i = 0; i < n; i++) {
            double hgt = (H - T - B) * (double) counts[i] / max;
            sb.append(String.format(Locale.ROOT, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                    + "<title>&le; %s: %d</title></rect>", L + bw * i + 1, H - B - hgt, Math.max(bw - 2, 1), hgt, PALETTE[0],
                    micros(upper[i]), counts[i]));
            if (i % Math.max(1, n / 5) == 0) {
                sb.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                        L + bw * i + bw / 2, H - B + 14, micros(upper[i])));
            }
        }
        return sb.append("</svg>").toString();
    }

    private static StringBuilder svgOpen(String title) {
        return new StringBuilder(String.format(Locale.ROOT,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" role=\"img\"><title>%s</title>"
                        + "<text class=\"title\" x=\"%d\" y=\"16\">%s</text>", W, H, escape(title), L, escape(title)));
    }

    private static void axes(StringBuilder sb, double x0, double x1, double y0, double y1, String xl, String yl,
            boolean xTicks) {
        sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>"
                + "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", L, H - B, W - R, H - B, L, T, L, H - B));
        for (int i = 0; i <= 4; i++) {
            double yv = y0 + (y1 - y0) * i / 4, xv = x0 + (x1 - x0) * i / 4;
            sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>", L - 4,
                    py(yv, y0, y1) + 4, tick(yv)));
            if (xTicks) {
                sb.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                        px(xv, x0, x1), H - B + 14, tick(xv)));
            }
        }
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>", (L + W - R) / 2,
                H - 4, escape(xl)));
        sb.append(String.format(Locale.ROOT, "<text x=\"12\" y=\"%d\" transform=\"rotate(-90 12 %d)\" text-anchor=\"middle\">%s</text>",
                (T + H - B) / 2, (T + H - B) / 2, escape(yl)));
    }

    private static double px(double x, double x0, double x1) {
        return L + (W - L - R) * (x - x0) / (x1 - x0);
    }

    private static double py(double y, double y0, double y1) {
        return H - B - (H - T - B) * (y - y0) / (y1 - y0);
    }

    private static String tick(double v) {
        return Math.abs(v) >= 1000 ? String.format(Locale.ROOT, "%.0f", v) : String.format(Locale.ROOT, "%.3g", v);
    }

    private static String micros(long nanos) {
        return nanos >= 1_000_000 ? String.format(Locale.ROOT, "%.2f ms", nanos / 1e6)
                : String.format(Locale.ROOT, "%.1f &micro;s", nanos / 1e3);
    }

    static String escape(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        for (char c : s.toCharArray()) {
            switch (c) {
                case '<': sb.append("&lt;"); break;
                case '>': sb.append("&gt;"); break;
                case '&': sb.append("&amp;"); break;
                case '"': sb.append("&quot;"); break;
                default: sb.append(c);
            }
        }
        return sb.toString();
    }
}
