#!/usr/bin/env python3
"""Turns the JMH JSON of InferenceVsOnnxRuntime into benchmarks/results/inference.json (the format of
BENCHMARKS.md) and the inference table of docs/performance.md. Called by benchmarks/run inference.
Usage: inference_report.py RAW ROOT COMMAND [STREAM_JSON [NAME]]: NAME (default inference) names the
record, benchmarks/results/NAME.json and the "## NAME" table (another machine's record beside the
suite's own, e.g. inference-avx2)."""
import datetime
import json
import os
import re
import sys

raw, root, command = sys.argv[1:4]
name = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else "inference"
runs = json.load(open(raw))
by = {}
for r in runs:
    side = r["benchmark"].rsplit(".", 1)[1]
    p = r["params"]
    key = (p["model"], int(p["batch"]), int(p["threads"]))
    pm = r["primaryMetric"]
    pct = pm.get("scorePercentiles", {})
    alloc = r.get("secondaryMetrics", {}).get("gc.alloc.rate.norm", {}).get("score")
    by.setdefault(key, {})[side] = {
        "mean_us": pm["score"], "p50": pct.get("50.0"), "p99": pct.get("99.0"), "p999": pct.get("99.9"),
        "alloc": alloc, "iterations": r.get("measurementIterations"),
    }

rows = []
peer_names = {"onnxruntime": "onnxruntime", "onnxruntimeUsual": "onnxruntime_usual"}
for (model, batch, threads), sides in sorted(by.items()):
    if "kiln" not in sides:
        continue
    k = sides["kiln"]
    def peers(metric, fn):
        return {peer_names[s]: fn(v) for s, v in sides.items() if s != "kiln" and fn(v) is not None}
    base = f"{model} b{batch}"
    rows.append({"case": f"{base} p50", "threads": threads, "metric": "us", "higher_is_better": False,
                 "kiln": k["p50"], "peers": peers("p50", lambda v: v["p50"]), "reps": k["iterations"]})
    rows.append({"case": f"{base} p99", "threads": threads, "metric": "us", "higher_is_better": False,
                 "kiln": k["p99"], "peers": peers("p99", lambda v: v["p99"]), "reps": k["iterations"]})
    rows.append({"case": f"{base} throughput", "threads": threads, "metric": "samples/s", "higher_is_better": True,
                 "kiln": batch * 1e6 / k["mean_us"], "peers": peers("t", lambda v: batch * 1e6 / v["mean_us"]),
                 "reps": k["iterations"]})
    rows.append({"case": f"{base} alloc", "threads": threads, "metric": "B/op", "higher_is_better": False,
                 "kiln": k["alloc"], "peers": peers("a", lambda v: v["alloc"]), "reps": k["iterations"]})

# Weight-streaming limit of mlp-wide at batch 1, 1 thread: its fp32 weight bytes over the STREAM read
# bandwidth measured (by bench_gemm, 1 thread) in this same run, when benchmarks/run passed it.
stream_read = None
l3_read = {}
if len(sys.argv) > 4 and os.path.exists(sys.argv[4]):
    try:
        machine = json.load(open(sys.argv[4]))["machine"]
        stream_read = machine["stream_read_gbps_t1"]
        l3_read = {t: machine[f"l3_read_gbps_t{t}"] for t in (1, 2) if f"l3_read_gbps_t{t}" in machine}
    except (ValueError, KeyError):
        stream_read = None
if stream_read:
    wide_bytes = 4 * (1024 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1024 + 1024)
    limit_us = wide_bytes / (stream_read * 1e9) * 1e6
    for r in list(rows):
        if r["case"] == "mlp-wide b1 p50" and r["threads"] == 1:
            rows.append({"case": "mlp-wide b1 p50 / weight-streaming limit", "threads": 1, "metric": "ratio",
                         "higher_is_better": False, "kiln": round(r["kiln"] / limit_us, 3),
                         "peers": {"onnxruntime": round(r["peers"]["onnxruntime"] / limit_us, 3)
                                   if r["peers"].get("onnxruntime") else None},
                         "limit_us": round(limit_us, 1), "stream_read_gbps_t1": stream_read,
                         "weight_bytes": wide_bytes})

# L3-streaming limit of mlp-small at batch 1: its weights (2.1 MB) outgrow L2 (1 MiB a core) and sit
# in L3, so a forward reads them all from there; the limit is their bytes over the L3 read bandwidth
# measured (by bench_gemm) in this same run at the same thread count (2 threads: each reads half).
small_bytes = 4 * (784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10)
for threads, bw in l3_read.items():
    limit_us = small_bytes / (bw * 1e9) * 1e6
    for r in list(rows):
        if r["case"] == "mlp-small b1 p50" and r["threads"] == threads:
            rows.append({"case": "mlp-small b1 p50 / L3-streaming limit", "threads": threads, "metric": "ratio",
                         "higher_is_better": False, "kiln": round(r["kiln"] / limit_us, 3),
                         "peers": {p: round(r["peers"][p] / limit_us, 3) if r["peers"].get(p) else None
                                   for p in ("onnxruntime", "onnxruntime_usual")},
                         "limit_us": round(limit_us, 2), f"l3_read_gbps_t{threads}": bw, "weight_bytes": small_bytes})

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perfdoc  # noqa: E402

cpu = perfdoc.cpu_name()
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
out = {"suite": "inference", "date": date, "command": command,
       "machine": {"cpu": cpu, "cores": os.cpu_count(), "jvm": "JMH SampleTime, 1 fork, -prof gc"}, "rows": rows}
json.dump(out, open(os.path.join(root, "benchmarks", "results", name + ".json"), "w"), indent=2)

def fmt(v, metric):
    if v is None:
        return "–"
    if metric == "ratio":
        return f"{v:.3f}"
    return f"{v:,.0f}" if metric == "samples/s" else (f"{v:.2f}" if v < 100 else f"{v:,.0f}")

# A core's L2 as this machine's kernel reports it (sysfs), for the text beside the L3-streaming limit.
try:
    with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as f:
        l2 = f.read().strip()
    kib = int(l2[:-1]) * (1024 if l2.endswith("M") else 1) if l2[-1:] in ("K", "M") else None
    l2 = (f"{kib // 1024} MiB" if kib and kib % 1024 == 0 else f"{kib} KiB" if kib else l2) + " L2"
except (OSError, ValueError):
    l2 = "L2"

lines = ["## " + name, "",
         f"Command: `{command}` — {date}, {cpu}, {os.cpu_count()} cores. JMH SampleTime (1 fork; 2-thread results vary "
         "between forks) with -prof gc. Same weights on both sides: Kiln exports the model to ONNX and ONNX Runtime "
         "loads that file; outputs are checked equal before timing. `onnxruntime` = its fastest Java path (input tensor "
         "created once, outputs pinned); `onnxruntime_usual` = new input tensor per call, output copied out. "
         "Throughput = batch / mean latency. Ratio = Kiln / peer (for µs and B/op, lower is better). B/op is JMH's -prof gc, which counts the allocation of every JVM thread: Kiln's figures are the harness's own steady background (tens to a few hundred KB/s, whatever the op's length; hence more B/op for longer ops), while the calling thread allocates 0 B per run (java-api test `InferenceSessionTest.runAllocatesNothingInSteadyState`)."
         + (f" Weight-streaming limit of mlp-wide (100.7 MB of fp32 weights) at the 1-thread STREAM read bandwidth "
            f"measured in this run ({stream_read} GB/s): the row `/ weight-streaming limit` is p50 over that time."
            if stream_read else "")
         + (f" L3-streaming limit of mlp-small (2.1 MB of fp32 weights, more than a core's {l2}) at the L3 read "
            f"bandwidth measured in this run ({', '.join(f'{v} GB/s at {t}T' for t, v in l3_read.items())}): the rows "
            "`/ L3-streaming limit` are p50 over that time (a forward that reads every weight from L3 cannot go below 1.0)."
            if l3_read else ""), "",
         "| case | threads | metric | Kiln | onnxruntime (ratio) | onnxruntime_usual (ratio) |", "|---|---:|---|---:|---|---|"]
for r in rows:
    cells = []
    for peer in ("onnxruntime", "onnxruntime_usual"):
        v = r["peers"].get(peer)
        ratio = (r["kiln"] / v) if (v and r["kiln"] is not None and v != 0) else None
        cells.append(f"{fmt(v, r['metric'])}" + (f" (x{ratio:.2f})" if ratio is not None else ""))
    lines.append(f"| {r['case']} | {r['threads']} | {r['metric']} | {fmt(r['kiln'], r['metric'])} | {cells[0]} | {cells[1]} |")
section = "\n".join(lines) + "\n"
perfdoc.replace_section(root, name, section)
print(f"wrote benchmarks/results/{name}.json and the {name} table in docs/performance.md")
