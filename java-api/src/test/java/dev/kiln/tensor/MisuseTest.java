package dev.kiln.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.KilnException;
import org.junit.jupiter.api.Test;

/** Every misuse gets a clear Java exception before native code runs; none crashes the JVM. */
class MisuseTest {
    @Test
    void closedTensor() {
        Tensor t = Tensor.zeros(DType.F32, 2, 3);
        t.close();
        assertEquals("sum: tensor F32[2, 3] is closed",
                assertThrows(IllegalStateException.class, t::sum).getMessage());
        assertEquals("copyTo: tensor F32[2, 3] is closed",
                assertThrows(IllegalStateException.class, t::toFloatArray).getMessage());
        assertEquals("floatView: tensor F32[2, 3] is closed",
                assertThrows(IllegalStateException.class, t::floatView).getMessage());
        assertEquals("reshape: tensor F32[2, 3] is closed",
                assertThrows(IllegalStateException.class, () -> t.reshape(6)).getMessage());
        try (Tensor ok = Tensor.zeros(DType.F32, 2, 3)) {
            assertEquals("add: tensor F32[2, 3] is closed",
                    assertThrows(IllegalStateException.class, () -> Ops.add(ok, t, ok)).getMessage());
        }
    }

    @Test
    void mismatchedShapes() {
        try (Tensor a = Tensor.zeros(DType.F32, 2, 3); Tensor b = Tensor.zeros(DType.F32, 4);
                Tensor out = Tensor.zeros(DType.F32, 3, 2); Tensor row = Tensor.zeros(DType.F32, 3)) {
            assertEquals("add: shapes [2, 3] and [4] do not broadcast (dimension 1: 3 vs 4)",
                    assertThrows(IllegalArgumentException.class, () -> Ops.add(a, b, a)).getMessage());
            assertEquals("add: a [2, 3] and b [3] broadcast to [2, 3] but out is [3, 2]",
                    assertThrows(IllegalArgumentException.class, () -> Ops.add(a, row, out)).getMessage());
            assertEquals("scale: a is [2, 3] but out is [3, 2]",
                    assertThrows(IllegalArgumentException.class, () -> Ops.scale(a, 2f, out)).getMessage());
            assertEquals("reshape: [2, 3] has 6 elements but [4, 2] has 8",
                    assertThrows(IllegalArgumentException.class, () -> a.reshape(4, 2)).getMessage());
            assertEquals("copyFrom(float[]): array has 5 elements but tensor F32[2, 3] has 6",
                    assertThrows(IllegalArgumentException.class, () -> a.copyFrom(new float[5])).getMessage());
            assertEquals("reshape: this view is not contiguous (strides [1, 3]); call copy() first",
                    assertThrows(IllegalStateException.class, () -> a.transpose(0, 1).reshape(6)).getMessage());
        }
    }

    @Test
    void mismatchedDtypes() {
        try (Tensor f = Tensor.zeros(DType.F32, 4); Tensor i = Tensor.zeros(DType.I32, 4)) {
            assertEquals("add: b has dtype I32; this op takes F32",
                    assertThrows(IllegalArgumentException.class, () -> Ops.add(f, i, f)).getMessage());
            assertEquals("copyFrom(float[]): tensor I32[4] has dtype I32; expected F32",
                    assertThrows(IllegalArgumentException.class, () -> i.copyFrom(new float[4])).getMessage());
            assertEquals("floatView: tensor I32[4] has dtype I32; expected F32",
                    assertThrows(IllegalArgumentException.class, i::floatView).getMessage());
            assertEquals("fillNormal: dtype is I32: random fills take F32, BF16 or F16",
                    assertThrows(IllegalArgumentException.class, () -> i.fillNormal(0, 1, 1)).getMessage());
            assertEquals("fill: 1.5 is not an integer in [-2147483648, 2147483647]",
                    assertThrows(IllegalArgumentException.class, () -> i.fill(1.5)).getMessage());
            assertEquals("to: no conversion from I32 to BF16 (supported: F32 <-> BF16, F32 <-> F16)",
                    assertThrows(IllegalArgumentException.class, () -> i.to(DType.BF16)).getMessage());
            assertEquals("copy: src is F32 but dst is I32",
                    assertThrows(IllegalArgumentException.class, () -> Ops.copy(f, i)).getMessage());
        }
    }

    @Test
    void negativeAndOverflowingSizes() {
        assertEquals("shape [2, -1]: dimension 1 is -1: dimensions must be >= 0",
                assertThrows(IllegalArgumentException.class, () -> Tensor.zeros(DType.F32, 2, -1)).getMessage());
        assertEquals("shape [4294967296, 4294967296]: the element count overflows a 64-bit integer",
                assertThrows(IllegalArgumentException.class,
                        () -> Tensor.zeros(DType.F32, 1L << 32, 1L << 32)).getMessage());
        assertEquals("shape [4611686018427387904] of F32 needs more than fits in 64 bits",
                assertThrows(IllegalArgumentException.class,
                        () -> Tensor.zeros(DType.F32, 1L << 62)).getMessage());
        assertEquals("shape [1, 1, 1, 1, 1, 1, 1, 1, 1] has rank 9: at most 8 dimensions",
                assertThrows(IllegalArgumentException.class,
                        () -> Tensor.zeros(DType.F32, 1, 1, 1, 1, 1, 1, 1, 1, 1)).getMessage());
        assertEquals("reshape: dimension 0 is -2 in [-2, 3]: dimensions must be >= 0 (or one -1)",
                assertThrows(IllegalArgumentException.class,
                        () -> {
                            try (Tensor t = Tensor.zeros(DType.F32, 6)) {
                                t.reshape(-2, 3);
                            }
                        }).getMessage());
    }

    @Test
    void nativeOutOfMemoryBecomesAKilnExceptionWithTheNativeMessage() {
        // 2^59 floats = 2^61 bytes: valid for Java, refused by the native allocator.
        KilnException e = assertThrows(KilnException.class, () -> Tensor.zeros(DType.F32, 1L << 59));
        assertEquals(KilnException.Status.OUT_OF_MEMORY, e.status());
        assertEquals("kiln_alloc: could not allocate 2305843009213693952 bytes", e.getMessage());
    }

    @Test
    void outOfRangeSlicesAndIndices() {
        try (Tensor t = Tensor.zeros(DType.F32, 3, 4)) {
            assertEquals("slice: [2, 5) is outside dimension 1 of size 4",
                    assertThrows(IndexOutOfBoundsException.class, () -> t.slice(1, 2, 5)).getMessage());
            assertEquals("slice: [-1, 2) is outside dimension 0 of size 3",
                    assertThrows(IndexOutOfBoundsException.class, () -> t.slice(0, -1, 2)).getMessage());
            assertEquals("slice: [3, 2) is outside dimension 0 of size 3",
                    assertThrows(IndexOutOfBoundsException.class, () -> t.slice(0, 3, 2)).getMessage());
            assertEquals("dimension 2 is out of range for a rank-2 tensor",
                    assertThrows(IndexOutOfBoundsException.class, () -> t.slice(2, 0, 1)).getMessage());
            assertEquals("getFloat: index 3 is outside dimension 0 of size 3",
                    assertThrows(IndexOutOfBoundsException.class, () -> t.getFloat(3, 0)).getMessage());
            assertEquals("getFloat: 1 indices for a rank-2 tensor",
                    assertThrows(IllegalArgumentException.class, () -> t.getFloat(1)).getMessage());
            assertEquals("permute: [0, 0] is not a permutation of 0..1",
                    assertThrows(IllegalArgumentException.class, () -> t.permute(0, 0)).getMessage());
        }
    }

    @Test
    void nulls() {
        try (Tensor t = Tensor.zeros(DType.F32, 2)) {
            assertEquals("b", assertThrows(NullPointerException.class, () -> Ops.add(t, null, t)).getMessage());
            assertEquals("data", assertThrows(NullPointerException.class, () -> t.copyFrom((float[]) null)).getMessage());
            assertEquals("dtype", assertThrows(NullPointerException.class, () -> Tensor.zeros(null, 2)).getMessage());
            assertEquals("shape", assertThrows(NullPointerException.class,
                    () -> Tensor.zeros(DType.F32, (long[]) null)).getMessage());
            assertEquals("op", assertThrows(NullPointerException.class, () -> Ops.binary(null, t, t, t)).getMessage());
        }
    }

    @Test
    void wrongDevice() {
        try (Tensor cpu = Tensor.zeros(DType.F32, 4); Tensor meta = Tensor.meta(DType.F32, 4)) {
            assertEquals("add: b is on meta but this op runs on cpu",
                    assertThrows(IllegalArgumentException.class, () -> Ops.add(cpu, meta, cpu)).getMessage());
            assertEquals("floatView: tensor F32[4] is on meta and has no CPU memory",
                    assertThrows(IllegalStateException.class, meta::floatView).getMessage());
            assertEquals("copyFrom: tensor F32[4] is on meta and has no CPU memory",
                    assertThrows(IllegalStateException.class, () -> meta.copyFrom(new float[4])).getMessage());
        }
        KilnException e = assertThrows(KilnException.class,
                () -> Tensor.zeros(DType.F32, Device.cuda(0), 4));
        assertEquals(KilnException.Status.UNSUPPORTED, e.status());
        assertEquals("cannot allocate on cuda:0: this build of Kiln has no CUDA backend", e.getMessage());
    }

    @Test
    void partialOverlapIsRefusedInPlaceIsAllowed() {
        try (Tensor t = Tensor.zeros(DType.F32, 10).fill(1)) {
            Tensor head = t.slice(0, 0, 8);
            Tensor tail = t.slice(0, 2, 10);
            assertEquals("add: out overlaps a without being the same elements: write to a separate tensor",
                    assertThrows(IllegalArgumentException.class, () -> Ops.add(head, head, tail)).getMessage());
            Ops.add(t, t, t);
            assertEquals(20.0, t.sum());
        }
    }

    @Test
    void packedI4RefusesStridedViews() {
        try (Tensor t = Tensor.zeros(DType.I4, 4, 4)) {
            assertEquals("slice: I4 packs two elements per byte; only contiguous views (reshape) are supported",
                    assertThrows(UnsupportedOperationException.class, () -> t.slice(0, 0, 1)).getMessage());
            assertEquals(8, t.reshape(16).byteSize());
            assertEquals("fill: 9.0 is not an integer in [-8, 7]",
                    assertThrows(IllegalArgumentException.class, () -> t.fill(9)).getMessage());
        }
    }

    @Test
    void nonFiniteActivationSlopesAreRefused() {
        try (Tensor a = Tensor.zeros(DType.F32, 2, 3)) {
            assertEquals("leaky_relu: alpha is NaN: must be finite",
                    assertThrows(IllegalArgumentException.class, () -> Ops.unary(Activation.LEAKY_RELU, Float.NaN, a, a))
                            .getMessage());
            assertEquals("leaky_relu: alpha is Infinity: must be finite",
                    assertThrows(IllegalArgumentException.class, () -> Epilogue.activation(Activation.RELU).withLeakyRelu(Float.POSITIVE_INFINITY))
                            .getMessage());
            assertEquals("leaky_relu: alpha is NaN: must be finite",
                    assertThrows(IllegalArgumentException.class,
                            () -> dev.kiln.nn.Sequential.builder(3).leakyRelu(Float.NaN)).getMessage());
        }
    }
}
