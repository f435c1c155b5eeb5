package dev.kiln.eval;

import java.util.Arrays;
import java.util.Objects;

/** The sorted set of labels seen in y_true and y_pred, and each sample's index into it (as scikit-learn's unique_labels). */
final class Labels {
    final int[] values;

    private Labels(int[] values) {
        this.values = values;
    }

    static Labels of(int[]... arrays) {
        int total = 0;
        for (int[] a : arrays) {
            total += a.length;
        }
        int[] all = new int[total];
        int p = 0;
        for (int[] a : arrays) {
            System.arraycopy(a, 0, all, p, a.length);
            p += a.length;
        }
        Arrays.sort(all);
        int n = 0;
        for (int i = 0; i < all.length; i++) {
            if (i == 0 || all[i] != all[i - 1]) {
                all[n++] = all[i];
            }
        }
        return new Labels(Arrays.copyOf(all, n));
    }

    int size() {
        return values.length;
    }

    int index(int label) {
        return Arrays.binarySearch(values, label);
    }

    static void checkSameLength(String what, int a, int b) {
        if (a != b) {
            throw new IllegalArgumentException(what + ": y_true has " + a + " samples but the predictions have " + b);
        }
    }

    static void checkNotEmpty(String what, int n) {
        if (n == 0) {
            throw new IllegalArgumentException(what + ": no samples (scikit-learn refuses empty input too)");
        }
    }

    static int[] requireNonNull(int[] a, String name) {
        return Objects.requireNonNull(a, name);
    }
}
