package dev.kiln.security;

import java.io.IOException;

/**
 * An encrypted artifact could not be opened: not an artifact, a malformed envelope, the wrong key,
 * or a failed authentication (modified, truncated or reordered). The message names the key id,
 * never key material or passwords.
 */
public final class ArtifactException extends IOException {
    private static final long serialVersionUID = 1L;

    public ArtifactException(String message) {
        super(message);
    }
}
