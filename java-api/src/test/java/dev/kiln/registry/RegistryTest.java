package dev.kiln.registry;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RegistryTest {
    /** A 4 -> 2 model whose output is the constant {@code c} in both columns (zero weights, bias c). */
    static Sequential constant(float c) {
        Sequential m = Sequential.builder(4).dense(2, Init.ZEROS, 0).build();
        m.layers().get(0).bias().fill(c);
        return m;
    }

    @Test
    void versionsAreNumberedHashedAndImmutable(@TempDir Path root) throws IOException {
        ModelRegistry r = ModelRegistry.open(root);
        ModelVersion v1, v2;
        try (Sequential a = constant(1); Sequential b = constant(2)) {
            v1 = r.register("fraud", a, Map.of("auc", "0.91", "author", "ana"));
            v2 = r.register("fraud", b, Map.of("auc", "0.93", "parent", "1", "note", "ünï = code\nline"));
        }
        assertEquals(1, v1.number());
        assertEquals(2, v2.number());
        assertEquals("ana", v1.author());
        assertEquals("1", v2.parent());
        assertEquals("ünï = code\nline", r.version("fraud", 2).metadata().get("note"));
        assertEquals(64, v1.sha256().length());
        assertEquals(List.of("fraud"), r.models());
        assertEquals(2, r.versions("fraud").size());
        try (Sequential back = r.load(r.version("fraud", 2)); Tensor x = Tensor.zeros(DType.F32, 1, 4);
             Tensor y = Tensor.zeros(DType.F32, 1, 2); var s = back.compile(1)) {
            s.run(x, y);
            assertArrayEquals(new float[] {2, 2}, y.toFloatArray());
        }
        // Tampering on disk is caught by the hash.
        byte[] art = Files.readAllBytes(v1.artifact());
        art[art.length - 1] ^= 1;
        Files.write(v1.artifact(), art);
        assertTrue(assertThrows(IOException.class, () -> r.artifact(r.version("fraud", 1))).getMessage().contains("SHA-256"));
        assertThrows(IllegalArgumentException.class, () -> r.register("../evil", new byte[1], Map.of()));
        assertThrows(IllegalArgumentException.class, () -> r.register("ok", new byte[1], Map.of("kiln.number", "9")));
        // Before: an empty file and an empty metadata key were registered as a version.
        assertEquals("the artifact for 'fraud' is empty: no model has 0 bytes",
                assertThrows(IllegalArgumentException.class, () -> r.register("fraud", new byte[0], Map.of())).getMessage());
        assertThrows(IllegalArgumentException.class, () -> r.register("fraud", new byte[1], Map.of("", "x")));
        assertThrows(java.nio.file.NoSuchFileException.class, () -> r.version("fraud", 3));
    }

    @Test
    void aliasesMoveRollBackAndProtectTheirVersions(@TempDir Path root) throws IOException {
        ModelRegistry r = ModelRegistry.open(root);
        for (int i = 1; i <= 3; i++) {
            r.register("m", new byte[] {(byte) i}, Map.of());
        }
        r.promote("m", "production", 1);
        r.promote("m", "production", 2);
        r.promote("m", "staging", 3);
        assertEquals(Map.of("production", 2, "staging", 3), r.aliases("m"));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> r.delete("m", 2));
        assertTrue(e.getMessage().contains("alias 'production'"), e.getMessage());
        assertEquals(1, r.rollback("m", "production").number());
        assertEquals(1, r.resolve("m", "production").orElseThrow().number());
        r.delete("m", 2);
        assertEquals(List.of(1, 3), r.versions("m").stream().map(ModelVersion::number).toList());
        assertThrows(IllegalStateException.class, () -> r.rollback("m", "production")); // nothing before 1
        r.promote("m", "production", 3);
        r.promote("m", "production", 1);
        assertEquals(3, r.rollback("m", "production").number());
        assertEquals(4, r.register("m", new byte[] {4}, Map.of()).number()); // numbers never reused
        assertThrows(java.nio.file.NoSuchFileException.class, () -> r.promote("m", "production", 2));
        assertTrue(r.resolve("m", "nope").isEmpty());
        // An alias of digits only would read as a version number ("kiln registry show m 5").
        assertEquals("alias '5' is all digits: it would read as a version number",
                assertThrows(IllegalArgumentException.class, () -> r.promote("m", "5", 1)).getMessage());
        r.promote("m", "v5", 1);
    }

    @Test
    void hotSwapUnderLoadFailsNoRequest(@TempDir Path root) throws Exception {
        ModelRegistry r = ModelRegistry.open(root);
        try (Sequential a = constant(1); Sequential b = constant(2)) {
            r.register("svc", a, Map.of());
            r.register("svc", b, Map.of());
        }
        r.promote("svc", "production", 1);
        // The mover numbers epochs and records which versions are production in each: a move is an
        // epoch where both old and new are (the alias has moved, the router swaps), then one where
        // only the new one is. Each request notes the epochs it spans.
        Map<Long, java.util.Set<Integer>> productionAt = new java.util.concurrent.ConcurrentHashMap<>();
        AtomicLong epoch = new AtomicLong();
        productionAt.put(0L, java.util.Set.of(1));
        AtomicInteger failures = new AtomicInteger(), wrong = new AtomicInteger();
        AtomicLong served = new AtomicLong();
        AtomicBoolean stop = new AtomicBoolean();
        try (ModelRouter router = ModelRouter.builder(r, "svc").maxBatch(4).build()) {
            CountDownLatch started = new CountDownLatch(8);
            List<Thread> workers = new ArrayList<>();
            for (int t = 0; t < 8; t++) {
                final int id = t;
                Thread w = new Thread(() -> {
                    try (Tensor x = Tensor.zeros(DType.F32, 1, 4); Tensor y = Tensor.zeros(DType.F32, 1, 2)) {
                        started.countDown();
                        float[] out = new float[2];
                        while (!stop.get()) {
                            long e0 = epoch.get();
                            try {
                                ModelVersion v = router.run("k" + id, x, y);
                                long e1 = epoch.get();
                                y.copyTo(out);
                                boolean okOutput = out[0] == v.number() && out[1] == v.number();
                                boolean wasProduction = false;
                                for (long e = e0; e <= e1; e++) {
                                    wasProduction |= productionAt.getOrDefault(e, java.util.Set.of()).contains(v.number());
                                }
                                if (!okOutput || !wasProduction) {
                                    wrong.incrementAndGet();
                                }
                                served.incrementAndGet();
                            } catch (RuntimeException ex) {
                                failures.incrementAndGet();
                            }
                        }
                    }
                });
                w.start();
                workers.add(w);
            }
            started.await();
            for (int move = 1; move <= 100; move++) {
                int target = move % 2 == 1 ? 2 : 1;
                productionAt.put(epoch.get() + 1, java.util.Set.of(1, 2));
                epoch.incrementAndGet();
                r.promote("svc", "production", target);
                router.refresh();
                productionAt.put(epoch.get() + 1, java.util.Set.of(target));
                epoch.incrementAndGet();
                Thread.sleep(2);
            }
            stop.set(true);
            for (Thread w : workers) {
                w.join();
            }
        }
        assertEquals(0, failures.get(), "failed requests");
        assertEquals(0, wrong.get(), "responses from a version that was not production during the request");
        assertTrue(served.get() > 1000, served.get() + " requests");
    }

    @Test
    void keyHashIsFnv1aOfTheKeysUtf8Bytes() {
        // The same arms as before the hash stopped allocating: FNV-1a of getBytes(UTF_8), unpaired
        // surrogates included (encoded as '?').
        java.util.Random rnd = new java.util.Random(5);
        for (int n = 0; n < 20_000; n++) {
            char[] cs = new char[rnd.nextInt(12)];
            for (int i = 0; i < cs.length; i++) {
                int kind = rnd.nextInt(5);
                cs[i] = (char) (kind == 0 ? rnd.nextInt(0x80) : kind == 1 ? rnd.nextInt(0x800)
                        : kind == 2 ? 0xd800 + rnd.nextInt(0x800) : kind == 3 ? rnd.nextInt(0x10000) : 'a' + rnd.nextInt(26));
            }
            if (n % 3 == 0 && cs.length >= 2) {  // a valid pair somewhere
                int at = rnd.nextInt(cs.length - 1);
                cs[at] = (char) (0xd800 + rnd.nextInt(0x400));
                cs[at + 1] = (char) (0xdc00 + rnd.nextInt(0x400));
            }
            String key = new String(cs);
            long want = 0xcbf29ce484222325L;
            for (byte b : key.getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
                want = (want ^ (b & 0xff)) * 0x100000001b3L;
            }
            assertEquals(want, ModelRouter.keyHash(key), () -> "key " + key.chars().mapToObj(Integer::toHexString).toList());
        }
    }

    @Test
    void abSplitIsWithinOnePercentAndSticky(@TempDir Path root) throws IOException {
        ModelRegistry r = ModelRegistry.open(root);
        try (Sequential a = constant(1); Sequential b = constant(2)) {
            r.register("ab", a, Map.of());
            r.register("ab", b, Map.of());
        }
        r.promote("ab", "production", 1);
        r.promote("ab", "canary", 2);
        try (ModelRouter router = ModelRouter.builder(r, "ab").split(Map.of("production", 0.8, "canary", 0.2)).build()) {
            Map<String, Integer> counts = new HashMap<>();
            for (int i = 0; i < 100_000; i++) {
                counts.merge(router.armOf("user-" + i), 1, Integer::sum);
            }
            assertEquals(0.8, counts.get("production") / 100_000.0, 0.01);
            assertEquals(0.2, counts.get("canary") / 100_000.0, 0.01);
            for (int i = 0; i < 1000; i++) {
                assertEquals(router.armOf("user-" + i), router.armOf("user-" + i));
            }
            try (Tensor x = Tensor.zeros(DType.F32, 1, 4); Tensor y = Tensor.zeros(DType.F32, 1, 2)) {
                for (int i = 0; i < 200; i++) {
                    String key = "user-" + i;
                    ModelVersion v = router.run(key, x, y);
                    assertEquals(router.armOf(key).equals("production") ? 1 : 2, v.number());
                }
                // Routing a request allocates nothing (the key's UTF-8 bytes are hashed as encoded).
                var mx = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
                String[] keys = {"user-1", "user-2", "ünïcödé-✓", "emoji-\uD83D\uDE00"};
                for (int i = 0; i < 20_000; i++) {
                    router.run(keys[i & 3], x, y);
                }
                long tid = Thread.currentThread().getId(), before = mx.getThreadAllocatedBytes(tid);
                for (int i = 0; i < 10_000; i++) {
                    router.run(keys[i & 3], x, y);
                }
                long total = mx.getThreadAllocatedBytes(tid) - before;
                assertEquals(0, total / 10_000, "bytes allocated per routed request (total " + total + ")");
            }
        }
    }

    @Test
    void shadowScoresWithoutServing(@TempDir Path root) throws IOException {
        ModelRegistry r = ModelRegistry.open(root);
        try (Sequential a = Sequential.builder(4).dense(2, Init.ZEROS, 0).build();
             Sequential b = Sequential.builder(4).dense(2, Init.ZEROS, 0).build()) {
            a.layers().get(0).bias().copyFrom(new float[] {1, 0}); // always class 0
            b.layers().get(0).bias().copyFrom(new float[] {0, 1}); // always class 1
            r.register("sh", a, Map.of());
            r.register("sh", b, Map.of());
        }
        r.promote("sh", "production", 1);
        r.promote("sh", "staging", 2);
        try (ModelRouter router = ModelRouter.builder(r, "sh").shadow("staging").build();
             Tensor x = Tensor.zeros(DType.F32, 3, 4); Tensor y = Tensor.zeros(DType.F32, 3, 2)) {
            for (int i = 0; i < 10; i++) {
                assertEquals(1, router.run("k", x, y).number());
                assertArrayEquals(new float[] {1, 0, 1, 0, 1, 0}, y.toFloatArray());
            }
            assertEquals(30, router.shadowRows());
            assertEquals(30, router.shadowDisagreements());
            // Requests of two batch sizes, alternating: the shadow's run and comparison allocate nothing.
            try (Tensor x1 = Tensor.zeros(DType.F32, 1, 4); Tensor y1 = Tensor.zeros(DType.F32, 1, 2)) {
                var mx = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
                for (int i = 0; i < 20_000; i++) {
                    router.run("k", (i & 1) == 0 ? x : x1, (i & 1) == 0 ? y : y1);
                }
                long tid = Thread.currentThread().getId(), before = mx.getThreadAllocatedBytes(tid);
                for (int i = 0; i < 10_000; i++) {
                    router.run("k", (i & 1) == 0 ? x : x1, (i & 1) == 0 ? y : y1);
                }
                long total = mx.getThreadAllocatedBytes(tid) - before;
                assertEquals(0, total / 10_000, "bytes allocated per request with a shadow (total " + total + ")");
                assertEquals(30 + 15_000 * 3 + 15_000, router.shadowRows());
                assertEquals(router.shadowRows(), router.shadowDisagreements());
                assertEquals(0, router.shadowFailures());
            }
        }
    }

    @Test
    void aShadowThatAgreesCountsNoDisagreement(@TempDir Path root) throws IOException {
        ModelRegistry r = ModelRegistry.open(root);
        try (Sequential a = Sequential.builder(4).dense(3, Init.HE, 5).build()) {
            r.register("same", a, Map.of());
            r.register("same", a, Map.of());
        }
        r.promote("same", "production", 1);
        r.promote("same", "staging", 2);
        try (ModelRouter router = ModelRouter.builder(r, "same").shadow("staging").build();
             Tensor x = Tensor.zeros(DType.F32, 5, 4).fillNormal(0, 1, 9); Tensor y = Tensor.zeros(DType.F32, 5, 3)) {
            for (int i = 0; i < 4; i++) {
                router.run("k" + i, x, y);
            }
            assertEquals(20, router.shadowRows());
            assertEquals(0, router.shadowDisagreements());
        }
    }

    @Test
    void encryptedVersionsServeWithTheirKey(@TempDir Path root) throws IOException {
        ModelRegistry r = ModelRegistry.open(root);
        dev.kiln.security.ArtifactKey key = dev.kiln.security.ArtifactKey.generate("reg-key");
        try (Sequential a = constant(3)) {
            byte[] sealed = dev.kiln.security.Artifacts.encrypt(dev.kiln.io.ModelFile.toBytes(a, Map.of()), key);
            r.register("enc", sealed, Map.of());
        }
        r.promote("enc", "production", 1);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> ModelRouter.builder(r, "enc").build());
        assertTrue(e.getMessage().contains("key id 'reg-key'"), e.getMessage());
        try (ModelRouter router = ModelRouter.builder(r, "enc").key(key).build();
             Tensor x = Tensor.zeros(DType.F32, 1, 4); Tensor y = Tensor.zeros(DType.F32, 1, 2)) {
            router.run("k", x, y);
            assertArrayEquals(new float[] {3, 3}, y.toFloatArray());
        }
        assertFalse(Files.readString(r.version("enc", 1).artifact(), java.nio.charset.StandardCharsets.ISO_8859_1)
                .contains("KILNFILE"), "stored encrypted");
    }

    @Test
    void everyArmMapsTheSameShapesAndARefreshIsAllOrNothing(@TempDir Path root) throws IOException {
        ModelRegistry r = ModelRegistry.open(root);
        try (Sequential wide = Sequential.builder(5).dense(2, Init.ZEROS, 0).build();
             Sequential three = Sequential.builder(4).dense(3, Init.ZEROS, 0).build()) {
            for (float c : new float[] {1, 2, 3}) {
                try (Sequential m = constant(c)) {
                    r.register("m", m, Map.of()); // versions 1, 2, 3: 4 -> 2
                }
            }
            r.register("m", wide, Map.of()); // 4: 5 -> 2
            r.register("m", three, Map.of()); // 5: 4 -> 3
        }
        r.promote("m", "production", 1);
        r.promote("m", "canary", 4);
        String msg = assertThrows(IllegalStateException.class,
                () -> ModelRouter.builder(r, "m").split(Map.of("production", 0.9, "canary", 0.1)).build()).getMessage();
        assertTrue(msg.contains("F32 [batch, 4] -> [batch, 2]") && msg.contains("(version 4) maps F32 [batch, 5]")
                && msg.contains("must take and give the same shapes"), msg);
        r.promote("m", "staging", 5);
        assertThrows(IllegalStateException.class, () -> ModelRouter.builder(r, "m").shadow("staging").build());

        r.promote("m", "canary", 2);
        try (ModelRouter router = ModelRouter.builder(r, "m").split(Map.of("production", 0.5, "canary", 0.5)).build();
             Tensor x = Tensor.zeros(DType.F32, 1, 4); Tensor y = Tensor.zeros(DType.F32, 1, 2)) {
            assertEquals(Map.of("canary", 2, "production", 1), router.servingVersions());
            // canary moves to a good version, production to one of another shape: neither swaps.
            r.promote("m", "canary", 3);
            r.promote("m", "production", 5);
            msg = assertThrows(IllegalStateException.class, router::refresh).getMessage();
            assertTrue(msg.contains("alias 'production' points to version 5") && msg.endsWith("nothing was swapped"), msg);
            assertEquals(Map.of("canary", 2, "production", 1), router.servingVersions());
            for (String key : new String[] {"a", "b", "c", "d"}) {
                int served = router.run(key, x, y).number();
                assertEquals(served, y.toFloatArray()[0], 0f); // each version's constant is its number
            }
            r.promote("m", "production", 1);
            assertEquals(1, router.refresh()); // now only canary moved
            assertEquals(Map.of("canary", 3, "production", 1), router.servingVersions());
        }
    }

    @Test
    void aFailingShadowNeverFailsTheServedRequest(@TempDir Path root) throws IOException {
        ModelRegistry r = ModelRegistry.open(root);
        // Same shapes (2 token ids -> 2 outputs), but the shadow knows 5 tokens and the primary 10.
        try (Sequential big = Sequential.builder(2).embedding(10, 1, Init.XAVIER, 1).dense(2, Init.XAVIER, 2).build();
             Sequential small = Sequential.builder(2).embedding(5, 1, Init.XAVIER, 1).dense(2, Init.XAVIER, 2).build()) {
            r.register("tok", big, Map.of());
            r.register("tok", small, Map.of());
        }
        r.promote("tok", "production", 1);
        r.promote("tok", "staging", 2);
        try (ModelRouter router = ModelRouter.builder(r, "tok").shadow("staging").build();
             Tensor ok = Tensor.of(new int[] {1, 4}, 1, 2); Tensor unknown = Tensor.of(new int[] {1, 7}, 1, 2);
             Tensor y = Tensor.zeros(DType.F32, 1, 2)) {
            assertEquals(1, router.run("k", ok, y).number());
            float[] before = y.toFloatArray();
            assertEquals(0, router.shadowFailures());
            assertEquals(1, router.run("k", unknown, y).number()); // token 7: the shadow fails, not the request
            assertEquals(1, router.shadowFailures());
            assertEquals(1, router.shadowRows());
            assertFalse(java.util.Arrays.equals(before, y.toFloatArray()));
        }
    }
}
