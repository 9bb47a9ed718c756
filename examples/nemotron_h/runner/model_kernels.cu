#include "runner/model_kernels.cuh"

#include <cstdint>

namespace nemotron_h {
namespace {

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

// One block per row: each thread scans a strided part keeping (max, first index), then a
// shared-memory reduction that prefers the smaller index on ties.
__global__ void argmax_kernel(const bf16* logits, int V, int* ids, int rows, const int* num_rows,
                              int* history, int history_ld, const int* step) {
  const int r = blockIdx.x;
  if (r >= rows || r >= *num_rows) return;
  const bf16* row = logits + static_cast<std::size_t>(r) * V;
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float v = __bfloat162float(row[i]);
    if (v > best || (v == best && i < best_i)) {
      best = v;
      best_i = i;
    }
  }
  __shared__ float sv[256];
  __shared__ int si[256];
  sv[threadIdx.x] = best;
  si[threadIdx.x] = best_i;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      const float ov = sv[threadIdx.x + w];
      const int oi = si[threadIdx.x + w];
      if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) {
        sv[threadIdx.x] = ov;
        si[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const int id = si[0] == 0x7fffffff ? 0 : si[0];  // all-NaN row: 0, caught by checks
    ids[r] = id;
    if (history != nullptr) history[static_cast<std::size_t>(*step) * history_ld + r] = id;
  }
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
                 int history_ld, int* step, cudaStream_t s) {
  argmax_kernel<<<rows, 256, 0, s>>>(logits, V, ids, rows, num_rows, history, history_ld, step);
  NH_CHECK_LAUNCH("argmax_rows");
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
