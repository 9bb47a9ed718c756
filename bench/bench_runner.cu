// Microbenchmarks of the capture engine on the toy model (tests/gpu/toy_model.hpp):
//   BM_pick                 pick(n) over random n (target < 20 ns)
//   BM_capture_all          capture + instantiate of every default prefill bucket of the
//                           56-layer, 31-split toy model (target < 1 s)
//   BM_replay_host          host time to issue one piecewise forward: runner.run() vs the
//                           same segment executables and callbacks launched by hand (target
//                           ratio <= 1.10)
//   BM_switch_host          host time of a piecewise forward that switches bucket, with the
//                           buckets sharing executables (re-pointed by cudaGraphExecUpdate)
//                           and without
//   BM_forward              GPU time of a launch-bound forward (~500 small kernels, 31 split
//                           points) eager / piecewise / full (targets: piecewise >= 3x eager)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "toy_model.hpp"

using namespace piecewise;

namespace {

runner_options quiet(mode m) {
  runner_options o;
  o.requested = m;
  o.log = [](log_level, const std::string&) {};
  return o;
}

void BM_pick(benchmark::State& state) {
  const auto b = capture_buckets::default_prefill();
  std::mt19937 rng(1);
  std::vector<int> ns(4096);
  for (auto& n : ns) n = static_cast<int>(rng() % 8192) + 1;
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(b.pick(ns[i++ & 4095]).size);
  }
}
BENCHMARK(BM_pick);

void BM_capture_all(benchmark::State& state) {
  toy::options o;
  o.max_tokens = 8192;
  toy::model m(o);
  const auto buckets = capture_buckets::default_prefill(8192);
  int kernels = 0, segments = 0;
  for (auto _ : state) {
    runner_options ro = quiet(mode::piecewise);
    ro.warmup_runs = static_cast<int>(state.range(0));
    graph_runner r(m.table(), buckets, m.forward(), ro);
    const auto t0 = std::chrono::steady_clock::now();
    r.capture();
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    kernels = 0;
    for (const auto& st : r.all_bucket_stats()) kernels += st.nodes.kernel;
    segments = r.all_bucket_stats().front().segments;
  }
  state.counters["buckets"] = static_cast<double>(buckets.count());
  state.counters["segments"] = segments;
  state.counters["kernel_nodes"] = kernels;
}
BENCHMARK(BM_capture_all)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);

// Host time to issue one forward (the GPU runs behind; we sync outside the timed region).
void BM_replay_host(benchmark::State& state) {
  const bool raw = state.range(0) == 1;
  toy::options o;
  o.max_tokens = 256;
  toy::model m(o);
  const auto buckets = capture_buckets::default_prefill(256);
  graph_runner r(m.table(), buckets, m.forward(), quiet(mode::piecewise));
  r.capture();
  stream s;
  const int n = 100, bucket = buckets.pick(n).size;
  const auto execs = r.segment_execs(bucket);
  const auto splits = m.table().split_layers();
  m.write_input(n, 1);
  r.run(n, s);  // the device count now holds n
  s.synchronize();
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    if (raw) {
      for (std::size_t k = 0; k < execs.size(); ++k) {
        if (execs[k] != nullptr) cudaGraphLaunch(execs[k], s);
        if (k < splits.size())
          m.table().at(splits[k])->fn(split_args{splits[k], n, bucket, s, nullptr, r.device_real_tokens(), false});
      }
    } else {
      r.run(n, s);
    }
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    s.synchronize();
  }
  state.counters["segments"] = static_cast<double>(execs.size());
}
BENCHMARK(BM_replay_host)->Arg(0)->Arg(1)->ArgNames({"raw"})->UseManualTime()->Unit(benchmark::kMicrosecond);

// Host time to issue one piecewise forward when the buckets share executables
// (executables_per_segment 1) and every forward switches bucket (alternating 100 and 200
// tokens: each re-points every segment with cudaGraphExecUpdate), against the same
// alternation with one executable per segment (shared 0). MLP layers of 14 kernels, as in
// BM_forward.
void BM_switch_host(benchmark::State& state) {
  const int share = static_cast<int>(state.range(0));
  toy::options o;
  o.max_tokens = 256;
  o.mlp_kernels = 14;
  toy::model m(o);
  runner_options ro = quiet(mode::piecewise);
  ro.executables_per_segment = share;
  graph_runner r(m.table(), capture_buckets::default_prefill(256), m.forward(), ro);
  r.capture();
  stream s;
  m.write_input(200, 1);
  int i = 0;
  for (auto _ : state) {
    const int n = (i++ % 2) ? 200 : 100;
    const auto t0 = std::chrono::steady_clock::now();
    r.run(n, s);
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    s.synchronize();
  }
  int execs = 0;
  for (const auto& st : r.all_bucket_stats()) execs += st.executables;
  state.counters["executables"] = execs;
  state.counters["switches_per_forward"] =
      static_cast<double>(r.stats().executable_switches) / static_cast<double>(std::max<std::uint64_t>(1, r.stats().graph_replays));
}
BENCHMARK(BM_switch_host)->Arg(0)->Arg(1)->ArgNames({"shared"})->UseManualTime()->Unit(benchmark::kMicrosecond);

// GPU time per forward of a launch-bound model: 25 MLP layers x 14 kernels + 31 split layers.
void BM_forward(benchmark::State& state) {
  const mode md = static_cast<mode>(state.range(0));
  toy::options o;
  o.max_tokens = 256;
  o.mlp_kernels = 14;
  o.mamba_capture_safe = true;
  toy::model m(o);
  const auto buckets = capture_buckets::default_prefill(256);
  graph_runner r(m.table(), buckets, m.forward(), quiet(md));
  r.capture();
  stream s;
  event e0(cudaEventDefault), e1(cudaEventDefault);
  const int n = static_cast<int>(state.range(1)), reps = 20;
  m.write_input(n, 2);
  r.run(n, s);
  s.synchronize();
  for (auto _ : state) {
    e0.record(s);
    for (int i = 0; i < reps; ++i) r.run(n, s);
    e1.record(s);
    e1.synchronize();
    state.SetIterationTime(e1.elapsed_ms_since(e0) / 1e3 / reps);
  }
  state.SetLabel(to_string(md));
  int kernels = 0;
  if (md != mode::eager) kernels = r.stats_for(buckets.pick(n).size).nodes.kernel;
  state.counters["kernel_nodes"] = kernels;
}
// The toy's split kernels scan the real rows sequentially: keep n small so the forward stays
// launch-bound (8 tokens), and show a larger n (64) where the scans start to dominate.
BENCHMARK(BM_forward)
    ->ArgsProduct({{static_cast<int>(mode::eager), static_cast<int>(mode::piecewise), static_cast<int>(mode::full)}, {8, 64}})
    ->ArgNames({"mode", "n"})->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
