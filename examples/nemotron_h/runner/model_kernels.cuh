// Small kernels of the NemotronH engine loop: last-row gather, greedy argmax and the
// on-device decode bookkeeping. All read their counts from device memory and are
// capture-safe (one launch, no allocation, no sync).
#pragma once

#include <cuda_runtime.h>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"

namespace nemotron_h {

/// out[s] = h[cu_seqlens[s+1] - 1] for s < *num_seqs (rows >= *num_seqs are zeroed).
/// h: [tokens, D]; out: [max_seqs, D]. Requires D % 8 == 0 and 16-byte alignment.
void gather_last_rows(const bf16* h, bf16* out, const batch_view& batch, int D, cudaStream_t s);

/// ids[s] = argmax(logits[s, :]) (first index on ties) for s < *num_rows; also appends the
/// id to history[*step * history_ld + s] when history is not null, and increments *step
/// (one thread) after the rows are done when `step` is not null. logits: bf16 [rows, V].
/// `ld`: the row stride of `logits` in elements (0: V).
void argmax_rows(const bf16* logits, int V, int* ids, int rows, const int* num_rows, int* history,
                 int history_ld, int* step, cudaStream_t s, int ld = 0);

/// Decode bookkeeping after a step: context_lens[s] += 1 for s < *num_seqs.
void advance_context(int* context_lens, const int* num_seqs, int max_seqs, cudaStream_t s);

}  // namespace nemotron_h
