// piecewise/runner_stats.hpp — what a graph_runner reports: per-bucket capture statistics,
// run counters, and the results of update() and validate_against_eager(). Plain host data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "piecewise/graph_inspect.hpp"

namespace piecewise {

/// One bucket's graphs, gathered the same way by capture() and update().
struct bucket_stats {
  int size = 0;
  int segments = 0;           ///< graphs (piecewise: splits + 1; full: 1)
  int empty_segments = 0;     ///< segments that captured nothing (not launched)
  graph_node_counts nodes;
  double warmup_ms = 0;       ///< the eager warm-up runs before the capture (0 in update())
  double capture_ms = 0;      ///< stream capture of every segment (warm-ups excluded)
  double instantiate_ms = 0;  ///< instantiate (or cudaGraphExecUpdate) + upload
  long long device_bytes = 0; ///< device memory taken while instantiating (cudaMemGetInfo delta)
  int executables = 0;        ///< executables instantiated (or updated in place) for this bucket's
                              ///< graphs; with executables_per_segment > 0 other buckets share them
  int updated_in_place = 0;   ///< segments applied with cudaGraphExecUpdate (update() only)
  std::uint64_t replays = 0;  ///< kept across update()
};

struct run_stats {
  std::uint64_t forwards = 0;
  std::uint64_t graph_replays = 0;
  std::uint64_t eager_runs = 0;       ///< forwards run eagerly (mode eager, or fallbacks)
  std::uint64_t eager_fallbacks = 0;  ///< graph-mode forwards above the largest bucket
  /// Shared executables re-pointed to another bucket's segment graph by cudaGraphExecUpdate
  /// before a launch (executables_per_segment > 0 only).
  std::uint64_t executable_switches = 0;
  double executable_switch_ms = 0;  ///< host time those updates took
  std::uint64_t real_tokens = 0;
  std::uint64_t padded_tokens = 0;
};

/// What update() did.
struct update_report {
  int buckets = 0;
  int segments_updated = 0;         ///< applied with cudaGraphExecUpdate
  int segments_reinstantiated = 0;  ///< topology changed: new executable
  double ms = 0;                    ///< the whole update()
  std::vector<std::string> notes;   ///< one line per re-instantiated segment, with the reason
  /// "update: 3 buckets, 18 segment graphs updated in place, 0 re-instantiated (2.1 ms)".
  [[nodiscard]] std::string to_string() const;
};

/// What validate_against_eager() found.
struct validation_report {
  bool bitwise_equal = true;
  std::size_t bytes_compared = 0;
  std::size_t mismatched_bytes = 0;
  double max_abs_diff = 0;  ///< over typed outputs (element_type other than bytes)
  std::string first_mismatch;
  [[nodiscard]] std::string to_string() const;
};

}  // namespace piecewise
