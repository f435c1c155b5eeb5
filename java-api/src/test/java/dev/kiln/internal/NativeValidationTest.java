package dev.kiln.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.KilnException;
import dev.kiln.internal.bindings.KilnNative;
import org.junit.jupiter.api.Test;

/** Native code never trusts its caller: bad arguments that bypass Java's checks come back as statuses. */
class NativeValidationTest {
    @Test
    void badArgumentsBecomeKilnExceptionsWithTheNativeMessage() {
        Native.ensureLoaded();
        KilnException e = assertThrows(KilnException.class,
                () -> Native.check(KilnNative.binaryF32(9, 0, 0, 0, 0, 0, 0, 0, 0)));
        assertEquals(KilnException.Status.INVALID_ARGUMENT, e.status());
        assertEquals("kiln_binary_f32: op is 9: not a kiln_binary_op", e.getMessage());

        e = assertThrows(KilnException.class, () -> Native.check(KilnNative.alloc(-1, new long[1])));
        assertEquals("kiln_alloc: bytes is -1: must be >= 0", e.getMessage());

        e = assertThrows(KilnException.class, () -> Native.check(KilnNative.sumF32(1, 0, 0, 0, 0)));
        assertTrue(e.getMessage().startsWith("kiln_sum_f32: out is NULL"), e.getMessage());

        e = assertThrows(KilnException.class, () -> Native.check(KilnNative.isaSet(17)));
        assertEquals(KilnException.Status.INVALID_ARGUMENT, e.status());
    }

    @Test
    void freeingAForeignAddressIsRefusedNotACrash() {
        Native.ensureLoaded();
        long[] out = new long[1];
        Native.check(KilnNative.alloc(256, out));
        try {
            KilnException e = assertThrows(KilnException.class,
                    () -> Native.check(KilnNative.free(out[0] + 128)));
            assertTrue(e.getMessage().contains("not allocated by kiln_alloc"), e.getMessage());
        } finally {
            Native.check(KilnNative.free(out[0]));
        }
    }
}
