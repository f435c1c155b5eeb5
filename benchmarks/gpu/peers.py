#!/usr/bin/env python3
"""cuBLAS peers of bench_cuda through PyTorch, same sizes and timing method (CUDA events, median of
repeats after warm-up, random inputs). One JSON object per line."""
import json
import statistics
import time

import torch


def median_ms(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def row(case, metric, value, unit):
    print(json.dumps({"case": case, "metric": metric, "peer": "cublas", "value": round(value, 3), "unit": unit}), flush=True)


def median_host_us(fn, reps=2000):
    """Median wall time of fn() plus a device synchronize, from the host (as bench_cuda's plan rows)."""
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


torch.backends.cuda.matmul.allow_tf32 = False

# Training: the same MLP, Adam, batch 128, each step reading its loss (loss.item() waits, as Kiln's
# step does); samples per second over 300 steps after 30 warm-up steps.
net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128), torch.nn.ReLU(),
                          torch.nn.Linear(128, 10)).cuda()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
tx = torch.rand(128, 784, device="cuda")
ty = torch.randint(0, 10, (128,), device="cuda")


def train_step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(net(tx), ty)
    loss.backward()
    opt.step()
    return loss.item()


for _ in range(30):
    train_step()
t0 = time.perf_counter()
for _ in range(300):
    train_step()
row("mlp-fmnist train b128 (Adam)", "samples/s", 300 * 128 / (time.perf_counter() - t0), "samples/s")

# mlp-small forward: PyTorch's fastest path here, the forward captured in a CUDA graph and replayed.
mlp = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256), torch.nn.ReLU(),
                          torch.nn.Linear(256, 10), torch.nn.Softmax(dim=1)).cuda().eval()
for batch in (1, 256):
    static_x = torch.rand(batch, 784, device="cuda")
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                mlp(static_x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y = mlp(static_x)
    row(f"mlp-small b{batch} forward (CUDA graph, device buffers)", "us", median_host_us(graph.replay), "us")
    if batch == 1:
        host_x = torch.rand(1, 784)

        def host_forward():
            with torch.no_grad():
                return mlp(host_x.cuda()).cpu()
        row("mlp-small b1 forward (host in and out)", "us", median_host_us(host_forward), "us")
n = 1 << 28
x = torch.rand(n, device="cuda")
y = torch.empty_like(x)
row("d2d copy 1GiB", "GB/s", 2 * n * 4 / (median_ms(lambda: y.copy_(x)) * 1e6), "GB/s")
h = n // 2
row("add 2^27 floats", "GB/s", 3 * h * 4 / (median_ms(lambda: torch.add(x[:h], x[h:], out=y[:h])) * 1e6), "GB/s")
del x, y
for s in (4096, 8192):
    a = torch.randn(s, s, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(s, s, device="cuda", dtype=torch.bfloat16)
    ms = median_ms(lambda: torch.matmul(a, b), 10)
    row(f"gemm bf16 {s}x{s}x{s}", "TFLOP/s", 2 * s ** 3 / (ms * 1e9), "TFLOP/s")
    bt = b.t().contiguous()  # B stored n x k, as Kiln's trans_b case reads it (cuBLAS's TN layout)
    ms = median_ms(lambda: torch.matmul(a, bt.t()), 10)
    row(f"gemm bf16 {s}x{s}x{s} (B n x k)", "TFLOP/s", 2 * s ** 3 / (ms * 1e9), "TFLOP/s")
    if s == 4096:
        bias = torch.randn(s, device="cuda", dtype=torch.float32)
        ms = median_ms(lambda: torch.nn.functional.gelu(torch.matmul(a, bt.t()).float() + bias), 10)
        row(f"gemm bf16 {s}x{s}x{s} (B n x k) + bias + gelu", "TFLOP/s", 2 * s ** 3 / (ms * 1e9), "TFLOP/s")
    if s == 4096:
        af, bf = a.float(), b.float()
        ms = median_ms(lambda: torch.matmul(af, bf), 5)
        row("sgemm 4096x4096x4096", "TFLOP/s", 2 * s ** 3 / (ms * 1e9), "TFLOP/s")
