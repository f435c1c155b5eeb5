package dev.kiln.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AtomicFilesTest {

    static void assumePosix(Path dir) {
        assumeTrue(Files.getFileAttributeView(dir, PosixFileAttributeView.class) != null, "not a POSIX file system");
    }

    @Test
    void aNewFileGetsTheModeOfAnyNewFileNotOwnerOnly(@TempDir Path dir) throws Exception {
        // Before: written through Files.createTempFile, every saved model was 0600, unreadable by a
        // service running as another user.
        assumePosix(dir);
        Path plain = Files.createFile(dir.resolve("plain"));
        Path saved = dir.resolve("m.onnx");
        AtomicFiles.write(saved, new byte[] {1, 2, 3});
        assertEquals(Files.getPosixFilePermissions(plain), Files.getPosixFilePermissions(saved),
                "the mode a plain new file gets here (0666 less the umask)");
        try (dev.kiln.nn.Sequential m = dev.kiln.nn.Sequential.builder(4).dense(3, dev.kiln.nn.Init.HE, 1).build()) {
            OnnxModels.save(m, dir.resolve("n.onnx"));
            ModelFile.save(m, dir.resolve("n.kiln"), Map.of());
        }
        assertEquals(Files.getPosixFilePermissions(plain), Files.getPosixFilePermissions(dir.resolve("n.onnx")));
        assertEquals(Files.getPosixFilePermissions(plain), Files.getPosixFilePermissions(dir.resolve("n.kiln")));
    }

    @Test
    void aReplacedFileKeepsItsPermissions(@TempDir Path dir) throws Exception {
        assumePosix(dir);
        for (String mode : new String[] {"rw-r-----", "rw-------", "rw-rw-r--"}) {
            Path f = dir.resolve("w-" + mode + ".bin");
            Files.write(f, new byte[] {9});
            Files.setPosixFilePermissions(f, PosixFilePermissions.fromString(mode));
            AtomicFiles.write(f, new byte[] {4, 5});
            assertArrayEquals(new byte[] {4, 5}, Files.readAllBytes(f));
            assertEquals(mode, PosixFilePermissions.toString(Files.getPosixFilePermissions(f)));
        }
    }

    @Test
    void aFailedWriteLeavesTheOldFileAndNoTemporaryFile(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("keep.bin");
        Files.write(f, new byte[] {7, 7});
        IOException e = assertThrows(IOException.class, () -> AtomicFiles.write(f, ch -> {
            ch.write(java.nio.ByteBuffer.wrap(new byte[] {1}));
            throw new IOException("disk full");
        }));
        assertEquals("disk full", e.getMessage());
        assertArrayEquals(new byte[] {7, 7}, Files.readAllBytes(f));
        try (var files = Files.list(dir)) {
            assertEquals(1, files.count(), "only keep.bin");
        }
    }

    @Test
    void refusalsOfAFileNameIt(@TempDir Path dir) throws Exception {
        // Before: 'kiln predict --model m.onnx' on a broken file said "onnx: not a valid ONNX model
        // (...)", naming no file; safetensors alike. Kiln files named theirs already.
        byte[] junk = new byte[64];
        new java.util.Random(5).nextBytes(junk);
        for (String name : new String[] {"junk.onnx", "junk.safetensors", "junk.kiln"}) {
            Path f = dir.resolve(name);
            Files.write(f, junk);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> {
                if (name.endsWith(".onnx")) {
                    OnnxModels.load(f).close();
                } else if (name.endsWith(".kiln")) {
                    ModelFile.load(f).close();
                } else {
                    SafeTensors.read(f).close();
                }
            });
            assertTrue(e.getMessage().startsWith(f + ": "), e.getMessage());
            assertTrue(!e.getMessage().startsWith(f + ": onnx:") && !e.getMessage().startsWith(f + ": safetensors:"),
                    e.getMessage());
        }
        // A Kiln tensor file that holds no model structure
        try (var t = dev.kiln.tensor.Tensor.zeros(dev.kiln.tensor.DType.F32, 2)) {
            KilnFile.write(dir.resolve("plain.kiln"), Map.of("w", t), Map.of());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ModelFile.load(dir.resolve("plain.kiln")).close());
        assertEquals(dir.resolve("plain.kiln") + ": no model structure (metadata '" + ModelFile.STRUCTURE_KEY + "')",
                e.getMessage());
    }
}
