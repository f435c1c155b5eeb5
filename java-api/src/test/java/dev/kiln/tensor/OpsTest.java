package dev.kiln.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

/** Native ops against plain Java references, on contiguous, broadcast and strided operands. */
class OpsTest {
    private static final long SEED = 20261129L;

    private static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (r.nextDouble() * 4 - 2);
        }
        return v;
    }

    private static float ref(Ops.Binary op, float a, float b) {
        switch (op) {
            case ADD: return a + b;
            case SUB: return a - b;
            case MUL: return a * b;
            case DIV: return a / b;
            case MAX: return Math.max(a, b);
            default: return Math.min(a, b);
        }
    }

    @Test
    void everyBinaryOpMatchesJavaAtManySizes() {
        Random r = new Random(SEED);
        for (Ops.Binary op : Ops.Binary.values()) {
            for (int n : new int[] {0, 1, 3, 16, 17, 63, 64, 65, 1000, 100_003}) {
                float[] a = random(r, n);
                float[] b = random(r, n);
                try (Tensor ta = Tensor.of(a, n); Tensor tb = Tensor.of(b, n); Tensor out = Tensor.zeros(DType.F32, n)) {
                    Ops.binary(op, ta, tb, out);
                    float[] got = out.toFloatArray();
                    for (int i = 0; i < n; i++) {
                        assertEquals(ref(op, a[i], b[i]), got[i], "seed " + SEED + " " + op + " n=" + n + " i=" + i);
                    }
                }
            }
        }
    }

    @Test
    void broadcastingRowsColumnsScalarsAndLeadingDims() {
        Random r = new Random(SEED + 1);
        float[] m = random(r, 3 * 4);
        float[] row = random(r, 4);
        float[] col = random(r, 3);
        try (Tensor tm = Tensor.of(m, 3, 4); Tensor trow = Tensor.of(row, 4); Tensor tcol = Tensor.of(col, 3, 1);
                Tensor tscalar = Tensor.of(new float[] {2f}); Tensor out = Tensor.zeros(DType.F32, 3, 4)) {
            Ops.add(tm, trow, out);
            float[] got = out.toFloatArray();
            for (int i = 0; i < 3; i++) {
                for (int j = 0; j < 4; j++) {
                    assertEquals(m[i * 4 + j] + row[j], got[i * 4 + j]);
                }
            }
            Ops.sub(tcol, tm, out); // [3,1] - [3,4]
            got = out.toFloatArray();
            for (int i = 0; i < 3; i++) {
                for (int j = 0; j < 4; j++) {
                    assertEquals(col[i] - m[i * 4 + j], got[i * 4 + j]);
                }
            }
            Ops.mul(tscalar, tm, out);
            got = out.toFloatArray();
            for (int k = 0; k < 12; k++) {
                assertEquals(2f * m[k], got[k]);
            }
            try (Tensor outer = tcol.mul(trow)) { // [3,1] * [4] -> [3,4]
                assertArrayEquals(new long[] {3, 4}, outer.shape());
                assertEquals(col[2] * row[3], outer.getFloat(2, 3));
            }
        }
    }

    @Test
    void stridedViewsAsInputsAndOutputs() {
        Random r = new Random(SEED + 2);
        float[] a = random(r, 6 * 5);
        float[] b = random(r, 5 * 6);
        try (Tensor ta = Tensor.of(a, 6, 5); Tensor tb = Tensor.of(b, 5, 6); Tensor out = Tensor.zeros(DType.F32, 5, 6)) {
            Tensor at = ta.transpose(0, 1); // [5, 6], strided
            Ops.add(at, tb, out);
            for (int i = 0; i < 5; i++) {
                for (int j = 0; j < 6; j++) {
                    assertEquals(a[j * 5 + i] + b[i * 6 + j], out.getFloat(i, j));
                }
            }
            Tensor outT = out.transpose(0, 1); // write through a strided output
            Ops.scale(ta, 3f, outT);
            for (int i = 0; i < 6; i++) {
                for (int j = 0; j < 5; j++) {
                    assertEquals(3f * a[i * 5 + j], outT.getFloat(i, j));
                }
            }
            assertEquals(sumOf(a), at.sum(), 1e-4);
            assertEquals(sumOf(a) - sumOf(a, 0, 5), ta.slice(0, 1, 6).sum(), 1e-4);
        }
    }

    @Test
    void sumIsAccurateOverMillionsOfElements() {
        int n = 3_000_017;
        try (Tensor t = Tensor.zeros(DType.F32, n)) {
            t.fillUniform(0, 1, 5);
            float[] v = t.toFloatArray();
            double want = 0;
            for (float x : v) {
                want += x;
            }
            assertEquals(want, t.sum(), want * 1e-7);
        }
    }

    @Test
    void allocatingConveniencesReturnNewOwners() {
        try (Tensor a = Tensor.of(new float[] {1, 2, 3}, 3); Tensor s = a.scale(2f); Tensor sum = a.add(s)) {
            assertArrayEquals(new float[] {2, 4, 6}, s.toFloatArray());
            assertArrayEquals(new float[] {3, 6, 9}, sum.toFloatArray());
            assertTrue(!s.isView() && !sum.isView());
        }
    }

    @Test
    void nanPropagatesThroughMaxAndMin() {
        try (Tensor a = Tensor.of(new float[] {Float.NaN, 1f, 2f}, 3); Tensor b = Tensor.of(new float[] {0f, Float.NaN, 1f}, 3);
                Tensor out = Tensor.zeros(DType.F32, 3)) {
            Ops.binary(Ops.Binary.MAX, a, b, out);
            float[] got = out.toFloatArray();
            assertTrue(Float.isNaN(got[0]) && Float.isNaN(got[1]));
            assertEquals(2f, got[2]);
        }
    }

    private static double sumOf(float[] v) {
        return sumOf(v, 0, v.length);
    }

    private static double sumOf(float[] v, int from, int to) {
        double s = 0;
        for (int i = from; i < to; i++) {
            s += v[i];
        }
        return s;
    }
}
