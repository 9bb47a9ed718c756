// The benchmarks' batch metadata: one int buffer per batch, laid out as
//   [num_seqs, num_tokens, cu_seqlens[max_seqs + 1], slots[max_seqs], context_lens[max_seqs]]
// so a batch is one upload and a batch_view points into it. (The runner keeps separate
// buffers, runner/batch_metadata; the tests use tests/batch_buffers.cuh.)
#pragma once

#include <cstddef>

#include "kernels/batch.cuh"

namespace nemotron_h {

/// Ints of one packed batch of up to `max_seqs` sequences.
constexpr std::size_t packed_batch_ints(int max_seqs) { return 3 + 3 * static_cast<std::size_t>(max_seqs); }

/// Offsets of the fields inside a packed batch (host or device pointer `p`).
template <class Int>
struct packed_batch_fields {
  Int* p;
  int max_seqs;
  Int* num_seqs() const { return p; }
  Int* num_tokens() const { return p + 1; }
  Int* cu_seqlens() const { return p + 2; }
  Int* slots() const { return p + 3 + max_seqs; }
  Int* context_lens() const { return p + 3 + 2 * max_seqs; }
};

/// The batch_view over a packed batch in device memory `d`; the host bounds are the caller's.
inline batch_view packed_batch_view(const int* d, int max_seqs, int padded_tokens, int max_seqlen) {
  const packed_batch_fields<const int> f{d, max_seqs};
  batch_view v;
  v.num_seqs = f.num_seqs();
  v.num_tokens = f.num_tokens();
  v.cu_seqlens = f.cu_seqlens();
  v.slots = f.slots();
  v.context_lens = f.context_lens();
  v.padded_tokens = padded_tokens;
  v.max_seqs = max_seqs;
  v.max_seqlen = max_seqlen;
  return v;
}

}  // namespace nemotron_h
