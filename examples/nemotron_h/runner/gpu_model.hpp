// The NemotronH model on the GPU: the forward written once for every piecewise mode, over
//  - device_weights (runner/device_weights.hpp): the weights, one arena;
//  - one buffer plan (runner/buffer_plan.hpp) for the activations, the state slots (KV cache,
//    conv and SSM state), the workspaces and the batch metadata: every size is stated once;
//  - batch_metadata (runner/batch_metadata.hpp): what the host writes before a forward.
//
// Each layer's pre-norm, projections and MLP are ordinary launches captured into segments;
// the sequence-dependent core of Mamba layers (conv + SSD scan, or the recurrent decode
// update) and attention layers (prefill over the cached prefix, or decode) are split-point
// callbacks. Every kernel reads the batch metadata from device memory, so both split kinds
// are capture-safe and the whole forward can also run as one full graph.
//
// Linear weights are bf16 or ModelOpt FP8 (W8A8, per tensor). An FP8 projection's input is
// quantized with its static input scale into the GEMM engine's e4m3 scratch (reserved here,
// once, for the most rows and the widest FP8 input) by the kernel that produces it: the
// pre-norm (rmsnorm_fp8), the gated norm before out_proj (gated_rmsnorm_fp8) and the squared
// ReLU before down_proj (relu2_fp8), bit for bit what a separate quantize kernel gives
// (fuse_fp8_inputs(false), or NH_FP8_FUSE=0, runs that separate kernel instead, for A/B
// measurements and the test that compares them). MoE layers quantize inside gemm_engine::linear.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "kernels/gemm.cuh"
#include "kernels/kv_cache.cuh"
#include "kernels/mamba_state.cuh"
#include "kernels/moe.cuh"
#include "kernels/sampling.cuh"
#include "model/config.hpp"
#include "model/weights.hpp"
#include "piecewise/arena.hpp"
#include "piecewise/forward_context.hpp"
#include "piecewise/segment_table.hpp"
#include "runner/batch_metadata.hpp"
#include "runner/batching.hpp"
#include "runner/device_weights.hpp"

namespace nemotron_h {

class gpu_model {
 public:
  /// Uploads `weights` (checked against `config`) and allocates every buffer.
  /// Throws piecewise::config_error for unsupported shapes or weight dtypes (naming the field
  /// or the tensor, before any device memory is taken) and piecewise::cuda_error when device
  /// memory runs out (naming the size).
  gpu_model(const model_config& config, const model_weights& weights, const gpu_model_limits& limits);
  /// The same with the weights from `source` (runner/device_weights.hpp): drawn on the GPU or
  /// streamed from a checkpoint, with no host copy of the model.
  gpu_model(const model_config& config, const weight_source& source, const gpu_model_limits& limits);
  gpu_model(const gpu_model&) = delete;
  gpu_model& operator=(const gpu_model&) = delete;

  [[nodiscard]] const model_config& config() const noexcept { return cfg_; }
  [[nodiscard]] const gpu_model_limits& limits() const noexcept { return lim_; }
  /// The segment table of a phase: one entry per layer; Mamba and attention layers are split
  /// points (capture-safe), MLP and MoE layers null (captured whole).
  [[nodiscard]] const piecewise::segment_table& table(phase p) const noexcept {
    return p == phase::prefill ? *prefill_table_ : *decode_table_;
  }
  /// The forward of a phase, for a graph_runner over table(p).
  [[nodiscard]] piecewise::forward_fn forward(phase p);
  /// Chooses the cuBLASLt algorithm of every GEMM the forward of phase `p` runs with `padded`
  /// rows (host heuristics only, no GPU work), so the forward can be captured with no eager
  /// warm-up run. Not capture-safe. Throws piecewise::config_error when a shape has no
  /// algorithm.
  void prepare(phase p, int padded);

  // ---- batch set-up (host, stream-ordered, no sync; see batch_metadata) ----

  /// One prefill chunk: sequence i has `lens[i]` new tokens `tokens` (packed), lives in slot
  /// `slots[i]` and has `context[i]` tokens cached already. Writes ids and metadata.
  /// Throws piecewise::config_error naming the sequence for bad lengths, slots or contexts.
  void set_prefill_batch(const std::vector<int>& tokens, const std::vector<int>& lens,
                         const std::vector<int>& slots, const std::vector<int>& context, cudaStream_t s) {
    batch_->set_prefill(tokens, lens, slots, context, s);
  }
  /// Decode set-up: sequence i (slot slots[i]) continues from `context[i]` cached tokens with
  /// next token `first_ids[i]`. Later steps advance on the device (argmax, context += 1).
  void set_decode_batch(const std::vector<int>& first_ids, const std::vector<int>& slots,
                        const std::vector<int>& context, cudaStream_t s) {
    batch_->set_decode(first_ids, slots, context, s);
  }
  /// Zeroes the metadata (no sequences): used before capture so warm-ups touch no state.
  void clear_batch(cudaStream_t s) { batch_->clear(s); }
  /// How slot `slot` picks its tokens from the next forward on (stream-ordered, no sync).
  /// Throws piecewise::config_error for a slot out of range, or sampled settings
  /// (temperature > 0) on a model built without limits.sampling.
  void set_sampling(int slot, const sampling_params& params, cudaStream_t s);

  // ---- results (synchronize `s`) ----

  /// Logits of the first `n` rows of the last-position buffer (one row a sequence), as float,
  /// [n, vocab] (the padding columns of a vocabulary that is not a multiple of 8 dropped).
  std::vector<float> read_logits(int n, cudaStream_t s) const;
  /// Greedy ids of the first `n` sequences after the last forward.
  std::vector<int> read_next_ids(int n, cudaStream_t s) const;
  /// Tokens routed to each expert by the last MoE layer of the last forward ([E]; empty for a
  /// model without MoE layers): the expert load the benchmarks report.
  std::vector<int> read_expert_counts(cudaStream_t s) const;
  /// Token history of the decode steps run since set_decode_batch: [steps][n].
  std::vector<int> read_history(int steps, int n, cudaStream_t s) const;

  /// The decode forward's input ids [max_rows] on the device: after a decode step, row r holds
  /// the id sequence r picked (the next step's input).
  [[nodiscard]] const int* batch_ids() const noexcept { return batch_->ids(); }
  /// Device bytes of the weights.
  [[nodiscard]] std::size_t weight_bytes() const noexcept { return weights_->bytes(); }
  /// The weights on the device.
  [[nodiscard]] const device_weights& weights() const noexcept { return *weights_; }
  /// Device bytes of the activations, state, workspaces and metadata.
  [[nodiscard]] std::size_t buffer_bytes() const noexcept { return buffers_->used(); }
  [[nodiscard]] gemm_engine& gemm() noexcept { return *gemm_; }
  /// Whether the producers of FP8 projections' inputs write them quantized (default: yes unless
  /// NH_FP8_FUSE=0 in the environment, read at construction) or a separate quantize kernel runs
  /// (the unfused path; same bits, one more kernel a projection). Set it before capturing; a
  /// captured graph keeps its kernels. Host only.
  void fuse_fp8_inputs(bool on) noexcept { fuse_fp8_ = on; }
  [[nodiscard]] bool fuses_fp8_inputs() const noexcept { return fuse_fp8_; }
  [[nodiscard]] const bf16* logits_buffer() const noexcept { return logits_; }

 private:
  /// A layer's split point (null name: the layer is captured whole).
  struct split_decl {
    const char* name[2] = {nullptr, nullptr};  ///< prefill, decode
    void (gpu_model::*run)(int, const piecewise::split_args&, phase) = nullptr;
    const char* output = nullptr;               ///< the buffer whose padded rows are zeroed
    bf16* const* buffer = nullptr;              ///< its address, read once the plan is allocated
    std::size_t row_bytes = 0;
  };
  /// What the forward of one layer reads: weights, kernels' vectors, state, split point.
  struct layer_dev {
    layer_kind kind;
    const bf16* norm = nullptr;
    // mamba
    weight in_proj, out_proj;
    const bf16 *conv_w = nullptr, *conv_b = nullptr, *gnorm = nullptr;
    const float *A_log = nullptr, *D = nullptr, *dt_bias = nullptr;
    mamba_layer_state state;
    // attention (q|k|v fused along the output dimension)
    weight qkv, o_proj;
    kv_cache_view cache;
    // mlp
    weight up, down;
    // moe: the router [E rounded up to 8, D] and its correction bias [E] (fp32), the routed
    // experts [E, F, W] and [E, W, F], the shared expert, the latent projections (or empty)
    weight gate;
    const float* gate_bias = nullptr;
    const bf16 *experts_up = nullptr, *experts_down = nullptr;
    weight shared_up, shared_down, fc1_latent, fc2_latent;
    split_decl split;
  };

  void bind_layer(int l, buffer_plan& plan);
  void build_tables();
  void mamba_split(int layer, const piecewise::split_args& a, phase p);
  void attention_split(int layer, const piecewise::split_args& a, phase p);
  /// One MoE layer on the normed rows xn_ (router, routed experts, shared expert), added
  /// into the residual stream h_. Captured whole: every kernel reads the token count from the
  /// batch metadata.
  void moe_layer(const layer_dev& L, const batch_view& b, cudaStream_t s);
  /// True when W's input is written quantized by its producer (fusion on, W FP8).
  [[nodiscard]] bool fused(const weight& W) const noexcept { return fuse_fp8_ && W.type == dtype::fp8_e4m3; }
  /// The layer's pre-norm of h_ for projection W: into W's e4m3 input (rmsnorm_fp8) when
  /// fused(W), else into xn_ (bf16).
  void pre_norm(const layer_dev& L, const weight& W, int T, cudaStream_t s);
  /// y (+)= x W^T from what W's producer wrote: W's e4m3 input when fused(W), else the bf16 x.
  void project(const bf16* x, const weight& W, bf16* y, int T, cudaStream_t s, bool accumulate = false);

  model_config cfg_;
  gpu_model_limits lim_;
  mamba_dims md_;
  int proj_width_ = 0;
  int in_proj_ld_ = 0;  // in_proj's output width rounded up to 8: the row stride of proj_ in Mamba layers
  int vocab_ld_ = 0;    // the vocabulary rounded up to 8: the row stride of logits_
  std::size_t y_cols_ = 0, attn_cols_ = 0;
  int max_rows_ = 0;  // token rows of every activation buffer
  int max_seqs_ = 0;  // rows of the per-sequence buffers
  bool fuse_fp8_ = true;  // see fuse_fp8_inputs()
  std::unique_ptr<gemm_engine> gemm_;
  std::unique_ptr<device_weights> weights_;
  std::unique_ptr<batch_metadata> batch_;
  std::unique_ptr<piecewise::device_arena> buffers_;
  std::vector<layer_dev> layers_;
  // activations and workspaces (addresses from the buffer plan)
  bf16 *h_ = nullptr, *xn_ = nullptr, *proj_ = nullptr, *conv_out_ = nullptr, *y_ = nullptr, *g_ = nullptr,
       *attn_out_ = nullptr, *last_h_ = nullptr, *last_n_ = nullptr, *logits_ = nullptr;
  int* next_ids_ = nullptr;
  int* history_ = nullptr;
  sampling_params* sampling_ = nullptr;  // [max_seqs_] by slot (limits.sampling only)
  void* sample_ws_ = nullptr;
  std::size_t sample_ws_bytes_ = 0;
  void* ssd_ws_ = nullptr;
  std::size_t ssd_ws_bytes_ = 0;
  void* dec_ws_ = nullptr;
  std::size_t dec_ws_bytes_ = 0;
  // MoE layers: router logits fp32 [max_rows_, router_ld_], the routing plan, the experts'
  // permuted rows (up: [max_rows_ * k, F]; down: [max_rows_ * k, W]) and the latent rows.
  int router_ld_ = 0;
  float* router_logits_ = nullptr;
  moe_plan_view moe_plan_{};
  bf16 *moe_up_ = nullptr, *moe_down_ = nullptr, *moe_latent_ = nullptr;
  std::unique_ptr<piecewise::segment_table> prefill_table_, decode_table_;
};

}  // namespace nemotron_h
