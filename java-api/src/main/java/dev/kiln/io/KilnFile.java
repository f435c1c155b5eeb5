package dev.kiln.io;

import dev.kiln.internal.bindings.KilnNative;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.NativeAccess;
import dev.kiln.tensor.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.zip.CRC32C;

/**
 * Kiln's artifact format: tensors and free metadata, loadable by memory mapping without a copy.
 *
 * <pre>
 * offset 0   8 bytes  magic "KILNFILE"
 *        8   u32      format version (this Kiln writes 2 and reads 1 and 2; a newer one is refused)
 *       12   u32      version 2: CRC-32C of bytes 16 .. 24 + H (the header length and the header);
 *                     version 1: reserved, 0, not checked
 *       16   u64      header length H (at most 64 MiB)
 *       24   H bytes  header: UTF-8 JSON {"tensors": [{"name", "dtype", "shape", "offset", "length",
 *                     "crc32c"}, ...], "metadata": {"key": "value", ...}}
 *            zero padding to a multiple of 64: the data section starts there (D)
 *        D   data     each tensor at D + offset, offset a multiple of 64, length bytes, in offset
 *                     order, without overlap; the file ends at D + (the last end rounded up to 64)
 * </pre>
 *
 * All integers are little-endian. Every field is checked before it is used: magic, version,
 * header length against the file, the header's CRC-32C (version 2: a flipped bit in a name, a
 * shape or the metadata is caught like one in the data), strict JSON (no duplicate keys, depth 16 at most), names (unique,
 * not empty), dtypes, shapes (length = element count x element size, without overflow), offsets
 * and lengths inside the data, no overlap, and each tensor's CRC-32C when it is read or mapped.
 */
public final class KilnFile {
    public static final int VERSION = 2;
    public static final long MAX_HEADER_BYTES = 64L << 20;
    static final byte[] MAGIC = {'K', 'I', 'L', 'N', 'F', 'I', 'L', 'E'};
    private static final int ALIGN = 64;

    private KilnFile() {}

    // ---- writing ----------------------------------------------------------------------------------

    /**
     * Writes {@code tensors} (in name order) and {@code metadata} to {@code file} atomically: a
     * temporary file in the same directory, fsynced, then renamed over {@code file}.
     */
    public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
        Objects.requireNonNull(file, "file");
        AtomicFiles.write(file, ch -> write(ch, tensors, metadata));
    }

    /** The file image in memory (for small artifacts: encryption, tests). */
    public static byte[] toBytes(Map<String, Tensor> tensors, Map<String, String> metadata) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            write(Channels.newChannel(out), tensors, metadata);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /** Writes the format to a channel (streaming: tensor data is never copied onto the heap whole). */
    public static void write(WritableByteChannel out, Map<String, Tensor> tensors, Map<String, String> metadata)
            throws IOException {
        Objects.requireNonNull(tensors, "tensors");
        Map<String, Tensor> sorted = new TreeMap<>(tensors);
        List<Tensor> contiguous = new ArrayList<>();
        List<Tensor> copies = new ArrayList<>();
        try {
            StringBuilder json = new StringBuilder("{\"tensors\":[");
            long offset = 0;
            boolean first = true;
            for (Map.Entry<String, Tensor> e : sorted.entrySet()) {
                String name = e.getKey();
                Tensor t = Objects.requireNonNull(e.getValue(), name);
                if (name.isEmpty() || name.length() > 1024) {
                    throw new IllegalArgumentException("kiln file: tensor name '" + (name.length() > 40 ? name.substring(0, 40)
                            + "...' (" + name.length() + " characters)" : name + "'") + " must have 1..1024 characters");
                }
                Tensor c = t.isContiguous() ? t : t.copy();
                if (c != t) {
                    copies.add(c);
                }
                contiguous.add(c);
                long bytes = c.byteSize();
                json.append(first ? "" : ",").append("{\"name\":").append(Json.quote(name)).append(",\"dtype\":\"")
                        .append(c.dtype().name()).append("\",\"shape\":")
                        .append(java.util.Arrays.toString(c.shape()).replace(" ", "")).append(",\"offset\":").append(offset)
                        .append(",\"length\":").append(bytes).append(",\"crc32c\":").append(crc(c)).append('}');
                offset = align(offset + bytes);
                first = false;
            }
            json.append("],\"metadata\":{");
            first = true;
            if (metadata != null) {
                for (Map.Entry<String, String> m : new TreeMap<>(metadata).entrySet()) {
                    json.append(first ? "" : ",").append(Json.quote(m.getKey())).append(':')
                            .append(Json.quote(Objects.requireNonNull(m.getValue(), "metadata value")));
                    first = false;
                }
            }
            json.append("}}");
            byte[] header = json.toString().getBytes(StandardCharsets.UTF_8);
            long dataStart = align(24L + header.length);
            ByteBuffer head = ByteBuffer.allocate((int) dataStart).order(ByteOrder.LITTLE_ENDIAN);
            head.put(MAGIC).putInt(VERSION).putInt(0).putLong(header.length).put(header);
            head.putInt(12, (int) headerCrc(head, header.length));
            head.position(0);
            writeFully(out, head);
            long written = 0;
            for (Tensor c : contiguous) {
                long bytes = c.byteSize();
                NativeAccess.acquire(c);
                try {
                    for (long pos = 0; pos < bytes; pos += 1 << 30) {
                        long n = Math.min(1 << 30, bytes - pos);
                        writeFully(out, KilnNative.byteBuffer(NativeAccess.address(c) + pos, n));
                    }
                } finally {
                    NativeAccess.release(c);
                }
                long pad = align(written + bytes) - (written + bytes);
                writeFully(out, ByteBuffer.allocate((int) pad));
                written = align(written + bytes);
            }
        } finally {
            copies.forEach(Tensor::close);
        }
    }

    /** CRC-32C of the header length and the header (bytes 16 .. 24 + h of the image). */
    private static long headerCrc(ByteBuffer image, long h) {
        CRC32C crc = new CRC32C();
        crc.update(image.duplicate().position(16).limit((int) (24 + h)));
        return crc.getValue();
    }

    private static long crc(Tensor c) {
        CRC32C crc = new CRC32C();
        long bytes = c.byteSize();
        NativeAccess.acquire(c);
        try {
            for (long pos = 0; pos < bytes; pos += 1 << 30) {
                long n = Math.min(1 << 30, bytes - pos);
                crc.update(KilnNative.byteBuffer(NativeAccess.address(c) + pos, n));
            }
        } finally {
            NativeAccess.release(c);
        }
        return crc.getValue();
    }

    private static void writeFully(WritableByteChannel out, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            out.write(b);
        }
    }

    private static long align(long x) {
        return (x + ALIGN - 1) / ALIGN * ALIGN;
    }

    // ---- reading ----------------------------------------------------------------------------------

    private record Entry(String name, DType dtype, long[] shape, long offset, long length, long crc) {}

    private record Layout(List<Entry> entries, Map<String, String> metadata, long dataStart) {}

    /** Parses and checks the fixed header and the JSON header of an image of {@code size} bytes. */
    private static Layout layout(ByteBuffer head, long size, String where) {
        if (size < 24) {
            throw new IllegalArgumentException(where + ": not a Kiln file (" + size + " bytes)");
        }
        head = head.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        byte[] magic = new byte[8];
        head.get(0, magic);
        if (!java.util.Arrays.equals(magic, MAGIC)) {
            throw new IllegalArgumentException(where + ": not a Kiln file (bad magic)");
        }
        int version = head.getInt(8);
        if (version > VERSION || version < 1) {
            throw new IllegalArgumentException(where + ": format version " + Integer.toUnsignedString(version)
                    + (version > VERSION ? " is newer than this Kiln reads (" + VERSION + "): upgrade Kiln" : " is invalid"));
        }
        long h = head.getLong(16);
        if (h < 2 || h > MAX_HEADER_BYTES || h > size - 24) {
            throw new IllegalArgumentException(where + ": header length " + Long.toUnsignedString(h)
                    + " is invalid for a file of " + size + " bytes");
        }
        if (head.limit() < 24 + h) {
            throw new IllegalArgumentException(where + ": truncated header");
        }
        if (version >= 2 && Integer.toUnsignedLong(head.getInt(12)) != headerCrc(head, h)) {
            throw new IllegalArgumentException(where + ": the header fails its checksum (corrupt file)");
        }
        byte[] header = new byte[(int) h];
        head.get(24, header);
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(header)).toString();
        } catch (CharacterCodingException e) {
            throw new IllegalArgumentException(where + ": the header is not valid UTF-8");
        }
        Object root;
        try {
            root = Json.parse(text);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(where + ": " + e.getMessage());
        }
        if (!(root instanceof Map<?, ?> top) || !(top.get("tensors") instanceof List<?> list)
                || !(top.get("metadata") instanceof Map<?, ?> meta) || top.size() != 2) {
            throw new IllegalArgumentException(where + ": the header must be {\"tensors\": [...], \"metadata\": {...}}");
        }
        long dataStart = align(24 + h);
        long dataLength = size - dataStart;
        if (dataLength < 0) {
            throw new IllegalArgumentException(where + ": truncated before the data section");
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        for (Map.Entry<?, ?> m : meta.entrySet()) {
            if (!(m.getValue() instanceof String v)) {
                throw new IllegalArgumentException(where + ": metadata value of '" + m.getKey() + "' is not a string");
            }
            metadata.put((String) m.getKey(), v);
        }
        List<Entry> entries = new ArrayList<>();
        Set<String> names = new HashSet<>();
        for (Object o : list) {
            Entry e = entry(o, where);
            if (!names.add(e.name())) {
                throw new IllegalArgumentException(where + ": tensor '" + e.name() + "' appears twice");
            }
            if (e.offset() + e.length() > dataLength) {
                throw new IllegalArgumentException(where + ": tensor '" + e.name() + "' ends at " + (e.offset() + e.length())
                        + ", past the " + dataLength + " bytes of data (truncated or hostile file)");
            }
            entries.add(e);
        }
        List<Entry> byOffset = new ArrayList<>(entries);
        byOffset.sort(Comparator.comparingLong(Entry::offset));
        long end = 0;
        for (Entry e : byOffset) {
            if (e.offset() < end) {
                throw new IllegalArgumentException(where + ": tensor '" + e.name() + "' at " + e.offset()
                        + " overlaps the tensor before it (which ends at " + end + ")");
            }
            end = e.offset() + e.length();
        }
        if (align(end) != dataLength) {
            throw new IllegalArgumentException(where + ": the data section holds " + dataLength + " bytes but the tensors "
                    + "need " + align(end) + " (truncated or extended file)");
        }
        return new Layout(entries, metadata, dataStart);
    }

    private static Entry entry(Object o, String where) {
        if (!(o instanceof Map<?, ?> m)) {
            throw new IllegalArgumentException(where + ": a tensor entry is not an object");
        }
        if (!(m.get("name") instanceof String name) || name.isEmpty() || name.length() > 1024) {
            throw new IllegalArgumentException(where + ": a tensor has no valid name");
        }
        String at = where + ": tensor '" + name + "'";
        if (!(m.get("dtype") instanceof String dt)) {
            throw new IllegalArgumentException(at + " has no dtype");
        }
        DType dtype;
        try {
            dtype = DType.valueOf(dt);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(at + " has unknown dtype '" + dt + "'");
        }
        if (!(m.get("shape") instanceof List<?> dims) || dims.size() > 8) {
            throw new IllegalArgumentException(at + " has no valid shape (a list of at most 8 dimensions)");
        }
        long[] shape = new long[dims.size()];
        long numel = 1;
        for (int i = 0; i < shape.length; i++) {
            if (!(dims.get(i) instanceof Long d) || d < 0 || d > (1L << 40)) {
                throw new IllegalArgumentException(at + " has dimension " + dims.get(i) + ": must be in 0..2^40");
            }
            shape[i] = d;
            try {
                numel = Math.multiplyExact(numel, d);
            } catch (ArithmeticException e) {
                throw new IllegalArgumentException(at + ": shape overflows");
            }
        }
        long bytes;
        try {
            bytes = dtype.bytesFor(numel);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException(at + ": shape overflows");
        }
        if (!(m.get("offset") instanceof Long off) || off < 0 || off % ALIGN != 0 || off > (1L << 62)) {
            throw new IllegalArgumentException(at + " has an invalid offset (must be >= 0 and a multiple of 64)");
        }
        if (!(m.get("length") instanceof Long len) || len != bytes) {
            throw new IllegalArgumentException(at + " has length " + m.get("length") + " but its shape needs " + bytes + " bytes");
        }
        if (!(m.get("crc32c") instanceof Long crc) || crc < 0 || crc > 0xffffffffL) {
            throw new IllegalArgumentException(at + " has no valid crc32c");
        }
        if (m.size() != 6) {
            throw new IllegalArgumentException(at + " has unknown fields");
        }
        return new Entry(name, dtype, shape, off, len, crc);
    }

    /** The fixed header and the JSON header (only as many bytes as the header length says, once checked). */
    private static ByteBuffer readHead(FileChannel ch, long size) throws IOException {
        ByteBuffer fixed = ByteBuffer.allocate((int) Math.min(size, 24)).order(ByteOrder.LITTLE_ENDIAN);
        readAt(ch, fixed, 0);
        if (size < 24) {
            return fixed.flip();
        }
        long h = fixed.getLong(16);
        if (h < 2 || h > MAX_HEADER_BYTES || h > size - 24) {
            return fixed.flip(); // layout() names the problem
        }
        ByteBuffer head = ByteBuffer.allocate((int) (24 + h));
        readAt(ch, head, 0);
        return head.flip();
    }

    private static void readAt(FileChannel ch, ByteBuffer b, long pos) throws IOException {
        while (b.hasRemaining()) {
            int r = ch.read(b, pos + b.position());
            if (r < 0) {
                break;
            }
        }
    }

    /** Reads a file into native tensors (copied; checksums verified). */
    public static TensorSet read(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            Layout l = layout(readHead(ch, size), size, file.toString());
            return load(l, file.toString(), (e, dst) -> {
                long pos = l.dataStart() + e.offset();
                while (dst.hasRemaining()) {
                    int r = ch.read(dst, pos);
                    if (r < 0) {
                        throw new IOException(file + ": truncated");
                    }
                    pos += r;
                }
            });
        }
    }

    /** Reads an in-memory image (for example a decrypted artifact). */
    public static TensorSet fromBytes(byte[] image) {
        Objects.requireNonNull(image, "image");
        ByteBuffer all = ByteBuffer.wrap(image);
        Layout l = layout(all, image.length, "kiln file");
        try {
            return load(l, "kiln file", (e, dst) -> dst.put(all.duplicate().position((int) (l.dataStart() + e.offset()))
                    .limit((int) (l.dataStart() + e.offset() + e.length()))));
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private interface Filler {
        void fill(Entry e, ByteBuffer dst) throws IOException;
    }

    private static TensorSet load(Layout l, String where, Filler filler) throws IOException {
        LinkedHashMap<String, Tensor> out = new LinkedHashMap<>();
        try {
            for (Entry e : l.entries()) {
                Tensor t = Tensor.zeros(e.dtype(), e.shape());
                out.put(e.name(), t);
                NativeAccess.acquire(t);
                try {
                    CRC32C crc = new CRC32C();
                    for (long pos = 0; pos < e.length(); pos += 1 << 30) {
                        long n = Math.min(1 << 30, e.length() - pos);
                        ByteBuffer dst = KilnNative.byteBuffer(NativeAccess.address(t) + pos, n);
                        Entry part = new Entry(e.name(), e.dtype(), e.shape(), e.offset() + pos, n, e.crc());
                        filler.fill(part, dst);
                        dst.flip();
                        crc.update(dst);
                    }
                    if (crc.getValue() != e.crc()) {
                        throw new IllegalArgumentException(where + ": tensor '" + e.name() + "' fails its checksum (corrupt file)");
                    }
                } finally {
                    NativeAccess.release(t);
                }
            }
            return new TensorSet(out, l.metadata());
        } catch (IOException | RuntimeException e) {
            out.values().forEach(Tensor::close);
            throw e;
        }
    }

    /**
     * Maps a file: each tensor is a view of its bytes in the page cache (copy-on-write: writing to
     * a tensor never changes the file), so loading costs no copy and no heap beyond the header.
     * With {@code verify}, each tensor's checksum is checked first (this reads the pages once). A
     * file this process may not open for writing (which a private mapping requires) is
     * {@link #read} into native memory instead.
     */
    public static TensorSet map(Path file, boolean verify) throws IOException {
        LinkedHashMap<String, Tensor> out = new LinkedHashMap<>();
        FileChannel opened;
        try {
            // A private (copy-on-write) mapping needs a channel open for writing, though nothing is
            // ever written to the file. A file we may not write is read into native memory instead.
            opened = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
        } catch (java.nio.file.AccessDeniedException | UnsupportedOperationException e) {
            return read(file);
        }
        try (FileChannel ch = opened) {
            long size = ch.size();
            Layout l = layout(readHead(ch, size), size, file.toString());
            for (Entry e : l.entries()) {
                if (e.length() > Integer.MAX_VALUE) {
                    throw new UnsupportedOperationException(file + ": tensor '" + e.name() + "' has " + e.length()
                            + " bytes: a mapped tensor is at most 2 GiB (use read)");
                }
                ByteBuffer mapping = e.length() == 0 ? ByteBuffer.allocateDirect(0)
                        : ch.map(FileChannel.MapMode.PRIVATE, l.dataStart() + e.offset(), e.length());
                if (verify) {
                    CRC32C crc = new CRC32C();
                    crc.update(mapping.duplicate());
                    if (crc.getValue() != e.crc()) {
                        throw new IllegalArgumentException(file + ": tensor '" + e.name() + "' fails its checksum (corrupt file)");
                    }
                }
                out.put(e.name(), NativeAccess.wrapMapped(mapping, e.dtype(), e.shape()));
            }
            return new TensorSet(out, l.metadata());
        } catch (IOException | RuntimeException e) {
            out.values().forEach(Tensor::close);
            throw e;
        }
    }
}
