package dev.kiln.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What a user gets: a fresh JVM, started in an empty directory with an empty JavaCPP cache and an
 * empty home, whose class path is only the packaged kiln-java-api jar and its runtime dependencies.
 * It must extract libkiln from the jar, load it, and run a native op.
 */
class StandaloneJarIT {
    private static final String SMOKE = String.join("\n",
            "import dev.kiln.Kiln;",
            "import dev.kiln.tensor.*;",
            "import java.nio.file.*;",
            "public class Smoke {",
            "  public static void main(String[] args) throws Exception {",
            "    try (Tensor a = Tensor.of(new float[] {1, 2, 3, 4}, 2, 2); Tensor b = a.add(a)) {",
            "      System.out.println(\"sum=\" + b.sum());",
            "    }",
            "    System.out.println(\"isa=\" + Kiln.isa().settingName());",
            "    System.out.println(\"bytesInUse=\" + Kiln.memoryStats().bytesInUse());",
            "    for (String line : Files.readAllLines(Path.of(\"/proc/self/maps\"))) {",
            "      if (line.endsWith(\"/libkiln.so\")) {",
            "        System.out.println(\"libkiln=\" + line.substring(line.indexOf('/')));",
            "        break;",
            "      }",
            "    }",
            "  }",
            "}", "");

    @Test
    void aFreshJvmLoadsKilnFromTheJarAloneAndRunsANativeOp(@TempDir Path tmp) throws Exception {
        Path cache = tmp.resolve("javacpp-cache");
        Process p = child(tmp, cache, List.of());
        String out = readAll(p);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child JVM timed out:\n" + out);
        assertEquals(0, p.exitValue(), "child JVM failed:\n" + out);
        assertTrue(out.contains("sum=20.0"), out);
        assertTrue(out.contains("bytesInUse=0"), out);
        String loadedFrom = out.lines().filter(l -> l.startsWith("libkiln=")).findFirst()
                .orElseThrow(() -> new AssertionError("libkiln.so not mapped in the child:\n" + out));
        assertTrue(loadedFrom.substring("libkiln=".length()).startsWith(cache.toString()),
                "libkiln.so must come from the fresh JavaCPP cache, not the build tree: " + loadedFrom);
    }

    /** kiln.isa=avx512 runs at that level where the CPU has it, else fails naming the setting, the
     *  level and the best the CPU has (the native library alone would quietly clamp it). */
    @Test
    void aForcedIsaRunsThereOrIsRefusedNamingTheSetting(@TempDir Path tmp) throws Exception {
        Process p = child(tmp, tmp.resolve("javacpp-cache"), List.of("-Dkiln.isa=avx512"));
        String out = readAll(p);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child JVM timed out:\n" + out);
        if (out.contains("isa=avx512")) {
            assertEquals(0, p.exitValue(), out);
        } else {
            assertTrue(p.exitValue() != 0, out);
            assertTrue(out.contains("kiln.isa/KILN_ISA is 'avx512': this CPU does not support avx512 (best available: "),
                    out);
        }
    }

    private static Process child(Path tmp, Path cache, List<String> jvmArgs) throws IOException {
        Path lib = Path.of(System.getProperty("kiln.standalone.lib", "target/standalone-lib"));
        List<Path> jars;
        try (Stream<Path> s = Files.list(lib)) {
            jars = s.filter(p -> p.toString().endsWith(".jar")).sorted().collect(Collectors.toList());
        }
        assertTrue(jars.stream().anyMatch(p -> p.getFileName().toString().startsWith("kiln-java-api-")),
                "the packaged kiln-java-api jar must be in " + lib + ": " + jars);
        assertFalse(jars.stream().anyMatch(p -> Files.isDirectory(p)), "jars only, no class folders");

        Path work = Files.createDirectories(tmp.resolve("work"));
        Path home = Files.createDirectories(tmp.resolve("home"));
        Files.writeString(work.resolve("Smoke.java"), SMOKE);

        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("--add-exports");
        cmd.add("java.base/jdk.internal.misc=ALL-UNNAMED");
        cmd.add("--enable-native-access=ALL-UNNAMED");
        cmd.add("-Duser.home=" + home);
        cmd.add("-Dorg.bytedeco.javacpp.cachedir=" + cache);
        cmd.addAll(jvmArgs);
        cmd.add("-cp");
        cmd.add(jars.stream().map(Path::toString).collect(Collectors.joining(File.pathSeparator)));
        cmd.add("Smoke.java");
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(work.toFile()).redirectErrorStream(true);
        pb.environment().remove("LD_LIBRARY_PATH");
        pb.environment().remove("KILN_ISA");
        return pb.start();
    }

    private static String readAll(Process p) throws IOException {
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }
}
