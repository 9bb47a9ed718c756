#!/usr/bin/env bash
# Per-kernel GPU time of one NemotronH decode step and one short prefill, from Nsight Compute:
#
#   bench/profile_step.sh [BUILD_DIR] [OUT_DIR] [runner args...]
#
# Runs BUILD_DIR/examples/nemotron_h/nemotron_h_run (default build dir: build; default runner
# args: --model nano-9b-v2 --mode eager --batch 1 --prompt-len 16 --gen 2) under
#   ncu --clock-control none --metrics gpu__time_duration.sum --csv
# (OUT_DIR/step_ncu.csv, the runner's output in OUT_DIR/step_run.log), splits the kernel
# sequence into forwards (each ends with the argmax and its step bookkeeping) and prints, for
# the last prefill forward and the last decode forward, every kernel with its count, total
# and mean time, largest first. The runner does a warm-up run before the measured one, so
# the forwards printed are the measured run's.
#
#   bench/profile_step.sh --table FILE.csv   only prints the tables of an existing CSV
#
# Needs ncu on PATH (or NCU=/path/to/ncu) and python3. At 9B shapes with synthetic weights
# the run takes about 80 s (the weights are drawn on the host first).
set -euo pipefail

table() {
  python3 - "$1" <<'PY'
import csv, sys
from collections import OrderedDict

rows = []
with open(sys.argv[1], newline="") as f:
    lines = [l for l in f if l.startswith('"')]  # skip ncu's ==PROF== lines
for r in csv.DictReader(lines):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    v = float(r["Metric Value"].replace(",", ""))
    unit = r.get("Metric Unit", "ns")
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6}
    us = v * scale[unit]
    rows.append((int(r["ID"]), r["Kernel Name"], us))
rows.sort()

def short(name):
    n = name
    for p in ("nemotron_h::(anonymous namespace)::", "nemotron_h::", "(anonymous namespace)::", "<unnamed>::", "cublasLt::"):
        n = n.replace(p, "")
    if n.startswith("void "):
        n = n[5:]
    return n.split("(")[0]

END = ("argmax", "bump_kernel", "advance_kernel")
forwards, cur, ended = [], [], False
for _, name, us in rows:
    n = short(name)
    is_end = any(e in n for e in END)
    if ended and not is_end:
        forwards.append(cur)
        cur = []
    cur.append((n, us))
    ended = is_end
if cur:
    forwards.append(cur)

def kind(fw):
    names = " ".join(n for n, _ in fw)
    if "ssd_" in names or "conv_prefill" in names:
        return "prefill"
    if "mamba_decode" in names or "attention_decode" in names:
        return "decode"
    return "other"

def show(title, fw):
    agg = OrderedDict()
    for n, us in fw:
        c, t = agg.get(n, (0, 0.0))
        agg[n] = (c + 1, t + us)
    total = sum(t for _, t in agg.values())
    print(f"\n## {title}: {len(fw)} kernels, {total:.1f} us of kernel time\n")
    print(f"| kernel | count | total us | mean us |")
    print(f"|---|---|---|---|")
    for n, (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f"| {n[:90]} | {c} | {t:.1f} | {t / c:.2f} |")

print(f"{len(rows)} kernels profiled, {len(forwards)} forwards: " + ", ".join(kind(f) for f in forwards))
for k in ("decode", "prefill"):
    sel = [f for f in forwards if kind(f) == k]
    if sel:
        show(f"last {k} forward", sel[-1])
PY
}

if [ "${1:-}" = "--table" ]; then
  table "$2"
  exit 0
fi

build=${1:-build}
out=${2:-.}
shift $(( $# > 2 ? 2 : $# ))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--model nano-9b-v2 --mode eager --batch 1 --prompt-len 16 --gen 2)
bin=$build/examples/nemotron_h/nemotron_h_run
ncu=${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}
mkdir -p "$out"
"$ncu" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
  --log-file "$out/step_ncu.csv" "$bin" "${args[@]}" >"$out/step_run.log" 2>&1
table "$out/step_ncu.csv"
