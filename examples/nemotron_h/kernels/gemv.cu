// Decode GEMV (see gemv.cuh): one warp an output column, four warps a block.
#include "kernels/gemv.cuh"

#include <cstdint>
#include <cstdio>
#include <string>

#include "kernels/pdl.cuh"

namespace nemotron_h {

namespace {

constexpr int kWarps = 4;   // output columns a block
constexpr int kUnroll = 8;  // 16-byte weight chunks a lane sums a batch (two batches in flight)

template <int M, int OUT>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const bf16* __restrict__ x, int ldx, const bf16* __restrict__ W, int N, int K, void* __restrict__ y,
                int ldy) {
  const int lane = threadIdx.x % 32;
  const int n = blockIdx.x * kWarps + threadIdx.x / 32;
  const int chunks = K / 8;
  const uint4* wrow = reinterpret_cast<const uint4*>(W + static_cast<std::size_t>(n < N ? n : 0) * K);
  // Double-buffered: the next kUnroll chunks of the row are in flight while this batch is
  // summed. The first batch is issued before waiting for the previous kernel (weights are
  // constant).
  uint4 cur[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int c = lane + 32 * u;
    cur[u] = (n < N && c < chunks) ? detail::ld_stream16(wrow + c) : make_uint4(0, 0, 0, 0);
  }
  pdl_wait();
  if (n >= N) return;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  for (int c0 = 0; c0 < chunks; c0 += 32 * kUnroll) {
    uint4 nxt[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + 32 * kUnroll + lane + 32 * u;
      nxt[u] = c < chunks ? detail::ld_stream16(wrow + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + lane + 32 * u;
      if (c < chunks) {
#pragma unroll
        for (int m = 0; m < M; ++m) {
          const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + static_cast<std::size_t>(m) * ldx) + c);
          detail::fma8_bf16(acc[m], cur[u], xv);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) cur[u] = nxt[u];
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
  }
  if (lane < M) {
    float v = acc[0];
#pragma unroll
    for (int m = 1; m < M; ++m)
      if (lane == m) v = acc[m];
    const std::size_t at = static_cast<std::size_t>(lane) * ldy + n;
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
}

template <int M>
void launch_rows(const bf16* x, int ldx, const bf16* W, int N, int K, void* y, int ldy, gemv_out out, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(ceil_div(N, kWarps)));
  switch (out) {
    case gemv_out::store:
      launch_pdl("gemv_bf16", gemv_kernel<M, 0>, grid, kWarps * 32, 0, s, x, ldx, W, N, K, y, ldy);
      break;
    case gemv_out::accumulate:
      launch_pdl("gemv_bf16", gemv_kernel<M, 1>, grid, kWarps * 32, 0, s, x, ldx, W, N, K, y, ldy);
      break;
    case gemv_out::store_relu2:
      launch_pdl("gemv_bf16", gemv_kernel<M, 2>, grid, kWarps * 32, 0, s, x, ldx, W, N, K, y, ldy);
      break;
    case gemv_out::f32:
      launch_pdl("gemv_bf16", gemv_kernel<M, 3>, grid, kWarps * 32, 0, s, x, ldx, W, N, K, y, ldy);
      break;
  }
}

}  // namespace

void gemv_bf16(const bf16* x, int ldx, const bf16* W, int N, int K, void* y, int ldy, int M, gemv_out out,
               cudaStream_t s) {
  const auto a16 = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; };
  if (M < 1 || M > kGemvMaxRows || K < 8 || K % 8 != 0 || ldx < K || ldx % 8 != 0 || N < 1 || ldy < N ||
      x == nullptr || W == nullptr || y == nullptr || !a16(x) || !a16(W) ||
      (reinterpret_cast<std::uintptr_t>(y) & 3u) != 0) {
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "gemv_bf16: bad shape or pointers (M=%d K=%d N=%d ldx=%d ldy=%d; M in 1..%d, K and ldx multiples "
                  "of 8, 16-byte aligned x and W)",
                  M, K, N, ldx, ldy, kGemvMaxRows);
    throw piecewise::config_error(buf);
  }
  switch (M) {
    case 1: launch_rows<1>(x, ldx, W, N, K, y, ldy, out, s); break;
    case 2: launch_rows<2>(x, ldx, W, N, K, y, ldy, out, s); break;
    case 3: launch_rows<3>(x, ldx, W, N, K, y, ldy, out, s); break;
    default: launch_rows<4>(x, ldx, W, N, K, y, ldy, out, s); break;
  }
}

}  // namespace nemotron_h
