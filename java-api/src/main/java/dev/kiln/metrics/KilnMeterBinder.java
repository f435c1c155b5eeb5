package dev.kiln.metrics;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.binder.MeterBinder;
import java.util.function.ToDoubleFunction;

/**
 * Exports a {@link MetricsRegistry} to Micrometer (and so to Prometheus and the rest). Micrometer is
 * an optional dependency of Kiln: add {@code io.micrometer:micrometer-core} to use this class.
 *
 * <p>Meters, tagged {@code model} and {@code version}: {@code kiln.requests}, {@code kiln.errors},
 * {@code kiln.rows} (counters); {@code kiln.latency.p50|p90|p99|p999|max} (gauges, seconds); and
 * {@code kiln.native.memory} (bytes). Model versions registered after binding appear at the next
 * {@link #bindTo} call ({@link #refresh()} does it for the registry it was bound to).
 */
public final class KilnMeterBinder implements MeterBinder {
    private final MetricsRegistry metrics;
    private volatile MeterRegistry bound;

    public KilnMeterBinder(MetricsRegistry metrics) {
        this.metrics = java.util.Objects.requireNonNull(metrics, "metrics");
    }

    @Override
    public void bindTo(MeterRegistry registry) {
        bound = registry;
        Gauge.builder("kiln.native.memory", metrics, MetricsRegistry::nativeBytesInUse)
                .baseUnit("bytes").description("native memory held by Kiln").register(registry);
        for (ModelMetrics m : metrics.all()) {
            Tags tags = Tags.of("model", m.model(), "version", m.version());
            FunctionCounter.builder("kiln.requests", m, x -> snapshot(x).requests()).tags(tags).register(registry);
            FunctionCounter.builder("kiln.errors", m, x -> snapshot(x).errors()).tags(tags).register(registry);
            FunctionCounter.builder("kiln.rows", m, x -> snapshot(x).rows()).tags(tags).register(registry);
            gauge(registry, "kiln.latency.p50", m, tags, s -> s.p50Nanos() / 1e9);
            gauge(registry, "kiln.latency.p90", m, tags, s -> s.p90Nanos() / 1e9);
            gauge(registry, "kiln.latency.p99", m, tags, s -> s.p99Nanos() / 1e9);
            gauge(registry, "kiln.latency.p999", m, tags, s -> s.p999Nanos() / 1e9);
            gauge(registry, "kiln.latency.max", m, tags, s -> s.maxNanos() / 1e9);
        }
    }

    /** Binds again to the last registry, picking up model versions created since. */
    public void refresh() {
        MeterRegistry r = bound;
        if (r != null) {
            bindTo(r);
        }
    }

    private void gauge(MeterRegistry registry, String name, ModelMetrics m, Tags tags,
            ToDoubleFunction<ModelMetrics.Snapshot> f) {
        Gauge.builder(name, m, x -> f.applyAsDouble(snapshot(x))).tags(tags).baseUnit("seconds").register(registry);
    }

    private static ModelMetrics.Snapshot snapshot(ModelMetrics m) {
        return m.snapshot();
    }
}
