package dev.kiln.metrics;

import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * Runtime metrics of one model version: a latency histogram (HdrHistogram, 3 significant digits,
 * 1 ns .. 1 hour) and counters of requests, errors and rows.
 *
 * <p>The recording side ({@link #recordLatency}, {@link #recordRequest}, {@link #recordError}) is
 * safe from any number of threads, takes no lock and allocates nothing: HdrHistogram's
 * {@link Recorder} is wait-free for writers, the counters are {@link LongAdder}s. Readers take
 * {@link #snapshot()}s; a snapshot never loses or double-counts a recorded value.
 */
public final class ModelMetrics {
    private static final long HIGHEST_NANOS = TimeUnit.HOURS.toNanos(1);

    private final String model;
    private final String version;
    private final Recorder recorder = new Recorder(1, HIGHEST_NANOS, 3);
    private final LongAdder requests = new LongAdder();
    private final LongAdder errors = new LongAdder();
    private final LongAdder rows = new LongAdder();
    // Reader side: guarded by this.
    private final Histogram total = new Histogram(1, HIGHEST_NANOS, 3);
    private Histogram interval;
    private long lastSnapshotNanos = System.nanoTime();
    private long lastRequests;

    ModelMetrics(String model, String version) {
        this.model = Objects.requireNonNull(model, "model");
        this.version = Objects.requireNonNull(version, "version");
    }

    public String model() {
        return model;
    }

    public String version() {
        return version;
    }

    /** Records one successful request of {@code rowCount} (>= 0) rows that took {@code nanos}. */
    public void recordRequest(long nanos, long rowCount) {
        if (rowCount < 0) {  // would silently lower the row count every dashboard reads
            throw new IllegalArgumentException("recordRequest: rowCount is " + rowCount + ": must be >= 0");
        }
        recordLatency(nanos);
        requests.increment();
        rows.add(rowCount);
    }

    /** Records a latency in nanoseconds (clamped into 1 ns .. 1 hour). Wait-free, allocation-free. */
    public void recordLatency(long nanos) {
        recorder.recordValue(nanos < 1 ? 1 : Math.min(nanos, HIGHEST_NANOS));
    }

    /** Counts a failed request. */
    public void recordError() {
        errors.increment();
    }

    /** A consistent view of everything recorded so far (latencies cumulative since creation). */
    public synchronized Snapshot snapshot() {
        interval = recorder.getIntervalHistogram(interval);
        total.add(interval);
        long now = System.nanoTime();
        long req = requests.sum();
        double seconds = (now - lastSnapshotNanos) / 1e9;
        double rate = seconds > 0 ? (req - lastRequests) / seconds : 0;
        lastSnapshotNanos = now;
        lastRequests = req;
        long count = total.getTotalCount();
        return new Snapshot(model, version, count, req, errors.sum(), rows.sum(),
                count == 0 ? 0 : total.getValueAtPercentile(50),
                count == 0 ? 0 : total.getValueAtPercentile(90),
                count == 0 ? 0 : total.getValueAtPercentile(99),
                count == 0 ? 0 : total.getValueAtPercentile(99.9),
                count == 0 ? 0 : total.getMaxValue(),
                count == 0 ? 0 : total.getMean(), rate);
    }

    /**
     * Latency histogram buckets for plotting: upper bounds (ns) and counts, {@code buckets}
     * logarithmic buckets from the smallest to the largest recorded value.
     */
    public synchronized long[][] histogram(int buckets) {
        interval = recorder.getIntervalHistogram(interval);
        total.add(interval);
        long[][] out = new long[2][buckets];
        if (total.getTotalCount() == 0 || buckets <= 0) {
            return out;
        }
        double lo = Math.max(1, total.getMinValue()), hi = Math.max(lo + 1, total.getMaxValue());
        double step = Math.pow(hi / lo, 1.0 / buckets);
        double bound = lo;
        long prev = 0;
        for (int b = 0; b < buckets; b++) {
            bound = b == buckets - 1 ? hi : bound * step;
            long upTo = total.getCountBetweenValues(0, (long) Math.ceil(bound));
            out[0][b] = (long) Math.ceil(bound);
            out[1][b] = upTo - prev;
            prev = upTo;
        }
        return out;
    }

    /**
     * Metrics at one moment. Latencies in nanoseconds; {@code ratePerSecond} is requests per second
     * since the previous snapshot.
     */
    public record Snapshot(String model, String version, long latencyCount, long requests, long errors, long rows,
                           long p50Nanos, long p90Nanos, long p99Nanos, long p999Nanos, long maxNanos,
                           double meanNanos, double ratePerSecond) {}
}
