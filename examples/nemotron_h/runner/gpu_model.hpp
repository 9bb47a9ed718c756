// The NemotronH model on the GPU: device weights, fixed-address activation buffers, state
// slots (KV cache, conv and SSM state), batch metadata, and the forward written once for
// every piecewise mode.
//
// Each layer's pre-norm, projections and MLP are ordinary launches captured into segments;
// the sequence-dependent core of Mamba layers (conv + SSD scan, or the recurrent decode
// update) and attention layers (prefill over the cached prefix, or decode) are split-point
// callbacks. Every kernel reads the batch metadata from device memory, so both split kinds
// are capture-safe and the whole forward can also run as one full graph.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "kernels/gemm.cuh"
#include "kernels/kv_cache.cuh"
#include "kernels/mamba_state.cuh"
#include "model/config.hpp"
#include "model/weights.hpp"
#include "piecewise/piecewise.hpp"

namespace nemotron_h {

/// Sizes fixed at construction: every buffer is allocated once for these bounds.
struct gpu_model_limits {
  int max_prefill_tokens = 2048;  ///< largest prefill bucket (tokens of one packed chunk)
  int max_decode_batch = 64;      ///< largest decode bucket (sequences of one step)
  int num_slots = 8;              ///< sequences with state (KV cache, conv/SSM state)
  int max_context = 4096;         ///< positions per slot (prompt + generated tokens)
  int max_decode_steps = 1024;    ///< rows of the on-device token history
};

/// The two forwards the engine runs, each with its own segment table.
enum class phase { prefill, decode };

class gpu_model {
 public:
  /// Uploads `weights` (checked against `config`) and allocates every buffer.
  /// Throws piecewise::config_error for unsupported shapes (naming the field) and
  /// piecewise::cuda_error when device memory runs out (naming the size).
  gpu_model(const model_config& config, const model_weights& weights, const gpu_model_limits& limits);
  gpu_model(const gpu_model&) = delete;
  gpu_model& operator=(const gpu_model&) = delete;

  [[nodiscard]] const model_config& config() const noexcept { return cfg_; }
  [[nodiscard]] const gpu_model_limits& limits() const noexcept { return lim_; }
  /// The segment table of a phase: one entry per layer; Mamba and attention layers are split
  /// points (capture-safe), MLP layers null.
  [[nodiscard]] const piecewise::segment_table& table(phase p) const noexcept {
    return p == phase::prefill ? *prefill_table_ : *decode_table_;
  }
  /// The forward of a phase, for a graph_runner over table(p).
  [[nodiscard]] piecewise::forward_fn forward(phase p);

  // ---- batch set-up (host, stream-ordered, no sync) ----

  /// One prefill chunk: sequence i has `lens[i]` new tokens `tokens` (packed), lives in slot
  /// `slots[i]` and has `context[i]` tokens cached already. Writes ids and metadata.
  /// Throws piecewise::config_error naming the sequence for bad lengths, slots or contexts.
  void set_prefill_batch(const std::vector<int>& tokens, const std::vector<int>& lens,
                         const std::vector<int>& slots, const std::vector<int>& context,
                         cudaStream_t s);
  /// Decode set-up: sequence i (slot slots[i]) continues from `context[i]` cached tokens with
  /// next token `first_ids[i]`. Later steps advance on the device (argmax, context += 1).
  void set_decode_batch(const std::vector<int>& first_ids, const std::vector<int>& slots,
                        const std::vector<int>& context, cudaStream_t s);
  /// Zeroes the metadata (no sequences): used before capture so warm-ups touch no state.
  void clear_batch(cudaStream_t s);

  // ---- results (synchronize `s`) ----

  /// Logits of the first `n` rows of the last-position buffer (one row a sequence), as float.
  std::vector<float> read_logits(int n, cudaStream_t s) const;
  /// Greedy ids of the first `n` sequences after the last forward.
  std::vector<int> read_next_ids(int n, cudaStream_t s) const;
  /// Token history of the decode steps run since set_decode_batch: [steps][n].
  std::vector<int> read_history(int steps, int n, cudaStream_t s) const;

  [[nodiscard]] std::size_t weight_bytes() const noexcept { return weight_bytes_; }
  [[nodiscard]] std::size_t buffer_bytes() const noexcept;
  [[nodiscard]] gemm_engine& gemm() noexcept { return *gemm_; }
  [[nodiscard]] const bf16* logits_buffer() const noexcept { return logits_; }

 private:
  struct layer_dev {
    layer_kind kind;
    bf16* norm = nullptr;
    // mamba
    bf16 *in_proj = nullptr, *conv_w = nullptr, *conv_b = nullptr, *gnorm = nullptr, *out_proj = nullptr;
    float *A_log = nullptr, *D = nullptr, *dt_bias = nullptr;
    mamba_layer_state state;
    // attention (q|k|v fused along the output dimension)
    bf16 *qkv = nullptr, *o_proj = nullptr;
    kv_cache_view cache;
    // mlp
    bf16 *up = nullptr, *down = nullptr;
  };

  batch_view batch_for(int padded, phase p) const;
  void build_tables();
  void mamba_split(int layer, const piecewise::split_args& a, phase p);
  void attention_split(int layer, const piecewise::split_args& a, phase p);
  void upload_weights(const model_weights& w);

  model_config cfg_;
  gpu_model_limits lim_;
  mamba_dims md_;
  int proj_width_ = 0;
  int max_rows_ = 0;  // token rows of every activation buffer
  int max_seqs_ = 0;  // rows of the per-sequence buffers
  std::unique_ptr<piecewise::device_arena> weights_arena_, buffers_arena_;
  std::size_t weight_bytes_ = 0;
  std::unique_ptr<gemm_engine> gemm_;
  std::vector<layer_dev> layers_;
  bf16 *embeddings_ = nullptr, *norm_f_ = nullptr, *lm_head_ = nullptr;
  // activations
  int* ids_ = nullptr;
  bf16 *h_ = nullptr, *xn_ = nullptr, *proj_ = nullptr, *conv_out_ = nullptr, *y_ = nullptr, *g_ = nullptr,
       *attn_out_ = nullptr, *last_h_ = nullptr, *last_n_ = nullptr, *logits_ = nullptr;
  int* next_ids_ = nullptr;
  int* history_ = nullptr;
  int* step_ = nullptr;
  void* ssd_ws_ = nullptr;
  std::size_t ssd_ws_bytes_ = 0;
  void* dec_ws_ = nullptr;
  std::size_t dec_ws_bytes_ = 0;
  // metadata
  int *num_seqs_ = nullptr, *num_tokens_ = nullptr, *cu_seqlens_ = nullptr, *slots_ = nullptr,
      *context_lens_ = nullptr;
  std::unique_ptr<piecewise::segment_table> prefill_table_, decode_table_;
};

}  // namespace nemotron_h
