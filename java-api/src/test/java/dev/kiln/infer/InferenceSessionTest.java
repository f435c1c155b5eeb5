package dev.kiln.infer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.Kiln;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.Activation;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Epilogue;
import dev.kiln.tensor.Ops;
import dev.kiln.tensor.Tensor;
import dev.kiln.tensor.TensorScope;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class InferenceSessionTest {
    private static Sequential mlp() {
        return Sequential.builder(40).dense(64, Init.HE, 1).relu().dense(32, Init.HE, 2).gelu().layerNorm(1e-5f)
                .dropout(0.1).dense(10, Init.XAVIER, 3).softmax().build();
    }

    /** The same forward pass through the op-by-op Java API. */
    private static float[] reference(Sequential model, Tensor x) {
        try (TensorScope scope = new TensorScope()) {
            Tensor cur = x;
            for (Sequential.Layer l : model.layers()) {
                long rows = x.size(0);
                switch (l.kind()) {
                    case DENSE: {
                        Tensor next = scope.zeros(DType.F32, rows, l.outFeatures());
                        Ops.matmul(cur, l.weight(), next, Epilogue.bias(l.bias()));
                        cur = next;
                        break;
                    }
                    case ACTIVATION: {
                        Tensor next = scope.zeros(DType.F32, rows, l.outFeatures());
                        Ops.unary(l.activation(), l.activationAlpha(), cur, next);
                        cur = next;
                        break;
                    }
                    case LAYER_NORM: {
                        Tensor next = scope.zeros(DType.F32, rows, l.outFeatures());
                        Ops.layerNorm(cur, l.gamma(), l.beta(), l.eps(), next);
                        cur = next;
                        break;
                    }
                    case SOFTMAX: {
                        Tensor next = scope.zeros(DType.F32, rows, l.outFeatures());
                        Ops.softmax(cur, next);
                        cur = next;
                        break;
                    }
                    default:
                        break;
                }
            }
            return cur.toFloatArray();
        }
    }

    @Test
    void forwardEqualsTheOpByOpComputationAtEveryBatch() {
        try (Sequential model = mlp(); InferenceSession s = model.compile(64)) {
            for (Sequential.Layer l : model.layers()) {
                if (l.kind() == Sequential.Layer.Kind.DENSE) {
                    l.bias().fillUniform(-0.5, 0.5, 9); // biases that matter (compiled into s2 below)
                }
            }
            assertEquals(40, s.inputFeatures());
            assertEquals(10, s.outputFeatures());
            try (InferenceSession s2 = model.compile(64)) {
                for (int batch : new int[] {1, 3, 17, 64}) {
                    try (Tensor x = Tensor.zeros(DType.F32, batch, 40).fillNormal(0, 1, batch);
                            Tensor y = Tensor.zeros(DType.F32, batch, 10)) {
                        s2.run(x, y);
                        float[] want = reference(model, x);
                        float[] got = y.toFloatArray();
                        for (int i = 0; i < want.length; i++) {
                            assertEquals(want[i], got[i], 1e-5 + 1e-5 * Math.abs(want[i]), "batch " + batch + " i " + i);
                        }
                    }
                }
            }
        }
    }

    @Test
    void theSessionKeepsItsOwnCopyOfTheWeights() {
        try (Sequential model = Sequential.builder(4).dense(3, Init.XAVIER, 5).build(); InferenceSession s = model.compile(2);
                Tensor x = Tensor.zeros(DType.F32, 2, 4).fill(1); Tensor y1 = Tensor.zeros(DType.F32, 2, 3);
                Tensor y2 = Tensor.zeros(DType.F32, 2, 3)) {
            s.run(x, y1);
            model.layers().get(0).weight().fill(0);
            s.run(x, y2);
            assertArrayEquals(y1.toFloatArray(), y2.toFloatArray());
        }
    }

    /**
     * The hot path allocates nothing: the calling thread's heap allocation, counted by the JVM,
     * over 10,000 runs after warm-up. (JMH's {@code -prof gc} counts every JVM thread, so its
     * B/op for long operations carries the harness's own background allocation.)
     */
    @Test
    void runAllocatesNothingInSteadyState() {
        var mx = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        try (Sequential model = mlp(); InferenceSession s = model.compile(32)) {
            for (int batch : new int[] {1, 32}) {
                try (Tensor x = Tensor.zeros(DType.F32, batch, 40).fillNormal(0, 1, batch);
                        Tensor y = Tensor.zeros(DType.F32, batch, 10)) {
                    for (int i = 0; i < 20_000; i++) {
                        s.run(x, y);
                    }
                    long tid = Thread.currentThread().getId();
                    long before = mx.getThreadAllocatedBytes(tid);
                    for (int i = 0; i < 10_000; i++) {
                        s.run(x, y);
                    }
                    long total = mx.getThreadAllocatedBytes(tid) - before;
                    assertEquals(0, total / 10_000, "bytes allocated per run at batch " + batch + " (total " + total + ")");
                }
            }
        }
    }

    /** The acceptance's concurrency check: 8 threads x 100,000 inferences on one plan, distinct inputs. */
    @Test
    void eightThreadsShareOneSessionAndGetTheSingleThreadedResults() throws Exception {
        int threads = 8, perThread = 100_000, distinct = 16;
        try (Sequential model = mlp(); InferenceSession s = model.compile(4)) {
            // Every (thread, input) pair is a different row; expected outputs come from one thread first.
            float[][][] inputs = new float[threads][distinct][];
            float[][][] expected = new float[threads][distinct][];
            try (Tensor x = Tensor.zeros(DType.F32, 1, 40); Tensor y = Tensor.zeros(DType.F32, 1, 10)) {
                for (int t = 0; t < threads; t++) {
                    for (int i = 0; i < distinct; i++) {
                        x.fillNormal(0, 1, 1000L * t + i);
                        s.run(x, y);
                        inputs[t][i] = x.toFloatArray();
                        expected[t][i] = y.toFloatArray();
                    }
                }
            }
            AtomicInteger mismatches = new AtomicInteger();
            java.util.concurrent.atomic.AtomicLong runs = new java.util.concurrent.atomic.AtomicLong();
            java.util.concurrent.CountDownLatch start = new java.util.concurrent.CountDownLatch(1);
            List<Thread> workers = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                final int id = t;
                Thread w = new Thread(() -> {
                    Tensor[] xs = new Tensor[distinct];
                    try (Tensor y = Tensor.zeros(DType.F32, 1, 10)) {
                        for (int i = 0; i < distinct; i++) {
                            xs[i] = Tensor.of(inputs[id][i], 1, 40);
                        }
                        float[] out = new float[10];
                        start.await();
                        for (int i = 0; i < perThread; i++) {
                            int k = i % distinct;
                            s.run(xs[k], y);
                            y.copyTo(out);
                            if (!java.util.Arrays.equals(out, expected[id][k])) {
                                mismatches.incrementAndGet();
                            }
                            runs.incrementAndGet();
                        }
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    } finally {
                        for (Tensor x : xs) {
                            if (x != null) {
                                x.close();
                            }
                        }
                    }
                });
                w.start();
                workers.add(w);
            }
            start.countDown();
            for (Thread w : workers) {
                w.join();
            }
            assertEquals((long) threads * perThread, runs.get());
            assertEquals(0, mismatches.get());
        }
    }

    @Test
    void parametersRoundTripThroughSafetensors(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        java.nio.file.Path file = dir.resolve("mlp.safetensors");
        try (Sequential a = mlp(); Sequential b = Sequential.builder(40).dense(64, Init.ZEROS, 0).relu().dense(32, Init.ZEROS, 0)
                .gelu().layerNorm(1e-5f).dropout(0.1).dense(10, Init.ZEROS, 0).softmax().build()) {
            dev.kiln.io.SafeTensors.write(file, a.parameters(), java.util.Map.of("model", "mlp"));
            try (dev.kiln.io.TensorSet saved = dev.kiln.io.SafeTensors.read(file)) {
                b.loadParameters(saved.tensors());
            }
            try (InferenceSession sa = a.compile(2); InferenceSession sb = b.compile(2);
                    Tensor x = Tensor.zeros(DType.F32, 2, 40).fillNormal(0, 1, 4); Tensor ya = Tensor.zeros(DType.F32, 2, 10);
                    Tensor yb = Tensor.zeros(DType.F32, 2, 10)) {
                sa.run(x, ya);
                sb.run(x, yb);
                assertArrayEquals(ya.toFloatArray(), yb.toFloatArray(), "the loaded model computes the same");
            }
            try (Sequential small = Sequential.builder(40).dense(8, Init.ZEROS, 0).build();
                    dev.kiln.io.TensorSet saved = dev.kiln.io.SafeTensors.read(file)) {
                assertEquals("loadParameters: '0.weight' is F32[40, 64] but the model needs F32[40, 8]",
                        assertThrows(IllegalArgumentException.class, () -> small.loadParameters(saved.tensors())).getMessage());
            }
        }
    }

    @Test
    void badInputIsRefusedClearly() {
        long before = dev.kiln.tensor.NativeMemory.settledBytesInUse();
        try (Sequential model = mlp()) {
            InferenceSession s = model.compile(8);
            try (Tensor x9 = Tensor.zeros(DType.F32, 9, 40); Tensor y9 = Tensor.zeros(DType.F32, 9, 10);
                    Tensor xWrong = Tensor.zeros(DType.F32, 2, 41); Tensor y2 = Tensor.zeros(DType.F32, 2, 10);
                    Tensor x2 = Tensor.zeros(DType.F32, 2, 40); Tensor xi = Tensor.zeros(DType.I32, 2, 40);
                    Tensor y3 = Tensor.zeros(DType.F32, 3, 10)) {
                assertEquals("run: batch 9 is above the compiled maximum 8: compile with a larger maxBatch or split the batch",
                        assertThrows(IllegalArgumentException.class, () -> s.run(x9, y9)).getMessage());
                assertEquals("run: input is [2, 41] but must be [batch, 40]",
                        assertThrows(IllegalArgumentException.class, () -> s.run(xWrong, y2)).getMessage());
                assertEquals("run: output is [3, 10] but must be [2, 10]",
                        assertThrows(IllegalArgumentException.class, () -> s.run(x2, y3)).getMessage());
                assertEquals("run: input has dtype I32; the model takes F32",
                        assertThrows(IllegalArgumentException.class, () -> s.run(xi, y2)).getMessage());
                // A one-layer model would read its input while writing the output over it.
                try (Sequential one = Sequential.builder(4).dense(4, Init.HE, 1).build();
                     InferenceSession s1 = one.compile(2); Tensor buf = Tensor.zeros(DType.F32, 12)) {
                    for (long[] at : new long[][] {{0, 0}, {0, 4}, {4, 0}}) {
                        Tensor in = buf.slice(0, at[0], at[0] + 8).reshape(2, 4);
                        Tensor out = buf.slice(0, at[1], at[1] + 8).reshape(2, 4);
                        assertEquals("run: output overlaps input: write to a separate tensor",
                                assertThrows(IllegalArgumentException.class, () -> s1.run(in, out)).getMessage());
                    }
                    s1.run(buf.slice(0, 0, 4).reshape(1, 4), buf.slice(0, 4, 8).reshape(1, 4)); // adjacent: fine
                }
                s.run(x2, y2);
                s.close();
                assertEquals("run: the session is closed", assertThrows(IllegalStateException.class, () -> s.run(x2, y2)).getMessage());
                x2.close();
                try (InferenceSession s2 = model.compile(8)) {
                    assertThrows(IllegalStateException.class, () -> s2.run(x2, y2));
                }
            }
            assertEquals("compile: maxBatch is 0: must be >= 1",
                    assertThrows(IllegalArgumentException.class, () -> model.compile(0)).getMessage());
            // Workspaces are allocated per thread at its first run: one that cannot be gets a message
            // naming the compiled maximum batch (2^31 rows of 2^20 floats: 8 PiB, refused at once).
            try (Sequential wide = Sequential.builder(4).dense(1 << 20, Init.HE, 1).relu().dense(1, Init.HE, 2).build();
                 InferenceSession huge = wide.compile(Integer.MAX_VALUE);
                 Tensor x1 = Tensor.zeros(DType.F32, 1, 4); Tensor y1 = Tensor.zeros(DType.F32, 1, 1)) {
                String msg = assertThrows(dev.kiln.KilnException.class, () -> huge.run(x1, y1)).getMessage();
                assertTrue(msg.startsWith("run: cannot allocate this thread's workspace of ")
                        && msg.contains("maximum batch 2147483647): compile with a smaller maxBatch"), msg);
            }
        }
        assertEquals(before, Kiln.memoryStats().bytesInUse(), "plans, workspaces and parameters all freed");
        assertThrows(IllegalStateException.class, () -> Sequential.builder(3).build());
        Activation unused = Activation.RELU;
        assertEquals(Activation.RELU, unused);
    }
}
