package dev.kiln.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

/** Unary functions, softmax, layer norm, reductions, argmax and top-k from Java. */
class RowOpsTest {
    private static float[] random(Random r, int n, double scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) ((r.nextDouble() * 2 - 1) * scale);
        }
        return v;
    }

    @Test
    void unaryFunctionsMatchJavaMath() {
        Random r = new Random(3);
        float[] x = random(r, 1000, 6);
        try (Tensor t = Tensor.of(x, 10, 100); Tensor out = Tensor.zeros(DType.F32, 10, 100)) {
            Ops.unary(Activation.RELU, t, out);
            float[] y = out.toFloatArray();
            for (int i = 0; i < x.length; i++) {
                assertEquals(Math.max(0, x[i]), y[i]);
            }
            Ops.unary(Activation.SIGMOID, t, out);
            y = out.toFloatArray();
            for (int i = 0; i < x.length; i++) {
                assertEquals(1 / (1 + Math.exp(-x[i])), y[i], 2e-6);
            }
            Ops.unary(Activation.LEAKY_RELU, 0.1f, t, out);
            y = out.toFloatArray();
            for (int i = 0; i < x.length; i++) {
                assertEquals(x[i] < 0 ? 0.1f * x[i] : x[i], y[i], 1e-7);
            }
            Tensor tt = t.transpose(0, 1);
            try (Tensor o2 = Tensor.zeros(DType.F32, 100, 10)) {
                Ops.unary(Activation.TANH, tt, o2); // strided input
                assertEquals(Math.tanh(x[5 * 100 + 7]), o2.getFloat(7, 5), 2e-6);
            }
        }
    }

    @Test
    void softmaxAndLogSoftmaxRows() {
        Random r = new Random(4);
        float[] x = random(r, 6 * 50, 10);
        try (Tensor t = Tensor.of(x, 6, 50); Tensor s = Tensor.zeros(DType.F32, 6, 50); Tensor ls = Tensor.zeros(DType.F32, 6, 50)) {
            Ops.softmax(t, s);
            Ops.logSoftmax(t, ls);
            for (int row = 0; row < 6; row++) {
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (int c = 0; c < 50; c++) {
                    max = Math.max(max, x[row * 50 + c]);
                }
                for (int c = 0; c < 50; c++) {
                    sum += Math.exp(x[row * 50 + c] - max);
                }
                for (int c = 0; c < 50; c++) {
                    double p = Math.exp(x[row * 50 + c] - max) / sum;
                    assertEquals(p, s.getFloat(row, c), 2e-6 * p + 1e-12);
                    assertEquals(Math.log(p), ls.getFloat(row, c), 2e-5);
                }
            }
            Ops.softmax(t, t); // in place
            assertArrayEquals(s.toFloatArray(), t.toFloatArray());
        }
    }

    @Test
    void layerNormWithAffine() {
        Random r = new Random(5);
        float[] x = random(r, 4 * 30, 3);
        try (Tensor t = Tensor.of(x, 4, 30); Tensor g = Tensor.of(random(r, 30, 1), 30); Tensor b = Tensor.of(random(r, 30, 1), 30);
                Tensor out = Tensor.zeros(DType.F32, 4, 30)) {
            Ops.layerNorm(t, g, b, 1e-5f, out);
            for (int row = 0; row < 4; row++) {
                double m = 0, v = 0;
                for (int c = 0; c < 30; c++) {
                    m += x[row * 30 + c];
                }
                m /= 30;
                for (int c = 0; c < 30; c++) {
                    v += Math.pow(x[row * 30 + c] - m, 2);
                }
                v /= 30;
                for (int c = 0; c < 30; c++) {
                    double want = (x[row * 30 + c] - m) / Math.sqrt(v + 1e-5) * g.getFloat(c) + b.getFloat(c);
                    assertEquals(want, out.getFloat(row, c), 2e-5 * (Math.abs(want) + 1));
                }
            }
            assertEquals("layerNorm: eps is -1.0: must be finite and >= 0",
                    assertThrows(IllegalArgumentException.class, () -> Ops.layerNorm(t, null, null, -1f, out)).getMessage());
        }
    }

    @Test
    void reductionsAlongEveryAxis() {
        Random r = new Random(6);
        float[] x = random(r, 3 * 4 * 5, 2);
        try (Tensor t = Tensor.of(x, 3, 4, 5)) {
            for (int axis = 0; axis < 3; axis++) {
                long[] shape = new long[2];
                for (int i = 0, j = 0; i < 3; i++) {
                    if (i != axis) {
                        shape[j++] = t.size(i);
                    }
                }
                for (Ops.Reduction op : Ops.Reduction.values()) {
                    try (Tensor out = Tensor.zeros(DType.F32, shape)) {
                        Ops.reduce(op, t, axis, out);
                        for (long p = 0; p < shape[0]; p++) {
                            for (long q = 0; q < shape[1]; q++) {
                                double s = 0, mx = Double.NEGATIVE_INFINITY, mn = Double.POSITIVE_INFINITY;
                                for (long k = 0; k < t.size(axis); k++) {
                                    long[] idx = axis == 0 ? new long[] {k, p, q} : axis == 1 ? new long[] {p, k, q} : new long[] {p, q, k};
                                    double v = t.getFloat(idx);
                                    s += v;
                                    mx = Math.max(mx, v);
                                    mn = Math.min(mn, v);
                                }
                                double want = op == Ops.Reduction.SUM ? s : op == Ops.Reduction.MEAN ? s / t.size(axis)
                                        : op == Ops.Reduction.MAX ? mx : mn;
                                assertEquals(want, out.getFloat(p, q), 1e-5, op + " axis " + axis);
                            }
                        }
                    }
                }
            }
            try (Tensor out = Tensor.zeros(DType.F32, 3, 5)) {
                Ops.reduce(Ops.Reduction.SUM, t.permute(0, 2, 1), 2, out); // strided input
                assertEquals(x[0] + x[5] + x[10] + x[15], out.getFloat(0, 0), 1e-5);
                assertEquals("reduce sum: a [3, 4, 5] reduced along axis 2 is [3, 4] but out is [3, 5]",
                        assertThrows(IllegalArgumentException.class, () -> Ops.reduce(Ops.Reduction.SUM, t, 2, out)).getMessage());
            }
        }
    }

    @Test
    void argmaxAndTopk() {
        try (Tensor x = Tensor.of(new float[] {1, 5, 5, 2, -1, Float.NaN, 3, 0}, 2, 4); Tensor am = Tensor.zeros(DType.I32, 2);
                Tensor v = Tensor.zeros(DType.F32, 2, 2); Tensor idx = Tensor.zeros(DType.I32, 2, 2)) {
            Ops.argmax(x, am);
            assertArrayEquals(new int[] {1, 1}, am.toIntArray());
            Ops.topk(x, 2, v, idx);
            assertArrayEquals(new int[] {1, 2, 1, 2}, idx.toIntArray());
            assertEquals(5f, v.getFloat(0, 0));
            assertTrue(Float.isNaN(v.getFloat(1, 0)));
            assertEquals("topk: k is 5: must be in 1..4",
                    assertThrows(IllegalArgumentException.class, () -> Ops.topk(x, 5, v, idx)).getMessage());
            assertEquals("argmax: out has dtype F32; indices are I32",
                    assertThrows(IllegalArgumentException.class, () -> Ops.argmax(x, v)).getMessage());
            try (Tensor am3 = Tensor.zeros(DType.I32, 3); Tensor idx3 = Tensor.zeros(DType.I32, 2, 3);
                    Tensor v1 = Tensor.zeros(DType.F32, 2)) {
                assertEquals("argmax: out is [3] but must be a contiguous [2]",
                        assertThrows(IllegalArgumentException.class, () -> Ops.argmax(x, am3)).getMessage());
                assertEquals("argmax: out is [2, 2] but must be a contiguous [2]",
                        assertThrows(IllegalArgumentException.class, () -> Ops.argmax(x, idx)).getMessage());
                assertEquals("topk: indices is [2, 3] but must be a contiguous [2, 2]",
                        assertThrows(IllegalArgumentException.class, () -> Ops.topk(x, 2, v, idx3)).getMessage());
                assertEquals("topk: values is [2] but must be a contiguous [2, 2]",
                        assertThrows(IllegalArgumentException.class, () -> Ops.topk(x, 2, v1, idx)).getMessage());
            }
        }
    }

    @Test
    void argmaxAndTopkAllocateNothing() {
        try (Tensor x = Tensor.zeros(DType.F32, 8, 10).fillNormal(0, 1, 3); Tensor am = Tensor.zeros(DType.I32, 8);
                Tensor v = Tensor.zeros(DType.F32, 8, 3); Tensor idx = Tensor.zeros(DType.I32, 8, 3)) {
            var mx = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
            for (int i = 0; i < 20_000; i++) {
                Ops.argmax(x, am);
                Ops.topk(x, 3, v, idx);
            }
            long tid = Thread.currentThread().getId(), before = mx.getThreadAllocatedBytes(tid);
            for (int i = 0; i < 10_000; i++) {
                Ops.argmax(x, am);
                Ops.topk(x, 3, v, idx);
            }
            long total = mx.getThreadAllocatedBytes(tid) - before;
            assertEquals(0, total / 10_000, "bytes allocated per argmax + topk (total " + total + ")");
        }
    }
}
