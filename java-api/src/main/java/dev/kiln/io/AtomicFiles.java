package dev.kiln.io;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/**
 * How Kiln replaces a file so that a crash leaves either the old file or the new one, never a part:
 * create the directory if it is missing, write a temporary file in it, fsync it, rename it over the
 * target, fsync the directory. Used by every file Kiln writes: model files (Kiln, safetensors, ONNX),
 * checkpoints, encrypted artifacts, HTML reports and the registry.
 */
public final class AtomicFiles {
    private AtomicFiles() {}

    /** Writes the new content of a file through a channel. */
    @FunctionalInterface
    public interface Body {
        void write(FileChannel out) throws IOException;
    }

    /** Replaces {@code target} with what {@code body} writes; on failure {@code target} is untouched. */
    public static void write(Path target, Body body) throws IOException {
        Path dir = target.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Path tmp = Files.createTempFile(dir, "." + target.getFileName(), ".tmp");
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                body.write(ch);
                ch.force(true);
            }
            moveAtomically(tmp, target);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** Replaces {@code target} with {@code content} (see {@link #write(Path, Body)}). */
    public static void write(Path target, byte[] content) throws IOException {
        write(target, ch -> {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(content);
            while (b.hasRemaining()) {
                ch.write(b);
            }
        });
    }

    /** Renames {@code from} over {@code to} atomically (where the file system can) and syncs the directory. */
    public static void moveAtomically(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
        syncDirectory(to.toAbsolutePath().getParent());
    }

    /** Makes a directory's entries (renames, creations) durable, where the file system can. */
    public static void syncDirectory(Path dir) {
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true);
        } catch (IOException ignored) {
            // not every file system syncs a directory; the rename itself stays atomic
        }
    }
}
