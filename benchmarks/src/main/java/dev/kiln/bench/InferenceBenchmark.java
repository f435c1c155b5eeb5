package dev.kiln.bench;

import dev.kiln.Kiln;
import dev.kiln.infer.InferenceSession;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
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
 * One forward pass of a compiled session from Java (Kiln side only; the ONNX Runtime comparison of
 * the inference work is not written yet). Models: tiny (16 -> 16, one Dense) and mlp-small
 * (784-512-256-10, ReLU, softmax).
 *
 * <pre>java -jar benchmarks/target/benchmarks.jar InferenceBenchmark -prof gc</pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
        "--enable-native-access=ALL-UNNAMED"})
public class InferenceBenchmark {
    @Param({"tiny", "mlp-small"})
    String model;

    @Param({"1", "32", "256"})
    int batch;

    @Param({"1"})
    int threads;

    Sequential net;
    InferenceSession session;
    Tensor x;
    Tensor y;

    @Setup(Level.Trial)
    public void setup() {
        Kiln.setThreads(threads);
        net = model.equals("tiny")
                ? Sequential.builder(16).dense(16, Init.XAVIER, 1).build()
                : Sequential.builder(784).dense(512, Init.HE, 1).relu().dense(256, Init.HE, 2).relu()
                        .dense(10, Init.XAVIER, 3).softmax().build();
        session = net.compile(256);
        x = Tensor.zeros(DType.F32, batch, net.inputFeatures()).fillUniform(0, 1, 7);
        y = Tensor.zeros(DType.F32, batch, net.outputFeatures());
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        session.close();
        net.close();
        x.close();
        y.close();
    }

    @Benchmark
    public void run() {
        session.run(x, y);
    }
}
