package dev.kiln.security;

import com.google.crypto.tink.subtle.AesGcmHkdfStreaming;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * Authenticated encryption of artifacts (model files, anything), streamed in segments with Tink's
 * AES-256-GCM-HKDF streaming AEAD: each segment is sealed with its index and a last-segment flag,
 * so a flipped byte, a truncation at any point, or segments reordered are all detected. No home-made
 * cryptography: Kiln only adds a small envelope.
 *
 * <pre>
 * "KILNENC1"  8 bytes
 * u32 LE      envelope header length H (at most 4096)
 * H bytes     envelope header: key=value lines (UTF-8): format, aead, segment, key_id, kdf and, for
 *             passwords, salt, m (KiB), t, p
 * ...         Tink streaming-AEAD ciphertext; its associated data is the 12 + H bytes before it,
 *             so the envelope header (key id, KDF parameters) is authenticated too
 * </pre>
 */
public final class Artifacts {
    static final byte[] MAGIC = {'K', 'I', 'L', 'N', 'E', 'N', 'C', '1'};
    /** Plaintext bytes per sealed segment (ciphertext segments are this size; the overhead is 16 bytes each). */
    public static final int DEFAULT_SEGMENT = 1 << 20;
    private static final int MAX_ENVELOPE = 4096;

    private Artifacts() {}

    /** What the envelope says; nothing in it is secret. */
    public record Envelope(String keyId, String kdf, int segmentSize, Map<String, String> fields) {}

    /** Encrypts {@code plaintext} to {@code out} with {@code key} (1 MiB segments). Closes neither stream. */
    public static void encrypt(InputStream plaintext, OutputStream out, ArtifactKey key) throws IOException {
        encrypt(plaintext, out, key, DEFAULT_SEGMENT);
    }

    /** As {@link #encrypt(InputStream, OutputStream, ArtifactKey)} with a chosen ciphertext segment size (>= 128). */
    public static void encrypt(InputStream plaintext, OutputStream out, ArtifactKey key, int segmentSize) throws IOException {
        Objects.requireNonNull(plaintext, "plaintext");
        Objects.requireNonNull(out, "out");
        Objects.requireNonNull(key, "key");
        if (segmentSize < 128 || segmentSize > (64 << 20)) {
            throw new IllegalArgumentException("segment size " + segmentSize + " must be in 128..64 MiB");
        }
        Map<String, String> f = new LinkedHashMap<>();
        f.put("format", "1");
        f.put("aead", "AES256_GCM_HKDF_SHA256");
        f.put("segment", Integer.toString(segmentSize));
        f.put("key_id", key.keyId);
        byte[] salt = null;
        if (key.kind == ArtifactKey.Kind.PASSWORD) {
            salt = new byte[16];
            new SecureRandom().nextBytes(salt);
            f.put("kdf", "argon2id");
            f.put("salt", Base64.getEncoder().encodeToString(salt));
            f.put("m", Integer.toString(key.argonMemoryKib));
            f.put("t", Integer.toString(key.argonIterations));
            f.put("p", Integer.toString(ArtifactKey.ARGON2_PARALLELISM));
        } else {
            f.put("kdf", "raw");
        }
        byte[] envelope = envelopeBytes(f);
        out.write(envelope);
        byte[] ikm = key.keyMaterial(salt, key.argonMemoryKib, key.argonIterations, ArtifactKey.ARGON2_PARALLELISM);
        try {
            AesGcmHkdfStreaming aead = new AesGcmHkdfStreaming(ikm, "HmacSha256", 32, segmentSize, 0);
            OutputStream enc = aead.newEncryptingStream(new NonClosing(out), envelope);
            plaintext.transferTo(enc);
            enc.close(); // seals the last segment
        } catch (GeneralSecurityException e) {
            throw new IOException("encryption failed: " + e.getClass().getSimpleName(), null);
        } finally {
            Arrays.fill(ikm, (byte) 0);
        }
    }

    private static byte[] envelopeBytes(Map<String, String> fields) {
        StringBuilder sb = new StringBuilder();
        fields.forEach((k, v) -> sb.append(k).append('=').append(v).append('\n'));
        byte[] h = sb.toString().getBytes(StandardCharsets.UTF_8);
        if (h.length > MAX_ENVELOPE) {
            throw new IllegalArgumentException("envelope header too long");
        }
        return ByteBuffer.allocate(12 + h.length).order(ByteOrder.LITTLE_ENDIAN).put(MAGIC).putInt(h.length).put(h).array();
    }

    /** Reads (and checks the form of) an artifact's envelope; returns it and its raw bytes. */
    private static Object[] readEnvelope(InputStream in) throws IOException {
        DataInputStream d = new DataInputStream(in);
        byte[] head = new byte[12];
        try {
            d.readFully(head);
        } catch (EOFException e) {
            throw new ArtifactException("not a Kiln encrypted artifact (too short)");
        }
        if (!Arrays.equals(Arrays.copyOf(head, 8), MAGIC)) {
            throw new ArtifactException("not a Kiln encrypted artifact (bad magic)");
        }
        int h = ByteBuffer.wrap(head, 8, 4).order(ByteOrder.LITTLE_ENDIAN).getInt();
        if (h < 1 || h > MAX_ENVELOPE) {
            throw new ArtifactException("envelope header length " + h + " is invalid");
        }
        byte[] body = new byte[h];
        try {
            d.readFully(body);
        } catch (EOFException e) {
            throw new ArtifactException("truncated envelope header");
        }
        String text = new String(body, StandardCharsets.UTF_8);
        Map<String, String> f = new LinkedHashMap<>();
        for (String line : text.split("\n")) {
            int eq = line.indexOf('=');
            if (eq <= 0 || f.put(line.substring(0, eq), line.substring(eq + 1)) != null) {
                throw new ArtifactException("envelope header is malformed");
            }
        }
        if (!"1".equals(f.get("format"))) {
            throw new ArtifactException("envelope format " + f.get("format") + " is not one this Kiln reads (1)");
        }
        if (!"AES256_GCM_HKDF_SHA256".equals(f.get("aead"))) {
            throw new ArtifactException("unsupported AEAD '" + f.get("aead") + "'");
        }
        int seg;
        try {
            seg = Integer.parseInt(f.getOrDefault("segment", ""));
        } catch (NumberFormatException e) {
            throw new ArtifactException("envelope segment size is invalid");
        }
        if (seg < 128 || seg > (64 << 20)) {
            throw new ArtifactException("envelope segment size " + seg + " is invalid");
        }
        String keyId = f.get("key_id");
        String kdf = f.get("kdf");
        if (keyId == null || keyId.isEmpty() || !("raw".equals(kdf) || "argon2id".equals(kdf))) {
            throw new ArtifactException("envelope has no valid key id or KDF");
        }
        byte[] all = ByteBuffer.allocate(12 + h).put(head).put(body).array();
        return new Object[] {new Envelope(keyId, kdf, seg, f), all};
    }

    /** Whether {@code data} starts like an encrypted artifact. */
    public static boolean isEncrypted(byte[] data) {
        return data.length >= 8 && Arrays.equals(Arrays.copyOf(data, 8), MAGIC);
    }

    /** The envelope of an in-memory artifact. */
    public static Envelope envelope(byte[] data) throws IOException {
        return (Envelope) readEnvelope(new ByteArrayInputStream(data))[0];
    }

    /** The envelope of an encrypted file (to find the key it needs). */
    public static Envelope envelope(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            return (Envelope) readEnvelope(in)[0];
        }
    }

    /**
     * A stream of the plaintext. Authentication is checked segment by segment as it is read: a
     * modified, truncated or reordered artifact, or a wrong key, makes a read throw
     * {@link ArtifactException} (before any byte of the bad segment is returned). Read to the end
     * to know the whole artifact was authentic.
     */
    public static InputStream decrypt(InputStream in, ArtifactKey key) throws IOException {
        Objects.requireNonNull(in, "in");
        Objects.requireNonNull(key, "key");
        Object[] env = readEnvelope(in);
        Envelope e = (Envelope) env[0];
        if (!e.keyId().equals(key.keyId)) {
            throw new ArtifactException("the artifact is encrypted with key id '" + e.keyId() + "' but key '" + key.keyId
                    + "' was given");
        }
        boolean pw = "argon2id".equals(e.kdf());
        if (pw != (key.kind == ArtifactKey.Kind.PASSWORD)) {
            throw new ArtifactException("the artifact (key id '" + e.keyId() + "') needs a " + (pw ? "password" : "raw key"));
        }
        byte[] salt = null;
        int m = 0, t = 0, p = 0;
        if (pw) {
            try {
                salt = Base64.getDecoder().decode(e.fields().getOrDefault("salt", ""));
                m = Integer.parseInt(e.fields().get("m"));
                t = Integer.parseInt(e.fields().get("t"));
                p = Integer.parseInt(e.fields().get("p"));
            } catch (RuntimeException ex) {
                throw new ArtifactException("envelope KDF parameters are invalid");
            }
            if (salt.length < 16 || m < 8 || m > (4 << 20) || t < 1 || t > 100 || p < 1 || p > 16) {
                throw new ArtifactException("envelope KDF parameters are out of range");
            }
        }
        byte[] ikm = key.keyMaterial(salt, m, t, p);
        try {
            AesGcmHkdfStreaming aead = new AesGcmHkdfStreaming(ikm, "HmacSha256", 32, e.segmentSize(), 0);
            return new Translating(aead.newDecryptingStream(in, (byte[]) env[1]), e.keyId());
        } catch (GeneralSecurityException ex) {
            throw new ArtifactException("cannot set up decryption for key id '" + e.keyId() + "'");
        } finally {
            Arrays.fill(ikm, (byte) 0);
        }
    }

    /** Decrypts a whole in-memory artifact (authenticated to the end). */
    public static byte[] decrypt(byte[] artifact, ArtifactKey key) throws IOException {
        try (InputStream in = decrypt(new ByteArrayInputStream(artifact), key)) {
            return in.readAllBytes();
        }
    }

    public static byte[] encrypt(byte[] plaintext, ArtifactKey key) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        encrypt(new ByteArrayInputStream(plaintext), out, key);
        return out.toByteArray();
    }

    /**
     * Re-encrypts an artifact under a new key, streaming: plaintext only passes through memory one
     * segment at a time and never touches the disk. The output is complete only if this returns.
     */
    public static void rotate(InputStream in, OutputStream out, ArtifactKey oldKey, ArtifactKey newKey) throws IOException {
        try (InputStream plain = decrypt(in, oldKey)) {
            encrypt(plain, out, newKey);
        }
    }

    /** Decrypts a file to a file, written under a temporary name and renamed only when authentic to the end. */
    public static void decryptFile(Path in, Path out, ArtifactKey key) throws IOException {
        transformFile(in, out, (i, o) -> {
            try (InputStream plain = decrypt(i, key)) {
                plain.transferTo(o);
            }
        });
    }

    public static void encryptFile(Path in, Path out, ArtifactKey key) throws IOException {
        transformFile(in, out, (i, o) -> encrypt(i, o, key));
    }

    public static void rotateFile(Path in, Path out, ArtifactKey oldKey, ArtifactKey newKey) throws IOException {
        transformFile(in, out, (i, o) -> rotate(i, o, oldKey, newKey));
    }

    private interface Transform {
        void run(InputStream in, OutputStream out) throws IOException;
    }

    private static void transformFile(Path in, Path out, Transform t) throws IOException {
        try (InputStream i = new java.io.BufferedInputStream(Files.newInputStream(in), 1 << 16)) {
            dev.kiln.io.AtomicFiles.write(out, ch -> {
                OutputStream o = new java.io.BufferedOutputStream(java.nio.channels.Channels.newOutputStream(ch), 1 << 16);
                t.run(i, o);
                o.flush();
            });
        }
    }

    /** Turns Tink's authentication failures into ArtifactException naming the key id (and nothing secret). */
    private static final class Translating extends FilterInputStream {
        private final String keyId;

        Translating(InputStream in, String keyId) {
            super(in);
            this.keyId = keyId;
        }

        private ArtifactException failure() {
            return new ArtifactException("authentication failed for key id '" + keyId
                    + "': wrong key or password, or the artifact was modified, truncated or reordered");
        }

        @Override
        public int read() throws IOException {
            try {
                return super.read();
            } catch (IOException e) {
                throw failure();
            }
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            try {
                return super.read(b, off, len);
            } catch (IOException e) {
                throw failure();
            }
        }
    }

    private static final class NonClosing extends java.io.FilterOutputStream {
        NonClosing(OutputStream out) {
            super(out);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            out.write(b, off, len);
        }

        @Override
        public void close() throws IOException {
            flush();
        }
    }
}
