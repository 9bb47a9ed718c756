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
//
// Exact definitions (float64 reference: reference/sampling_ref.hpp, which the GPU tests
// compare against): only finite logits are candidates (NaN and -inf are never kept); a row
// whose largest non-NaN logit is not finite (all NaN, all -inf, a +inf) is sampled greedily;
// p_i ~ exp((l_i - max) / T); top-k keeps l >= the k-th largest finite logit; top-p keeps
// l >= the largest value v whose cumulative mass M(v) (top-k survivors with l >= v) reaches
// top_p times the survivors' total; min-p keeps (l - max) >= T ln(min_p) in double. The kept
// set is their intersection, a threshold on the logit value. The draw is Gumbel-max: argmax of
// (l - max) / T - log(-log(u_i)) over the kept set, u_i = sampling_uniform(sampling_stream(seed,
// position), i) (kernels/sampling_rng.hpp). Top-p masses are fixed-point sums (units of 2^-42
// of the maximum's weight, from float exp), so its boundary matches the float64 definition
// unless a cumulative mass lies within ~1e-6 of top_p. kernels/sampling_debug.cuh has a
// test-only variant that also reports each row's kept set.
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
  int top_k = 0;             ///< <= 0 or >= the number of finite logits: off
  float top_p = 1.0f;        ///< >= 1: off; keep the most likely tokens whose mass reaches top_p
  float min_p = 0.0f;        ///< <= 0: off; keep tokens with p >= min_p * p_max (> 1 acts as 1)
  std::uint64_t seed = 0;    ///< the sequence's random stream
};

/// Samples one id per row of `logits` (bf16 [batch.max_seqs, V], row r = sequence r of the
/// batch) for rows r < *batch.num_seqs, with params[batch.slots[r]]. The random counter of row
/// r is the position of the token it samples: batch.context_lens[r] + (batch.cu_seqlens[r + 1]
/// - batch.cu_seqlens[r]). Writes ids[r]; when `history` is not null also
/// history[*step * history_ld + r], and then increments *step once (like argmax_rows).
/// Greedy rows give exactly argmax_rows' id. NaN logits are never chosen unless a row is all
/// NaN (then id 0).
/// Rows r >= *batch.num_seqs are left untouched.
/// `workspace` of sampling_workspace_bytes(batch.max_seqs, V) bytes (currently 0: may be null).
/// Kernels: one thread-block cluster per row on sm_90+ for V <= 131072, else (or with
/// NH_ARGMAX_NO_CLUSTER=1 in the environment, as for argmax_rows) one block per row; both give
/// the same ids bit for bit.
/// Throws piecewise::config_error for V < 1 or V > 2^22, batch.max_seqs > 65535, or a
/// workspace that is too small; piecewise::cuda_error if a launch fails.
/// One launch (plus the step bump), no allocation, no sync: capture-safe.
/// `ld`: the row stride of `logits` in elements (0: V; else >= V, for a vocabulary padded to a
/// multiple of 8 inside the model).
void sample_rows(const bf16* logits, int V, const batch_view& batch, const sampling_params* params, int* ids,
                 int* history, int history_ld, int* step, void* workspace, std::size_t workspace_bytes,
                 cudaStream_t s, int ld = 0);

/// Device workspace sample_rows needs for `rows` rows of `V` logits (0 in this version).
std::size_t sampling_workspace_bytes(int rows, int V) noexcept;

}  // namespace nemotron_h
