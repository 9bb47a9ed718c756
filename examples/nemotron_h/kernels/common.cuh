// Shared helpers for the NemotronH kernels: bf16 conversions, launch checks, the SM count.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "piecewise/cuda_error.hpp"

namespace nemotron_h {

using bf16 = __nv_bfloat16;

__host__ __device__ inline float to_float(bf16 v) { return __bfloat162float(v); }
__host__ __device__ inline bf16 to_bf16(float v) { return __float2bfloat16(v); }

__host__ __device__ constexpr int ceil_div(long long a, long long b) {
  return static_cast<int>((a + b - 1) / b);
}

/// Multiprocessors of the current device, for sizing grids from host bounds (132 when the
/// query fails, the H100/H200 count; the failure is cleared). Host only, capture-safe.
inline int multiprocessors() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 132;
  }
  return sms;
}

/// printf-style formatting of host messages in CUDA sources (fmt::format does not compile
/// under nvcc in C++20 mode), at most 511 characters. Host only.
template <class... A>
std::string strf(const char* f, A... a) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), f, a...);
  return buf;
}

/// Blocks of `threads` for a grid-stride kernel over `work` items: one item a thread, at most 8
/// blocks a multiprocessor (the loop covers the rest), at least 1. Host only, capture-safe.
inline int grid_stride_blocks(long long work, int threads) {
  const long long want = (work + threads - 1) / threads, cap = multiprocessors() * 8LL;
  return static_cast<int>(want < 1 ? 1 : want < cap ? want : cap);
}

}  // namespace nemotron_h

/// Checks the last launch and throws piecewise::cuda_error naming `what` (the kernel).
#define NH_CHECK_LAUNCH(what) PIECEWISE_CUDA_TRY_CTX(cudaGetLastError(), (what))
