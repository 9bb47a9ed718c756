// piecewise/runner_options.hpp — how a graph_runner runs: the mode, warm-ups, validation,
// the diagnostics sink, the capture-progress callback and how many
// executables the buckets share. Plain host data; capture-safe.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "piecewise/graph_inspect.hpp"

namespace piecewise {

/// How a runner runs its forward (see piecewise/runner.hpp).
enum class mode { eager, piecewise, full, automatic };

/// "eager", "piecewise", "full" or "auto".
inline const char* to_string(mode m) noexcept {
  switch (m) {
    case mode::eager: return "eager";
    case mode::piecewise: return "piecewise";
    case mode::full: return "full";
    case mode::automatic: return "auto";
  }
  return "?";
}

enum class log_level { info, warning };
/// Receives the runner's diagnostics. Default: warnings go to stderr, info is dropped.
using log_fn = std::function<void(log_level, const std::string&)>;

/// Reported after each bucket is captured (or re-captured by update()).
struct capture_progress {
  int bucket = 0;          ///< the bucket size just captured
  int index = 0;           ///< 0-based position in capture order (largest first)
  int count = 0;           ///< buckets to capture
  int segments = 0;        ///< graphs of this bucket
  graph_node_counts nodes; ///< their nodes, summed
  std::size_t free_bytes = 0, total_bytes = 0;  ///< device memory after this bucket
  double elapsed_ms = 0;   ///< since capture() / update() started
};
using progress_fn = std::function<void(const capture_progress&)>;

struct runner_options {
  mode requested = mode::automatic;
  int warmup_runs = 1;     ///< eager runs per bucket before its capture (none before update())
  bool pad_eager = true;   ///< eager runs pad to the bucket when one fits (same shapes as graphs)
  bool validate = false;   ///< at every replay, check every declared address against capture time
  /// Executables per segment position and graph topology, shared by the buckets.
  ///   0  every segment of every bucket has its own executable: replay only launches, and the
  ///      device memory of the executables grows with buckets x segments (the default).
  ///   N  a segment position keeps at most N executables for each topology its graphs have
  ///      (buckets whose graphs a cudaGraphExecUpdate trial accepts share them). A replay whose
  ///      segment is not resident re-points the least recently used one with
  ///      cudaGraphExecUpdate first: host time at a bucket switch, counted in
  ///      run_stats::executable_switches; replaying the resident buckets costs no host time.
  ///      An executable re-pointed to a graph with other kernels (a GEMM algorithm chosen for
  ///      another size) can run slower on the GPU than one instantiated from that graph:
  ///      measured up to 17% on a Nano-9B-v2 prefill (docs/benchmarks.md).
  /// Negative values are refused (config_error).
  int executables_per_segment = 0;
  std::string name = "runner";
  void* user = nullptr;    ///< passed to the forward and to every split callback
  log_fn log;              ///< diagnostics sink (default: warnings to stderr)
};

}  // namespace piecewise
