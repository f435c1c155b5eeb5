package dev.kiln.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;

class KilnCommandTest {
    private static final class Result {
        int code;
        String out;
        String err;
    }

    private static Result run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        Result r = new Result();
        r.code = KilnCommand.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        r.out = out.toString();
        r.err = err.toString();
        return r;
    }

    @Test
    void everyCommandHasHelp() {
        for (String[] args : new String[][] {{"--help"}, {"info", "--help"}, {"demo", "--help"}, {"train", "--help"}, {"encrypt", "--help"}, {"decrypt", "--help"},
                {"registry", "--help"}, {"registry", "list", "--help"}, {"eval", "--help"}, {"report", "--help"},
                {"inspect", "--help"}, {"predict", "--help"}, {"bench", "--help"}}) {
            Result r = run(args);
            assertEquals(0, r.code, String.join(" ", args));
            assertTrue(r.out.contains("Usage: kiln"), r.out);
        }
    }

    @Test
    void infoPrintsJson() {
        Result r = run("info", "--json");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.startsWith("{\"version\":"), r.out);
        assertTrue(r.out.contains("\"isa\":"), r.out);
    }

    @Test
    void demoRunsAndLeavesNoNativeMemory() {
        Result r = run("demo", "--size", "100000", "--json");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"native_bytes_in_use_after\":0"), r.out);
        assertTrue(r.out.contains("\"zero_copy_delta\":1000.0"), r.out);
    }

    @Test
    void evalPrintsScikitLearnNamedMetrics(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        java.nio.file.Path labels = dir.resolve("labels.csv");
        java.nio.file.Path scores = dir.resolve("scores.csv");
        java.nio.file.Files.writeString(labels, "label\n0\n1\n1\n0\n1\n");
        java.nio.file.Files.writeString(scores, "p\n0.1\n0.8\n0.4\n0.3\n0.9\n");
        Result r = run("eval", "--labels", labels.toString(), "--scores", scores.toString());
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.startsWith("{\"task\":\"binary\",\"samples\":5,\"accuracy\":0.8"), r.out);
        for (String key : new String[] {"balanced_accuracy", "precision", "recall", "f1", "precision_macro", "f1_micro",
                "recall_weighted", "roc_auc", "average_precision", "log_loss", "confusion_matrix"}) {
            assertTrue(r.out.contains("\"" + key + "\":"), key + " in " + r.out);
        }
        assertTrue(r.out.contains("\"roc_auc\":1.0"), r.out);
        assertTrue(r.out.contains("\"confusion_matrix\":[[2,0],[1,2]]"), r.out);

        java.nio.file.Files.writeString(labels, "0\n1\n2\n2\n");
        java.nio.file.Files.writeString(scores, "0.7,0.2,0.1\n0.1,0.6,0.3\n0.2,0.3,0.5\n0.5,0.1,0.4\n");
        r = run("eval", "--labels", labels.toString(), "--scores", scores.toString());
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"task\":\"multiclass\""), r.out);
        assertTrue(r.out.contains("\"accuracy\":0.75") && r.out.contains("\"roc_auc_ovr\":") && r.out.contains("\"top_k_accuracy\":1.0"), r.out);

        java.nio.file.Files.writeString(labels, "1.5\n2.5\n");
        java.nio.file.Files.writeString(scores, "1.0\n3.0\n");
        r = run("eval", "--labels", labels.toString(), "--scores", scores.toString());
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"r2\":0.0") && r.out.contains("\"mean_absolute_error\":0.5"), r.out);

        r = run("eval", "--labels", dir.resolve("missing.csv").toString(), "--scores", scores.toString());
        assertEquals(1, r.code);
        assertTrue(r.err.startsWith("kiln eval: labels file ") && r.err.trim().endsWith("does not exist"), r.err);
        java.nio.file.Files.writeString(scores, "1.0\n");
        r = run("eval", "--labels", labels.toString(), "--scores", scores.toString());
        assertEquals(1, r.code);
        assertTrue(r.err.contains("has 2 rows but"), r.err);
        java.nio.file.Files.write(labels, new byte[] {'0', '\n', '1', (byte) 0xe9, '\n'});  // Latin-1, not UTF-8
        r = run("eval", "--labels", labels.toString(), "--scores", scores.toString());
        assertEquals(1, r.code);
        assertEquals("kiln eval: " + labels + " line 2 is not valid UTF-8", r.err.strip());
        r = run("eval", "--labels", dir.toString(), "--scores", scores.toString());
        assertEquals(1, r.code);
        assertEquals("kiln eval: labels file " + dir + " is a directory", r.err.strip());
    }

    @Test
    void reportWritesOneHtmlFile(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        java.nio.file.Path labels = dir.resolve("l.csv"), scores = dir.resolve("s.csv"), hist = dir.resolve("h.csv");
        java.nio.file.Path lat = dir.resolve("lat.txt"), out = dir.resolve("r.html");
        java.nio.file.Files.writeString(labels, "0\n1\n2\n2\n1\n0\n");
        java.nio.file.Files.writeString(scores, "0.7,0.2,0.1\n0.1,0.6,0.3\n0.2,0.3,0.5\n0.5,0.1,0.4\n0.3,0.4,0.3\n0.6,0.3,0.1\n");
        java.nio.file.Files.writeString(hist, "epoch,loss,accuracy\n1,0.9,0.6\n2,0.7,0.7\n3,0.6,0.75\n");
        java.nio.file.Files.writeString(lat, "15000\n18000\n22000\n19000\n");
        Result r = run("report", "--out", out.toString(), "--labels", labels.toString(), "--scores", scores.toString(),
                "--history", hist.toString(), "--latencies", lat.toString(), "--title", "CLI report");
        assertEquals(0, r.code, r.err);
        String html = java.nio.file.Files.readString(out);
        assertTrue(html.contains("<h1>CLI report</h1>") && html.contains("Confusion matrix") && html.contains("Loss per epoch")
                && html.contains("Latency histogram"), html.substring(0, Math.min(300, html.length())));
        Result j = run("report", "--out", out.toString(), "--history", hist.toString(), "--json");
        assertEquals(0, j.code, j.err);
        assertTrue(j.out.startsWith("{\"output\":\"" + out.toAbsolutePath() + "\",\"bytes\":")
                && j.out.contains("\"sections\":[\"history\"]"), j.out);
        Result none = run("report", "--out", out.toString());
        assertEquals(2, none.code);
        assertTrue(none.err.contains("give at least one of"), none.err);
    }

    @Test
    void evalAndReportRefuseLabelsWithoutAClassAndLatenciesOutOfRange(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws Exception {
        java.nio.file.Path labels = dir.resolve("l.csv"), scores = dir.resolve("s.csv"), out = dir.resolve("r.html");
        java.nio.file.Files.writeString(scores, "0.8,0.1,0.1\n0.1,0.8,0.1\n0.1,0.1,0.8\n");
        // Before: label 5 (or -1) with 3 score columns was counted as a 4th class, the ranking metrics
        // silently left out; the report truncated 1.5 to class 1. Each is refused now, naming the row.
        for (String[] c : new String[][] {{"0\n5\n2\n", "label 5 on row 2 is outside 0..2 ("},
                {"0\n-1\n2\n", "label -1 on row 2 is outside 0..2 ("}, {"0\n1.5\n2\n", "label 1.5 on row 2 is not an integer"}}) {
            java.nio.file.Files.writeString(labels, c[0]);
            Result e = run("eval", "--labels", labels.toString(), "--scores", scores.toString(), "--task", "multiclass");
            assertEquals(1, e.code, e.out);
            assertTrue(e.err.startsWith("kiln eval: " + c[1]), e.err);
            Result r = run("report", "--out", out.toString(), "--labels", labels.toString(), "--scores", scores.toString());
            assertEquals(1, r.code, r.out);
            assertTrue(r.err.startsWith("kiln report: " + c[1]), r.err);
        }
        assertTrue(!java.nio.file.Files.exists(out));
        // Binary labels are 0 or 1: 3e9 was cast to Integer.MAX_VALUE, a third class.
        java.nio.file.Files.writeString(labels, "0\n3000000000\n");
        java.nio.file.Files.writeString(scores, "0.2\n0.9\n");
        Result b = run("eval", "--labels", labels.toString(), "--scores", scores.toString(), "--task", "binary");
        assertEquals(1, b.code, b.out);
        assertTrue(b.err.startsWith("kiln eval: label 3000000000 on row 2 is outside 0..1 (binary labels are 0 or 1)"), b.err);
        // Latencies: a negative one or one past the histogram's hour was clamped without a word.
        java.nio.file.Path lat = dir.resolve("lat.txt");
        for (String bad : new String[] {"100\n-5\n", "100\n1e30\n"}) {
            java.nio.file.Files.writeString(lat, bad);
            Result r = run("report", "--out", out.toString(), "--latencies", lat.toString());
            assertEquals(1, r.code, r.out);
            assertTrue(r.err.contains("row 2: ") && r.err.contains("is not a latency in 0 .. 1 hour"), r.err);
        }
        assertTrue(!java.nio.file.Files.exists(out));
    }

    @Test
    void badUsageExitsNonZeroWithAReason() {
        Result r = run("demo", "--size", "0");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("--size is 0"), r.err);
        Result unknown = run("frobnicate");
        assertEquals(2, unknown.code);
        assertTrue(unknown.err.contains("Unmatched argument"), unknown.err);
    }

    @Test
    void trainWithoutTheDatasetSaysHowToInstallIt(@org.junit.jupiter.api.io.TempDir java.nio.file.Path empty) {
        Result r = run("train", "--data", empty.toString(), "--epochs", "1");
        assertEquals(1, r.code, r.out);
        assertTrue(r.err.contains("apt-get install dataset-fashion-mnist"), r.err);
        assertEquals(1, r.err.strip().lines().count(), r.err);
    }

    @Test
    void trainRefusesBadOptions() throws Exception {
        assertEquals(2, run("train", "--epochs", "0").code);
        assertEquals(2, run("train", "--optimizer", "lbfgs").code);
        Result a = run("train", "--activation", "exp");
        assertEquals(2, a.code);
        assertTrue(a.err.contains("--activation is 'exp': use relu, leaky_relu"), a.err);
        assertEquals(2, run("train", "--lr", "-1").code);
        Result r = run("train", "--threads", "0");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("--threads is 0: must be in 1..1024"), r.err);
        r = run("train", "--save", "model.bin");
        assertEquals(2, r.code); // refused before training, not after
        assertTrue(r.err.contains("the name must end in .onnx or .safetensors"), r.err);
        assertEquals(2, run("train", "--checkpoint", System.getProperty("java.io.tmpdir")).code);
        assertEquals(2, run("train", "--checkpoint-every", "0").code);
        r = run("train", "--resume", "/nonexistent/run.ckpt");
        assertEquals(1, r.code);
        assertTrue(r.err.contains("no such checkpoint file"), r.err);
        // Before: a --save whose directory could not be written failed only after the whole training.
        // A directory that cannot be created (its parent is a file) is named before any data loads.
        java.nio.file.Path file = java.nio.file.Files.createTempFile("kiln-cli", ".txt");
        try {
            r = run("train", "--save", file.resolve("m.onnx").toString());
            assertEquals(1, r.code);
            assertTrue(r.err.startsWith("kiln train: --save " + file.resolve("m.onnx") + ": cannot create the directory "
                    + file), r.err);
            r = run("train", "--checkpoint", file.resolve("sub/run.ckpt").toString());
            assertEquals(1, r.code);
            assertTrue(r.err.contains("cannot create the directory"), r.err);
        } finally {
            java.nio.file.Files.delete(file);
        }
        r = run("train", "--save", System.getProperty("java.io.tmpdir"));
        assertEquals(2, r.code);
    }

    @Test
    void trainLearnsFashionMnistQuickly(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) {
        org.junit.jupiter.api.Assumptions.assumeTrue(java.nio.file.Files.isDirectory(
                java.nio.file.Path.of("/usr/share/datasets/fashion-mnist")), "dataset-fashion-mnist is not installed");
        java.nio.file.Path onnx = dir.resolve("m.onnx");
        Result r = run("train", "--limit", "6000", "--epochs", "2", "--json", "--no-progress", "--save", onnx.toString(),
                "--activation", "silu");
        assertEquals(0, r.code, r.err);
        assertTrue(run("inspect", onnx.toString()).out.contains("activation=silu"));
        var m = java.util.regex.Pattern.compile("\"test_accuracy\":([0-9.]+),\"test_loss\"").matcher(r.out);
        assertTrue(m.find(), r.out);
        double acc = Double.parseDouble(m.group(1));
        assertTrue(acc > 0.75, "test accuracy " + acc);
        assertTrue(java.nio.file.Files.isRegularFile(onnx));
    }

    @Test
    void trainCheckpointsAtTheEndAndResumesFromIt(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) {
        org.junit.jupiter.api.Assumptions.assumeTrue(java.nio.file.Files.isDirectory(
                java.nio.file.Path.of("/usr/share/datasets/fashion-mnist")), "dataset-fashion-mnist is not installed");
        String ckpt = dir.resolve("run.ckpt").toString();
        // 1000 rows at batch 128: 8 steps, far fewer than --checkpoint-every's default 500.
        Result r = run("train", "--limit", "1000", "--epochs", "1", "--no-progress", "--checkpoint", ckpt);
        assertEquals(0, r.code, r.err);
        assertTrue(java.nio.file.Files.isRegularFile(dir.resolve("run.ckpt")), "a checkpoint at the end");
        r = run("train", "--limit", "1000", "--epochs", "2", "--no-progress", "--resume", ckpt);
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("epoch  2/2") && !r.out.contains("epoch  1/2"), r.out);
        r = run("train", "--limit", "1000", "--epochs", "1", "--no-progress", "--resume", ckpt);
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("nothing left to train: the checkpoint had already reached epoch 1"), r.out);
        r = run("train", "--limit", "1000", "--epochs", "2", "--optimizer", "sgd", "--resume", ckpt);
        assertEquals(1, r.code);
        assertTrue(r.err.contains("written by a trainer with optimizer ADAM"), r.err);
    }

    @Test
    void encryptAndDecryptWithKeyFilesAndRefuseTheWrongKey(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws Exception {
        java.nio.file.Path plain = java.nio.file.Files.write(dir.resolve("model.kiln"), new byte[5000]);
        String hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        java.nio.file.Path key = java.nio.file.Files.writeString(dir.resolve("k.hex"), hex + "\n");
        java.nio.file.Path other = java.nio.file.Files.writeString(dir.resolve("other.hex"), hex.replace('0', '1'));
        Result r = run("encrypt", dir.resolve("model.kiln").toString(), dir.resolve("m.enc").toString(), "--key-id", "prod",
                "--key-file", key.toString(), "--json");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"key_id\":\"prod\""), r.out);
        r = run("decrypt", dir.resolve("m.enc").toString(), dir.resolve("back.kiln").toString(), "--key-file", key.toString());
        assertEquals(0, r.code, r.err);
        org.junit.jupiter.api.Assertions.assertArrayEquals(java.nio.file.Files.readAllBytes(plain),
                java.nio.file.Files.readAllBytes(dir.resolve("back.kiln")));
        r = run("decrypt", dir.resolve("m.enc").toString(), dir.resolve("bad.kiln").toString(), "--key-file", other.toString());
        assertEquals(1, r.code);
        assertTrue(r.err.contains("key id 'prod'") && r.err.strip().lines().count() == 1, r.err);
        assertTrue(!r.err.contains(hex) && !r.out.contains(hex));
        assertTrue(!java.nio.file.Files.exists(dir.resolve("bad.kiln")));
        // A missing IN and an OUT that is a directory: named before any work.
        r = run("encrypt", dir.resolve("nope.kiln").toString(), dir.resolve("n.enc").toString(), "--key-id", "prod",
                "--key-file", key.toString());
        assertEquals(1, r.code);
        assertEquals("kiln encrypt: IN " + dir.resolve("nope.kiln") + ": no such file", r.err.strip());
        r = run("decrypt", dir.resolve("m.enc").toString(), dir.toString(), "--key-file", key.toString());
        assertEquals(1, r.code);
        assertEquals("kiln decrypt: OUT " + dir + " is a directory: give a file name", r.err.strip());
        // OUT's directory is created when missing, as every Kiln writer does.
        r = run("encrypt", plain.toString(), dir.resolve("new/dir/m.enc").toString(), "--key-id", "prod", "--key-file",
                key.toString());
        assertEquals(0, r.code, r.err);
        assertTrue(java.nio.file.Files.isRegularFile(dir.resolve("new/dir/m.enc")));
        // A key or password file that is missing or a directory (before: the bare path, "Is a directory").
        r = run("encrypt", plain.toString(), dir.resolve("k.enc").toString(), "--key-id", "prod", "--key-file",
                dir.resolve("none.hex").toString());
        assertEquals("kiln encrypt: --key-file " + dir.resolve("none.hex") + ": no such file", r.err.strip());
        r = run("encrypt", plain.toString(), dir.resolve("k.enc").toString(), "--key-id", "prod", "--password-file",
                dir.toString());
        assertEquals("kiln encrypt: --password-file " + dir + " is a directory", r.err.strip());
        // A key never comes from the command line.
        assertEquals(2, run("encrypt", "a", "b", "--key-id", "x", "--key", hex).code);
        assertEquals(2, run("encrypt", "a", "b", "--key-id", "x").code);
    }

    @Test
    void registryCommandsForOperators(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        String root = dir.resolve("reg").toString();
        // A mistyped --root is an error, not a fresh empty registry: only register creates one.
        for (String[] cmd : new String[][] {{"list"}, {"show", "fraud", "1"}, {"promote", "fraud", "p", "1"}}) {
            String[] args = new String[3 + cmd.length];
            args[0] = "registry";
            args[1] = "--root";
            args[2] = root;
            System.arraycopy(cmd, 0, args, 3, cmd.length);
            Result none = run(args);
            assertEquals(1, none.code, String.join(" ", args));
            assertTrue(none.err.contains(root + ": no registry there"), none.err);
        }
        assertTrue(!java.nio.file.Files.exists(dir.resolve("reg")));
        java.nio.file.Path f = java.nio.file.Files.write(dir.resolve("a.kiln"), new byte[] {1, 2, 3});
        assertEquals(0, run("registry", "--root", root, "register", "fraud", f.toString(), "--meta", "auc=0.9").code);
        Result r = run("registry", "--root", root, "register", "fraud", f.toString(), "--json");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"version\":2"), r.out);
        assertEquals(0, run("registry", "--root", root, "promote", "fraud", "production", "1").code);
        assertEquals(0, run("registry", "--root", root, "promote", "fraud", "production", "2").code);
        r = run("registry", "--root", root, "list", "fraud", "--json");
        assertTrue(r.out.contains("\"aliases\":[\"production\"]") && r.out.contains("\"auc\":\"0.9\""), r.out);
        r = run("registry", "--root", root, "delete", "fraud", "2");
        assertEquals(1, r.code);
        assertTrue(r.err.contains("alias 'production'"), r.err);
        r = run("registry", "--root", root, "rollback", "fraud", "production", "--json");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"version\":1"), r.out);
        assertEquals(0, run("registry", "--root", root, "delete", "fraud", "2").code);
        r = run("registry", "--root", root, "show", "fraud", "production", "--json");
        assertTrue(r.out.contains("\"version\":1"), r.out);
        assertEquals(1, run("registry", "--root", root, "show", "fraud", "7").code);
        r = run("registry", "--root", root, "list", "--json");
        assertEquals("[\"fraud\"]", r.out.strip());
        // A mistyped model name: an error, not an empty list (exit 0) as before.
        r = run("registry", "--root", root, "list", "frad");
        assertEquals(1, r.code);
        assertTrue(r.err.startsWith("kiln list: model 'frad' is not in the registry"), r.err);
        java.nio.file.Path empty = java.nio.file.Files.write(dir.resolve("empty.kiln"), new byte[0]);
        r = run("registry", "--root", root, "register", "fraud", empty.toString());
        assertEquals(1, r.code);
        assertTrue(r.err.contains("is empty"), r.err);
        r = run("registry", "--root", root, "promote", "fraud", "5", "1");
        assertEquals(1, r.code);
        assertTrue(r.err.contains("alias '5' is all digits"), r.err);
        // A JDK file error without a reason says what it is (before: the bare path).
        r = run("registry", "--root", root, "register", "fraud", dir.resolve("none.kiln").toString());
        assertEquals("kiln register: " + dir.resolve("none.kiln") + ": no such file", r.err.strip());
    }

    /** A small classifier saved as ONNX (the file a PyTorch user brings) and as a .kiln model file. */
    private static dev.kiln.nn.Sequential classifier() {
        return dev.kiln.nn.Sequential.builder(4).dense(8, dev.kiln.nn.Init.HE, 1).silu().dense(3, dev.kiln.nn.Init.XAVIER, 2)
                .softmax().build();
    }

    @Test
    void inspectDescribesAModelAndNamesWhatKilnCannotRun(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws Exception {
        java.nio.file.Path onnx = dir.resolve("m.onnx"), kiln = dir.resolve("m.kiln");
        try (dev.kiln.nn.Sequential m = classifier()) {
            dev.kiln.io.OnnxModels.save(m, onnx);
            dev.kiln.io.ModelFile.save(m, kiln, java.util.Map.of());
        }
        Result r = run("inspect", onnx.toString());
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("[batch, 4] F32") && r.out.contains("activation=silu") && r.out.contains("67 (0.3 KiB)"),
                r.out);
        assertTrue(r.out.contains("onnx         kiln " + dev.kiln.Kiln.version() + ", opset 20, input 'input' [N, 4], output "
                + "'output'"), r.out);
        r = run("inspect", kiln.toString(), "--json");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.startsWith("{\"model\":") && r.out.contains("\"format\":\"kiln\"") && r.out.contains("\"parameters\":67")
                && r.out.contains("{\"index\":1,\"kind\":\"activation\",\"in\":8,\"out\":8,\"activation\":\"silu\"}"), r.out);
        byte[] bytes = java.nio.file.Files.readAllBytes(onnx);
        java.nio.file.Path conv = dir.resolve("conv.onnx");
        java.nio.file.Files.write(conv, new String(bytes, java.nio.charset.StandardCharsets.ISO_8859_1)
                .replace("Softmax", "ConvTrn").getBytes(java.nio.charset.StandardCharsets.ISO_8859_1));
        r = run("inspect", conv.toString());
        assertEquals(1, r.code, r.out);
        assertTrue(r.err.startsWith("kiln inspect: " + conv + ": unsupported op ConvTrn at node"), r.err); // names the file
        r = run("inspect", dir.resolve("m.pt").toString());
        assertEquals(2, r.code);
        assertTrue(r.err.contains("the name must end in .onnx or .kiln"), r.err);
    }

    @Test
    void predictWritesWhatTheSessionComputesAndFeedsEval(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws Exception {
        java.nio.file.Path onnx = dir.resolve("m.onnx"), in = dir.resolve("x.csv");
        float[] x = new float[10 * 4];
        java.util.Random rnd = new java.util.Random(3);
        StringBuilder csv = new StringBuilder("a,b,c,d\n");
        for (int i = 0; i < 10; i++) {
            for (int j = 0; j < 4; j++) {
                x[i * 4 + j] = (float) rnd.nextGaussian();
                csv.append(j > 0 ? "," : "").append(x[i * 4 + j]);
            }
            csv.append('\n');
        }
        java.nio.file.Files.writeString(in, csv);
        float[] want;
        try (dev.kiln.nn.Sequential m = classifier(); var s = m.compile(10); dev.kiln.tensor.Tensor tx = dev.kiln.tensor.Tensor.of(x, 10, 4);
                dev.kiln.tensor.Tensor ty = dev.kiln.tensor.Tensor.zeros(dev.kiln.tensor.DType.F32, 10, 3)) {
            dev.kiln.io.OnnxModels.save(m, onnx);
            s.run(tx, ty);
            want = ty.toFloatArray();
        }
        Result r = run("predict", "--model", onnx.toString(), "--input", in.toString(), "--header", "--batch", "3");
        assertEquals(0, r.code, r.err);
        String[] lines = r.out.strip().split("\n");
        assertEquals("y0,y1,y2", lines[0]);
        assertEquals(11, lines.length);
        for (int i = 0; i < 10; i++) {
            String[] f = lines[i + 1].split(",");
            for (int j = 0; j < 3; j++) {
                // (batches of 3 against one of 10: the kernels may differ by an ulp or two)
                assertEquals(want[i * 3 + j], Float.parseFloat(f[j]), 1e-6, "row " + i);
            }
        }
        java.nio.file.Path out = dir.resolve("p.csv");
        r = run("predict", "--model", onnx.toString(), "--input", in.toString(), "--header", "--output", out.toString(), "--json",
                "--batch", "3");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.startsWith("{\"rows\":10,\"columns\":3,"), r.out);
        assertEquals(String.join("\n", lines) + "\n", java.nio.file.Files.readString(out));
        r = run("predict", "--model", onnx.toString(), "--input", in.toString(), "--header", "--argmax", "--no-header");
        assertEquals(0, r.code, r.err);
        assertEquals(10, r.out.strip().lines().count());
        // The scores feed kiln eval.
        java.nio.file.Path labels = dir.resolve("labels.csv");
        java.nio.file.Files.writeString(labels, "y\n0\n1\n2\n0\n1\n2\n0\n1\n2\n0\n");
        r = run("eval", "--labels", labels.toString(), "--scores", out.toString(), "--task", "multiclass");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"accuracy\":"), r.out);
        // Bad input: a clear error, exit 1, and an existing output file is left as it was.
        java.nio.file.Files.writeString(in, "1,2,3\n4,5,6\n");
        r = run("predict", "--model", onnx.toString(), "--input", in.toString(), "--output", out.toString());
        assertEquals(1, r.code);
        assertEquals("kiln predict: --input " + in + " has 3 values per row; the model takes 4", r.err.strip());
        assertEquals(String.join("\n", lines) + "\n", java.nio.file.Files.readString(out));
        java.nio.file.Files.writeString(in, "1,2,3,x\n");
        r = run("predict", "--model", onnx.toString(), "--input", in.toString());
        assertEquals(1, r.code);
        assertTrue(r.err.contains("line 1, column 3: 'x' is not a number"), r.err);
        java.nio.file.Files.writeString(in, "a,b,c,d\n1,2,3,4\n");
        r = run("predict", "--model", onnx.toString(), "--input", in.toString());
        assertEquals(1, r.code);
        assertTrue(r.err.strip().endsWith("line 1, column 0: 'a' is not a number (a header line? give --header)"), r.err);
        assertEquals(2, run("predict", "--model", onnx.toString(), "--input", dir.resolve("x.txt").toString()).code);
        assertEquals(2, run("predict", "--model", onnx.toString(), "--input", in.toString(), "--batch", "0").code);
        assertEquals(2, run("predict", "--model", onnx.toString(), "--input", in.toString(), "--json").code);
    }

    @Test
    void benchReportsLatencyPercentiles(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        java.nio.file.Path kiln = dir.resolve("m.kiln");
        try (dev.kiln.nn.Sequential m = classifier()) {
            dev.kiln.io.ModelFile.save(m, kiln, java.util.Map.of());
        }
        Result r = run("bench", "--model", kiln.toString(), "--batch", "4", "--seconds", "0.3", "--warmup", "0.1", "--json");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"batch\":4") && r.out.contains("\"p99_9_us\":"), r.out);
        java.util.regex.Matcher p = java.util.regex.Pattern.compile("\"p50_us\":([0-9.E-]+),\"p90_us\":([0-9.E-]+)").matcher(r.out);
        assertTrue(p.find(), r.out);
        double p50 = Double.parseDouble(p.group(1)), p90 = Double.parseDouble(p.group(2));
        assertTrue(p50 > 0 && p90 >= p50, r.out);
        r = run("bench", "--model", kiln.toString(), "--seconds", "0.2", "--warmup", "0");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("rows/s") && r.out.contains("latency per call: p50"), r.out);
        int before = dev.kiln.Kiln.threads();
        r = run("bench", "--model", kiln.toString(), "--seconds", "0.1", "--warmup", "0", "--threads", "1", "--json");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"threads\":1,"), r.out);
        assertEquals(before, dev.kiln.Kiln.threads(), "the pool size is put back");
        assertTrue(r.err.isEmpty(), r.err);
        int over = Runtime.getRuntime().availableProcessors() + 1; // runs, but says it is slower
        r = run("bench", "--model", kiln.toString(), "--seconds", "0.1", "--warmup", "0", "--threads", String.valueOf(over), "--json");
        assertEquals(0, r.code, r.err);
        assertTrue(r.out.contains("\"threads\":" + over + ","), r.out);
        assertTrue(r.err.startsWith("kiln bench: warning: --threads " + over + " is more than the "), r.err);
        assertEquals(before, dev.kiln.Kiln.threads(), "the pool size is put back");
        assertEquals(2, run("bench", "--model", kiln.toString(), "--threads", "0").code);
        assertEquals(2, run("bench", "--model", kiln.toString(), "--seconds", "0").code);
        assertEquals(2, run("bench", "--model", kiln.toString(), "--batch", "-1").code);
    }
}
