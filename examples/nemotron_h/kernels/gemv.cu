// Decode GEMV (see gemv.cuh). Blocks of four warps. Wide outputs (N > kSplitMaxN): one warp an
// output column. Narrow ones: one block an output column, its four warps taking interleaved
// 32-chunk groups of K, summed through shared memory in warp order, so that a narrow GEMM
// still has enough warps (and weight bytes in flight) to stream at full bandwidth.
#include "kernels/gemv.cuh"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels/pdl.cuh"

namespace nemotron_h {

namespace {

constexpr int kWarps = 4;   // warps a block
constexpr int kUnroll = 8;  // 16-byte weight chunks a lane sums a batch (two batches in flight)
// Outputs up to this width split K over the block's warps: below ~4 output columns a resident
// warp slot (132 SMs x 64 warps / 4 = 2112) one warp a column leaves too few loads in flight.
constexpr int kSplitMaxN = 8192;

// KS = 1: warp w of block b computes column 4b + w over all of K. KS = kWarps: block b computes
// column b, warp w the chunk groups w, w + 4, w + 8, ... Each lane sums its chunks in increasing
// order, then a fixed butterfly over the lanes, then (KS > 1) the warps' sums in warp order.
template <int M, int OUT, int KS>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const bf16* __restrict__ x, int ldx, const bf16* __restrict__ W, int N, int K, void* __restrict__ y,
                int ldy) {
  __shared__ float part[KS > 1 ? KS : 1][M];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int n = KS == 1 ? blockIdx.x * kWarps + warp : blockIdx.x;
  const int woff = KS == 1 ? 0 : 32 * warp;  // this warp's first chunk group
  constexpr int kStride = 32 * KS;           // chunks between a lane's successive chunks
  const int chunks = K / 8;
  const uint4* wrow = reinterpret_cast<const uint4*>(W + static_cast<std::size_t>(n < N ? n : 0) * K);
  // Double-buffered: the next kUnroll chunks of the row are in flight while this batch is
  // summed. The first batch is issued before waiting for the previous kernel (weights are
  // constant).
  uint4 cur[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int c = woff + lane + kStride * u;
    cur[u] = (n < N && c < chunks) ? detail::ld_stream16(wrow + c) : make_uint4(0, 0, 0, 0);
  }
  pdl_wait();
  if (n >= N) return;  // KS == 1 only (KS > 1: one block a column, n < N)
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.0f;
  for (int c0 = 0; c0 < chunks; c0 += kStride * kUnroll) {
    uint4 nxt[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + kStride * kUnroll + woff + lane + kStride * u;
      nxt[u] = c < chunks ? detail::ld_stream16(wrow + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + woff + lane + kStride * u;
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
  if constexpr (KS > 1) {
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < M; ++m) part[warp][m] = acc[m];
    }
    __syncthreads();
    if (warp != 0) return;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float t = part[0][m];
#pragma unroll
      for (int w = 1; w < KS; ++w) t += part[w][m];
      acc[m] = t;
    }
  }
  if (lane < M) {
    float v = acc[0];
#pragma unroll
    for (int m = 1; m < M; ++m)
      if (lane == m) v = acc[m];
    detail::gemv_write<OUT>(y, static_cast<std::size_t>(lane) * ldy + n, v);
  }
}

// NH_GEMV_SPLIT=0 in the environment (read once): one warp a column at every width, for A/B runs.
bool split_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("NH_GEMV_SPLIT");
    return e == nullptr || e[0] != '0';
  }();
  return on;
}

template <int M, int OUT>
void launch_out(const bf16* x, int ldx, const bf16* W, int N, int K, void* y, int ldy, cudaStream_t s) {
  if (N <= kSplitMaxN && split_enabled()) {
    launch_pdl("gemv_bf16", gemv_kernel<M, OUT, kWarps>, dim3(static_cast<unsigned>(N)), dim3(kWarps * 32), 0, s, x,
               ldx, W, N, K, y, ldy);
  } else {
    launch_pdl("gemv_bf16", gemv_kernel<M, OUT, 1>, dim3(static_cast<unsigned>(ceil_div(N, kWarps))),
               dim3(kWarps * 32), 0, s, x, ldx, W, N, K, y, ldy);
  }
}

template <int M>
void launch_rows(const bf16* x, int ldx, const bf16* W, int N, int K, void* y, int ldy, gemv_out out, cudaStream_t s) {
  switch (out) {
    case gemv_out::store: launch_out<M, 0>(x, ldx, W, N, K, y, ldy, s); break;
    case gemv_out::accumulate: launch_out<M, 1>(x, ldx, W, N, K, y, ldy, s); break;
    case gemv_out::store_relu2: launch_out<M, 2>(x, ldx, W, N, K, y, ldy, s); break;
    case gemv_out::f32: launch_out<M, 3>(x, ldx, W, N, K, y, ldy, s); break;
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
