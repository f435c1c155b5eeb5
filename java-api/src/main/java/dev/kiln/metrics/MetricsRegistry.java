package dev.kiln.metrics;

import dev.kiln.Kiln;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The {@link ModelMetrics} of every model version a service runs, plus the native memory gauge.
 * Look one up once and keep it: {@code forModel} is a map lookup, recording on the returned object
 * is the hot path. Thread-safe.
 */
public final class MetricsRegistry {
    private final ConcurrentHashMap<String, ModelMetrics> byKey = new ConcurrentHashMap<>();

    /** The metrics of {@code model} at {@code version}, created on first use. */
    public ModelMetrics forModel(String model, String version) {
        Objects.requireNonNull(model, "model");
        Objects.requireNonNull(version, "version");
        return byKey.computeIfAbsent(model + "\u0000" + version, k -> new ModelMetrics(model, version));
    }

    /** Every model version registered so far. */
    public Collection<ModelMetrics> all() {
        return Collections.unmodifiableCollection(byKey.values());
    }

    /** Snapshots of every model version. */
    public List<ModelMetrics.Snapshot> snapshots() {
        List<ModelMetrics.Snapshot> out = new ArrayList<>();
        for (ModelMetrics m : byKey.values()) {
            out.add(m.snapshot());
        }
        return out;
    }

    /** Native memory Kiln holds now (bytes), the gauge exported beside the per-model metrics. */
    public long nativeBytesInUse() {
        return Kiln.memoryStats().bytesInUse();
    }
}
