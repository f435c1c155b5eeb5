#!/usr/bin/python3
"""PyTorch peer of `kiln train`: the same MLP (784-256-128-10, ReLU), the same initialization
(He-normal weights, fan_in, zero biases), Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), the same batch
size, epochs and data (Fashion-MNIST scaled to [0, 1], reshuffled each epoch, last partial batch
kept). Prints one JSON object: per-epoch training seconds and samples/s (training loop only, as Kiln
reports them) and the final test accuracy.

Thread settings come from the caller (environment: OPENBLAS_NUM_THREADS, OMP_WAIT_POLICY; and
--threads for torch.set_num_threads).
"""
import argparse, gzip, json, os, struct, time

import numpy as np
import torch


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    rank = magic & 0xFF
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr = torch.from_numpy(idx(os.path.join(a.data, "train-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float32) / 255)
    ytr = torch.from_numpy(idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    xte = torch.from_numpy(idx(os.path.join(a.data, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float32) / 255)
    yte = torch.from_numpy(idx(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = xtr.shape[0]
    epochs = []
    g = torch.Generator().manual_seed(a.seed)
    for ep in range(a.epochs):
        perm = torch.randperm(n, generator=g)
        model.train()
        t0 = time.perf_counter()
        total = 0.0
        for i in range(0, n, a.batch_size):
            idx_b = perm[i:i + a.batch_size]
            xb, yb = xtr[idx_b], ytr[idx_b]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx_b)
        sec = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        epochs.append({"epoch": ep + 1, "seconds": sec, "samples_per_second": n / sec, "loss": total / n,
                       "test_accuracy": acc})
    print(json.dumps({"torch": torch.__version__, "threads": a.threads, "batch_size": a.batch_size, "seed": a.seed,
                      "epochs": epochs, "test_accuracy": epochs[-1]["test_accuracy"]}))


if __name__ == "__main__":
    main()
