// piecewise/runner.hpp — the capture engine: graph_runner.
//
// A graph_runner runs a model's forward (piecewise/forward_context.hpp) in one of three ways:
//
//   eager      no graphs: the forward runs as written, callbacks inline.
//   piecewise  per bucket, one graph per segment (the work between two split points); at
//              replay the segment graphs are launched in order with the split callbacks
//              running eagerly between them, given the real and the padded token counts.
//   full       per bucket, the whole forward as one graph, split callbacks captured inside
//              (allowed only when every split point is capture-safe).
//   automatic  full when every split point is capture-safe, else piecewise; the choice and
//              its reason are reported (mode_reason()).
//
// Padding: run(n) picks the smallest bucket >= n. Rows [n, bucket) of declared inputs are
// zeroed before the forward and rows [n, bucket) of each split point's declared outputs
// after its callback, by kernels that read n from a device int the runner owns
// (device_real_tokens()), so every mode runs the same kernels and stays bit-identical.
//
// Above the largest bucket the buckets' overflow policy decides, in one place for run() and
// run_eager(): eager fallback (unpadded, counted in stats().eager_fallbacks, logged at the
// 1st, 2nd, 4th, ... occurrence) or bucket_overflow.
//
// capture() and update() share one per-bucket build step: warm-ups (capture() only), stream
// capture of every segment, inspection (diagnostics), instantiate or cudaGraphExecUpdate,
// upload, statistics (bucket_stats) and progress.
//
// Executables: one per segment of every bucket by default; with
// runner_options::executables_per_segment = N the buckets share at most N per segment
// position and graph topology, re-pointed with cudaGraphExecUpdate when a replay needs a
// bucket that is not resident (the device memory of 64 buckets x 32 segments of executables
// is ~270 MiB at Nano-9B-v2 shapes; see docs/benchmarks.md for the switch cost).
//
// One runner's forwards must be issued in order on one stream (like any graph executable).
// No member is capture-safe except the accessors.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "piecewise/buckets.hpp"
#include "piecewise/error.hpp"
#include "piecewise/forward_context.hpp"
#include "piecewise/graph_inspect.hpp"
#include "piecewise/handles.hpp"
#include "piecewise/runner_options.hpp"
#include "piecewise/runner_stats.hpp"
#include "piecewise/segment_table.hpp"

namespace piecewise {

class graph_runner {
 public:
  /// Binds a table, buckets and forward, and resolves the mode (see mode_reason()). Throws
  /// config_error when the forward is empty, warmup_runs is negative, or full mode is
  /// requested but a split point is not capture-safe (the message names the layers);
  /// cuda_error if the runner's stream or device int can't be made. The table must outlive
  /// the runner. Synchronizes the device once (the device int's first value): not
  /// capture-safe.
  graph_runner(const segment_table& table, capture_buckets buckets, forward_fn forward,
               runner_options opts = {});
  ~graph_runner();
  graph_runner(const graph_runner&) = delete;
  graph_runner& operator=(const graph_runner&) = delete;

  /// The mode in use (never automatic) and why it was chosen.
  [[nodiscard]] mode active_mode() const noexcept { return mode_; }
  [[nodiscard]] const std::string& mode_reason() const noexcept { return reason_; }
  [[nodiscard]] const capture_buckets& buckets() const noexcept { return buckets_; }
  [[nodiscard]] const segment_table& table() const noexcept { return table_; }
  [[nodiscard]] const std::string& name() const noexcept { return opts_.name; }
  [[nodiscard]] const runner_options& options() const noexcept { return opts_; }
  /// The device int holding the real count of the current forward (fixed address).
  [[nodiscard]] const int* device_real_tokens() const noexcept { return device_real_.as<int>(); }
  [[nodiscard]] bool captured() const noexcept { return !graphs_.empty(); }

  /// Captures every bucket, largest first: warm-up runs, thread-local capture, inspection,
  /// instantiate and upload. All or nothing: on failure (the forward throws, a CUDA error,
  /// an invalidated capture, a schedule error) the capture ends cleanly, this call's graphs
  /// are destroyed, the previous graphs (if any) are kept, and capture_error names the
  /// bucket and segment. Eager mode captures nothing. Synchronizes the runner's stream.
  void capture(const progress_fn& progress = {});

  /// Re-captures every bucket after the model's buffers moved (segment_table::rebind) and
  /// applies each new segment graph to its executable with cudaGraphExecUpdate, re-
  /// instantiating where the topology changed; reports which. Same build step as capture()
  /// (statistics, diagnostics, progress), without warm-ups. A capture failure throws
  /// capture_error and leaves the old graphs untouched; a failure while instantiating
  /// leaves the runner uncaptured (capture() again). Throws error before any capture().
  update_report update(const progress_fn& progress = {});

  /// Runs one forward for `real_tokens` (> 0) on `s`, without host synchronization.
  /// Graph modes: picks the bucket, writes the real count to the device, launches the
  /// graphs (piecewise: with the split callbacks between them). Above the largest bucket:
  /// see the overflow policy above. Throws error if a graph mode has not captured, or if
  /// the table changed after capture (call update()). A split callback that throws (here,
  /// in eager runs and in captures) surfaces as error naming the runner, split point, layer,
  /// real count and bucket, with the callback's exception nested (std::rethrow_if_nested);
  /// the runner stays usable, and the stream holds the work launched before the failing
  /// callback.
  void run(int real_tokens, cudaStream_t s);

  /// Runs the forward eagerly whatever the mode (padded to the bucket when pad_eager and a
  /// bucket fits; above the largest bucket the overflow policy applies, as in run()).
  void run_eager(int real_tokens, cudaStream_t s);

  /// Replays `real_tokens` and runs the same forward eagerly, each after `prepare(stream)`
  /// (which must restore every input and any state the forward changes), and compares the
  /// rows [0, real_tokens) of the table's declared outputs. Throws config_error when the
  /// table declares no output. Synchronizes `s`.
  validation_report validate_against_eager(int real_tokens, cudaStream_t s,
                                           const std::function<void(cudaStream_t)>& prepare);

  /// Writes one DOT file per segment graph of `bucket` into `dir` (which must exist);
  /// returns their paths. Throws error if that bucket was not captured.
  std::vector<std::string> export_dot(int bucket, const std::string& dir) const;

  /// Statistics of one captured bucket. Throws error if it was not captured.
  [[nodiscard]] const bucket_stats& stats_for(int bucket) const;
  /// Statistics of every captured bucket, smallest first.
  [[nodiscard]] std::vector<bucket_stats> all_bucket_stats() const;
  /// The executables of `bucket`'s segments in launch order (null for empty segments), for
  /// engines that launch them themselves and for benchmarks. Owned by the runner. Throws
  /// error when executables_per_segment > 0 (buckets share executables: launch with run()).
  [[nodiscard]] std::vector<cudaGraphExec_t> segment_execs(int bucket) const;
  [[nodiscard]] const run_stats& stats() const noexcept { return run_stats_; }
  void reset_run_stats() noexcept { run_stats_ = {}; }
  /// Warnings gathered by the last capture() or update() (host nodes, allocation nodes,
  /// empty segments).
  [[nodiscard]] const std::vector<std::string>& diagnostics() const noexcept { return diagnostics_; }
  /// Wall time of the last capture() (or update()), ms.
  [[nodiscard]] double capture_ms() const noexcept { return capture_ms_; }
  /// A multi-line human-readable summary: mode and reason, capture cost, run statistics.
  [[nodiscard]] std::string report() const;

 private:
  struct segment {
    graph g;
    int nodes = 0;   // nodes of g, counted once after capture
    int group = -1;  // its executable group in groups_; -1 for a segment with no nodes
  };
  struct bucket_graphs {
    std::vector<segment> segs;
    bucket_stats stats;
  };
  /// One executable and the bucket (index into graphs_) whose segment graph it holds now.
  struct exec_slot {
    graph_exec exec;
    int bucket = -1;
    std::uint64_t used = 0;  // replay clock at its last launch (least recently used is re-pointed)
  };
  /// The executables that the graphs of one segment position and one topology share: one
  /// slot per segment when executables_per_segment is 0, at most that many otherwise.
  struct exec_group {
    std::size_t position = 0;
    int nodes = 0;
    std::vector<exec_slot> slots;
  };
  struct captured_graphs {
    std::vector<bucket_graphs> buckets;
    std::vector<exec_group> groups;
  };
  /// How one forward runs: replay bucket `index`, or eagerly with `padded` rows.
  struct route {
    bool replay = false;
    bool fallback = false;  // eager because the count is above the largest bucket
    int index = -1;
    int padded = 0;
  };

  void resolve_mode();
  void log(log_level lvl, const std::string& msg) const;
  const bucket_graphs& find(int bucket) const;
  route plan(int real_tokens, bool graphs) const;
  void count(const route& r, int real_tokens);
  void set_real(int real, cudaStream_t s);
  void eager_forward(int real, int padded, cudaStream_t s);
  void replay(int index, int real, cudaStream_t s);
  void launch_segment(int index, std::size_t k, cudaStream_t s);
  std::vector<segment> capture_bucket(int size);
  captured_graphs build(int warmups, captured_graphs* previous, update_report* rep, const progress_fn& progress);
  int place(captured_graphs& out, int index, std::size_t k, captured_graphs* previous, update_report* rep);
  exec_slot new_slot(captured_graphs& out, int index, std::size_t k, captured_graphs* previous, update_report* rep);
  void remember_capture();
  void check_replayable() const;

  const segment_table& table_;
  capture_buckets buckets_;
  forward_fn forward_;
  runner_options opts_;
  mode mode_ = mode::eager;
  std::string reason_;
  device_buffer device_real_;
  int last_real_ = -1;
  cudaStream_t last_stream_ = nullptr;
  stream capture_stream_{};
  std::vector<bucket_graphs> graphs_;  // parallel to buckets_.sizes() once captured
  std::vector<exec_group> groups_;     // the executables graphs_' segments launch through
  std::uint64_t replay_clock_ = 0;
  std::uint64_t captured_version_ = 0;
  std::vector<int> captured_splits_;  // the table's split layers at capture (replay order)
  std::vector<std::pair<std::string, const void*>> captured_addresses_;
  std::vector<std::string> diagnostics_;
  double capture_ms_ = 0;
  run_stats run_stats_;
};

}  // namespace piecewise
