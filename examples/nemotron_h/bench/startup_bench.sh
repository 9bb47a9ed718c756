#!/usr/bin/env bash
# Start-up and checkpoint-load measurement at Nano-9B-v2 shapes on the GPU machine (issue 11):
# builds the targets, runs the weight-source tests (GPU draw == host draw, runner outputs,
# streamed checkpoint == host loader), then nh_model_bench --startup-only with a 9B-sized
# checkpoint written to $CKPT (default /tmp/nh_ckpt_9b, ~17.8 GB, removed afterwards) and
# loaded back from the page cache for each staging setting. Logs go to $OUT (or ./startup_out).
# Usage (repository root): examples/nemotron_h/bench/startup_bench.sh [build-dir]
set -uo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=${1:-$root/build-gpu}
out=${OUT:-$root/startup_out}
ckpt=${CKPT:-/tmp/nh_ckpt_9b}
mkdir -p "$out"
export PATH=/usr/local/cuda/bin:$PATH
[[ -d $root/.gpu-deps ]] && export LD_LIBRARY_PATH=$root/.gpu-deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PIECEWISE_REQUIRE_GPU=1
cd "$root"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
date -u | tee -a "$out/device.txt"
git log -1 --format='%h %s' 2>/dev/null | tee -a "$out/device.txt"
{ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_PREFIX_PATH="$root/.gpu-deps" &&
  cmake --build "$build" -j"$(nproc)" --target nh_model_tests nh_runner_gpu_tests nh_model_bench nemotron_h_run; } \
  > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
echo "built"
nh=$build/examples/nemotron_h
status=0
"$nh/nh_model_tests" > "$out/tests.log" 2>&1 || status=1
"$nh/nh_runner_gpu_tests" "[weight_source]" >> "$out/tests.log" 2>&1 || status=1
grep -E "passed|failed|FAILED" "$out/tests.log"
"$nh/nh_model_bench" --startup-only 1 --checkpoint "$ckpt" --load-sweep "${SWEEP:-4:64,8:64,16:32}" \
  --json "$out/startup.json" 2>&1 | tee "$out/bench.log" || status=1
rm -rf "$ckpt"
# nemotron_h_run at 9B shapes: the start-up line (one short eager run).
timeout 40 "$nh/nemotron_h_run" --model nano-9b-v2 --mode eager --batch 1 --prompt-len 16 --gen 2 2>&1 |
  tee "$out/run.log" | grep -E "weights|model ready|error" || status=1
exit $status
