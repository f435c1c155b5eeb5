package dev.kiln.cli;

import dev.kiln.security.ArtifactKey;
import dev.kiln.security.Artifacts;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code kiln encrypt} and {@code kiln decrypt}. */
final class CryptCommands {
    private CryptCommands() {}

    @Command(name = "encrypt", mixinStandardHelpOptions = true,
            description = {"Encrypts a file (a model or any artifact) with authenticated streaming encryption "
                    + "(AES-256-GCM-HKDF, 1 MiB segments). The output is written under a temporary name and renamed "
                    + "when complete.", "Exit code 0 on success, 1 on failure (reason on stderr), 2 on bad usage."})
    static final class Encrypt implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "IN") Path in;
        @Parameters(index = "1", paramLabel = "OUT") Path out;
        @Option(names = "--key-id", required = true, description = "Name of the key (stored in the artifact).") String keyId;
        @ArgGroup(exclusive = false, multiplicity = "1") KeyOptions key;
        @Option(names = "--json", description = "Print the result as JSON.") boolean json;
        @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            checkFiles(in, out);
            return run(spec, json, key, keyId, "encrypted", in, out, Artifacts::encryptFile);
        }
    }

    @Command(name = "decrypt", mixinStandardHelpOptions = true,
            description = {"Decrypts an artifact made by 'kiln encrypt'. The output appears only if the whole artifact "
                    + "authenticates (a modified, truncated or reordered file, or a wrong key, leaves no output).",
                    "Exit code 0 on success, 1 on failure (reason on stderr), 2 on bad usage."})
    static final class Decrypt implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "IN") Path in;
        @Parameters(index = "1", paramLabel = "OUT") Path out;
        @Option(names = "--key-id", description = "Expected key id (default: the one the artifact names).") String keyId;
        @ArgGroup(exclusive = false, multiplicity = "1") KeyOptions key;
        @Option(names = "--json", description = "Print the result as JSON.") boolean json;
        @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            checkFiles(in, out);
            String id = keyId != null ? keyId : Artifacts.envelope(in).keyId();
            return run(spec, json, key, id, "decrypted", in, out, Artifacts::decryptFile);
        }
    }

    /**
     * IN must be a file and OUT a file name (its directory is created if missing, as Kiln's writers
     * do; OUT may be IN: the file is replaced atomically). Before: a missing IN said only its name,
     * and an OUT that is a directory named the temporary file.
     */
    static void checkFiles(Path in, Path out) {
        if (!java.nio.file.Files.exists(in)) {
            throw new IllegalStateException("IN " + in + ": no such file");
        }
        if (java.nio.file.Files.isDirectory(in)) {
            throw new IllegalStateException("IN " + in + " is a directory");
        }
        if (java.nio.file.Files.isDirectory(out)) {
            throw new IllegalStateException("OUT " + out + " is a directory: give a file name");
        }
    }

    /** Encrypt or decrypt one file. */
    @FunctionalInterface
    interface FileOp {
        void apply(Path in, Path out, ArtifactKey key) throws IOException;
    }

    /** Runs {@code op} with the key named {@code keyId} (destroyed afterwards) and reports the result. */
    static int run(picocli.CommandLine.Model.CommandSpec spec, boolean json, KeyOptions key, String keyId, String what,
                   Path in, Path out, FileOp op) throws IOException {
        ArtifactKey k = key.key(keyId);
        try {
            op.apply(in, out, k);
        } finally {
            k.destroy();
        }
        report(spec, json, what, out, keyId);
        return 0;
    }

    static void report(picocli.CommandLine.Model.CommandSpec spec, boolean json, String what, Path out, String keyId) {
        var w = spec.commandLine().getOut();
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("result", what);
            o.put("output", out.toString());
            o.put("key_id", keyId);
            w.println(Json.write(o));
        } else {
            w.println(what + " " + out + " (key id '" + keyId + "')");
        }
        w.flush();
    }
}
