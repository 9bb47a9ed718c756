// The whole-model NemotronH forward on the CPU in float64: the reference the GPU runner and
// the transformers fixture are compared with. Built from the nemotron_h::ref:: building
// blocks (reference/reference.hpp); the host weights are converted exactly, tensor by tensor
// as the layer-kind table (model/layer_kinds.hpp) lists them.
//
// MoE layers ('E') run ref::moe_forward (reference/moe_ref.cpp, docs/moe.md).
//
// dt follows transformers' pure-PyTorch path: softplus(dt + dt_bias) clamped to
// [time_step_min, time_step_limit_hi] (hi is +inf in real configs). Single-threaded; meant
// for small shapes (tests, --check). Never touches the GPU.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "model/config.hpp"
#include "model/weights.hpp"
#include "reference/reference.hpp"

namespace nemotron_h {

/// The routing constants of the config's MoE layers, for ref::moe_route / ref::moe_forward.
ref::moe_routing moe_routing_of(const model_config& config);

/// The weights of a model in float64, ready for the CPU forward.
class cpu_model {
 public:
  /// Converts `w` (checked against `config`) to float64.
  /// Throws piecewise::config_error when the weights do not match the config. FP8 weights with
  /// an input scale get their GEMM inputs fake-quantized (e4m3(x / s) x s), in MoE layers too
  /// (the shared expert and the latent projections: the router and the routed experts are
  /// never quantized, load_weights refuses that).
  cpu_model(model_config config, const model_weights& w);

  [[nodiscard]] const model_config& config() const noexcept { return config_; }

  /// One layer in float64: its tensors in layer_tensor_specs(kind) order (quantized weights
  /// dequantized exactly).
  struct layer {
    layer_kind kind;
    std::vector<std::vector<double>> tensors;
    /// Per tensor: the static FP8 scale its GEMM input is fake-quantized with (an fp8_e4m3
    /// weight with an input scale, W8A8), else 0. NVFP4 weights run weight-only (as on Hopper).
    std::vector<float> input_scales;
    /// The tensor with table suffix `suffix`. Throws piecewise::config_error when the kind
    /// has none.
    [[nodiscard]] const std::vector<double>& get(std::string_view suffix) const;
  };
  std::vector<double> embeddings, norm_f, lm_head;
  float lm_head_input_scale = 0;  ///< as layer::input_scales, for lm_head
  std::vector<layer> layers;

 private:
  model_config config_;
};

/// The float64 weights of MoE layer `L` of a model with `config`, as ref::moe_forward reads
/// them (pointers into L; the latent projections null without moe_latent_size; no linear
/// hook). Throws piecewise::config_error when L is not an MoE layer.
ref::moe_layer_ref moe_layer_of(const model_config& config, const cpu_model::layer& L);

/// The cached state of one sequence: conv and SSM state for Mamba layers, K and V for
/// attention layers, indexed by layer (entries of other kinds stay empty).
struct cpu_sequence_state {
  std::vector<std::vector<double>> conv;  ///< [K-1, conv_dim] per Mamba layer, oldest first
  std::vector<std::vector<double>> ssm;   ///< [H, P, N] per Mamba layer
  std::vector<std::vector<double>> k, v;  ///< [T, Hkv, hd] per attention layer (grows)
  std::int64_t length = 0;                ///< tokens processed so far
};

/// One sequence with its cached state: prefill in one or several chunks, then decode steps.
/// The model must outlive the session.
class cpu_session {
 public:
  explicit cpu_session(const cpu_model& model);

  /// Runs `tokens` after the tokens already processed (continuing the conv/SSM state and
  /// attending to the cached keys). Returns the logits of the last token [V]; when
  /// `all_logits` is not null it receives the logits of every token [T, V] (row-major).
  /// Throws piecewise::config_error for an empty chunk or a token id outside [0, V).
  std::vector<double> prefill(std::span<const std::int32_t> tokens, std::vector<double>* all_logits = nullptr);
  /// One token: prefill({token}).
  std::vector<double> decode(std::int32_t token);

  [[nodiscard]] std::int64_t length() const noexcept { return state_.length; }
  [[nodiscard]] const cpu_sequence_state& state() const noexcept { return state_; }
  /// Forgets every cached token (zero state).
  void reset();

  /// Called with the input of every GEMM of a linear weight before it is (fake-)quantized:
  /// the layer (-1 for lm_head), the weight's table suffix ("mixer.in_proj.weight"), the
  /// [T, K] input. Calibration (model/quantize.hpp) records amax with it. Not called inside
  /// MoE layers.
  using linear_observer = std::function<void(int layer, std::string_view suffix, std::span<const double> x)>;
  void set_linear_observer(linear_observer f) { observer_ = std::move(f); }

 private:
  /// y[T, N] = x[T, K] W^T for the linear weight `suffix` of layer `li` (-1: lm_head), its
  /// input fake-quantized when the weight has an FP8 input scale.
  void linear(int li, std::string_view suffix, const double* x, double* y, int T, int K, int N);

  const cpu_model* model_;
  cpu_sequence_state state_;
  linear_observer observer_;
};

/// The result of cpu_forward.
struct cpu_forward_result {
  std::vector<std::vector<double>> last_logits;  ///< per prompt, [V]
  std::vector<std::vector<double>> all_logits;   ///< per prompt, [T_i, V] (only when asked)
};

/// A packed batch: `tokens` holds the prompts back to back, `seq_lens` their lengths (each
/// prompt is its own sequence, starting from zero state). Returns each prompt's last-position
/// logits, and every position's when `all_positions`.
/// Throws piecewise::config_error when the lengths do not add up, a length is < 1, or a
/// token id is outside [0, V).
cpu_forward_result cpu_forward(const cpu_model& model, std::span<const std::int32_t> tokens,
                               std::span<const int> seq_lens, bool all_positions = false);

/// Relative norm error ||a - b|| / ||b|| (0 when both are zero). Sizes must match.
double rel_norm_error(std::span<const double> a, std::span<const double> b);
/// Index of the largest value (the first one on ties).
int argmax(std::span<const double> v);

}  // namespace nemotron_h
