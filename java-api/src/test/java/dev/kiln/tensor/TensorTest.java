package dev.kiln.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import org.junit.jupiter.api.Test;

class TensorTest {
    @Test
    void zerosHasShapeStridesAndZeroedMemory() {
        try (Tensor t = Tensor.zeros(DType.F32, 2, 3, 4)) {
            assertArrayEquals(new long[] {2, 3, 4}, t.shape());
            assertArrayEquals(new long[] {12, 4, 1}, t.strides());
            assertEquals(24, t.numel());
            assertEquals(96, t.byteSize());
            assertEquals(3, t.rank());
            assertEquals(4, t.size(-1));
            assertTrue(t.isContiguous());
            assertEquals(0, t.address() % 64, "native memory is 64-byte aligned");
            assertArrayEquals(new float[24], t.toFloatArray());
        }
    }

    @Test
    void scalarAndEmptyTensors() {
        try (Tensor s = Tensor.of(new float[] {4.5f}); Tensor e = Tensor.zeros(DType.F32, 3, 0)) {
            assertEquals(0, s.rank());
            assertEquals(1, s.numel());
            assertEquals(4.5f, s.getFloat());
            assertEquals(4.5, s.sum());
            assertEquals(0, e.numel());
            assertEquals(0.0, e.sum());
            assertArrayEquals(new float[0], e.toFloatArray());
        }
    }

    @Test
    void copiesRoundTripForEveryDtype() {
        float[] f = {1.5f, -2f, 3.25f, 0f, 7f, -8.5f};
        try (Tensor t = Tensor.of(f, 2, 3)) {
            assertArrayEquals(f, t.toFloatArray());
        }
        int[] ints = {1, -2, Integer.MAX_VALUE, Integer.MIN_VALUE};
        try (Tensor t = Tensor.of(ints, 4)) {
            assertArrayEquals(ints, t.toIntArray());
        }
        for (DType d : new DType[] {DType.BF16, DType.F16}) {
            short[] bits = {0x3f80, (short) 0xc000, 0x0001, 0x7f00};
            try (Tensor t = Tensor.zeros(d, 2, 2)) {
                t.copyFrom(bits);
                short[] back = new short[4];
                t.copyTo(back);
                assertArrayEquals(bits, back);
            }
        }
        for (DType d : new DType[] {DType.I8, DType.U8}) {
            byte[] bytes = {1, -1, 127, -128, 5};
            try (Tensor t = Tensor.zeros(d, 5)) {
                t.copyFrom(bytes);
                byte[] back = new byte[5];
                t.copyTo(back);
                assertArrayEquals(bytes, back);
            }
        }
        try (Tensor t = Tensor.zeros(DType.I4, 5)) {
            assertEquals(3, t.byteSize(), "5 packed nibbles take 3 bytes");
            byte[] packed = {0x21, (byte) 0xf3, 0x07};
            t.copyFrom(packed);
            byte[] back = new byte[3];
            t.copyTo(back);
            assertArrayEquals(packed, back);
        }
    }

    @Test
    void fillSetsEveryElementForEveryDtype() {
        try (Tensor t = Tensor.zeros(DType.F32, 3, 5)) {
            t.fill(2.5);
            float[] want = new float[15];
            Arrays.fill(want, 2.5f);
            assertArrayEquals(want, t.toFloatArray());
        }
        try (Tensor t = Tensor.zeros(DType.I32, 4)) {
            t.fill(-7);
            assertArrayEquals(new int[] {-7, -7, -7, -7}, t.toIntArray());
        }
        try (Tensor t = Tensor.zeros(DType.BF16, 3)) {
            t.fill(1.0);
            short[] bits = new short[3];
            t.copyTo(bits);
            assertArrayEquals(new short[] {0x3f80, 0x3f80, 0x3f80}, bits);
        }
        try (Tensor t = Tensor.zeros(DType.F16, 2)) {
            t.fill(-2.0);
            short[] bits = new short[2];
            t.copyTo(bits);
            assertArrayEquals(new short[] {(short) 0xc000, (short) 0xc000}, bits);
        }
        try (Tensor t = Tensor.zeros(DType.U8, 3)) {
            t.fill(200);
            byte[] b = new byte[3];
            t.copyTo(b);
            assertArrayEquals(new byte[] {(byte) 200, (byte) 200, (byte) 200}, b);
        }
        try (Tensor t = Tensor.zeros(DType.I4, 4)) {
            t.fill(-3);
            byte[] b = new byte[2];
            t.copyTo(b);
            assertArrayEquals(new byte[] {(byte) 0xdd, (byte) 0xdd}, b);
        }
    }

    @Test
    void randomFillsAreSeededAndReproducible() {
        try (Tensor a = Tensor.zeros(DType.F32, 1000); Tensor b = Tensor.zeros(DType.F32, 1000);
                Tensor c = Tensor.zeros(DType.F32, 1000)) {
            a.fillNormal(0, 1, 42);
            b.fillNormal(0, 1, 42);
            c.fillNormal(0, 1, 43);
            assertArrayEquals(a.toFloatArray(), b.toFloatArray());
            assertFalse(Arrays.equals(a.toFloatArray(), c.toFloatArray()));
            a.fillUniform(-1, 1, 7);
            for (float v : a.toFloatArray()) {
                assertTrue(v >= -1f && v < 1f, "uniform value " + v);
            }
            assertEquals(0.0, a.sum() / 1000, 0.1);
        }
    }

    @Test
    void randomFillOfAViewMatchesTheSameLogicalElements() {
        // Element i of the logical order gets the same value whatever the layout.
        try (Tensor big = Tensor.zeros(DType.F32, 4, 6); Tensor small = Tensor.zeros(DType.F32, 6, 2)) {
            Tensor strided = big.transpose(0, 1).slice(1, 0, 2); // [6, 2] strided view
            strided.fillNormal(1, 2, 9);
            small.fillNormal(1, 2, 9);
            assertArrayEquals(small.toFloatArray(), strided.toFloatArray());
        }
    }

    @Test
    void viewsShareMemoryWithoutCopies() {
        float[] data = new float[12];
        for (int i = 0; i < 12; i++) {
            data[i] = i;
        }
        try (Tensor t = Tensor.of(data, 3, 4)) {
            Tensor r = t.reshape(2, -1);
            assertArrayEquals(new long[] {2, 6}, r.shape());
            assertEquals(t.address(), r.address());
            Tensor col = t.slice(1, 1, 3); // [3, 2]
            assertArrayEquals(new float[] {1, 2, 5, 6, 9, 10}, col.toFloatArray());
            assertFalse(col.isContiguous());
            Tensor tt = t.transpose(0, 1); // [4, 3]
            assertEquals(4f, tt.getFloat(0, 1));
            assertArrayEquals(new float[] {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}, tt.toFloatArray());
            tt.setFloat(100f, 3, 2); // element [2, 3] of t
            assertEquals(100f, t.getFloat(2, 3));
            col.copyFrom(new float[] {-1, -2, -3, -4, -5, -6});
            assertArrayEquals(new float[] {0, -1, -2, 3, 4, -3, -4, 7, 8, -5, -6, 100}, t.toFloatArray());
            Tensor p = t.reshape(2, 2, 3).permute(2, 0, 1);
            assertArrayEquals(new long[] {3, 2, 2}, p.shape());
            assertArrayEquals(new long[] {1, 6, 3}, p.strides());
            Tensor c = tt.copy();
            assertTrue(c.isContiguous());
            assertNotEquals(t.address(), c.address());
            assertArrayEquals(tt.toFloatArray(), c.toFloatArray());
            c.close();
        }
    }

    @Test
    void conversionsToBf16AndF16AndBack() {
        float[] f = {1f, -2.5f, 0.1f, 65504f, 1e-8f};
        try (Tensor t = Tensor.of(f, 5); Tensor h = t.to(DType.F16); Tensor b = t.to(DType.BF16);
                Tensor hf = h.to(DType.F32); Tensor bf = b.to(DType.F32)) {
            float[] hv = hf.toFloatArray();
            float[] bv = bf.toFloatArray();
            for (int i = 0; i < f.length; i++) {
                assertEquals(f[i], bv[i], Math.abs(f[i]) / 128, "bf16 keeps 8 significant bits");
                if (Math.abs(f[i]) > 6e-5) {
                    assertEquals(f[i], hv[i], Math.abs(f[i]) / 1024, "f16 keeps 11 significant bits");
                }
            }
            assertEquals(65504f, hv[3]);
        }
    }

    @Test
    void metaTensorsHaveShapeButNoMemory() {
        long before = NativeMemory.settledBytesInUse();
        try (Tensor m = Tensor.meta(DType.F32, 1L << 40, 1L << 10)) {
            assertEquals(Device.META, m.device());
            assertEquals(1L << 50, m.numel());
            Tensor v = m.slice(0, 0, 10).transpose(0, 1);
            assertArrayEquals(new long[] {1L << 10, 10}, v.shape());
            assertEquals(before, dev.kiln.Kiln.memoryStats().bytesInUse());
        }
    }
}
