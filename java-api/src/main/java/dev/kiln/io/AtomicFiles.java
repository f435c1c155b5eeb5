package dev.kiln.io;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermission;
import java.security.SecureRandom;
import java.util.Set;

/**
 * How Kiln replaces a file so that a crash leaves either the old file or the new one, never a part:
 * create the directory if it is missing, write a temporary file in it, fsync it, rename it over the
 * target, fsync the directory. Used by every file Kiln writes: model files (Kiln, safetensors, ONNX),
 * checkpoints, encrypted artifacts, HTML reports and the registry. A new file gets the permissions any
 * new file gets (0666 less the process's umask: 0644 under the usual 022); a replaced file keeps its
 * POSIX permissions.
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
        Path tmp = null;
        try {
            FileChannel ch = null;
            while (ch == null) {
                // Created as any new file is (mode 0666 less the umask), not as Files.createTempFile's
                // owner-only 0600: a model saved for a service running as another user stays readable.
                tmp = dir.resolve("." + target.getFileName() + "." + Long.toUnsignedString(RANDOM.nextLong(), 36) + ".tmp");
                try {
                    ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
                } catch (FileAlreadyExistsException taken) {
                    tmp = null;
                }
            }
            try (FileChannel c = ch) {
                keepPermissions(target, tmp);
                body.write(c);
                c.force(true);
            }
            moveAtomically(tmp, target);
        } finally {
            if (tmp != null) {
                Files.deleteIfExists(tmp);
            }
        }
    }

    private static final SecureRandom RANDOM = new SecureRandom();

    /** A file replaced keeps its POSIX permissions (an 0640 model stays 0640). */
    private static void keepPermissions(Path target, Path tmp) throws IOException {
        PosixFileAttributeView old = Files.getFileAttributeView(target, PosixFileAttributeView.class);
        if (old == null) {
            return; // not a POSIX file system
        }
        Set<PosixFilePermission> perms;
        try {
            perms = old.readAttributes().permissions();
        } catch (NoSuchFileException | java.nio.file.AccessDeniedException none) {
            return; // a new file
        }
        Files.setPosixFilePermissions(tmp, perms);
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
