#!/usr/bin/env bash
# The GPU test command: builds everything and runs the whole test suite (host and GPU tests)
# on a machine with a CUDA GPU. Fails if any test fails or any GPU test was skipped.
#
#   tests/gpu_suite.sh [ctest args...]          e.g. tests/gpu_suite.sh -L gpu
#   SANITIZER="memcheck racecheck initcheck synccheck" tests/gpu_suite.sh [exe-name-regex]
#       runs every GPU test executable (or those matching the regex) under compute-sanitizer
#       with each tool, and fails on any report.
#
# Environment: BUILD_DIR (default build-gpu), CUDA_ARCH (default 90), LOG (a copy of the
# ctest output), and a .gpu-deps prefix next to this file's repo is used when present (see
# README: Building on a GPU machine without Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-gpu}
args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}")
if [ -d .gpu-deps ]; then
  args+=(-DCMAKE_PREFIX_PATH="$PWD/.gpu-deps")
  export LD_LIBRARY_PATH="$PWD/.gpu-deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B "$build" "${args[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
export PIECEWISE_REQUIRE_GPU=1   # a GPU test that finds no GPU fails instead of skipping
if [ -n "${SANITIZER:-}" ]; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  filter=${1:-.}
  status=0
  for exe in $(find "$build" -name '*gpu_tests' -type f -perm -u+x | sort | grep -E "$filter"); do
    for tool in $SANITIZER; do
      echo "=== compute-sanitizer --tool $tool $(basename "$exe")"
      # API errors are not reported: the fault-injection tests provoke them on purpose
      # (an invalidated capture, an invalid launch). Memory, race, initialisation and
      # synchronisation errors all fail the run.
      if ! "$cs" --tool "$tool" --report-api-errors no --error-exitcode 99 --print-limit 20 "$exe" >"$build/sanitize_${tool}_$(basename "$exe").log" 2>&1; then
        tail -40 "$build/sanitize_${tool}_$(basename "$exe").log"
        echo "gpu_suite: compute-sanitizer $tool FAILED on $(basename "$exe")" >&2
        status=1
      else
        grep -E "ERROR SUMMARY|All tests passed|test cases" "$build/sanitize_${tool}_$(basename "$exe").log" | tail -2
      fi
    done
  done
  exit $status
fi
log=${LOG:-$build/gpu_suite.log}
set +e
ctest --test-dir "$build" --output-on-failure "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if grep -qE "\(Skipped\)|Not Run" "$log"; then
  echo "gpu_suite: FAILED: some tests were skipped or not run (see above)" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || { echo "gpu_suite: FAILED: ctest exit code $rc" >&2; exit "$rc"; }
echo "gpu_suite: all tests passed, none skipped"
