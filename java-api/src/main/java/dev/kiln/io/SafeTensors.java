package dev.kiln.io;

import dev.kiln.tensor.DType;
import dev.kiln.tensor.NativeAccess;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * The safetensors format (how PyTorch users save weights): an 8-byte little-endian header length
 * N, N bytes of UTF-8 JSON ({@code name -> {dtype, shape, data_offsets}} and an optional
 * {@code __metadata__} map of strings), then the tensor bytes. Kiln reads and writes F32, BF16, F16,
 * I8, U8 and I32 tensors.
 *
 * <p>Reading follows the format's rules strictly and checks every length and offset before use:
 * the header length fits the file and 100 MiB; the JSON is well-formed UTF-8 with no duplicate keys;
 * each entry has exactly dtype, shape and data_offsets; shapes are non-negative and their byte size
 * matches the offsets; the offsets are contiguous, non-overlapping and cover the data exactly.
 * Anything else is refused with IllegalArgumentException naming the tensor and the rule; nothing is
 * allocated for a file that fails.
 */
public final class SafeTensors {
    /** Largest header accepted (the reference implementation's limit). */
    public static final long MAX_HEADER_BYTES = 100L << 20;

    private SafeTensors() {}

    private static final class Entry {
        String name;
        DType dtype;
        long[] shape;
        long begin;
        long end;
    }

    /**
     * Reads every tensor of a safetensors file into new native tensors. A refused file throws
     * IllegalArgumentException with a message that starts with the path.
     */
    public static TensorSet read(Path file) throws IOException {
        Objects.requireNonNull(file, "file");
        try {
            return readFile(file);
        } catch (IllegalArgumentException e) {
            throw FileErrors.naming(file, "safetensors", e);
        }
    }

    private static TensorSet readFile(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, lenBuf, 0, file);
            long n = headerLength(lenBuf.getLong(0), size);
            ByteBuffer header = ByteBuffer.allocate((int) n);
            readFully(ch, header, 8, file);
            Parsed p = parseHeader(header.array(), size - 8 - n);
            return materialize(p, (t, e) -> readFully(ch, t, 8 + n + e.begin, file));
        }
    }

    /** Reads a safetensors image held in memory. */
    public static TensorSet read(byte[] data) {
        Objects.requireNonNull(data, "data");
        ByteBuffer all = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        if (data.length < 8) {
            throw new IllegalArgumentException("safetensors: " + data.length + " bytes: too short for the 8-byte header length");
        }
        long n = headerLength(all.getLong(0), data.length);
        Parsed p = parseHeader(Arrays.copyOfRange(data, 8, 8 + (int) n), data.length - 8 - n);
        try {
            return materialize(p, (t, e) -> t.put(data, (int) (8 + n + e.begin), (int) (e.end - e.begin)));
        } catch (IOException e) {
            throw new AssertionError(e); // no I/O on a byte array
        }
    }

    /** Writes tensors (F32, BF16, F16, I8, U8, I32; any layout) and string metadata, atomically. */
    public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
        Objects.requireNonNull(file, "file");
        AtomicFiles.write(file, toBytes(tensors, metadata));
    }

    /** The safetensors image of {@code tensors} (sorted by name) and {@code metadata}. */
    public static byte[] toBytes(Map<String, Tensor> tensors, Map<String, String> metadata) {
        Objects.requireNonNull(tensors, "tensors");
        Map<String, Tensor> sorted = new TreeMap<>(tensors);
        StringBuilder json = new StringBuilder("{");
        boolean first = true;
        if (metadata != null && !metadata.isEmpty()) {
            json.append("\"__metadata__\":{");
            boolean f2 = true;
            for (Map.Entry<String, String> m : new TreeMap<>(metadata).entrySet()) {
                json.append(f2 ? "" : ",").append(Json.quote(m.getKey())).append(':')
                        .append(Json.quote(Objects.requireNonNull(m.getValue(), "metadata value")));
                f2 = false;
            }
            json.append('}');
            first = false;
        }
        long offset = 0;
        for (Map.Entry<String, Tensor> e : sorted.entrySet()) {
            String name = e.getKey();
            Tensor t = Objects.requireNonNull(e.getValue(), name);
            if (name.isEmpty() || name.equals("__metadata__")) {
                throw new IllegalArgumentException("safetensors: tensor name '" + name + "' is not allowed");
            }
            String dt = formatName(t.dtype());
            long bytes = t.byteSize();
            json.append(first ? "" : ",").append(Json.quote(name)).append(":{\"dtype\":\"").append(dt)
                    .append("\",\"shape\":").append(Arrays.toString(t.shape()).replace(" ", ""))
                    .append(",\"data_offsets\":[").append(offset).append(',').append(offset + bytes).append("]}");
            offset += bytes;
            first = false;
        }
        json.append('}');
        byte[] header = json.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (header.length + 7) / 8 * 8;
        if (8L + padded + offset > Integer.MAX_VALUE - 8) {
            throw new UnsupportedOperationException("safetensors: " + offset + " bytes of data: use a file of at most 2 GiB");
        }
        ByteBuffer out = ByteBuffer.allocate((int) (8 + padded + offset)).order(ByteOrder.LITTLE_ENDIAN);
        out.putLong(padded);
        out.put(header);
        for (int i = header.length; i < padded; i++) {
            out.put((byte) ' ');
        }
        for (Tensor t : sorted.values()) {
            Tensor c = t.isContiguous() ? t : t.copy();
            try {
                NativeAccess.acquire(c);
                try {
                    ByteBuffer src = NativeAccess.rawBytes(c).order(ByteOrder.nativeOrder());
                    out.put(src);
                } finally {
                    NativeAccess.release(c);
                }
            } finally {
                if (c != t) {
                    c.close();
                }
            }
        }
        return out.array();
    }

    // ---- reading ----------------------------------------------------------------------------------

    private static final class Parsed {
        final List<Entry> entries;
        final Map<String, String> metadata;

        Parsed(List<Entry> entries, Map<String, String> metadata) {
            this.entries = entries;
            this.metadata = metadata;
        }
    }

    private interface Filler {
        void fill(ByteBuffer target, Entry e) throws IOException;
    }

    private static long headerLength(long n, long fileSize) {
        if (n < 2 || n > MAX_HEADER_BYTES || n > fileSize - 8) {
            throw new IllegalArgumentException("safetensors: header length " + Long.toUnsignedString(n)
                    + " is invalid for a file of " + fileSize + " bytes (at most " + MAX_HEADER_BYTES + ")");
        }
        return n;
    }

    private static Parsed parseHeader(byte[] header, long dataLength) {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(header)).toString();
        } catch (CharacterCodingException e) {
            throw new IllegalArgumentException("safetensors: the header is not valid UTF-8");
        }
        Object root = Json.parse(text);
        if (!(root instanceof Map)) {
            throw new IllegalArgumentException("safetensors: the header must be a JSON object");
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        List<Entry> entries = new ArrayList<>();
        for (Map.Entry<?, ?> kv : ((Map<?, ?>) root).entrySet()) {
            String name = (String) kv.getKey();
            if (name.equals("__metadata__")) {
                if (!(kv.getValue() instanceof Map)) {
                    throw new IllegalArgumentException("safetensors: __metadata__ must be an object of strings");
                }
                for (Map.Entry<?, ?> m : ((Map<?, ?>) kv.getValue()).entrySet()) {
                    if (!(m.getValue() instanceof String)) {
                        throw new IllegalArgumentException("safetensors: __metadata__ value of '" + m.getKey() + "' is not a string");
                    }
                    metadata.put((String) m.getKey(), (String) m.getValue());
                }
                continue;
            }
            entries.add(entry(name, kv.getValue(), dataLength));
        }
        // Offsets: sorted, contiguous from 0, no overlap, no hole, covering the data exactly.
        List<Entry> byOffset = new ArrayList<>(entries);
        byOffset.sort(Comparator.comparingLong((Entry e) -> e.begin).thenComparingLong(e -> e.end));
        long expect = 0;
        for (Entry e : byOffset) {
            if (e.begin != expect) {
                throw new IllegalArgumentException("safetensors: tensor '" + e.name + "' starts at " + e.begin
                        + " but the previous data ends at " + expect + (e.begin < expect ? " (overlap)" : " (hole)"));
            }
            expect = e.end;
        }
        if (expect != dataLength) {
            throw new IllegalArgumentException("safetensors: the tensors cover " + expect + " bytes but the file holds "
                    + dataLength + " bytes of data");
        }
        return new Parsed(entries, metadata);
    }

    private static Entry entry(String name, Object v, long dataLength) {
        if (name.isEmpty()) {
            throw new IllegalArgumentException("safetensors: empty tensor name");
        }
        if (!(v instanceof Map)) {
            throw new IllegalArgumentException("safetensors: tensor '" + name + "' must be an object");
        }
        Map<?, ?> m = (Map<?, ?>) v;
        for (Object k : m.keySet()) {
            if (!k.equals("dtype") && !k.equals("shape") && !k.equals("data_offsets")) {
                throw new IllegalArgumentException("safetensors: tensor '" + name + "' has unknown key '" + k + "'");
            }
        }
        Entry e = new Entry();
        e.name = name;
        Object dt = m.get("dtype");
        if (!(dt instanceof String)) {
            throw new IllegalArgumentException("safetensors: tensor '" + name + "' has no dtype string");
        }
        e.dtype = parseDtype(name, (String) dt);
        Object shape = m.get("shape");
        if (!(shape instanceof List)) {
            throw new IllegalArgumentException("safetensors: tensor '" + name + "' has no shape list");
        }
        List<?> dims = (List<?>) shape;
        if (dims.size() > Tensor.MAX_RANK) {
            throw new IllegalArgumentException("safetensors: tensor '" + name + "' has rank " + dims.size()
                    + ": Kiln takes at most " + Tensor.MAX_RANK);
        }
        e.shape = new long[dims.size()];
        long numel = 1;
        for (int i = 0; i < dims.size(); i++) {
            if (!(dims.get(i) instanceof Long) || (Long) dims.get(i) < 0) {
                throw new IllegalArgumentException("safetensors: tensor '" + name + "' has dimension " + dims.get(i)
                        + ": dimensions are integers >= 0");
            }
            e.shape[i] = (Long) dims.get(i);
            try {
                numel = Math.multiplyExact(numel, e.shape[i]);
            } catch (ArithmeticException x) {
                throw new IllegalArgumentException("safetensors: tensor '" + name + "' has a shape whose size overflows");
            }
        }
        Object offs = m.get("data_offsets");
        if (!(offs instanceof List) || ((List<?>) offs).size() != 2 || !(((List<?>) offs).get(0) instanceof Long)
                || !(((List<?>) offs).get(1) instanceof Long)) {
            throw new IllegalArgumentException("safetensors: tensor '" + name + "' needs data_offsets [begin, end]");
        }
        e.begin = (Long) ((List<?>) offs).get(0);
        e.end = (Long) ((List<?>) offs).get(1);
        if (e.begin < 0 || e.end < e.begin || e.end > dataLength) {
            throw new IllegalArgumentException("safetensors: tensor '" + name + "' has data_offsets [" + e.begin + ", "
                    + e.end + "] outside the " + dataLength + " bytes of data");
        }
        long bytes;
        try {
            bytes = Math.multiplyExact(numel, (long) e.dtype.byteSize());
        } catch (ArithmeticException x) {
            throw new IllegalArgumentException("safetensors: tensor '" + name + "' is too large");
        }
        if (bytes != e.end - e.begin) {
            throw new IllegalArgumentException("safetensors: tensor '" + name + "' is " + Arrays.toString(e.shape) + " of "
                    + e.dtype + " = " + bytes + " bytes but its data_offsets span " + (e.end - e.begin));
        }
        return e;
    }

    private static TensorSet materialize(Parsed p, Filler filler) throws IOException {
        LinkedHashMap<String, Tensor> out = new LinkedHashMap<>();
        try {
            for (Entry e : p.entries) {
                Tensor t = Tensor.zeros(e.dtype, e.shape);
                out.put(e.name, t);
                NativeAccess.acquire(t);
                try {
                    ByteBuffer target = NativeAccess.rawBytes(t);
                    filler.fill(target, e);
                    if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
                        throw new UnsupportedOperationException("safetensors: big-endian hosts are not supported");
                    }
                } finally {
                    NativeAccess.release(t);
                }
            }
        } catch (RuntimeException | IOException x) {
            for (Tensor t : out.values()) {
                t.close();
            }
            throw x;
        }
        return new TensorSet(out, p.metadata);
    }

    private static void readFully(FileChannel ch, ByteBuffer dst, long position, Path file) throws IOException {
        long pos = position;
        while (dst.hasRemaining()) {
            int n = ch.read(dst, pos);
            if (n < 0) {
                throw new IllegalArgumentException("safetensors: " + file + " ends early (truncated)");
            }
            pos += n;
        }
    }

    private static DType parseDtype(String name, String dt) {
        switch (dt) {
            case "F32": return DType.F32;
            case "BF16": return DType.BF16;
            case "F16": return DType.F16;
            case "I8": return DType.I8;
            case "U8": return DType.U8;
            case "I32": return DType.I32;
            case "F64": case "I64": case "U64": case "I16": case "U16": case "U32": case "BOOL":
            case "F8_E4M3": case "F8_E5M2":
                throw new IllegalArgumentException("safetensors: tensor '" + name + "' has dtype " + dt
                        + ", which Kiln does not support (F32, BF16, F16, I8, U8, I32)");
            default:
                throw new IllegalArgumentException("safetensors: tensor '" + name + "' has unknown dtype '" + dt + "'");
        }
    }

    private static String formatName(DType d) {
        switch (d) {
            case F32: return "F32";
            case BF16: return "BF16";
            case F16: return "F16";
            case I8: return "I8";
            case U8: return "U8";
            case I32: return "I32";
            default:
                throw new IllegalArgumentException("safetensors: dtype " + d + " has no safetensors name");
        }
    }
}
