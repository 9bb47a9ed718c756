#!/usr/bin/env bash
# Runs every benchmark on a GPU machine and writes JSON + logs into OUT_DIR (default
# bench-results): the capture engine (piecewise_bench), the end-to-end NemotronH model
# (nh_model_bench, Nano-9B-v2 shapes), prefill attention against torch SDPA in the same run
# (compare_attention.sh, when python3 has torch) and, when python3 has transformers, the same
# model in transformers for comparison.
#   bench/run_benchmarks.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-results}
mkdir -p "$out"
build=${BUILD_DIR:-build-bench}
args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DPIECEWISE_BUILD_BENCH=ON)
if [ -d .gpu-deps ]; then
  args+=(-DCMAKE_PREFIX_PATH="$PWD/.gpu-deps")
  export LD_LIBRARY_PATH="$PWD/.gpu-deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
cmake -S . -B "$build" "${args[@]}" >/dev/null && cmake --build "$build" -j"$(nproc)" \
  --target piecewise_bench nh_model_bench nh_dense_bench >/dev/null || exit 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
date -u +%Y-%m-%dT%H:%MZ >> "$out/device.txt"
"$build/bench/piecewise_bench" --benchmark_out="$out/piecewise_bench.json" --benchmark_out_format=json \
  2>&1 | tee "$out/piecewise_bench.log"
"$build/examples/nemotron_h/nh_model_bench" --model "${MODEL:-nano-9b-v2}" --json "$out/nh_model_bench.json" \
  2>&1 | tee "$out/nh_model_bench.log"
if python3 -c "import torch" 2>/dev/null; then
  examples/nemotron_h/bench/compare_attention.sh "$build" "$out" 2>&1 | tee "$out/compare_attention.log"
fi
if python3 -c "import transformers" 2>/dev/null; then
  timeout "${TRANSFORMERS_TIMEOUT:-240}" python3 examples/nemotron_h/bench/transformers_prefill.py \
    --model "${MODEL:-nano-9b-v2}" --tokens "${TF_TOKENS:-16,64,256,1024,4096,8192}" --json "$out/transformers.json" \
    2>&1 | tee "$out/transformers.log"
fi
