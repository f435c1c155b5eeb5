package dev.kiln.io;

import dev.kiln.tensor.Tensor;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/** Named tensors read from a file, plus its metadata. Owns the tensors: close it to free them. */
public final class TensorSet implements AutoCloseable {
    private final Map<String, Tensor> tensors;
    private final Map<String, String> metadata;

    TensorSet(LinkedHashMap<String, Tensor> tensors, Map<String, String> metadata) {
        this.tensors = Collections.unmodifiableMap(tensors);
        this.metadata = Collections.unmodifiableMap(metadata);
    }

    public Set<String> names() {
        return tensors.keySet();
    }

    /** The tensor named {@code name}; IllegalArgumentException when absent. */
    public Tensor get(String name) {
        Tensor t = tensors.get(name);
        if (t == null) {
            throw new IllegalArgumentException("no tensor named '" + name + "' (have " + tensors.keySet() + ")");
        }
        return t;
    }

    public Map<String, Tensor> tensors() {
        return tensors;
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    @Override
    public void close() {
        for (Tensor t : tensors.values()) {
            t.close();
        }
    }
}
