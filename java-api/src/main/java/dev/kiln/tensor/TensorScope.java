package dev.kiln.tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Closes many tensors at once: everything made through or handed to a scope is closed, newest
 * first, when the scope closes.
 *
 * <pre>{@code
 * try (TensorScope scope = new TensorScope()) {
 *     Tensor a = scope.zeros(DType.F32, 2, 3);
 *     Tensor b = scope.track(a.add(a));
 * }   // b, then a, closed here
 * }</pre>
 * A scope is safe to use from several threads. Tracking into a closed scope throws.
 */
public final class TensorScope implements AutoCloseable {
    private final List<Tensor> tensors = new ArrayList<>();
    private boolean closed;

    /** Adds {@code t} to the scope and returns it. */
    public synchronized Tensor track(Tensor t) {
        Objects.requireNonNull(t, "tensor");
        if (closed) {
            throw new IllegalStateException("track: the scope is closed");
        }
        tensors.add(t);
        return t;
    }

    /** {@link Tensor#zeros(DType, long...)}, tracked. */
    public Tensor zeros(DType dtype, long... shape) {
        return track(Tensor.zeros(dtype, shape));
    }

    /** {@link Tensor#of(float[], long...)}, tracked. */
    public Tensor of(float[] data, long... shape) {
        return track(Tensor.of(data, shape));
    }

    /** Number of tensors tracked. */
    public synchronized int size() {
        return tensors.size();
    }

    /** Closes every tracked tensor (newest first). Idempotent. */
    @Override
    public void close() {
        List<Tensor> toClose;
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            toClose = new ArrayList<>(tensors);
            tensors.clear();
        }
        RuntimeException first = null;
        for (int i = toClose.size() - 1; i >= 0; i--) {
            try {
                toClose.get(i).close();
            } catch (RuntimeException e) {
                if (first == null) {
                    first = e;
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
