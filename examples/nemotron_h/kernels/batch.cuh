// The packed-batch metadata every NemotronH kernel reads.
//
// Tokens of several sequences are packed along one dimension. All per-step metadata lives
// in device buffers at fixed addresses, so kernels that take a batch_view are capture-safe:
// a graph captured once is replayed with new metadata written into the same buffers.
// Grids are sized from the host-side upper bounds (padded_tokens, max_seqs); blocks beyond
// the real counts read from device memory exit early.
#pragma once

namespace nemotron_h {

struct batch_view {
  // Device pointers (fixed addresses).
  const int* num_seqs = nullptr;    ///< [1] real number of sequences in this batch
  const int* num_tokens = nullptr;  ///< [1] real number of packed tokens (= cu_seqlens[num_seqs])
  const int* cu_seqlens = nullptr;  ///< [max_seqs+1] token offset of each sequence, cu_seqlens[0] = 0
  const int* slots = nullptr;       ///< [max_seqs] state slot (KV cache, conv and SSM state) of each sequence
  const int* context_lens = nullptr;///< [max_seqs] tokens already in the slot's cache before this batch
                                    ///< (0 = fresh sequence: zero conv/SSM initial state, no KV prefix)
  // Host-side upper bounds, fixed per captured bucket: grids are sized from these.
  int padded_tokens = 0;  ///< >= real num_tokens; rows [num_tokens, padded_tokens) are padding
  int max_seqs = 0;       ///< >= real num_seqs
  int max_seqlen = 0;     ///< upper bound of any sequence's new-token count (<= padded_tokens)
};

}  // namespace nemotron_h
