// Packed-batch metadata for the GPU kernel tests, shared by the dense and Mamba2 tests.
#pragma once

#include <stdexcept>
#include <vector>

#include "kernels/batch.cuh"
#include "tests/device_buffer.cuh"

namespace nh_test {

/// Packed-batch metadata in device buffers (fixed addresses; update() rewrites them), sized
/// for max_seqs sequences and padded_tokens tokens, as the runner's buffers are.
struct batch_buffers {
  dbuf<int> num_seqs{1}, num_tokens{1}, cu, slots, ctx;
  nemotron_h::batch_view view;
  std::vector<int> h_cu;

  batch_buffers(int max_seqs, int padded_tokens, int max_seqlen)
      : cu(max_seqs + 1), slots(max_seqs), ctx(max_seqs) {
    view.num_seqs = num_seqs.get();
    view.num_tokens = num_tokens.get();
    view.cu_seqlens = cu.get();
    view.slots = slots.get();
    view.context_lens = ctx.get();
    view.padded_tokens = padded_tokens;
    view.max_seqs = max_seqs;
    view.max_seqlen = max_seqlen;
  }
  /// Writes new metadata (lengths of the new tokens, cached context, slots) into the same
  /// buffers; trailing entries repeat the last offset (empty sequences). Throws
  /// std::runtime_error if the tokens exceed padded_tokens.
  void update(const std::vector<int>& lens, const std::vector<int>& ctxs,
              const std::vector<int>& slot_ids) {
    const int n = static_cast<int>(lens.size());
    const int max_seqs = view.max_seqs;
    h_cu.assign(max_seqs + 1, 0);
    for (int i = 0; i < n; ++i) h_cu[i + 1] = h_cu[i] + lens[i];
    for (int i = n; i < max_seqs; ++i) h_cu[i + 1] = h_cu[n];
    if (h_cu[n] > view.padded_tokens) throw std::runtime_error("test batch exceeds padded_tokens");
    std::vector<int> sl(max_seqs, 0), cx(max_seqs, 0);
    for (int i = 0; i < n; ++i) {
      sl[i] = slot_ids[i];
      cx[i] = ctxs[i];
    }
    num_seqs.upload({n});
    num_tokens.upload({h_cu[n]});
    cu.upload(h_cu);
    slots.upload(sl);
    ctx.upload(cx);
  }
};

}  // namespace nh_test
