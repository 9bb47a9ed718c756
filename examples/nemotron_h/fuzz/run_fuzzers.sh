#!/usr/bin/env bash
# Builds and runs the NemotronH libFuzzer targets (safetensors header, config.json, .npy,
# tokenizer.json and the tokenizer's encoder).
#
# Usage: examples/nemotron_h/fuzz/run_fuzzers.sh [seconds_per_target]   (default 60)
#        examples/nemotron_h/fuzz/run_fuzzers.sh --regen-corpus         (rewrites corpus/)
# Env:   FUZZ_BUILD  build folder (default build-fuzz, relative to the current directory)
#        CXX         clang++ with libFuzzer (default clang++)
#
# The targets are built with clang++ directly (not through CMake) from the model sources, with
# -fsanitize=fuzzer,address,undefined and -fno-sanitize-recover=all, against Debian's fmt and
# nlohmann-json. Each runs on a scratch copy of the committed seed corpus (corpus/<target>/;
# the committed files are never modified) for the given time with -rss_limit_mb=2048 and
# -timeout=10. Exits non-zero if any target reports a crash, an abort (an exception other than
# piecewise::config_error escaping, a broken invariant), a leak, a timeout, an out-of-memory or
# any sanitizer report; the offending input is saved under $FUZZ_BUILD/artifacts/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nh="$(cd "$here/.." && pwd)"
root="$(cd "$nh/../.." && pwd)"
build="${FUZZ_BUILD:-build-fuzz}"
cxx="${CXX:-clang++}"
secs=60
regen=0
if [[ $# -gt 0 ]]; then
  if [[ "$1" == "--regen-corpus" ]]; then regen=1; else secs="$1"; fi
fi
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [[ "$secs" -lt 1 ]]; then
  echo "run_fuzzers.sh: seconds_per_target must be a positive integer, got '$secs'" >&2
  exit 2
fi
command -v "$cxx" >/dev/null || { echo "run_fuzzers.sh: $cxx not found (apt-get install clang)" >&2; exit 2; }

mkdir -p "$build/obj"
build="$(cd "$build" && pwd)"
# The model's readers are host-only (piecewise/error.hpp has no CUDA headers): no CUDA
# include path, so a CUDA include creeping into them fails this build.

common=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all -pthread
        -I"$nh" -I"$root/include")
san_lib=(-fsanitize=fuzzer-no-link,address,undefined)
san_exe=(-fsanitize=fuzzer,address,undefined)

start=$(date +%s)
echo "== building fuzz targets into $build (${cxx})"
objs=()
text_objs=()
pids=()
for src in config layer_kinds tensor safetensors npy weights quant_config; do
  obj="$build/obj/$src.o"
  objs+=("$obj")
  newer_header=0
  for h in "$nh"/model/*.hpp; do [[ "$h" -nt "$obj" ]] && newer_header=1; done
  if [[ ! -f "$obj" || "$nh/model/$src.cpp" -nt "$obj" || $newer_header -eq 1 ]]; then
    "$cxx" "${common[@]}" "${san_lib[@]}" -c "$nh/model/$src.cpp" -o "$obj" &
    pids+=($!)
  fi
done
for src in regex tokenizer_json tokenizer stream_decoder; do
  obj="$build/obj/text_$src.o"
  text_objs+=("$obj")
  newer_header=0
  for h in "$nh"/text/*.hpp "$nh"/model/json_depth.hpp; do [[ "$h" -nt "$obj" ]] && newer_header=1; done
  if [[ ! -f "$obj" || "$nh/text/$src.cpp" -nt "$obj" || $newer_header -eq 1 ]]; then
    "$cxx" "${common[@]}" "${san_lib[@]}" -c "$nh/text/$src.cpp" -o "$obj" &
    pids+=($!)
  fi
done
for p in "${pids[@]}"; do wait "$p"; done

targets=(safetensors config npy tokenizer_json tokenizer_encode)
pids=()
for t in "${targets[@]}"; do
  case "$t" in
    tokenizer_*) deps=("${text_objs[@]}" -lpcre2-8 -DNH_TINY_TOKENIZER="\"$nh/tests/data/tokenizer/tiny.json\"") ;;
    *) deps=("${objs[@]}") ;;
  esac
  "$cxx" "${common[@]}" "${san_exe[@]}" "$here/fuzz_$t.cpp" "${deps[@]}" -lfmt -o "$build/fuzz_$t" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "   built in $(( $(date +%s) - start )) s"

if [[ $regen -eq 1 ]]; then
  # The generator needs no sanitizers; build it plainly and rewrite the committed corpus.
  "$cxx" -std=c++20 -O1 -pthread -I"$nh" -I"$root/include" "$here/gen_corpus.cpp" \
    "$nh/model/config.cpp" "$nh/model/layer_kinds.cpp" "$nh/model/safetensors.cpp" "$nh/model/npy.cpp" -lfmt -o "$build/gen_corpus"
  rm -rf "$here/corpus"
  "$build/gen_corpus" "$here/corpus" "$nh/tests/data/tiny"
  python3 "$here/gen_tokenizer_corpus.py"  # the tokenizer seeds (tokenizer_json, tokenizer_encode)
  du -sh "$here/corpus"/*
  exit 0
fi

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
failed=()
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  mkdir -p "$work" "$build/artifacts"
  echo "== fuzz_$t: ${secs} s (seeds: $(ls "$here/corpus/$t" | wc -l) files)"
  log="$build/fuzz_$t.log"
  set +e
  "$build/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -dict="$here/json.dict" -artifact_prefix="$build/artifacts/$t-" "$work" "$here/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)|cov:" "$log" | tail -3 | sed 's/^/   /'
  if [[ $rc -ne 0 ]] || grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|NH_FUZZ_CHECK failed" "$log"; then
    echo "!! fuzz_$t FAILED (exit $rc); log: $log; artifacts: $build/artifacts/" >&2
    grep -E -A30 "ERROR: |runtime error:|NH_FUZZ_CHECK failed|terminate called" "$log" | head -60 >&2 || true
    failed+=("$t")
  fi
done
echo "== fuzzing took $(( $(date +%s) - start )) s in all"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "run_fuzzers.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "run_fuzzers.sh: all targets clean"
