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
        for (String[] args : new String[][] {{"--help"}, {"info", "--help"}, {"demo", "--help"}}) {
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
    void badUsageExitsNonZeroWithAReason() {
        Result r = run("demo", "--size", "0");
        assertEquals(2, r.code);
        assertTrue(r.err.contains("--size is 0"), r.err);
        Result unknown = run("frobnicate");
        assertEquals(2, unknown.code);
        assertTrue(unknown.err.contains("Unmatched argument"), unknown.err);
    }
}
