package dev.kiln.io;

import com.google.protobuf.ByteString;
import dev.kiln.internal.onnx.Onnx.AttributeProto;
import dev.kiln.internal.onnx.Onnx.GraphProto;
import dev.kiln.internal.onnx.Onnx.ModelProto;
import dev.kiln.internal.onnx.Onnx.NodeProto;
import dev.kiln.internal.onnx.Onnx.StringStringEntryProto;
import dev.kiln.internal.onnx.Onnx.TensorProto;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * ONNX tensors whose data lives in files beside the model ({@code data_location = EXTERNAL}, as
 * {@code onnx.save_model(..., save_as_external_data=True)} and exporters of models over protobuf's
 * 2 GiB write them): keys {@code location} (a path relative to the model's directory),
 * {@code offset} and {@code length} (bytes; the offset defaults to 0, the length to the tensor's
 * size) and {@code checksum} (the SHA-1 of those bytes, hex, checked when present).
 *
 * <p>The rules, each refused by name when broken: the location is relative, names a regular file
 * inside the model's directory (no {@code ..}, no absolute path, no link out of it), the range lies
 * inside the file and holds exactly the tensor's bytes (its dims times its element size), and the
 * ranges of one file do not overlap. Reading is therefore bounded by the files' sizes.
 *
 * <p>{@link #save} writes a model that way: every initializer's bytes in one file beside the model
 * (its name + {@code .data}), 64-byte aligned, each with its SHA-1, so that a model file paired with
 * another save's data file is refused rather than loaded with the wrong weights.
 */
final class OnnxExternalData {
    private OnnxExternalData() {}

    /** The name of the first initializer or Constant tensor of g that keeps its data outside the model, or null. */
    static String firstExternal(GraphProto g) {
        for (TensorProto t : g.getInitializerList()) {
            if (t.getDataLocation() == TensorProto.DataLocation.EXTERNAL) {
                return t.getName();
            }
        }
        for (NodeProto n : g.getNodeList()) {
            for (AttributeProto a : n.getAttributeList()) {
                if (a.hasT() && a.getT().getDataLocation() == TensorProto.DataLocation.EXTERNAL) {
                    return a.getT().getName().isEmpty() ? n.getName() : a.getT().getName();
                }
            }
        }
        return null;
    }

    /** The bytes of g's initializers kept in raw_data. */
    static long rawBytes(GraphProto g) {
        long n = 0;
        for (TensorProto t : g.getInitializerList()) {
            n += t.getRawData().size();
        }
        return n;
    }

    /**
     * Writes m to file with every raw_data initializer moved into file + ".data" (written first;
     * both fsynced and renamed into place).
     */
    static void save(ModelProto m, Path file) throws IOException {
        Path name = file.getFileName();
        if (name == null) {
            throw new IllegalArgumentException("onnx: '" + file + "' names no file");
        }
        String location = name + ".data";
        GraphProto.Builder g = m.getGraph().toBuilder();
        List<ByteString> data = new ArrayList<>();
        long offset = 0;
        for (int i = 0; i < g.getInitializerCount(); i++) {
            TensorProto t = g.getInitializer(i);
            if (!t.hasRawData()) {
                continue;
            }
            offset = (offset + 63) / 64 * 64;
            ByteString raw = t.getRawData();
            data.add(raw);
            g.setInitializer(i, t.toBuilder().clearRawData().setDataLocation(TensorProto.DataLocation.EXTERNAL)
                    .addExternalData(entry("location", location)).addExternalData(entry("offset", Long.toString(offset)))
                    .addExternalData(entry("length", Integer.toString(raw.size())))
                    .addExternalData(entry("checksum", sha1(raw.asReadOnlyByteBuffer()))));
            offset += raw.size();
        }
        AtomicFiles.write(file.resolveSibling(location), ch -> {
            long at = 0;
            ByteBuffer zeros = ByteBuffer.allocate(64);
            for (ByteString raw : data) {
                zeros.clear().limit((int) ((64 - at % 64) % 64));
                at += zeros.remaining();
                while (zeros.hasRemaining()) {
                    ch.write(zeros);
                }
                ByteBuffer b = raw.asReadOnlyByteBuffer();
                at += b.remaining();
                while (b.hasRemaining()) {
                    ch.write(b);
                }
            }
        });
        AtomicFiles.write(file, m.toBuilder().setGraph(g).build().toByteArray());
    }

    private static StringStringEntryProto entry(String key, String value) {
        return StringStringEntryProto.newBuilder().setKey(key).setValue(value).build();
    }

    /** m with every external tensor's data read into raw_data, from files beside modelFile. */
    static ModelProto resolve(ModelProto m, Path modelFile) throws IOException {
        if (firstExternal(m.getGraph()) == null) {
            return m;
        }
        Path dir = modelFile.toAbsolutePath().getParent();
        Reader r = new Reader(dir == null ? Path.of("").toAbsolutePath() : dir);
        GraphProto.Builder g = m.getGraph().toBuilder();
        for (int i = 0; i < g.getInitializerCount(); i++) {
            TensorProto t = g.getInitializer(i);
            if (t.getDataLocation() == TensorProto.DataLocation.EXTERNAL) {
                g.setInitializer(i, r.read(t));
            }
        }
        for (int i = 0; i < g.getNodeCount(); i++) {
            NodeProto n = g.getNode(i);
            for (int j = 0; j < n.getAttributeCount(); j++) {
                AttributeProto a = n.getAttribute(j);
                if (a.hasT() && a.getT().getDataLocation() == TensorProto.DataLocation.EXTERNAL) {
                    g.getNodeBuilder(i).setAttribute(j, a.toBuilder().setT(r.read(a.getT())));
                }
            }
        }
        return m.toBuilder().setGraph(g).build();
    }

    /** Bytes per element of an ONNX data type, or 0 where it has no fixed size. */
    static int elementBytes(int dataType) {
        switch (dataType) {
            case TensorProto.DataType.UINT8_VALUE: case TensorProto.DataType.INT8_VALUE: case TensorProto.DataType.BOOL_VALUE:
                return 1;
            case TensorProto.DataType.UINT16_VALUE: case TensorProto.DataType.INT16_VALUE:
            case TensorProto.DataType.FLOAT16_VALUE: case TensorProto.DataType.BFLOAT16_VALUE:
                return 2;
            case TensorProto.DataType.FLOAT_VALUE: case TensorProto.DataType.INT32_VALUE: case TensorProto.DataType.UINT32_VALUE:
                return 4;
            case TensorProto.DataType.INT64_VALUE: case TensorProto.DataType.UINT64_VALUE:
            case TensorProto.DataType.DOUBLE_VALUE: case TensorProto.DataType.COMPLEX64_VALUE:
                return 8;
            case TensorProto.DataType.COMPLEX128_VALUE:
                return 16;
            default:
                return 0;
        }
    }

    private static final class Reader {
        final Path dir;
        final Path realDir;
        // Ranges already read, per file: [offset, end) pairs, to refuse overlaps.
        final Map<Path, List<long[]>> ranges = new HashMap<>();

        Reader(Path dir) throws IOException {
            this.dir = dir;
            this.realDir = dir.toRealPath();
        }

        TensorProto read(TensorProto t) throws IOException {
            String name = t.getName();
            String location = null, checksum = null;
            long offset = 0, length = -1;
            for (StringStringEntryProto e : t.getExternalDataList()) {
                switch (e.getKey()) {
                    case "location" -> location = e.getValue();
                    case "offset" -> offset = number(name, "offset", e.getValue());
                    case "length" -> length = number(name, "length", e.getValue());
                    case "checksum" -> checksum = e.getValue();
                    default -> { } // other keys (e.g. basepath, written by some tools) carry nothing Kiln needs
                }
            }
            if (location == null || location.isEmpty()) {
                throw refuse(name, "names no location");
            }
            long need = bytes(t);
            if (length >= 0 && length != need) {
                throw refuse(name, "is " + length + " bytes long in '" + location + "', but its dims and type make "
                        + need + " bytes");
            }
            Path file = inside(name, location);
            long size = Files.size(file);
            if (offset > size || need > size - offset) {
                throw refuse(name, "lies at bytes " + offset + ".." + (offset + need) + " of '" + location + "', which has "
                        + size + " bytes (truncated, or the offset is wrong)");
            }
            List<long[]> used = ranges.computeIfAbsent(file, k -> new ArrayList<>());
            for (long[] u : used) {
                if (offset < u[1] && u[0] < offset + need) {
                    throw refuse(name, "overlaps another tensor's bytes " + u[0] + ".." + u[1] + " in '" + location + "'");
                }
            }
            used.add(new long[] {offset, offset + need});
            ByteBuffer data = ByteBuffer.allocate((int) need);
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                while (data.hasRemaining()) {
                    if (ch.read(data, offset + data.position()) < 0) {
                        throw refuse(name, "ends early: '" + location + "' changed while it was read");
                    }
                }
            }
            data.flip();
            if (checksum != null && !checksum.equalsIgnoreCase(sha1(data.duplicate()))) {
                throw refuse(name, "does not match its SHA-1 checksum in '" + location + "' (modified or corrupt)");
            }
            return t.toBuilder().clearExternalData().clearDataLocation()
                    .setRawData(com.google.protobuf.UnsafeByteOperations.unsafeWrap(data)).build(); // data is not written again
        }

        /** The file a location names, refused unless it is a regular file inside the model's directory. */
        Path inside(String name, String location) throws IOException {
            Path rel;
            try {
                rel = Path.of(location);
            } catch (java.nio.file.InvalidPathException e) {
                throw refuse(name, "names an invalid location '" + location + "'");
            }
            if (rel.isAbsolute() || rel.getRoot() != null) {
                throw refuse(name, "names an absolute location '" + location + "' (it must be relative to the model's "
                        + "directory)");
            }
            for (Path part : rel) {
                if (part.toString().equals("..")) {
                    throw refuse(name, "names a location outside the model's directory: '" + location + "'");
                }
            }
            Path file = dir.resolve(rel).normalize();
            if (!Files.exists(file, LinkOption.NOFOLLOW_LINKS)) {  // a dangling link exists: toRealPath below names it
                throw new NoSuchFileException(file.toString(), null, "onnx: tensor '" + name
                        + "' keeps its data in '" + location + "', which is not beside the model");
            }
            Path real;
            try {
                real = file.toRealPath();
            } catch (NoSuchFileException e) {
                throw new NoSuchFileException(file.toString(), null, "onnx: tensor '" + name + "' keeps its data in '"
                        + location + "', a link to nothing");
            }
            if (!real.startsWith(realDir)) {
                throw refuse(name, "names a location that leads outside the model's directory: '" + location + "'");
            }
            if (!Files.isRegularFile(real)) {
                throw refuse(name, "names '" + location + "', which is not a regular file");
            }
            return real;
        }
    }

    /** The byte size the tensor's dims and data type give it, refused where there is none. */
    private static long bytes(TensorProto t) {
        int each = elementBytes(t.getDataType());
        if (each == 0) {
            throw refuse(t.getName(), "has data type " + t.getDataType() + ", which has no fixed size to read from a file");
        }
        long count = 1;
        for (long d : t.getDimsList()) {
            if (d < 0) {
                throw refuse(t.getName(), "has a negative dim " + d);
            }
        }
        for (long d : t.getDimsList()) {
            if (d == 0) {
                return 0;
            }
            count = count > Integer.MAX_VALUE / d ? Integer.MAX_VALUE + 1L : count * d;
        }
        if (count > (Integer.MAX_VALUE - 8) / each) {
            throw refuse(t.getName(), "is larger than 2 GiB (Kiln reads one tensor into one array)");
        }
        return count * each;
    }

    private static long number(String name, String key, String v) {
        try {
            long n = Long.parseLong(v.trim());
            if (n >= 0) {
                return n;
            }
        } catch (NumberFormatException e) {
            // refused below
        }
        throw refuse(name, "has " + key + " '" + v + "': not a byte count");
    }

    private static String sha1(ByteBuffer b) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-1");
            md.update(b);
            return java.util.HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-1 is missing from this JVM", e);
        }
    }

    static IllegalArgumentException refuse(String tensor, String what) {
        return new IllegalArgumentException("onnx: external data of tensor '" + tensor + "' " + what);
    }
}
