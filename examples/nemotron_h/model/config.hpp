// NemotronH model configuration: the shapes and constants the math needs, parsed from a
// Hugging Face `config.json` (model_type "nemotron_h") or taken from a built-in preset.
//
// Everything here is host-only and never touches the GPU. Errors are reported as
// piecewise::config_error whose message names the origin (file path or preset) and the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace nemotron_h {

/// The mixer of one layer: one value per entry of the layer-kind table (model/layer_kinds.hpp,
/// which also holds each kind's pattern character and name). MoE layers ('E', Nemotron 3) run
/// on the CPU reference; the GPU runner rejects them until its kernels exist.
enum class layer_kind : std::uint8_t { mamba, attention, mlp, moe };

/// All the shapes and constants of a NemotronH model (see shared/reference/nemotron_h.md).
struct model_config {
  std::string name;  ///< preset name or the path the config was read from (for messages)

  int vocab_size = 0;         ///< V
  int hidden_size = 0;        ///< D
  int intermediate_size = 0;  ///< F, MLP layers ('-')

  std::vector<layer_kind> layers;  ///< one mixer a layer
  std::string pattern;             ///< the same as characters, e.g. "M-M*-"

  int num_attention_heads = 0;  ///< Hq
  int num_key_value_heads = 0;  ///< Hkv (Hq % Hkv == 0)
  int head_dim = 0;             ///< hd (its own field: Hq * hd may differ from D)

  int mamba_num_heads = 0;  ///< H
  int mamba_head_dim = 0;   ///< P
  int ssm_state_size = 0;   ///< N
  int n_groups = 0;         ///< G (H % G == 0)
  int conv_kernel = 0;      ///< K
  int chunk_size = 0;       ///< SSD chunk length L (an implementation choice, not math)

  double eps = 1e-5;  ///< layer_norm_epsilon, used by every RMSNorm (also the gated one)
  double time_step_min = 0.001;
  double time_step_max = 0.1;
  double time_step_floor = 1e-4;  ///< init only: dt is clamped to at least this when sampled
  double time_step_limit_lo = 0.0;  ///< fused kernels clamp dt to [lo, hi]
  double time_step_limit_hi = std::numeric_limits<double>::infinity();
  bool use_conv_bias = true;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;  ///< std of the synthetic linear / embedding weights

  // ---- MoE layers ('E'); read and checked only when the pattern has one (docs/moe.md) ----
  int n_routed_experts = 0;                     ///< E
  int num_experts_per_tok = 0;                  ///< k, experts chosen per token
  int moe_intermediate_size = 0;                ///< F_e, width of a routed expert
  int moe_shared_expert_intermediate_size = 0;  ///< F_s, width of the one shared expert
  int n_shared_experts = 1;                     ///< always 1 (other values are rejected)
  int n_group = 1;                              ///< expert groups of the grouped top-k
  int topk_group = 1;                           ///< groups kept per token
  bool norm_topk_prob = true;                   ///< renormalise the k weights to sum 1
  double routed_scaling_factor = 1.0;           ///< times the routed experts' weights
  int moe_latent_size = 0;                      ///< 0: null (experts at hidden size); else the latent width
  int num_nextn_predict_layers = 0;             ///< MTP layers: accepted, not used

  // ---- derived ----
  /// The width the routed experts work at: moe_latent_size, or hidden_size without latent.
  [[nodiscard]] int moe_width() const noexcept { return moe_latent_size > 0 ? moe_latent_size : hidden_size; }
  [[nodiscard]] bool latent_moe() const noexcept { return moe_latent_size > 0; }

  [[nodiscard]] int num_layers() const noexcept { return static_cast<int>(layers.size()); }
  [[nodiscard]] int d_inner() const noexcept { return mamba_num_heads * mamba_head_dim; }
  /// d_inner + 2*G*N: the channels of the causal conv (x | B | C).
  [[nodiscard]] int conv_dim() const noexcept { return d_inner() + 2 * n_groups * ssm_state_size; }
  /// Output width of in_proj: z [d_inner] | xBC [conv_dim] | dt [H].
  [[nodiscard]] int in_proj_dim() const noexcept { return d_inner() + conv_dim() + mamba_num_heads; }
  [[nodiscard]] int q_dim() const noexcept { return num_attention_heads * head_dim; }
  [[nodiscard]] int kv_dim() const noexcept { return num_key_value_heads * head_dim; }
  /// Number of layers of a kind.
  [[nodiscard]] int count(layer_kind kind) const noexcept;
  /// Index of a layer among the layers of its own kind (e.g. the 3rd Mamba layer -> 2).
  [[nodiscard]] int index_in_kind(int layer) const;
  /// Total number of parameters of the checkpoint tensors (lm_head counted once even if
  /// tied), from the layer-kind table. The config must be valid.
  [[nodiscard]] std::int64_t num_parameters() const;
  /// "MoE 128 experts, top 6, width 1856, shared 3712, groups 1/1, scale 2.5, renormalised", or
  /// "" without MoE layers.
  [[nodiscard]] std::string moe_summary() const;
  /// "24 M, 4 *, 24 -" (", 23 E" only when there are MoE layers): the layers of each kind.
  [[nodiscard]] std::string kind_counts() const;

  /// Checks every field (positivity, caps, Hq % Hkv, H % G, non-empty pattern, ...; with MoE
  /// layers also k <= E, E % n_group, topk_group <= n_group, k <= the experts of the kept
  /// groups). Throws piecewise::config_error naming `name` and the field.
  void validate() const;
  /// The first `n` layers of this model, every shape unchanged (runner's --layers N).
  /// Throws piecewise::config_error when n is outside [1, num_layers()].
  [[nodiscard]] model_config first_layers(int n) const;
  /// The MoE part of validate() (called by it when there are 'E' layers).
  void validate_moe() const;
  /// One line: "name: 52 layers (24 M, 4 *, 24 -), D 512, ...".
  [[nodiscard]] std::string summary() const;
};

/// Parses a Hugging Face config.json of model_type "nemotron_h".
/// Reads the pattern from `hybrid_override_pattern` (chars M * - E) or `layers_block_type`
/// (mamba|linear_attention, attention|full_attention, mlp, moe), `head_dim` or
/// `attention_head_dim`, `n_groups` or `mamba_n_groups`, `conv_kernel` or `mamba_d_conv`,
/// `chunk_size` or `mamba_chunk_size`. Throws piecewise::config_error naming the file and the
/// field for: unreadable file, invalid JSON, missing or mistyped field, inconsistent values
/// (Hq % Hkv, H % G, num_hidden_layers vs the pattern, the two pattern fields disagreeing),
/// unknown block type, biases (use_bias / mlp_bias / attention_bias / mamba_proj_bias true),
/// activations other than relu2 (MLP) and silu (Mamba). With MoE layers ('E' / "moe") it reads
/// n_routed_experts (or num_local_experts), num_experts_per_tok, moe_intermediate_size,
/// moe_shared_expert_intermediate_size, n_shared_experts, n_group, topk_group, norm_topk_prob,
/// routed_scaling_factor and moe_latent_size (null or an integer), with transformers 5.17's
/// defaults where absent, and checks them (validate); num_nextn_predict_layers and the
/// mtp_* fields (multi-token prediction) are accepted and not used.
model_config parse_config_json(const std::filesystem::path& path);

/// Same as parse_config_json, from text; `origin` names the source in messages. Never reads
/// files; the fuzz entry point. Throws piecewise::config_error.
model_config parse_config_json_text(std::string_view text, std::string_view origin);

/// A built-in configuration: "small" (the default: the 52-layer Nemotron-H-8B pattern at
/// D 512), "tiny" (6 layers "M*M-M-", D 128, attention 4/2 x 128, Mamba 8 x 32, N 64: the
/// shapes of the transformers test fixture, which the GPU kernels support), "tiny-moe" (the
/// same shapes with MoE layers, "M*ME-E": 8 experts, top 2, widths 64 / 128), "nano-9b-v2",
/// "nemotron-h-8b", "nemotron-h-4b", "nemotron-h-47b", "nemotron-h-56b", "nano-12b-v2",
/// "nemotron-3-nano-4b", "nemotron-3-nano-30b-a3b", "nemotron-3-super-120b-a12b",
/// "nemotron-3-ultra-550b-a55b" (shapes of shared/reference/nemotron_family.md). Throws
/// piecewise::config_error for an unknown name, listing the known ones.
model_config preset(std::string_view name);

/// Names accepted by preset(), the default first.
std::vector<std::string> list_presets();

/// A preset name, a path to a config.json, or a directory holding one.
/// Throws piecewise::config_error when it is none of these (or the config is bad).
model_config resolve_model(std::string_view arg);

}  // namespace nemotron_h
