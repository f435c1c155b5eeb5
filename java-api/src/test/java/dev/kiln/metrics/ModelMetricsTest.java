package dev.kiln.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;

class ModelMetricsTest {
    @Test
    void snapshotsUnderEightWritingThreadsLoseNoCounts() throws Exception {
        MetricsRegistry registry = new MetricsRegistry();
        ModelMetrics m = registry.forModel("mlp", "3");
        assertSame(m, registry.forModel("mlp", "3"));
        int threads = 8, perThread = 200_000;
        CountDownLatch start = new CountDownLatch(1);
        List<Thread> writers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final int seed = t;
            Thread w = new Thread(() -> {
                try {
                    start.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = 0; i < perThread; i++) {
                    m.recordRequest(1000 + (i + seed) % 5000, 2);
                    if (i % 1000 == 0) {
                        m.recordError();
                    }
                }
            });
            w.start();
            writers.add(w);
        }
        AtomicBoolean done = new AtomicBoolean();
        long[] lastSeen = {0};
        Thread reader = new Thread(() -> {
            while (!done.get()) {
                ModelMetrics.Snapshot s = m.snapshot();
                if (s.latencyCount() < lastSeen[0]) {
                    throw new AssertionError("counts went backwards");
                }
                lastSeen[0] = s.latencyCount();
            }
        });
        reader.start();
        start.countDown();
        for (Thread w : writers) {
            w.join();
        }
        done.set(true);
        reader.join();
        ModelMetrics.Snapshot s = m.snapshot();
        long total = (long) threads * perThread;
        assertEquals(total, s.latencyCount(), "every latency recorded exactly once");
        assertEquals(total, s.requests());
        assertEquals(2 * total, s.rows());
        assertEquals((long) threads * (perThread / 1000), s.errors());
        assertTrue(s.p50Nanos() >= 1000 && s.p50Nanos() <= 6000, "p50 " + s.p50Nanos());
        assertTrue(s.p999Nanos() <= s.maxNanos() && s.maxNanos() >= 5999 && s.maxNanos() <= 6010, "max " + s.maxNanos());
    }

    @Test
    void recordingAllocatesNothing() {
        ModelMetrics m = new MetricsRegistry().forModel("m", "1");
        var mx = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        for (int i = 0; i < 50_000; i++) {
            m.recordRequest(1000 + i % 5000, 4);
            m.recordLatency(i * 977L);
            if (i % 100 == 0) {
                m.recordError();
            }
        }
        m.snapshot(); // the recorder's spare interval histogram exists from here on
        long tid = Thread.currentThread().getId(), before = mx.getThreadAllocatedBytes(tid);
        for (int i = 0; i < 20_000; i++) {
            m.recordRequest(1000 + i % 5000, 4);
            m.recordLatency(i * 977L);
            if (i % 100 == 0) {
                m.recordError();
            }
        }
        long total = mx.getThreadAllocatedBytes(tid) - before;
        assertEquals(0, total / 20_000, "bytes allocated per recorded request (total " + total + ")");
        assertEquals(70_000, m.snapshot().requests());
    }

    @Test
    void percentilesOfAKnownDistribution() {
        ModelMetrics m = new MetricsRegistry().forModel("m", "1");
        for (int i = 1; i <= 1000; i++) {
            m.recordLatency(i * 1000L);
        }
        ModelMetrics.Snapshot s = m.snapshot();
        assertEquals(500_000, s.p50Nanos(), 500_000 * 0.001 + 1);
        assertEquals(990_000, s.p99Nanos(), 990_000 * 0.001 + 1);
        assertEquals(1_000_000, s.maxNanos(), 1_000_000 * 0.001 + 1);
        long[][] h = m.histogram(10);
        long sum = 0;
        for (long c : h[1]) {
            sum += c;
        }
        assertEquals(1000, sum, "histogram buckets hold every value");
        // A negative row count would lower the exported row counter without a word.
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> m.recordRequest(10, -1));
        assertEquals(0, m.snapshot().requests());
    }

    @Test
    void micrometerBinderExportsCountersAndGauges() {
        MetricsRegistry registry = new MetricsRegistry();
        ModelMetrics m = registry.forModel("mlp", "7");
        m.recordRequest(2_000_000, 32);
        m.recordError();
        SimpleMeterRegistry meters = new SimpleMeterRegistry();
        new KilnMeterBinder(registry).bindTo(meters);
        assertEquals(1.0, meters.get("kiln.requests").tag("model", "mlp").tag("version", "7").functionCounter().count());
        assertEquals(32.0, meters.get("kiln.rows").functionCounter().count());
        assertEquals(1.0, meters.get("kiln.errors").functionCounter().count());
        assertEquals(0.002, meters.get("kiln.latency.p50").gauge().value(), 0.002 * 0.001);
        assertTrue(meters.get("kiln.native.memory").gauge().value() >= 0);
    }
}
