package dev.kiln.tensor;

import dev.kiln.internal.bindings.KilnNative;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A small per-thread block of native memory through which shapes, strides and scalar results cross
 * into native code, so an op call allocates nothing. Slot k (0..7) holds 8 longs at byte 64k.
 */
final class Scratch {
    static final int SLOT_BYTES = 64;
    private static final ThreadLocal<Scratch> LOCAL = ThreadLocal.withInitial(Scratch::new);

    final ByteBuffer buffer;
    final long address;

    private Scratch() {
        buffer = ByteBuffer.allocateDirect(8 * SLOT_BYTES + 64).order(ByteOrder.nativeOrder());
        address = KilnNative.addressOf(buffer);
    }

    static Scratch get() {
        return LOCAL.get();
    }

    long slot(int k) {
        return address + (long) k * SLOT_BYTES;
    }

    /** Writes values[0..n) into slot k and returns the slot's address. */
    long put(int k, long[] values) {
        int base = k * SLOT_BYTES;
        for (int i = 0; i < values.length; i++) {
            buffer.putLong(base + 8 * i, values[i]);
        }
        return address + base;
    }
}
