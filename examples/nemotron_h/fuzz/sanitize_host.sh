#!/usr/bin/env bash
# Host sanitizer build: AddressSanitizer (+ LeakSanitizer) and UndefinedBehaviorSanitizer over
# the host code and the host (CPU-only) test executables.
#
# Usage: examples/nemotron_h/fuzz/sanitize_host.sh
# Env:   SAN_BUILD       build folder (default build-asan, relative to the current directory)
#        SAN_JOBS        build parallelism (default 2)
#        SAN_CMAKE_ARGS  extra configure arguments (e.g. -DCMAKE_PREFIX_PATH=$PWD/.gpu-deps)
#
# Configures the project's CMake with the sanitizer flags in CMAKE_CXX_FLAGS only (CUDA sources
# are compiled by nvcc and get none of them; C++ links get them through CMake's link rule),
# builds only the host test executables and runs each one directly (not through ctest) with
# leak detection on and every UBSan report fatal. Exits non-zero on a build failure, a failing test or any sanitizer report.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
build="${SAN_BUILD:-build-asan}"
jobs="${SAN_JOBS:-2}"
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH

san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
tests=(piecewise_host_tests nh_model_tests nh_dense_ref_tests nh_mamba_ref_tests)

start=$(date +%s)
# Only CMAKE_CXX_FLAGS: CMake's C++ link rule passes them to the link too (so C++ executables
# link the sanitizer runtimes), while CMAKE_EXE_LINKER_FLAGS would also reach nvcc (CUDA compiler
# checks, CUDA-linked executables), which rejects -fsanitize.
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$san" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DPIECEWISE_BUILD_BENCH=OFF -DPIECEWISE_BUILD_TESTS=ON ${SAN_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$jobs" --target "${tests[@]}"
echo "sanitize_host: built in $(( $(date +%s) - start )) s"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
failed=()
for t in "${tests[@]}"; do
  exe="$(find "$build" -type f -name "$t" -perm -u+x | head -1)"
  if [[ -z "$exe" ]]; then
    echo "!! $t: executable not found under $build" >&2
    failed+=("$t")
    continue
  fi
  log="$build/$t.sanitize.log"
  t0=$(date +%s)
  set +e
  "$exe" >"$log" 2>&1
  rc=$?
  set -e
  summary="$(grep -E "^(All tests passed|test cases:)" "$log" | tail -1)"
  echo "== $t: exit $rc in $(( $(date +%s) - t0 )) s: ${summary:-no Catch2 summary}"
  if [[ $rc -ne 0 ]] || grep -qE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$log"; then
    echo "!! $t FAILED; log: $log" >&2
    grep -E -B2 -A25 "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|FAILED:" "$log" | head -80 >&2 || tail -30 "$log" >&2
    failed+=("$t")
  fi
done
echo "sanitize_host: done in $(( $(date +%s) - start )) s"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "sanitize_host: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "sanitize_host: all host tests clean under ASan + UBSan"
