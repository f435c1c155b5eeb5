package dev.kiln.registry;

import java.nio.file.Path;
import java.time.Instant;
import java.util.Map;

/**
 * One immutable version of a registered model: its number (1, 2, ... per model), the SHA-256 and
 * size of its artifact, when and by whom it was registered, its parent version (if given as
 * metadata {@code parent}), where its artifact lies, and the caller's metadata (metrics, training
 * configuration, ...).
 */
public record ModelVersion(String name, int number, String sha256, long size, Instant created, String author,
                           String parent, Path artifact, Map<String, String> metadata) {}
