package dev.kiln.security;

import java.io.IOException;
import java.io.InputStream;
import java.nio.CharBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.Key;
import java.security.KeyStore;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.Objects;
import javax.crypto.SecretKey;
import org.bouncycastle.crypto.generators.Argon2BytesGenerator;
import org.bouncycastle.crypto.params.Argon2Parameters;

/**
 * The key of an encrypted artifact, named by a key id (stored, in clear and authenticated, in the
 * artifact's header, so the right key can be found and a wrong one named). Three kinds:
 * <ul>
 *   <li>{@link #raw}: 32 random bytes you keep (a file, a secret manager);</li>
 *   <li>{@link #password}: Argon2id over a password, with a fresh random salt per artifact and the
 *       parameters stored in the header;</li>
 *   <li>{@link #fromKeyStore}: an AES-256 secret key entry of a PKCS12 key store.</li>
 * </ul>
 * Key material and passwords never appear in {@code toString}, exception messages or logs. Call
 * {@link #destroy()} to wipe them when done.
 */
public final class ArtifactKey {
    enum Kind { RAW, PASSWORD }

    /** Argon2id parameters for new password-encrypted artifacts: 64 MiB, 3 passes, 1 lane (RFC 9106's second choice). */
    public static final int ARGON2_MEMORY_KIB = 64 * 1024;
    public static final int ARGON2_ITERATIONS = 3;
    public static final int ARGON2_PARALLELISM = 1;

    final String keyId;
    final Kind kind;
    private final byte[] material; // RAW: the key; PASSWORD: the password's UTF-8 bytes
    private volatile boolean destroyed;
    int argonMemoryKib = ARGON2_MEMORY_KIB;
    int argonIterations = ARGON2_ITERATIONS;

    private ArtifactKey(String keyId, Kind kind, byte[] material) {
        if (keyId == null || keyId.isEmpty() || keyId.length() > 256 || !keyId.chars().allMatch(c -> c >= 0x20 && c < 0x7f)) {
            throw new IllegalArgumentException("key id must be 1..256 printable ASCII characters");
        }
        this.keyId = keyId;
        this.kind = kind;
        this.material = material;
    }

    /** A raw 256-bit key (copied). */
    public static ArtifactKey raw(String keyId, byte[] key) {
        Objects.requireNonNull(key, "key");
        if (key.length != 32) {
            throw new IllegalArgumentException("key '" + keyId + "': a raw key has 32 bytes, this one " + key.length);
        }
        return new ArtifactKey(keyId, Kind.RAW, key.clone());
    }

    /** A new random 256-bit key. */
    public static ArtifactKey generate(String keyId) {
        byte[] k = new byte[32];
        new SecureRandom().nextBytes(k);
        try {
            return raw(keyId, k);
        } finally {
            Arrays.fill(k, (byte) 0);
        }
    }

    /**
     * A raw key read from a file: either exactly 32 bytes, or 64 hexadecimal digits (surrounding
     * white space ignored).
     */
    public static ArtifactKey fromFile(String keyId, Path file) throws IOException {
        byte[] content = Files.readAllBytes(file);
        try {
            return fromBytesOrHex(keyId, content, "file " + file);
        } finally {
            Arrays.fill(content, (byte) 0);
        }
    }

    /** A raw key from an environment variable holding 64 hexadecimal digits. */
    public static ArtifactKey fromEnvironment(String keyId, String variable) {
        String v = System.getenv(variable);
        if (v == null) {
            throw new IllegalArgumentException("environment variable " + variable + " is not set");
        }
        byte[] b = v.getBytes(StandardCharsets.US_ASCII);
        try {
            return fromBytesOrHex(keyId, b, "environment variable " + variable);
        } finally {
            Arrays.fill(b, (byte) 0);
        }
    }

    private static ArtifactKey fromBytesOrHex(String keyId, byte[] content, String where) {
        if (content.length == 32) {
            return raw(keyId, content);
        }
        String s = new String(content, StandardCharsets.US_ASCII).strip();
        if (s.length() != 64 || !s.chars().allMatch(c -> Character.digit(c, 16) >= 0)) {
            throw new IllegalArgumentException(where + " must hold a 256-bit key: 32 bytes or 64 hex digits");
        }
        byte[] k = new byte[32];
        for (int i = 0; i < 32; i++) {
            k[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        try {
            return raw(keyId, k);
        } finally {
            Arrays.fill(k, (byte) 0);
        }
    }

    /** A password (copied; wipe your array after). The key is derived with Argon2id per artifact. */
    public static ArtifactKey password(String keyId, char[] password) {
        Objects.requireNonNull(password, "password");
        if (password.length == 0) {
            throw new IllegalArgumentException("key '" + keyId + "': the password is empty");
        }
        java.nio.ByteBuffer bb = StandardCharsets.UTF_8.encode(CharBuffer.wrap(password));
        byte[] utf8 = new byte[bb.remaining()];
        bb.get(utf8);
        Arrays.fill(bb.array(), (byte) 0);
        return new ArtifactKey(keyId, Kind.PASSWORD, utf8);
    }

    /** Argon2id cost for new artifacts (tests use less; the default is {@link #ARGON2_MEMORY_KIB}). */
    public ArtifactKey withArgon2Cost(int memoryKib, int iterations) {
        if (memoryKib < 8 || iterations < 1) {
            throw new IllegalArgumentException("Argon2id needs >= 8 KiB and >= 1 iteration");
        }
        argonMemoryKib = memoryKib;
        argonIterations = iterations;
        return this;
    }

    /**
     * The AES-256 secret key stored under {@code alias} in a PKCS12 key store; the key id is the
     * alias.
     */
    public static ArtifactKey fromKeyStore(Path pkcs12, char[] storePassword, String alias, char[] keyPassword)
            throws IOException {
        try (InputStream in = Files.newInputStream(pkcs12)) {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(in, storePassword);
            Key k = ks.getKey(alias, keyPassword);
            if (!(k instanceof SecretKey sk)) {
                throw new IllegalArgumentException("key store " + pkcs12 + " has no secret key under alias '" + alias + "'");
            }
            byte[] enc = sk.getEncoded();
            try {
                if (enc == null || enc.length != 32) {
                    throw new IllegalArgumentException("key '" + alias + "' in " + pkcs12 + " is not a 256-bit key");
                }
                return raw(alias, enc);
            } finally {
                if (enc != null) {
                    Arrays.fill(enc, (byte) 0);
                }
            }
        } catch (GeneralSecurityException e) {
            // The JDK's messages name no secret, but keep ours uniform: say what failed, not why in detail.
            throw new IOException("cannot read key '" + alias + "' from key store " + pkcs12
                    + ": wrong store or key password, or not a PKCS12 file", null);
        }
    }

    public String keyId() {
        return keyId;
    }

    /** The 256-bit input key material for this artifact (Argon2id for passwords). */
    byte[] keyMaterial(byte[] salt, int memoryKib, int iterations, int parallelism) {
        if (destroyed) {
            throw new IllegalStateException("key '" + keyId + "' was destroyed");
        }
        if (kind == Kind.RAW) {
            return material.clone();
        }
        Argon2Parameters p = new Argon2Parameters.Builder(Argon2Parameters.ARGON2_id).withVersion(Argon2Parameters.ARGON2_VERSION_13)
                .withSalt(salt).withMemoryAsKB(memoryKib).withIterations(iterations).withParallelism(parallelism).build();
        Argon2BytesGenerator g = new Argon2BytesGenerator();
        g.init(p);
        byte[] out = new byte[32];
        g.generateBytes(material, out);
        return out;
    }

    /** Wipes the key material. */
    public void destroy() {
        destroyed = true;
        Arrays.fill(material, (byte) 0);
    }

    @Override
    public String toString() {
        return "ArtifactKey[" + keyId + ", " + (kind == Kind.RAW ? "256-bit key" : "password") + "]";
    }
}
