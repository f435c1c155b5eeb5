package dev.kiln.bench;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.kiln.Kiln;
import dev.kiln.infer.InferenceSession;
import dev.kiln.io.OnnxModels;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Map;
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
 * benchmarks/run inference: Kiln and ONNX Runtime's Java API on the SAME weights (Kiln exports the
 * model to ONNX, ONNX Runtime loads that file), outputs checked equal before timing.
 *
 * <ul>
 *   <li>{@code kiln}: {@code session.run(x, y)} on preallocated tensors.</li>
 *   <li>{@code onnxruntime}: ONNX Runtime's fastest Java path: the input tensor created once over a
 *       reused direct buffer, the output pinned ({@code run(inputs, pinnedOutputs)}), ALL_OPT.</li>
 *   <li>{@code onnxruntimeUsual}: its usual path: input copied into a reused direct buffer, a new
 *       input tensor per call, the output copied out to a float[].</li>
 * </ul>
 * ONNX Runtime's intra-op threads = Kiln's pool size = {@code threads}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
        "--enable-native-access=ALL-UNNAMED"})
public class InferenceVsOnnxRuntime {
    @Param({"tiny", "mlp-small", "mlp-wide"})
    String model;

    @Param({"1", "32", "256"})
    int batch;

    @Param({"1", "2"})
    int threads;

    Sequential net;
    InferenceSession kiln;
    Tensor x;
    Tensor y;
    OrtEnvironment env;
    OrtSession ort;
    OnnxTensor ortIn;
    OnnxTensor ortOut;
    Map<String, OnnxTensor> ortInputs;
    Map<String, OnnxValue> ortPinned;
    FloatBuffer usualIn;
    float[] hostIn;
    float[] hostOut;

    static Sequential build(String model) {
        switch (model) {
            case "tiny":
                return Sequential.builder(16).dense(16, Init.XAVIER, 1).build();
            case "mlp-small":
                return Sequential.builder(784).dense(512, Init.HE, 1).relu().dense(256, Init.HE, 2).relu()
                        .dense(10, Init.XAVIER, 3).softmax().build();
            case "mlp-wide":
                return Sequential.builder(1024).dense(4096, Init.HE, 1).relu().dense(4096, Init.HE, 2).relu()
                        .dense(1024, Init.XAVIER, 3).build();
            default:
                throw new IllegalArgumentException(model);
        }
    }

    @Setup(Level.Trial)
    public void setup() throws OrtException {
        Kiln.setThreads(threads);
        net = build(model);
        kiln = net.compile(256);
        long in = net.inputFeatures(), out = net.outputFeatures();
        x = Tensor.zeros(DType.F32, batch, in).fillUniform(0, 1, 7);
        y = Tensor.zeros(DType.F32, batch, out);
        hostIn = x.toFloatArray();
        hostOut = new float[(int) (batch * out)];

        env = OrtEnvironment.getEnvironment();
        OrtSession.SessionOptions opts = new OrtSession.SessionOptions();
        opts.setIntraOpNumThreads(threads);
        opts.setInterOpNumThreads(1);
        opts.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
        opts.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
        ort = env.createSession(OnnxModels.toBytes(net), opts);
        FloatBuffer inBuf = ByteBuffer.allocateDirect(4 * hostIn.length).order(ByteOrder.nativeOrder()).asFloatBuffer();
        inBuf.put(hostIn).rewind();
        FloatBuffer outBuf = ByteBuffer.allocateDirect(4 * hostOut.length).order(ByteOrder.nativeOrder()).asFloatBuffer();
        ortIn = OnnxTensor.createTensor(env, inBuf, new long[] {batch, in});
        ortOut = OnnxTensor.createTensor(env, outBuf, new long[] {batch, out});
        ortInputs = Map.of("input", ortIn);
        ortPinned = Map.of("output", ortOut);
        usualIn = ByteBuffer.allocateDirect(4 * hostIn.length).order(ByteOrder.nativeOrder()).asFloatBuffer();

        // Same answers before timing.
        kiln.run(x, y);
        ort.run(ortInputs, ortPinned).close();
        float[] k = y.toFloatArray();
        FloatBuffer o = ortOut.getFloatBuffer();
        for (int i = 0; i < k.length; i++) {
            float w = o.get(i);
            if (Math.abs(w - k[i]) > 1e-4 * Math.abs(w) + 1e-4) {
                throw new IllegalStateException(model + ": Kiln and ONNX Runtime disagree at " + i + ": " + k[i] + " vs " + w);
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws OrtException {
        ortIn.close();
        ortOut.close();
        ort.close();
        kiln.close();
        net.close();
        x.close();
        y.close();
    }

    @Benchmark
    public void kiln() {
        kiln.run(x, y);
    }

    @Benchmark
    public void onnxruntime() throws OrtException {
        ort.run(ortInputs, ortPinned).close();
    }

    @Benchmark
    public float[] onnxruntimeUsual() throws OrtException {
        usualIn.clear();
        usualIn.put(hostIn).rewind();
        try (OnnxTensor t = OnnxTensor.createTensor(env, usualIn, new long[] {batch, net.inputFeatures()});
                OrtSession.Result r = ort.run(Map.of("input", t))) {
            ((OnnxTensor) r.get(0)).getFloatBuffer().get(hostOut);
        }
        return hostOut;
    }
}
