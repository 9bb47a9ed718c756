// Decode GEMV for the NemotronH linear layers at one to four token rows: y[M, N] = x[M, K] W^T
// with W [N, K] bf16 (nn.Linear layout), fp32 accumulation. At these sizes a step streams each
// weight once and the tensor cores idle; cuBLASLt splits K for the narrow projections of
// Nano-30B (N 2688, K 3712 / 4096) and adds a reduction kernel per GEMM. Here one warp (wide
// outputs) or one block of four warps splitting K (N <= 8192, so that narrow outputs keep
// enough loads in flight; NH_GEMV_SPLIT=0 turns that off for A/B runs) computes one output
// column for all M rows; the weight rows are streamed with 16-byte non-allocating,
// double-buffered loads, the first of them in flight before the kernel waits for its
// predecessor (programmatic dependent launch: the weights do not depend on it).
//
// Deterministic: an output element's sum has a fixed order for a given N and K (each lane adds
// its 8-element chunks in K order, a fixed butterfly over the lanes, then the warps in order),
// whatever M or the other rows; it is not the bit pattern cuBLASLt gives, so a shape runs one
// of the two for all modes (gemm_engine picks by M, a host bound).
#pragma once

#include <cuda_runtime.h>

#include "kernels/common.cuh"

namespace nemotron_h {

namespace detail {

/// A 16-byte load of streamed data (weights) that does not allocate in L1.
__device__ __forceinline__ uint4 ld_stream16(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

/// acc += dot(w, x) over 8 bf16 pairs, in element order, fp32 fmaf.
__device__ __forceinline__ void fma8_bf16(float& acc, const uint4& w, const uint4& x) {
  const auto* wh = reinterpret_cast<const __nv_bfloat162*>(&w);
  const auto* xh = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 a = __bfloat1622float2(wh[i]);
    const float2 b = __bfloat1622float2(xh[i]);
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
  }
}

}  // namespace detail

/// The most token rows gemv_bf16 takes (more rows would make it compute-bound on fp32 FMAs).
inline constexpr int kGemvMaxRows = 4;

/// What gemv_bf16 writes: bf16 y = acc (store), bf16 y = y + acc (accumulate, the residual
/// add: one rounding of the fp32 sum), bf16 y = relu(acc)^2 (store_relu2), or fp32 y = acc.
enum class gemv_out { store, accumulate, store_relu2, f32 };

namespace detail {

/// Writes one GEMV output: y[at] = epilogue OUT (a gemv_out as int) of the fp32 sum v.
template <int OUT>
__device__ __forceinline__ void gemv_write(void* y, std::size_t at, float v) {
  if constexpr (OUT == static_cast<int>(gemv_out::f32)) {
    static_cast<float*>(y)[at] = v;
  } else {
    bf16* yb = static_cast<bf16*>(y);
    if constexpr (OUT == static_cast<int>(gemv_out::accumulate)) v = to_float(yb[at]) + v;
    if constexpr (OUT == static_cast<int>(gemv_out::store_relu2)) {
      v = fmaxf(v, 0.0f);
      v *= v;
    }
    yb[at] = to_bf16(v);
  }
}

}  // namespace detail

/// y[m, n] = epilogue(sum_k x[m * ldx + k] * W[n * K + k]) for m < M, n < N. `y` is bf16 or,
/// for gemv_out::f32, float, with row stride ldy (elements). Requires 1 <= M <= kGemvMaxRows,
/// K and ldx multiples of 8, ldx >= K, ldy >= N, x and W 16-byte aligned, y 4-byte aligned
/// (piecewise::config_error naming the shape otherwise). Launched with programmatic dependent
/// launch (kernels/pdl.cuh). Capture-safe.
void gemv_bf16(const bf16* x, int ldx, const bf16* W, int N, int K, void* y, int ldy, int M, gemv_out out,
               cudaStream_t s);

}  // namespace nemotron_h
