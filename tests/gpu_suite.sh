#!/usr/bin/env bash
# The GPU test command: builds everything and runs the whole test suite (host and GPU tests)
# on a machine with a CUDA GPU. Fails if any test fails or any GPU test was skipped.
#
#   tests/gpu_suite.sh [ctest args...]          e.g. tests/gpu_suite.sh -L gpu
#   SANITIZER="memcheck racecheck initcheck synccheck" tests/gpu_suite.sh [test-name-regex]
#       runs every GPU test case (or those whose ctest name matches the regex) in its own
#       process under compute-sanitizer with each tool, SANITIZER_JOBS (default: nproc) at a
#       time, SANITIZER_TIMEOUT seconds each (default 1800); memcheck also checks for leaks.
#       SANITIZER_EXCLUDE (a regex) leaves out the GPU test cases whose name matches it.
#       Fails on any report or timeout; logs and summary.tsv go to $SANITIZE_DIR (default $BUILD_DIR/sanitize).
#       The soak test runs PIECEWISE_SOAK_STEPS steps (default here: 100, racecheck 1, i.e. its
#       first workload, 14 steps; 10,000 outside the sanitizer).
#
# Environment: BUILD_DIR (default build-gpu), SKIP_BUILD=1 (use that build as it is),
# CTEST_JOBS (parallel ctest processes, default nproc),
# CUDA_ARCH (default 90), LOG (a copy of the ctest output), and a .gpu-deps prefix next to
# this file's repo is used when present (see README: Building on a GPU machine without
# Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-gpu}
args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}")
if [ -d .gpu-deps ]; then
  args+=(-DCMAKE_PREFIX_PATH="$PWD/.gpu-deps")
  export LD_LIBRARY_PATH="$PWD/.gpu-deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
if [ -z "${SKIP_BUILD:-}" ]; then   # SKIP_BUILD=1: use the build folder as it is
  cmake -S . -B "$build" "${args[@]}" >/dev/null
  cmake --build "$build" -j"$(nproc)"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
export PIECEWISE_REQUIRE_GPU=1   # a GPU test that finds no GPU fails instead of skipping
if [ -n "${SANITIZER:-}" ]; then
  # Every GPU test case (one ctest entry each) under each tool, SANITIZER_JOBS at a time.
  cs=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
  "$cs" --version | tail -1
  dir=${SANITIZE_DIR:-$build/sanitize}; rm -rf "$dir"; mkdir -p "$dir"
  cmake -DBUILD_DIR="$build" -DLABEL=gpu -DFILTER="${1:-.}" -DEXCLUDE="${SANITIZER_EXCLUDE:-}" \
        -DOUT="$dir/tests.tsv" \
        -P tests/support/list_tests.cmake
  jobs=${SANITIZER_JOBS:-$(nproc)}
  limit=${SANITIZER_TIMEOUT:-1800}              # seconds per test case and tool
  run_one() {  # tool index workdir exe spec name
    local tool=$1 idx=$2 wd=$3 exe=$4 spec=$5 name=$6 log="$dir/$1.$2.log" extra=() t0 rc
    # The soak's length: racecheck is ~5x slower than the other tools (one workload ~330 s on
    # an H100), so it runs one workload unless PIECEWISE_SOAK_STEPS says otherwise.
    local soak_steps=${PIECEWISE_SOAK_STEPS:-100}
    [ "$tool" = racecheck ] && soak_steps=${PIECEWISE_SOAK_STEPS:-1}
    # cuBLASLt's own Hopper GEMM kernels need two exceptions. initcheck reports
    # cublasLt::splitKreduce_kernel reading split-K partials that the preceding nvjet_* kernel
    # wrote with TMA stores, which initcheck does not track: that kernel is excluded. racecheck
    # reports shared-memory hazards inside nvjet_* kernels, which order shared memory through
    # mbarriers and TMA that racecheck does not model; excluding them makes racecheck fail
    # with an internal error, so they are checked and hazards located in nvjet_* are ignored
    # (any hazard elsewhere fails). Our own kernels are checked by all four tools.
    case $tool in
      memcheck) extra=(--leak-check full) ;;
      initcheck) extra=(--kernel-name-exclude kns=splitKreduce) ;;
    esac
    t0=$(date +%s); rc=0
    echo "start $(date +%T) $tool $idx $name" >>"$dir/started.log"
    # API errors are not reported: the fault-injection tests provoke them on purpose (an
    # invalidated capture, an invalid launch). Memory, leak, race, initialisation and
    # synchronisation errors all fail the run.
    (cd "$wd" && PIECEWISE_SOAK_STEPS=$soak_steps timeout "$limit" "$cs" --tool "$tool" "${extra[@]}" --report-api-errors no \
        --error-exitcode 99 --print-limit 100000 "$exe" "$spec") >"$log" 2>&1 || rc=$?
    local verdict=ok
    if [ $rc -eq 124 ]; then verdict=TIMEOUT
    elif ! grep -q "All tests passed" "$log" || grep -q "Internal Sanitizer Error" "$log"; then
      verdict=FAILED
    elif [ "$tool" = racecheck ]; then
      # Clean, or every hazard located ("... access at <kernel>+0x...") inside nvjet_*.
      local hazards others
      hazards=$(sed -nE 's/.*RACECHECK SUMMARY: ([0-9]+) hazard.*/\1/p' "$log")
      others=$(grep -oE "(Read|Write) access at [^ ]+" "$log" | grep -vc " at nvjet_" || true)
      if [ -z "$hazards" ] || [ "$others" -ne 0 ] || { [ "$rc" -ne 0 ] && [ "$rc" -ne 99 ]; } ||
         { [ "$hazards" -gt 0 ] && ! grep -qE "(Read|Write) access at nvjet_" "$log"; }; then
        verdict=FAILED
      elif [ "$hazards" -gt 0 ]; then
        echo "$hazards hazards, all inside cuBLASLt nvjet_* kernels (ignored)" >>"$log"
      fi
    elif [ $rc -ne 0 ] || ! grep -q "ERROR SUMMARY: 0 errors" "$log"; then
      verdict=FAILED
    fi
    printf '%s\t%s\t%s\t%ss\t%s\n' "$verdict" "$tool" "$idx" "$(( $(date +%s) - t0 ))" "$name" \
      >>"$dir/results.tsv"
  }
  # Longest first (the soak and the all-bucket captures), so the pool drains evenly.
  mapfile -t tests < <(awk -F'\t' '{ print (($4 ~ /soak|every bucket|bit for bit|concurrently|fork|transformers|poison|bad workloads/) ? 0 : 1) "\t" NR "\t" $0 }' \
                       "$dir/tests.tsv" | sort -s -n -k1,1 | cut -f2-)
  echo "gpu_suite: ${#tests[@]} GPU test cases x tools ($SANITIZER), $jobs at a time, ${limit}s limit each"
  for line in "${tests[@]}"; do
    IFS=$'\t' read -r idx wd exe spec name <<<"$line"
    for tool in $SANITIZER; do
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
      run_one "$tool" "$idx" "$wd" "$exe" "$spec" "$name" &
    done
  done
  wait
  sort -t$'\t' -k2,2 -k3,3n "$dir/results.tsv" > "$dir/summary.tsv"
  for tool in $SANITIZER; do
    echo "$tool: $(awk -F'\t' -v t="$tool" '$2 == t && $1 == "ok"' "$dir/summary.tsv" | wc -l) of ${#tests[@]} clean"
  done
  expected=$(( ${#tests[@]} * $(wc -w <<<"$SANITIZER") ))
  if [ "$(wc -l <"$dir/summary.tsv")" -ne "$expected" ]; then
    echo "gpu_suite: FAILED: $(wc -l <"$dir/summary.tsv") results for $expected runs (a run died unrecorded)" >&2
    exit 1
  fi
  if grep -qv "^ok" "$dir/summary.tsv"; then
    grep -v "^ok" "$dir/summary.tsv"
    for f in $(grep -v "^ok" "$dir/summary.tsv" | awk -F'\t' '{ print $2 "." $3 ".log" }'); do
      echo "--- $f"; grep -vE "^\s*$" "$dir/$f" | tail -30
    done
    echo "gpu_suite: compute-sanitizer FAILED (logs in $dir)" >&2
    exit 1
  fi
  echo "gpu_suite: compute-sanitizer clean: ${#tests[@]} GPU test cases x ($SANITIZER)"
  exit 0
fi
log=${LOG:-$build/gpu_suite.log}
set +e
# In parallel: every check of a test is of its own process (no device-wide memory checks), so
# the GPU tests share the card. CTEST_JOBS overrides the count; a -j in the arguments wins.
ctest --test-dir "$build" --output-on-failure -j"${CTEST_JOBS:-$(nproc)}" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if grep -qE "\(Skipped\)|Not Run" "$log"; then
  echo "gpu_suite: FAILED: some tests were skipped or not run (see above)" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || { echo "gpu_suite: FAILED: ctest exit code $rc" >&2; exit "$rc"; }
echo "gpu_suite: all tests passed, none skipped"
