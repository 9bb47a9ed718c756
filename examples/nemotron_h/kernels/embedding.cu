// Embedding gather (see embedding.cuh).
#include "kernels/embedding.cuh"

#include <cstdint>
#include <string>

namespace nemotron_h {

namespace {

// One block per row, 16-byte vector copies.
__global__ void embedding_kernel(const int* __restrict__ ids, const uint4* __restrict__ table,
                                 uint4* __restrict__ out, int rows, int nv, int vocab,
                                 const int* num_rows) {
  const int r = blockIdx.x;
  if (r >= rows || (num_rows != nullptr && r >= *num_rows)) return;
  int id = ids[r];
  if (id < 0 || id >= vocab) id = 0;
  const uint4* src = table + static_cast<std::size_t>(id) * nv;
  uint4* dst = out + static_cast<std::size_t>(r) * nv;
  for (int i = threadIdx.x; i < nv; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

void embedding(const int* ids, const bf16* table, bf16* out, int rows, int D, int vocab,
               cudaStream_t stream, const int* num_rows) {
  const std::string shape = "embedding (rows=" + std::to_string(rows) + ", D=" + std::to_string(D) +
                            ", vocab=" + std::to_string(vocab) + ")";
  if (D <= 0 || D % 8 != 0 || vocab <= 0 || rows < 0) {
    throw piecewise::config_error(shape + ": D must be a positive multiple of 8, vocab > 0");
  }
  if ((reinterpret_cast<std::uintptr_t>(table) | reinterpret_cast<std::uintptr_t>(out)) % 16 != 0) {
    throw piecewise::config_error(shape + ": table and out must be 16-byte aligned");
  }
  if (rows == 0) return;
  const int nv = D / 8;
  const int threads = nv >= 256 ? 256 : ((nv + 31) / 32) * 32;
  embedding_kernel<<<rows, threads, 0, stream>>>(ids, reinterpret_cast<const uint4*>(table),
                                                 reinterpret_cast<uint4*>(out), rows, nv, vocab,
                                                 num_rows);
  NH_CHECK_LAUNCH(shape);
}

}  // namespace nemotron_h
