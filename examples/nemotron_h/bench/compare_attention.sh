#!/usr/bin/env bash
# Prefill attention against torch SDPA in one call: runs nh_dense_bench's prefill-attention
# cases (every kernel variant) and sdpa_bench.py back to back on the same GPU and prints the
# ratio table (SDPA time / ours). Shapes: 1 x 1024, 1 x 4096 and 4 x 1024 tokens (packed).
#   examples/nemotron_h/bench/compare_attention.sh BUILD_DIR [OUT_DIR]
# BUILD_DIR must hold nh_dense_bench (configure with -DPIECEWISE_BUILD_BENCH=ON).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: compare_attention.sh BUILD_DIR [OUT_DIR]}
out=${2:-.}
mkdir -p "$out"
"$build/examples/nemotron_h/nh_dense_bench" --benchmark_filter='BM_attention_prefill' \
  --benchmark_out="$out/attention_prefill.json" --benchmark_out_format=json
python3 "$here/sdpa_bench.py" --ours "$out/attention_prefill.json"
