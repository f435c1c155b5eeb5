package dev.kiln.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.nn.Init;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A PyTorch nn.Sequential's state_dict in a safetensors file (Linear weights [out, in], a Linear
 * without bias, LayerNorm weight/bias, names under a prefix, F16) loads into the Kiln model whose
 * layers line up with the torch modules.
 */
class PyTorchStateDictTest {
    /** Linear(6, 10), ReLU, Linear(10, 8, bias=False), GELU, LayerNorm(8), Dropout, Linear(8, 3), Softmax. */
    static Sequential model(Init init) {
        return Sequential.builder(6).dense(10, init, 1).relu().dense(8, init, 2).gelu().layerNorm(1e-5f).dropout(0.1)
                .dense(3, init, 3).softmax().build();
    }

    /** The state dict PyTorch would save for {@code m}'s weights: torch names and layouts. */
    static Map<String, Tensor> torchDict(Sequential m, String prefix) {
        Map<String, Tensor> d = new LinkedHashMap<>();
        d.put(prefix + "0.weight", m.layers().get(0).weight().transpose(0, 1).copy());
        d.put(prefix + "0.bias", m.layers().get(0).bias().copy());
        d.put(prefix + "2.weight", m.layers().get(2).weight().transpose(0, 1).copy()); // no bias: bias=False
        d.put(prefix + "4.weight", m.layers().get(4).gamma().copy());
        d.put(prefix + "4.bias", m.layers().get(4).beta().copy());
        d.put(prefix + "6.weight", m.layers().get(6).weight().transpose(0, 1).copy());
        d.put(prefix + "6.bias", m.layers().get(6).bias().copy());
        return d;
    }

    static float[] run(Sequential m, Tensor x) {
        try (var s = m.compile(4); Tensor y = Tensor.zeros(DType.F32, x.size(0), 3)) {
            s.run(x, y);
            return y.toFloatArray();
        }
    }

    @Test
    void aTorchStateDictLoadsThroughSafeTensors(@TempDir Path dir) throws IOException {
        try (Sequential src = model(Init.HE); Tensor x = Tensor.zeros(DType.F32, 4, 6).fillNormal(0, 1, 5)) {
            src.layers().get(2).bias().fill(0); // the torch Linear has no bias
            for (Tensor t : src.parameters().values()) {
                if (t.rank() == 1 && t != src.layers().get(2).bias()) {
                    t.fillUniform(-0.5, 0.5, t.numel());
                }
            }
            float[] want = run(src, x);
            Map<String, Tensor> dict = torchDict(src, "");
            Map<String, Tensor> half = new LinkedHashMap<>();
            dict.forEach((k, v) -> half.put("net." + k, v.to(DType.F16)));
            half.put("head.weight", Tensor.zeros(DType.F32, 2)); // outside the prefix: not this model's
            try {
                SafeTensors.write(dir.resolve("f32.safetensors"), dict, Map.of());
                SafeTensors.write(dir.resolve("f16.safetensors"), half, Map.of());
            } finally {
                dict.values().forEach(Tensor::close);
                half.values().forEach(Tensor::close);
            }
            try (Sequential dst = model(Init.ZEROS); TensorSet st = SafeTensors.read(dir.resolve("f32.safetensors"))) {
                dst.loadPyTorchStateDict(st.tensors());
                assertArrayEquals(want, run(dst, x));
            }
            try (Sequential dst = model(Init.ZEROS); TensorSet st = SafeTensors.read(dir.resolve("f16.safetensors"))) {
                dst.loadPyTorchStateDict(st.tensors(), "net.");
                assertArrayEquals(want, run(dst, x), 2e-3f);
            }
        }
    }

    @Test
    void whatDoesNotLineUpIsNamedAndNothingChanges() {
        try (Sequential src = model(Init.HE); Sequential dst = model(Init.ZEROS)) {
            Map<String, Tensor> dict = torchDict(src, "");
            Map<String, float[]> before = new LinkedHashMap<>();
            dst.parameters().forEach((k, v) -> before.put(k, v.toFloatArray()));
            try {
                Tensor w0 = dict.get("0.weight");
                dict.put("0.weight", src.layers().get(0).weight()); // Kiln's [in, out], not torch's [out, in]
                assertEquals("loadPyTorchStateDict: '0.weight' is [6, 10] but layer 0 is Linear(6, 10): PyTorch's weight is "
                        + "[10, 6]", assertThrows(IllegalArgumentException.class, () -> dst.loadPyTorchStateDict(dict)).getMessage());
                dict.put("0.weight", w0);
                try (Tensor extra = Tensor.zeros(DType.F32, 8)) {
                    dict.put("4.running_mean", extra); // a BatchNorm's: Kiln has none there
                    assertEquals("loadPyTorchStateDict: no layer of this model takes [4.running_mean] (the torch modules must "
                            + "line up with the layers one to one)",
                            assertThrows(IllegalArgumentException.class, () -> dst.loadPyTorchStateDict(dict)).getMessage());
                    dict.remove("4.running_mean");
                }
                Tensor w6 = dict.remove("6.weight");
                assertEquals("loadPyTorchStateDict: no tensor named '6.weight'",
                        assertThrows(IllegalArgumentException.class, () -> dst.loadPyTorchStateDict(dict)).getMessage());
                dict.put("6.weight", w6);
                dst.parameters().forEach((k, v) -> assertArrayEquals(before.get(k), v.toFloatArray(), "nothing changed: " + k));
            } finally {
                dict.values().stream().filter(t -> t != src.layers().get(0).weight()).forEach(Tensor::close);
            }
        }
    }
}
