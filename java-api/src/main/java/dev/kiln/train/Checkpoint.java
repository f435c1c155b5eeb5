package dev.kiln.train;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.CRC32;

/**
 * Checkpoint file: {@code "KILNCKPT"}, u32 format version, the trainer's position (fixed
 * little-endian fields), since version 2 the optimizer's kind (u16 length, ASCII name), u64 state
 * length, the native trainer state, and a CRC-32 of everything before it. Written to a temporary
 * file, fsynced and renamed into place. Version 1 files (no optimizer name) are still read.
 */
final class Checkpoint {
    static final int VERSION = 2;
    private static final byte[] MAGIC = {'K', 'I', 'L', 'N', 'C', 'K', 'P', 'T'};

    record State(int epoch, long batch, long seed, int batchSize, double lossSum, long correct, long seen, double best,
                 int bad, int bestEpoch, double[] schedule, String optimizer) {}

    record Loaded(State state, byte[] stateBytes) {}

    private Checkpoint() {}

    static void write(Path path, State s, ByteBuffer state) throws IOException {
        byte[] opt = s.optimizer().getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        int fixed = 8 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 4 + 4 + 8 * s.schedule().length + 2 + opt.length + 8;
        ByteBuffer head = ByteBuffer.allocate(fixed).order(ByteOrder.LITTLE_ENDIAN);
        head.put(MAGIC).putInt(VERSION).putInt(s.epoch()).putLong(s.batch()).putLong(s.seed()).putInt(s.batchSize())
                .putDouble(s.lossSum()).putLong(s.correct()).putLong(s.seen()).putDouble(s.best()).putInt(s.bad())
                .putInt(s.bestEpoch()).putInt(s.schedule().length);
        for (double d : s.schedule()) {
            head.putDouble(d);
        }
        head.putShort((short) opt.length).put(opt);
        head.putLong(state.remaining());
        head.flip();
        CRC32 crc = new CRC32();
        crc.update(head.duplicate());
        crc.update(state.duplicate());
        ByteBuffer tail = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt((int) crc.getValue()).flip();
        dev.kiln.io.AtomicFiles.write(path, ch -> {
            ByteBuffer st = state.duplicate();
            for (ByteBuffer b : new ByteBuffer[] {head, st, tail}) {
                while (b.hasRemaining()) {
                    ch.write(b);
                }
            }
        });
    }

    static Loaded read(Path path) throws IOException {
        byte[] all = Files.readAllBytes(path);
        ByteBuffer b = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        if (all.length < 8 + 4 + 4 || !java.util.Arrays.equals(java.util.Arrays.copyOf(all, 8), MAGIC)) {
            throw new IOException(path + ": not a Kiln checkpoint");
        }
        b.position(8);
        int version = b.getInt();
        if (version > VERSION) {
            throw new IOException(path + ": checkpoint format " + version + " is newer than this Kiln reads (" + VERSION + ")");
        }
        if (version < 1) {
            throw new IOException(path + ": checkpoint format " + version + " is not valid");
        }
        CRC32 crc = new CRC32();
        crc.update(all, 0, all.length - 4);
        int stored = ByteBuffer.wrap(all, all.length - 4, 4).order(ByteOrder.LITTLE_ENDIAN).getInt();
        if ((int) crc.getValue() != stored) {
            throw new IOException(path + ": checkpoint is corrupt (checksum mismatch): truncated or modified");
        }
        try {
            int epoch = b.getInt();
            long batch = b.getLong();
            long seed = b.getLong();
            int batchSize = b.getInt();
            double lossSum = b.getDouble();
            long correct = b.getLong();
            long seen = b.getLong();
            double best = b.getDouble();
            int bad = b.getInt();
            int bestEpoch = b.getInt();
            int sched = b.getInt();
            if (sched < 0 || sched > 16 || epoch < 0 || batch < 0) {
                throw new IOException(path + ": checkpoint header is invalid");
            }
            double[] schedule = new double[sched];
            for (int i = 0; i < sched; i++) {
                schedule[i] = b.getDouble();
            }
            String optimizer = null;
            if (version >= 2) {
                int n = b.getShort() & 0xffff;
                if (n < 1 || n > 32) {
                    throw new IOException(path + ": checkpoint header is invalid");
                }
                byte[] name = new byte[n];
                b.get(name);
                optimizer = new String(name, java.nio.charset.StandardCharsets.US_ASCII);
            }
            long len = b.getLong();
            if (len < 0 || len != b.remaining() - 4) {
                throw new IOException(path + ": checkpoint state length " + len + " does not match the file");
            }
            byte[] state = new byte[(int) len];
            b.get(state);
            return new Loaded(new State(epoch, batch, seed, batchSize, lossSum, correct, seen, best, bad, bestEpoch,
                    schedule, optimizer), state);
        } catch (java.nio.BufferUnderflowException e) {
            throw new IOException(path + ": checkpoint is truncated");
        }
    }
}
