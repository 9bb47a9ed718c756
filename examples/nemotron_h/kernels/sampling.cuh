// Token sampling on the GPU: greedy, temperature, top-k, top-p, min-p, a seed per sequence.
// One launch for a whole batch, reading everything (row count, slots, parameters, positions)
// from device memory: capture-safe, so it runs inside the decode graph.
//
// The filters follow Hugging Face generate's order: temperature, then top-k, then top-p on the
// top-k survivors renormalised, then min-p (relative to the most likely token). Thresholds are
// exact (computed on the bf16 logits themselves) and keep every token tied with the boundary
// value. The draw is counter-based: the random numbers of a row depend only on the sequence's
// seed and the position of the token being sampled, never on the batch, the bucket or the
// mode, so a seeded sequence gives the same tokens in eager, piecewise and full graphs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"

namespace nemotron_h {

/// How one sequence picks its next token; one entry per state slot, in device memory,
/// written by the host between steps (never while a graph that reads it runs).
struct sampling_params {
  float temperature = 0.0f;  ///< <= 0: greedy (argmax, first index on ties, as argmax_rows)
  int top_k = 0;             ///< <= 0 or >= vocab: off
  float top_p = 1.0f;        ///< >= 1: off; keep the most likely tokens whose mass reaches top_p
  float min_p = 0.0f;        ///< <= 0: off; keep tokens with p >= min_p * p_max
  std::uint64_t seed = 0;    ///< the sequence's random stream
};

/// Samples one id per row of `logits` (bf16 [batch.max_seqs, V], row r = sequence r of the
/// batch) for rows r < *batch.num_seqs, with params[batch.slots[r]]. The random counter of row
/// r is the position of the token it samples: batch.context_lens[r] + (batch.cu_seqlens[r + 1]
/// - batch.cu_seqlens[r]). Writes ids[r]; when `history` is not null also
/// history[*step * history_ld + r], and then increments *step once (like argmax_rows).
/// Greedy rows give exactly argmax_rows' id. NaN logits are never chosen unless a row is all
/// NaN (then id 0).
/// `workspace` of sampling_workspace_bytes(batch.max_seqs, V) bytes (may be unused).
/// Throws piecewise::config_error for V < 1 or a workspace that is too small.
/// One launch (plus the step bump), no allocation, no sync: capture-safe.
void sample_rows(const bf16* logits, int V, const batch_view& batch, const sampling_params* params, int* ids,
                 int* history, int history_ld, int* step, void* workspace, std::size_t workspace_bytes,
                 cudaStream_t s);

/// Device workspace sample_rows needs for `rows` rows of `V` logits.
std::size_t sampling_workspace_bytes(int rows, int V) noexcept;

}  // namespace nemotron_h
