#include "model/quant_config.hpp"

#include <fnmatch.h>


#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/messages.hpp"
#include "model/read_file.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {

namespace {

using json = nlohmann::json;

// The same bound as config.json's (model/config.cpp).
constexpr std::uintmax_t kMaxQuantConfigBytes = 16u << 20;

quant_algo algo_named(const json& v, const std::string& origin, const char* field, bool allow_mixed, bool* mixed) {
  if (v.is_null()) return quant_algo::none;
  if (!v.is_string()) fail(origin, fmt::format("{} must be a string, not {}", field, printable(v.dump())));
  const std::string s = v.get<std::string>();
  if (s == "FP8") return quant_algo::fp8;
  if (s == "NVFP4") return quant_algo::nvfp4;
  if (s == "W4A16_NVFP4") return quant_algo::w4a16_nvfp4;
  if (allow_mixed && s == "MIXED_PRECISION") {
    *mixed = true;
    return quant_algo::none;
  }
  fail(origin, fmt::format("{} '{}' is not supported (FP8, NVFP4, W4A16_NVFP4{})", field, printable(s),
                           allow_mixed ? ", MIXED_PRECISION" : ""));
}

std::vector<std::string> string_list(const json& v, const std::string& origin, const char* field) {
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (!v.is_array()) fail(origin, fmt::format("{} must be a list of module patterns", field));
  for (const json& e : v) {
    if (!e.is_string()) fail(origin, fmt::format("{} holds {}, which is not a string", field, printable(e.dump())));
    out.push_back(e.get<std::string>());
  }
  return out;
}

json parse_text(std::string_view text, const std::string& origin) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(origin, fmt::format("invalid JSON ({})", e.what()));
  }
}


}  // namespace

std::string_view to_string(quant_algo a) noexcept {
  switch (a) {
    case quant_algo::none: return "none";
    case quant_algo::fp8: return "FP8";
    case quant_algo::nvfp4: return "NVFP4";
    case quant_algo::w4a16_nvfp4: return "W4A16_NVFP4";
  }
  return "?";
}

std::string module_of(std::string_view weight_name) {
  constexpr std::string_view w = ".weight";
  return std::string(weight_name.size() > w.size() && weight_name.ends_with(w)
                         ? weight_name.substr(0, weight_name.size() - w.size())
                         : weight_name);
}

quant_algo quant_config::algo_of(std::string_view module) const {
  const std::string m(module);
  if (mixed) {
    const auto it = layers.find(m);
    return it == layers.end() ? quant_algo::none : it->second;
  }
  for (const std::string& p : exclude)
    if (fnmatch(p.c_str(), m.c_str(), 0) == 0) return quant_algo::none;
  return algo;
}

std::string quant_config::summary() const {
  std::string s = mixed ? fmt::format("mixed precision ({} quantized modules)", layers.size())
                        : std::string(to_string(algo));
  s += fmt::format(" (ModelOpt, {})", source);
  if (kv_cache != quant_algo::none) s += fmt::format(", KV cache {}", to_string(kv_cache));
  if (!exclude.empty()) s += fmt::format(", {} exclude pattern{}", exclude.size(), exclude.size() == 1 ? "" : "s");
  return s;
}

std::optional<quant_config> parse_quant_config(std::string_view text, const std::string& origin, bool hf_file) {
  const json root = parse_text(text, origin);
  if (!root.is_object()) fail(origin, "the top level is not an object");
  json q;
  if (hf_file) {
    const auto it = root.find("quantization");
    if (it == root.end() || !it->is_object()) fail(origin, "no \"quantization\" object");
    q = *it;
  } else {
    const auto it = root.find("quantization_config");
    if (it == root.end() || it->is_null()) return std::nullopt;
    if (!it->is_object()) fail(origin, "quantization_config is not an object");
    q = *it;
    const std::string method = q.value("quant_method", std::string());
    if (method != "modelopt")
      fail(origin, fmt::format("quantization_config.quant_method '{}' is not supported (modelopt)", printable(method)));
  }
  quant_config c;
  c.source = origin;
  c.algo = algo_named(q.value("quant_algo", json()), origin, "quant_algo", true, &c.mixed);
  if (q.contains("kv_cache_quant_algo")) {
    c.kv_cache = algo_named(q["kv_cache_quant_algo"], origin, "kv_cache_quant_algo", false, nullptr);
  } else if (q.contains("kv_cache_scheme") && q["kv_cache_scheme"].is_object()) {
    // compressed-tensors style {"type": "float", "num_bits": 8}: FP8
    const json& k = q["kv_cache_scheme"];
    if (k.value("num_bits", 0) != 8 || k.value("type", std::string()) != "float")
      fail(origin, fmt::format("kv_cache_scheme {} is not supported (8-bit float)", printable(k.dump())));
    c.kv_cache = quant_algo::fp8;
  }
  if (c.kv_cache != quant_algo::none && c.kv_cache != quant_algo::fp8)
    fail(origin, fmt::format("kv_cache_quant_algo '{}' is not supported (FP8)", to_string(c.kv_cache)));
  c.exclude = string_list(q.value("exclude_modules", json()), origin, "exclude_modules");
  for (std::string& s : string_list(q.value("ignore", json()), origin, "ignore")) c.exclude.push_back(std::move(s));
  if (q.contains("group_size") && !q["group_size"].is_null()) {
    if (!q["group_size"].is_number_integer()) fail(origin, "group_size must be an integer");
    c.group_size = q["group_size"].get<int>();
  }
  const bool fp4 = c.algo == quant_algo::nvfp4 || c.algo == quant_algo::w4a16_nvfp4;
  if (fp4 && c.group_size != 0 && c.group_size != 16)
    fail(origin, fmt::format("group_size {} is not supported for {} (16)", c.group_size, to_string(c.algo)));
  if (c.mixed) {
    const auto it = q.find("quantized_layers");
    if (it == q.end() || !it->is_object() || it->empty())
      fail(origin, "quant_algo MIXED_PRECISION needs a \"quantized_layers\" object");
    for (const auto& [module, entry] : it->items()) {
      if (!entry.is_object() || !entry.contains("quant_algo"))
        fail(origin, fmt::format("quantized_layers.{} has no quant_algo", printable(module)));
      const std::string where = fmt::format("quantized_layers.{}.quant_algo", printable(module));
      const quant_algo a = algo_named(entry["quant_algo"], origin, where.c_str(), false, nullptr);
      if ((a == quant_algo::nvfp4 || a == quant_algo::w4a16_nvfp4) && entry.contains("group_size") &&
          entry["group_size"] != 16)
        fail(origin, fmt::format("quantized_layers.{}.group_size is not 16", printable(module)));
      c.layers.emplace(module, a);
    }
  }
  return c;
}

std::optional<quant_config> read_quant_config(const std::filesystem::path& dir) {
  std::error_code ec;
  const std::filesystem::path hf = dir / "hf_quant_config.json";
  if (std::filesystem::is_regular_file(hf, ec))
    return parse_quant_config(read_small_file(hf, kMaxQuantConfigBytes, "an hf_quant_config.json"), hf.string(), true);
  const std::filesystem::path cfg = dir / "config.json";
  if (std::filesystem::is_regular_file(cfg, ec))
    return parse_quant_config(read_small_file(cfg, kMaxQuantConfigBytes, "a config.json"), cfg.string(), false);
  return std::nullopt;
}

}  // namespace nemotron_h
