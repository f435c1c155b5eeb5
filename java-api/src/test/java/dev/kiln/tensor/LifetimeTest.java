package dev.kiln.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.Kiln;
import java.nio.FloatBuffer;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.parallel.Isolated;

@Isolated
class LifetimeTest {
    @Test
    void aMillionTensorsCreatedAndClosedLeaveNoNativeBytes() {
        NativeMemory.settledBytesInUse();
        Kiln.MemoryStats before = Kiln.memoryStats();
        for (int i = 0; i < 1_000_000; i++) {
            try (Tensor t = Tensor.zeros(DType.F32, 1 + (i % 64))) {
                if ((i & 0xffff) == 0) {
                    t.fill(i);
                }
            }
        }
        Kiln.MemoryStats after = Kiln.memoryStats();
        assertEquals(before.bytesInUse(), after.bytesInUse(), "native bytes outstanding");
        assertEquals(before.liveAllocations(), after.liveAllocations());
        assertEquals(1_000_000, after.totalAllocations() - before.totalAllocations());
        assertEquals(before.reclaimedByCleaner(), after.reclaimedByCleaner(), "nothing was left to the Cleaner");
    }

    @Test
    void cleanerReclaimsUnclosedTensorsAndCountsThem() throws InterruptedException {
        long bytesBefore = NativeMemory.settledBytesInUse();
        long reclaimedBefore = Tensor.reclaimedByCleaner();
        for (int i = 0; i < 100; i++) {
            Tensor.zeros(DType.F32, 1024); // never closed
        }
        assertTrue(Kiln.memoryStats().bytesInUse() >= bytesBefore + 100 * 4096);
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (Tensor.reclaimedByCleaner() - reclaimedBefore < 100 && System.nanoTime() < deadline) {
            System.gc();
            Thread.sleep(20);
        }
        assertEquals(100, Tensor.reclaimedByCleaner() - reclaimedBefore);
        assertEquals(bytesBefore, Kiln.memoryStats().bytesInUse());
    }

    @Test
    void closingTheOwnerRetiresItsViewsAndClosingAViewDoesNot() {
        Tensor t = Tensor.zeros(DType.F32, 4, 4);
        Tensor v = t.slice(0, 1, 3);
        Tensor w = t.transpose(0, 1);
        v.close();
        assertTrue(v.isClosed());
        assertEquals(0.0, w.sum(), "closing a view leaves the owner and other views alive");
        t.close();
        t.close(); // idempotent
        assertTrue(w.isClosed());
        IllegalStateException e = assertThrows(IllegalStateException.class, w::sum);
        assertEquals("sum: tensor F32[4, 4] is closed (its owner was closed)", e.getMessage());
    }

    @Test
    void aBufferViewKeepsMemoryValidAfterClose() throws InterruptedException {
        long bytesBefore = NativeMemory.settledBytesInUse();
        Tensor t = Tensor.zeros(DType.F32, 256);
        FloatBuffer view = t.floatView();
        t.close();
        // The tensor is closed, but the buffer still points at live memory: no use-after-free.
        view.put(255, 1f);
        assertEquals(1f, view.get(255));
        assertTrue(Kiln.memoryStats().bytesInUse() >= bytesBefore + 1024);
        view = null;
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (Kiln.memoryStats().bytesInUse() != bytesBefore && System.nanoTime() < deadline) {
            System.gc();
            Thread.sleep(20);
        }
        assertEquals(bytesBefore, Kiln.memoryStats().bytesInUse(), "freed once the view is unreachable");
    }

    @Test
    void scopeClosesEverythingItTracks() {
        long bytesBefore = NativeMemory.settledBytesInUse();
        Tensor a;
        Tensor b;
        try (TensorScope scope = new TensorScope()) {
            a = scope.zeros(DType.F32, 100);
            b = scope.track(a.add(a));
            assertEquals(2, scope.size());
        }
        assertTrue(a.isClosed());
        assertTrue(b.isClosed());
        assertEquals(bytesBefore, Kiln.memoryStats().bytesInUse());
        TensorScope closed = new TensorScope();
        closed.close();
        Tensor c = Tensor.zeros(DType.F32, 1);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> closed.track(c));
        assertEquals("track: the scope is closed", e.getMessage());
        c.close();
    }

    @Test
    void closeWhileAnotherThreadRunsOpsNeverFreesUnderIt() throws Exception {
        // Close races with ops on other threads: each op either completes or throws
        // IllegalStateException; the JVM never reads freed memory.
        for (int round = 0; round < 50; round++) {
            Tensor t = Tensor.zeros(DType.F32, 200_000).fill(1);
            CountDownLatch started = new CountDownLatch(1);
            AtomicReference<Throwable> unexpected = new AtomicReference<>();
            Thread worker = new Thread(() -> {
                started.countDown();
                try {
                    for (int i = 0; i < 1000; i++) {
                        double s = t.sum();
                        if (s != 200_000.0) {
                            unexpected.set(new AssertionError("sum " + s));
                        }
                    }
                } catch (IllegalStateException expected) {
                    // closed under us: refused cleanly
                } catch (Throwable other) {
                    unexpected.set(other);
                }
            });
            worker.start();
            started.await();
            t.close();
            worker.join();
            if (unexpected.get() != null) {
                throw new AssertionError(unexpected.get());
            }
        }
    }
}
