#!/usr/bin/env bash
# One GPU-machine call of issue 11's kernel work: builds this tree and a baseline tree, runs
# the kernel GPU tests of this tree (plus compute-sanitizer on the new kernel paths), times
# every small kernel of a decode step / short prefill in both trees in the same process
# environment (nh_step_kernels_bench: graph replays, then ncu per-kernel times), and the
# per-kernel table of one decode step and one 16-token prefill of this tree
# (bench/profile_step.sh). Everything lands in $OUT (default ./out), with a summary last.
#
#   BASE=path/to/baseline/tree [BASE_PROFILE=1] examples/nemotron_h/bench/compare_step_kernels.sh
#
# BASE_PROFILE=1 also builds the baseline runner and profiles its step (last, if time is left).
#
# The baseline tree needs bench/bench_step_kernels.cu and its target (runner/runner.cmake)
# copied in (the bench uses only public kernel entry points). Set SKIP_TESTS=1,
# SKIP_PROFILE=1 or SKIP_BASE=1 to leave parts out. .gpu-deps (if present) is the prefix.
set -uo pipefail
cd "$(dirname "$0")/../../.."
root=$PWD
out=${OUT:-$root/out}
base=${BASE:-$root/base}
mkdir -p "$out/logs"
export PATH=/usr/local/cuda/bin:$PATH
prefix=()
if [ -d "$root/.gpu-deps" ]; then
  prefix=(-DCMAKE_PREFIX_PATH="$root/.gpu-deps")
  export LD_LIBRARY_PATH="$root/.gpu-deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
cfg=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 "${prefix[@]}")
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv | tee "$out/logs/gpu.txt"

new_targets=(nh_step_kernels_bench nemotron_h_run nh_runner_kernels_gpu_tests nh_mamba_gpu_tests nh_dense_gpu_tests nh_runner_gpu_tests)
stamp "configure + build"
cmake -S . -B b "${cfg[@]}" >"$out/logs/cfg_new.log" 2>&1
if [ -z "${SKIP_BASE:-}" ]; then
  cmake -S "$base" -B "$base/b" "${cfg[@]}" >"$out/logs/cfg_base.log" 2>&1
  (cmake --build "$base/b" -j5 --target nh_step_kernels_bench ${BASE_PROFILE:+nemotron_h_run} >"$out/logs/build_base.log" 2>&1; echo "base build rc $?" >>"$out/logs/build_base.log") &
fi
cmake --build b -j12 --target "${new_targets[@]}" >"$out/logs/build_new.log" 2>&1
echo "new build rc $?" | tee -a "$out/logs/build_new.log"
wait
tail -1 "$out/logs/build_base.log" 2>/dev/null
nb=b/examples/nemotron_h

# Timings first, on an otherwise idle GPU.
stamp "step-kernel bench (graph replay)"
if [ -z "${SKIP_BASE:-}" ]; then "$base/b/examples/nemotron_h/nh_step_kernels_bench" >"$out/bench_base.txt" 2>&1; fi
"$nb/nh_step_kernels_bench" >"$out/bench_new.txt" 2>&1
if [ -z "${SKIP_BASE:-}" ]; then "$base/b/examples/nemotron_h/nh_step_kernels_bench" >"$out/logs/bench_base_2.txt" 2>&1; fi
stamp "step-kernel bench under ncu"
ncuargs=(--clock-control none --metrics gpu__time_duration.sum --csv --print-units base)
if [ -z "${SKIP_BASE:-}" ]; then
  "$ncu" "${ncuargs[@]}" --log-file "$out/logs/ncu_micro_base.csv" "$base/b/examples/nemotron_h/nh_step_kernels_bench" --once >"$out/logs/ncu_micro_base.log" 2>&1
fi
"$ncu" "${ncuargs[@]}" --log-file "$out/logs/ncu_micro_new.csv" "$nb/nh_step_kernels_bench" --once >"$out/logs/ncu_micro_new.log" 2>&1

if [ -z "${SKIP_TESTS:-}" ]; then
  # The tests get what is left of LIMIT seconds (default 500) after 120 s kept for the
  # profile and the archive, so that the summary is always written.
  left=$(( ${LIMIT:-500} - ($(date +%s) - t0) - 120 ))
  [ $left -gt 30 ] || left=30
  stamp "tests (in parallel, ${left} s at most)"
  export PIECEWISE_REQUIRE_GPU=1
  # The runner tests first and alone: their soak test checks that device-wide free memory
  # is flat, which other processes on the GPU would disturb.
  timeout $left "$nb/nh_runner_gpu_tests" >"$out/logs/test_nh_runner_gpu_tests.log" 2>&1; echo "rc $?" >>"$out/logs/test_nh_runner_gpu_tests.log"
  left=$(( ${LIMIT:-500} - ($(date +%s) - t0) - 120 ))
  [ $left -gt 30 ] || left=30
  pids=()
  for t in nh_runner_kernels_gpu_tests nh_mamba_gpu_tests nh_dense_gpu_tests; do
    (timeout $left "$nb/$t" >"$out/logs/test_$t.log" 2>&1; echo "rc $?" >>"$out/logs/test_$t.log") &
    pids+=($!)
  done
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck initcheck racecheck; do
    (timeout $left "$cs" --tool $tool --error-exitcode 99 "$nb/nh_runner_kernels_gpu_tests" >"$out/logs/san_${tool}_argmax.log" 2>&1; echo "rc $?" >>"$out/logs/san_${tool}_argmax.log") &
    (timeout $left "$cs" --tool $tool --error-exitcode 99 "$nb/nh_mamba_gpu_tests" "[split],[short],[tiling],[graph]" >"$out/logs/san_${tool}_mamba.log" 2>&1; echo "rc $?" >>"$out/logs/san_${tool}_mamba.log") &
  done
  (timeout $left "$cs" --tool memcheck --error-exitcode 99 "$nb/nh_dense_gpu_tests" "[norms],decode attention*" >"$out/logs/san_memcheck_dense.log" 2>&1; echo "rc $?" >>"$out/logs/san_memcheck_dense.log") &
  wait
fi

if [ -z "${SKIP_PROFILE:-}" ] && [ $(( ${LIMIT:-500} - ($(date +%s) - t0) )) -gt 110 ]; then
  stamp "profile_step (this tree)"
  timeout $(( ${LIMIT:-500} - ($(date +%s) - t0) - 15 )) bench/profile_step.sh b "$out/logs" >"$out/profile_new.md" 2>&1
fi

if [ -z "${SKIP_BASE:-}" ] && [ -n "${BASE_PROFILE:-}" ] && [ $(( ${LIMIT:-500} - ($(date +%s) - t0) )) -gt 110 ]; then
  stamp "profile_step (baseline tree)"
  mkdir -p "$out/logs/base_profile"
  timeout $(( ${LIMIT:-500} - ($(date +%s) - t0) - 15 )) bench/profile_step.sh "$base/b" "$out/logs/base_profile" >"$out/profile_base.md" 2>&1
fi

stamp "summary"
python3 - "$out" <<'PY' >"$out/summary.txt"
import csv, glob, os, re, statistics, sys
out = sys.argv[1]
def ncu(path):
    res = {}
    if not os.path.exists(path):
        return res
    lines = [l for l in open(path) if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        n = r["Kernel Name"]
        for p in ("nemotron_h::(anonymous namespace)::", "nemotron_h::", "(anonymous namespace)::", "<unnamed>::"):
            n = n.replace(p, "")
        n = n.replace("void ", "").split("(")[0]
        key = (n, r["Grid Size"], r["Block Size"])
        res.setdefault(key, []).append(float(r["Metric Value"].replace(",", "")) / 1e3)
    return res
for tag in ("base", "new"):
    m = ncu(f"{out}/logs/ncu_micro_{tag}.csv")
    print(f"== ncu per-kernel (median us), {tag}")
    for (n, g, b), v in m.items():
        print(f"  {statistics.median(v):9.2f}  x{len(v):<3d} {n[:60]:60s} grid {g} block {b}")
for tag in ("base", "new"):
    p = f"{out}/bench_{tag}.txt"
    if os.path.exists(p):
        print(f"== graph-replay bench, {tag}")
        print(open(p).read())
for p in sorted(glob.glob(f"{out}/logs/test_*.log")) + sorted(glob.glob(f"{out}/logs/san_*.log")):
    txt = open(p, errors="replace").read()
    tail = [l for l in txt.splitlines() if re.search(r"All tests passed|test cases|FAILED|ERROR SUMMARY|RACECHECK SUMMARY|^rc ", l)]
    print(f"== {os.path.basename(p)}: " + " | ".join(tail[-4:]))
PY
cat "$out/summary.txt"
cat "$out/profile_new.md" 2>/dev/null | head -60
(cd "$out" && tar czf logs.tgz logs && rm -rf logs)
stamp "done"
