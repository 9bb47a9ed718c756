// Test-only entry point of the sampling kernel (kernels/sampling.cu): sample_rows, plus the
// kept set of every sampled row, so tests can compare it with the float64 reference exactly.
// Not used by the model.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/sampling.cuh"

namespace nemotron_h {

/// sample_rows, and for each row r < *batch.num_seqs: debug[2r] = the threshold key of the
/// kept set (-1 when the row was sampled greedily), debug[2r + 1] = the number of kept
/// tokens (0 when greedy). The kept set is every finite logit l with l >= the threshold
/// (sampling_threshold_value). Same throws and capture safety as sample_rows.
void sample_rows_debug(const bf16* logits, int V, const batch_view& batch, const sampling_params* params, int* ids,
                       int* history, int history_ld, int* step, void* workspace, std::size_t workspace_bytes,
                       int* debug, cudaStream_t s);

/// The logit value of a threshold key of sample_rows_debug (an order-preserving 16-bit code
/// of a bf16 value). Host and device.
__host__ __device__ inline float sampling_threshold_value(int key) {
  const unsigned k = static_cast<unsigned>(key) & 0xffffu;
  const unsigned bits = (k & 0x8000u) ? (k & 0x7fffu) : (~k & 0xffffu);
  const unsigned f = bits << 16;
  float v;
  std::memcpy(&v, &f, sizeof v);
  return v;
}

}  // namespace nemotron_h
