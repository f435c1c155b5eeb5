package dev.kiln.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HtmlReportTest {
    /** A report with every part, from seeded data (shared with the Chromium rendering test). */
    static HtmlReport sample() {
        Random r = new Random(11);
        List<EpochMetrics> history = new ArrayList<>();
        for (int e = 1; e <= 10; e++) {
            history.add(new EpochMetrics(e, 1.0 / e + 0.3, 0.6 + 0.03 * e, 1.1 / e + 0.35, 0.58 + 0.029 * e, 1e-3, 60000));
        }
        int n = 600, classes = 4;
        int[] yTrue = new int[n], yPred = new int[n];
        double[] proba = new double[n * classes];
        for (int i = 0; i < n; i++) {
            yTrue[i] = r.nextInt(classes);
            double sum = 0;
            for (int c = 0; c < classes; c++) {
                double v = Math.exp(r.nextGaussian() + (c == yTrue[i] ? 1.5 : 0));
                proba[i * classes + c] = v;
                sum += v;
            }
            int best = 0;
            for (int c = 0; c < classes; c++) {
                proba[i * classes + c] /= sum;
                if (proba[i * classes + c] > proba[i * classes + best]) {
                    best = c;
                }
            }
            yPred[i] = best;
        }
        ModelMetrics latency = new MetricsRegistry().forModel("mlp-small", "3");
        for (int i = 0; i < 10000; i++) {
            latency.recordRequest((long) (20_000 * Math.exp(r.nextGaussian() * 0.3)), 1);
        }
        return new HtmlReport("Kiln report <test>").epochs(history).classification(yTrue, yPred).roc(yTrue, proba, classes)
                .latency(latency);
    }

    @Test
    void selfContainedDocumentWithEverySection(@TempDir Path dir) throws Exception {
        Path file = sample().write(dir.resolve("report.html"));
        String html = Files.readString(file);
        assertTrue(html.startsWith("<!DOCTYPE html>"));
        for (String part : new String[] {"Loss per epoch", "Accuracy per epoch", "Confusion matrix", "ROC curves",
                "Latency histogram", "<th>precision</th>", "Kiln report &lt;test&gt;"}) {
            assertTrue(html.contains(part), part);
        }
        assertFalse(html.contains("<script"), "no scripts");
        assertFalse(html.matches("(?s).*(src|href)=\"(http|//).*"), "no external resources");
        assertEquals(5, html.split("<svg ", -1).length - 1, "five charts");
        assertThrows(IllegalArgumentException.class, () -> new HtmlReport("x").epochs(List.of()));
    }
}
