// Static FP8 quantization of GEMM inputs (see quantize_fp8.cuh).
#include "kernels/pdl.cuh"
#include "kernels/quantize_fp8.cuh"
#include "kernels/fp8_device.cuh"

#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

namespace nemotron_h {

namespace {

/// Eight bf16 of a row to eight e4m3 bytes: one 16-byte load, one 8-byte store a thread.
/// Index: 32-bit when the M * K / 8 pieces fit (the row / column split of a piece is then a
/// 32-bit division, not a 64-bit one).
template <typename Index>
__global__ void quantize_fp8_kernel(const bf16* __restrict__ x, int ldx, const float* __restrict__ scale,
                                    std::uint8_t* __restrict__ q, int ldq, int M, int K) {
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  const e4m3_quantizer quant(*scale);
  const auto groups = static_cast<Index>(K / 8);
  const Index total = static_cast<Index>(M) * groups;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = blockIdx.x * static_cast<Index>(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const Index m = i / groups, k = (i - m * groups) * 8;
    union {
      uint4 u;
      bf16 h[8];
    } in;
    in.u = *reinterpret_cast<const uint4*>(x + static_cast<std::size_t>(m) * ldx + k);
    union {
      uint2 u;
      std::uint8_t b[8];
    } out;
#pragma unroll
    for (int j = 0; j < 8; ++j) out.b[j] = quant(to_float(in.h[j]));
    *reinterpret_cast<uint2*>(q + static_cast<std::size_t>(m) * ldq + k) = out.u;
  }
}

/// Largest |x| of rows of K (multiple of 8) elements: 8 a thread, a warp's max, one atomic a warp.
__global__ void amax_rows_kernel(const bf16* __restrict__ x, int ldx, int M, int K, float* __restrict__ amax) {
  pdl_wait();
  const int groups = K / 8;
  const long long total = static_cast<long long>(M) * groups;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  float m = 0.0f;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int r = static_cast<int>(i / groups), k = static_cast<int>(i % groups) * 8;
    union {
      uint4 u;
      bf16 h[8];
    } in;
    in.u = *reinterpret_cast<const uint4*>(x + static_cast<long long>(r) * ldx + k);
#pragma unroll
    for (int j = 0; j < 8; ++j) m = fmaxf(m, fabsf(to_float(in.h[j])));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  // Non-negative floats order as their bit patterns do.
  if ((threadIdx.x & 31) == 0 && m > 0.0f) atomicMax(reinterpret_cast<unsigned int*>(amax), __float_as_uint(m));
}

__global__ void scale_from_amax_kernel(const float* __restrict__ amax, float* __restrict__ scale) {
  pdl_wait();
  const float a = *amax;
  *scale = a > 0.0f ? __fdiv_rn(a, 448.0f) : 1.0f;
}

/// Eight weights a thread (one 16-byte load, one 8-byte store); the last group may be short.
__global__ void quantize_weight_kernel(const bf16* __restrict__ w, std::size_t n, const float* __restrict__ scale,
                                       std::uint8_t* __restrict__ q) {
  pdl_wait();
  const double s = static_cast<double>(*scale);
  const std::size_t groups = (n + 7) / 8;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t g = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; g < groups; g += stride) {
    const std::size_t i = g * 8;
    if (i + 8 <= n) {
      union {
        uint4 u;
        bf16 h[8];
      } in;
      in.u = *reinterpret_cast<const uint4*>(w + i);
      union {
        uint2 u;
        std::uint8_t b[8];
      } out;
#pragma unroll
      for (int j = 0; j < 8; ++j) out.b[j] = e4m3_of_double(static_cast<double>(to_float(in.h[j])) / s);
      *reinterpret_cast<uint2*>(q + i) = out.u;
    } else {
      for (std::size_t j = i; j < n; ++j) q[j] = e4m3_of_double(static_cast<double>(to_float(w[j])) / s);
    }
  }
}

}  // namespace

void amax_abs_rows(const bf16* x, int ldx, int M, int K, float* amax, cudaStream_t stream) {
  if (!(M >= 0 && K > 0 && K % 8 == 0 && ldx % 8 == 0 && ldx >= K && reinterpret_cast<std::uintptr_t>(x) % 16 == 0 &&
        amax != nullptr)) {
    char buf[200];
    std::snprintf(buf, sizeof(buf),
                  "amax_abs_rows: M=%d K=%d ldx=%d: K and ldx must be multiples of 8 (ldx >= K), x 16-byte aligned, "
                  "the output given",
                  M, K, ldx);
    throw piecewise::config_error(buf);
  }
  if (M == 0) return;
  const int threads = 256;
  launch_pdl("amax_abs_rows", amax_rows_kernel, grid_stride_blocks(static_cast<long long>(M) * (K / 8), threads), threads, 0,
             stream, x, ldx, M, K, amax);
  NH_CHECK_LAUNCH("amax_abs_rows (M=" + std::to_string(M) + ", K=" + std::to_string(K) + ")");
}

void fp8_scale_from_amax(const float* amax, float* scale, cudaStream_t stream) {
  if (amax == nullptr || scale == nullptr) throw piecewise::config_error("fp8_scale_from_amax: null pointer");
  launch_pdl("fp8_scale_from_amax", scale_from_amax_kernel, 1, 1, 0, stream, amax, scale);
  NH_CHECK_LAUNCH("fp8_scale_from_amax");
}

void quantize_fp8_weight(const bf16* w, std::size_t n, const float* scale, std::uint8_t* q, cudaStream_t stream) {
  if (!(reinterpret_cast<std::uintptr_t>(w) % 16 == 0 && reinterpret_cast<std::uintptr_t>(q) % 8 == 0 &&
        scale != nullptr && w != nullptr && q != nullptr)) {
    throw piecewise::config_error("quantize_fp8_weight: w must be 16-byte and q 8-byte aligned, the scale given");
  }
  if (n == 0) return;
  const int threads = 256;
  launch_pdl("quantize_fp8_weight", quantize_weight_kernel, grid_stride_blocks(static_cast<long long>((n + 7) / 8), threads),
             threads, 0, stream, w, n, scale, q);
  NH_CHECK_LAUNCH("quantize_fp8_weight (n=" + std::to_string(n) + ")");
}

void quantize_fp8_rows(const bf16* x, int ldx, const float* scale, std::uint8_t* q, int ldq, int M, int K,
                       cudaStream_t stream) {
  auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  if (!(M >= 0 && K > 0 && K % 8 == 0 && ldx % 8 == 0 && ldq % 8 == 0 && ldx >= K && ldq >= K && aligned(x) &&
        aligned(q) && scale != nullptr)) {
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "quantize_fp8_rows: M=%d K=%d ldx=%d ldq=%d: K and the strides must be multiples of 8 (>= K), "
                  "x and q 16-byte aligned, the scale given",
                  M, K, ldx, ldq);
    throw piecewise::config_error(buf);
  }
  if (M == 0) return;
  const int threads = 256;
  const long long work = static_cast<long long>(M) * (K / 8);
  const int blocks = grid_stride_blocks(work, threads);
  // 32-bit indices unless the pieces and the grid's stride past the last one could overflow them.
  if (work + static_cast<long long>(blocks) * threads < (1LL << 32)) {
    launch_pdl("quantize_fp8_rows", quantize_fp8_kernel<unsigned>, blocks, threads, 0, stream, x, ldx, scale, q, ldq,
               M, K);
  } else {
    launch_pdl("quantize_fp8_rows", quantize_fp8_kernel<unsigned long long>, blocks, threads, 0, stream, x, ldx, scale,
               q, ldq, M, K);
  }
  NH_CHECK_LAUNCH("quantize_fp8_rows (M=" + std::to_string(M) + ", K=" + std::to_string(K) + ")");
}

}  // namespace nemotron_h
