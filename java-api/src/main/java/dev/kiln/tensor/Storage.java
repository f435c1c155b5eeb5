package dev.kiln.tensor;

import dev.kiln.internal.Native;
import dev.kiln.internal.bindings.KilnNative;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One native allocation shared by a tensor and its views.
 *
 * <p>Lifetime: the memory is freed when the storage is closed AND no native call is using it AND
 * no {@link java.nio.ByteBuffer} view handed to the user is still reachable. So closing a tensor
 * while another thread runs an op on it, or while a user still holds a buffer view, can never turn
 * into a read of freed memory: the free is simply deferred to the last user. {@code close()} never
 * blocks.
 */
final class Storage {
    private static final long CLOSED = 1L << 62;

    final long address;
    final long bytes;
    final Device device;
    /** Where it was allocated, when {@code kiln.debugLeaks=true}; reported if the Cleaner frees it. */
    final Throwable allocationSite;

    // CLOSED bit | number of native calls in flight
    private final AtomicLong state = new AtomicLong();
    private final AtomicInteger bufferViews = new AtomicInteger();
    private final AtomicBoolean freed = new AtomicBoolean();

    /**
     * What frees the address: kiln_free for tensor memory, kiln_packed_b_destroy for packed
     * weights; a file mapping is released by dropping the buffer that owns it (the GC unmaps it).
     */
    enum Kind { MEMORY, PACKED_B, MAPPED }

    private final Kind kind;
    /** MAPPED: the mapping (kept reachable until the storage is freed). */
    private volatile java.nio.ByteBuffer mapping;

    private Storage(long address, long bytes, Device device, Throwable site) {
        this(address, bytes, device, site, Kind.MEMORY);
    }

    private Storage(long address, long bytes, Device device, Throwable site, Kind kind) {
        this.address = address;
        this.bytes = bytes;
        this.device = device;
        this.allocationSite = site;
        this.kind = kind;
    }

    /** Wraps a native kiln_packed_b handle (owned from now on). */
    static Storage packedB(long handle, long bytes) {
        return new Storage(handle, bytes, Device.CPU, DEBUG_LEAKS ? new Throwable("packed matrix made here") : null,
                Kind.PACKED_B);
    }

    /** Wraps a file mapping (a direct buffer) at its native address. */
    static Storage mapped(java.nio.ByteBuffer mapping, long address) {
        Storage s = new Storage(address, mapping.capacity(), Device.CPU,
                DEBUG_LEAKS ? new Throwable("mapped tensor made here") : null, Kind.MAPPED);
        s.mapping = mapping;
        return s;
    }

    static final boolean DEBUG_LEAKS = Boolean.getBoolean("kiln.debugLeaks");

    static Storage allocate(long bytes, Device device) {
        Throwable site = DEBUG_LEAKS ? new Throwable("tensor allocated here") : null;
        switch (device.kind()) {
            case META:
                return new Storage(0L, bytes, device, site);
            case CUDA:
                throw new dev.kiln.KilnException(dev.kiln.KilnException.Status.UNSUPPORTED,
                        "cannot allocate on " + device + ": this build of Kiln has no CUDA backend");
            default:
                Native.ensureLoaded();
                long[] out = new long[1];
                Native.check(KilnNative.alloc(bytes, out));
                return new Storage(out[0], bytes, device, site);
        }
    }

    /** Marks a native call in flight; throws if the storage is closed. */
    void acquire() {
        for (;;) {
            long s = state.get();
            if ((s & CLOSED) != 0) {
                throw new IllegalStateException("tensor is closed");
            }
            if (state.compareAndSet(s, s + 1)) {
                return;
            }
        }
    }

    void release() {
        long s = state.decrementAndGet();
        if (s == CLOSED) {
            maybeFree();
        }
    }

    boolean isClosed() {
        return (state.get() & CLOSED) != 0;
    }

    /** Closes; returns true if this call did it. Frees now unless something still uses the memory. */
    boolean close() {
        long before = state.getAndUpdate(s -> s | CLOSED);
        if ((before & CLOSED) != 0) {
            return false;
        }
        if (before == 0) {
            maybeFree();
        }
        return true;
    }

    /** Called (while acquired) when a ByteBuffer view is handed out. */
    void bufferViewCreated() {
        bufferViews.incrementAndGet();
    }

    /** Called by the Cleaner when a handed-out ByteBuffer view becomes unreachable. */
    void bufferViewCollected() {
        if (bufferViews.decrementAndGet() == 0) {
            maybeFree();
        }
    }

    boolean isFreed() {
        return freed.get();
    }

    private void maybeFree() {
        if (state.get() == CLOSED && bufferViews.get() == 0 && freed.compareAndSet(false, true)) {
            if (kind == Kind.MAPPED) {
                mapping = null;
            } else if (address != 0L) {
                Native.check(kind == Kind.MEMORY ? KilnNative.free(address) : KilnNative.packedBDestroy(address));
            }
        }
    }
}
