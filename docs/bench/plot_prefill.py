#!/usr/bin/env python3
"""Plots prefill latency against token count for eager, piecewise and full modes
(nh_model_bench.json) and transformers (transformers.log) into prefill_latency.png."""
import json
import re
import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

here = Path(__file__).resolve().parent
bench = json.loads((here / "nh_model_bench.json").read_text())
rows = bench["prefill"]
tokens = [r["tokens"] for r in rows]
fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
for key, label, style in [("eager_ms", "piecewise lib: eager", "o-"),
                          ("piecewise_ms", "piecewise lib: piecewise graphs", "s-"),
                          ("full_ms", "piecewise lib: full graph", "^-")]:
    ax.plot(tokens, [r[key] for r in rows], style, label=label, markersize=4)
tf = [(int(m.group(1)), float(m.group(2)))
      for m in re.finditer(r"^\s*(\d+) tokens:\s+([\d.]+) ms", (here / "transformers.log").read_text(), re.M)]
if tf:
    ax.plot([t for t, _ in tf], [ms for _, ms in tf], "x--", label="transformers 5.17 (bf16, sdpa)")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("prompt tokens (one sequence)")
ax.set_ylabel("prefill latency (ms)")
ax.set_title(f"NemotronH Nano-9B-v2 shapes, synthetic weights, {bench['device']}")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig.tight_layout()
out = here / "prefill_latency.png"
fig.savefig(out)
print(out)
