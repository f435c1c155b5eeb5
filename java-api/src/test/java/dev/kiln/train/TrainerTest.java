package dev.kiln.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.data.Dataset;
import dev.kiln.metrics.EpochMetrics;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TrainerTest {
    /** Three Gaussian blobs in 8 dimensions: learnable to ~100%. */
    static Dataset blobs(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[n * 8];
        int[] y = new int[n];
        for (int i = 0; i < n; i++) {
            y[i] = r.nextInt(3);
            for (int j = 0; j < 8; j++) {
                x[i * 8 + j] = (float) (r.nextGaussian() * 0.7 + (j % 3 == y[i] ? 2.0 : 0.0));
            }
        }
        return Dataset.classification(Tensor.of(x, n, 8), Tensor.of(y, n), 3);
    }

    static Sequential mlp(double dropout) {
        return Sequential.builder(8).dense(16, Init.HE, 1).relu().dropout(dropout).dense(3, Init.XAVIER, 2).softmax().build();
    }

    static volatile float smallestNormal = Float.MIN_NORMAL;

    @Test
    void theUpdatesSubnormalFlushLeavesTheJavaThreadsArithmeticAlone() {
        // The native update runs with subnormals as zero (MXCSR DAZ|FTZ) and must give the calling
        // thread its mode back: Java's float arithmetic keeps its subnormals after a fit.
        try (Dataset train = blobs(200, 4); Sequential model = mlp(0.0);
             Trainer t = Trainer.builder(model).optimizer(Optimizer.adam(1e-2)).batchSize(32).seed(3).build()) {
            t.fit(train, null, 2);
            float half = smallestNormal / 2;
            assertEquals(Float.MIN_NORMAL / 2, half);
            assertTrue(half != 0f && half < Float.MIN_NORMAL, "a subnormal: " + half);
            assertEquals(Float.MIN_VALUE, smallestNormal * 0x1p-23f);
        }
    }

    @Test
    void learnsAndWritesTheWeightsBackIntoTheModel() {
        try (Dataset train = blobs(600, 1); Dataset test = blobs(300, 2); Sequential model = mlp(0.1)) {
            float[] before = model.layers().get(0).weight().toFloatArray();
            List<EpochMetrics> seen = new ArrayList<>();
            History h;
            try (Trainer t = Trainer.builder(model).optimizer(Optimizer.adam(1e-2)).batchSize(32).seed(3)
                    .listener(seen::add).build()) {
                h = t.fit(train, test, 8);
                Evaluation e = t.evaluate(test);
                assertTrue(e.accuracy() > 0.95, "test accuracy " + e.accuracy());
                assertEquals(e.loss(), h.last().validationLoss(), 1e-12);
                assertEquals(8 * 19, t.steps()); // ceil(600 / 32) = 19 steps per epoch
            }
            assertEquals(8, h.epochs().size());
            assertEquals(h.epochs(), seen);
            assertTrue(h.last().loss() < h.epochs().get(0).loss());
            assertFalse(java.util.Arrays.equals(before, model.layers().get(0).weight().toFloatArray()));
            // The model (with its softmax) now classifies: its compiled session agrees with the trainer.
            try (var session = model.compile(300); Tensor out = Tensor.zeros(DType.F32, 300, 3);
                 Tensor idx = Tensor.zeros(DType.I32, 300)) {
                session.run(test.features(), out);
                dev.kiln.tensor.Ops.argmax(out, idx);
                int[] pred = idx.toIntArray(), truth = test.targets().toIntArray();
                int hits = 0;
                for (int i = 0; i < pred.length; i++) {
                    hits += pred[i] == truth[i] ? 1 : 0;
                }
                assertEquals(h.last().validationAccuracy(), hits / 300.0, 1e-9);
            }
        }
    }

    private static List<Double> run(Path ckpt, long every, int epochs, Path resumeFrom) throws IOException {
        List<Double> losses = new ArrayList<>();
        try (Dataset train = blobs(200, 5); Sequential model = mlp(0.2)) {
            Trainer.Builder b = Trainer.builder(model).optimizer(Optimizer.adam(5e-3)).batchSize(16).seed(9)
                    .schedule(Schedule.cosine(5, 60, 0.1))
                    .progress((ep, eps, batch, batches, step, loss, sec) -> losses.add(loss));
            if (ckpt != null) {
                b.checkpointEvery(every, ckpt);
            }
            try (Trainer t = b.build()) {
                if (resumeFrom != null) {
                    t.resume(resumeFrom);
                }
                t.fit(train, null, epochs);
            }
        }
        return losses;
    }

    @Test
    void resumedRunRepeatsTheUninterruptedLossSequence(@TempDir Path dir) throws IOException {
        List<Double> straight = run(null, 0, 4, null); // 13 steps per epoch, 52 in all
        Path ckpt = dir.resolve("run.ckpt");
        List<Double> firstPart = run(ckpt, 20, 2, null); // checkpoint at step 20: epoch 2, batch 7
        assertEquals(straight.subList(0, 26), firstPart);
        List<Double> rest = run(null, 0, 4, ckpt);
        assertEquals(straight.subList(20, 52), rest);
    }

    @Test
    void earlyStoppingRestoresTheBestWeights() {
        try (Dataset train = blobs(300, 1); Dataset val = blobs(100, 2); Sequential model = mlp(0)) {
            // A learning rate far too high: the validation loss jumps around and stops improving.
            try (Trainer t = Trainer.builder(model).optimizer(Optimizer.sgd(0.5).withMomentum(0.9, false)).batchSize(10)
                    .seed(1).earlyStopping(2, true).build()) {
                History h = t.fit(train, val, 40);
                assertTrue(h.stoppedEarly());
                double best = h.epochs().stream().mapToDouble(EpochMetrics::validationLoss).min().orElseThrow();
                assertEquals(best, h.epochs().get(h.bestEpoch() - 1).validationLoss());
                assertEquals(best, t.evaluate(val).loss(), 1e-9);
            }
        }
    }

    @Test
    void theNewerActivationsTrainToo() { // (their gradients are checked in native/tests/test_train.cpp)
        for (dev.kiln.tensor.Activation a : new dev.kiln.tensor.Activation[] {dev.kiln.tensor.Activation.SILU,
                dev.kiln.tensor.Activation.ELU, dev.kiln.tensor.Activation.SOFTPLUS, dev.kiln.tensor.Activation.SELU,
                dev.kiln.tensor.Activation.MISH, dev.kiln.tensor.Activation.BOUNDED_RELU, dev.kiln.tensor.Activation.HARDTANH,
                dev.kiln.tensor.Activation.HARD_SIGMOID, dev.kiln.tensor.Activation.HARD_SWISH}) {
            float alpha = a == dev.kiln.tensor.Activation.HARD_SIGMOID ? 1f / 6f : 1f;
            try (Dataset train = blobs(600, 1); Dataset test = blobs(300, 2);
                    Sequential model = Sequential.builder(8).dense(16, Init.HE, 1).activation(a, alpha).dense(3, Init.XAVIER, 2)
                            .softmax().build();
                    Trainer t = Trainer.builder(model).optimizer(Optimizer.adam(1e-2)).batchSize(32).seed(3).build()) {
                History h = t.fit(train, test, 6);
                assertTrue(h.last().loss() < h.epochs().get(0).loss(), a + " " + h.epochs());
                assertTrue(t.evaluate(test).accuracy() > 0.95, a + " test accuracy " + t.evaluate(test).accuracy());
            }
        }
    }

    @Test
    void regressionLossesTrainToo() {
        SplittableRandom r = new SplittableRandom(4);
        int n = 256;
        float[] x = new float[n * 3], y = new float[n];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < 3; j++) {
                x[i * 3 + j] = (float) r.nextGaussian();
            }
            y[i] = 2 * x[i * 3] - x[i * 3 + 1] + 0.5f;
        }
        for (Loss loss : new Loss[] {Loss.mse(), Loss.huber(1f)}) {
            try (Dataset d = Dataset.regression(Tensor.of(x, n, 3), Tensor.of(y, n, 1));
                 Sequential model = Sequential.builder(3).dense(1, Init.XAVIER, 1).build();
                 Trainer t = Trainer.builder(model).loss(loss).optimizer(Optimizer.sgd(0.05)).batchSize(16).build()) {
                t.fit(d, null, 30);
                assertTrue(t.evaluate(d).loss() < 1e-3, loss + " " + t.evaluate(d).loss());
                float[] w = model.layers().get(0).weight().toFloatArray();
                assertArrayEquals(new float[] {2, -1, 0}, w, 0.02f);
            }
        }
    }

    @Test
    void badInputGetsClearExceptions() {
        try (Sequential model = mlp(0); Trainer t = Trainer.builder(model).batchSize(8).build()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Dataset.classification(Tensor.of(new float[] {1, Float.NaN}, 1, 2), Tensor.of(new int[] {0}, 1)));
            assertTrue(e.getMessage().contains("feature 1 of row 0 is NaN"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> Dataset.classification(Tensor.zeros(DType.F32, 0, 8), Tensor.zeros(DType.I32, 0)));
            assertTrue(e.getMessage().contains("empty"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> Dataset.classification(Tensor.zeros(DType.F32, 2, 8), Tensor.of(new int[] {0, 5}, 2), 3));
            assertTrue(e.getMessage().contains("label of row 1 is 5"), e.getMessage());
            try (Dataset wrongWidth = Dataset.classification(Tensor.zeros(DType.F32, 4, 7), Tensor.zeros(DType.I32, 4));
                 Dataset tooManyClasses = Dataset.classification(Tensor.zeros(DType.F32, 4, 8), Tensor.of(new int[] {0, 1, 2, 3}, 4))) {
                e = assertThrows(IllegalArgumentException.class, () -> t.fit(wrongWidth, null, 1));
                assertTrue(e.getMessage().contains("7 features but the model takes 8"), e.getMessage());
                e = assertThrows(IllegalArgumentException.class, () -> t.fit(tooManyClasses, null, 1));
                assertTrue(e.getMessage().contains("labels up to 3 but the model has 3 outputs"), e.getMessage());
                try (Tensor x = Tensor.zeros(DType.F32, 2, 8); Tensor y = Tensor.of(new int[] {0, 3}, 2)) {
                    e = assertThrows(IllegalArgumentException.class, () -> t.trainBatch(x, y, null));
                    assertTrue(e.getMessage().contains("label of row 1 is 3"), e.getMessage());
                }
            }
            // Before: every weight 0 gave a loss of 0 at every step, nothing learned, no error.
            try (Dataset zeroWeights = Dataset.classification(Tensor.zeros(DType.F32, 4, 8), Tensor.zeros(DType.I32, 4))) {
                zeroWeights.withSampleWeights(Tensor.zeros(DType.F32, 4));
                e = assertThrows(IllegalArgumentException.class, () -> t.fit(zeroWeights, null, 1));
                assertEquals("train: every sample weight is 0: nothing would be learned", e.getMessage());
            }
        }
        assertEquals("class weights [0.0, 0.0, 0.0]: at least one must be > 0", assertThrows(IllegalArgumentException.class,
                () -> dev.kiln.train.Loss.softmaxCrossEntropy(new float[] {0, 0, 0})).getMessage());
        assertThrows(IllegalArgumentException.class, () -> Trainer.builder(mlp(0)).batchSize(0));
    }

    @Test
    void divergingRunNamesTheStepAndKeepsTheLastCheckpoint(@TempDir Path dir) throws IOException {
        Path ckpt = dir.resolve("c.ckpt");
        SplittableRandom r = new SplittableRandom(1);
        float[] x = new float[64 * 2], y = new float[64];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        // Plain SGD at learning rate 10 on least squares: each step multiplies the error by ~ -20.
        try (Sequential model = Sequential.builder(2).dense(1, Init.XAVIER, 1).build()) {
            try (Dataset bad = Dataset.regression(Tensor.of(x, 64, 2), Tensor.of(y, 64, 1));
                 Trainer t = Trainer.builder(model).loss(Loss.mse()).optimizer(Optimizer.sgd(10)).batchSize(4).seed(2)
                         .checkpointEvery(1, ckpt).build()) {
                TrainingDivergedException e = assertThrows(TrainingDivergedException.class, () -> t.fit(bad, null, 50));
                assertTrue(e.getMessage().contains("diverged at step " + e.step()), e.getMessage());
                assertTrue(e.step() > 3, e.getMessage());
                assertEquals(e.step(), t.steps()); // the failing step did not count or update
                byte[] good = Files.readAllBytes(ckpt);
                try (Trainer again = Trainer.builder(model).loss(Loss.mse()).optimizer(Optimizer.sgd(10)).batchSize(4)
                        .seed(2).build()) {
                    again.resume(ckpt);
                    assertEquals(e.step(), again.steps());
                }
                good[good.length / 2] ^= 1;
                Files.write(ckpt, good);
                try (Trainer again = Trainer.builder(model).loss(Loss.mse()).optimizer(Optimizer.sgd(10)).batchSize(4)
                        .seed(2).build()) {
                    IOException io = assertThrows(IOException.class, () -> again.resume(ckpt));
                    assertTrue(io.getMessage().contains("corrupt"), io.getMessage());
                }
            }
        }
    }

    @Test
    void stepsAllocateNothingInSteadyState() {
        var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        try (Dataset d = blobs(64, 1); Sequential model = mlp(0.1);
             Trainer t = Trainer.builder(model).batchSize(64).build()) {
            for (int i = 0; i < 2000; i++) {
                t.trainBatch(d.features(), d.targets(), null);
            }
            // The quietest of up to 5 windows: a one-off event (a JIT recompilation in the middle of
            // the suite's fork) can allocate in one window; an allocation in the step shows in all.
            long tid = Thread.currentThread().getId();
            long best = Long.MAX_VALUE;
            for (int w = 0; w < 5 && best > 0; w++) {
                long before = mx.getThreadAllocatedBytes(tid);
                for (int i = 0; i < 4000; i++) {
                    t.trainBatch(d.features(), d.targets(), null);
                }
                best = Math.min(best, (mx.getThreadAllocatedBytes(tid) - before) / 4000);
            }
            assertEquals(0, best, "bytes allocated per step");
        }
    }

    @Test
    void differentSeedsGiveDifferentRunsAndTheSameSeedTheSame() throws IOException {
        List<Double> a = run(null, 0, 1, null), b = run(null, 0, 1, null);
        assertEquals(a, b);
        try (Dataset train = blobs(200, 5); Sequential model = mlp(0.2);
             Trainer t = Trainer.builder(model).optimizer(Optimizer.adam(5e-3)).batchSize(16).seed(10).build()) {
            List<Double> c = new ArrayList<>();
            t.fit(train, null, 1);
            assertNotEquals(a.get(a.size() - 1), t.evaluate(train).loss());
        }
    }

    /** A listener that signals {@code parked} at the end of every epoch and waits for {@code release}. */
    private static dev.kiln.metrics.TrainingListener parking(java.util.concurrent.CountDownLatch parked,
                                                             java.util.concurrent.CountDownLatch release) {
        return m -> {
            parked.countDown();
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        };
    }

    /** A thread "kiln-fit" that runs 3 epochs of fit (parked by the trainer's listener), keeping what it throws. */
    private static Thread fitThread(Trainer t, Dataset train, Throwable[] failure) {
        Thread th = new Thread(() -> {
            try {
                t.fit(train, null, 3);
            } catch (Throwable e) {
                failure[0] = e;
            }
        }, "kiln-fit");
        return th;
    }

    @Test
    void aSecondThreadIsRefusedWhileFitRuns() throws Exception {
        var parked = new java.util.concurrent.CountDownLatch(1);
        var release = new java.util.concurrent.CountDownLatch(1);
        Throwable[] failure = new Throwable[1];
        try (Dataset train = blobs(64, 1); Sequential model = mlp(0);
             Trainer t = Trainer.builder(model).batchSize(16).listener(parking(parked, release)).build()) {
            Thread th = fitThread(t, train, failure);
            th.start();
            assertTrue(parked.await(30, java.util.concurrent.TimeUnit.SECONDS));
            for (org.junit.jupiter.api.function.Executable call : List.<org.junit.jupiter.api.function.Executable>of(
                    () -> t.fit(train, null, 1), () -> t.evaluate(train), t::steps, t::copyToModel)) {
                IllegalStateException e = assertThrows(IllegalStateException.class, call);
                assertTrue(e.getMessage().contains("in use by thread 'kiln-fit'"), e.getMessage());
            }
            release.countDown();
            th.join();
            assertEquals(null, failure[0]);
            assertEquals(3 * 4, t.steps()); // free again once fit returns
        }
    }

    @Test
    void closeDuringFitStopsItAtTheNextStepWithoutFreeingUnderIt() throws Exception {
        var parked = new java.util.concurrent.CountDownLatch(1);
        var release = new java.util.concurrent.CountDownLatch(1);
        Throwable[] failure = new Throwable[1];
        try (Dataset train = blobs(64, 1); Sequential model = mlp(0)) {
            Trainer t = Trainer.builder(model).batchSize(16).listener(parking(parked, release)).build();
            Thread th = fitThread(t, train, failure);
            th.start();
            assertTrue(parked.await(30, java.util.concurrent.TimeUnit.SECONDS));
            t.close(); // does not wait for fit
            assertThrows(IllegalStateException.class, t::steps);
            release.countDown();
            th.join();
            assertTrue(failure[0] instanceof IllegalStateException, String.valueOf(failure[0]));
            assertTrue(failure[0].getMessage().contains("closed during training, before step 4"), failure[0].getMessage());
            t.close(); // idempotent
        }
    }

    @Test
    void resumeRefusesACheckpointOfAnotherOptimizer(@TempDir Path dir) throws IOException {
        Path ckpt = dir.resolve("adam.ckpt");
        try (Dataset train = blobs(64, 1); Sequential model = mlp(0)) {
            try (Trainer t = Trainer.builder(model).batchSize(16).optimizer(Optimizer.adam(1e-3)).build()) {
                t.fit(train, null, 1);
                t.checkpoint(ckpt);
            }
            try (Trainer t = Trainer.builder(model).batchSize(16).optimizer(Optimizer.sgd(0.1).withMomentum(0.9, false))
                    .build()) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.resume(ckpt));
                assertTrue(e.getMessage().contains("optimizer ADAM; this trainer's is SGD"), e.getMessage());
                assertEquals(0, t.steps()); // nothing was loaded
            }
            // A different learning rate of the same kind is the user's choice (fine-tuning).
            try (Trainer t = Trainer.builder(model).batchSize(16).optimizer(Optimizer.adam(1e-4)).build()) {
                t.resume(ckpt);
                assertEquals(4, t.steps());
            }
        }
    }

    @Test
    void resumeStillReadsFormatVersion1Checkpoints(@TempDir Path dir) throws IOException {
        Path v2 = dir.resolve("v2.ckpt"), v1 = dir.resolve("v1.ckpt");
        List<Double> straight = new ArrayList<>(), resumed = new ArrayList<>();
        try (Dataset train = blobs(64, 1); Sequential model = mlp(0)) {
            try (Trainer t = Trainer.builder(model).batchSize(16).seed(4)
                    .progress((ep, eps, batch, batches, step, loss, sec) -> straight.add(loss)).build()) {
                t.fit(train, null, 1);
                t.checkpoint(v2);
                t.fit(train, null, 2);
            }
        }
        // Version 1 had no optimizer name: drop it (u16 length + "ADAM" just before the u64 state
        // length), set the version, recompute the CRC.
        byte[] b = Files.readAllBytes(v2);
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        int sched = bb.getInt(8 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 4);
        int at = 8 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 4 + 4 + 8 * sched;
        assertEquals(4, bb.getShort(at));
        java.io.ByteArrayOutputStream o = new java.io.ByteArrayOutputStream();
        o.write(b, 0, at);
        o.write(b, at + 6, b.length - 4 - (at + 6));
        byte[] old = o.toByteArray();
        java.nio.ByteBuffer.wrap(old).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(8, 1);
        java.util.zip.CRC32 crc = new java.util.zip.CRC32();
        crc.update(old);
        java.nio.ByteBuffer tail = java.nio.ByteBuffer.allocate(4).order(java.nio.ByteOrder.LITTLE_ENDIAN)
                .putInt((int) crc.getValue());
        Files.write(v1, old);
        Files.write(v1, tail.array(), java.nio.file.StandardOpenOption.APPEND);
        try (Dataset train = blobs(64, 1); Sequential model = mlp(0);
             Trainer t = Trainer.builder(model).batchSize(16).seed(4).optimizer(Optimizer.sgd(0.1))
                     .progress((ep, eps, batch, batches, step, loss, sec) -> resumed.add(loss)).build()) {
            t.resume(v1); // no optimizer name to check against
            assertEquals(4, t.steps());
        }
        try (Dataset train = blobs(64, 1); Sequential model = mlp(0);
             Trainer t = Trainer.builder(model).batchSize(16).seed(4)
                     .progress((ep, eps, batch, batches, step, loss, sec) -> resumed.add(loss)).build()) {
            t.resume(v1);
            t.fit(train, null, 2);
        }
        assertEquals(straight.subList(4, 8), resumed);
    }
}
