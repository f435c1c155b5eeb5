package dev.kiln.security;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ArtifactsTest {
    private static final String PASSWORD = "correct horse battery staple 42";
    private static final byte[] RAW = new byte[32];

    static {
        new Random(5).nextBytes(RAW);
    }

    /** Every message and toString seen by the tests, checked for secrets at the end of each test. */
    private final List<String> seen = new ArrayList<>();

    private static byte[] plaintext(int n) {
        byte[] p = new byte[n];
        new Random(n).nextBytes(p);
        return p;
    }

    private byte[] encrypt(byte[] plain, ArtifactKey key, int segment) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        Artifacts.encrypt(new ByteArrayInputStream(plain), out, key, segment);
        seen.add(key.toString());
        return out.toByteArray();
    }

    private String failure(byte[] artifact, ArtifactKey key) {
        IOException e = assertThrows(IOException.class, () -> Artifacts.decrypt(artifact, key));
        seen.add(e.getMessage());
        return e.getMessage();
    }

    private void assertNoSecrets() {
        String hex = HexFormat.of().formatHex(RAW);
        String b64 = java.util.Base64.getEncoder().encodeToString(RAW);
        for (String s : seen) {
            assertFalse(s == null ? false : s.contains(PASSWORD) || s.toLowerCase().contains(hex) || s.contains(b64)
                    || s.contains("horse"), "a secret leaked into: " + s);
        }
    }

    private static int envelopeLength(byte[] artifact) {
        return 12 + java.nio.ByteBuffer.wrap(artifact, 8, 4).order(java.nio.ByteOrder.LITTLE_ENDIAN).getInt();
    }

    @Test
    void roundTripsWithEveryKeyKind(@TempDir Path dir) throws Exception {
        byte[] plain = plaintext(5000);
        ArtifactKey raw = ArtifactKey.raw("prod-2026", RAW);
        assertArrayEquals(plain, Artifacts.decrypt(encrypt(plain, raw, 1024), raw));
        ArtifactKey pw = ArtifactKey.password("team-pw", PASSWORD.toCharArray());  // default Argon2id cost
        byte[] sealed = encrypt(plain, pw, Artifacts.DEFAULT_SEGMENT);
        assertArrayEquals(plain, Artifacts.decrypt(sealed, ArtifactKey.password("team-pw", PASSWORD.toCharArray())));
        assertEquals("argon2id", Artifacts.envelope(Files.write(dir.resolve("a.enc"), sealed)).kdf());
        // PKCS12 key store with an AES-256 secret entry
        Path p12 = dir.resolve("keys.p12");
        KeyStore ks = KeyStore.getInstance("PKCS12");
        ks.load(null, null);
        ks.setEntry("model-key", new KeyStore.SecretKeyEntry(new SecretKeySpec(RAW, "AES")),
                new KeyStore.PasswordProtection("kp".toCharArray()));
        try (OutputStream o = Files.newOutputStream(p12)) {
            ks.store(o, "sp".toCharArray());
        }
        ArtifactKey fromStore = ArtifactKey.fromKeyStore(p12, "sp".toCharArray(), "model-key", "kp".toCharArray());
        assertEquals("model-key", fromStore.keyId());
        assertArrayEquals(plain, Artifacts.decrypt(encrypt(plain, fromStore, 4096), ArtifactKey.raw("model-key", RAW)));
        IOException bad = assertThrows(IOException.class,
                () -> ArtifactKey.fromKeyStore(p12, "wrong".toCharArray(), "model-key", "kp".toCharArray()));
        seen.add(bad.getMessage());
        // empty plaintext, and files
        assertArrayEquals(new byte[0], Artifacts.decrypt(encrypt(new byte[0], raw, 256), raw));
        Path in = Files.write(dir.resolve("model.kiln"), plain);
        Artifacts.encryptFile(in, dir.resolve("model.enc"), raw);
        Artifacts.decryptFile(dir.resolve("model.enc"), dir.resolve("back.kiln"), raw);
        assertArrayEquals(plain, Files.readAllBytes(dir.resolve("back.kiln")));
        assertNoSecrets();
    }

    @Test
    void everyFlippedByteIsDetected() throws IOException {
        ArtifactKey key = ArtifactKey.raw("k1", RAW);
        byte[] good = encrypt(plaintext(700), key, 128);
        for (int i = 0; i < good.length; i++) {
            for (int bit : new int[] {0x01, 0x80}) {
                byte[] bad = good.clone();
                bad[i] ^= (byte) bit;
                failure(bad, key);
            }
        }
        assertNoSecrets();
    }

    @Test
    void truncationAtEverySegmentBoundaryAndSwappedSegmentsAreDetected() throws IOException {
        ArtifactKey key = ArtifactKey.raw("k2", RAW);
        int seg = 128;
        byte[] good = encrypt(plaintext(1000), key, seg);
        int start = envelopeLength(good);
        int segments = 0;
        for (int cut = start + seg; cut < good.length; cut += seg) {
            String m = failure(Arrays.copyOf(good, cut), key);
            assertTrue(m.contains("key id 'k2'"), m);
            segments++;
        }
        assertTrue(segments >= 6, segments + " boundaries");
        for (int cut = 0; cut < good.length; cut += 7) { // and anywhere else
            failure(Arrays.copyOf(good, cut), key);
        }
        byte[] swapped = good.clone();
        System.arraycopy(good, start + seg, swapped, start + 2 * seg, seg);
        System.arraycopy(good, start + 2 * seg, swapped, start + seg, seg);
        assertTrue(failure(swapped, key).contains("reordered"));
        byte[] appended = Arrays.copyOf(good, good.length + seg);
        System.arraycopy(good, start + seg, appended, good.length, seg);
        failure(appended, key);
        assertNoSecrets();
    }

    @Test
    void wrongKeysAndPasswordsNameTheKeyId() throws IOException {
        byte[] plain = plaintext(300);
        ArtifactKey pw = ArtifactKey.password("ops-password", PASSWORD.toCharArray()).withArgon2Cost(1024, 1);
        byte[] sealed = encrypt(plain, pw, 256);
        String m = failure(sealed, ArtifactKey.password("ops-password", "not it".toCharArray()));
        assertTrue(m.contains("key id 'ops-password'") && m.contains("wrong key or password"), m);
        m = failure(sealed, ArtifactKey.password("other-id", PASSWORD.toCharArray()));
        assertTrue(m.contains("encrypted with key id 'ops-password' but key 'other-id' was given"), m);
        m = failure(sealed, ArtifactKey.raw("ops-password", RAW));
        assertTrue(m.contains("needs a password"), m);
        byte[] otherRaw = RAW.clone();
        otherRaw[0] ^= 1;
        byte[] sealedRaw = encrypt(plain, ArtifactKey.raw("r", RAW), 256);
        m = failure(sealedRaw, ArtifactKey.raw("r", otherRaw));
        assertTrue(m.contains("key id 'r'"), m);
        assertTrue(failure("not an artifact".getBytes(), pw).contains("not a Kiln encrypted artifact"));
        assertTrue(pw.toString().contains("ops-password") && !pw.toString().contains(PASSWORD));
        seen.add(pw.toString());
        assertNoSecrets();
    }

    @Test
    void rotationReencryptsWithoutPlaintextOnDisk(@TempDir Path dir) throws IOException {
        byte[] plain = plaintext(3000);
        ArtifactKey old = ArtifactKey.password("2025", PASSWORD.toCharArray()).withArgon2Cost(1024, 1);
        ArtifactKey neu = ArtifactKey.generate("2026");
        Path a = Files.write(dir.resolve("m.enc"), encrypt(plain, old, 512));
        Artifacts.rotateFile(a, dir.resolve("m2.enc"), old, neu);
        try (var files = Files.list(dir)) {
            assertEquals(2, files.count(), "only the two artifacts: no plaintext or temporary file left");
        }
        byte[] rotated = Files.readAllBytes(dir.resolve("m2.enc"));
        assertEquals("2026", Artifacts.envelope(dir.resolve("m2.enc")).keyId());
        assertArrayEquals(plain, Artifacts.decrypt(rotated, neu));
        failure(rotated, ArtifactKey.password("2026", PASSWORD.toCharArray()));
        // A tampered source fails the rotation and leaves no output.
        byte[] bad = Files.readAllBytes(a);
        bad[bad.length - 5] ^= 1;
        Files.write(a, bad);
        IOException e = assertThrows(IOException.class, () -> Artifacts.rotateFile(a, dir.resolve("m3.enc"), old, neu));
        seen.add(e.getMessage());
        assertFalse(Files.exists(dir.resolve("m3.enc")));
        assertNoSecrets();
    }
}
