package dev.kiln;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class KilnTest {
    @Test
    void reportsVersionAndCpu() {
        assertTrue(Kiln.version().matches("\\d+\\.\\d+\\.\\d+"), Kiln.version());
        assertTrue(Kiln.bestIsa().compareTo(Kiln.isa()) >= 0);
        if (Kiln.bestIsa() == Kiln.Isa.AVX512) {
            assertTrue(Kiln.cpuFeatures().contains(Kiln.CpuFeature.AVX512F));
        }
        assertFalse(Kiln.cpuFeatures().isEmpty());
    }

    @Test
    void dispatchHonoursTheForcedIsaOfThisRun() {
        // The build runs these tests three times: best ISA, -Dkiln.isa=avx2, -Dkiln.isa=portable.
        String forced = System.getProperty("kiln.isa", "");
        if (forced.isEmpty() || forced.equals("best")) {
            assertEquals(Kiln.bestIsa(), Kiln.isa());
        } else {
            assertEquals(forced, Kiln.isa().settingName());
        }
    }

    @Test
    void threadPoolCanBeResizedAndBadSizesAreRefused() {
        int before = Kiln.threads();
        try {
            Kiln.setThreads(3);
            assertEquals(3, Kiln.threads());
        } finally {
            Kiln.setThreads(before);
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Kiln.setThreads(0));
        assertEquals("threads is 0: must be in 1..1024", e.getMessage());
    }

    @Test
    void isaSettingBackAndForth() {
        Kiln.Isa before = Kiln.isa();
        try {
            Kiln.setIsa(Kiln.Isa.PORTABLE);
            assertEquals(Kiln.Isa.PORTABLE, Kiln.isa());
        } finally {
            Kiln.setIsa(before);
        }
        assertEquals(before, Kiln.isa());
    }
}
