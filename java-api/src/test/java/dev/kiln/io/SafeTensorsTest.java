package dev.kiln.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.Kiln;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafeTensorsTest {
    private static Map<String, Tensor> sample() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("dense.weight", Tensor.zeros(DType.F32, 3, 5).fillNormal(0, 1, 1));
        m.put("dense.bias", Tensor.zeros(DType.F32, 5).fillUniform(-1, 1, 2));
        try (Tensor f = Tensor.zeros(DType.F32, 4, 2).fillNormal(0, 1, 3)) {
            m.put("half", f.to(DType.F16));
            m.put("brain", f.to(DType.BF16));
        }
        Tensor i8 = Tensor.zeros(DType.I8, 6);
        i8.copyFrom(new byte[] {-128, -1, 0, 1, 2, 127});
        m.put("i8", i8);
        Tensor u8 = Tensor.zeros(DType.U8, 2, 2);
        u8.copyFrom(new byte[] {0, 1, (byte) 200, (byte) 255});
        m.put("u8", u8);
        m.put("i32", Tensor.of(new int[] {Integer.MIN_VALUE, -1, 0, Integer.MAX_VALUE}, 4));
        m.put("scalar", Tensor.of(new float[] {3.5f}));
        m.put("empty", Tensor.zeros(DType.F32, 0, 7));
        return m;
    }

    private static byte[] bytes(Tensor t) {
        try (Tensor c = t.copy()) {
            dev.kiln.tensor.NativeAccess.acquire(c);
            try {
                java.nio.ByteBuffer b = dev.kiln.tensor.NativeAccess.rawBytes(c);
                byte[] out = new byte[b.remaining()];
                b.get(out);
                return out;
            } finally {
                dev.kiln.tensor.NativeAccess.release(c);
            }
        }
    }

    @Test
    void roundTripOfEveryDtypeIsBitExact(@TempDir Path dir) throws Exception {
        Map<String, Tensor> in = sample();
        try {
            Path file = dir.resolve("m.safetensors");
            SafeTensors.write(file, in, Map.of("format", "pt", "author", "kiln \"test\""));
            try (TensorSet back = SafeTensors.read(file)) {
                assertEquals(in.keySet(), back.names());
                for (Map.Entry<String, Tensor> e : in.entrySet()) {
                    Tensor t = back.get(e.getKey());
                    assertEquals(e.getValue().dtype(), t.dtype(), e.getKey());
                    assertArrayEquals(e.getValue().shape(), t.shape(), e.getKey());
                    assertArrayEquals(bytes(e.getValue()), bytes(t), e.getKey());
                }
                assertEquals("kiln \"test\"", back.metadata().get("author"));
            }
            byte[] image = SafeTensors.toBytes(in, null);
            try (TensorSet back = SafeTensors.read(image)) {
                assertArrayEquals(SafeTensors.toBytes(back.tensors(), null), image, "image round trip is byte-identical");
            }
            // a strided view is written as its elements
            try (Tensor m = Tensor.zeros(DType.F32, 3, 4).fillNormal(0, 1, 5); TensorSet back = SafeTensors.read(
                    SafeTensors.toBytes(Map.of("t", m.transpose(0, 1)), null))) {
                assertArrayEquals(m.transpose(0, 1).toFloatArray(), back.get("t").toFloatArray());
            }
        } finally {
            in.values().forEach(Tensor::close);
        }
    }

    /** A file with the given header JSON and data bytes. */
    private static byte[] file(String json, int dataBytes) {
        byte[] h = json.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        return b.array();
    }

    private static String refuse(byte[] image) {
        return assertThrows(IllegalArgumentException.class, () -> SafeTensors.read(image).close()).getMessage();
    }

    @Test
    void hostileFilesAreRefusedWithTheRuleTheyBreak() {
        long before = dev.kiln.tensor.NativeMemory.settledBytesInUse();
        String ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        try (TensorSet s = SafeTensors.read(file(ok, 8))) {
            assertEquals(2, s.get("a").numel());
        }
        byte[] good = file(ok, 8);
        assertTrue(refuse(java.util.Arrays.copyOf(good, good.length - 1)).contains("data_offsets [0, 8] outside the 7 bytes of data"));
        assertTrue(refuse(java.util.Arrays.copyOf(good, 5)).contains("too short"));
        byte[] hugeLen = good.clone();
        ByteBuffer.wrap(hugeLen).order(ByteOrder.LITTLE_ENDIAN).putLong(0, Long.MAX_VALUE);
        assertTrue(refuse(hugeLen).contains("header length 9223372036854775807 is invalid"));
        ByteBuffer.wrap(hugeLen).order(ByteOrder.LITTLE_ENDIAN).putLong(0, -1L);
        assertTrue(refuse(hugeLen).contains("header length 18446744073709551615 is invalid"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8)).contains("starts at 4 but the previous data ends at 8 (overlap)"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8)).contains("(hole)"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8)).contains("outside the 8 bytes"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,4],\"data_offsets\":[0,8]}}", 8))
                .contains("overflows"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8)).contains("dimension -2"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8)).contains("= 12 bytes but"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8)).contains("unknown dtype 'Q7'"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8)).contains("does not support"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8)).contains("unknown key 'x'"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{}}", 8)).contains("duplicate key"));
        assertTrue(refuse(file("[".repeat(100), 0)).contains("nested deeper than 16"));
        assertTrue(refuse(file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8)).contains("only integers"));
        byte[] badUtf8 = file("{\"\u00e9\":{}}", 0);
        badUtf8[10] = (byte) 0xff;
        assertTrue(refuse(badUtf8).contains("not valid UTF-8"));
        assertTrue(refuse(file("{} trailing", 0)).contains("unexpected text"));
        assertEquals(before, Kiln.memoryStats().bytesInUse(), "nothing left allocated by refused files");
    }

    @Test
    void namesAndMetadataComeBackExactlyOrAreRefused(@TempDir Path dir) throws Exception {
        // Quotes, backslashes, control characters, non-ASCII and surrogate pairs round-trip in both
        // formats. Before, an unpaired surrogate was written as '?' and came back as another name.
        try (Tensor t = Tensor.zeros(DType.F32, 2)) {
            for (String n : new String[] {"ünï\u00e9", "a\"b", "a\\b", "line\nbreak", "\u0000nul", "emoji\uD83D\uDE00"}) {
                SafeTensors.write(dir.resolve("n.safetensors"), Map.of(n, t), Map.of("m", n));
                KilnFile.write(dir.resolve("n.kiln"), Map.of(n, t), Map.of("m", n));
                try (TensorSet a = SafeTensors.read(dir.resolve("n.safetensors")); TensorSet b = KilnFile.read(dir.resolve("n.kiln"))) {
                    assertEquals(java.util.Set.of(n), a.tensors().keySet());
                    assertEquals(java.util.Set.of(n), b.tensors().keySet());
                    assertEquals(n, a.metadata().get("m"));
                    assertEquals(n, b.metadata().get("m"));
                }
            }
            for (String bad : new String[] {"lone\uD800", "\uDC00first", "high\uD83D"}) {
                assertTrue(assertThrows(IllegalArgumentException.class, () -> SafeTensors.write(dir.resolve("b.safetensors"),
                        Map.of(bad, t), Map.of())).getMessage().contains("unpaired surrogate"));
                assertTrue(assertThrows(IllegalArgumentException.class, () -> KilnFile.write(dir.resolve("b.kiln"),
                        Map.of("ok", t), Map.of("m", bad))).getMessage().contains("unpaired surrogate"));
            }
            assertTrue(!Files.exists(dir.resolve("b.safetensors")) && !Files.exists(dir.resolve("b.kiln")));
        }
    }

    @Test
    void everyWriterCreatesAMissingDirectoryAndLeavesNoTemporaryFile(@TempDir Path dir) throws Exception {
        // Before: SafeTensors.write, OnnxModels.save and HtmlReport.write failed in a missing directory
        // (naming a temporary file) while KilnFile, checkpoints and artifacts created it; all share
        // AtomicFiles now (created, fsynced, renamed).
        Map<String, Tensor> t = sample();
        try (dev.kiln.nn.Sequential m = dev.kiln.nn.Sequential.builder(4).dense(3, dev.kiln.nn.Init.HE, 1).build()) {
            SafeTensors.write(dir.resolve("a/b/w.safetensors"), t, Map.of());
            OnnxModels.save(m, dir.resolve("c/m.onnx"));
            new dev.kiln.metrics.HtmlReport("r").write(dir.resolve("d/e/r.html"));
            try (TensorSet back = SafeTensors.read(dir.resolve("a/b/w.safetensors"));
                 dev.kiln.nn.Sequential m2 = OnnxModels.load(dir.resolve("c/m.onnx"))) {
                assertEquals(t.size(), back.tensors().size());
                assertEquals(3, m2.outputFeatures());
            }
            assertTrue(Files.readString(dir.resolve("d/e/r.html")).startsWith("<!DOCTYPE html>"));
        } finally {
            t.values().forEach(Tensor::close);
        }
        try (var files = Files.walk(dir)) {
            assertEquals(0, files.filter(f -> f.getFileName().toString().endsWith(".tmp")).count());
        }
    }

    @Test
    void truncatedFileOnDiskIsRefused(@TempDir Path dir) throws Exception {
        Map<String, Tensor> in = sample();
        try {
            byte[] image = SafeTensors.toBytes(in, null);
            Path f = dir.resolve("t.safetensors");
            Files.write(f, java.util.Arrays.copyOf(image, image.length - 3));
            assertThrows(IllegalArgumentException.class, () -> SafeTensors.read(f).close());
        } finally {
            in.values().forEach(Tensor::close);
        }
    }

    @Test
    void hundredThousandMutatedFilesNeverCrashHangOrLeak() {
        Map<String, Tensor> in = sample();
        byte[] seed;
        try {
            seed = SafeTensors.toBytes(in, Map.of("k", "v"));
        } finally {
            in.values().forEach(Tensor::close);
        }
        long before = dev.kiln.tensor.NativeMemory.settledBytesInUse();
        Random r = new Random(20261129);
        int accepted = 0;
        long t0 = System.nanoTime();
        for (int iter = 0; iter < 100_000; iter++) {
            byte[] f = seed.clone();
            int kind = r.nextInt(5);
            if (kind == 0) { // flip bytes
                for (int k = 0, n = 1 + r.nextInt(4); k < n; k++) {
                    f[r.nextInt(f.length)] ^= (byte) (1 << r.nextInt(8));
                }
            } else if (kind == 1) { // truncate
                f = java.util.Arrays.copyOf(f, r.nextInt(f.length));
            } else if (kind == 2) { // header length field
                ByteBuffer.wrap(f).order(ByteOrder.LITTLE_ENDIAN).putLong(0, r.nextLong() >>> r.nextInt(64));
            } else if (kind == 3) { // random digit inside the JSON
                int p = 8 + r.nextInt(Math.min(f.length - 8, 600));
                f[p] = (byte) ('0' + r.nextInt(10));
            } else { // random bytes anywhere in the header
                int p = 8 + r.nextInt(Math.min(f.length - 8, 600));
                f[p] = (byte) r.nextInt(256);
            }
            try (TensorSet s = SafeTensors.read(f)) {
                accepted++;
                assertTrue(s.names().size() <= 9);
            } catch (IllegalArgumentException expected) {
                // refused with a message: fine
            }
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(accepted > 0 && accepted < 100_000, "accepted " + accepted);
        assertEquals(before, Kiln.memoryStats().bytesInUse(), "no native memory left behind");
        assertTrue(ms < 60_000, "100k files took " + ms + " ms");
    }
}
