package dev.kiln.bench;

import dev.kiln.tensor.DType;
import dev.kiln.tensor.Ops;
import dev.kiln.tensor.Tensor;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Cost of one native op called from Java (JNI transition, argument checks, liveness accounting)
 * and its allocation per call ({@code -prof gc} must show ~0 B/op).
 *
 * <pre>java -jar benchmarks/target/benchmarks.jar TensorOpsBenchmark -prof gc</pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
        "--enable-native-access=ALL-UNNAMED"})
public class TensorOpsBenchmark {
    @Param({"16", "4096", "1048576"})
    int size;

    Tensor a;
    Tensor b;
    Tensor out;

    @Setup(Level.Trial)
    public void setup() {
        a = Tensor.zeros(DType.F32, size).fillUniform(-1, 1, 1);
        b = Tensor.zeros(DType.F32, size).fillUniform(-1, 1, 2);
        out = Tensor.zeros(DType.F32, size);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        a.close();
        b.close();
        out.close();
    }

    @Benchmark
    public void add() {
        Ops.add(a, b, out);
    }

    @Benchmark
    public double sum() {
        return Ops.sum(a);
    }
}
