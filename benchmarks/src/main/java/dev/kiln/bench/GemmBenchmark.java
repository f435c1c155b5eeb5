package dev.kiln.bench;

import dev.kiln.Kiln;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Epilogue;
import dev.kiln.tensor.Ops;
import dev.kiln.tensor.PackedMatrix;
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
 * The GEMMs of {@code benchmarks/run gemm}, called from Java: the cost of the Java layer on top of
 * the native kernel, and the allocation per call ({@code -prof gc} must show ~0 B/op).
 *
 * <pre>java -jar benchmarks/target/benchmarks.jar GemmBenchmark -prof gc</pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
        "--enable-native-access=ALL-UNNAMED"})
public class GemmBenchmark {
    /** MxKxN */
    @Param({"1x784x512", "8x784x512", "32x784x512", "128x784x512", "1024x1024x1024"})
    String shape;

    @Param({"1"})
    int threads;

    Tensor a;
    Tensor b;
    Tensor bias;
    Tensor out;
    PackedMatrix packed;
    Epilogue reluBias;

    @Setup(Level.Trial)
    public void setup() {
        String[] d = shape.split("x");
        long m = Long.parseLong(d[0]), k = Long.parseLong(d[1]), n = Long.parseLong(d[2]);
        Kiln.setThreads(threads);
        a = Tensor.zeros(DType.F32, m, k).fillUniform(-1, 1, 1);
        b = Tensor.zeros(DType.F32, k, n).fillUniform(-1, 1, 2);
        bias = Tensor.zeros(DType.F32, n).fillUniform(-1, 1, 3);
        out = Tensor.zeros(DType.F32, m, n);
        packed = PackedMatrix.pack(b);
        reluBias = Epilogue.bias(bias).withActivation(dev.kiln.tensor.Activation.RELU);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        packed.close();
        a.close();
        b.close();
        bias.close();
        out.close();
    }

    /** Plain-layout weights every call (the training case). */
    @Benchmark
    public void sgemm() {
        Ops.matmul(a, b, out);
    }

    /** Weights packed once (the inference case), with bias + ReLU fused. */
    @Benchmark
    public void sgemmPackedBiasRelu() {
        Ops.matmul(a, packed, out, reluBias);
    }
}
