package dev.kiln.registry;

import dev.kiln.infer.InferenceSession;
import dev.kiln.nn.Sequential;
import dev.kiln.tensor.DType;
import dev.kiln.tensor.Tensor;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Serves a registered model by alias, with hot swap, A/B or canary splits and shadow scoring.
 *
 * <pre>{@code
 * try (ModelRouter router = ModelRouter.builder(registry, "fraud")
 *          .split(Map.of("production", 0.9, "canary", 0.1))   // default: "production" only
 *          .shadow("staging")                                  // optional
 *          .maxBatch(64).build()) {
 *     ModelVersion v = router.run(customerId, input, output);   // sticky by key
 *     ...
 *     router.refresh();   // after promote/rollback: loads, compiles and warms up, then swaps
 * }
 * }</pre>
 *
 * <p>Hot swap: {@link #refresh()} loads a moved alias's new version, compiles and runs it once
 * before it takes traffic, then swaps it in with one atomic reference write. A request in flight
 * on the old session finishes on it; the old session is freed after its last request. A request
 * that picks up a session at the instant it closes retries on the new one, so no request fails or
 * blocks. Every response comes from a version that was the alias's target at some point during
 * that request. A refresh is all or nothing: it loads and checks every moved alias's version
 * before it swaps any, and refuses (swapping none, the old versions serving on) a version whose
 * input or output shape differs from the other arms' (every arm and the shadow must map the same
 * shapes, so that the caller's tensors fit whichever serves them).
 *
 * <p>Splits: a key's arm is chosen by a hash of the key (the same key always gets the same arm as
 * long as the weights stay the same). Shadow: the shadow alias also scores every request, on the
 * caller's thread after the primary; its output is discarded, and {@link #shadowDisagreements}
 * counts the rows whose arg-max ({@link dev.kiln.tensor.Ops#argmax}: ties take the first, NaN counts
 * as largest) differs from the primary's. A shadow that fails never fails the request:
 * {@link #shadowFailures} counts it.
 *
 * <p>Garbage: routing and serving a request allocates nothing on the Java heap (as
 * {@link InferenceSession#run}), nor does a shadow's run and comparison once a thread has seen the
 * request's output shape (each thread keeps a shadow output per shape, freed when the router closes).
 */
public final class ModelRouter implements AutoCloseable {
    private record Loaded(ModelVersion version, InferenceSession session, DType inputDType) {
        String shape() {
            return inputDType + " [batch, " + session.inputFeatures() + "] -> [batch, " + session.outputFeatures() + "]";
        }

        boolean sameShapes(Loaded o) {
            return inputDType == o.inputDType && session.inputFeatures() == o.session.inputFeatures()
                    && session.outputFeatures() == o.session.outputFeatures();
        }
    }

    private static final class Arm {
        final String alias;
        final double weight;
        final AtomicReference<Loaded> current = new AtomicReference<>();
        final AtomicLong requests = new AtomicLong();

        Arm(String alias, double weight) {
            this.alias = alias;
            this.weight = weight;
        }
    }

    private final ModelRegistry registry;
    private final String model;
    private final int maxBatch;
    private final dev.kiln.security.ArtifactKey key;
    private final List<Arm> arms;
    private final double[] cumulative;
    private final Arm shadow;
    private final AtomicLong disagreements = new AtomicLong();
    private final AtomicLong shadowRows = new AtomicLong();
    private final AtomicLong shadowFailures = new AtomicLong();
    private final ThreadLocal<ShadowSlots> shadowSlots = ThreadLocal.withInitial(ShadowSlots::new);
    private final List<Tensor> shadowTensors = java.util.Collections.synchronizedList(new ArrayList<>());
    private volatile boolean closed;

    private ModelRouter(Builder b) throws IOException {
        this.registry = b.registry;
        this.model = b.model;
        this.maxBatch = b.maxBatch;
        this.key = b.key;
        this.arms = new ArrayList<>();
        double total = 0;
        for (Map.Entry<String, Double> e : b.split.entrySet()) {
            arms.add(new Arm(e.getKey(), e.getValue()));
            total += e.getValue();
        }
        this.cumulative = new double[arms.size()];
        double acc = 0;
        for (int i = 0; i < arms.size(); i++) {
            acc += arms.get(i).weight / total;
            cumulative[i] = acc;
        }
        cumulative[arms.size() - 1] = 1.0;
        this.shadow = b.shadow == null ? null : new Arm(b.shadow, 0);
        try {
            refresh();
        } catch (IOException | RuntimeException e) {
            close();
            throw e;
        }
    }

    public static Builder builder(ModelRegistry registry, String model) {
        return new Builder(registry, model);
    }

    /**
     * Re-reads the aliases; every arm whose alias moved gets its new version loaded, compiled and
     * warmed up, then swapped in. Returns how many arms changed. Safe to call from any thread,
     * while requests run; calls are serialized.
     */
    public synchronized int refresh() throws IOException {
        if (closed) {
            throw new IllegalStateException("the router is closed");
        }
        List<Arm> all = new ArrayList<>(arms);
        if (shadow != null) {
            all.add(shadow);
        }
        // All or nothing: every moved alias's version is loaded and checked before any is swapped.
        List<Arm> moved = new ArrayList<>();
        List<Loaded> fresh = new ArrayList<>();
        try {
            for (Arm a : all) {
                ModelVersion v = registry.resolve(model, a.alias).orElseThrow(() -> new IllegalStateException(
                        "model '" + model + "' has no alias '" + a.alias + "'"));
                Loaded old = a.current.get();
                if (old != null && old.version().number() == v.number()) {
                    continue;
                }
                Loaded f = load(v);
                moved.add(a);
                fresh.add(f);
                checkShapes(a, f, all, moved, fresh);
            }
        } catch (IOException | RuntimeException e) {
            fresh.forEach(f -> f.session().close());
            throw e;
        }
        for (int i = 0; i < moved.size(); i++) {
            Loaded old = moved.get(i).current.getAndSet(fresh.get(i));
            if (old != null) {
                old.session().close(); // freed after its last request in flight
            }
        }
        return moved.size();
    }

    /**
     * Every arm and the shadow take and give the same shapes: callers' tensors fit whichever arm a
     * key gets, and a version that changes them is not swapped in under traffic shaped for the old.
     */
    private void checkShapes(Arm a, Loaded f, List<Arm> all, List<Arm> moved, List<Loaded> fresh) {
        for (Arm other : all) {
            int i = moved.indexOf(other);
            Loaded o = i >= 0 ? fresh.get(i) : other.current.get();
            if (other == a || o == null || f.sameShapes(o)) {
                continue;
            }
            throw new IllegalStateException("model '" + model + "': alias '" + a.alias + "' points to version "
                    + f.version().number() + ", which maps " + f.shape() + ", but alias '" + other.alias + "' (version "
                    + o.version().number() + ") maps " + o.shape() + ": every arm and the shadow must take and give "
                    + "the same shapes" + (a.current.get() != null ? "; nothing was swapped" : ""));
        }
    }

    private Loaded load(ModelVersion v) throws IOException {
        InferenceSession s;
        DType inputDType;
        try (Sequential m = registry.load(v, key)) {
            inputDType = m.inputDType();
            s = m.compile(maxBatch);
            // Warm up before taking traffic: one run over zeros (token id 0 for an embedding).
            try (Tensor x = Tensor.zeros(m.inputDType(), 1, m.inputFeatures());
                 Tensor y = Tensor.zeros(DType.F32, 1, m.outputFeatures())) {
                s.run(x, y);
            } catch (RuntimeException e) {
                s.close();
                throw e;
            }
        }
        return new Loaded(v, s, inputDType);
    }

    /** The arm a key is routed to (its alias). */
    public String armOf(String key) {
        return arms.get(armIndex(key)).alias;
    }

    private int armIndex(String key) {
        if (arms.size() == 1) {
            return 0;
        }
        // A stable 64-bit hash of the key's UTF-8 bytes (FNV-1a, then a mixer), mapped to [0, 1).
        long h = keyHash(key);
        h ^= h >>> 33;
        h *= 0xff51afd7ed558ccdL;
        h ^= h >>> 33;
        double u = (h >>> 11) * 0x1.0p-53;
        for (int i = 0; i < cumulative.length; i++) {
            if (u < cumulative[i]) {
                return i;
            }
        }
        return cumulative.length - 1;
    }

    /**
     * FNV-1a over the bytes {@code key.getBytes(UTF_8)} would give (an unpaired surrogate as '?'),
     * encoded on the fly: routing a request allocates nothing.
     */
    static long keyHash(String key) {
        long h = 0xcbf29ce484222325L;
        for (int i = 0, n = key.length(); i < n; i++) {
            int c = key.charAt(i);
            if (c < 0x80) {
                h = (h ^ c) * 0x100000001b3L;
            } else if (c < 0x800) {
                h = (h ^ (0xc0 | c >> 6)) * 0x100000001b3L;
                h = (h ^ (0x80 | c & 0x3f)) * 0x100000001b3L;
            } else if (Character.isSurrogate((char) c)) {
                int cp = Character.isHighSurrogate((char) c) && i + 1 < n && Character.isLowSurrogate(key.charAt(i + 1))
                        ? Character.toCodePoint((char) c, key.charAt(++i)) : '?';
                if (cp == '?') {
                    h = (h ^ '?') * 0x100000001b3L;
                } else {
                    h = (h ^ (0xf0 | cp >> 18)) * 0x100000001b3L;
                    h = (h ^ (0x80 | cp >> 12 & 0x3f)) * 0x100000001b3L;
                    h = (h ^ (0x80 | cp >> 6 & 0x3f)) * 0x100000001b3L;
                    h = (h ^ (0x80 | cp & 0x3f)) * 0x100000001b3L;
                }
            } else {
                h = (h ^ (0xe0 | c >> 12)) * 0x100000001b3L;
                h = (h ^ (0x80 | c >> 6 & 0x3f)) * 0x100000001b3L;
                h = (h ^ (0x80 | c & 0x3f)) * 0x100000001b3L;
            }
        }
        return h;
    }

    /**
     * Runs the model of the key's arm on {@code input} into {@code output} (as
     * {@link InferenceSession#run}); returns the version that served it.
     */
    public ModelVersion run(String key, Tensor input, Tensor output) {
        Objects.requireNonNull(key, "key");
        if (closed) {
            throw new IllegalStateException("the router is closed");
        }
        Arm arm = arms.get(armIndex(key));
        ModelVersion served = runOn(arm, input, output);
        arm.requests.incrementAndGet();
        if (shadow != null) {
            // The shadow never fails (or changes) the served request: its errors are only counted.
            try {
                ShadowScratch sc = shadowScratch(output);
                runOn(shadow, input, sc.out);
                compare(output, sc);
            } catch (RuntimeException e) {
                shadowFailures.incrementAndGet();
            }
        }
        return served;
    }

    private ModelVersion runOn(Arm arm, Tensor input, Tensor output) {
        for (int attempt = 0; ; attempt++) {
            Loaded l = arm.current.get();
            if (l == null || closed) {
                throw new IllegalStateException("the router is closed");
            }
            if (l.session().runIfOpen(input, output)) {
                return l.version();
            }
            Thread.onSpinWait(); // swapped while we picked it: the new session is already published
        }
    }

    /** A thread's shadow scratch for one output shape: the shadow's output, and the arg-max of each
     *  row of the served and the shadow output, read through views made once. */
    private static final class ShadowScratch {
        final long rows;
        final long cols;
        final Tensor out;
        final Tensor servedIdx;
        final Tensor shadowIdx;
        final java.nio.IntBuffer served;
        final java.nio.IntBuffer shadowed;

        ShadowScratch(long rows, long cols) {
            this.rows = rows;
            this.cols = cols;
            Tensor o = null, a = null, b = null;
            try {
                o = Tensor.zeros(DType.F32, rows, cols);
                a = Tensor.zeros(DType.I32, rows);
                b = Tensor.zeros(DType.I32, rows);
                // A view keeps its memory allocated even once the router closes the tensor.
                served = a.byteView().asIntBuffer();
                shadowed = b.byteView().asIntBuffer();
            } catch (RuntimeException e) {
                for (Tensor t : new Tensor[] {o, a, b}) {
                    if (t != null) {
                        t.close();
                    }
                }
                throw e;
            }
            out = o;
            servedIdx = a;
            shadowIdx = b;
        }

        boolean fits(long r, long c) {
            return rows == r && cols == c;
        }

        void close() {
            out.close();
            servedIdx.close();
            shadowIdx.close();
        }
    }

    /** The scratch of one thread, one per output shape it has served (a request's batch size):
     *  found by a scan, so that a request allocates nothing whatever the shape. */
    private static final class ShadowSlots {
        ShadowScratch last;
        final List<ShadowScratch> all = new ArrayList<>();
    }

    private ShadowScratch shadowScratch(Tensor like) {
        long rows = like.size(0), cols = like.size(1);
        ShadowSlots slots = shadowSlots.get();
        ShadowScratch sc = slots.last;
        if (sc != null && sc.fits(rows, cols)) {
            return sc;
        }
        for (int i = 0; i < slots.all.size(); i++) {
            ShadowScratch s = slots.all.get(i);
            if (s.fits(rows, cols)) {
                slots.last = s;
                return s;
            }
        }
        sc = new ShadowScratch(rows, cols);
        // Registered for close() under its lock: a request racing close() frees its own scratch
        // instead of adding it after close() has freed the others.
        synchronized (shadowTensors) {
            if (closed) {
                sc.close();
                throw new IllegalStateException("the router is closed");
            }
            shadowTensors.add(sc.out);
            shadowTensors.add(sc.servedIdx);
            shadowTensors.add(sc.shadowIdx);
        }
        slots.all.add(sc);
        slots.last = sc;
        return sc;
    }

    /** Counts the rows whose arg-max (the library's: ties take the first, NaN counts as largest)
     *  differs between the served output and the shadow's. */
    private void compare(Tensor output, ShadowScratch sc) {
        dev.kiln.tensor.Ops.argmax(output, sc.servedIdx);
        dev.kiln.tensor.Ops.argmax(sc.out, sc.shadowIdx);
        long differ = 0;
        for (int r = 0; r < (int) sc.rows; r++) {
            if (sc.served.get(r) != sc.shadowed.get(r)) {
                differ++;
            }
        }
        if (differ != 0) {
            disagreements.addAndGet(differ);
        }
        shadowRows.addAndGet(sc.rows);
    }

    /** Rows where the shadow's arg-max differed from the served model's. */
    public long shadowDisagreements() {
        return disagreements.get();
    }

    public long shadowRows() {
        return shadowRows.get();
    }

    /** Requests whose shadow run failed (the served response was returned all the same). */
    public long shadowFailures() {
        return shadowFailures.get();
    }

    /** Requests served per arm (alias), and the version each arm serves now. */
    public Map<String, Long> requestsByArm() {
        Map<String, Long> out = new LinkedHashMap<>();
        for (Arm a : arms) {
            out.put(a.alias, a.requests.get());
        }
        return out;
    }

    public Map<String, Integer> servingVersions() {
        Map<String, Integer> out = new LinkedHashMap<>();
        for (Arm a : arms) {
            Loaded l = a.current.get();
            out.put(a.alias, l == null ? 0 : l.version().number());
        }
        return out;
    }

    /** Closes every session (each after its requests in flight). */
    @Override
    public synchronized void close() {
        closed = true;
        List<Arm> all = new ArrayList<>(arms);
        if (shadow != null) {
            all.add(shadow);
        }
        for (Arm a : all) {
            Loaded l = a.current.getAndSet(null);
            if (l != null) {
                l.session().close();
            }
        }
        synchronized (shadowTensors) {
            shadowTensors.forEach(Tensor::close);
            shadowTensors.clear();
        }
    }

    /** Settings of a {@link ModelRouter}. */
    public static final class Builder {
        private final ModelRegistry registry;
        private final String model;
        private Map<String, Double> split = Map.of("production", 1.0);
        private String shadow;
        private int maxBatch = 64;
        private dev.kiln.security.ArtifactKey key;

        private Builder(ModelRegistry registry, String model) {
            this.registry = Objects.requireNonNull(registry, "registry");
            this.model = Objects.requireNonNull(model, "model");
        }

        /** Serves one alias (default {@code production}). */
        public Builder alias(String alias) {
            return split(Map.of(alias, 1.0));
        }

        /** A/B or canary: each alias gets this share of the keys (weights > 0, normalized). */
        public Builder split(Map<String, Double> weights) {
            if (weights == null || weights.isEmpty()) {
                throw new IllegalArgumentException("split: at least one alias");
            }
            for (Map.Entry<String, Double> e : weights.entrySet()) {
                if (e.getValue() == null || !(e.getValue() > 0) || e.getValue().isInfinite()) {
                    throw new IllegalArgumentException("split: weight of '" + e.getKey() + "' must be finite and > 0");
                }
            }
            this.split = new java.util.TreeMap<>(weights); // a fixed order: arms do not depend on map iteration
            return this;
        }

        /** The key of encrypted versions (decrypted in memory when loaded). */
        public Builder key(dev.kiln.security.ArtifactKey key) {
            this.key = key;
            return this;
        }

        public Builder shadow(String alias) {
            this.shadow = alias;
            return this;
        }

        public Builder maxBatch(int maxBatch) {
            if (maxBatch < 1) {
                throw new IllegalArgumentException("maxBatch must be >= 1");
            }
            this.maxBatch = maxBatch;
            return this;
        }

        /** Loads, compiles and warms up every arm's current version. */
        public ModelRouter build() throws IOException {
            return new ModelRouter(this);
        }
    }
}
