// piecewise/runner.hpp — the capture engine: graph_runner and forward_context.
//
// The model's forward is written once, as ordinary code that launches kernels on
// ctx.stream() and calls ctx.split(i) at every layer i whose segment-table entry is a split
// point. A graph_runner runs that forward in one of three ways:
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
// Rules a forward must follow (they are checked and reported, never silently ignored):
// - call ctx.split(i) exactly at the table's split points, in ascending layer order;
// - launch only on ctx.stream() (streams forked from it must be joined before a split);
// - allocate nothing during capture; use fixed-address buffers sized for the largest bucket.
// One runner's forwards must be issued in order on one stream (like any graph executable).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "piecewise/buckets.hpp"
#include "piecewise/error.hpp"
#include "piecewise/graph_inspect.hpp"
#include "piecewise/handles.hpp"
#include "piecewise/padding.hpp"
#include "piecewise/schedule.hpp"
#include "piecewise/segment_table.hpp"

namespace piecewise {

enum class mode { eager, piecewise, full, automatic };

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
/// Receives the runner's diagnostics. Default: warnings go to stderr.
using log_fn = std::function<void(log_level, const std::string&)>;

/// Reported after each bucket is captured.
struct capture_progress {
  int bucket = 0;         ///< the bucket size just captured
  int index = 0;          ///< 0-based position in capture order (largest first)
  int count = 0;          ///< buckets to capture
  int segments = 0;       ///< graphs of this bucket
  graph_node_counts nodes;///< their nodes, summed
  std::size_t free_bytes = 0, total_bytes = 0;  ///< device memory after this bucket
  double elapsed_ms = 0;  ///< since capture() started
};
using progress_fn = std::function<void(const capture_progress&)>;

struct runner_options {
  mode requested = mode::automatic;
  int warmup_runs = 1;     ///< eager runs per bucket before its capture
  bool pad_eager = true;   ///< eager runs pad to the bucket when one fits (same shapes as graphs)
  bool validate = false;   ///< at every replay, check every declared address against capture time
  std::string name = "runner";
  void* user = nullptr;    ///< passed to the forward and to every split callback
  log_fn log;              ///< diagnostics sink (default: warnings to stderr)
};

struct bucket_stats {
  int size = 0;
  int segments = 0;        ///< graphs (piecewise: splits + 1; full: 1)
  int empty_segments = 0;  ///< segments that captured nothing (not launched)
  graph_node_counts nodes;
  double capture_ms = 0;
  double instantiate_ms = 0;  ///< instantiate + upload
  long long device_bytes = 0; ///< device memory taken while instantiating (cudaMemGetInfo delta)
  std::uint64_t replays = 0;
};

struct run_stats {
  std::uint64_t forwards = 0;
  std::uint64_t graph_replays = 0;
  std::uint64_t eager_runs = 0;       ///< forwards run eagerly (mode eager, or fallbacks)
  std::uint64_t eager_fallbacks = 0;  ///< graph-mode forwards above the largest bucket
  std::uint64_t real_tokens = 0;
  std::uint64_t padded_tokens = 0;
};

struct update_report {
  int buckets = 0;
  int segments_updated = 0;         ///< applied with cudaGraphExecUpdate
  int segments_reinstantiated = 0;  ///< topology changed: new executable
  std::vector<std::string> notes;
  [[nodiscard]] std::string to_string() const {
    return fmt::format("update: {} buckets, {} segment graphs updated in place, {} re-instantiated",
                       buckets, segments_updated, segments_reinstantiated);
  }
};

struct validation_report {
  bool bitwise_equal = true;
  std::size_t bytes_compared = 0;
  std::size_t mismatched_bytes = 0;
  double max_abs_diff = 0;  ///< over typed outputs (element_type other than bytes)
  std::string first_mismatch;
  [[nodiscard]] std::string to_string() const {
    if (bitwise_equal) return fmt::format("replay == eager, bit for bit ({} bytes)", bytes_compared);
    return fmt::format("replay != eager: {} of {} bytes differ, max |diff| {:.3g}; first: {}",
                       mismatched_bytes, bytes_compared, max_abs_diff, first_mismatch);
  }
};

class graph_runner;

/// Handed to the forward. Not copyable; valid only during the forward call.
class forward_context {
 public:
  forward_context(const forward_context&) = delete;
  forward_context& operator=(const forward_context&) = delete;

  /// Real token count. While capturing it equals padded_tokens(): kernels whose result
  /// depends on the real count must read device_real_tokens() (or their own device metadata).
  [[nodiscard]] int real_tokens() const noexcept { return real_; }
  /// The bucket size (rows every non-split kernel must process).
  [[nodiscard]] int padded_tokens() const noexcept { return padded_; }
  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }
  [[nodiscard]] void* user() const noexcept { return user_; }
  /// Device int holding the real count of the forward being run or replayed.
  [[nodiscard]] const int* device_real_tokens() const noexcept { return device_real_; }
  [[nodiscard]] bool capturing() const noexcept { return kind_ != kind::eager; }

  /// Marks the split point of `layer`. Throws schedule_error naming the layer and what was
  /// expected if the table's entry at `layer` is null, out of range or out of order.
  void split(int layer);

 private:
  friend class graph_runner;
  enum class kind { eager, capture_piecewise, capture_full };
  forward_context(graph_runner& r, kind k, int real, int padded, cudaStream_t s);
  void finish();  // checks that every split point was reached

  graph_runner& runner_;
  kind kind_;
  int real_;
  int padded_;
  cudaStream_t stream_;
  void* user_;
  const int* device_real_;
  split_schedule schedule_;
  std::vector<graph> segments_;  // finished segment graphs (piecewise capture)
};

/// The model's forward, written once for every mode.
using forward_fn = std::function<void(forward_context&)>;

class graph_runner {
 public:
  /// Binds a table, buckets and forward. Resolves the mode (see mode_reason()). Throws
  /// config_error when full mode is requested but a split point is not capture-safe (the
  /// message names the layers), cuda_error if the runner's stream or scalar can't be made.
  /// The table must outlive the runner.
  graph_runner(const segment_table& table, capture_buckets buckets, forward_fn forward,
               runner_options opts = {})
      : table_(table), buckets_(std::move(buckets)), forward_(std::move(forward)),
        opts_(std::move(opts)) {
    PIECEWISE_EXPECTS(static_cast<bool>(forward_), "graph_runner '{}': no forward function", opts_.name);
    PIECEWISE_EXPECTS(opts_.warmup_runs >= 0, "graph_runner '{}': warmup_runs {} is negative",
                      opts_.name, opts_.warmup_runs);
    resolve_mode();
    PIECEWISE_CUDA_TRY(cudaMalloc(&device_real_, sizeof(int)));
    // A synchronous copy: a cudaMemset on the legacy stream would not be ordered before
    // later work on the caller's non-blocking streams.
    const int zero = 0;
    PIECEWISE_CUDA_TRY(cudaMemcpy(device_real_, &zero, sizeof(int), cudaMemcpyHostToDevice));
  }
  ~graph_runner() {
    if (device_real_ != nullptr) (void)cudaFree(device_real_);
  }
  graph_runner(const graph_runner&) = delete;
  graph_runner& operator=(const graph_runner&) = delete;

  /// The mode in use (never automatic) and why it was chosen.
  [[nodiscard]] mode active_mode() const noexcept { return mode_; }
  [[nodiscard]] const std::string& mode_reason() const noexcept { return reason_; }
  [[nodiscard]] const capture_buckets& buckets() const noexcept { return buckets_; }
  [[nodiscard]] const segment_table& table() const noexcept { return table_; }
  [[nodiscard]] const std::string& name() const noexcept { return opts_.name; }
  [[nodiscard]] const int* device_real_tokens() const noexcept { return device_real_; }
  [[nodiscard]] bool captured() const noexcept { return !graphs_.empty(); }

  /// Captures every bucket, largest first: warm-up runs, thread-local capture, instantiate
  /// and upload, inspection. All or nothing: on failure (the forward throws, a CUDA error,
  /// an invalidated capture, a schedule error) the capture ends cleanly, this call's graphs
  /// are destroyed, the previous graphs (if any) are kept, and capture_error names the
  /// bucket and segment. Eager mode captures nothing. Synchronizes the runner's stream.
  void capture(const progress_fn& progress = {});

  /// Runs one forward for `real_tokens` (> 0) on `s`, without host synchronization.
  /// Graph modes: picks the bucket, writes the real count to the device, launches the
  /// graphs (piecewise: with the split callbacks between them). Above the largest bucket:
  /// eager fallback (counted, logged) or bucket_overflow (policy chunk). Throws error if a
  /// graph mode has not captured, or if the table changed after capture (call update()).
  /// A split callback that throws (here, in eager runs and in captures) surfaces as error
  /// naming the runner, split point, layer, real count and bucket, with the callback's
  /// exception nested (std::rethrow_if_nested); the runner stays usable, and the stream
  /// holds the work launched before the failing callback.
  void run(int real_tokens, cudaStream_t s);

  /// Runs the forward eagerly whatever the mode (padded to the bucket when pad_eager).
  void run_eager(int real_tokens, cudaStream_t s);

  /// Re-captures every bucket after the model's buffers moved, and applies each new segment
  /// graph to its executable with cudaGraphExecUpdate; re-instantiates where the topology
  /// changed. Reports which. Throws like capture(); on failure the old graphs are untouched.
  update_report update();

  /// Replays `real_tokens` and runs the same forward eagerly, each after `prepare(stream)`
  /// (which must restore every input and any state the forward changes), and compares the
  /// rows [0, real_tokens) of the table's declared outputs. Synchronizes `s`.
  validation_report validate_against_eager(int real_tokens, cudaStream_t s,
                                           const std::function<void(cudaStream_t)>& prepare);

  /// Writes one DOT file per segment graph of `bucket` into `dir` (which must exist);
  /// returns their paths. Throws error if that bucket was not captured.
  std::vector<std::string> export_dot(int bucket, const std::string& dir) const;

  [[nodiscard]] const bucket_stats& stats_for(int bucket) const { return find(bucket).stats; }
  /// The executables of `bucket`'s segments in launch order (null for empty segments), for
  /// engines that launch them themselves and for benchmarks. Owned by the runner.
  [[nodiscard]] std::vector<cudaGraphExec_t> segment_execs(int bucket) const {
    std::vector<cudaGraphExec_t> v;
    for (const auto& sg : find(bucket).segs) v.push_back(sg.exec.get());
    return v;
  }
  [[nodiscard]] std::vector<bucket_stats> all_bucket_stats() const {
    std::vector<bucket_stats> v;
    for (const auto& b : graphs_) v.push_back(b.stats);
    return v;
  }
  [[nodiscard]] const run_stats& stats() const noexcept { return run_stats_; }
  void reset_run_stats() noexcept { run_stats_ = {}; }
  /// Warnings gathered while capturing (host nodes, allocation nodes, empty segments).
  [[nodiscard]] const std::vector<std::string>& diagnostics() const noexcept { return diagnostics_; }
  [[nodiscard]] double capture_ms() const noexcept { return capture_ms_; }
  /// A multi-line human-readable summary: mode and reason, capture cost, run statistics.
  [[nodiscard]] std::string report() const;

 private:
  friend class forward_context;
  struct segment {
    graph g;
    graph_exec exec;  // empty for a segment with no nodes
  };
  struct bucket_graphs {
    std::vector<segment> segs;
    bucket_stats stats;
  };

  void resolve_mode();
  void log(log_level lvl, const std::string& msg) const {
    if (opts_.log) opts_.log(lvl, msg);
    else if (lvl == log_level::warning) std::fprintf(stderr, "[piecewise] %s\n", msg.c_str());
  }
  const bucket_graphs& find(int bucket) const {
    const int idx = buckets_.index_of(bucket);
    if (idx < 0 || graphs_.empty())
      throw error(fmt::format("graph_runner '{}': bucket {} has not been captured", opts_.name, bucket));
    return graphs_[static_cast<std::size_t>(idx)];
  }
  void set_real(int real, cudaStream_t s) {
    if (real != last_real_ || s != last_stream_) {
      set_device_int(device_real_, real, s);
      last_real_ = real;
      last_stream_ = s;
    }
  }
  void zero_inputs(int padded, cudaStream_t s) const {
    for (const auto& b : table_.inputs()) zero_padded_rows(b, device_real_, padded, s);
  }
  void eager_forward(int real, int padded, cudaStream_t s);
  std::vector<bucket_graphs> capture_all(int warmups, const progress_fn& progress);
  std::vector<segment> capture_bucket(int size);
  void check_replayable() const;

  const segment_table& table_;
  capture_buckets buckets_;
  forward_fn forward_;
  runner_options opts_;
  mode mode_ = mode::eager;
  std::string reason_;
  int* device_real_ = nullptr;
  int last_real_ = -1;
  cudaStream_t last_stream_ = nullptr;
  stream capture_stream_{};
  std::vector<bucket_graphs> graphs_;  // parallel to buckets_.sizes() once captured
  std::uint64_t captured_version_ = 0;
  std::vector<int> captured_splits_;  // the table's split layers at capture (replay order)
  std::vector<std::pair<std::string, const void*>> captured_addresses_;
  std::vector<std::string> diagnostics_;
  double capture_ms_ = 0;
  run_stats run_stats_;
};

// ---------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------

namespace detail {
// Calls a split callback; an exception from it is rethrown as piecewise::error naming the
// runner, split point, layer, token counts and phase, with the original nested
// (std::rethrow_if_nested reaches it).
inline void invoke_split(const std::string& runner, const split_point& sp, const split_args& a,
                         const char* phase) {
  try {
    sp.fn(a);
  } catch (const std::exception& e) {
    std::throw_with_nested(error(fmt::format(
        "graph_runner '{}': split point '{}' at layer {} failed during {} ({} real tokens, "
        "bucket {}): {}", runner, sp.name, a.layer, phase, a.real_tokens, a.padded_tokens, e.what())));
  }
}
}  // namespace detail

inline forward_context::forward_context(graph_runner& r, kind k, int real, int padded, cudaStream_t s)
    : runner_(r), kind_(k), real_(real), padded_(padded), stream_(s), user_(r.opts_.user),
      device_real_(r.device_real_), schedule_(r.table_, fmt::format("runner '{}'", r.opts_.name)) {}

inline void forward_context::split(int layer) {
  const split_point* sp = &schedule_.enter(layer);
  switch (kind_) {
    case kind::eager:
      detail::invoke_split(runner_.opts_.name, *sp,
                           split_args{layer, real_, padded_, stream_, user_, device_real_, false},
                           "an eager forward");
      if (real_ < padded_)
        for (const auto& b : sp->zero_outputs) zero_padded_rows(b, device_real_, padded_, stream_);
      break;
    case kind::capture_full:
      detail::invoke_split(runner_.opts_.name, *sp,
                           split_args{layer, real_, padded_, stream_, user_, device_real_, true},
                           "full-graph capture");
      for (const auto& b : sp->zero_outputs) zero_padded_rows(b, device_real_, padded_, stream_);
      break;
    case kind::capture_piecewise: {
      cudaGraph_t g = nullptr;
      PIECEWISE_CUDA_TRY_CTX(cudaStreamEndCapture(stream_, &g),
                             fmt::format("ending segment {} at split layer {}", segments_.size(), layer));
      segments_.push_back(graph::from_native_handle(g));
      PIECEWISE_CUDA_TRY_CTX(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                             fmt::format("starting segment {} after split layer {}", segments_.size(), layer));
      // The split's padded rows are cleaned at the head of the next segment.
      for (const auto& b : sp->zero_outputs) zero_padded_rows(b, device_real_, padded_, stream_);
      break;
    }
  }
}

inline void forward_context::finish() { schedule_.finish(); }

inline void graph_runner::resolve_mode() {
  const std::vector<int> unsafe = table_.unsafe_layers();
  std::string unsafe_list;
  for (int l : unsafe) {
    if (!unsafe_list.empty()) unsafe_list += ", ";
    unsafe_list += fmt::format("{} ('{}')", l, table_.at(l)->name);
  }
  switch (opts_.requested) {
    case mode::eager:
      mode_ = mode::eager;
      reason_ = "eager: requested";
      break;
    case mode::piecewise:
      mode_ = mode::piecewise;
      reason_ = fmt::format("piecewise: requested ({} segments per bucket)", table_.num_segments());
      break;
    case mode::full:
      PIECEWISE_EXPECTS(unsafe.empty(),
                        "graph_runner '{}': full mode needs every split point to be capture-safe, "
                        "but the split points at layers {} are not",
                        opts_.name, unsafe_list);
      mode_ = mode::full;
      reason_ = "full: requested (every split point is capture-safe)";
      break;
    case mode::automatic:
      if (unsafe.empty()) {
        mode_ = mode::full;
        reason_ = fmt::format("full (auto): all {} split points are capture-safe", table_.num_splits());
      } else {
        mode_ = mode::piecewise;
        reason_ = fmt::format("piecewise (auto): split points at layers {} are not capture-safe",
                              unsafe_list);
      }
      break;
  }
}

inline void graph_runner::eager_forward(int real, int padded, cudaStream_t s) {
  set_real(real, s);
  if (real < padded) zero_inputs(padded, s);
  forward_context ctx(*this, forward_context::kind::eager, real, padded, s);
  forward_(ctx);
  ctx.finish();
}

inline std::vector<graph_runner::segment> graph_runner::capture_bucket(int size) {
  const cudaStream_t cs = capture_stream_.get();
  const bool full = mode_ == mode::full;
  forward_context ctx(*this, full ? forward_context::kind::capture_full
                                  : forward_context::kind::capture_piecewise,
                      size, size, cs);
  auto abort_capture = [&]() noexcept {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(cs, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
      cudaGraph_t g = nullptr;
      (void)cudaStreamEndCapture(cs, &g);
      if (g != nullptr) (void)cudaGraphDestroy(g);
    }
    (void)cudaGetLastError();
  };
  try {
    PIECEWISE_CUDA_TRY(cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal));
    zero_inputs(size, cs);
    forward_(ctx);
    ctx.finish();
    cudaGraph_t g = nullptr;
    PIECEWISE_CUDA_TRY_CTX(cudaStreamEndCapture(cs, &g), "ending the last segment");
    ctx.segments_.push_back(graph::from_native_handle(g));
  } catch (const std::exception& e) {
    abort_capture();
    throw capture_error(size, static_cast<int>(ctx.segments_.size()),
                        fmt::format("runner '{}': capturing bucket {} failed in segment {} ({} mode): {}",
                                    opts_.name, size, ctx.segments_.size(), to_string(mode_), e.what()));
  } catch (...) {
    abort_capture();
    throw capture_error(size, static_cast<int>(ctx.segments_.size()),
                        fmt::format("runner '{}': capturing bucket {} failed in segment {}: unknown exception",
                                    opts_.name, size, ctx.segments_.size()));
  }
  std::vector<segment> segs;
  for (auto& g : ctx.segments_) segs.push_back(segment{std::move(g), graph_exec{}});
  return segs;
}

inline std::vector<graph_runner::bucket_graphs> graph_runner::capture_all(int warmups,
                                                                          const progress_fn& progress) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  const cudaStream_t cs = capture_stream_.get();
  const auto& sizes = buckets_.sizes();
  std::vector<bucket_graphs> out(sizes.size());
  std::vector<std::string> diags;
  int done = 0;
  for (int i = static_cast<int>(sizes.size()) - 1; i >= 0; --i, ++done) {
    const int size = sizes[static_cast<std::size_t>(i)];
    for (int w = 0; w < warmups; ++w) {
      try {
        eager_forward(size, size, cs);
        capture_stream_.synchronize();
      } catch (const std::exception& e) {
        (void)cudaGetLastError();
        throw capture_error(size, -1, fmt::format("runner '{}': warm-up run {} of bucket {} failed: {}",
                                                  opts_.name, w, size, e.what()));
      }
    }
    last_real_ = -1;  // the capture stream wrote the device count
    bucket_graphs& bg = out[static_cast<std::size_t>(i)];
    bg.stats.size = size;
    const auto t0 = clock::now();
    bg.segs = capture_bucket(size);
    const auto t1 = clock::now();
    std::size_t free0 = 0, free1 = 0, total = 0;
    PIECEWISE_CUDA_TRY(cudaMemGetInfo(&free0, &total));
    for (std::size_t k = 0; k < bg.segs.size(); ++k) {
      segment& sg = bg.segs[k];
      const graph_node_counts c = inspect_graph(sg.g.get());
      bg.stats.nodes += c;
      if (c.host > 0)
        diags.push_back(fmt::format("bucket {} segment {}: {} host-callback nodes (CPU work inside a graph)",
                                    size, k, c.host));
      if (c.mem_alloc > 0)
        diags.push_back(fmt::format("bucket {} segment {}: {} memory-allocation nodes (cudaMallocAsync "
                                    "during capture; use fixed buffers)", size, k, c.mem_alloc));
      if (c.total == 0) {
        ++bg.stats.empty_segments;
        diags.push_back(fmt::format("bucket {} segment {}: empty (two adjacent split points); not launched",
                                    size, k));
        continue;
      }
      try {
        sg.exec = graph_exec::instantiate(sg.g, cs);
      } catch (const std::exception& e) {
        throw capture_error(size, static_cast<int>(k),
                            fmt::format("runner '{}': instantiating bucket {} segment {} failed: {}",
                                        opts_.name, size, k, e.what()));
      }
    }
    capture_stream_.synchronize();
    PIECEWISE_CUDA_TRY(cudaMemGetInfo(&free1, &total));
    const auto t2 = clock::now();
    bg.stats.segments = static_cast<int>(bg.segs.size());
    bg.stats.capture_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    bg.stats.instantiate_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
    bg.stats.device_bytes = static_cast<long long>(free0) - static_cast<long long>(free1);
    if (progress) {
      progress(capture_progress{size, done, static_cast<int>(sizes.size()), bg.stats.segments,
                                bg.stats.nodes, free1, total,
                                std::chrono::duration<double, std::milli>(clock::now() - t_start).count()});
    }
  }
  diagnostics_ = std::move(diags);
  for (const auto& d : diagnostics_) log(log_level::warning, fmt::format("runner '{}': {}", opts_.name, d));
  return out;
}

inline void graph_runner::capture(const progress_fn& progress) {
  resolve_mode();
  if (mode_ == mode::eager) return;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<bucket_graphs> fresh = capture_all(opts_.warmup_runs, progress);
  graphs_ = std::move(fresh);
  captured_version_ = table_.version();
  captured_addresses_ = table_.addresses();
  captured_splits_ = table_.split_layers();
  capture_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  log(log_level::info, fmt::format("runner '{}': captured {} buckets in {:.1f} ms ({})", opts_.name,
                                   graphs_.size(), capture_ms_, reason_));
}

inline void graph_runner::check_replayable() const {
  if (graphs_.empty())
    throw error(fmt::format("graph_runner '{}': {} mode needs capture() before run()", opts_.name,
                            to_string(mode_)));
  if (table_.version() != captured_version_)
    throw error(fmt::format("graph_runner '{}': the segment table changed after capture (a buffer "
                            "was rebound or an entry set); call update() or capture() before replaying",
                            opts_.name));
  if (opts_.validate) {
    const auto now = table_.addresses();
    for (std::size_t i = 0; i < now.size() && i < captured_addresses_.size(); ++i)
      if (now[i] != captured_addresses_[i])
        throw error(fmt::format("graph_runner '{}': declared buffer '{}' moved from {} to {} after capture",
                                opts_.name, now[i].first, captured_addresses_[i].second, now[i].second));
  }
}

inline void graph_runner::run_eager(int real_tokens, cudaStream_t s) {
  PIECEWISE_EXPECTS(real_tokens > 0, "graph_runner '{}': token count {} must be positive", opts_.name,
                    real_tokens);
  const int size = buckets_.pick(real_tokens);
  const int padded = (opts_.pad_eager && size > 0) ? size : real_tokens;
  eager_forward(real_tokens, padded, s);
  ++run_stats_.forwards;
  ++run_stats_.eager_runs;
  run_stats_.real_tokens += static_cast<std::uint64_t>(real_tokens);
  run_stats_.padded_tokens += static_cast<std::uint64_t>(padded);
}

inline void graph_runner::run(int real_tokens, cudaStream_t s) {
  PIECEWISE_EXPECTS(real_tokens > 0, "graph_runner '{}': token count {} must be positive", opts_.name,
                    real_tokens);
  if (mode_ == mode::eager) return run_eager(real_tokens, s);
  const int size = buckets_.pick(real_tokens);  // throws bucket_overflow under policy chunk
  if (size == 0) {
    ++run_stats_.eager_fallbacks;
    const std::uint64_t n = run_stats_.eager_fallbacks;
    if ((n & (n - 1)) == 0)  // 1st, 2nd, 4th, 8th ... fallback: loud but not flooding
      log(log_level::warning,
          fmt::format("runner '{}': {} tokens exceed the largest capture size {}; running eagerly "
                      "(eager fallback #{})",
                      opts_.name, real_tokens, buckets_.largest(), n));
    eager_forward(real_tokens, real_tokens, s);
    ++run_stats_.forwards;
    ++run_stats_.eager_runs;
    run_stats_.real_tokens += static_cast<std::uint64_t>(real_tokens);
    run_stats_.padded_tokens += static_cast<std::uint64_t>(real_tokens);
    return;
  }
  check_replayable();
  bucket_graphs& bg = graphs_[static_cast<std::size_t>(buckets_.index_of(size))];
  set_real(real_tokens, s);
  if (mode_ == mode::full) {
    bg.segs.front().exec.launch(s);
  } else {
    for (std::size_t k = 0; k < bg.segs.size(); ++k) {
      if (bg.segs[k].exec) bg.segs[k].exec.launch(s);
      if (k < captured_splits_.size()) {
        const int layer = captured_splits_[k];
        detail::invoke_split(opts_.name, *table_.at(layer),
                             split_args{layer, real_tokens, size, s, opts_.user, device_real_, false},
                             "a piecewise replay");
      }
    }
  }
  ++bg.stats.replays;
  ++run_stats_.forwards;
  ++run_stats_.graph_replays;
  run_stats_.real_tokens += static_cast<std::uint64_t>(real_tokens);
  run_stats_.padded_tokens += static_cast<std::uint64_t>(size);
}

inline update_report graph_runner::update() {
  update_report rep;
  if (mode_ == mode::eager) return rep;
  if (graphs_.empty())
    throw error(fmt::format("graph_runner '{}': update() needs an earlier capture()", opts_.name));
  // Capture everything first: a failure here leaves the old executables untouched.
  std::vector<std::vector<segment>> fresh(graphs_.size());
  const auto& sizes = buckets_.sizes();
  for (int i = static_cast<int>(sizes.size()) - 1; i >= 0; --i)
    fresh[static_cast<std::size_t>(i)] = capture_bucket(sizes[static_cast<std::size_t>(i)]);
  const cudaStream_t cs = capture_stream_.get();
  for (std::size_t i = 0; i < graphs_.size(); ++i) {
    bucket_graphs& bg = graphs_[i];
    std::vector<segment>& nw = fresh[i];
    ++rep.buckets;
    const bool same_count = nw.size() == bg.segs.size();
    for (std::size_t k = 0; k < nw.size(); ++k) {
      const bool empty = inspect_graph(nw[k].g.get()).total == 0;
      if (empty) continue;
      cudaGraphExecUpdateResult why{};
      if (same_count && bg.segs[k].exec && bg.segs[k].exec.update(nw[k].g, &why)) {
        nw[k].exec = std::move(bg.segs[k].exec);
        PIECEWISE_CUDA_TRY(cudaGraphUpload(nw[k].exec.get(), cs));
        ++rep.segments_updated;
      } else {
        nw[k].exec = graph_exec::instantiate(nw[k].g, cs);
        ++rep.segments_reinstantiated;
        rep.notes.push_back(fmt::format("bucket {} segment {}: re-instantiated ({})", sizes[i], k,
                                        same_count ? fmt::format("update result {}", static_cast<int>(why))
                                                   : std::string("segment count changed")));
      }
    }
    bg.segs = std::move(nw);
    bg.stats.segments = static_cast<int>(bg.segs.size());
  }
  capture_stream_.synchronize();
  captured_version_ = table_.version();
  captured_addresses_ = table_.addresses();
  captured_splits_ = table_.split_layers();
  last_real_ = -1;
  return rep;
}

namespace detail {
inline double element_value(const unsigned char* p, element_type t) {
  switch (t) {
    case element_type::f32: { float f; std::memcpy(&f, p, 4); return f; }
    case element_type::i32: { int v; std::memcpy(&v, p, 4); return v; }
    case element_type::bf16: {
      std::uint16_t h; std::memcpy(&h, p, 2);
      std::uint32_t bits = static_cast<std::uint32_t>(h) << 16; float f; std::memcpy(&f, &bits, 4); return f;
    }
    case element_type::f16: {
      std::uint16_t h; std::memcpy(&h, p, 2);
      const int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
      double v = exp == 0 ? std::ldexp(mant, -24) : exp == 31 ? (mant ? NAN : INFINITY)
                                                               : std::ldexp(mant + 1024, exp - 25);
      return sign ? -v : v;
    }
    default: return 0;
  }
}
inline std::size_t element_size(element_type t) {
  switch (t) {
    case element_type::f32: case element_type::i32: return 4;
    case element_type::bf16: case element_type::f16: return 2;
    default: return 1;
  }
}
}  // namespace detail

inline validation_report graph_runner::validate_against_eager(int real_tokens, cudaStream_t s,
                                                              const std::function<void(cudaStream_t)>& prepare) {
  PIECEWISE_EXPECTS(!table_.outputs().empty(),
                    "graph_runner '{}': validate_against_eager needs declared outputs (segment_table::declare_output)",
                    opts_.name);
  auto snapshot = [&]() {
    std::vector<std::vector<unsigned char>> v;
    for (const auto& b : table_.outputs()) {
      const int rows = std::min(real_tokens, b.rows);
      std::vector<unsigned char> host(static_cast<std::size_t>(rows) * b.row_bytes);
      PIECEWISE_CUDA_TRY(cudaMemcpy2DAsync(host.data(), b.row_bytes, b.data, b.stride(), b.row_bytes,
                                           static_cast<std::size_t>(rows), cudaMemcpyDeviceToHost, s));
      PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
      v.push_back(std::move(host));
    }
    return v;
  };
  if (prepare) prepare(s);
  run(real_tokens, s);
  auto replayed = snapshot();
  if (prepare) prepare(s);
  run_eager(real_tokens, s);
  auto eager = snapshot();
  validation_report rep;
  for (std::size_t i = 0; i < replayed.size(); ++i) {
    const row_buffer& b = table_.outputs()[i];
    const auto& a = replayed[i];
    const auto& e = eager[i];
    rep.bytes_compared += a.size();
    const std::size_t es = detail::element_size(b.type);
    for (std::size_t j = 0; j < a.size(); ++j) {
      if (a[j] == e[j]) continue;
      ++rep.mismatched_bytes;
      if (rep.first_mismatch.empty())
        rep.first_mismatch = fmt::format("output '{}' row {} byte {}", b.name, j / b.row_bytes, j % b.row_bytes);
    }
    if (b.type != element_type::bytes)
      for (std::size_t j = 0; j + es <= a.size(); j += es)
        rep.max_abs_diff = std::max(rep.max_abs_diff, std::abs(detail::element_value(&a[j], b.type) -
                                                               detail::element_value(&e[j], b.type)));
  }
  rep.bitwise_equal = rep.mismatched_bytes == 0;
  return rep;
}

inline std::vector<std::string> graph_runner::export_dot(int bucket, const std::string& dir) const {
  const bucket_graphs& bg = find(bucket);
  std::string stem = opts_.name;  // the runner's name, made safe as a file name
  for (char& c : stem)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  std::vector<std::string> paths;
  for (std::size_t k = 0; k < bg.segs.size(); ++k) {
    std::string path = fmt::format("{}/{}_bucket{}_segment{}.dot", dir, stem, bucket, k);
    write_graph_dot(bg.segs[k].g.get(), path);
    paths.push_back(std::move(path));
  }
  return paths;
}

inline std::string graph_runner::report() const {
  std::string r = fmt::format("runner '{}': mode {} — {}\n", opts_.name, to_string(mode_), reason_);
  r += fmt::format("  buckets: {}\n", buckets_.to_string());
  if (!graphs_.empty()) {
    graph_node_counts nodes;
    double inst = 0;
    long long bytes = 0;
    int segs = 0;
    for (const auto& b : graphs_) {
      nodes += b.stats.nodes;
      inst += b.stats.instantiate_ms;
      bytes += b.stats.device_bytes;
      segs += b.stats.segments;
    }
    r += fmt::format("  captured {} buckets, {} graphs ({}) in {:.1f} ms ({:.1f} ms instantiate+upload), "
                     "device memory +{:.1f} MiB\n",
                     graphs_.size(), segs, to_string(nodes), capture_ms_, inst, bytes / 1048576.0);
  }
  const auto& st = run_stats_;
  r += fmt::format("  forwards {}: {} replays, {} eager ({} fallbacks above the largest bucket); "
                   "tokens real {} padded {} ({:.1f}% padding)\n",
                   st.forwards, st.graph_replays, st.eager_runs, st.eager_fallbacks, st.real_tokens,
                   st.padded_tokens,
                   st.padded_tokens ? 100.0 * (st.padded_tokens - st.real_tokens) / st.padded_tokens : 0.0);
  for (const auto& d : diagnostics_) r += fmt::format("  warning: {}\n", d);
  return r;
}

}  // namespace piecewise
