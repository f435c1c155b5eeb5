package dev.kiln.it;

import dev.kiln.io.OnnxModels;
import dev.kiln.io.SafeTensors;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * Writes the fuzzing seeds of ImportFuzzIT (run by hand from the tests module's test class path,
 * argument: the seed directory). The seeds are Kiln's own output, so they are regenerated, not
 * downloaded.
 */
public final class GenerateFuzzSeeds {
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        Files.createDirectories(dir);
        Sequential.Builder b = Sequential.builder(4).dense(6, Init.HE, 1).relu();
        int skip = b.mark();
        b.dense(6, Init.HE, 2).residual(skip).layerNorm(1e-5f).dense(3, Init.XAVIER, 3).softmax();
        try (Sequential m = b.build(); Sequential e = Sequential.builder(3).embedding(5, 2, Init.HE, 4)
                .dense(2, Init.HE, 5).build()) {
            Files.write(dir.resolve("onnx-residual"), prefixed(0, OnnxModels.toBytes(m)));
            Files.write(dir.resolve("onnx-embedding"), prefixed(0, OnnxModels.toBytes(e)));
            Files.write(dir.resolve("safetensors"), prefixed(1, SafeTensors.toBytes(m.parameters(), Map.of("k", "v"))));
        }
    }

    private static byte[] prefixed(int selector, byte[] body) {
        byte[] out = new byte[body.length + 1];
        out[0] = (byte) selector;
        System.arraycopy(body, 0, out, 1, body.length);
        return out;
    }
}
