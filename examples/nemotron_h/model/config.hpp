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
/// which also holds each kind's pattern character and name). MoE layers ('E') are rejected
/// when a config is parsed.
enum class layer_kind : std::uint8_t { mamba, attention, mlp };

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

  // ---- derived ----
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
  /// "24 M, 4 *, 24 -": the number of layers of each kind.
  [[nodiscard]] std::string kind_counts() const;

  /// Checks every field (positivity, caps, Hq % Hkv, H % G, non-empty pattern, ...).
  /// Throws piecewise::config_error naming `name` and the field.
  void validate() const;
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
/// unknown block type, MoE layers ("MoE layers (layer i) are not supported yet"), biases
/// (use_bias / mlp_bias / attention_bias / mamba_proj_bias true), activations other than
/// relu2 (MLP) and silu (Mamba).
model_config parse_config_json(const std::filesystem::path& path);

/// Same as parse_config_json, from text; `origin` names the source in messages. Never reads
/// files; the fuzz entry point. Throws piecewise::config_error.
model_config parse_config_json_text(std::string_view text, std::string_view origin);

/// A built-in configuration: "small" (the default: the 52-layer Nemotron-H-8B pattern at
/// D 512), "tiny" (6 layers "M*M-M-", D 128, attention 4/2 x 128, Mamba 8 x 32, N 64: the
/// shapes of the transformers test fixture, which the GPU kernels support), "nano-9b-v2",
/// "nemotron-h-8b", "nemotron-h-4b". Throws piecewise::config_error for an unknown name,
/// listing the known ones.
model_config preset(std::string_view name);

/// Names accepted by preset(), the default first.
std::vector<std::string> list_presets();

/// A preset name, a path to a config.json, or a directory holding one.
/// Throws piecewise::config_error when it is none of these (or the config is bad).
model_config resolve_model(std::string_view arg);

}  // namespace nemotron_h
