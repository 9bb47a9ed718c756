// Static FP8 quantization of GEMM inputs (see quantize_fp8.cuh).
#include "kernels/pdl.cuh"
#include "kernels/quantize_fp8.cuh"

#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

namespace nemotron_h {

namespace {

/// Eight bf16 of a row to eight e4m3 bytes: one 16-byte load, one 8-byte store a thread.
__global__ void quantize_fp8_kernel(const bf16* __restrict__ x, int ldx, const float* __restrict__ scale,
                                    std::uint8_t* __restrict__ q, int ldq, int M, int K) {
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  const float s = *scale;
  const int groups = K / 8;
  const long long total = static_cast<long long>(M) * groups;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int m = static_cast<int>(i / groups), k = static_cast<int>(i % groups) * 8;
    union {
      uint4 u;
      bf16 h[8];
    } in;
    in.u = *reinterpret_cast<const uint4*>(x + static_cast<long long>(m) * ldx + k);
    union {
      uint2 u;
      __nv_fp8_storage_t b[8];
    } out;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      out.b[j] = __nv_cvt_float_to_fp8(__fdiv_rn(to_float(in.h[j]), s), __NV_SATFINITE, __NV_E4M3);
    }
    *reinterpret_cast<uint2*>(q + static_cast<long long>(m) * ldq + k) = out.u;
  }
}

}  // namespace

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
  const int blocks = static_cast<int>(std::min<long long>((work + threads - 1) / threads, multiprocessors() * 8LL));
  launch_pdl("quantize_fp8_rows", quantize_fp8_kernel, blocks, threads, 0, stream, x, ldx, scale, q, ldq, M, K);
  NH_CHECK_LAUNCH("quantize_fp8_rows (M=" + std::to_string(M) + ", K=" + std::to_string(K) + ")");
}

}  // namespace nemotron_h
