package dev.kiln.it;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.kiln.io.ModelFile;
import dev.kiln.io.OnnxModels;
import dev.kiln.io.SafeTensors;
import dev.kiln.io.TensorSet;
import dev.kiln.nn.Sequential;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.zip.CRC32C;

/**
 * Coverage-guided fuzzing (Jazzer) of the three importers: 100,000 inputs derived from the seeds in
 * {@code src/test/resources/dev/kiln/it/ImportFuzzITInputs/} (Kiln-exported ONNX models, PyTorch-like
 * ONNX graphs, a safetensors file and a Kiln model file, each behind a selector byte: 1 safetensors,
 * 2 Kiln model file, else ONNX; {@code GenerateFuzzSeeds} rewrites them). An input may be refused
 * only with IllegalArgumentException (ONNX may also say IllegalStateException for a model it cannot
 * build); any other exception, a crash, a hang or running out of memory fails.
 *
 * <p>A Kiln file's header carries a CRC-32C, which a mutation almost always breaks: the harness
 * writes the right one back (when the header length fits the input) so that mutations of the header
 * and of the model structure in it reach the parsers behind the check, the way a crafted file would.
 */
class ImportFuzzIT {
    @FuzzTest(maxExecutions = 100_000, maxDuration = "10m")
    void importersRefuseBadFilesCleanly(byte[] data) {
        if (data.length == 0) {
            return;
        }
        byte[] file = Arrays.copyOfRange(data, 1, data.length);
        switch (data[0] & 3) {
            case 1:
                try (TensorSet t = SafeTensors.read(file)) {
                    assertTrue(t.tensors().size() >= 0);
                } catch (IllegalArgumentException refused) {
                    // a clear refusal
                }
                break;
            case 2:
                withHeaderCrc(file);
                try (Sequential m = ModelFile.fromBytes(file)) {
                    assertTrue(m.layers().size() > 0);
                } catch (IllegalArgumentException refused) {
                    // a clear refusal
                }
                break;
            default:
                try (Sequential m = OnnxModels.fromBytes(file)) {
                    assertTrue(m.layers().size() > 0);
                } catch (IllegalArgumentException | IllegalStateException refused) {
                    // a clear refusal
                }
                break;
        }
    }

    /** Writes the CRC-32C of bytes 16 .. 24 + H (KilnFile's version 2 header) at offset 12, when it fits. */
    private static void withHeaderCrc(byte[] f) {
        if (f.length < 24) {
            return;
        }
        ByteBuffer b = ByteBuffer.wrap(f).order(ByteOrder.LITTLE_ENDIAN);
        long h = b.getLong(16);
        if (h < 0 || h > f.length - 24) {
            return;
        }
        CRC32C crc = new CRC32C();
        crc.update(f, 16, (int) (8 + h));
        b.putInt(12, (int) crc.getValue());
    }
}
