// The one description of every layer kind and of every tensor of the model.
//
// A layer kind is its pattern character, its name, the `layers_block_type` names that mean it
// and the list of its mixer's tensors: Hugging Face name suffix, shape from the config, dtype,
// whether it is a linear (GEMM) weight, and how synthetic weights draw it. Every layer also
// has the pre-norm `norm.weight`; the model has the embeddings before the layers and norm_f and
// lm_head after them. The config parser, the checkpoint loader, the synthetic weights,
// save_weights, check_shapes, bytes(), num_parameters(), the CPU reference and the GPU upload
// all read this table: adding a layer kind is a table entry (layer_kinds.cpp) plus its forward.
//
// Host only, C++17; nothing here touches the GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.hpp"
#include "model/dtype.hpp"
#include "model/splitmix.hpp"

namespace nemotron_h {

/// How synthetic_weights draws a tensor (transformers 5.17's `_init_weights`, see weights.hpp).
struct init_rule {
  enum class kind : std::uint8_t {
    normal,    ///< normal(0, scale(config))
    uniform,   ///< uniform(-scale(config), scale(config))
    constant,  ///< `value`; normal(value, spread) when synthetic_options::randomize_vectors
    special,   ///< `fill` writes the values from the tensor's own stream
  };
  kind how = kind::normal;
  double (*scale)(const model_config&) = nullptr;
  double value = 0;
  double spread = 0;
  void (*fill)(const model_config&, splitmix64& stream, bool randomize, float* out, std::size_t n) = nullptr;
};

/// One tensor of a layer kind, or of the model outside the layers.
struct tensor_spec {
  const char* suffix;  ///< the name after "backbone.layers.{i}." (model tensors: the whole name)
  std::vector<std::int64_t> (*shape)(const model_config&);
  dtype type;          ///< storage of an unquantized checkpoint on the host and the GPU: bf16 or f32
  init_rule init;
  /// A GEMM weight [out, in] applied to every token: the GPU passes it to gemm_engine as a
  /// `weight`, and it is the kind of tensor a quantized checkpoint stores as FP8 / NVFP4.
  bool linear = false;
  /// Whether the config has this tensor in its checkpoint (null: always). When it has not, the
  /// model holds zeros of its shape (conv1d.bias without use_conv_bias).
  bool (*present)(const model_config&) = nullptr;
  /// Consecutive tensors with the same `fused_as` are one matrix on the GPU (rows stacked in
  /// table order): q_proj | k_proj | v_proj -> "mixer.qkv_proj.weight".
  const char* fused_as = nullptr;
  /// With tie_word_embeddings, this tensor is a copy of the embeddings (lm_head): optional in a
  /// checkpoint, not counted twice in num_parameters.
  bool tied_to_embeddings = false;
};

/// A layer kind.
struct layer_kind_info {
  layer_kind kind;
  char code;                             ///< pattern character: 'M', '*', '-', 'E'
  const char* name;                      ///< "mamba", "attention", "mlp", "moe"
  std::vector<const char*> block_types;  ///< the `layers_block_type` names of this kind
  std::vector<tensor_spec> tensors;      ///< the mixer's tensors, in checkpoint order
};

/// Every supported layer kind, in enum order.
const std::vector<layer_kind_info>& layer_kinds();
/// The entry of `kind`.
const layer_kind_info& kind_info(layer_kind kind) noexcept;
/// The kind whose pattern character is `code`, or nullptr.
const layer_kind_info* find_kind(char code) noexcept;
/// The kind a `layers_block_type` entry names (a name or the pattern character), or nullptr.
const layer_kind_info* find_block_type(std::string_view name) noexcept;

/// A layer kind that published configs use and this model does not support yet (none at the
/// moment: 'E' was the last; the parser still names such kinds in its messages).
struct unsupported_kind {
  char code;               ///< e.g. 'E' before MoE was supported
  const char* block_type;  ///< "moe"
  const char* what;        ///< "MoE layers"
};
const std::vector<unsupported_kind>& unsupported_kinds();

/// The tensors of a layer of `kind` in checkpoint order: the pre-norm `norm.weight`, then
/// the mixer's. Index i of this list is index i of layer_weights::tensors.
const std::vector<const tensor_spec*>& layer_tensor_specs(layer_kind kind);
/// The index of `suffix` in layer_tensor_specs(kind), or -1.
int layer_tensor_index(layer_kind kind, std::string_view suffix) noexcept;
/// The model's tensors outside the layers ("globals"): embeddings, norm_f, lm_head. The first
/// `kGlobalsBeforeLayers` come before the layers in checkpoint order.
const std::vector<tensor_spec>& global_tensor_specs();
inline constexpr std::size_t kGlobalsBeforeLayers = 1;
/// Indices in global_tensor_specs().
enum global_tensor : int { kEmbeddings = 0, kNormF = 1, kLmHead = 2 };

/// "backbone.layers.{layer}." — the prefix of a layer's canonical tensor names.
std::string layer_prefix(int layer);

/// One tensor of a model resolved for a config.
struct tensor_entry {
  std::string name;  ///< canonical: "backbone.layers.3.mixer.in_proj.weight", "lm_head.weight"
  const tensor_spec* spec = nullptr;
  int layer = -1;    ///< -1 for the globals
  int index = 0;     ///< in layer_tensor_specs(kind), or in global_tensor_specs() when layer is -1
  std::vector<std::int64_t> shape;
  bool in_checkpoint = true;  ///< spec->present(config) (lm_head stays true even when tied)
};

/// Every tensor of the model `config` describes, in checkpoint order: embeddings, each layer's
/// tensors, norm_f, lm_head. Tensors that are not in the checkpoint are listed too
/// (in_checkpoint false). The config must be valid (model_config::validate).
std::vector<tensor_entry> model_tensors(const model_config& config);

}  // namespace nemotron_h
