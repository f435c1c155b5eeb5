package dev.kiln.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.NativeMemory;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class KilnFileTest {
    private static Map<String, Tensor> everyDtype() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        Random r = new Random(1);
        for (DType d : DType.values()) {
            Tensor t = Tensor.zeros(d, 3, 5);
            ByteBuffer b = t.byteView();
            for (int i = 0; i < b.capacity(); i++) {
                b.put(i, (byte) r.nextInt(256));
            }
            m.put("t_" + d.name(), t);
        }
        m.put("empty", Tensor.zeros(DType.F32, 0, 4));
        m.put("scalar", Tensor.zeros(DType.I32));
        return m;
    }

    private static byte[] bytes(Tensor t) {
        ByteBuffer b = t.byteView();
        byte[] out = new byte[b.capacity()];
        b.get(out);
        return out;
    }

    @Test
    void everyDtypeRoundTripsBitExactlyThroughReadMapAndBytes(@TempDir Path dir) throws IOException {
        Map<String, Tensor> src = everyDtype();
        Path f = dir.resolve("all.kiln");
        try {
            KilnFile.write(f, src, Map.of("author", "test", "ünïcode", "✓"));
            byte[] image = Files.readAllBytes(f);
            assertArrayEquals(image, KilnFile.toBytes(src, Map.of("author", "test", "ünïcode", "✓")));
            for (TensorSet set : new TensorSet[] {KilnFile.read(f), KilnFile.map(f, true), KilnFile.fromBytes(image)}) {
                try (set) {
                    assertEquals(src.keySet(), set.names());
                    assertEquals("✓", set.metadata().get("ünïcode"));
                    for (Map.Entry<String, Tensor> e : src.entrySet()) {
                        Tensor got = set.get(e.getKey());
                        assertEquals(e.getValue().dtype(), got.dtype());
                        assertArrayEquals(e.getValue().shape(), got.shape());
                        assertArrayEquals(bytes(e.getValue()), bytes(got), e.getKey());
                    }
                }
            }
        } finally {
            src.values().forEach(Tensor::close);
        }
    }

    @Test
    void modelFilesRebuildTheSameModel(@TempDir Path dir) throws IOException {
        Sequential.Builder b = Sequential.builder(5).embedding(9, 3, Init.HE, 1).dense(8, Init.HE, 2).leakyRelu(0.2f);
        int skip = b.mark();
        b.dense(8, Init.HE, 3).residual(skip).layerNorm(1e-3f).dropout(0.25).dense(4, Init.XAVIER, 4).logSoftmax();
        Path f = dir.resolve("m.kiln");
        try (Sequential a = b.build()) {
            ModelFile.save(a, f, Map.of("version", "7"));
            try (Sequential c = ModelFile.load(f); Sequential d = ModelFile.fromBytes(Files.readAllBytes(f))) {
                for (Sequential x : new Sequential[] {c, d}) {
                    assertEquals(ModelFile.structure(a), ModelFile.structure(x));
                    for (Map.Entry<String, Tensor> e : a.parameters().entrySet()) {
                        assertArrayEquals(e.getValue().toFloatArray(), x.parameters().get(e.getKey()).toFloatArray());
                    }
                }
            }
        }
    }

    @Test
    void mappingAOneGigabyteModelAddsNoHeap(@TempDir Path dir) throws IOException {
        // A 1 GiB tensor written by hand (a sparse file of zeros: no 1 GiB in memory to make it).
        long n = 1L << 30;
        Path f = dir.resolve("big.kiln");
        CRC32C crc = new CRC32C();
        ByteBuffer zeros = ByteBuffer.allocate(1 << 20);
        for (long i = 0; i < n; i += zeros.capacity()) {
            crc.update(zeros.clear());
        }
        String header = "{\"tensors\":[{\"name\":\"w\",\"dtype\":\"F32\",\"shape\":[" + (n / 4) + "],\"offset\":0,\"length\":" + n
                + ",\"crc32c\":" + crc.getValue() + "}],\"metadata\":{}}";
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        long dataStart = (24 + h.length + 63) / 64 * 64;
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            ByteBuffer head = ByteBuffer.allocate(24 + h.length).order(ByteOrder.LITTLE_ENDIAN);
            head.put(KilnFile.MAGIC).putInt(1).putInt(0).putLong(h.length).put(h).flip();
            ch.write(head);
            ch.truncate(dataStart + n);
            ch.position(dataStart + n - 1).write(ByteBuffer.wrap(new byte[1])); // extend to full size, sparse
        }
        var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long tid = Thread.currentThread().getId();
        KilnFile.map(f, false).close(); // warm up the classes involved
        long nativeBefore = NativeMemory.settledBytesInUse();
        long before = threads.getThreadAllocatedBytes(tid);
        try (TensorSet set = KilnFile.map(f, false)) {
            long heapDelta = threads.getThreadAllocatedBytes(tid) - before;
            Tensor w = set.get("w");
            assertEquals(n / 4, w.numel());
            assertEquals(0f, w.getFloat(n / 4 - 1));
            assertEquals(0.0, w.sum());  // native code reads all of it through the mapping
            assertTrue(heapDelta < 64 * 1024, "heap grew by " + heapDelta + " bytes");
            assertEquals(nativeBefore, dev.kiln.Kiln.memoryStats().bytesInUse(), "no native copy");
        }
    }

    private static byte[] small() {
        try (Tensor a = Tensor.of(new float[] {1, 2, 3}, 3); Tensor b = Tensor.of(new int[] {7, 8}, 2)) {
            return KilnFile.toBytes(Map.of("a", a, "b", b), Map.of("k", "v"));
        }
    }

    private static byte[] withHeader(String json) {
        byte[] h = json.getBytes(StandardCharsets.UTF_8);
        int start = (24 + h.length + 63) / 64 * 64;
        ByteBuffer b = ByteBuffer.allocate(start + 64).order(ByteOrder.LITTLE_ENDIAN);
        b.put(KilnFile.MAGIC).putInt(1).putInt(0).putLong(h.length).put(h);
        return b.array();
    }

    private static String refused(byte[] image) {
        return assertThrows(IllegalArgumentException.class, () -> KilnFile.fromBytes(image).close()).getMessage();
    }

    @Test
    void badFilesAreRefusedWithClearMessages() {
        byte[] good = small();
        assertTrue(refused(java.util.Arrays.copyOf(good, good.length - 1)).contains("truncated or extended"));
        assertTrue(refused(java.util.Arrays.copyOf(good, 30)).contains("header length"));
        byte[] newer = good.clone();
        newer[8] = 3;
        assertTrue(refused(newer).contains("newer than this Kiln reads"));
        byte[] magic = good.clone();
        magic[0] = 'X';
        assertTrue(refused(magic).contains("not a Kiln file"));
        byte[] flipped = good.clone();
        flipped[flipped.length - 64] ^= 1; // a data byte of tensor 'b'
        assertTrue(refused(flipped).contains("fails its checksum"));
        String entry = "{\"name\":\"x\",\"dtype\":\"F32\",\"shape\":[4],\"offset\":%d,\"length\":%d,\"crc32c\":0}";
        assertTrue(refused(withHeader("{\"tensors\":[" + String.format(entry, 64, 16) + "],\"metadata\":{}}"))
                .contains("past the 64 bytes"));
        assertTrue(refused(withHeader("{\"tensors\":[" + String.format(entry, 0, 1L << 40) + "],\"metadata\":{}}"))
                .contains("its shape needs 16 bytes"));
        assertTrue(refused(withHeader("{\"tensors\":[" + String.format(entry, 0, 16) + ","
                + String.format(entry, 0, 16).replace("\"x\"", "\"y\"") + "],\"metadata\":{}}")).contains("overlaps"));
        assertTrue(refused(withHeader("{\"tensors\":[" + String.format(entry, 0, 16).replace("[4]", "[-4]")
                + "],\"metadata\":{}}")).contains("dimension -4"));
        assertTrue(refused(withHeader("{\"tensors\":[" + String.format(entry, 0, 16).replace("F32", "F8")
                + "],\"metadata\":{}}")).contains("unknown dtype 'F8'"));
        assertTrue(refused(withHeader("[".repeat(100) + "]".repeat(100))).contains("nested deeper"));
        byte[] notUtf8 = withHeader("{\"tensors\":[],\"metadata\":{\"k\":\"xx\"}}");
        notUtf8[24 + 32] = (byte) 0xff;
        assertTrue(refused(notUtf8).contains("not valid UTF-8"));
        byte[] hugeHeader = good.clone();
        ByteBuffer.wrap(hugeHeader).order(ByteOrder.LITTLE_ENDIAN).putLong(16, Long.MAX_VALUE);
        assertTrue(refused(hugeHeader).contains("header length"));
    }

    /**
     * A crafted structure (valid checksums) whose layers are far larger than the file's tensors is
     * refused before anything is allocated: before, a 200-byte file declaring a 1000 x 2,000,000
     * dense layer made the loader allocate and zero 8 GB, then refuse it for the missing tensor.
     */
    @Test
    void structuresLargerThanTheFileAreRefusedBeforeAllocating() {
        String layer = "{\"kind\":\"%s\",\"out\":%d,\"activation\":\"IDENTITY\",\"alpha\":0,\"eps\":0,\"from\":-1,\"vocab\":%d}";
        String[][] cases = {
            {"{\"input\":1000,\"layers\":[" + String.format(layer, "DENSE", 2_000_000, 0) + "]}",
                "the structure needs a tensor '0.weight' [1000, 2000000], which the file does not hold"},
            {"{\"input\":4,\"layers\":[" + String.format(layer, "EMBEDDING", 4_000_000_000L, 3_000_000_000L) + "]}",
                "the structure needs a tensor '0.weight' [3000000000, 1000000000], which the file does not hold"},
            {"{\"input\":100000000,\"layers\":[" + String.format(layer, "LAYER_NORM", 100_000_000, 0) + "]}",
                "the structure needs a tensor '0.gamma' [100000000], which the file does not hold"},
            {"{\"input\":300000000,\"layers\":[" + String.format(layer, "PRELU", 300_000_000, 0) + "]}",
                "the structure needs a tensor '0.weight' [300000000], which the file does not hold"},
        };
        long before = NativeMemory.settledBytesInUse();
        for (String[] c : cases) {
            byte[] f = KilnFile.toBytes(Map.of(), Map.of(ModelFile.STRUCTURE_KEY, c[0]));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ModelFile.fromBytes(f).close());
            assertEquals("kiln file: invalid model structure (" + c[1] + ")", e.getMessage());
        }
        // The tensors present but of other shapes or dtypes: named too.
        try (Tensor w = Tensor.zeros(DType.F32, 3, 4); Tensor b = Tensor.zeros(DType.F32, 4); Tensor b16 = Tensor.zeros(DType.BF16, 4)) {
            String dense = "{\"input\":2,\"layers\":[" + String.format(layer, "DENSE", 4, 0) + "]}";
            byte[] f = KilnFile.toBytes(Map.of("0.weight", w, "0.bias", b), Map.of(ModelFile.STRUCTURE_KEY, dense));
            assertEquals("kiln file: invalid model structure (the structure needs '0.weight' to be F32[2, 4] but the file holds "
                    + "F32[3, 4])", assertThrows(IllegalArgumentException.class, () -> ModelFile.fromBytes(f).close()).getMessage());
            String dense3 = dense.replace("\"input\":2", "\"input\":3");
            byte[] g = KilnFile.toBytes(Map.of("0.weight", w, "0.bias", b16), Map.of(ModelFile.STRUCTURE_KEY, dense3));
            assertEquals("kiln file: invalid model structure (the structure needs '0.bias' to be F32[4] but the file holds "
                    + "BF16[4])", assertThrows(IllegalArgumentException.class, () -> ModelFile.fromBytes(g).close()).getMessage());
            byte[] ok = KilnFile.toBytes(Map.of("0.weight", w, "0.bias", b), Map.of(ModelFile.STRUCTURE_KEY, dense3));
            try (dev.kiln.nn.Sequential m = ModelFile.fromBytes(ok)) {
                assertEquals("Sequential[3 -> dense 4]", m.toString());
            }
        }
        assertEquals(before, dev.kiln.Kiln.memoryStats().bytesInUse(), "no native memory left behind");
    }

    @Test
    void everyFlippedBitOfTheHeaderIsCaughtAndVersion1FilesStillRead() {
        byte[] good = small();
        ByteBuffer b = ByteBuffer.wrap(good).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(2, b.getInt(8));
        long end = 24 + b.getLong(16);
        // Before (version 1, no header checksum) a bit flipped in a tensor name, a shape digit or a
        // metadata value that kept the JSON valid was read without a word.
        for (int i = 12; i < end; i++) {
            for (int bit = 0; bit < 8; bit++) {
                byte[] f = good.clone();
                f[i] ^= (byte) (1 << bit);
                refused(f);
            }
        }
        byte[] name = good.clone();
        name[new String(good, StandardCharsets.ISO_8859_1).indexOf("\"name\":\"a\"") + 8] = 'c';
        assertEquals("kiln file: the header fails its checksum (corrupt file)", refused(name));
        // A version-1 file (offset 12 reserved) is read as before.
        byte[] v1 = good.clone();
        ByteBuffer.wrap(v1).order(ByteOrder.LITTLE_ENDIAN).putInt(8, 1).putInt(12, 0);
        try (TensorSet s = KilnFile.fromBytes(v1)) {
            assertEquals(java.util.Set.of("a", "b"), s.tensors().keySet());
            assertEquals("v", s.metadata().get("k"));
        }
    }

    @Test
    void mutatedFilesNeverCrashOrLeak() {
        byte[] seed = small();
        long before = NativeMemory.settledBytesInUse();
        Random r = new Random(17);
        int accepted = 0;
        for (int iter = 0; iter < 100_000; iter++) {
            byte[] f = seed.clone();
            switch (r.nextInt(4)) {
                case 0 -> {
                    for (int k = 0, n = 1 + r.nextInt(3); k < n; k++) {
                        f[r.nextInt(f.length)] ^= (byte) (1 << r.nextInt(8));
                    }
                }
                case 1 -> f = java.util.Arrays.copyOf(f, r.nextInt(f.length + 64));
                case 2 -> f[24 + r.nextInt(f.length - 24)] = (byte) ("0123456789{}[]\",:-".charAt(r.nextInt(18)));
                default -> f[r.nextInt(f.length)] = (byte) r.nextInt(256);
            }
            try (TensorSet s = KilnFile.fromBytes(f)) {
                accepted++;
                assertTrue(s.names().size() <= 2);
            } catch (IllegalArgumentException expected) {
                // refused with a message
            }
        }
        assertTrue(accepted < 100_000, "accepted " + accepted);
        assertEquals(before, dev.kiln.Kiln.memoryStats().bytesInUse(), "no native memory left behind");
    }
}
