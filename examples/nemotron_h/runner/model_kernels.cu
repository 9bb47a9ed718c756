#include "runner/model_kernels.cuh"

#include <cooperative_groups.h>

#include <cstdint>
#include <cstdlib>

namespace nemotron_h {
namespace {

namespace cg = cooperative_groups;

__global__ void gather_last_rows_kernel(const uint4* h, uint4* out, const int* cu_seqlens,
                                        const int* num_seqs, int row_vecs, int max_seqs) {
  const int s = blockIdx.x;
  if (s >= max_seqs) return;
  const int n = *num_seqs;
  if (s < n) {
    const int row = cu_seqlens[s + 1] - 1;
    for (int i = threadIdx.x; i < row_vecs; i += blockDim.x)
      out[static_cast<std::size_t>(s) * row_vecs + i] = h[static_cast<std::size_t>(row) * row_vecs + i];
  } else {
    for (int i = threadIdx.x; i < row_vecs; i += blockDim.x)
      out[static_cast<std::size_t>(s) * row_vecs + i] = make_uint4(0, 0, 0, 0);
  }
}

// Greedy argmax, first index on ties, NaN never wins (an all-NaN row gives 0). The pair
// order "larger value, then smaller index" is a total order on the non-NaN elements, so the
// result does not depend on how the row is split or reduced: every path below returns the
// same id, bit for bit.
__device__ __forceinline__ bool better(float v, int i, float best, int best_i) {
  return v > best || (v == best && i < best_i);
}

// Reduces (best, best_i) over the block; the block's result is returned to every thread.
// `sv`/`si` hold one entry per warp (blockDim.x <= 1024).
__device__ __forceinline__ void block_argmax(float& best, int& best_i, float* sv, int* si) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (better(ov, oi, best, best_i)) {
      best = ov;
      best_i = oi;
    }
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = best_i;
  }
  __syncthreads();
  best = -INFINITY;
  best_i = 0x7fffffff;
  for (int w = 0; w < nw; ++w)
    if (better(sv[w], si[w], best, best_i)) {
      best = sv[w];
      best_i = si[w];
    }
}

// Scans elements [lo, hi) of one row, kUnroll independent loads in flight per thread:
// 16-byte loads of 8 bf16 when kVec (lo, hi multiples of 8, row 16-byte aligned).
constexpr int kArgmaxUnroll = 4;
template <bool kVec>
__device__ __forceinline__ void scan_range(const bf16* row, int lo, int hi, float& best,
                                           int& best_i) {
  if constexpr (kVec) {
    const uint4* rv = reinterpret_cast<const uint4*>(row);
    const int v0 = lo / 8, v1 = hi / 8;
    for (int base = v0 + threadIdx.x; base < v1; base += kArgmaxUnroll * blockDim.x) {
      uint4 raw[kArgmaxUnroll];
#pragma unroll
      for (int u = 0; u < kArgmaxUnroll; ++u) {
        const int j = base + u * blockDim.x;
        raw[u] = j < v1 ? rv[j] : make_uint4(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
      }
#pragma unroll
      for (int u = 0; u < kArgmaxUnroll; ++u) {
        const int j = base + u * blockDim.x;
        const bf16* h = reinterpret_cast<const bf16*>(&raw[u]);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const float v = __bfloat162float(h[e]);  // out of range: 0xffff is NaN, never wins
          if (better(v, 8 * j + e, best, best_i)) {
            best = v;
            best_i = 8 * j + e;
          }
        }
      }
    }
  } else {
    for (int base = lo + threadIdx.x; base < hi; base += kArgmaxUnroll * blockDim.x) {
      float v[kArgmaxUnroll];
#pragma unroll
      for (int u = 0; u < kArgmaxUnroll; ++u) {
        const int j = base + u * blockDim.x;
        v[u] = j < hi ? __bfloat162float(row[j]) : NAN;
      }
#pragma unroll
      for (int u = 0; u < kArgmaxUnroll; ++u)
        if (better(v[u], base + u * blockDim.x, best, best_i)) {
          best = v[u];
          best_i = base + u * blockDim.x;
        }
    }
  }
}

__device__ __forceinline__ void write_id(int r, int best_i, int* ids, int* history, int history_ld,
                                         const int* step) {
  const int id = best_i == 0x7fffffff ? 0 : best_i;  // all-NaN row: 0, caught by checks
  ids[r] = id;
  if (history != nullptr) history[static_cast<std::size_t>(*step) * history_ld + r] = id;
}

// One row per cluster of kArgmaxCluster blocks (grid (kArgmaxCluster, rows), launched with a
// cluster dimension of kArgmaxCluster): block b scans the b-th slice of the row, then block 0
// of the cluster combines the slices' results through distributed shared memory. No
// workspace, no atomics: deterministic and capture-safe. sm_90 and later only.
constexpr int kArgmaxCluster = 8;
constexpr int kArgmaxThreads = 512;
template <bool kVec>
__global__ void __launch_bounds__(kArgmaxThreads)
    argmax_cluster_kernel(const bf16* logits, int V, int ld, int* ids, int rows, const int* num_rows,
                          int* history, int history_ld, const int* step) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ float sv[32];
  __shared__ int si[32];
  __shared__ float res_v;
  __shared__ int res_i;
  const int r = blockIdx.y;
  if (r >= rows || r >= *num_rows) return;  // uniform over the cluster (same row)
  const bf16* row = logits + static_cast<std::size_t>(r) * ld;
  // Slices of ceil(V / cluster) elements, rounded up to 8 (16-byte loads).
  const int slice = (V + 8 * kArgmaxCluster - 1) / (8 * kArgmaxCluster) * 8;
  const int lo = min(V, static_cast<int>(blockIdx.x) * slice);
  const int hi = min(V, lo + slice);
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  scan_range<kVec>(row, lo, hi, best, best_i);
  block_argmax(best, best_i, sv, si);
  if (threadIdx.x == 0) {
    res_v = best;
    res_i = best_i;
  }
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every block's result is in its shared memory
  if (cluster.block_rank() == 0 && threadIdx.x == 0) {
    float b = -INFINITY;
    int bi = 0x7fffffff;
    for (unsigned k = 0; k < kArgmaxCluster; ++k) {
      const float v = *cluster.map_shared_rank(&res_v, k);
      const int i = *cluster.map_shared_rank(&res_i, k);
      if (better(v, i, b, bi)) {
        b = v;
        bi = i;
      }
    }
    write_id(r, bi, ids, history, history_ld, step);
  }
  cluster.sync();  // keep every block's shared memory alive until block 0 has read it
#endif
}

// Fallback without clusters (devices before sm_90): one block per row.
template <bool kVec>
__global__ void __launch_bounds__(kArgmaxThreads)
    argmax_block_kernel(const bf16* logits, int V, int ld, int* ids, int rows, const int* num_rows,
                        int* history, int history_ld, const int* step) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const int r = blockIdx.x;
  if (r >= rows || r >= *num_rows) return;
  const bf16* row = logits + static_cast<std::size_t>(r) * ld;
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  scan_range<kVec>(row, 0, V, best, best_i);
  block_argmax(best, best_i, sv, si);
  if (threadIdx.x == 0) write_id(r, best_i, ids, history, history_ld, step);
}

// Whether the cluster kernel was compiled for this device (sm_90 or later machine code);
// NH_ARGMAX_NO_CLUSTER=1 in the environment selects the one-block-per-row kernel instead
// (read at every call, for the tests).
bool cluster_argmax_available() {
  static const bool ok = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    cudaFuncAttributes a{};
    if (major < 9 || cudaFuncGetAttributes(&a, argmax_cluster_kernel<true>) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    // Machine code for sm_90+ compiled from sm_90+ PTX (the kernel body is empty below that).
    return a.binaryVersion >= 90 && (a.ptxVersion == 0 || a.ptxVersion >= 90);
  }();
  const char* e = std::getenv("NH_ARGMAX_NO_CLUSTER");
  return ok && !(e != nullptr && e[0] != '\0' && e[0] != '0');
}

__global__ void bump_kernel(int* step) { ++*step; }

__global__ void advance_kernel(int* context_lens, const int* num_seqs, int max_seqs) {
  const int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s < max_seqs && s < *num_seqs) context_lens[s] += 1;
}

}  // namespace

void gather_last_rows(const bf16* h, bf16* out, const batch_view& batch, int D, cudaStream_t s) {
  PIECEWISE_EXPECTS(D % 8 == 0, "gather_last_rows: D = {} is not a multiple of 8", D);
  gather_last_rows_kernel<<<batch.max_seqs, 128, 0, s>>>(reinterpret_cast<const uint4*>(h),
                                                         reinterpret_cast<uint4*>(out), batch.cu_seqlens,
                                                         batch.num_seqs, D / 8, batch.max_seqs);
  NH_CHECK_LAUNCH("gather_last_rows");
}

void argmax_rows(const bf16* logits, int V, int* ids, int rows, const int* num_rows, int* history,
                 int history_ld, int* step, cudaStream_t s, int ld) {
  PIECEWISE_EXPECTS(V > 0 && rows >= 0, "argmax_rows: V = {}, rows = {}", V, rows);
  if (ld == 0) ld = V;
  PIECEWISE_EXPECTS(ld >= V, "argmax_rows: row stride {} is below V = {}", ld, V);
  if (rows > 0) {
    const bool vec = V % 8 == 0 && ld % 8 == 0 && (reinterpret_cast<std::uintptr_t>(logits) & 15u) == 0;
    if (cluster_argmax_available() && rows <= 65535) {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(kArgmaxCluster, rows);
      cfg.blockDim = dim3(kArgmaxThreads);
      cfg.dynamicSmemBytes = 0;
      cfg.stream = s;
      cudaLaunchAttribute attr{};
      attr.id = cudaLaunchAttributeClusterDimension;
      attr.val.clusterDim.x = kArgmaxCluster;
      attr.val.clusterDim.y = 1;
      attr.val.clusterDim.z = 1;
      cfg.attrs = &attr;
      cfg.numAttrs = 1;
      const int* nr = num_rows;
      const int* st = step;
      PIECEWISE_CUDA_TRY_CTX(
          vec ? cudaLaunchKernelEx(&cfg, argmax_cluster_kernel<true>, logits, V, ld, ids, rows, nr, history, history_ld, st)
              : cudaLaunchKernelEx(&cfg, argmax_cluster_kernel<false>, logits, V, ld, ids, rows, nr, history, history_ld, st),
          "argmax_rows (cluster launch)");
    } else if (vec) {
      argmax_block_kernel<true><<<rows, kArgmaxThreads, 0, s>>>(logits, V, ld, ids, rows, num_rows, history,
                                                               history_ld, step);
    } else {
      argmax_block_kernel<false><<<rows, kArgmaxThreads, 0, s>>>(logits, V, ld, ids, rows, num_rows, history,
                                                                history_ld, step);
    }
    NH_CHECK_LAUNCH("argmax_rows");
  }
  if (step != nullptr) {
    bump_kernel<<<1, 1, 0, s>>>(step);
    NH_CHECK_LAUNCH("argmax_rows (step)");
  }
}

void advance_context(int* context_lens, const int* num_seqs, int max_seqs, cudaStream_t s) {
  advance_kernel<<<(max_seqs + 127) / 128, 128, 0, s>>>(context_lens, num_seqs, max_seqs);
  NH_CHECK_LAUNCH("advance_context");
}

}  // namespace nemotron_h
