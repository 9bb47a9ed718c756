// Helpers shared by the NemotronH kernel GPU tests (dense and Mamba2): device buffers, seeded
// random bf16 data, NaN poisoning, relative-norm errors, packed-batch metadata, streams and
// graph capture.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "tests/batch_buffers.cuh"
#include "tests/device_buffer.cuh"

namespace nh_test {

using nemotron_h::bf16;

/// Random normal values rounded to bf16; `ref` gets the exact (rounded) values as double.
inline std::vector<bf16> rand_bf16(std::size_t n, std::mt19937& gen, double sd,
                                   std::vector<double>* ref, double mean = 0.0) {
  std::normal_distribution<float> d(static_cast<float>(mean), static_cast<float>(sd));
  std::vector<bf16> h(n);
  if (ref != nullptr) ref->resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    h[i] = __float2bfloat16(d(gen));
    if (ref != nullptr) (*ref)[i] = static_cast<double>(__bfloat162float(h[i]));
  }
  return h;
}

inline std::vector<double> to_double(const std::vector<bf16>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = __bfloat162float(v[i]);
  return r;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// ||a - b|| / ||b||; +inf when a holds a NaN/inf (unwritten, poisoned outputs fail).
inline double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}

inline bool is_poison(bf16 v) {
  std::uint16_t b;
  std::memcpy(&b, &v, 2);
  return b == 0xFFFF;
}

/// Owning stream (non-blocking, so it never syncs with the legacy default stream).
struct stream {
  cudaStream_t s = nullptr;
  stream() { PIECEWISE_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~stream() { cudaStreamDestroy(s); }
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  void sync() const { PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s)); }
};

/// Captures `body(s)` on stream `s` (thread-local capture mode) into a graph executable that
/// it owns. If `body` or a CUDA call throws, the capture is ended and discarded first.
class captured {
 public:
  captured(cudaStream_t s, const std::function<void(cudaStream_t)>& body) : s_(s) {
    cudaGraph_t g = nullptr;
    PIECEWISE_CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    try {
      body(s);
    } catch (...) {
      cudaStreamEndCapture(s, &g);
      if (g != nullptr) cudaGraphDestroy(g);
      throw;
    }
    PIECEWISE_CUDA_TRY(cudaStreamEndCapture(s, &g));
    PIECEWISE_CUDA_TRY(cudaGraphInstantiate(&exec_, g, 0));
    cudaGraphDestroy(g);
  }
  ~captured() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
  }
  captured(const captured&) = delete;
  captured& operator=(const captured&) = delete;

  /// Launches the graph on `s` without waiting.
  void launch(cudaStream_t s) const { PIECEWISE_CUDA_TRY(cudaGraphLaunch(exec_, s)); }
  /// Launches the graph on the capture stream and waits for it.
  void replay() const {
    launch(s_);
    PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s_));
  }

 private:
  cudaStream_t s_;
  cudaGraphExec_t exec_ = nullptr;
};

/// Runs body(s) once on a new stream, eagerly or (graph) captured and replayed, and waits.
inline void run_once(bool graph, const std::function<void(cudaStream_t)>& body) {
  stream st;
  if (graph) {
    captured g(st.s, body);
    g.replay();
  } else {
    body(st.s);
    st.sync();
  }
}

}  // namespace nh_test
