package dev.kiln.it;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.kiln.io.OnnxModels;
import dev.kiln.io.SafeTensors;
import dev.kiln.io.TensorSet;
import dev.kiln.nn.Sequential;
import java.util.Arrays;

/**
 * Coverage-guided fuzzing (Jazzer) of both importers: 100,000 inputs derived from the seeds in
 * {@code src/test/resources/dev/kiln/it/ImportFuzzITInputs/} (a Kiln-exported ONNX model and a
 * safetensors file, each behind a selector byte; {@code GenerateFuzzSeeds} rewrites them). An input
 * may be refused only with IllegalArgumentException (ONNX may also say IllegalStateException for a
 * model it cannot build); any other exception, a crash, a hang or running out of memory fails.
 */
class ImportFuzzIT {
    @FuzzTest(maxExecutions = 100_000, maxDuration = "10m")
    void importersRefuseBadFilesCleanly(byte[] data) {
        if (data.length == 0) {
            return;
        }
        byte[] file = Arrays.copyOfRange(data, 1, data.length);
        if ((data[0] & 1) == 0) {
            try (Sequential m = OnnxModels.fromBytes(file)) {
                assertTrue(m.layers().size() > 0);
            } catch (IllegalArgumentException | IllegalStateException refused) {
                // a clear refusal
            }
        } else {
            try (TensorSet t = SafeTensors.read(file)) {
                assertTrue(t.tensors().size() >= 0);
            } catch (IllegalArgumentException refused) {
                // a clear refusal
            }
        }
    }
}
