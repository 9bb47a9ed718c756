// Roofline probes for the NemotronH benchmarks: the card's measured device-memory copy
// bandwidth and bf16 tensor-core GEMM rate, so kernels can be reported as a fraction of
// what this card actually reaches. Header-only; include from benchmark sources.
// Neither function is capture-safe (they allocate, synchronize and time with events).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "bench/event_timer.cuh"
#include "kernels/common.cuh"
#include "kernels/gemm.cuh"

namespace nemotron_h {

namespace roofline_detail {

// Deterministic pseudo-random bf16 in [-scale, scale). A template so the header stays
// ODR-safe when included by several translation units.
template <int Unused = 0>
__global__ void fill_random_bf16(bf16* p, std::size_t n, std::uint32_t seed, float scale) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    h *= 3266489917u;
    h ^= h >> 16;
    p[i] = to_bf16(scale * (static_cast<float>(h & 0xFFFFFF) / 8388608.f - 1.f));
  }
}

}  // namespace roofline_detail

/// Fills n bf16 values with deterministic pseudo-random data in [-scale, scale) on `stream`.
/// Capture-safe (one kernel), but meant for benchmark setup.
inline void fill_random(bf16* p, std::size_t n, std::uint32_t seed, float scale = 1.f,
                        cudaStream_t stream = nullptr) {
  roofline_detail::fill_random_bf16<<<1024, 256, 0, stream>>>(p, n, seed, scale);
  NH_CHECK_LAUNCH("fill_random");
}

/// Device-to-device copy bandwidth in GB/s (1e9 bytes/s), counting bytes read + written, of a
/// 1 GiB cudaMemcpyAsync (best of 10 after warm-up). Throws piecewise::cuda_error.
inline double measure_copy_bandwidth_gbs() {
  const std::size_t bytes = std::size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  PIECEWISE_CUDA_TRY(cudaMalloc(&src, bytes));
  PIECEWISE_CUDA_TRY(cudaMalloc(&dst, bytes));
  PIECEWISE_CUDA_TRY(cudaMemset(src, 1, bytes));
  const float best_ms = event_timer().best_ms(
      [&] { PIECEWISE_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); });
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * static_cast<double>(bytes) / (best_ms * 1e-3) / 1e9;
}

/// bf16 GEMM rate in TFLOP/s (2*M*N*K / time) of an 8192^3 product on random data through
/// `engine` (best of 10 after warm-up). Throws piecewise::cuda_error / config_error.
inline double measure_bf16_gemm_tflops(gemm_engine& engine) {
  const int n = 8192;
  const std::size_t elems = static_cast<std::size_t>(n) * n;
  bf16 *a = nullptr, *b = nullptr, *c = nullptr;
  PIECEWISE_CUDA_TRY(cudaMalloc(&a, elems * sizeof(bf16)));
  PIECEWISE_CUDA_TRY(cudaMalloc(&b, elems * sizeof(bf16)));
  PIECEWISE_CUDA_TRY(cudaMalloc(&c, elems * sizeof(bf16)));
  fill_random(a, elems, 1u);
  fill_random(b, elems, 2u, 0.05f);
  engine.prepare(n, n, n);
  const float best_ms = event_timer().best_ms([&] { engine.linear(a, b, c, n, n, n, nullptr); });
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return 2.0 * n * static_cast<double>(n) * n / (best_ms * 1e-3) / 1e12;
}

}  // namespace nemotron_h
