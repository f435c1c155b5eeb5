package dev.kiln.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.io.ModelFile;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.registry.ModelRegistry;
import dev.kiln.registry.ModelVersion;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Crash safety of the registry: a child JVM registers versions and moves aliases in a loop and is
 * killed with SIGKILL at a random point (0-120 ms after its first commit), 120 times over the same
 * registry. After each kill the registry must open; every version must be complete (its artifact
 * matches its SHA-256 and loads as a model); every alias must point to a complete version; and every
 * version the child reported as committed must still be there.
 */
class RegistryCrashIT {
    /** The child: registers and promotes forever, printing "committed N" after each register returns. */
    public static final class Writer {
        public static void main(String[] args) throws Exception {
            ModelRegistry r = ModelRegistry.open(Path.of(args[0]));
            Random rnd = new Random(Long.parseLong(args[1]));
            try (Sequential m = Sequential.builder(8).dense(16, Init.HE, 1).relu().dense(4, Init.HE, 2).build()) {
                System.out.println("ready");
                System.out.flush();
                for (int i = 0; ; i++) {
                    m.layers().get(0).bias().fill(i);
                    ModelVersion v = r.register("crash", m, Map.of("i", Integer.toString(i)));
                    System.out.println("committed " + v.number());
                    System.out.flush();
                    r.promote("crash", rnd.nextBoolean() ? "production" : "staging", 1 + rnd.nextInt(v.number()));
                    if (rnd.nextInt(4) == 0 && v.number() > 1) {
                        try {
                            r.rollback("crash", "production");
                        } catch (IllegalStateException nothingToRollBackTo) {
                            // fine
                        }
                    }
                }
            }
        }
    }

    @Test
    void killedWritersNeverCorruptTheRegistry(@TempDir Path root) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cp = System.getProperty("java.class.path");
        Random rnd = new Random(20261129);
        Set<Integer> committed = new HashSet<>();
        int trials = 120, killedMidWrite = 0;
        for (int t = 0; t < trials; t++) {
            Process p = new ProcessBuilder(java, "-cp", cp, "-Xmx256m", Writer.class.getName(), root.toString(),
                    Long.toString(t)).redirectError(root.resolve(".child-" + t + ".err").toFile()).start();
            BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
            String first = out.readLine();
            assertEquals("ready", first, "child failed to start (stderr in " + root.resolve(".child-" + t + ".err") + ")");
            java.util.concurrent.CountDownLatch firstCommit = new java.util.concurrent.CountDownLatch(1);
            Thread reader = new Thread(() -> {
                try {
                    for (String line; (line = out.readLine()) != null; ) {
                        if (line.startsWith("committed ")) {
                            synchronized (committed) {
                                committed.add(Integer.parseInt(line.substring(10)));
                            }
                            firstCommit.countDown();
                        }
                    }
                } catch (java.io.IOException ignored) {
                    // the child died
                }
            });
            reader.start();
            // Killed at a random point after its first commit: on a slow machine a fixed delay from
            // start could end most trials before any write (99 commits in 120 trials once, here).
            assertTrue(firstCommit.await(60, TimeUnit.SECONDS), "child committed nothing in 60 s (stderr in "
                    + root.resolve(".child-" + t + ".err") + ")");
            Thread.sleep(rnd.nextInt(120));
            p.destroyForcibly(); // SIGKILL on Linux
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
            reader.join();
            if (p.exitValue() == 137 || p.exitValue() == 9 + 128) {
                killedMidWrite++;
            }
            check(root, committed);
        }
        assertTrue(killedMidWrite >= 100, killedMidWrite + " of " + trials + " children killed while writing");
        assertTrue(committed.size() >= trials, committed.size() + " versions committed across the trials");
    }

    private static void check(Path root, Set<Integer> committed) throws Exception {
        ModelRegistry r = ModelRegistry.open(root);
        List<ModelVersion> versions = r.versions("crash");
        Set<Integer> present = new HashSet<>();
        for (ModelVersion v : versions) {
            present.add(v.number());
            byte[] art = r.artifact(v); // SHA-256 checked
            try (Sequential m = ModelFile.fromBytes(art)) {
                assertEquals(8, m.inputFeatures());
            }
        }
        synchronized (committed) {
            assertTrue(present.containsAll(committed), "lost committed versions: " + committed + " vs " + present);
        }
        for (Map.Entry<String, Integer> a : r.aliases("crash").entrySet()) {
            assertTrue(present.contains(a.getValue()), "alias " + a.getKey() + " -> missing version " + a.getValue());
        }
        // Leftovers of a killed writer are only dot-named temporaries, invisible to readers.
        if (!Files.isDirectory(root.resolve("crash").resolve("versions"))) {
            return;
        }
        try (var s = Files.list(root.resolve("crash").resolve("versions"))) {
            s.forEach(p -> {
                String f = p.getFileName().toString();
                assertTrue(f.startsWith(".") || f.matches("[1-9][0-9]*"), "unexpected entry " + f);
            });
        }
    }
}
