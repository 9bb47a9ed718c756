// The batch metadata of the NemotronH GPU model: the device buffers the host writes before a
// forward (token ids, sequence count, packed offsets, slots, cached contexts, the decode step
// counter), at fixed addresses so captured graphs read the current batch.
//
// set_prefill / set_decode / clear are stream-ordered and never synchronize; they are not
// meant to be called while `s` is being captured (the copies would become graph nodes).
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "kernels/batch.cuh"
#include "runner/batching.hpp"
#include "runner/buffer_plan.hpp"

namespace nemotron_h {

class batch_metadata {
 public:
  /// Adds the metadata buffers to `plan`; they get their addresses when the plan is
  /// allocated, which must happen before any other call. `vocab` bounds the token ids.
  batch_metadata(buffer_plan& plan, const gpu_model_limits& lim, int vocab);
  batch_metadata(const batch_metadata&) = delete;
  batch_metadata& operator=(const batch_metadata&) = delete;

  /// One prefill chunk (see check_prefill_batch, which runs first and throws
  /// piecewise::config_error naming the sequence). Writes ids and metadata.
  void set_prefill(const std::vector<int>& tokens, const std::vector<int>& lens, const std::vector<int>& slots,
                   const std::vector<int>& context, cudaStream_t s);
  /// Decode set-up (see check_decode_batch): one token a sequence, step counter 0. Later
  /// steps advance on the device.
  void set_decode(const std::vector<int>& first_ids, const std::vector<int>& slots, const std::vector<int>& context,
                  cudaStream_t s);
  /// No sequences (zero counts, offsets and step): warm-ups and captures touch no state.
  void clear(cudaStream_t s);

  /// The kernels' view for a forward of `padded` rows in phase `p`: grids are sized for
  /// min(max sequences, padded) sequences of up to `padded` tokens in prefill, `padded`
  /// sequences of one token in decode.
  [[nodiscard]] batch_view view(int padded, phase p) const;

  /// Token ids [max_rows]: the forward's input; the decode argmax writes the next step's here.
  [[nodiscard]] int* ids() const noexcept { return ids_; }
  [[nodiscard]] int* num_seqs() const noexcept { return num_seqs_; }
  [[nodiscard]] int* context_lens() const noexcept { return context_lens_; }
  /// The decode step counter (row of the token history the next argmax writes).
  [[nodiscard]] int* step() const noexcept { return step_; }

 private:
  gpu_model_limits lim_;
  int vocab_;
  int max_seqs_;
  int* ids_ = nullptr;
  int* num_seqs_ = nullptr;
  int* num_tokens_ = nullptr;
  int* cu_seqlens_ = nullptr;
  int* slots_ = nullptr;
  int* context_lens_ = nullptr;
  int* step_ = nullptr;
};

}  // namespace nemotron_h
