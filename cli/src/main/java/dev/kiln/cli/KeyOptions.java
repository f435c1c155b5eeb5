package dev.kiln.cli;

import dev.kiln.security.ArtifactKey;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Option;

/**
 * Where a key comes from: a file, an environment variable, a password file or a password prompt.
 * Never a command-line argument (it would show in the process list and shell history).
 */
final class KeyOptions {
    @ArgGroup(exclusive = true, multiplicity = "1")
    Source source;

    static final class Source {
        @Option(names = "--key-file", paramLabel = "FILE", description = "A 256-bit key: 32 bytes, or 64 hex digits.")
        Path keyFile;

        @Option(names = "--key-env", paramLabel = "VAR", description = "Environment variable holding 64 hex digits.")
        String keyEnv;

        @Option(names = "--password-file", paramLabel = "FILE", description = "File whose first line is the password.")
        Path passwordFile;

        @Option(names = "--password", description = "Prompt for the password (on the terminal, not echoed).")
        boolean prompt;
    }

    /** A key or password file must be a readable file (before: the bare path, or "Is a directory"). */
    private static Path secretFile(String option, Path file) {
        if (Files.isDirectory(file)) {
            throw new IllegalStateException(option + " " + file + " is a directory");
        }
        if (!Files.exists(file)) {
            throw new IllegalStateException(option + " " + file + ": no such file");
        }
        if (!Files.isReadable(file)) {
            throw new IllegalStateException(option + " " + file + ": not readable");
        }
        return file;
    }

    ArtifactKey key(String keyId) throws IOException {
        if (source.keyFile != null) {
            secretFile("--key-file", source.keyFile);
            return ArtifactKey.fromFile(keyId, source.keyFile);
        }
        if (source.keyEnv != null) {
            return ArtifactKey.fromEnvironment(keyId, source.keyEnv);
        }
        char[] pw;
        if (source.passwordFile != null) {
            byte[] b = Files.readAllBytes(secretFile("--password-file", source.passwordFile));
            String first = new String(b, StandardCharsets.UTF_8).lines().findFirst().orElse("");
            Arrays.fill(b, (byte) 0);
            pw = first.toCharArray();
        } else {
            java.io.Console c = System.console();
            if (c == null) {
                throw new IllegalStateException("--password needs a terminal to prompt on; use --password-file or --key-file");
            }
            pw = c.readPassword("Password for key '%s': ", keyId);
            if (pw == null) {
                throw new IllegalStateException("no password given");
            }
        }
        try {
            return ArtifactKey.password(keyId, pw);
        } finally {
            Arrays.fill(pw, '\0');
        }
    }
}
