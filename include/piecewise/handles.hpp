// piecewise/handles.hpp — move-only RAII owners for CUDA streams, events, graphs, graph
// executables and device memory ("one handle, one owner").
//
// All five are one template, detail::unique_handle, with a destroy function and a live
// counter per kind; each class adds only what its kind can do. Constructors and member
// functions throw piecewise::cuda_error on failure. Destructors never throw: a failing
// destroy call is ignored (it can only fail at process teardown, cudaErrorCudartUnloading, or
// on a handle the driver already lost).
//
// `live_handles()` counts the handles and device bytes owned by these wrappers, so tests can
// prove that failed captures, and long runs, leak nothing of this process's own.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <utility>

#include "piecewise/cuda_error.hpp"

namespace piecewise {

/// Number of live owners of each handle kind (created by these wrappers, not yet destroyed),
/// and the device memory held by live device_buffers (device_arena uses one).
struct handle_counts {
  long streams = 0;
  long events = 0;
  long graphs = 0;
  long graph_execs = 0;
  long device_buffers = 0;
  long long device_bytes = 0;

  friend bool operator==(const handle_counts& a, const handle_counts& b) noexcept {
    return a.streams == b.streams && a.events == b.events && a.graphs == b.graphs &&
           a.graph_execs == b.graph_execs && a.device_buffers == b.device_buffers &&
           a.device_bytes == b.device_bytes;
  }
  friend bool operator!=(const handle_counts& a, const handle_counts& b) noexcept { return !(a == b); }
};

namespace detail {
struct handle_counters {
  std::atomic<long> streams{0}, events{0}, graphs{0}, graph_execs{0}, device_buffers{0};
  std::atomic<long long> device_bytes{0};
};
inline handle_counters& counters() noexcept {
  static handle_counters c;
  return c;
}

/// The owner all handle classes share. `Kind` supplies `using native = ...;`,
/// `static void destroy(native) noexcept` and `static std::atomic<long>& count() noexcept`.
template <typename Kind>
class unique_handle {
 public:
  using native_type = typename Kind::native;

  unique_handle() = default;
  ~unique_handle() { reset(); }
  unique_handle(unique_handle&& o) noexcept : h_(std::exchange(o.h_, native_type{})) {}
  unique_handle& operator=(unique_handle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, native_type{});
    }
    return *this;
  }
  unique_handle(const unique_handle&) = delete;
  unique_handle& operator=(const unique_handle&) = delete;

  [[nodiscard]] native_type get() const noexcept { return h_; }
  [[nodiscard]] explicit operator bool() const noexcept { return h_ != native_type{}; }
  /// Gives up ownership and returns the handle (no longer counted).
  native_type release() noexcept {
    if (h_ != native_type{}) --Kind::count();
    return std::exchange(h_, native_type{});
  }
  /// Destroys the handle now (no-op when empty).
  void reset() noexcept {
    if (h_ != native_type{}) {
      Kind::destroy(h_);
      --Kind::count();
      h_ = native_type{};
    }
  }

 protected:
  /// Takes ownership of `h` (may be null) and counts it.
  void adopt(native_type h) noexcept {
    reset();
    h_ = h;
    if (h_ != native_type{}) ++Kind::count();
  }
  native_type h_{};
};

struct stream_kind {
  using native = cudaStream_t;
  static void destroy(native s) noexcept { (void)cudaStreamDestroy(s); }
  static std::atomic<long>& count() noexcept { return counters().streams; }
};
struct event_kind {
  using native = cudaEvent_t;
  static void destroy(native e) noexcept { (void)cudaEventDestroy(e); }
  static std::atomic<long>& count() noexcept { return counters().events; }
};
struct graph_kind {
  using native = cudaGraph_t;
  static void destroy(native g) noexcept { (void)cudaGraphDestroy(g); }
  static std::atomic<long>& count() noexcept { return counters().graphs; }
};
struct graph_exec_kind {
  using native = cudaGraphExec_t;
  static void destroy(native e) noexcept { (void)cudaGraphExecDestroy(e); }
  static std::atomic<long>& count() noexcept { return counters().graph_execs; }
};
struct device_memory_kind {
  using native = void*;
  static void destroy(native p) noexcept { (void)cudaFree(p); }
  static std::atomic<long>& count() noexcept { return counters().device_buffers; }
};
}  // namespace detail

/// Snapshot of the live handle counts and device bytes. Capture-safe (host only).
inline handle_counts live_handles() noexcept {
  auto& c = detail::counters();
  return {c.streams.load(), c.events.load(), c.graphs.load(), c.graph_execs.load(),
          c.device_buffers.load(), c.device_bytes.load()};
}

/// Owning CUDA stream. Default: non-blocking with respect to the legacy default stream.
class stream : public detail::unique_handle<detail::stream_kind> {
 public:
  /// Creates the stream; throws cuda_error. Not capture-safe.
  explicit stream(unsigned flags = cudaStreamNonBlocking) {
    cudaStream_t s = nullptr;
    PIECEWISE_CUDA_TRY(cudaStreamCreateWithFlags(&s, flags));
    adopt(s);
  }
  operator cudaStream_t() const noexcept { return h_; }  // NOLINT: implicit view is intended
  /// Blocks until all work on the stream is done; throws cuda_error. Not capture-safe.
  void synchronize() const { PIECEWISE_CUDA_TRY(cudaStreamSynchronize(h_)); }
  /// Like synchronize(), returning the error instead of throwing.
  cudaError_t synchronize_no_throw() const noexcept { return cudaStreamSynchronize(h_); }
};

/// Owning CUDA event. Default: timing disabled (cheapest for ordering).
class event : public detail::unique_handle<detail::event_kind> {
 public:
  /// Creates the event; throws cuda_error. Not capture-safe.
  explicit event(unsigned flags = cudaEventDisableTiming) {
    cudaEvent_t e = nullptr;
    PIECEWISE_CUDA_TRY(cudaEventCreateWithFlags(&e, flags));
    adopt(e);
  }
  /// Records the event on `s`. Capture-safe (becomes an event-record node or a fork point).
  void record(cudaStream_t s) const { PIECEWISE_CUDA_TRY(cudaEventRecord(h_, s)); }
  /// Makes `s` wait for the event. Capture-safe (joins a forked stream back).
  void wait(cudaStream_t s) const { PIECEWISE_CUDA_TRY(cudaStreamWaitEvent(s, h_, 0)); }
  /// Blocks until the event completes; throws cuda_error. Not capture-safe.
  void synchronize() const { PIECEWISE_CUDA_TRY(cudaEventSynchronize(h_)); }
  /// Milliseconds between `start` and this event (both need timing enabled).
  [[nodiscard]] float elapsed_ms_since(const event& start) const {
    float ms = 0;
    PIECEWISE_CUDA_TRY(cudaEventElapsedTime(&ms, start.h_, h_));
    return ms;
  }
};

/// Owning cudaGraph_t (a captured or built graph, not yet executable).
class graph : public detail::unique_handle<detail::graph_kind> {
 public:
  graph() = default;
  /// Takes ownership of `g` (may be null).
  static graph from_native_handle(cudaGraph_t g) noexcept {
    graph r;
    r.adopt(g);
    return r;
  }
};

/// Owning cudaGraphExec_t, made by instantiate().
class graph_exec : public detail::unique_handle<detail::graph_exec_kind> {
 public:
  graph_exec() = default;
  /// Instantiates `g` and, when `upload_stream` is given, uploads it so the first launch
  /// costs no more than later ones. Throws cuda_error. Not capture-safe.
  static graph_exec instantiate(const graph& g, cudaStream_t upload_stream = nullptr,
                                unsigned long long flags = 0) {
    graph_exec r;
    cudaGraphExec_t e = nullptr;
    PIECEWISE_CUDA_TRY(cudaGraphInstantiateWithFlags(&e, g.get(), flags));
    r.adopt(e);
    if (upload_stream != nullptr) PIECEWISE_CUDA_TRY(cudaGraphUpload(e, upload_stream));
    return r;
  }
  /// Launches the executable on `s`; throws cuda_error. Asynchronous.
  void launch(cudaStream_t s) const { PIECEWISE_CUDA_TRY(cudaGraphLaunch(h_, s)); }
  /// Applies `g` (same topology) to this executable. Returns true on success; on a topology
  /// mismatch returns false and stores the reason code in `*why` (if given). Throws on
  /// other errors. Not capture-safe.
  bool update(const graph& g, cudaGraphExecUpdateResult* why = nullptr) {
    cudaGraphExecUpdateResultInfo info{};
    cudaError_t st = cudaGraphExecUpdate(h_, g.get(), &info);
    if (why != nullptr) *why = info.result;
    if (st == cudaErrorGraphExecUpdateFailure) {
      (void)cudaGetLastError();
      return false;
    }
    PIECEWISE_CUDA_TRY(st);
    return true;
  }
};

/// Owning device allocation (cudaMalloc), counted with its size in live_handles().
class device_buffer : public detail::unique_handle<detail::device_memory_kind> {
 public:
  device_buffer() = default;
  /// Allocates `bytes` (> 0) of device memory. Throws config_error for 0 bytes, cuda_error
  /// naming the size and `what` when cudaMalloc fails. Not capture-safe.
  explicit device_buffer(std::size_t bytes, const char* what = "device_buffer") {
    PIECEWISE_EXPECTS(bytes > 0, "{}: cannot allocate 0 bytes", what);
    void* p = nullptr;
    PIECEWISE_CUDA_TRY_CTX(cudaMalloc(&p, bytes), fmt::format("{} of {} bytes", what, bytes));
    adopt(p);
    bytes_ = bytes;
    detail::counters().device_bytes += static_cast<long long>(bytes);
  }
  ~device_buffer() { free(); }
  device_buffer(device_buffer&& o) noexcept
      : unique_handle(std::move(o)), bytes_(std::exchange(o.bytes_, 0)) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      free();
      unique_handle::operator=(std::move(o));
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  /// Frees the memory now (no-op when empty).
  void free() noexcept {
    if (h_ != nullptr) detail::counters().device_bytes -= static_cast<long long>(bytes_);
    bytes_ = 0;
    unique_handle::reset();
  }
  void reset() noexcept { free(); }
  /// Gives up ownership (the caller must cudaFree it); no longer counted.
  void* release() noexcept {
    detail::counters().device_bytes -= static_cast<long long>(bytes_);
    bytes_ = 0;
    return unique_handle::release();
  }
  [[nodiscard]] void* data() const noexcept { return h_; }
  template <typename T>
  [[nodiscard]] T* as() const noexcept {
    return static_cast<T*>(h_);
  }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

 private:
  std::size_t bytes_ = 0;
};

}  // namespace piecewise
