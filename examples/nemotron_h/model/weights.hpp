// Host-side NemotronH weights: loaded from a safetensors checkpoint or made synthetically.
//
// Storage: every matrix and norm weight is bf16, kept as uint16_t bit patterns in PyTorch
// layout (nn.Linear [out, in], row-major). The per-head Mamba vectors A_log, D and dt_bias are
// fp32 (real checkpoints often keep them in fp32; bf16 sources convert exactly).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/config.hpp"

namespace nemotron_h {

using bf16_bits = std::uint16_t;

struct mamba_layer_weights {
  std::vector<bf16_bits> in_proj;   ///< [in_proj_dim, D]: rows z | xBC | dt
  std::vector<bf16_bits> conv_w;    ///< [conv_dim, K] (conv1d.weight [conv_dim, 1, K])
  std::vector<bf16_bits> conv_b;    ///< [conv_dim]; zeros when use_conv_bias is false
  std::vector<float> A_log;         ///< [H]
  std::vector<float> D;             ///< [H]
  std::vector<float> dt_bias;       ///< [H]
  std::vector<bf16_bits> norm;      ///< [d_inner], the gated RMSNorm weight
  std::vector<bf16_bits> out_proj;  ///< [D, d_inner]
};

struct attention_layer_weights {
  std::vector<bf16_bits> q_proj;  ///< [Hq*hd, D]
  std::vector<bf16_bits> k_proj;  ///< [Hkv*hd, D]
  std::vector<bf16_bits> v_proj;  ///< [Hkv*hd, D]
  std::vector<bf16_bits> o_proj;  ///< [D, Hq*hd]
};

struct mlp_layer_weights {
  std::vector<bf16_bits> up_proj;    ///< [F, D]
  std::vector<bf16_bits> down_proj;  ///< [D, F]
};

/// One layer: the pre-norm weight and the mixer of its kind (the other two stay empty).
struct layer_weights {
  layer_kind kind = layer_kind::mlp;
  std::vector<bf16_bits> norm;  ///< [D]
  mamba_layer_weights mamba;
  attention_layer_weights attn;
  mlp_layer_weights mlp;
};

struct model_weights {
  std::vector<bf16_bits> embeddings;  ///< [V, D]
  std::vector<bf16_bits> norm_f;      ///< [D]
  std::vector<bf16_bits> lm_head;     ///< [V, D] (a copy of embeddings when tied)
  std::vector<layer_weights> layers;

  /// Throws piecewise::config_error when a vector's size does not match `config`
  /// (names the layer and the weight). Used after loading and by the GPU upload.
  void check_shapes(const model_config& config) const;
  /// Bytes of all weights as stored here.
  [[nodiscard]] std::size_t bytes() const noexcept;
};

/// Loads a checkpoint (directory with model.safetensors or model.safetensors.index.json,
/// or a .safetensors file) for `config`. Accepts the prefixes `backbone.` and `model.` and
/// both `embeddings.weight` and `embedding.weight`; BF16/F16/F32/F64 tensors are converted
/// (to bf16, or to fp32 for A_log, D, dt_bias). When `lm_head.weight` is absent and
/// tie_word_embeddings is set, lm_head is the embeddings.
/// Throws piecewise::config_error naming the file and tensor for: missing tensors, unexpected
/// tensors (up to five are listed), a tensor given twice under two prefixes, a shape
/// different from the config's (both shapes in the message), and every checkpoint /
/// safetensors error (truncated file, corrupt header, missing shard...).
model_weights load_weights(const std::filesystem::path& dir, const model_config& config);

/// Options of synthetic_weights.
struct synthetic_options {
  /// Also randomise the vectors that transformers initialises to constants (norm weights
  /// 1 + 0.2 n, D 1 + 0.5 n, conv bias, A_log = log(U[1, 16])), so that layout mistakes in a
  /// kernel change the output instead of hiding behind constant vectors. Tests use it.
  bool randomize_vectors = false;
  /// Threads used to fill the large matrices (0 = hardware concurrency). The result does not
  /// depend on it.
  int threads = 0;
};

/// Deterministic synthetic weights for `config`, initialised as transformers 5.17's
/// NemotronH `_init_weights` does, so that activations stay realistic:
/// linear weights and embeddings normal(0, initializer_range); Mamba out_proj
/// kaiming-uniform (bound 1/sqrt(d_inner)) divided by sqrt(num_layers); A_log = log(1..H);
/// D = 1; dt_bias = inverse_softplus(dt), dt log-uniform in [time_step_min, time_step_max]
/// clamped to >= time_step_floor; norm weights 1. One deliberate difference: transformers
/// initialises conv1d.weight with normal(0, 0.02) and a zero bias; here the conv uses
/// PyTorch's Conv1d default (uniform(+-1/sqrt(K)) for weight and bias), which keeps x, B, C
/// of the SSM at a realistic magnitude. Results are identical across platforms for a
/// (config, seed) pair: splitmix64 streams per tensor, Box-Muller, no <random> distributions.
model_weights synthetic_weights(const model_config& config, std::uint64_t seed, const synthetic_options& opt = {});

/// The canonical checkpoint names and shapes the config expects ("backbone." prefix), in
/// file order. Used by load_weights, by tests that write checkpoints and by the runner.
struct expected_tensor {
  std::string name;
  std::vector<std::int64_t> shape;
};
std::vector<expected_tensor> expected_tensors(const model_config& config);

/// Writes `w` as a single model.safetensors (bf16, fp32 for A_log/D/dt_bias) into `dir`
/// with the given prefix ("backbone." or "model."), plus lm_head unless tied and
/// `omit_tied_lm_head`. Throws piecewise::config_error on I/O errors.
void save_weights(const std::filesystem::path& dir, const model_config& config, const model_weights& w,
                  const std::string& prefix = "backbone.", bool omit_tied_lm_head = true);

}  // namespace nemotron_h
