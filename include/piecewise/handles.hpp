// piecewise/handles.hpp — move-only RAII owners for CUDA streams, events, graphs and graph
// executables ("one handle, one owner").
//
// Constructors and member functions throw piecewise::cuda_error on failure. Destructors
// never throw: a failing destroy call is ignored (it can only fail at process teardown,
// cudaErrorCudartUnloading, or on a handle the driver already lost).
// `live_handles()` counts the handles owned by these wrappers, so tests can prove that
// failed captures leak nothing.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <utility>

#include "piecewise/error.hpp"

namespace piecewise {

/// Number of live owners of each handle kind (created by these wrappers, not yet destroyed).
struct handle_counts {
  long streams = 0;
  long events = 0;
  long graphs = 0;
  long graph_execs = 0;
};

namespace detail {
struct handle_counters {
  std::atomic<long> streams{0}, events{0}, graphs{0}, graph_execs{0};
};
inline handle_counters& counters() noexcept {
  static handle_counters c;
  return c;
}
}  // namespace detail

/// Snapshot of the live handle counts. Capture-safe (host only).
inline handle_counts live_handles() noexcept {
  auto& c = detail::counters();
  return {c.streams.load(), c.events.load(), c.graphs.load(), c.graph_execs.load()};
}

/// Owning CUDA stream. Default: non-blocking with respect to the legacy default stream.
class stream {
 public:
  explicit stream(unsigned flags = cudaStreamNonBlocking) {
    PIECEWISE_CUDA_TRY(cudaStreamCreateWithFlags(&s_, flags));
    ++detail::counters().streams;
  }
  ~stream() { reset(); }
  stream(stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  stream& operator=(stream&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  [[nodiscard]] cudaStream_t get() const noexcept { return s_; }
  operator cudaStream_t() const noexcept { return s_; }  // NOLINT: implicit view is intended
  /// Blocks until all work on the stream is done; throws cuda_error. Not capture-safe.
  void synchronize() const { PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s_)); }
  /// Like synchronize(), returning the error instead of throwing.
  cudaError_t synchronize_no_throw() const noexcept { return cudaStreamSynchronize(s_); }
  void reset() noexcept {
    if (s_ != nullptr) {
      (void)cudaStreamDestroy(s_);
      --detail::counters().streams;
      s_ = nullptr;
    }
  }

 private:
  cudaStream_t s_ = nullptr;
};

/// Owning CUDA event. Default: timing disabled (cheapest for ordering).
class event {
 public:
  explicit event(unsigned flags = cudaEventDisableTiming) {
    PIECEWISE_CUDA_TRY(cudaEventCreateWithFlags(&e_, flags));
    ++detail::counters().events;
  }
  ~event() { reset(); }
  event(event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  event& operator=(event&& o) noexcept {
    if (this != &o) {
      reset();
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  [[nodiscard]] cudaEvent_t get() const noexcept { return e_; }
  /// Records the event on `s`. Capture-safe (becomes an event-record node or a fork point).
  void record(cudaStream_t s) const { PIECEWISE_CUDA_TRY(cudaEventRecord(e_, s)); }
  /// Makes `s` wait for the event. Capture-safe (joins a forked stream back).
  void wait(cudaStream_t s) const { PIECEWISE_CUDA_TRY(cudaStreamWaitEvent(s, e_, 0)); }
  void synchronize() const { PIECEWISE_CUDA_TRY(cudaEventSynchronize(e_)); }
  /// Milliseconds between `start` and this event (both need timing enabled).
  [[nodiscard]] float elapsed_ms_since(const event& start) const {
    float ms = 0;
    PIECEWISE_CUDA_TRY(cudaEventElapsedTime(&ms, start.e_, e_));
    return ms;
  }
  void reset() noexcept {
    if (e_ != nullptr) {
      (void)cudaEventDestroy(e_);
      --detail::counters().events;
      e_ = nullptr;
    }
  }

 private:
  cudaEvent_t e_ = nullptr;
};

/// Owning cudaGraph_t (a captured or built graph, not yet executable).
class graph {
 public:
  graph() = default;
  /// Takes ownership of `g` (may be null).
  static graph from_native_handle(cudaGraph_t g) noexcept {
    graph r;
    r.g_ = g;
    if (g != nullptr) ++detail::counters().graphs;
    return r;
  }
  ~graph() { reset(); }
  graph(graph&& o) noexcept : g_(std::exchange(o.g_, nullptr)) {}
  graph& operator=(graph&& o) noexcept {
    if (this != &o) {
      reset();
      g_ = std::exchange(o.g_, nullptr);
    }
    return *this;
  }
  graph(const graph&) = delete;
  graph& operator=(const graph&) = delete;

  [[nodiscard]] cudaGraph_t get() const noexcept { return g_; }
  [[nodiscard]] explicit operator bool() const noexcept { return g_ != nullptr; }
  /// Gives up ownership and returns the handle.
  cudaGraph_t release() noexcept {
    if (g_ != nullptr) --detail::counters().graphs;
    return std::exchange(g_, nullptr);
  }
  void reset() noexcept {
    if (g_ != nullptr) {
      (void)cudaGraphDestroy(g_);
      --detail::counters().graphs;
      g_ = nullptr;
    }
  }

 private:
  cudaGraph_t g_ = nullptr;
};

/// Owning cudaGraphExec_t, made by instantiate().
class graph_exec {
 public:
  graph_exec() = default;
  /// Instantiates `g` and, when `upload_stream` is given, uploads it so the first launch
  /// costs no more than later ones. Throws cuda_error. Not capture-safe.
  static graph_exec instantiate(const graph& g, cudaStream_t upload_stream = nullptr,
                                unsigned long long flags = 0) {
    graph_exec r;
    PIECEWISE_CUDA_TRY(cudaGraphInstantiateWithFlags(&r.e_, g.get(), flags));
    ++detail::counters().graph_execs;
    if (upload_stream != nullptr) PIECEWISE_CUDA_TRY(cudaGraphUpload(r.e_, upload_stream));
    return r;
  }
  ~graph_exec() { reset(); }
  graph_exec(graph_exec&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  graph_exec& operator=(graph_exec&& o) noexcept {
    if (this != &o) {
      reset();
      e_ = std::exchange(o.e_, nullptr);
    }
    return *this;
  }
  graph_exec(const graph_exec&) = delete;
  graph_exec& operator=(const graph_exec&) = delete;

  [[nodiscard]] cudaGraphExec_t get() const noexcept { return e_; }
  [[nodiscard]] explicit operator bool() const noexcept { return e_ != nullptr; }
  /// Launches the executable on `s`; throws cuda_error. Asynchronous.
  void launch(cudaStream_t s) const { PIECEWISE_CUDA_TRY(cudaGraphLaunch(e_, s)); }
  /// Applies `g` (same topology) to this executable. Returns true on success; on a topology
  /// mismatch returns false and stores the reason code in `*why` (if given). Throws on
  /// other errors.
  bool update(const graph& g, cudaGraphExecUpdateResult* why = nullptr) {
    cudaGraphExecUpdateResultInfo info{};
    cudaError_t st = cudaGraphExecUpdate(e_, g.get(), &info);
    if (why != nullptr) *why = info.result;
    if (st == cudaErrorGraphExecUpdateFailure) {
      (void)cudaGetLastError();
      return false;
    }
    PIECEWISE_CUDA_TRY(st);
    return true;
  }
  void reset() noexcept {
    if (e_ != nullptr) {
      (void)cudaGraphExecDestroy(e_);
      --detail::counters().graph_execs;
      e_ = nullptr;
    }
  }

 private:
  cudaGraphExec_t e_ = nullptr;
};

}  // namespace piecewise
