package dev.kiln.cli;

import dev.kiln.Kiln;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Ops;
import dev.kiln.tensor.Tensor;
import dev.kiln.tensor.TensorScope;
import java.nio.FloatBuffer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * DEMO of the tensor API (the main job until training lands): off-heap tensors, zero-copy views,
 * native ops, and the memory accounting that proves nothing leaked.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Demo of the tensor API: native ops over off-heap tensors, zero-copy views, memory accounting.")
final class DemoCommand implements Callable<Integer> {
    @Option(names = "--size", defaultValue = "4000000", description = "Elements per tensor (default: ${DEFAULT-VALUE}).")
    long size;

    @Option(names = "--seed", defaultValue = "42", description = "Random seed (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        if (size < 1 || size > (1L << 31) - 1) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(),
                    "--size is " + size + ": must be in 1..2147483647");
        }
        var out = spec.commandLine().getOut();
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("demo", "tensor API (training lands with the training issue)");
        r.put("isa", Kiln.isa().settingName());
        r.put("threads", Kiln.threads());
        try (TensorScope scope = new TensorScope()) {
            Tensor a = scope.zeros(DType.F32, size).fillNormal(0, 1, seed);
            Tensor b = scope.zeros(DType.F32, size).fillUniform(-1, 1, seed + 1);
            Tensor c = scope.zeros(DType.F32, size);
            // Warm up, then time the native add (one JNI call, no copies, no allocation).
            for (int i = 0; i < 3; i++) {
                Ops.add(a, b, c);
            }
            int reps = 20;
            long t0 = System.nanoTime();
            for (int i = 0; i < reps; i++) {
                Ops.add(a, b, c);
            }
            double seconds = (System.nanoTime() - t0) / 1e9 / reps;
            r.put("elements", size);
            r.put("add_ms", round(seconds * 1e3));
            r.put("add_gb_per_s", round(3.0 * 4 * size / seconds / 1e9));
            r.put("sum_a", round(a.sum()));
            r.put("sum_c", round(c.sum()));
            r.put("zero_copy_delta", round(zeroCopy(c)));
            Tensor m = scope.track(Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3));
            r.put("transpose_view", java.util.Arrays.toString(m.transpose(0, 1).toFloatArray()));
            r.put("native_bytes_in_use_during", Kiln.memoryStats().bytesInUse());
        }
        // Memory behind a ByteBuffer view is freed once the tensor is closed AND the view is
        // unreachable (so a stale view can never touch freed memory): let the GC see the view go.
        long after = Kiln.memoryStats().bytesInUse();
        for (int i = 0; i < 50 && after != 0; i++) {
            System.gc();
            sleep(10);
            after = Kiln.memoryStats().bytesInUse();
        }
        r.put("native_bytes_in_use_after", after);
        if (json) {
            out.println(Json.write(r));
        } else {
            out.println("Kiln demo (tensor API; the training demo replaces it when training lands)");
            r.forEach((k, v) -> out.printf("  %-28s %s%n", k, v));
        }
        return 0;
    }

    /** Writes through a Java view and returns the change a native op sees. */
    private static double zeroCopy(Tensor c) {
        FloatBuffer view = c.floatView();
        double before = c.sum();
        view.put(0, view.get(0) + 1000f);
        return c.sum() - before;
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static double round(double v) {
        return Math.round(v * 1000) / 1000.0;
    }
}
