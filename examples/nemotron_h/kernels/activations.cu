// Squared ReLU (see activations.cuh).
#include "kernels/pdl.cuh"
#include "kernels/activations.cuh"
#include "kernels/fp8_device.cuh"

#include <algorithm>
#include <cstdint>
#include <string>

namespace nemotron_h {

namespace {

__device__ inline bf16 relu2_one(bf16 v) {
  const float f = fmaxf(to_float(v), 0.f);
  return to_bf16(f * f);
}

__global__ void relu2_kernel(bf16* __restrict__ x, std::size_t n) {
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  const std::size_t nv = n / 8;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  const std::size_t tid = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  uint4* xv = reinterpret_cast<uint4*>(x);
  for (std::size_t i = tid; i < nv; i += stride) {
    union {
      uint4 u;
      bf16 h[8];
    } p;
    p.u = xv[i];
#pragma unroll
    for (int j = 0; j < 8; ++j) p.h[j] = relu2_one(p.h[j]);
    xv[i] = p.u;
  }
  for (std::size_t i = nv * 8 + tid; i < n; i += stride) x[i] = relu2_one(x[i]);
}

__global__ void relu2_scalar_kernel(bf16* __restrict__ x, std::size_t n) {
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    x[i] = relu2_one(x[i]);
  }
}

__global__ void relu2_fp8_kernel(const bf16* __restrict__ x, std::size_t n, const float* __restrict__ scale,
                                 std::uint8_t* __restrict__ q) {
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  const e4m3_quantizer quant(*scale);
  const std::size_t nv = n / 8;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < nv; i += stride) {
    union {
      uint4 u;
      bf16 h[8];
    } p;
    p.u = reinterpret_cast<const uint4*>(x)[i];
    union {
      uint2 u;
      std::uint8_t b[8];
    } o;
#pragma unroll
    for (int j = 0; j < 8; ++j) o.b[j] = quant(to_float(relu2_one(p.h[j])));
    reinterpret_cast<uint2*>(q)[i] = o.u;
  }
}

}  // namespace

void relu2_fp8(const bf16* x, std::size_t n, const float* scale, std::uint8_t* q, cudaStream_t stream) {
  if (n == 0) return;
  if (!(n % 8 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && reinterpret_cast<std::uintptr_t>(q) % 8 == 0 &&
        scale != nullptr && x != nullptr && q != nullptr)) {
    throw piecewise::config_error("relu2_fp8 (n=" + std::to_string(n) +
                                  "): n must be a multiple of 8, x 16-byte and q 8-byte aligned, the scale given");
  }
  const int threads = 256;
  launch_pdl("relu2_fp8", relu2_fp8_kernel, grid_stride_blocks(static_cast<long long>(n / 8), threads), threads, 0,
             stream, x, n, scale, q);
  NH_CHECK_LAUNCH("relu2_fp8 (n=" + std::to_string(n) + ")");
}

void relu2_inplace(bf16* x, std::size_t n, cudaStream_t stream) {
  if (n == 0) return;
  const int threads = 256;
  const bool vec = reinterpret_cast<std::uintptr_t>(x) % 16 == 0;
  const int blocks = grid_stride_blocks(static_cast<long long>(vec ? (n + 7) / 8 : n), threads);
  if (vec) {
    launch_pdl("relu2_inplace", relu2_kernel, blocks, threads, 0, stream, x, n);
  } else {
    launch_pdl("relu2_inplace", relu2_scalar_kernel, blocks, threads, 0, stream, x, n);
  }
  NH_CHECK_LAUNCH("relu2_inplace (n=" + std::to_string(n) + ")");
}

}  // namespace nemotron_h
