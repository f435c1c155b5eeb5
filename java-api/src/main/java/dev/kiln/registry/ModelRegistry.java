package dev.kiln.registry;

import dev.kiln.io.AtomicFiles;
import dev.kiln.io.ModelFile;
import dev.kiln.nn.Sequential;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.regex.Pattern;

/**
 * A versioned model registry in a directory: immutable, numbered, content-hashed versions;
 * aliases ({@code production}, {@code staging}, any name) moved atomically with a history for
 * rollback. Safe for many reader processes and one writer at a time (an exclusive lock on
 * {@code ROOT/.lock}, waited for).
 *
 * <pre>
 * ROOT/.lock
 * ROOT/NAME/versions/N/artifact        the model (a Kiln file, or any artifact, e.g. encrypted)
 * ROOT/NAME/versions/N/version.properties  number, sha256, size, created, author, parent, user metadata
 * ROOT/NAME/aliases/ALIAS              version=N and the previous targets (for rollback)
 * </pre>
 *
 * Every write goes to a temporary name in the same directory, is fsynced, then renamed into place,
 * so a crash at any point leaves each version either complete or absent and each alias on a
 * complete version; readers never see a partial version. Leftover temporary entries are removed
 * by the next writer.
 */
public final class ModelRegistry {
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
    private static final Map<Path, ReentrantLock> JVM_LOCKS = new ConcurrentHashMap<>();
    static final String ARTIFACT = "artifact";
    static final String INFO = "version.properties";

    private final Path root;

    private ModelRegistry(Path root) {
        this.root = root;
    }

    /** Opens (creating if needed) the registry at {@code root}. */
    public static ModelRegistry open(Path root) throws IOException {
        Path r = root.toAbsolutePath().normalize();
        Files.createDirectories(r);
        if (!Files.isWritable(r) && !Files.isReadable(r)) {
            throw new IOException("registry " + r + " is not accessible");
        }
        return new ModelRegistry(r);
    }

    public Path root() {
        return root;
    }

    private static String checkName(String what, String s) {
        Objects.requireNonNull(s, what);
        if (!NAME.matcher(s).matches()) {
            throw new IllegalArgumentException(what + " '" + s + "' must be 1..128 of [A-Za-z0-9._-], starting with a letter or digit");
        }
        return s;
    }

    // ---- locking ----------------------------------------------------------------------------------

    private interface Body<T> {
        T run() throws IOException;
    }

    /** Runs {@code body} holding the writer lock (this JVM's, then the file lock across processes). */
    private <T> T locked(Body<T> body) throws IOException {
        ReentrantLock jvm = JVM_LOCKS.computeIfAbsent(root, k -> new ReentrantLock());
        jvm.lock();
        try (FileChannel ch = FileChannel.open(root.resolve(".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
             FileLock lock = ch.lock()) {
            return body.run();
        } finally {
            jvm.unlock();
        }
    }

    // ---- versions ---------------------------------------------------------------------------------

    /** Registers {@code model} (as a Kiln model file) as the next version of {@code name}. */
    public ModelVersion register(String name, Sequential model, Map<String, String> metadata) throws IOException {
        Objects.requireNonNull(model, "model");
        byte[] image = ModelFile.toBytes(model, Map.of());
        return register(name, image, metadata);
    }

    /** Registers an artifact's bytes (a model file, an encrypted artifact, ...) as the next version. */
    public ModelVersion register(String name, byte[] artifact, Map<String, String> metadata) throws IOException {
        checkName("model name", name);
        Objects.requireNonNull(artifact, "artifact");
        if (artifact.length == 0) {
            throw new IllegalArgumentException("the artifact for '" + name + "' is empty: no model has 0 bytes");
        }
        Map<String, String> meta = metadata == null ? Map.of() : metadata;
        for (String k : meta.keySet()) {
            if (k.isEmpty()) {
                throw new IllegalArgumentException("a metadata key is empty");
            }
            if (k.startsWith("kiln.")) {
                throw new IllegalArgumentException("metadata key '" + k + "': the kiln. prefix is reserved");
            }
        }
        String hash = sha256(artifact);
        return locked(() -> {
            Path versions = root.resolve(name).resolve("versions");
            Files.createDirectories(versions);
            cleanTemporaries(versions);
            int number = latestNumber(name) + 1;
            Path tmp = versions.resolve(".tmp-" + UUID.randomUUID());
            Files.createDirectory(tmp);
            writeSynced(tmp.resolve(ARTIFACT), artifact);
            Properties p = new Properties();
            p.setProperty("kiln.number", Integer.toString(number));
            p.setProperty("kiln.sha256", hash);
            p.setProperty("kiln.size", Long.toString(artifact.length));
            p.setProperty("kiln.created", Instant.now().toString());
            p.setProperty("kiln.author", meta.getOrDefault("author", System.getProperty("user.name", "unknown")));
            if (meta.containsKey("parent")) {
                p.setProperty("kiln.parent", meta.get("parent"));
            }
            meta.forEach(p::setProperty);
            writeSynced(tmp.resolve(INFO), store(p));
            AtomicFiles.syncDirectory(tmp);
            Path dest = versions.resolve(Integer.toString(number));
            try {
                Files.move(tmp, dest, StandardCopyOption.ATOMIC_MOVE);
            } catch (FileAlreadyExistsException e) {
                throw new IOException("version " + number + " of '" + name + "' appeared while registering: "
                        + "another writer ignored the lock", e);
            }
            AtomicFiles.syncDirectory(versions);
            return read(name, number);
        });
    }

    private static String sha256(byte[] data) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static byte[] store(Properties p) throws IOException {
        // Sorted keys, no timestamp comment: the file is a pure function of the properties.
        StringBuilder sb = new StringBuilder();
        for (String k : new TreeMap<>(toMap(p)).keySet()) {
            sb.append(escape(k, true)).append('=').append(escape(p.getProperty(k), false)).append('\n');
        }
        return sb.toString().getBytes(StandardCharsets.ISO_8859_1); // non-ASCII is \\u-escaped above
    }

    private static Map<String, String> toMap(Properties p) {
        Map<String, String> m = new LinkedHashMap<>();
        for (String k : p.stringPropertyNames()) {
            m.put(k, p.getProperty(k));
        }
        return m;
    }

    private static String escape(String s, boolean key) {
        StringBuilder b = new StringBuilder();
        for (char c : s.toCharArray()) {
            switch (c) {
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                case '=', ':', '#', '!' -> b.append('\\').append(c);
                case ' ' -> b.append(key ? "\\ " : " ");
                default -> {
                    if (c < 0x20 || c > 0x7e) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.toString();
    }

    static void writeSynced(Path file, byte[] data) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(data);
            while (b.hasRemaining()) {
                ch.write(b);
            }
            ch.force(true);
        }
    }

    private static void cleanTemporaries(Path dir) throws IOException {
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, ".*")) {
            for (Path p : ds) {
                deleteTree(p);
            }
        }
    }

    static void deleteTree(Path p) throws IOException {
        if (Files.isDirectory(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            try (DirectoryStream<Path> ds = Files.newDirectoryStream(p)) {
                for (Path c : ds) {
                    deleteTree(c);
                }
            }
        }
        Files.deleteIfExists(p);
    }

    private int latestNumber(String name) throws IOException {
        List<Integer> all = numbers(name);
        return all.isEmpty() ? 0 : all.get(all.size() - 1);
    }

    private List<Integer> numbers(String name) throws IOException {
        Path versions = root.resolve(name).resolve("versions");
        List<Integer> out = new ArrayList<>();
        if (!Files.isDirectory(versions)) {
            return out;
        }
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(versions)) {
            for (Path p : ds) {
                String f = p.getFileName().toString();
                if (f.matches("[1-9][0-9]{0,8}")) {
                    out.add(Integer.parseInt(f));
                }
            }
        }
        out.sort(Comparator.naturalOrder());
        return out;
    }

    /** Model names, sorted. */
    public List<String> models() throws IOException {
        List<String> out = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(root)) {
            for (Path p : ds) {
                String f = p.getFileName().toString();
                if (NAME.matcher(f).matches() && Files.isDirectory(p.resolve("versions"))) {
                    out.add(f);
                }
            }
        }
        out.sort(Comparator.naturalOrder());
        return out;
    }

    /** Every version of {@code name}, oldest first. */
    public List<ModelVersion> versions(String name) throws IOException {
        checkName("model name", name);
        List<ModelVersion> out = new ArrayList<>();
        for (int n : numbers(name)) {
            out.add(read(name, n));
        }
        return out;
    }

    /** One version. */
    public ModelVersion version(String name, int number) throws IOException {
        checkName("model name", name);
        if (!Files.isDirectory(root.resolve(name).resolve("versions").resolve(Integer.toString(number)))) {
            throw new NoSuchFileException("model '" + name + "' has no version " + number);
        }
        return read(name, number);
    }

    private ModelVersion read(String name, int number) throws IOException {
        Path dir = root.resolve(name).resolve("versions").resolve(Integer.toString(number));
        Properties p = new Properties();
        try (var in = Files.newInputStream(dir.resolve(INFO))) {
            p.load(in);
        }
        Map<String, String> user = new TreeMap<>();
        for (String k : p.stringPropertyNames()) {
            if (!k.startsWith("kiln.")) {
                user.put(k, p.getProperty(k));
            }
        }
        if (!Integer.toString(number).equals(p.getProperty("kiln.number"))) {
            throw new IOException("registry " + root + ": version " + number + " of '" + name + "' is inconsistent");
        }
        String parent = p.getProperty("kiln.parent");
        return new ModelVersion(name, number, p.getProperty("kiln.sha256"), Long.parseLong(p.getProperty("kiln.size")),
                Instant.parse(p.getProperty("kiln.created")), p.getProperty("kiln.author"),
                parent, dir.resolve(ARTIFACT), Map.copyOf(user));
    }

    /** The artifact bytes of a version, checked against its recorded SHA-256. */
    public byte[] artifact(ModelVersion v) throws IOException {
        byte[] data = Files.readAllBytes(v.artifact());
        if (!sha256(data).equals(v.sha256())) {
            throw new IOException("version " + v.number() + " of '" + v.name() + "' does not match its SHA-256: the "
                    + "artifact was modified on disk");
        }
        return data;
    }

    /** Loads a version stored as a plain Kiln model file. */
    public Sequential load(ModelVersion v) throws IOException {
        return load(v, null);
    }

    /**
     * Loads a version stored as a Kiln model file, plain or encrypted with {@code key} (decrypted in
     * memory; the plaintext never touches the disk). {@code key} may be null for plain files.
     */
    public Sequential load(ModelVersion v, dev.kiln.security.ArtifactKey key) throws IOException {
        byte[] data = artifact(v);
        if (dev.kiln.security.Artifacts.isEncrypted(data)) {
            if (key == null) {
                throw new IllegalStateException("version " + v.number() + " of '" + v.name() + "' is encrypted (key id '"
                        + dev.kiln.security.Artifacts.envelope(data).keyId() + "'): give its key");
            }
            data = dev.kiln.security.Artifacts.decrypt(data, key);
        }
        return ModelFile.fromBytes(data);
    }

    /** Deletes a version; refused while an alias points to it. */
    public void delete(String name, int number) throws IOException {
        checkName("model name", name);
        locked(() -> {
            ModelVersion v = version(name, number);
            for (Map.Entry<String, Integer> a : aliases(name).entrySet()) {
                if (a.getValue() == v.number()) {
                    throw new IllegalStateException("version " + number + " of '" + name + "' is alias '" + a.getKey()
                            + "': move the alias first");
                }
            }
            Path versions = root.resolve(name).resolve("versions");
            Path gone = versions.resolve(".deleted-" + number + "-" + UUID.randomUUID());
            Files.move(versions.resolve(Integer.toString(number)), gone, StandardCopyOption.ATOMIC_MOVE);
            AtomicFiles.syncDirectory(versions);
            deleteTree(gone);
            return null;
        });
    }

    // ---- aliases ----------------------------------------------------------------------------------

    /** Aliases of {@code name} and the versions they point to. */
    public Map<String, Integer> aliases(String name) throws IOException {
        checkName("model name", name);
        Map<String, Integer> out = new TreeMap<>();
        Path dir = root.resolve(name).resolve("aliases");
        if (!Files.isDirectory(dir)) {
            return out;
        }
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
            for (Path p : ds) {
                String a = p.getFileName().toString();
                if (NAME.matcher(a).matches()) {
                    out.put(a, readAlias(p).get(0));
                }
            }
        }
        return out;
    }

    /** The version an alias points to, if the alias exists. */
    public Optional<ModelVersion> resolve(String name, String alias) throws IOException {
        checkName("model name", name);
        Path p = root.resolve(name).resolve("aliases").resolve(checkName("alias", alias));
        if (!Files.exists(p)) {
            return Optional.empty();
        }
        return Optional.of(read(name, readAlias(p).get(0)));
    }

    /** Alias file: the current target first, then earlier targets, newest first. */
    private static List<Integer> readAlias(Path p) throws IOException {
        String s = Files.readString(p, StandardCharsets.US_ASCII).strip();
        List<Integer> out = new ArrayList<>();
        for (String part : s.split(",")) {
            try {
                out.add(Integer.parseInt(part.strip()));
            } catch (NumberFormatException e) {
                throw new IOException("alias file " + p + " is corrupt");
            }
        }
        if (out.isEmpty()) {
            throw new IOException("alias file " + p + " is empty");
        }
        return out;
    }

    private void writeAlias(String name, String alias, List<Integer> targets) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < targets.size() && i < 100; i++) {
            sb.append(i == 0 ? "" : ",").append(targets.get(i));
        }
        byte[] data = (sb + "\n").getBytes(StandardCharsets.US_ASCII);
        AtomicFiles.write(root.resolve(name).resolve("aliases").resolve(alias), ch -> {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(data);
            while (b.hasRemaining()) {
                ch.write(b);
            }
        });
    }

    /** Points {@code alias} at {@code version} (atomically); the previous target is kept for {@link #rollback}. */
    public void promote(String name, String alias, int version) throws IOException {
        checkName("model name", name);
        checkName("alias", alias);
        if (alias.chars().allMatch(Character::isDigit)) {  // "show fraud 5": version 5, or alias 5?
            throw new IllegalArgumentException("alias '" + alias + "' is all digits: it would read as a version number");
        }
        locked(() -> {
            version(name, version); // must exist (and be complete: it is a renamed directory)
            cleanTemporaries(Files.createDirectories(root.resolve(name).resolve("aliases")));
            Path p = root.resolve(name).resolve("aliases").resolve(alias);
            List<Integer> targets = new ArrayList<>();
            targets.add(version);
            if (Files.exists(p)) {
                targets.addAll(readAlias(p));
            }
            writeAlias(name, alias, targets);
            return null;
        });
    }

    /** Moves {@code alias} back to its previous target (skipping deleted versions); returns it. */
    public ModelVersion rollback(String name, String alias) throws IOException {
        checkName("model name", name);
        checkName("alias", alias);
        return locked(() -> {
            Path p = root.resolve(name).resolve("aliases").resolve(alias);
            if (!Files.exists(p)) {
                throw new IllegalStateException("model '" + name + "' has no alias '" + alias + "'");
            }
            List<Integer> targets = new ArrayList<>(readAlias(p));
            targets.remove(0);
            List<Integer> numbers = numbers(name);
            while (!targets.isEmpty() && !numbers.contains(targets.get(0))) {
                targets.remove(0);
            }
            if (targets.isEmpty()) {
                throw new IllegalStateException("alias '" + alias + "' of '" + name + "' has no earlier version to roll back to");
            }
            writeAlias(name, alias, targets);
            return read(name, targets.get(0));
        });
    }

    /** Removes an alias. */
    public void removeAlias(String name, String alias) throws IOException {
        checkName("model name", name);
        checkName("alias", alias);
        locked(() -> {
            Files.deleteIfExists(root.resolve(name).resolve("aliases").resolve(alias));
            return null;
        });
    }

    @Override
    public String toString() {
        return "ModelRegistry[" + root + "]";
    }

}
