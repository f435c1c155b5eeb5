package dev.kiln.bench;

import dev.kiln.metrics.MetricsRegistry;
import dev.kiln.metrics.ModelMetrics;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Cost of recording on the inference hot path: one latency plus the request and row counters.
 * Target: <= 50 ns and 0 B per call.
 *
 * <pre>java -jar benchmarks/target/benchmarks.jar MetricsBenchmark -prof gc</pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode({Mode.AverageTime, Mode.SampleTime})
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
        "--enable-native-access=ALL-UNNAMED"})
public class MetricsBenchmark {
    final ModelMetrics metrics = new MetricsRegistry().forModel("mlp-small", "1");
    long value = 12_345;

    @Benchmark
    public void recordRequest() {
        value = (value * 6364136223846793005L + 1442695040888963407L) & 0xfffff; // vary the bucket
        metrics.recordRequest(1_000 + value, 1);
    }
}
