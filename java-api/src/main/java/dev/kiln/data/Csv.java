package dev.kiln.data;

import dev.kiln.tensor.Tensor;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads numeric CSV (comma-separated, optional header line, no quoting) into a {@link Dataset}:
 * every column but the target column is a feature. Empty lines are skipped. A field that is not a
 * number, a row of the wrong width, or a non-finite value is refused with the line and column.
 */
public final class Csv {
    private Csv() {}

    /** Classification: the target column holds integer class ids >= 0. */
    public static Dataset readClassification(Path file, int targetColumn, boolean header) throws IOException {
        Parsed p = parse(file, targetColumn, header);
        int[] ids = new int[p.targets.length];
        for (int i = 0; i < ids.length; i++) {
            double v = p.targets[i];
            if (v != Math.rint(v) || v < 0 || v > Integer.MAX_VALUE) {
                throw new IOException(file + ": line " + p.lines.get(i) + ": class id " + v
                        + " is not an integer >= 0");
            }
            ids[i] = (int) v;
        }
        Tensor x = Tensor.of(p.features, ids.length, p.width);
        Tensor y;
        try {
            y = Tensor.of(ids, ids.length);
        } catch (RuntimeException e) {
            x.close();
            throw e;
        }
        return Dataset.classification(x, y);
    }

    /**
     * Features alone, every column (model inputs to score, as {@code kiln predict} reads them):
     * F32 {@code [rows, columns]}.
     */
    public static Tensor readFeatures(Path file, boolean header) throws IOException {
        Parsed p = parse(file, NO_TARGET, header);
        return Tensor.of(p.features, p.lines.size(), p.width);
    }

    /** Regression: the target column is one real-valued output. */
    public static Dataset readRegression(Path file, int targetColumn, boolean header) throws IOException {
        Parsed p = parse(file, targetColumn, header);
        float[] t = new float[p.targets.length];
        for (int i = 0; i < t.length; i++) {
            t[i] = (float) p.targets[i];
        }
        Tensor x = Tensor.of(p.features, t.length, p.width);
        Tensor y;
        try {
            y = Tensor.of(t, t.length, 1);
        } catch (RuntimeException e) {
            x.close();
            throw e;
        }
        return Dataset.regression(x, y);
    }

    /** The 1-based line holding the first byte sequence that is not UTF-8 (streamed). */
    static long firstLineNotUtf8(Path file) throws IOException {
        java.nio.charset.CharsetDecoder d = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT);
        java.nio.ByteBuffer in = java.nio.ByteBuffer.allocate(1 << 16);
        java.nio.CharBuffer out = java.nio.CharBuffer.allocate(1 << 16);
        long line = 1;
        try (java.io.InputStream s = Files.newInputStream(file)) {
            boolean end = false;
            while (true) {
                int r = end ? -1 : s.read(in.array(), in.position(), in.remaining());
                if (r < 0) {
                    end = true;
                } else {
                    in.position(in.position() + r);
                }
                in.flip();
                int start = in.position();
                java.nio.charset.CoderResult cr = d.decode(in, out, end);
                for (int i = start; i < in.position(); i++) {
                    if (in.get(i) == '\n') {
                        line++;
                    }
                }
                if (cr.isError()) {
                    return line;
                }
                out.clear();
                if (end && !in.hasRemaining()) {
                    return line;  // no bad sequence found (the reader saw one: report where it stopped)
                }
                in.compact();
            }
        }
    }

    private static final int NO_TARGET = Integer.MIN_VALUE;

    private record Parsed(float[] features, double[] targets, int width, List<Integer> lines) {}

    private static Parsed parse(Path file, int targetColumn, boolean header) throws IOException {
        List<float[]> rows = new ArrayList<>();
        List<Double> targets = new ArrayList<>();
        List<Integer> lines = new ArrayList<>();
        int columns = -1;
        if (Files.isDirectory(file)) {
            throw new IOException(file + " is a directory, not a CSV file");
        }
        BufferedReader opened;
        try {
            opened = Files.newBufferedReader(file, StandardCharsets.UTF_8);
        } catch (java.nio.file.NoSuchFileException e) {
            throw new java.nio.file.NoSuchFileException(file.toString(), null, "no such file");
        }
        try (BufferedReader r = opened) {
            String line;
            int no = 0;
            while (true) {
                try {
                    line = r.readLine();
                } catch (java.nio.charset.CharacterCodingException e) {
                    // The reader decodes ahead of the lines it returns: find the line on the error path.
                    throw new IOException(file + ": line " + firstLineNotUtf8(file) + " is not valid UTF-8", e);
                }
                if (line == null) {
                    break;
                }
                no++;
                if (line.isBlank() || (header && no == 1)) {
                    continue;
                }
                String[] f = line.split(",", -1);
                if (columns < 0) {
                    columns = f.length;
                    if (columns < 2 && targetColumn != NO_TARGET) {
                        throw new IOException(file + ": line " + no + ": needs at least 2 columns (features and a target)");
                    }
                    if (targetColumn != NO_TARGET && (targetColumn < 0 || targetColumn >= columns)) {
                        throw new IOException(file + ": target column " + targetColumn + " is not in 0.." + (columns - 1));
                    }
                } else if (f.length != columns) {
                    throw new IOException(file + ": line " + no + " has " + f.length + " columns, the first row " + columns);
                }
                float[] row = new float[targetColumn != NO_TARGET ? columns - 1 : columns];
                for (int c = 0, k = 0; c < columns; c++) {
                    double v;
                    try {
                        v = Double.parseDouble(f[c].trim());
                    } catch (NumberFormatException e) {
                        throw new IOException(file + ": line " + no + ", column " + c + ": '" + f[c].trim()
                                + "' is not a number");
                    }
                    if (!Double.isFinite(v) || (c != targetColumn && Float.isInfinite((float) v))) {
                        throw new IOException(file + ": line " + no + ", column " + c + ": " + f[c].trim()
                                + " is not a finite value");
                    }
                    if (c == targetColumn) {
                        targets.add(v);
                    } else {
                        row[k++] = (float) v;
                    }
                }
                rows.add(row);
                lines.add(no);
            }
        }
        if (rows.isEmpty()) {
            throw new IOException(file + ": no data rows");
        }
        int width = targetColumn != NO_TARGET ? columns - 1 : columns;
        float[] all = new float[Math.multiplyExact(rows.size(), width)];
        for (int i = 0; i < rows.size(); i++) {
            System.arraycopy(rows.get(i), 0, all, i * width, width);
        }
        double[] t = targets.stream().mapToDouble(Double::doubleValue).toArray();
        return new Parsed(all, t, width, lines);
    }
}
