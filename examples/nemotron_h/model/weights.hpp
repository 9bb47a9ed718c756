// Host-side NemotronH weights: loaded from a safetensors checkpoint or made synthetically.
//
// Every tensor is a host_tensor in the dtype the layer-kind table gives it (model/layer_kinds.hpp):
// matrices and norm weights bf16, the per-head Mamba vectors A_log, D and dt_bias fp32 (real
// checkpoints often keep them in fp32; bf16 sources convert exactly), all in PyTorch layout
// (nn.Linear [out, in], row-major). The tensors of a layer are stored in the table's order.
// Host only, C++17; nothing here touches the GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.hpp"
#include "model/layer_kinds.hpp"
#include "model/quant_config.hpp"
#include "model/safetensors.hpp"
#include "model/tensor.hpp"

namespace nemotron_h {

using bf16_bits = std::uint16_t;

/// One layer: its tensors in layer_tensor_specs(kind) order (the pre-norm first).
struct layer_weights {
  layer_kind kind = layer_kind::mlp;
  std::vector<host_tensor> tensors;

  /// The tensor with the table suffix `suffix` ("norm.weight", "mixer.in_proj.weight").
  /// Throws piecewise::config_error naming the tensor and the kind when the kind has none.
  [[nodiscard]] const host_tensor& get(std::string_view suffix) const;
  [[nodiscard]] host_tensor& get(std::string_view suffix);
};

struct model_weights {
  /// The tensors outside the layers, in global_tensor_specs() order: embeddings, norm_f, lm_head.
  std::vector<host_tensor> globals;
  std::vector<layer_weights> layers;

  [[nodiscard]] const host_tensor& embeddings() const { return globals.at(kEmbeddings); }
  [[nodiscard]] const host_tensor& norm_f() const { return globals.at(kNormF); }
  /// A copy of the embeddings (under its own name) when tied.
  [[nodiscard]] const host_tensor& lm_head() const { return globals.at(kLmHead); }
  /// The tensor an entry of model_tensors() describes.
  [[nodiscard]] const host_tensor& at(const tensor_entry& e) const;
  [[nodiscard]] host_tensor& at(const tensor_entry& e);

  /// Throws piecewise::config_error when the tensors do not match `config`: the layer count, a
  /// layer's kind, a tensor's shape or its dtype (a linear weight may also be quantized,
  /// fp8_e4m3 / nvfp4; the message names the tensor). Used after loading and by the GPU upload.
  void check_shapes(const model_config& config) const;
  /// Bytes of all weights as stored here (scales included).
  [[nodiscard]] std::size_t bytes() const noexcept;
};

/// Loads a checkpoint (directory with model.safetensors or model.safetensors.index.json,
/// or a .safetensors file) for `config`. Accepts the prefixes `backbone.`, `model.` and
/// `language_model.backbone.` (lm_head also as `language_model.lm_head.weight`), both
/// `embeddings.weight` and `embedding.weight`, and MoE routed experts either fused
/// (`mixer.experts.up_proj` [E, F, W], `mixer.experts.down_proj` [E, W, F]) or one tensor per
/// expert (`mixer.experts.{e}.up_proj.weight` [F, W], ...); `mtp.*` tensors (multi-token
/// prediction) are accepted and not used (one "info:" line on stderr says how many).
/// BF16/F16/F32/F64 tensors are converted to the table's dtype (bf16, or fp32 for A_log, D,
/// dt_bias, e_score_correction_bias). When `lm_head.weight` is absent and tie_word_embeddings
/// is set, lm_head is the embeddings. A ModelOpt-quantized checkpoint (FP8 per tensor, NVFP4
/// per block; see plan_checkpoint) keeps its linear weights quantized, with their scales
/// (host_tensor::scales); every scale value is checked finite and positive (block scales: not
/// NaN, not negative) before any weight is read. FP8 KV-cache scales are not used yet (an
/// "info:" line says so); quantized routed experts are refused ("not supported yet").
/// Throws piecewise::config_error naming the file and tensor for: missing tensors, unexpected
/// tensors (up to five are listed), a tensor given twice under two prefixes (or fused and per
/// expert), a shape different from the config's (both shapes, and the layer, in the message;
/// a missing expert is named with its layer and index), and every checkpoint /
/// safetensors error (truncated file, corrupt header, missing shard...). Every name and shape
/// is checked before any tensor data is read.
model_weights load_weights(const std::filesystem::path& dir, const model_config& config);

/// A checkpoint opened and checked as load_weights checks it (names, prefixes, duplicates,
/// missing and unexpected tensors, shapes, dtypes), no tensor data read yet: where each
/// tensor's bytes are. load_weights and the GPU upload (runner/device_weights.hpp) read it.
struct checkpoint_plan {
  std::unique_ptr<checkpoint> ck;
  std::string source;                ///< the checkpoint's index or file, for messages
  std::vector<tensor_entry> entries; ///< model_tensors(config)
  /// Per entry: its file and header entry, or {nullptr, nullptr} when the checkpoint does not
  /// hold it as one tensor (a tied lm_head; a tensor the config has no data for: zeros; routed
  /// experts stored one tensor per expert: see `pieces`).
  std::vector<std::pair<const safetensors_file*, const st_tensor_info*>> items;
  /// Per entry: empty, or for a fused expert tensor [E, out, in] that the checkpoint stores one
  /// tensor per expert (`mixer.experts.{e}.up_proj.weight` [out, in]), those E tensors in
  /// expert order (stacked along the first axis on load).
  std::vector<std::vector<std::pair<const safetensors_file*, const st_tensor_info*>>> pieces;
  /// Informational lines (e.g. the mtp.* tensors left unused).
  std::vector<std::string> notes;

  /// How the checkpoint stores a linear weight that NVIDIA ModelOpt quantized: `type`
  /// fp8_e4m3 (F8_E4M3 [out, in]) or nvfp4 (U8 [out, in / 2]), and its scale tensors by their
  /// ModelOpt suffix: "weight_scale" (FP8: fp32 scalar; NVFP4: F8_E4M3 [out, in / 16]),
  /// "weight_scale_2" (NVFP4 global), "input_scale"; also "k_scale" / "v_scale" (FP8 KV cache)
  /// on k_proj / v_proj whatever their type. `type` is the table's dtype and `scales` holds
  /// only KV-cache scales for an unquantized weight.
  struct quantized_entry {
    dtype type = dtype::bf16;
    std::map<std::string, std::pair<const safetensors_file*, const st_tensor_info*>> scales;
  };
  /// Per entry (empty scales and the table dtype for the tensors that are not quantized).
  std::vector<quantized_entry> quant;
  /// The quantization the checkpoint declares (hf_quant_config.json, or config.json's
  /// quantization_config, next to the checkpoint), if any.
  std::optional<quant_config> quantization;
};
/// Opens `dir` and makes every check of load_weights (same errors) that headers allow: for a
/// quantized checkpoint also that every FP8 / NVFP4 tensor is a linear weight of the type the
/// declared quantization gives its module, with every scale tensor it needs, of the right
/// dtype and shape (errors name the file, the tensor, the module and the layer); reads headers
/// and the quantization config only.
checkpoint_plan plan_checkpoint(const std::filesystem::path& dir, const model_config& config);

/// The scales of every quantized entry of `plan` (nullopt for the others), read from the files
/// and checked as load_weights checks them (every scale finite and positive, block scales not
/// NaN and not negative; errors name the file, the tensor and the layer). Reads the scale
/// tensors only, no weight. The GPU upload reads them before it takes any device memory.
std::vector<std::optional<tensor_scales>> read_checkpoint_scales(const checkpoint_plan& plan, const model_config& config);

/// What check_checkpoint found.
struct checkpoint_summary {
  std::filesystem::path source;  ///< the index file or the single .safetensors file
  std::size_t shards = 0;        ///< safetensors files
  std::size_t tensors = 0;       ///< tensors of the model in the checkpoint
  std::uint64_t file_bytes = 0;  ///< their data bytes in the files (before conversion)
  std::vector<std::string> notes;  ///< checkpoint_plan::notes (mtp.* tensors not used, ...)
  /// Per entry of model_tensors(config): the dtype the model keeps it in (the table's, or
  /// fp8_e4m3 / nvfp4 for a quantized linear weight; checkpoint_plan::quantized_entry::type).
  std::vector<dtype> types;
  /// The quantization the checkpoint declares, if any (checkpoint_plan::quantization).
  std::optional<quant_config> quantization;
};

/// plan_checkpoint's checks, summarised for the runner's plan (run_plan): every check
/// load_weights makes, on the headers alone (a zero-byte or truncated file fails here).
/// Throws piecewise::config_error with the same messages as load_weights.
checkpoint_summary check_checkpoint(const std::filesystem::path& dir, const model_config& config);

/// Options of synthetic_weights.
struct synthetic_options {
  /// Also randomise the vectors that transformers initialises to constants (norm weights
  /// 1 + 0.2 n, D 1 + 0.5 n, A_log = log(U[1, 16])), so that layout mistakes in a kernel
  /// change the output instead of hiding behind constant vectors. Tests use it.
  bool randomize_vectors = false;
  /// Threads used to fill the large matrices (0 = hardware concurrency). The result does not
  /// depend on it.
  int threads = 0;
};

/// Deterministic synthetic weights for `config`, each tensor drawn as its table entry says
/// (init_rule), as transformers 5.17's NemotronH `_init_weights` does, so that activations
/// stay realistic: linear weights and embeddings normal(0, initializer_range); Mamba out_proj
/// kaiming-uniform (bound 1/sqrt(d_inner)) divided by sqrt(num_layers); A_log = log(1..H);
/// D = 1; dt_bias = inverse_softplus(dt), dt log-uniform in [time_step_min, time_step_max]
/// clamped to >= time_step_floor; norm weights 1. One deliberate difference: transformers
/// initialises conv1d.weight with normal(0, 0.02) and a zero bias; here the conv uses
/// PyTorch's Conv1d default (uniform(+-1/sqrt(K)) for weight and bias), which keeps x, B, C
/// of the SSM at a realistic magnitude. fp32 tensors hold bf16-representable values (what a
/// bf16 checkpoint would hold). Results are identical across platforms for a (config, seed)
/// pair: splitmix64 streams per tensor, Box-Muller, no <random> distributions. The matrices
/// (normal / uniform rules) are drawn element by element by model/synthetic_draw.hpp, which
/// the GPU fill (kernels/synthetic_fill.cuh) shares: a model drawn on the GPU is the same.
model_weights synthetic_weights(const model_config& config, std::uint64_t seed, const synthetic_options& opt = {});

/// One tensor of synthetic_weights(config, seed, opt) as its own entry draws it (zeros when not
/// in the checkpoint; a tied lm_head is not special-cased: callers copy the embeddings). The
/// GPU draw uses it for the small constant / special vectors (norm weights, A_log, D, dt_bias).
host_tensor synthetic_tensor(const model_config& config, const tensor_entry& e, std::uint64_t seed,
                             const synthetic_options& opt = {});

/// The canonical checkpoint names, shapes and dtypes the config expects ("backbone." prefix),
/// in file order: the entries of model_tensors() that are in the checkpoint. Used by tests
/// that write checkpoints and by the config fuzzer.
struct expected_tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  dtype type = dtype::bf16;
};
std::vector<expected_tensor> expected_tensors(const model_config& config);

/// Writes `w` as a single model.safetensors (each tensor in its dtype: bf16, fp32 for
/// A_log/D/dt_bias) into `dir` with the given prefix ("backbone." or "model."), plus lm_head
/// unless tied and `omit_tied_lm_head`. Quantized weights are written in ModelOpt's layout
/// (see checkpoint_plan::quantized_entry) with an hf_quant_config.json that declares them
/// (one algorithm: its name and the linear modules left unquantized as exclude_modules; more
/// than one: MIXED_PRECISION). Throws piecewise::config_error on I/O errors.
void save_weights(const std::filesystem::path& dir, const model_config& config, const model_weights& w,
                  const std::string& prefix = "backbone.", bool omit_tied_lm_head = true);

/// Writes the bytes of tensor `e` (its table dtype, e.spec->type) to out[0, bytes).
using tensor_bytes_fn = std::function<void(const tensor_entry& e, std::uint8_t* out, std::size_t bytes)>;
/// save_weights for tensors that are not host tensors (the GPU's, for instance): the same file,
/// written tensor by tensor with one tensor's buffer on the host at a time. Throws
/// piecewise::config_error on I/O errors, naming the file (and the tensor being written).
void save_checkpoint(const std::filesystem::path& dir, const model_config& config, const tensor_bytes_fn& fetch,
                     const std::string& prefix = "backbone.", bool omit_tied_lm_head = true);

}  // namespace nemotron_h
