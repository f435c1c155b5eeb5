package dev.kiln.data;

import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.zip.GZIPInputStream;

/**
 * Reader of the IDX format (MNIST, Fashion-MNIST): big-endian magic {@code 0 0 type rank}, then
 * {@code rank} big-endian int32 dimensions, then the data. Unsigned bytes only (type 0x08), which
 * is what those datasets use. A {@code .gz} file is decompressed while reading. Every header field
 * is checked before anything is allocated.
 */
public final class Idx {
    private Idx() {}

    /** The raw U8 tensor of an IDX file, shaped by its header. */
    public static Tensor readU8(Path path) throws IOException {
        try (InputStream raw = open(path);
             DataInputStream in = new DataInputStream(new BufferedInputStream(raw, 1 << 16))) {
            int magic;
            try {
                magic = in.readInt();
            } catch (EOFException e) {
                throw new IOException(path + ": not an IDX file (shorter than its 4-byte magic)");
            }
            if ((magic >>> 16) != 0) {
                throw new IOException(path + ": not an IDX file (magic " + String.format("0x%08x", magic) + ")");
            }
            int type = (magic >>> 8) & 0xff;
            int rank = magic & 0xff;
            if (type != 0x08) {
                throw new IOException(path + ": IDX element type 0x" + Integer.toHexString(type)
                        + " is not supported (only unsigned bytes, 0x08)");
            }
            if (rank < 1 || rank > 4) {
                throw new IOException(path + ": IDX rank " + rank + " is not supported (1..4)");
            }
            long[] shape = new long[rank];
            long total = 1;
            for (int i = 0; i < rank; i++) {
                int d = in.readInt();
                if (d < 1) {
                    throw new IOException(path + ": IDX dimension " + i + " is " + d + ": must be >= 1");
                }
                shape[i] = d;
                total *= d;  // at most 4 factors below 2^31: fits in a long until it passes the limit below
                if (total > Integer.MAX_VALUE) {
                    throw new IOException(path + ": IDX dimensions " + java.util.Arrays.toString(java.util.Arrays.copyOf(
                            shape, i + 1)) + (i + 1 < rank ? "..." : "") + " hold more than 2^31-1 elements: too large");
                }
            }
            Tensor t = Tensor.zeros(DType.U8, shape);
            try {
                ByteBuffer dst = t.byteView();
                byte[] chunk = new byte[1 << 16];
                long left = total;
                while (left > 0) {
                    int r = in.read(chunk, 0, (int) Math.min(chunk.length, left));
                    if (r < 0) {
                        throw new IOException(path + ": truncated: " + left + " of " + total + " bytes missing");
                    }
                    dst.put(chunk, 0, r);
                    left -= r;
                }
                if (in.read() >= 0) {  // the dimensions say where the data ends
                    throw new IOException(path + ": bytes past the " + total + " the IDX dimensions "
                            + java.util.Arrays.toString(shape) + " hold (a corrupt file, or not the file it seems)");
                }
                return t;
            } catch (IOException | RuntimeException e) {
                t.close();
                throw e;
            }
        }
    }

    private static InputStream open(Path path) throws IOException {
        InputStream in;
        try {
            in = Files.newInputStream(path);
        } catch (NoSuchFileException e) {
            throw new NoSuchFileException(path.toString(), null, "no such file");
        }
        if (!path.getFileName().toString().endsWith(".gz")) {
            return in;
        }
        try {
            return new Gunzip(in, path);
        } catch (IOException e) {
            in.close();
            throw new IOException(path + ": not a valid gzip file (" + e.getMessage() + ")", e);
        }
    }

    /** A gzip stream whose format errors name the file (GZIPInputStream's say only what broke). */
    private static final class Gunzip extends GZIPInputStream {
        private final Path path;

        Gunzip(InputStream in, Path path) throws IOException {
            super(in, 1 << 16);
            this.path = path;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            try {
                return super.read(b, off, len);
            } catch (java.util.zip.ZipException e) {
                throw new IOException(path + ": corrupt gzip data (" + e.getMessage() + ")", e);
            }
        }
    }

    /** Images as F32 rows {@code [n, h * w]} scaled to [0, 1] (value / 255). */
    public static Tensor readImages(Path path) throws IOException {
        try (Tensor u8 = readU8(path)) {
            if (u8.rank() < 2) {
                throw new IOException(path + ": an image file has rank >= 2, this one " + u8.rank());
            }
            long n = u8.size(0);
            long features = u8.numel() / n;
            Tensor out = Tensor.zeros(DType.F32, n, features);
            ByteBuffer src = u8.byteView();
            java.nio.FloatBuffer dst = out.floatView();
            for (int i = 0, m = (int) u8.numel(); i < m; i++) {
                dst.put(i, (src.get(i) & 0xff) / 255f);
            }
            return out;
        }
    }

    /** Labels as I32 {@code [n]}. */
    public static Tensor readLabels(Path path) throws IOException {
        try (Tensor u8 = readU8(path)) {
            if (u8.rank() != 1) {
                throw new IOException(path + ": a label file has rank 1, this one " + u8.rank());
            }
            int n = (int) u8.size(0);
            int[] ids = new int[n];
            ByteBuffer src = u8.byteView();
            for (int i = 0; i < n; i++) {
                ids[i] = src.get(i) & 0xff;
            }
            return Tensor.of(ids, n);
        }
    }
}
