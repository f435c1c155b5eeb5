package dev.kiln.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Renders the sample report in headless Chromium (Debian's chromium, which .ci/run installs) and
 * saves a screenshot to target/report.png: the page must load with no console error. Skipped, with
 * the reason shown, only where no Chromium is installed.
 */
class ReportRenderTest {
    private static Path chromium() {
        for (String c : new String[] {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"}) {
            if (Files.isExecutable(Path.of(c))) {
                return Path.of(c);
            }
        }
        return null;
    }

    @Test
    void reportOpensInHeadlessChromiumWithoutConsoleErrors(@TempDir Path tmp) throws Exception {
        Path browser = chromium();
        Assumptions.assumeTrue(browser != null, "Chromium is not installed (apt-get install chromium); .ci/run installs it");
        Path target = Path.of("target").toAbsolutePath();
        Files.createDirectories(target);
        Path html = HtmlReportTest.sample().write(target.resolve("report.html"));
        Path png = target.resolve("report.png");
        Files.deleteIfExists(png);
        List<String> cmd = new ArrayList<>(List.of(browser.toString(), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--user-data-dir=" + tmp.resolve("profile"), "--enable-logging=stderr", "--v=0",
                "--hide-scrollbars", "--window-size=1100,2300", "--screenshot=" + png, html.toUri().toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(90, TimeUnit.SECONDS), "chromium timed out:\n" + log);
        assertEquals(0, p.exitValue(), "chromium failed:\n" + log);
        for (String line : log.split("\n")) {
            boolean consoleError = line.contains("CONSOLE") || line.contains("Uncaught")
                    || line.contains("Failed to load resource");
            assertTrue(!consoleError, "console error while rendering the report: " + line);
        }
        assertTrue(Files.isRegularFile(png), "no screenshot written:\n" + log);
        byte[] bytes = Files.readAllBytes(png);
        assertTrue(bytes.length > 20_000, "screenshot is only " + bytes.length + " bytes");
        assertEquals((byte) 0x89, bytes[0]);
        assertEquals('P', bytes[1]);
    }
}
