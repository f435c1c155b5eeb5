#!/usr/bin/env python3
"""Writes the '## gpu' section of docs/performance.md from a GPU run's results (gpu.json, as saved
under benchmarks/results/). Usage: benchmarks/gpu/doc.py benchmarks/results/gpu-DATE-GPU.json
(run here, after copying the lent machine's OUTDIR/gpu.json there)."""
import json
import os
import sys

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, "benchmarks"))
import perfdoc  # noqa: E402

path = sys.argv[1]
doc = json.load(open(path))
lines = [
    "## gpu",
    "",
    f"{doc['machine']['gpu']}, {doc['date']}, one run of `bash {doc['command']} OUTDIR` on a lent machine "
    f"(results: `{os.path.relpath(path, root)}`). Kiln and cuBLAS (through PyTorch) in the same run, CUDA "
    "events, medians, random inputs. 'B n x k': B stored transposed (nn.Linear's layout); the plain "
    "bf16 rows include Kiln's transpose of a k x n B. Probe rows leave a stage out (wrong results) "
    "and give the rate the full product would have at their speed.",
    "",
    "| case | metric | Kiln | PyTorch (cuBLAS) | ratio |",
    "|---|---|---|---|---|",
]
for r in doc["rows"]:
    peer = r["peers"].get("cublas")
    ratio = f"{r['kiln'] / peer:.2f}" if peer else "-"
    lines.append(f"| {r['case']} | {r['metric']} | {r['kiln']:,.1f} | {f'{peer:,.1f}' if peer else '-'} | {ratio} |")
perfdoc.replace_section(root, "gpu", "\n".join(lines) + "\n")
print("wrote the gpu section of docs/performance.md")
