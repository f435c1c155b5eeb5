package dev.kiln.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.tensor.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.GZIPOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DataTest {
    private static byte[] idx(int type, int[] dims, byte[] data) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        DataOutputStream o = new DataOutputStream(b);
        o.writeInt((type << 8) | dims.length);
        for (int d : dims) {
            o.writeInt(d);
        }
        o.write(data);
        return b.toByteArray();
    }

    @Test
    void idxReadsImagesAndLabelsPlainAndGzipped(@TempDir Path dir) throws IOException {
        byte[] px = {0, (byte) 255, 51, 102, 0, 0, 0, (byte) 128};
        Files.write(dir.resolve("img"), idx(8, new int[] {2, 2, 2}, px));
        ByteArrayOutputStream gz = new ByteArrayOutputStream();
        try (GZIPOutputStream g = new GZIPOutputStream(gz)) {
            g.write(idx(8, new int[] {2}, new byte[] {3, 9}));
        }
        Files.write(dir.resolve("lab.gz"), gz.toByteArray());
        try (Tensor x = Idx.readImages(dir.resolve("img")); Tensor y = Idx.readLabels(dir.resolve("lab.gz"))) {
            assertArrayEquals(new long[] {2, 4}, x.shape());
            assertArrayEquals(new float[] {0, 1, 0.2f, 0.4f, 0, 0, 0, 128 / 255f}, x.toFloatArray(), 1e-7f);
            assertArrayEquals(new int[] {3, 9}, y.toIntArray());
        }
    }

    @Test
    void idxRefusesBadFiles(@TempDir Path dir) throws IOException {
        Path p = dir.resolve("bad");
        Files.write(p, idx(8, new int[] {4}, new byte[] {1, 2}));
        assertTrue(assertThrows(IOException.class, () -> Idx.readU8(p)).getMessage().contains("truncated"));
        Files.write(p, idx(0x0d, new int[] {1}, new byte[4]));
        assertTrue(assertThrows(IOException.class, () -> Idx.readU8(p)).getMessage().contains("0xd is not supported"));
        Files.write(p, idx(8, new int[] {-1}, new byte[0]));
        assertTrue(assertThrows(IOException.class, () -> Idx.readU8(p)).getMessage().contains("must be >= 1"));
        Files.write(p, new byte[] {1, 2});
        assertThrows(IOException.class, () -> Idx.readU8(p));
        Files.write(p, idx(8, new int[] {65536, 65536}, new byte[0]));
        assertTrue(assertThrows(IOException.class, () -> Idx.readU8(p)).getMessage().contains("too large"));
        // Before: an ArithmeticException ("long overflow") naming no file.
        Files.write(p, idx(8, new int[] {Integer.MAX_VALUE, Integer.MAX_VALUE, Integer.MAX_VALUE}, new byte[0]));
        assertEquals(p + ": IDX dimensions [2147483647, 2147483647]... hold more than 2^31-1 elements: too large",
                assertThrows(IOException.class, () -> Idx.readU8(p)).getMessage());
        // Before: bytes past the data were ignored.
        Files.write(p, idx(8, new int[] {2}, new byte[] {1, 2, 3}));
        assertTrue(assertThrows(IOException.class, () -> Idx.readU8(p)).getMessage().contains("bytes past the 2"));
        // Before: java.util.zip.ZipException "Unsupported compression method", naming no file.
        Path gz = dir.resolve("bad.gz");
        Files.write(gz, new byte[] {0x1f, (byte) 0x8b, 7, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3});
        assertTrue(assertThrows(IOException.class, () -> Idx.readU8(gz)).getMessage().startsWith(gz + ": not a valid gzip file"));
        ByteArrayOutputStream z = new ByteArrayOutputStream();
        try (GZIPOutputStream g = new GZIPOutputStream(z)) {
            g.write(idx(8, new int[] {3}, new byte[] {1, 2, 3}));
        }
        byte[] corrupt = z.toByteArray();
        corrupt[12] ^= 0x55;  // inside the deflate data
        Files.write(gz, corrupt);
        IOException e = assertThrows(IOException.class, () -> Idx.readU8(gz));
        assertTrue(e.getMessage().startsWith(gz.toString()), e.getMessage());
    }

    @Test
    void fashionMnistMissingSaysHowToInstall(@TempDir Path dir) {
        var e = assertThrows(java.nio.file.NoSuchFileException.class, () -> FashionMnist.train(dir));
        assertTrue(e.getReason().contains("apt-get install dataset-fashion-mnist"), e.getReason());
    }

    @Test
    void csvReadsAndRefusesWithLineNumbers(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("d.csv");
        Files.writeString(f, "a,b,label\n1,2,0\n\n3.5,-4,2\n");
        try (Dataset d = Csv.readClassification(f, 2, true)) {
            assertEquals(2, d.size());
            assertEquals(3, d.numClasses());
            assertArrayEquals(new float[] {1, 2, 3.5f, -4}, d.features().toFloatArray());
        }
        try (Dataset d = Csv.readRegression(f, 0, true)) {
            assertArrayEquals(new float[] {1, 3.5f}, d.targets().toFloatArray());
        }
        try (dev.kiln.tensor.Tensor x = Csv.readFeatures(f, true)) { // every column a feature
            assertArrayEquals(new long[] {2, 3}, x.shape());
            assertArrayEquals(new float[] {1, 2, 0, 3.5f, -4, 2}, x.toFloatArray());
        }
        Files.writeString(f, "7\n8\n");
        try (dev.kiln.tensor.Tensor x = Csv.readFeatures(f, false)) { // one column is enough without a target
            assertArrayEquals(new long[] {2, 1}, x.shape());
        }
        assertTrue(assertThrows(IOException.class, () -> Csv.readClassification(f, 0, false)).getMessage()
                .contains("needs at least 2 columns"));
        Files.writeString(f, "7,1\n");
        assertTrue(assertThrows(IOException.class, () -> Csv.readClassification(f, -1, false)).getMessage()
                .contains("target column -1 is not in 0..1"));
        Files.writeString(f, "1,2,0\n3,x,1\n");
        assertTrue(assertThrows(IOException.class, () -> Csv.readClassification(f, 2, false)).getMessage()
                .contains("line 2, column 1: 'x' is not a number"));
        Files.writeString(f, "1,2,0\n3,1\n");
        assertTrue(assertThrows(IOException.class, () -> Csv.readClassification(f, 2, false)).getMessage()
                .contains("line 2 has 2 columns"));
        Files.writeString(f, "1,NaN,0\n");
        assertTrue(assertThrows(IOException.class, () -> Csv.readClassification(f, 2, false)).getMessage()
                .contains("not a finite value"));
        Files.writeString(f, "1,2,0.5\n");
        assertTrue(assertThrows(IOException.class, () -> Csv.readClassification(f, 2, false)).getMessage()
                .contains("not an integer"));
        Files.writeString(f, "a,b\n");
        assertTrue(assertThrows(IOException.class, () -> Csv.readClassification(f, 1, true)).getMessage()
                .contains("no data rows"));
        // Before: MalformedInputException "Input length = 1", "Is a directory", or the bare path.
        Files.write(f, new byte[] {'1', ',', '0', '\n', '2', (byte) 0xe9, ',', '1', '\n'});
        assertEquals(f + ": line 2 is not valid UTF-8",
                assertThrows(IOException.class, () -> Csv.readClassification(f, 1, false)).getMessage());
        StringBuilder many = new StringBuilder();
        for (int i = 0; i < 5000; i++) {
            many.append(i).append(",1\n");
        }
        byte[] head = many.toString().getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        byte[] far = java.util.Arrays.copyOf(head, head.length + 4);
        far[head.length] = '7';
        far[head.length + 1] = (byte) 0xc3;  // a lead byte without its continuation
        far[head.length + 2] = ',';
        far[head.length + 3] = '1';
        Files.write(f, far);
        assertEquals(f + ": line 5001 is not valid UTF-8",
                assertThrows(IOException.class, () -> Csv.readClassification(f, 1, false)).getMessage());
        assertEquals(dir + " is a directory, not a CSV file",
                assertThrows(IOException.class, () -> Csv.readClassification(dir, 1, false)).getMessage());
        assertEquals(dir.resolve("none.csv") + ": no such file",
                assertThrows(IOException.class, () -> Csv.readRegression(dir.resolve("none.csv"), 1, false)).getMessage());
    }

    @Test
    void standardizerCentresAndScales() {
        try (Tensor x = Tensor.of(new float[] {1, 5, 3, 5, 5, 5}, 3, 2)) {
            Standardizer s = Standardizer.fit(x);
            assertArrayEquals(new double[] {3, 5}, s.means(), 1e-12);
            assertEquals(Math.sqrt(8.0 / 3), s.stds()[0], 1e-12);
            s.apply(x);
            float a = (float) (2 / Math.sqrt(8.0 / 3));
            assertArrayEquals(new float[] {-a, 0, 0, 0, a, 0}, x.toFloatArray(), 1e-6f);
            try (Tensor other = Tensor.of(new float[] {1, 2, 3}, 1, 3)) {
                assertThrows(IllegalArgumentException.class, () -> s.apply(other));
            }
            try (Tensor bad = Tensor.of(new float[] {1, 2, 3, Float.NaN}, 2, 2)) {
                assertEquals("fit: feature 1 of row 1 is NaN: the data must be finite (impute or drop that row)",
                        assertThrows(IllegalArgumentException.class, () -> Standardizer.fit(bad)).getMessage());
            }
        }
    }

    @Test
    void splitAndRowsCopyTheRightRows() {
        float[] x = new float[20];
        int[] y = new int[10];
        for (int i = 0; i < 10; i++) {
            x[2 * i] = i;
            x[2 * i + 1] = -i;
            y[i] = i % 3;
        }
        try (Dataset d = Dataset.classification(Tensor.of(x, 10, 2), Tensor.of(y, 10))) {
            Dataset[] parts = d.split(0.7, 1);
            try (Dataset a = parts[0]; Dataset b = parts[1]) {
                assertEquals(7, a.size());
                assertEquals(3, b.size());
                boolean[] seen = new boolean[10];
                for (Dataset p : parts) {
                    float[] f = p.features().toFloatArray();
                    int[] l = p.targets().toIntArray();
                    for (int i = 0; i < p.size(); i++) {
                        int row = (int) f[2 * i];
                        assertEquals(-row, f[2 * i + 1]);
                        assertEquals(row % 3, l[i]);
                        seen[row] = true;
                    }
                }
                for (boolean s : seen) {
                    assertTrue(s);
                }
            }
        }
    }
}
