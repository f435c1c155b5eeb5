package dev.kiln.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.internal.onnx.Onnx.ModelProto;
import dev.kiln.internal.onnx.Onnx.StringStringEntryProto;
import dev.kiln.internal.onnx.Onnx.TensorProto;
import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * ONNX models whose weights live in a file beside them (external data): they load from their path
 * exactly as the same model with its weights inside, and every broken rule (location outside the
 * directory, range outside the file, wrong length, overlaps, checksum) is refused by name.
 */
class OnnxExternalDataTest {
    static Sequential model() {
        return Sequential.builder(6).dense(8, Init.HE, 1).relu().dense(3, Init.XAVIER, 2).softmax().build();
    }

    static float[] run(Sequential m) {
        try (Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 1, 3)) {
            return OnnxActivationsTest.run(m, x);
        }
    }

    /** One entry of a tensor's external_data. */
    static StringStringEntryProto kv(String k, String v) {
        return StringStringEntryProto.newBuilder().setKey(k).setValue(v).build();
    }

    static String sha1(byte[] b) throws Exception {
        return java.util.HexFormat.of().formatHex(MessageDigest.getInstance("SHA-1").digest(b));
    }

    /**
     * m's initializers moved into dir/location, each at a 64-byte aligned offset (as onnx's
     * save_model writes them), with location, offset, length and, if asked, checksum; then edit
     * applied to each moved tensor. Returns the model file written beside it.
     */
    static Path externalize(ModelProto m, Path dir, String location, boolean checksums, UnaryOperator<TensorProto> edit)
            throws Exception {
        ByteArrayOutputStream data = new ByteArrayOutputStream();
        ModelProto.Builder b = m.toBuilder();
        for (int i = 0; i < b.getGraph().getInitializerCount(); i++) {
            TensorProto t = b.getGraph().getInitializer(i);
            byte[] raw = t.getRawData().toByteArray();
            while (data.size() % 64 != 0) {
                data.write(0);
            }
            TensorProto.Builder e = t.toBuilder().clearRawData().setDataLocation(TensorProto.DataLocation.EXTERNAL)
                    .addExternalData(kv("location", location)).addExternalData(kv("offset", Long.toString(data.size())))
                    .addExternalData(kv("length", Long.toString(raw.length)));
            if (checksums) {
                e.addExternalData(kv("checksum", sha1(raw)));
            }
            data.write(raw);
            b.getGraphBuilder().setInitializer(i, edit.apply(e.build()));
        }
        Files.createDirectories(dir.resolve(location).getParent());
        Files.write(dir.resolve(location), data.toByteArray());
        Path model = dir.resolve("model.onnx");
        Files.write(model, b.build().toByteArray());
        return model;
    }

    static ModelProto exported(Sequential m) throws Exception {
        return ModelProto.parseFrom(OnnxModels.toBytes(m));
    }

    @Test
    void aModelWithItsWeightsBesideItLoadsFromItsPathExactly(@TempDir Path dir) throws Exception {
        try (Sequential m = model()) {
            ModelProto inside = exported(m);
            assertTrue(inside.getGraph().getInitializerCount() >= 4);
            for (boolean checksums : new boolean[] {false, true}) {
                Path sub = dir.resolve(checksums ? "with-sha1" : "plain");
                Path f = externalize(inside, sub, "weights/model.bin", checksums, t -> t);
                try (Sequential back = OnnxModels.load(f)) {
                    assertEquals(m.toString(), back.toString());
                    assertArrayEquals(run(m), run(back));
                }
            }
            // The length may be left out (it is the tensor's size), as may the offset of the first.
            Path f = externalize(inside, dir.resolve("no-length"), "w.bin", false, t -> {
                TensorProto.Builder e = t.toBuilder().clearExternalData();
                t.getExternalDataList().stream().filter(kvp -> !kvp.getKey().equals("length")
                        && !(kvp.getKey().equals("offset") && kvp.getValue().equals("0"))).forEach(e::addExternalData);
                return e.build();
            });
            try (Sequential back = OnnxModels.load(f)) {
                assertArrayEquals(run(m), run(back));
            }
        }
    }

    @Test
    void theBytesAloneCannotReachTheFiles(@TempDir Path dir) throws Exception {
        try (Sequential m = model()) {
            byte[] bytes = Files.readAllBytes(externalize(exported(m), dir, "w.bin", false, t -> t));
            String first = ModelProto.parseFrom(bytes).getGraph().getInitializer(0).getName();
            assertEquals("onnx: tensor '" + first + "' keeps its data in a file beside the model (external data): load the "
                    + "model from its path (OnnxModels.load) so that Kiln can read it",
                    assertThrows(IllegalArgumentException.class, () -> OnnxModels.fromBytes(bytes)).getMessage());
        }
    }

    /** The refusal of the model whose first moved tensor went through edit. */
    static String refusal(Path dir, String location, UnaryOperator<TensorProto> edit) throws Exception {
        try (Sequential m = model()) {
            boolean[] first = {true};
            Path f = externalize(exported(m), dir, location, false, t -> {
                if (!first[0]) {
                    return t;
                }
                first[0] = false;
                return edit.apply(t);
            });
            String why = assertThrows(IllegalArgumentException.class, () -> OnnxModels.load(f).close()).getMessage();
            assertTrue(why.startsWith(f + ": "), why); // a load from a path names the file
            return "onnx: " + why.substring(f.toString().length() + 2);
        }
    }

    static UnaryOperator<TensorProto> set(String key, String value) {
        return t -> {
            TensorProto.Builder e = t.toBuilder().clearExternalData();
            boolean found = false;
            for (StringStringEntryProto p : t.getExternalDataList()) {
                if (p.getKey().equals(key)) {
                    found = true;
                    if (value != null) {
                        e.addExternalData(kv(key, value));
                    }
                } else {
                    e.addExternalData(p);
                }
            }
            if (!found && value != null) {
                e.addExternalData(kv(key, value));
            }
            return e.build();
        };
    }

    @Test
    void everyBrokenRuleIsRefusedByName(@TempDir Path dir) throws Exception {
        String w = "0.weight"; // Kiln's export names the first layer's weight so
        assertEquals("onnx: external data of tensor '" + w + "' names a location outside the model's directory: '../w.bin'",
                refusal(dir.resolve("a/b"), "w.bin", set("location", "../w.bin")));
        assertEquals("onnx: external data of tensor '" + w + "' names an absolute location '/etc/passwd' (it must be "
                + "relative to the model's directory)", refusal(dir.resolve("c"), "w.bin", set("location", "/etc/passwd")));
        assertEquals("onnx: external data of tensor '" + w + "' names no location",
                refusal(dir.resolve("d"), "w.bin", set("location", null)));
        assertEquals("onnx: external data of tensor '" + w + "' is 12 bytes long in 'w.bin', but its dims and type make 192 "
                + "bytes", refusal(dir.resolve("e"), "w.bin", set("length", "12")));
        assertEquals("onnx: external data of tensor '" + w + "' has offset '-4': not a byte count",
                refusal(dir.resolve("f"), "w.bin", set("offset", "-4")));
        assertEquals("onnx: external data of tensor '" + w + "' has length 'lots': not a byte count",
                refusal(dir.resolve("g"), "w.bin", set("length", "lots")));
        assertTrue(refusal(dir.resolve("h"), "w.bin", set("offset", "1000000")).startsWith("onnx: external data of tensor '"
                + w + "' lies at bytes 1000000..1000192 of 'w.bin', which has "), "past the end");
        // The first tensor moved onto the second's bytes
        assertTrue(refusal(dir.resolve("i"), "w.bin", set("offset", "192")).contains("overlaps another tensor's bytes"),
                "overlap");
        assertEquals("onnx: external data of tensor '" + w + "' does not match its SHA-1 checksum in 'w.bin' (modified or "
                + "corrupt)", refusal(dir.resolve("j"), "w.bin", set("checksum", "0".repeat(40))));
        assertEquals("onnx: external data of tensor '" + w + "' names 'sub', which is not a regular file",
                refusal(dir.resolve("k"), "w.bin", t -> {
                    try {
                        Files.createDirectories(dir.resolve("k/sub"));
                    } catch (IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                    return set("location", "sub").apply(t);
                }));
    }

    @Test
    void aTruncatedOrMissingFileAndALinkOutAreRefused(@TempDir Path dir) throws Exception {
        try (Sequential m = model()) {
            Path f = externalize(exported(m), dir.resolve("t"), "w.bin", false, t -> t);
            byte[] all = Files.readAllBytes(dir.resolve("t/w.bin"));
            Files.write(dir.resolve("t/w.bin"), java.util.Arrays.copyOf(all, all.length - 10));
            assertTrue(assertThrows(IllegalArgumentException.class, () -> OnnxModels.load(f)).getMessage()
                    .contains("(truncated, or the offset is wrong)"));
            Files.delete(dir.resolve("t/w.bin"));
            NoSuchFileException gone = assertThrows(NoSuchFileException.class, () -> OnnxModels.load(f));
            assertTrue(gone.getMessage().contains("keeps its data in 'w.bin', which is not beside the model"), gone.getMessage());
            // A link beside the model to a file elsewhere: refused, though the file is readable.
            Path g = externalize(exported(m), dir.resolve("elsewhere"), "w.bin", false, t -> t);
            Files.createDirectories(dir.resolve("l"));
            Files.write(dir.resolve("l/model.onnx"), Files.readAllBytes(g));
            Files.createSymbolicLink(dir.resolve("l/w.bin"), dir.resolve("elsewhere/w.bin"));
            assertTrue(assertThrows(IllegalArgumentException.class, () -> OnnxModels.load(dir.resolve("l/model.onnx")))
                    .getMessage().contains("names a location that leads outside the model's directory: 'w.bin'"));
        }
    }

    @Test
    void aConstantNodesTensorMayLiveOutsideToo(@TempDir Path dir) throws Exception {
        // y = x @ W + c with c from a Constant node whose tensor is external
        try (Sequential m = Sequential.builder(2).dense(2, Init.HE, 4).build()) {
            ModelProto inside = exported(m);
            float[] c = {0.5f, -1.5f};
            java.nio.ByteBuffer raw = java.nio.ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            raw.putFloat(c[0]).putFloat(c[1]);
            Files.createDirectories(dir);
            Files.write(dir.resolve("c.bin"), raw.array());
            TensorProto ct = TensorProto.newBuilder().setName("c").addDims(2).setDataType(TensorProto.DataType.FLOAT_VALUE)
                    .setDataLocation(TensorProto.DataLocation.EXTERNAL).addExternalData(kv("location", "c.bin")).build();
            ModelProto.Builder b = inside.toBuilder();
            String out = b.getGraph().getOutput(0).getName();
            b.getGraphBuilder().getNodeBuilder(b.getGraph().getNodeCount() - 1).setOutput(0, "pre");
            b.getGraphBuilder().addNode(dev.kiln.internal.onnx.Onnx.NodeProto.newBuilder().setOpType("Constant").setName("k")
                    .addOutput("cv").addAttribute(dev.kiln.internal.onnx.Onnx.AttributeProto.newBuilder().setName("value")
                            .setType(dev.kiln.internal.onnx.Onnx.AttributeProto.AttributeType.TENSOR).setT(ct)));
            b.getGraphBuilder().addNode(dev.kiln.internal.onnx.Onnx.NodeProto.newBuilder().setOpType("Add").setName("add")
                    .addInput("pre").addInput("cv").addOutput(out));
            Files.write(dir.resolve("m.onnx"), b.build().toByteArray());
            try (Sequential back = OnnxModels.load(dir.resolve("m.onnx"));
                    dev.kiln.infer.InferenceSession sb = back.compile(1); dev.kiln.infer.InferenceSession sm = m.compile(1);
                    Tensor x = Tensor.of(new float[] {1, 2}, 1, 2); Tensor y = Tensor.zeros(DType.F32, 1, 2);
                    Tensor y0 = Tensor.zeros(DType.F32, 1, 2)) {
                sb.run(x, y);
                sm.run(x, y0);
                float[] got = y.toFloatArray(), want = y0.toFloatArray();
                assertEquals(want[0] + c[0], got[0], 1e-6f);
                assertEquals(want[1] + c[1], got[1], 1e-6f);
            }
        }
    }

    @Test
    void saveWithExternalDataWritesTheWeightsBesideTheModelAndLoadsBackExactly(@TempDir Path dir) throws Exception {
        try (Sequential m = model(); Sequential other = Sequential.builder(6).dense(8, Init.HE, 7).relu()
                .dense(3, Init.XAVIER, 8).softmax().build()) {
            Path f = dir.resolve("out/m.onnx");
            OnnxModels.saveWithExternalData(m, f);
            ModelProto written = ModelProto.parseFrom(Files.readAllBytes(f));
            assertEquals(0, OnnxExternalData.rawBytes(written.getGraph()), "no weights left inside");
            assertTrue(Files.size(dir.resolve("out/m.onnx.data")) >= OnnxExternalData.rawBytes(exported(m).getGraph()));
            try (Sequential back = OnnxModels.load(f)) {
                assertEquals(m.toString(), back.toString());
                assertArrayEquals(run(m), run(back));
            }
            // A small model saved plainly keeps its weights inside, no data file.
            OnnxModels.save(m, dir.resolve("plain/m.onnx"));
            assertTrue(Files.notExists(dir.resolve("plain/m.onnx.data")));
            assertEquals(OnnxExternalData.rawBytes(exported(m).getGraph()),
                    OnnxExternalData.rawBytes(ModelProto.parseFrom(Files.readAllBytes(dir.resolve("plain/m.onnx"))).getGraph()));
            // The model file of one save with the data file of another (same shapes): refused by the checksums.
            byte[] first = Files.readAllBytes(f);
            OnnxModels.saveWithExternalData(other, f);
            Files.write(f, first);
            assertTrue(assertThrows(IllegalArgumentException.class, () -> OnnxModels.load(f)).getMessage()
                    .contains("does not match its SHA-1 checksum in 'm.onnx.data'"));
            // A flipped byte in the data file: refused the same way.
            OnnxModels.saveWithExternalData(m, f);
            byte[] data = Files.readAllBytes(dir.resolve("out/m.onnx.data"));
            data[5] ^= 1;
            Files.write(dir.resolve("out/m.onnx.data"), data);
            assertTrue(assertThrows(IllegalArgumentException.class, () -> OnnxModels.load(f)).getMessage()
                    .contains("does not match its SHA-1 checksum"));
        }
    }
}
