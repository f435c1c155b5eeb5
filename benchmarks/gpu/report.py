#!/usr/bin/env python3
"""Merges kiln.jsonl and peers.jsonl of a GPU run into gpu.json (BENCHMARKS.md format) and prints
the table. Usage: report.py OUTDIR COMMAND"""
import datetime, json, os, subprocess, sys

out, command = sys.argv[1], sys.argv[2]
kiln = [json.loads(l) for l in open(os.path.join(out, "kiln.jsonl")) if l.startswith("{")]
peers = {}
for l in open(os.path.join(out, "peers.jsonl")):
    if l.startswith("{"):
        p = json.loads(l)
        peers[p["case"]] = p["value"]
gpu = "unknown"
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                         text=True).stdout.strip().splitlines()[0]
except Exception:
    pass
rows = []
for k in kiln:
    r = {"case": k["case"], "threads": 0, "metric": k["metric"], "higher_is_better": k["metric"] != "us",
         "kiln": k["kiln"],
         "peers": {"cublas": peers.get(k["case"])}}
    rows.append(r)
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
doc = {"suite": "gpu", "date": date, "command": command, "machine": {"gpu": gpu}, "rows": rows}
json.dump(doc, open(os.path.join(out, "gpu.json"), "w"), indent=2)
print(f"{'case':52} {'metric':8} {'kiln':>10} {'cublas':>10} {'ratio':>6}")
for r in rows:
    p = r["peers"]["cublas"]
    ratio = f"{r['kiln'] / p:.2f}" if p else "-"
    print(f"{r['case']:52} {r['metric']:8} {r['kiln']:>10} {p if p is not None else '-':>10} {ratio:>6}")
