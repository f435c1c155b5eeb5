package dev.kiln.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Random;
import org.junit.jupiter.api.Test;

/** Matrix products from Java against a double-precision reference: views, epilogues, packed weights. */
class MatmulTest {
    private static final long SEED = 7L;

    private static Tensor random(Random r, long rows, long cols) {
        float[] v = new float[(int) (rows * cols)];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (r.nextDouble() * 2 - 1);
        }
        return Tensor.of(v, rows, cols);
    }

    private static double act(Activation f, double x) {
        double a = f.defaultAlpha(), sp = x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
        switch (f) {
            case RELU: return Math.max(0, x);
            case LEAKY_RELU: return x < 0 ? a * x : x;
            case SIGMOID: return 1 / (1 + Math.exp(-x));
            case TANH: return Math.tanh(x);
            case GELU: return 0.5 * x * (1 + erf(x / Math.sqrt(2)));
            case GELU_TANH: return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
            case SILU: return x / (1 + Math.exp(-x));
            case ELU: return x > 0 ? x : a * Math.expm1(x);
            case SOFTPLUS: return sp;
            case SELU: return 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * Math.expm1(x));
            case MISH: return x * Math.tanh(sp);
            case BOUNDED_RELU: case HARDTANH: return Math.min(Math.max(x, f == Activation.HARDTANH ? -a : 0), a);
            case HARD_SIGMOID: return Math.min(Math.max(a * x + 0.5, 0), 1);
            case HARD_SWISH: return x * Math.min(Math.max(x + 3, 0), 6) / 6;
            default: return x;
        }
    }

    /** erf to 1e-9 (Abramowitz-Stegun 7.1.26 is too coarse here): a series, then a continued fraction. */
    private static double erf(double x) {
        double ax = Math.abs(x);
        if (ax < 2.5) {
            double sum = 0, term = ax;
            for (int n = 0; n < 60; n++) {
                sum += term / (2 * n + 1);
                term *= -ax * ax / (n + 1);
            }
            return Math.signum(x) * 2 / Math.sqrt(Math.PI) * sum;
        }
        double f = 0;
        for (int n = 60; n >= 1; n--) {
            f = n / 2.0 / (ax + f);
        }
        return Math.signum(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f));
    }

    /** Checks out == act(a·b + bias) + residual elementwise. */
    private static void check(Tensor a, Tensor b, Tensor out, Tensor bias, Activation f, Tensor residual) {
        long m = a.size(0), k = a.size(1), n = b.size(1);
        for (long i = 0; i < m; i++) {
            for (long j = 0; j < n; j++) {
                double s = 0, mag = 0;
                for (long p = 0; p < k; p++) {
                    double prod = (double) a.getFloat(i, p) * b.getFloat(p, j);
                    s += prod;
                    mag += Math.abs(prod);
                }
                if (bias != null) {
                    s += bias.getFloat(j);
                }
                s = act(f, s);
                if (residual != null) {
                    s += residual.getFloat(i, j);
                }
                double tol = (k + 2) * 1.2e-7 * (mag + 1) + 4e-6 * Math.abs(s) + 1e-6;
                assertEquals(s, out.getFloat(i, j), tol, "seed " + SEED + " at [" + i + ", " + j + "]");
            }
        }
    }

    @Test
    void plainAndTransposedViewsMatchTheReference() {
        Random r = new Random(SEED);
        int[][] shapes = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 100, 48}, {1, 784, 70}};
        for (int[] s : shapes) {
            int m = s[0], k = s[1], n = s[2];
            try (Tensor a = random(r, m, k); Tensor b = random(r, k, n); Tensor at = random(r, k, m);
                    Tensor bt = random(r, n, k); Tensor out = Tensor.zeros(DType.F32, m, n)) {
                Ops.matmul(a, b, out);
                check(a, b, out, null, Activation.IDENTITY, null);
                Tensor atv = at.transpose(0, 1); // [m, k] view of a K x M matrix: no copy
                Tensor btv = bt.transpose(0, 1);
                Ops.matmul(atv, btv, out);
                check(atv, btv, out, null, Activation.IDENTITY, null);
                Ops.matmul(a, btv, out);
                check(a, btv, out, null, Activation.IDENTITY, null);
            }
        }
    }

    @Test
    void stridedSlicesAndAlphaBeta() {
        Random r = new Random(SEED + 1);
        try (Tensor big = random(r, 40, 50); Tensor b = random(r, 20, 30); Tensor out = Tensor.zeros(DType.F32, 10, 30)) {
            Tensor a = big.slice(0, 5, 15).slice(1, 3, 23); // [10, 20], leading dimension 50
            out.fill(1);
            Ops.gemm(2f, a, b, 0.5f, out, Epilogue.NONE);
            for (long i = 0; i < 10; i++) {
                for (long j = 0; j < 30; j++) {
                    double s = 0;
                    for (long p = 0; p < 20; p++) {
                        s += (double) a.getFloat(i, p) * b.getFloat(p, j);
                    }
                    assertEquals(2 * s + 0.5, out.getFloat(i, j), 1e-4);
                }
            }
            Tensor everyOther = big.slice(1, 0, 50).permute(1, 0).slice(0, 0, 20).transpose(0, 1).slice(1, 0, 20);
            assertEquals(2, everyOther.rank());
        }
    }

    @Test
    void fusedEpilogueAndPackedWeights() {
        Random r = new Random(SEED + 2);
        for (Activation f : new Activation[] {Activation.IDENTITY, Activation.RELU, Activation.LEAKY_RELU, Activation.SIGMOID,
                Activation.TANH, Activation.GELU, Activation.GELU_TANH, Activation.SILU, Activation.ELU, Activation.SOFTPLUS,
                Activation.SELU, Activation.MISH, Activation.BOUNDED_RELU, Activation.HARDTANH, Activation.HARD_SIGMOID,
                Activation.HARD_SWISH}) {
            try (Tensor a = random(r, 9, 40); Tensor b = random(r, 40, 70); Tensor bias = random(r, 1, 70);
                    Tensor res = random(r, 9, 70); Tensor out = Tensor.zeros(DType.F32, 9, 70);
                    PackedMatrix pb = PackedMatrix.pack(b)) {
                Tensor biasVec = bias.reshape(70);
                Epilogue ep = Epilogue.bias(biasVec).withActivation(f).withResidual(res);
                Ops.matmul(a, b, out, ep);
                check(a, b, out, biasVec, f, res);
                out.fill(0);
                Ops.matmul(a, pb, out, ep);
                check(a, b, out, biasVec, f, res);
                Ops.matmul(a, pb, out, Epilogue.activation(f));
                check(a, b, out, null, f, null);
            }
        }
    }

    @Test
    void packingATransposedViewEqualsPackingItsCopy() {
        Random r = new Random(SEED + 3);
        try (Tensor bt = random(r, 30, 20); Tensor a = random(r, 4, 20); Tensor o1 = Tensor.zeros(DType.F32, 4, 30);
                Tensor o2 = Tensor.zeros(DType.F32, 4, 30); Tensor copy = bt.transpose(0, 1).copy();
                PackedMatrix p1 = PackedMatrix.pack(bt.transpose(0, 1)); PackedMatrix p2 = PackedMatrix.pack(copy)) {
            Ops.matmul(a, p1, o1, Epilogue.NONE);
            Ops.matmul(a, p2, o2); // no epilogue
            assertEquals(java.util.Arrays.toString(o1.toFloatArray()), java.util.Arrays.toString(o2.toFloatArray()));
            assertEquals(20, p1.rows());
            assertEquals(30, p1.columns());
        }
    }

    @Test
    void bf16ProductsAccumulateInF32() {
        Random r = new Random(SEED + 4);
        try (Tensor a32 = random(r, 13, 77); Tensor b32 = random(r, 77, 40); Tensor a = a32.to(DType.BF16);
                Tensor b = b32.to(DType.BF16); Tensor aBack = a.to(DType.F32); Tensor bBack = b.to(DType.F32);
                Tensor out = Tensor.zeros(DType.F32, 13, 40); PackedMatrix pb = PackedMatrix.pack(b)) {
            Ops.matmul(a, b, out);
            check(aBack, bBack, out, null, Activation.IDENTITY, null); // exact products of the bf16 values
            out.fill(0);
            Ops.matmul(a, pb, out, Epilogue.NONE);
            check(aBack, bBack, out, null, Activation.IDENTITY, null);
            assertEquals(DType.BF16, pb.dtype());
            assertEquals("matmul: a is BF16 and b is F32: a product takes two F32 or two BF16 matrices (output F32)",
                    assertThrows(IllegalArgumentException.class, () -> Ops.matmul(a, b32, out)).getMessage());
            assertEquals("matmul: a has dtype F32 but b was packed from BF16: they must match (F32 or BF16)",
                    assertThrows(IllegalArgumentException.class, () -> Ops.matmul(a32, pb, out, Epilogue.NONE)).getMessage());
        }
    }

    @Test
    void misuseIsRefusedClearly() {
        try (Tensor a = Tensor.zeros(DType.F32, 3, 4); Tensor b = Tensor.zeros(DType.F32, 5, 6);
                Tensor out = Tensor.zeros(DType.F32, 3, 6); Tensor v = Tensor.zeros(DType.F32, 4)) {
            assertEquals("matmul: a is [3, 4] but b is [5, 6]: inner dimensions 4 and 5 differ",
                    assertThrows(IllegalArgumentException.class, () -> Ops.matmul(a, b, out)).getMessage());
            assertEquals("matmul: b is [4]: a matrix must be 2-D",
                    assertThrows(IllegalArgumentException.class, () -> Ops.matmul(a, v, out)).getMessage());
            try (Tensor b2 = Tensor.zeros(DType.F32, 4, 6); Tensor wrongBias = Tensor.zeros(DType.F32, 5);
                    Tensor b45 = Tensor.zeros(DType.F32, 4, 5); Tensor o63 = Tensor.zeros(DType.F32, 6, 3)) {
                assertEquals("matmul: out is [3, 6] but must be [3, 5]", assertThrows(IllegalArgumentException.class,
                        () -> Ops.matmul(a, b45, out)).getMessage());
                assertEquals("matmul: bias is [5]: it must be a contiguous vector of 6 elements",
                        assertThrows(IllegalArgumentException.class,
                                () -> Ops.matmul(a, b2, out, Epilogue.bias(wrongBias))).getMessage());
                assertEquals("matmul: out has strides [1, 3]: it must be row-major with unit column stride",
                        assertThrows(IllegalArgumentException.class,
                                () -> Ops.matmul(a, b2, o63.transpose(0, 1))).getMessage());
                PackedMatrix p = PackedMatrix.pack(b2);
                p.close();
                assertEquals("matmul: PackedMatrix[4 x 6 closed] is closed", assertThrows(IllegalStateException.class,
                        () -> Ops.matmul(a, p, out, Epilogue.NONE)).getMessage());
            }
            try (Tensor sq = Tensor.zeros(DType.F32, 4, 4)) {
                assertEquals("matmul: out overlaps a: write to a separate tensor",
                        assertThrows(IllegalArgumentException.class, () -> Ops.matmul(sq, sq, sq)).getMessage());
            }
        }
    }
}
