package dev.kiln.data;

import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Fashion-MNIST (70,000 28x28 grey images of clothes in 10 classes) from Debian's
 * {@code dataset-fashion-mnist} package, which installs it in {@link #DEFAULT_DIR}. Pixels are
 * scaled to [0, 1]; rows are 784 features.
 */
public final class FashionMnist {
    public static final Path DEFAULT_DIR = Path.of("/usr/share/datasets/fashion-mnist");
    public static final String[] CLASSES = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
        "Sneaker", "Bag", "Ankle boot"};

    private FashionMnist() {}

    /** The 60,000-row training set. */
    public static Dataset train(Path dir) throws IOException {
        return load(dir, "train");
    }

    /** The 10,000-row test set. */
    public static Dataset test(Path dir) throws IOException {
        return load(dir, "t10k");
    }

    private static Dataset load(Path dir, String prefix) throws IOException {
        Path images = find(dir, prefix + "-images-idx3-ubyte");
        Path labels = find(dir, prefix + "-labels-idx1-ubyte");
        Tensor x = Idx.readImages(images);
        Tensor y;
        try {
            y = Idx.readLabels(labels);
        } catch (IOException | RuntimeException e) {
            x.close();
            throw e;
        }
        if (x.size(0) != y.size(0)) {
            x.close();
            y.close();
            throw new IOException(images + " has " + x.size(0) + " images but " + labels + " " + y.size(0) + " labels");
        }
        return Dataset.classification(x, y, 10);
    }

    private static Path find(Path dir, String name) throws IOException {
        for (String candidate : new String[] {name + ".gz", name}) {
            Path p = dir.resolve(candidate);
            if (Files.isRegularFile(p)) {
                return p;
            }
        }
        throw new java.nio.file.NoSuchFileException(dir.resolve(name + ".gz").toString(), null,
                "Fashion-MNIST is not installed: on Debian or Ubuntu run 'sudo apt-get install dataset-fashion-mnist' "
                        + "(it installs into " + DEFAULT_DIR + "), or pass the directory holding the IDX files");
    }
}
