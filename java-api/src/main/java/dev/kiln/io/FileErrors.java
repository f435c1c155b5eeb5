package dev.kiln.io;

import java.nio.file.Path;

/**
 * Errors of a load from a path name the file: a refusal of the content (an IllegalArgumentException
 * whose message starts with the format's tag, such as {@code "onnx: "}) is thrown again with the
 * path in place of the tag, {@code "models/m.onnx: unsupported op Erf at node '/2/Erf'"}, the way
 * {@link KilnFile} names its files. The same refusals of bytes in memory keep the tag.
 */
final class FileErrors {
    private FileErrors() {}

    /** {@code e} with its message naming {@code file} (the original as the cause). */
    static IllegalArgumentException naming(Path file, String tag, IllegalArgumentException e) {
        String m = String.valueOf(e.getMessage());
        String where = file.toString();
        if (m.startsWith(where + ": ")) {
            return e; // named already (KilnFile's own checks)
        }
        String rest = m.startsWith(tag + ": ") ? m.substring(tag.length() + 2) : m;
        return new IllegalArgumentException(where + ": " + rest, e);
    }
}
