// Batch metadata on the device (see batch_metadata.hpp).
#include "runner/batch_metadata.hpp"

#include <algorithm>
#include <numeric>

#include "piecewise/cuda_error.hpp"

namespace nemotron_h {

batch_metadata::batch_metadata(buffer_plan& plan, const gpu_model_limits& lim, int vocab)
    : lim_(lim), vocab_(vocab), max_seqs_(max_sequences(lim)) {
  const auto S = static_cast<std::size_t>(max_seqs_);
  plan.add("ids", static_cast<std::size_t>(max_rows(lim)), ids_);
  plan.add("num_seqs", 1, num_seqs_);
  plan.add("num_tokens", 1, num_tokens_);
  plan.add("cu_seqlens", S + 1, cu_seqlens_);
  plan.add("slots", S, slots_);
  plan.add("context_lens", S, context_lens_);
  plan.add("step", 1, step_);
}

void batch_metadata::set_prefill(const std::vector<int>& tokens, const std::vector<int>& lens,
                                 const std::vector<int>& slots, const std::vector<int>& context, cudaStream_t s) {
  const std::vector<int> cu = check_prefill_batch(tokens, lens, slots, context, lim_, vocab_);
  const int n = static_cast<int>(lens.size());
  // Pageable sources: the driver stages them before returning, so the vectors may die now.
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(ids_, tokens.data(), tokens.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  const int meta[2] = {n, cu.back()};
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(num_seqs_, &meta[0], sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(num_tokens_, &meta[1], sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(cu_seqlens_, cu.data(), cu.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(slots_, slots.data(), slots.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(
      cudaMemcpyAsync(context_lens_, context.data(), context.size() * sizeof(int), cudaMemcpyHostToDevice, s));
}

void batch_metadata::set_decode(const std::vector<int>& first_ids, const std::vector<int>& slots,
                                const std::vector<int>& context, cudaStream_t s) {
  check_decode_batch(first_ids, slots, context, lim_, vocab_);
  const int n = static_cast<int>(first_ids.size());
  std::vector<int> cu(static_cast<std::size_t>(n) + 1);
  std::iota(cu.begin(), cu.end(), 0);
  const int zero = 0;
  PIECEWISE_CUDA_TRY(
      cudaMemcpyAsync(ids_, first_ids.data(), first_ids.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(num_seqs_, &n, sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(num_tokens_, &n, sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(cu_seqlens_, cu.data(), cu.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(slots_, slots.data(), slots.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(
      cudaMemcpyAsync(context_lens_, context.data(), context.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(step_, &zero, sizeof(int), cudaMemcpyHostToDevice, s));
}

void batch_metadata::clear(cudaStream_t s) {
  PIECEWISE_CUDA_TRY(cudaMemsetAsync(num_seqs_, 0, sizeof(int), s));
  PIECEWISE_CUDA_TRY(cudaMemsetAsync(num_tokens_, 0, sizeof(int), s));
  PIECEWISE_CUDA_TRY(cudaMemsetAsync(cu_seqlens_, 0, (static_cast<std::size_t>(max_seqs_) + 1) * sizeof(int), s));
  PIECEWISE_CUDA_TRY(cudaMemsetAsync(step_, 0, sizeof(int), s));
}

batch_view batch_metadata::view(int padded, phase p) const {
  batch_view b;
  b.num_seqs = num_seqs_;
  b.num_tokens = num_tokens_;
  b.cu_seqlens = cu_seqlens_;
  b.slots = slots_;
  b.context_lens = context_lens_;
  b.padded_tokens = padded;
  if (p == phase::prefill) {
    b.max_seqs = std::min(max_seqs_, padded);
    b.max_seqlen = padded;
  } else {
    b.max_seqs = padded;
    b.max_seqlen = 1;
  }
  return b;
}

}  // namespace nemotron_h
