// graph_runner: mode resolution, the one per-bucket build step of capture() and update(),
// replay with the overflow policy decided in plan(), validation, DOT export and reports.
#include "piecewise/runner.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>

#include <fmt/format.h>

#include "piecewise/cuda_error.hpp"
#include "piecewise/element_type.hpp"
#include "piecewise/padding.hpp"
#include "split_call.hpp"

namespace piecewise {

namespace {
using clock_type = std::chrono::steady_clock;
double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}
}  // namespace

graph_runner::graph_runner(const segment_table& table, capture_buckets buckets, forward_fn forward,
                           runner_options opts)
    : table_(table), buckets_(std::move(buckets)), forward_(std::move(forward)), opts_(std::move(opts)) {
  PIECEWISE_EXPECTS(static_cast<bool>(forward_), "graph_runner '{}': no forward function", opts_.name);
  PIECEWISE_EXPECTS(opts_.warmup_runs >= 0, "graph_runner '{}': warmup_runs {} is negative", opts_.name,
                    opts_.warmup_runs);
  PIECEWISE_EXPECTS(opts_.executables_per_segment >= 0, "graph_runner '{}': executables_per_segment {} is negative",
                    opts_.name, opts_.executables_per_segment);
  resolve_mode();
  device_real_ = device_buffer(sizeof(int), "graph_runner device token count");
  // Written before any work on the caller's (non-blocking) streams can read it: a pageable
  // cudaMemcpy returns once the value is staged, possibly before its DMA lands, so wait for it.
  const int zero = 0;
  PIECEWISE_CUDA_TRY(cudaMemcpy(device_real_.data(), &zero, sizeof(int), cudaMemcpyHostToDevice));
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
}

graph_runner::~graph_runner() = default;

void graph_runner::log(log_level lvl, const std::string& msg) const {
  if (opts_.log) opts_.log(lvl, msg);
  else if (lvl == log_level::warning) std::fprintf(stderr, "[piecewise] %s\n", msg.c_str());
}

const graph_runner::bucket_graphs& graph_runner::find(int bucket) const {
  const int idx = buckets_.index_of(bucket);
  if (idx < 0 || graphs_.empty())
    throw error(fmt::format("graph_runner '{}': bucket {} has not been captured", opts_.name, bucket));
  return graphs_[static_cast<std::size_t>(idx)];
}

const bucket_stats& graph_runner::stats_for(int bucket) const { return find(bucket).stats; }

std::vector<bucket_stats> graph_runner::all_bucket_stats() const {
  std::vector<bucket_stats> v;
  for (const auto& b : graphs_) v.push_back(b.stats);
  return v;
}

std::vector<cudaGraphExec_t> graph_runner::segment_execs(int bucket) const {
  const bucket_graphs& bg = find(bucket);
  if (opts_.executables_per_segment > 0)
    throw error(fmt::format("graph_runner '{}': the buckets share executables (executables_per_segment = {}); "
                            "replay bucket {} with run()",
                            opts_.name, opts_.executables_per_segment, bucket));
  std::vector<cudaGraphExec_t> v;
  for (const auto& sg : bg.segs)
    v.push_back(sg.group < 0 ? nullptr : groups_[static_cast<std::size_t>(sg.group)].slots.front().exec.get());
  return v;
}

void graph_runner::resolve_mode() {
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
        reason_ = fmt::format("piecewise (auto): split points at layers {} are not capture-safe", unsafe_list);
      }
      break;
  }
}

// ---- one forward ----------------------------------------------------------------------

graph_runner::route graph_runner::plan(int real_tokens, bool graphs) const {
  PIECEWISE_EXPECTS(real_tokens > 0, "graph_runner '{}': token count {} must be positive", opts_.name,
                    real_tokens);
  const bucket_pick p = buckets_.pick(real_tokens);
  route r;
  if (p.above_largest()) {
    buckets_.check_overflow(real_tokens);  // the overflow policy: throws under 'chunk'
    r.fallback = graphs;
    r.padded = real_tokens;
    return r;
  }
  r.index = p.index;
  r.replay = graphs;
  r.padded = (graphs || opts_.pad_eager) ? p.size : real_tokens;
  return r;
}

void graph_runner::count(const route& r, int real_tokens) {
  ++run_stats_.forwards;
  if (r.replay) ++run_stats_.graph_replays;
  else ++run_stats_.eager_runs;
  run_stats_.real_tokens += static_cast<std::uint64_t>(real_tokens);
  run_stats_.padded_tokens += static_cast<std::uint64_t>(r.padded);
  if (!r.fallback) return;
  const std::uint64_t n = ++run_stats_.eager_fallbacks;
  if ((n & (n - 1)) == 0)  // 1st, 2nd, 4th, 8th ... fallback: loud but not flooding
    log(log_level::warning,
        fmt::format("runner '{}': {} tokens exceed the largest capture size {}; running eagerly "
                    "(eager fallback #{})",
                    opts_.name, real_tokens, buckets_.largest(), n));
}

void graph_runner::set_real(int real, cudaStream_t s) {
  if (real != last_real_ || s != last_stream_) {
    set_device_int(device_real_.as<int>(), real, s);
    last_real_ = real;
    last_stream_ = s;
  }
}

void graph_runner::eager_forward(int real, int padded, cudaStream_t s) {
  set_real(real, s);
  if (real < padded)
    for (const auto& b : table_.inputs()) zero_padded_rows(b, device_real_.as<int>(), padded, s);
  forward_context ctx(table_, opts_.name, forward_context::kind::eager, real, padded, s, opts_.user,
                      device_real_.as<int>());
  forward_(ctx);
  ctx.finish();
}

// Launches segment k of bucket `index` through its group: the slot that holds its graph, or
// else the least recently launched slot, re-pointed first. A refused update (its trial passed
// at capture) throws and leaves the slot as it was.
void graph_runner::launch_segment(int index, std::size_t k, cudaStream_t s) {
  const segment& sg = graphs_[static_cast<std::size_t>(index)].segs[k];
  if (sg.group < 0) return;
  exec_group& grp = groups_[static_cast<std::size_t>(sg.group)];
  exec_slot* use = nullptr;
  for (exec_slot& sl : grp.slots) {
    if (sl.bucket == index) {
      use = &sl;
      break;
    }
    if (use == nullptr || sl.used < use->used) use = &sl;
  }
  if (use->bucket != index) {
    const auto t0 = clock_type::now();
    cudaGraphExecUpdateResult why{};
    if (!use->exec.update(sg.g, &why))
      throw error(fmt::format("graph_runner '{}': re-pointing a shared executable to bucket {} segment {} failed "
                              "(cudaGraphExecUpdate result {}) although its trial at capture passed; capture() again",
                              opts_.name, buckets_.sizes()[static_cast<std::size_t>(index)], k, static_cast<int>(why)));
    use->bucket = index;
    ++run_stats_.executable_switches;
    run_stats_.executable_switch_ms += ms_since(t0);
  }
  use->used = ++replay_clock_;
  use->exec.launch(s);
}

void graph_runner::replay(int index, int real, cudaStream_t s) {
  bucket_graphs& bg = graphs_[static_cast<std::size_t>(index)];
  set_real(real, s);
  if (mode_ == mode::full) {
    launch_segment(index, 0, s);
  } else {
    for (std::size_t k = 0; k < bg.segs.size(); ++k) {
      launch_segment(index, k, s);
      if (k < captured_splits_.size()) {
        const int layer = captured_splits_[k];
        detail::invoke_split(opts_.name, *table_.at(layer),
                             split_args{layer, real, bg.stats.size, s, opts_.user, device_real_.as<int>(), false},
                             "a piecewise replay");
      }
    }
  }
  ++bg.stats.replays;
}

void graph_runner::run(int real_tokens, cudaStream_t s) {
  const route r = plan(real_tokens, mode_ != mode::eager);
  if (r.replay) {
    check_replayable();
    replay(r.index, real_tokens, s);
  } else {
    eager_forward(real_tokens, r.padded, s);
  }
  count(r, real_tokens);
}

void graph_runner::run_eager(int real_tokens, cudaStream_t s) {
  const route r = plan(real_tokens, false);
  eager_forward(real_tokens, r.padded, s);
  count(r, real_tokens);
}

void graph_runner::check_replayable() const {
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

// ---- capture and update: one build step --------------------------------------------------

std::vector<graph_runner::segment> graph_runner::capture_bucket(int size) {
  const cudaStream_t cs = capture_stream_.get();
  const bool full = mode_ == mode::full;
  forward_context ctx(table_, opts_.name,
                      full ? forward_context::kind::capture_full : forward_context::kind::capture_piecewise, size,
                      size, cs, opts_.user, device_real_.as<int>());
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
    for (const auto& b : table_.inputs()) zero_padded_rows(b, device_real_.as<int>(), size, cs);
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
  for (auto& g : ctx.segments_) segs.push_back(segment{std::move(g)});
  return segs;
}

// A new executable for segment k of bucket `index`: an executable of `previous` at the same
// position that accepts the graph (cudaGraphExecUpdate): the one that held this bucket's graph,
// then, when executables are shared (a slot may hold another bucket by now), any other; or a
// fresh instantiation. Uploaded either way.
graph_runner::exec_slot graph_runner::new_slot(captured_graphs& out, int index, std::size_t k,
                                               captured_graphs* previous, update_report* rep) {
  const cudaStream_t cs = capture_stream_.get();
  bucket_graphs& bg = out.buckets[static_cast<std::size_t>(index)];
  const segment& sg = bg.segs[k];
  exec_slot sl;
  sl.bucket = index;
  ++bg.stats.executables;
  std::string why_not = "no earlier executable at this position";
  if (previous != nullptr) {
    const int passes = opts_.executables_per_segment > 0 ? 2 : 1;
    for (int pass = 0; pass < passes; ++pass)  // pass 0: the slot that held this bucket; pass 1: any other
      for (exec_group& grp : previous->groups) {
        if (grp.position != k || grp.nodes != sg.nodes) continue;
        for (exec_slot& old : grp.slots) {
          if (!old.exec || (pass == 0) != (old.bucket == index)) continue;
          cudaGraphExecUpdateResult why{};
          if (old.exec.update(sg.g, &why)) {
            sl.exec = std::move(old.exec);
            PIECEWISE_CUDA_TRY(cudaGraphUpload(sl.exec.get(), cs));
            ++bg.stats.updated_in_place;
            if (rep != nullptr) ++rep->segments_updated;
            return sl;
          }
          why_not = fmt::format("update result {}", static_cast<int>(why));
        }
      }
  }
  sl.exec = graph_exec::instantiate(sg.g, cs);
  if (rep != nullptr) {
    ++rep->segments_reinstantiated;
    rep->notes.push_back(fmt::format("bucket {} segment {}: re-instantiated ({})", bg.stats.size, k, why_not));
  }
  return sl;
}

// The executable group of segment k of bucket `index`. Unshared (executables_per_segment 0):
// a new group of one. Shared: the first group at this position with as many nodes whose
// executable accepts the graph in a cudaGraphExecUpdate trial (then restored to the graph it
// held), taking a new slot while it has fewer than executables_per_segment; else a new group.
// The trial accepts graphs whose kernels differ (another GEMM algorithm at another size), and
// an executable re-pointed to other kernels runs measurably slower on the GPU (Nano-9B-v2
// prefill of 256 tokens 9.6 -> 11.2 ms on an H200, docs/benchmarks.md): grouping by the
// kernels as well is the next step (docs/experiments/shared_execs_launch_signature.patch, not measured yet).
int graph_runner::place(captured_graphs& out, int index, std::size_t k, captured_graphs* previous,
                        update_report* rep) {
  const segment& sg = out.buckets[static_cast<std::size_t>(index)].segs[k];
  const int share = opts_.executables_per_segment;
  if (share > 0) {
    for (std::size_t gi = 0; gi < out.groups.size(); ++gi) {
      exec_group& grp = out.groups[gi];
      if (grp.position != k || grp.nodes != sg.nodes) continue;
      exec_slot& probe = grp.slots.front();
      if (!probe.exec.update(sg.g)) continue;  // another topology
      const segment& held = out.buckets[static_cast<std::size_t>(probe.bucket)].segs[k];
      if (!probe.exec.update(held.g))
        throw error(fmt::format("runner '{}': cudaGraphExecUpdate could not restore bucket {} segment {}",
                                opts_.name, out.buckets[static_cast<std::size_t>(probe.bucket)].stats.size, k));
      if (static_cast<int>(grp.slots.size()) < share) grp.slots.push_back(new_slot(out, index, k, previous, rep));
      return static_cast<int>(gi);
    }
  }
  exec_group grp;
  grp.position = k;
  grp.nodes = sg.nodes;
  grp.slots.push_back(new_slot(out, index, k, previous, rep));
  out.groups.push_back(std::move(grp));
  return static_cast<int>(out.groups.size() - 1);
}

// Pass 1 captures every bucket (largest first), so a capture failure leaves `previous`
// untouched; pass 2 places each segment in an executable group (place()), instantiating or
// updating the executables of `previous`, and fills the statistics the same way for both.
graph_runner::captured_graphs graph_runner::build(int warmups, captured_graphs* previous, update_report* rep,
                                                  const progress_fn& progress) {
  const auto t_start = clock_type::now();
  const cudaStream_t cs = capture_stream_.get();
  const auto& sizes = buckets_.sizes();
  const int nb = static_cast<int>(sizes.size());
  captured_graphs out;
  out.buckets.resize(sizes.size());
  std::vector<std::string> diags;

  for (int i = nb - 1; i >= 0; --i) {
    const int size = sizes[static_cast<std::size_t>(i)];
    const auto tw = clock_type::now();
    for (int w = 0; w < warmups; ++w) {
      try {
        eager_forward(size, size, cs);
        capture_stream_.synchronize();
      } catch (const std::exception& e) {
        (void)cudaGetLastError();
        last_real_ = -1;
        throw capture_error(size, -1, fmt::format("runner '{}': warm-up run {} of bucket {} failed: {}",
                                                  opts_.name, w, size, e.what()));
      }
    }
    last_real_ = -1;  // the capture stream wrote the device count
    bucket_graphs& bg = out.buckets[static_cast<std::size_t>(i)];
    bg.stats.size = size;
    bg.stats.warmup_ms = warmups > 0 ? ms_since(tw) : 0.0;
    const auto t0 = clock_type::now();
    bg.segs = capture_bucket(size);
    bg.stats.capture_ms = ms_since(t0);
    bg.stats.segments = static_cast<int>(bg.segs.size());
    for (std::size_t k = 0; k < bg.segs.size(); ++k) {
      const graph_node_counts c = inspect_graph(bg.segs[k].g.get());
      bg.segs[k].nodes = c.total;
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
      }
    }
  }

  for (int i = nb - 1, done = 0; i >= 0; --i, ++done) {
    bucket_graphs& bg = out.buckets[static_cast<std::size_t>(i)];
    const int size = bg.stats.size;
    if (previous != nullptr && static_cast<std::size_t>(i) < previous->buckets.size())
      bg.stats.replays = previous->buckets[static_cast<std::size_t>(i)].stats.replays;
    std::size_t free0 = 0, free1 = 0, total = 0;
    PIECEWISE_CUDA_TRY(cudaMemGetInfo(&free0, &total));
    const auto t1 = clock_type::now();
    for (std::size_t k = 0; k < bg.segs.size(); ++k) {
      if (bg.segs[k].nodes == 0) continue;
      try {
        bg.segs[k].group = place(out, i, k, previous, rep);
      } catch (const std::exception& e) {
        throw capture_error(size, static_cast<int>(k),
                            fmt::format("runner '{}': instantiating bucket {} segment {} failed: {}", opts_.name,
                                        size, k, e.what()));
      }
    }
    capture_stream_.synchronize();
    PIECEWISE_CUDA_TRY(cudaMemGetInfo(&free1, &total));
    bg.stats.instantiate_ms = ms_since(t1);
    bg.stats.device_bytes = static_cast<long long>(free0) - static_cast<long long>(free1);
    if (rep != nullptr) ++rep->buckets;
    if (progress)
      progress(capture_progress{size, done, nb, bg.stats.segments, bg.stats.nodes, free1, total, ms_since(t_start)});
  }
  diagnostics_ = std::move(diags);
  for (const auto& d : diagnostics_) log(log_level::warning, fmt::format("runner '{}': {}", opts_.name, d));
  return out;
}

void graph_runner::remember_capture() {
  captured_version_ = table_.version();
  captured_addresses_ = table_.addresses();
  captured_splits_ = table_.split_layers();
  last_real_ = -1;
}

void graph_runner::capture(const progress_fn& progress) {
  resolve_mode();
  if (mode_ == mode::eager) return;
  const auto t0 = clock_type::now();
  captured_graphs fresh = build(opts_.warmup_runs, nullptr, nullptr, progress);
  graphs_ = std::move(fresh.buckets);
  groups_ = std::move(fresh.groups);
  remember_capture();
  capture_ms_ = ms_since(t0);
  log(log_level::info, fmt::format("runner '{}': captured {} buckets in {:.1f} ms ({})", opts_.name,
                                   graphs_.size(), capture_ms_, reason_));
}

update_report graph_runner::update(const progress_fn& progress) {
  update_report rep;
  if (mode_ == mode::eager) return rep;
  if (graphs_.empty())
    throw error(fmt::format("graph_runner '{}': update() needs an earlier capture()", opts_.name));
  const auto t0 = clock_type::now();
  captured_graphs old{std::move(graphs_), std::move(groups_)};
  try {
    captured_graphs fresh = build(0, &old, &rep, progress);
    graphs_ = std::move(fresh.buckets);
    groups_ = std::move(fresh.groups);
  } catch (const capture_error&) {
    // A capture failure happens before any executable is touched: the old graphs stay. An
    // instantiation failure may have moved executables out of them: then nothing is left to
    // replay.
    const bool intact = std::all_of(old.groups.begin(), old.groups.end(), [](const exec_group& g) {
      return std::all_of(g.slots.begin(), g.slots.end(), [](const exec_slot& sl) { return static_cast<bool>(sl.exec); });
    });
    if (intact) {
      graphs_ = std::move(old.buckets);
      groups_ = std::move(old.groups);
    } else {
      graphs_.clear();
      groups_.clear();
    }
    throw;
  }
  remember_capture();
  rep.ms = capture_ms_ = ms_since(t0);
  log(log_level::info, fmt::format("runner '{}': {}", opts_.name, rep.to_string()));
  return rep;
}

// ---- validation, export, report ---------------------------------------------------------

validation_report graph_runner::validate_against_eager(int real_tokens, cudaStream_t s,
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
    for (std::size_t j = 0; j < a.size(); ++j) {
      if (a[j] == e[j]) continue;
      ++rep.mismatched_bytes;
      if (rep.first_mismatch.empty())
        rep.first_mismatch = fmt::format("output '{}' row {} byte {}", b.name, j / b.row_bytes, j % b.row_bytes);
    }
    if (b.type != element_type::bytes) {
      const std::size_t es = element_size(b.type);
      for (std::size_t j = 0; j + es <= a.size(); j += es)
        rep.max_abs_diff = std::max(
            rep.max_abs_diff, std::abs(element_to_double(&a[j], b.type) - element_to_double(&e[j], b.type)));
    }
  }
  rep.bitwise_equal = rep.mismatched_bytes == 0;
  return rep;
}

std::vector<std::string> graph_runner::export_dot(int bucket, const std::string& dir) const {
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

std::string graph_runner::report() const {
  std::string r = fmt::format("runner '{}': mode {} — {}\n", opts_.name, to_string(mode_), reason_);
  r += fmt::format("  buckets: {}\n", buckets_.to_string());
  if (!graphs_.empty()) {
    graph_node_counts nodes;
    double warm = 0, cap = 0, inst = 0;
    long long bytes = 0;
    int segs = 0, execs = 0;
    for (const auto& b : graphs_) {
      nodes += b.stats.nodes;
      warm += b.stats.warmup_ms;
      cap += b.stats.capture_ms;
      inst += b.stats.instantiate_ms;
      bytes += b.stats.device_bytes;
      segs += b.stats.segments;
      execs += b.stats.executables;
    }
    r += fmt::format("  captured {} buckets, {} graphs ({}) in {:.1f} ms ({:.1f} ms warm-up, {:.1f} ms capture, "
                     "{:.1f} ms instantiate+upload), {} executables{}, device memory +{:.1f} MiB\n",
                     graphs_.size(), segs, to_string(nodes), capture_ms_, warm, cap, inst, execs,
                     opts_.executables_per_segment > 0
                         ? fmt::format(" (at most {} per segment position and topology, {} groups)",
                                       opts_.executables_per_segment, groups_.size())
                         : std::string(),
                     bytes / 1048576.0);
  }
  const auto& st = run_stats_;
  r += fmt::format("  forwards {}: {} replays, {} eager ({} fallbacks above the largest bucket); "
                   "tokens real {} padded {} ({:.1f}% padding)\n",
                   st.forwards, st.graph_replays, st.eager_runs, st.eager_fallbacks, st.real_tokens,
                   st.padded_tokens,
                   st.padded_tokens ? 100.0 * (st.padded_tokens - st.real_tokens) / st.padded_tokens : 0.0);
  if (opts_.executables_per_segment > 0)
    r += fmt::format("  shared executables re-pointed at replay: {} ({:.2f} ms of host time)\n",
                     st.executable_switches, st.executable_switch_ms);
  for (const auto& d : diagnostics_) r += fmt::format("  warning: {}\n", d);
  return r;
}

}  // namespace piecewise
