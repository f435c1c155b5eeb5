package dev.kiln.tensor;

import dev.kiln.Kiln;

/** Test helper: native bytes in use once memory freed lazily by earlier tests has been reclaimed. */
public final class NativeMemory {
    private NativeMemory() {}

    /**
     * Memory behind a ByteBuffer view is freed when the view is garbage-collected, so a test that
     * compares bytes in use before and after must start from a settled state: collect until the
     * figure stops moving.
     */
    public static long settledBytesInUse() {
        long last = Kiln.memoryStats().bytesInUse();
        int stable = 0;
        for (int i = 0; i < 100 && stable < 3; i++) {
            System.gc();
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
            long now = Kiln.memoryStats().bytesInUse();
            stable = now == last ? stable + 1 : 0;
            last = now;
        }
        return last;
    }
}
