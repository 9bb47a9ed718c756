// Shared helpers of the Mamba2 GPU tests: device buffers, packed-batch metadata, bf16
// rounding of random inputs, relative-norm errors, CUDA-graph capture.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "tests/batch_buffers.cuh"
#include "tests/device_buffer.cuh"
#include "piecewise/error.hpp"

namespace mamba_test {

using nemotron_h::bf16;

using nh_test::dbuf;

using nh_test::batch_buffers;

/// n random normal values rounded to bf16: device copy and exact double copy.
inline void random_bf16(std::size_t n, std::mt19937& rng, double scale, std::vector<bf16>& h,
                        std::vector<double>& d) {
  std::normal_distribution<float> dist(0.f, static_cast<float>(scale));
  h.resize(n);
  d.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    h[i] = nemotron_h::to_bf16(dist(rng));
    d[i] = nemotron_h::to_float(h[i]);
  }
}

inline std::vector<double> to_double(const std::vector<bf16>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = nemotron_h::to_float(v[i]);
  return r;
}
inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// ||a - b|| / ||b||; NaN in a gives NaN (fails any tolerance check).
inline double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::sqrt(den > 0 ? den : 1.0);
}

/// Captures `body(stream)` into a graph on a non-blocking stream (thread-local capture
/// mode) and returns the executable; the caller replays it with cudaGraphLaunch.
class captured {
 public:
  explicit captured(const std::function<void(cudaStream_t)>& body) {
    PIECEWISE_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    PIECEWISE_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    body(stream_);
    cudaGraph_t g = nullptr;
    PIECEWISE_CUDA_TRY(cudaStreamEndCapture(stream_, &g));
    PIECEWISE_CUDA_TRY(cudaGraphInstantiate(&exec_, g, 0));
    cudaGraphDestroy(g);
  }
  ~captured() {
    cudaGraphExecDestroy(exec_);
    cudaStreamDestroy(stream_);
  }
  captured(const captured&) = delete;
  captured& operator=(const captured&) = delete;
  void replay() {
    PIECEWISE_CUDA_TRY(cudaGraphLaunch(exec_, stream_));
    PIECEWISE_CUDA_TRY(cudaStreamSynchronize(stream_));
  }

 private:
  cudaStream_t stream_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace mamba_test
