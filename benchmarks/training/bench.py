#!/usr/bin/python3
"""benchmarks/run training: Kiln (`kiln train`) and PyTorch (torch_mlp.py) on the same network,
initialization, optimizer, batch size, epochs and data, one after the other in one run.

Throughput rows (`mlp-fmnist bBATCH`): samples/s of the training loop (median over the epochs after
the first), Kiln at 1 and 2 threads; the `pytorch` figure is the best of its three settings (1
thread with OPENBLAS_NUM_THREADS=1; 1 intra-op thread with 2 OpenBLAS threads; 2 threads with
OMP_WAIT_POLICY=PASSIVE), each listed in the row's detail. This shared 2-core machine is noisy
(PyTorch's batch-128 figure has ranged from 40k to 86k samples/s between runs), so every
configuration, Kiln's and PyTorch's, runs ROUNDS times, interleaved, and each reports its best
round: a slow round is interference, not the library. All rounds are kept in the JSON.
Accuracy row (`mlp-fmnist b128 accuracy`): test accuracy after 10 epochs, mean of 3 seeds, Kiln at
2 threads, PyTorch in its best batch-128 setting.

Writes benchmarks/results/training.json and the training table of docs/performance.md; with
--as NAME, benchmarks/results/NAME.json and a "## NAME" table instead (another machine's record
beside the suite's own, e.g. training-avx2 on a CPU without AVX-512).
Usage: bench.py ROOT COMMAND [--quick] [--machine BENCH_GEMM_JSON] [--as NAME]
"""
import datetime, json, os, re, statistics, subprocess, sys

root, command = sys.argv[1], sys.argv[2]
quick = "--quick" in sys.argv[3:]
name = "training"
if "--as" in sys.argv[3:]:
    i = sys.argv.index("--as")
    if i + 1 >= len(sys.argv) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", sys.argv[i + 1]):
        sys.exit("bench.py: --as needs a name of a-z, 0-9 and -")
    name = sys.argv[i + 1]
speed_epochs = 2 if quick else 4
acc_epochs = 2 if quick else 10
seeds = [1] if quick else [1, 2, 3]
ROUNDS = 1 if quick else 3
kiln = [os.path.join(root, "cli", "kiln")]
torch_script = [sys.executable, os.path.join(root, "benchmarks", "training", "torch_mlp.py")]
TORCH_SETTINGS = {
    "1 thread, OPENBLAS_NUM_THREADS=1": ({"OPENBLAS_NUM_THREADS": "1"}, 1),
    "1 thread, 2 OpenBLAS threads": ({"OPENBLAS_NUM_THREADS": "2"}, 1),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
}
# FLOPs of one training sample of 784-256-128-10: forward 2*sum(in*out); backward: weight gradients
# (same count) and input gradients for every layer but the first.
FWD = 2 * (784 * 256 + 256 * 128 + 128 * 10)
FLOP_PER_SAMPLE = 3 * FWD - 2 * 784 * 256


def run(cmd, env_extra):
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_NUM_THREADS"):
        env.pop(k, None)
    env.update(env_extra)
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def rate(result):
    eps = result["epochs"][1:] or result["epochs"]
    return statistics.median(e["samples_per_second"] for e in eps)


def kiln_run(batch, threads, epochs, seed):
    return run(kiln + ["train", "--json", "--no-progress", "--threads", str(threads), "--batch-size", str(batch),
                       "--epochs", str(epochs), "--seed", str(seed)], {})


def torch_run(setting, batch, epochs, seed):
    env, threads = TORCH_SETTINGS[setting]
    return run(torch_script + ["--threads", str(threads), "--batch-size", str(batch), "--epochs", str(epochs),
                               "--seed", str(seed)], env)


# The FMA peak of this machine, measured in this run by bench_gemm (benchmarks/run passes its JSON
# with --machine FILE when the gemm suite's packages are there): a figure from another machine's
# gemm.json (another CPU, another ISA) would give a false % peak. Without it the column is left out.
peak, peak_source = None, None
if "--machine" in sys.argv[3:]:
    try:
        machine_file = sys.argv[sys.argv.index("--machine") + 1]
        peak = json.load(open(machine_file))["machine"]["peak_gflops_t1"]
        peak_source = "measured by bench_gemm in this run"
    except (IndexError, OSError, KeyError, ValueError) as e:
        print(f"bench.py: no FMA peak ({e}): the % peak column is left out", file=sys.stderr)

rows = []
best_torch_b128 = None
for batch in (32, 128):
    torch_rounds = {s: [] for s in TORCH_SETTINGS}
    kiln_rounds = {1: [], 2: []}
    for rnd in range(ROUNDS):
        for s in TORCH_SETTINGS:
            r = rate(torch_run(s, batch, speed_epochs, 1))
            torch_rounds[s].append(r)
            print(f"round {rnd + 1}: pytorch b{batch} {s}: {r:,.0f} samples/s", flush=True)
        for threads in (1, 2):
            r = rate(kiln_run(batch, threads, speed_epochs, 1))
            kiln_rounds[threads].append(r)
            print(f"round {rnd + 1}: kiln b{batch} {threads}T: {r:,.0f} samples/s", flush=True)
    torch_rates = {k: max(v) for k, v in torch_rounds.items()}
    best_setting = max(torch_rates, key=torch_rates.get)
    if batch == 128:
        best_torch_b128 = best_setting
    for threads in (1, 2):
        r = max(kiln_rounds[threads])
        gflops = r * FLOP_PER_SAMPLE / 1e9
        print(f"kiln b{batch} {threads}T: {r:,.0f} samples/s ({gflops:.1f} GFLOP/s) "
              f"= {r / torch_rates[best_setting]:.2f}x pytorch best ({best_setting})", flush=True)
        rows.append({"case": f"mlp-fmnist b{batch}", "threads": threads, "metric": "samples/s",
                     "higher_is_better": True, "kiln": round(r), "peers": {"pytorch": round(torch_rates[best_setting])},
                     "kiln_gflops": round(gflops, 1),
                     "kiln_pct_peak": round(100 * gflops / (peak * threads), 1) if peak else None,
                     "pytorch_setting": best_setting,
                     "pytorch_all_settings": {k: round(v) for k, v in torch_rates.items()},
                     "kiln_rounds": [round(v) for v in kiln_rounds[threads]],
                     "pytorch_rounds": {k: [round(x) for x in v] for k, v in torch_rounds.items()}})

kiln_acc, torch_acc = [], []
for seed in seeds:
    k = kiln_run(128, 2, acc_epochs, seed)["test_accuracy"]
    t = torch_run(best_torch_b128, 128, acc_epochs, seed)["test_accuracy"]
    kiln_acc.append(k)
    torch_acc.append(t)
    print(f"accuracy seed {seed}: kiln {100 * k:.2f}%  pytorch {100 * t:.2f}%", flush=True)
rows.append({"case": "mlp-fmnist b128 accuracy", "threads": 2, "metric": "test accuracy", "higher_is_better": True,
             "kiln": round(statistics.mean(kiln_acc), 5), "peers": {"pytorch": round(statistics.mean(torch_acc), 5)},
             "kiln_seeds": kiln_acc, "pytorch_seeds": torch_acc, "epochs": acc_epochs,
             "pytorch_setting": best_torch_b128})

sys.path.insert(0, os.path.join(root, "benchmarks"))
import perfdoc  # noqa: E402

cpu = perfdoc.cpu_name()
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
import torch  # noqa: E402  (only for its version)
machine = {"cpu": cpu, "cores": os.cpu_count(), "peak_gflops_t1": peak, "torch": torch.__version__}
out = {"suite": "training", "date": date, "command": command, "machine": machine,
       "flop_per_sample": FLOP_PER_SAMPLE, "rows": rows}
os.makedirs(os.path.join(root, "benchmarks", "results"), exist_ok=True)
if not quick:
    json.dump(out, open(os.path.join(root, "benchmarks", "results", name + ".json"), "w"), indent=2)

lines = ["## " + name, "",
         f"Command: `{command}` — {date}, {cpu}, {os.cpu_count()} cores, PyTorch {torch.__version__} (Debian).",
         "Fashion-MNIST, MLP 784-256-128-10 (ReLU), He-normal init and zero biases, Adam lr 1e-3, reshuffled each "
         "epoch. samples/s: training loop only, median of epochs 2..%d, best of %d interleaved rounds per "
         "configuration (the machine is shared and noisy; all rounds are in training.json). `pytorch` = its best of "
         "three settings (1 thread + OPENBLAS_NUM_THREADS=1; 1 thread + 2 OpenBLAS threads; 2 threads + "
         "OMP_WAIT_POLICY=PASSIVE). "
         "GFLOP/s counts %d FLOP per sample (forward, weight gradients, input gradients of layers 2-3)%s." % (
             speed_epochs, ROUNDS, FLOP_PER_SAMPLE,
             f"; % peak against the FMA peak {peak} GFLOP/s per core, {peak_source}" if peak else
             "; no FMA peak measured (bench_gemm needs libopenblas-dev and libdnnl-dev)"),
         "", "| case | threads | Kiln | PyTorch best (setting) | ratio | Kiln GFLOP/s (% peak) |", "|---|---:|---:|---|---:|---|"]
for r in rows:
    if r["metric"] == "samples/s":
        lines.append(f"| {r['case']} | {r['threads']} | {r['kiln']:,} | {r['peers']['pytorch']:,} ({r['pytorch_setting']}) "
                     f"| {r['kiln'] / r['peers']['pytorch']:.2f}x | {r['kiln_gflops']}"
                     + (f" ({r['kiln_pct_peak']}%) |" if r['kiln_pct_peak'] is not None else " |"))
    else:
        lines.append(f"| {r['case']} ({r['epochs']} epochs, seeds {seeds}) | {r['threads']} | "
                     f"{100 * r['kiln']:.2f}% | {100 * r['peers']['pytorch']:.2f}% ({r['pytorch_setting']}) | "
                     f"{100 * (r['kiln'] - r['peers']['pytorch']):+.2f} points | |")
section = "\n".join(lines) + "\n"
print(section)
if not quick:
    perfdoc.replace_section(root, name, section)
    print(f"wrote benchmarks/results/{name}.json and the {name} table in docs/performance.md")
