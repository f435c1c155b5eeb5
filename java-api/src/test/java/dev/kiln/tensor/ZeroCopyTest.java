package dev.kiln.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.Test;

/** Java views and native ops see the same bytes: nothing is copied in either direction. */
class ZeroCopyTest {
    @Test
    void writeThroughJavaViewIsSeenByNativeOp() {
        try (Tensor t = Tensor.zeros(DType.F32, 1000)) {
            FloatBuffer view = t.floatView();
            for (int i = 0; i < 1000; i++) {
                view.put(i, i);
            }
            assertEquals(999 * 1000 / 2.0, t.sum(), 0.0);
        }
    }

    @Test
    void nativeWriteIsSeenThroughJavaView() {
        try (Tensor a = Tensor.zeros(DType.F32, 64); Tensor b = Tensor.zeros(DType.F32, 64)) {
            FloatBuffer av = a.floatView();
            FloatBuffer bv = b.floatView();
            for (int i = 0; i < 64; i++) {
                av.put(i, i);
                bv.put(i, 2 * i);
            }
            Ops.add(a, b, a); // native writes into a
            for (int i = 0; i < 64; i++) {
                assertEquals(3f * i, av.get(i), "element " + i);
            }
        }
    }

    @Test
    void agronaAndByteViewsAddressTheSameMemory() {
        try (Tensor t = Tensor.zeros(DType.F32, 16)) {
            UnsafeBuffer ub = t.unsafeBufferView();
            assertEquals(64, ub.capacity());
            ub.putFloat(4 * 5, 9.5f);
            assertEquals(9.5f, t.getFloat(5));
            ByteBuffer bb = t.byteView();
            assertEquals(9.5f, bb.getFloat(20));
            Ops.scale(t, 2f, t);
            assertEquals(19f, ub.getFloat(20));
            assertEquals(19f, bb.getFloat(20));
        }
    }

    @Test
    void viewOfASliceStartsAtTheSlice() {
        try (Tensor t = Tensor.zeros(DType.F32, 4, 8)) {
            Tensor row2 = t.slice(0, 2, 3);
            row2.floatView().put(3, 42f);
            assertEquals(42f, t.getFloat(2, 3));
            assertEquals(t.address() + 2 * 8 * 4, row2.address());
        }
    }
}
