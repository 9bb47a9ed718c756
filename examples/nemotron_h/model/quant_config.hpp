// The quantization a checkpoint declares, in NVIDIA ModelOpt's format: hf_quant_config.json
// ({"quantization": {"quant_algo", "kv_cache_quant_algo", "exclude_modules", "group_size"}}) or
// config.json's "quantization_config" ({"quant_method": "modelopt", "quant_algo", "ignore",
// "kv_cache_scheme"}), including per-layer mixed precision ("quant_algo": "MIXED_PRECISION"
// with "quantized_layers": {module: {"quant_algo": ...}}). Exclude lists are shell-style
// wildcards (fnmatch). Host only; reading only: no quantized kernel exists yet.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nemotron_h {

enum class quant_algo { none, fp8, nvfp4, w4a16_nvfp4 };

/// "none", "FP8", "NVFP4", "W4A16_NVFP4".
std::string_view to_string(quant_algo a) noexcept;

/// The module a weight belongs to, as ModelOpt's configs and scale tensors name it:
/// "backbone.layers.3.mixer.in_proj.weight" -> "backbone.layers.3.mixer.in_proj" (a name
/// without ".weight" is its own module).
std::string module_of(std::string_view weight_name);

struct quant_config {
  std::string source;                  ///< the file it came from (for messages)
  quant_algo algo = quant_algo::none;  ///< the default of every module not excluded
  bool mixed = false;                  ///< MIXED_PRECISION: only `layers` are quantized
  std::map<std::string, quant_algo> layers;  ///< mixed precision: module -> its algorithm
  quant_algo kv_cache = quant_algo::none;    ///< FP8 or none
  std::vector<std::string> exclude;    ///< wildcards of modules left in bf16
  int group_size = 0;                  ///< NVFP4 block size (16); 0 when not given

  /// The algorithm of module `module` ("backbone.layers.3.mixer.in_proj", no ".weight"): its
  /// mixed-precision entry, else none when an exclude pattern matches it, else `algo`.
  [[nodiscard]] quant_algo algo_of(std::string_view module) const;
  /// "FP8 (ModelOpt, hf_quant_config.json), KV cache FP8, 3 exclude patterns".
  [[nodiscard]] std::string summary() const;
};

/// Parses the text of hf_quant_config.json (`hf_file` true) or of a config.json (its
/// "quantization_config"; nullopt when it has none). Throws piecewise::config_error naming
/// `origin` and the field: invalid JSON, a quant_method other than modelopt, an unknown
/// quant_algo or kv-cache algorithm, an exclude list that is not a list of strings, an NVFP4
/// group_size other than 16, a mixed-precision entry without its algorithm.
std::optional<quant_config> parse_quant_config(std::string_view json, const std::string& origin, bool hf_file);

/// DIR/hf_quant_config.json if it exists, else DIR/config.json's quantization_config; nullopt
/// when neither declares one. Same errors, naming the file.
std::optional<quant_config> read_quant_config(const std::filesystem::path& dir);

}  // namespace nemotron_h
