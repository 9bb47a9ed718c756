// NemotronH configuration: config.json parsing, validation and presets.
#include "model/config.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "model/json_depth.hpp"
#include "model/layer_kinds.hpp"
#include "model/messages.hpp"
#include "model/read_file.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {

namespace {

using json = nlohmann::json;

constexpr int kMaxDim = 1 << 20;         // any single width or head count
constexpr int kMaxExperts = 1 << 16;     // routed experts of a MoE layer
constexpr std::int64_t kMaxExpertElems = std::int64_t(1) << 36;  // E * F_e * width of one expert tensor
constexpr int kMaxVocab = 1 << 22;
constexpr int kMaxLayers = 4096;
constexpr std::size_t kMaxConfigBytes = 16u << 20;
constexpr int kMaxJsonDepth = 64;
constexpr std::size_t kQuoted = 64;  // characters of a config value quoted in a message

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a float";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    default: return "an unsupported value";
  }
}

/// Reads the config fields with checks; every message names the origin and the field.
class reader {
 public:
  reader(const json& j, std::string_view origin) : j_(j), origin_(origin) {}

  /// The first of `names` present (and not null), or nullptr.
  const json* find(std::initializer_list<const char*> names, const char** which = nullptr) const {
    for (const char* n : names) {
      auto it = j_.find(n);
      if (it != j_.end() && !it->is_null()) {
        if (which) *which = n;
        return &*it;
      }
    }
    return nullptr;
  }

  int get_int(std::initializer_list<const char*> names, int lo, int hi, const int* def = nullptr) const {
    const char* which = *names.begin();
    const json* v = find(names, &which);
    if (!v) {
      if (def) return *def;
      fail(origin_, fmt::format("missing field '{}'{}", *names.begin(), alias_note(names)));
    }
    long long x = 0;
    if (v->is_number_integer() || v->is_number_unsigned()) {
      if (v->is_number_unsigned() && v->get<unsigned long long>() > static_cast<unsigned long long>(hi)) {
        fail(origin_, fmt::format("field '{}' = {} is out of range [{}, {}]", which, v->dump(), lo, hi));
      }
      x = v->get<long long>();
    } else {
      fail(origin_, fmt::format("field '{}' must be an integer, got {} ({})", which, type_name(*v), v->dump()));
    }
    if (x < lo || x > hi) {
      fail(origin_, fmt::format("field '{}' = {} is out of range [{}, {}]", which, x, lo, hi));
    }
    return static_cast<int>(x);
  }

  double get_double(std::initializer_list<const char*> names, double def, bool allow_inf = false) const {
    const char* which = *names.begin();
    const json* v = find(names, &which);
    if (!v) return def;
    double x = number_of(*v, which, allow_inf);
    return x;
  }

  double number_of(const json& v, const char* field, bool allow_inf) const {
    double x = 0;
    if (v.is_number()) {
      x = v.get<double>();
    } else if (allow_inf && v.is_object() && v.size() == 1 && v.contains("__float__") &&
               v["__float__"].is_string()) {
      // transformers writes non-finite floats as {"__float__": "Infinity"}.
      x = special_float(v["__float__"].get<std::string>(), field);
    } else if (allow_inf && v.is_string()) {
      x = special_float(v.get<std::string>(), field);
    } else {
      fail(origin_, fmt::format("field '{}' must be a number, got {} ({})", field, type_name(v), v.dump()));
    }
    if (std::isnan(x) || (!allow_inf && std::isinf(x))) {
      fail(origin_, fmt::format("field '{}' must be a finite number, got {}", field, v.dump()));
    }
    return x;
  }

  double special_float(const std::string& s, const char* field) const {
    if (s == "Infinity" || s == "inf" || s == "+inf" || s == "+Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
    fail(origin_, fmt::format("field '{}': unsupported float value \"{}\"", field, s));
  }

  bool get_bool(std::initializer_list<const char*> names, bool def) const {
    const char* which = *names.begin();
    const json* v = find(names, &which);
    if (!v) return def;
    if (!v->is_boolean()) {
      fail(origin_, fmt::format("field '{}' must be a boolean, got {} ({})", which, type_name(*v), v->dump()));
    }
    return v->get<bool>();
  }

  std::string get_string(const char* name, const char* def) const {
    const json* v = find({name});
    if (!v) return def;
    if (!v->is_string()) {
      fail(origin_, fmt::format("field '{}' must be a string, got {} ({})", name, type_name(*v), v->dump()));
    }
    return v->get<std::string>();
  }

  static std::string alias_note(std::initializer_list<const char*> names) {
    if (names.size() < 2) return {};
    std::string s = " (or";
    bool first = true;
    for (const char* n : names) {
      if (first) { first = false; continue; }
      s += fmt::format(" '{}'", n);
    }
    return s + ")";
  }

  [[nodiscard]] std::string_view origin() const { return origin_; }

 private:
  const json& j_;
  std::string_view origin_;
};

/// "a, b or c".
std::string one_of(const std::vector<std::string>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i == 0 ? "" : i + 1 == v.size() ? " or " : ", ") + v[i];
  return s;
}

/// Maps one layers_block_type entry to a pattern char (also of the kinds not supported yet),
/// or 0 when unknown.
char block_type_char(const std::string& s) {
  if (const layer_kind_info* k = find_block_type(s)) return k->code;
  for (const unsupported_kind& u : unsupported_kinds()) {
    if (s == u.block_type || (s.size() == 1 && s[0] == u.code)) return u.code;
  }
  return 0;
}

/// The block type names of the error message: every kind's, supported or not.
std::string known_block_types() {
  std::vector<std::string> names;
  for (const auto& k : layer_kinds()) names.insert(names.end(), k.block_types.begin(), k.block_types.end());
  for (const auto& u : unsupported_kinds()) names.emplace_back(u.block_type);
  return one_of(names);
}

std::vector<layer_kind> pattern_to_layers(std::string_view pattern, std::string_view origin, const char* field) {
  std::vector<layer_kind> layers;
  layers.reserve(pattern.size());
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (const layer_kind_info* k = find_kind(pattern[i])) {
      layers.push_back(k->kind);
      continue;
    }
    for (const unsupported_kind& u : unsupported_kinds()) {
      if (pattern[i] == u.code) {
        fail(origin, fmt::format("{} (layer {}) are not supported yet (field '{}' = \"{}\")", u.what, i, field,
                                 printable(pattern, kQuoted)));
      }
    }
    std::vector<std::string> codes;
    for (const auto& k : layer_kinds()) codes.emplace_back(1, k.code);
    for (const auto& u : unsupported_kinds()) codes.emplace_back(1, u.code);
    fail(origin, fmt::format("field '{}': unknown block type '{}' at layer {} (expected {})", field,
                             printable(pattern.substr(i, 1), kQuoted), i, one_of(codes)));
  }
  return layers;
}

model_config parse_json_object(const json& j, std::string_view origin) {
  if (!j.is_object()) fail(origin, fmt::format("config must be a JSON object, got {}", type_name(j)));
  reader r(j, origin);
  model_config c;
  c.name = std::string(origin);

  const json* mt = r.find({"model_type"});
  if (!mt) fail(origin, "missing field 'model_type' (expected \"nemotron_h\")");
  if (!mt->is_string() || mt->get<std::string>() != "nemotron_h") {
    fail(origin, fmt::format("field 'model_type' = {} is not supported (expected \"nemotron_h\")", mt->dump()));
  }

  // ---- layer pattern ----
  std::string pattern;
  const json* hop = r.find({"hybrid_override_pattern"});
  const json* lbt = r.find({"layers_block_type", "layer_types"});
  const char* pattern_field = hop ? "hybrid_override_pattern" : "layers_block_type";
  if (hop) {
    if (!hop->is_string()) {
      fail(origin, fmt::format("field 'hybrid_override_pattern' must be a string, got {}", type_name(*hop)));
    }
    pattern = hop->get<std::string>();
  }
  if (lbt) {
    if (!lbt->is_array()) {
      fail(origin, fmt::format("field 'layers_block_type' must be an array of strings, got {}", type_name(*lbt)));
    }
    if (lbt->size() > static_cast<std::size_t>(kMaxLayers)) {
      fail(origin, fmt::format("field 'layers_block_type' has {} entries (at most {})", lbt->size(), kMaxLayers));
    }
    std::string p2;
    for (std::size_t i = 0; i < lbt->size(); ++i) {
      const json& e = (*lbt)[i];
      if (!e.is_string()) {
        fail(origin, fmt::format("field 'layers_block_type'[{}] must be a string, got {}", i, type_name(e)));
      }
      char ch = block_type_char(e.get<std::string>());
      if (ch == 0) {
        fail(origin, fmt::format("field 'layers_block_type'[{}]: unknown block type \"{}\" (expected {})", i,
                                 printable(e.get<std::string>(), kQuoted), known_block_types()));
      }
      p2 += ch;
    }
    if (hop && p2 != pattern) {
      fail(origin, fmt::format("fields 'hybrid_override_pattern' (\"{}\") and 'layers_block_type' (\"{}\") disagree",
                               printable(pattern, kQuoted), printable(p2, kQuoted)));
    }
    pattern = std::move(p2);
  }
  if (!hop && !lbt) fail(origin, "missing field 'hybrid_override_pattern' (or 'layers_block_type')");
  if (pattern.empty()) fail(origin, fmt::format("field '{}' is empty (no layers)", pattern_field));
  if (pattern.size() > static_cast<std::size_t>(kMaxLayers)) {
    fail(origin, fmt::format("field '{}' has {} layers (at most {})", pattern_field, pattern.size(), kMaxLayers));
  }
  c.layers = pattern_to_layers(pattern, origin, pattern_field);
  c.pattern = pattern;
  if (const json* nl = r.find({"num_hidden_layers"})) {
    (void)nl;
    const int n = r.get_int({"num_hidden_layers"}, 1, kMaxLayers);
    if (n != static_cast<int>(pattern.size())) {
      fail(origin, fmt::format("field 'num_hidden_layers' = {} but '{}' has {} layers", n, pattern_field,
                               pattern.size()));
    }
  }

  // ---- shapes ----
  c.vocab_size = r.get_int({"vocab_size"}, 1, kMaxVocab);
  c.hidden_size = r.get_int({"hidden_size"}, 1, kMaxDim);
  c.intermediate_size = r.get_int({"intermediate_size"}, 1, kMaxDim);
  c.num_attention_heads = r.get_int({"num_attention_heads"}, 1, kMaxDim);
  c.num_key_value_heads = r.get_int({"num_key_value_heads"}, 1, kMaxDim, &c.num_attention_heads);
  c.head_dim = r.get_int({"head_dim", "attention_head_dim"}, 1, kMaxDim);
  c.mamba_num_heads = r.get_int({"mamba_num_heads"}, 1, kMaxDim);
  c.mamba_head_dim = r.get_int({"mamba_head_dim"}, 1, kMaxDim);
  c.ssm_state_size = r.get_int({"ssm_state_size"}, 1, kMaxDim);
  c.n_groups = r.get_int({"n_groups", "mamba_n_groups"}, 1, kMaxDim);
  c.conv_kernel = r.get_int({"conv_kernel", "mamba_d_conv"}, 1, 64);
  c.chunk_size = r.get_int({"chunk_size", "mamba_chunk_size"}, 1, kMaxDim);

  // ---- constants ----
  if (!r.find({"layer_norm_epsilon"})) fail(origin, "missing field 'layer_norm_epsilon'");
  c.eps = r.get_double({"layer_norm_epsilon"}, 1e-5);
  c.time_step_min = r.get_double({"time_step_min", "mamba_dt_min"}, 0.001);
  c.time_step_max = r.get_double({"time_step_max", "mamba_dt_max"}, 0.1);
  c.time_step_floor = r.get_double({"time_step_floor", "mamba_dt_init_floor"}, 1e-4);
  const char* lim_field = "time_step_limit";
  if (const json* lim = r.find({"time_step_limit", "mamba_dt_limit"}, &lim_field)) {
    if (!lim->is_array() || lim->size() != 2) {
      fail(origin, fmt::format("field '{}' must be an array of two numbers, got {}", lim_field, lim->dump()));
    }
    c.time_step_limit_lo = r.number_of((*lim)[0], lim_field, true);
    c.time_step_limit_hi = r.number_of((*lim)[1], lim_field, true);
  }
  c.use_conv_bias = r.get_bool({"use_conv_bias", "mamba_conv_bias"}, true);
  c.tie_word_embeddings = r.get_bool({"tie_word_embeddings"}, false);
  c.initializer_range = r.get_double({"initializer_range"}, 0.02);

  // ---- unsupported features ----
  for (const char* f : {"use_bias", "mlp_bias", "attention_bias", "mamba_proj_bias"}) {
    if (r.get_bool({f}, false)) fail(origin, fmt::format("field '{}' = true is not supported (no linear biases)", f));
  }
  const std::string mlp_act = r.get_string("mlp_hidden_act", "relu2");
  if (mlp_act != "relu2") {
    fail(origin, fmt::format("field 'mlp_hidden_act' = \"{}\" is not supported (only \"relu2\")", printable(mlp_act, kQuoted)));
  }
  const std::string mamba_act = r.get_string("mamba_hidden_act", "silu");
  if (mamba_act != "silu" && mamba_act != "swish") {
    fail(origin,
         fmt::format("field 'mamba_hidden_act' = \"{}\" is not supported (only \"silu\")", printable(mamba_act, kQuoted)));
  }
  if (r.find({"num_nextn_predict_layers"})) {
    // MTP heads are extra modules (mtp_layers_block_type, mtp_hybrid_override_pattern, the
    // checkpoint's mtp.* tensors); the main model does not use them.
    c.num_nextn_predict_layers = r.get_int({"num_nextn_predict_layers"}, 0, kMaxLayers);
  }

  // ---- MoE ('E' layers): transformers 5.17's defaults where a field is absent ----
  // Dense configs carry these fields too (with the defaults, e.g. moe_intermediate_size 7688);
  // they mean nothing without an 'E' layer and are not read then.
  if (c.count(layer_kind::moe) > 0) {
    const int d_experts = 8, d_topk = 2, d_width = 7688, d_one = 1;
    c.n_routed_experts = r.get_int({"n_routed_experts", "num_local_experts"}, 1, kMaxExperts, &d_experts);
    c.num_experts_per_tok = r.get_int({"num_experts_per_tok"}, 1, kMaxExperts, &d_topk);
    c.moe_intermediate_size = r.get_int({"moe_intermediate_size"}, 1, kMaxDim, &d_width);
    c.moe_shared_expert_intermediate_size =
        r.get_int({"moe_shared_expert_intermediate_size"}, 1, kMaxDim, &d_width);
    c.n_shared_experts = r.get_int({"n_shared_experts"}, 0, kMaxExperts, &d_one);
    c.n_group = r.get_int({"n_group"}, 1, kMaxExperts, &d_one);
    c.topk_group = r.get_int({"topk_group"}, 1, kMaxExperts, &d_one);
    c.norm_topk_prob = r.get_bool({"norm_topk_prob"}, true);
    c.routed_scaling_factor = r.get_double({"routed_scaling_factor"}, 1.0);
    // null (or absent): the experts work at hidden size.
    c.moe_latent_size = r.find({"moe_latent_size"}) ? r.get_int({"moe_latent_size"}, 1, kMaxDim) : 0;
    const std::string router = r.get_string("moe_router_score_function", "sigmoid");
    if (router != "sigmoid") {
      fail(origin, fmt::format("field 'moe_router_score_function' = \"{}\" is not supported (only \"sigmoid\")",
                               printable(router, kQuoted)));
    }
  }
  c.validate();
  return c;
}


}  // namespace

int model_config::count(layer_kind kind) const noexcept {
  return static_cast<int>(std::count(layers.begin(), layers.end(), kind));
}

int model_config::index_in_kind(int layer) const {
  PIECEWISE_EXPECTS(layer >= 0 && layer < num_layers(), "{}: layer {} out of range [0, {})", name, layer,
                    num_layers());
  int k = 0;
  for (int i = 0; i < layer; ++i) k += layers[i] == layers[layer];
  return k;
}

std::int64_t model_config::num_parameters() const {
  std::int64_t n = 0;
  for (const tensor_entry& e : model_tensors(*this)) {
    if (!e.in_checkpoint || (e.spec->tied_to_embeddings && tie_word_embeddings)) continue;
    std::int64_t k = 1;
    for (std::int64_t d : e.shape) k *= d;
    n += k;
  }
  return n;
}

void model_config::validate() const {
  auto positive = [&](int v, const char* field, int hi) {
    if (v < 1 || v > hi) fail(name, fmt::format("field '{}' = {} is out of range [1, {}]", field, v, hi));
  };
  if (layers.empty()) fail(name, "the layer pattern is empty (no layers)");
  if (num_layers() > kMaxLayers) fail(name, fmt::format("{} layers (at most {})", num_layers(), kMaxLayers));
  if (pattern.size() != layers.size()) fail(name, "pattern string and layer list disagree");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (pattern[i] != kind_info(layers[i]).code) fail(name, fmt::format("pattern string and layer list disagree at layer {}", i));
  }
  positive(vocab_size, "vocab_size", kMaxVocab);
  positive(hidden_size, "hidden_size", kMaxDim);
  positive(intermediate_size, "intermediate_size", kMaxDim);
  positive(num_attention_heads, "num_attention_heads", kMaxDim);
  positive(num_key_value_heads, "num_key_value_heads", kMaxDim);
  positive(head_dim, "head_dim", kMaxDim);
  positive(mamba_num_heads, "mamba_num_heads", kMaxDim);
  positive(mamba_head_dim, "mamba_head_dim", kMaxDim);
  positive(ssm_state_size, "ssm_state_size", kMaxDim);
  positive(n_groups, "n_groups", kMaxDim);
  positive(conv_kernel, "conv_kernel", 64);
  positive(chunk_size, "chunk_size", kMaxDim);
  if (num_attention_heads % num_key_value_heads != 0) {
    fail(name, fmt::format("num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                           num_attention_heads, num_key_value_heads));
  }
  if (mamba_num_heads % n_groups != 0) {
    fail(name, fmt::format("mamba_num_heads ({}) is not a multiple of n_groups ({})", mamba_num_heads, n_groups));
  }
  // Products used as tensor widths must fit an int (kernels index with int).
  const std::int64_t dinner = std::int64_t(mamba_num_heads) * mamba_head_dim;
  const std::int64_t conv = dinner + 2LL * n_groups * ssm_state_size;
  const std::int64_t inproj = dinner + conv + mamba_num_heads;
  const std::int64_t q = std::int64_t(num_attention_heads) * head_dim;
  if (inproj > kMaxDim * 4LL) {
    fail(name, fmt::format("Mamba in_proj width {} (2*H*P + 2*G*N + H) is too large (at most {})", inproj,
                           kMaxDim * 4LL));
  }
  if (q > kMaxDim) fail(name, fmt::format("num_attention_heads * head_dim = {} is too large (at most {})", q, kMaxDim));
  if (!(eps > 0.0) || !std::isfinite(eps) || eps > 1.0) {
    fail(name, fmt::format("field 'layer_norm_epsilon' = {} must be in (0, 1]", eps));
  }
  if (!(time_step_min > 0.0) || !(time_step_max >= time_step_min) || !std::isfinite(time_step_max)) {
    fail(name, fmt::format("time_step_min ({}) and time_step_max ({}) must satisfy 0 < min <= max < inf",
                           time_step_min, time_step_max));
  }
  if (!(time_step_floor >= 0.0) || !std::isfinite(time_step_floor)) {
    fail(name, fmt::format("field 'time_step_floor' = {} must be finite and >= 0", time_step_floor));
  }
  if (!(time_step_limit_lo >= 0.0) || !(time_step_limit_hi > time_step_limit_lo) || std::isinf(time_step_limit_lo)) {
    fail(name, fmt::format("field 'time_step_limit' = [{}, {}] must satisfy 0 <= lo < hi", time_step_limit_lo,
                           time_step_limit_hi));
  }
  if (!(initializer_range > 0.0) || !std::isfinite(initializer_range)) {
    fail(name, fmt::format("field 'initializer_range' = {} must be positive", initializer_range));
  }
  if (count(layer_kind::moe) > 0) validate_moe();
}

void model_config::validate_moe() const {
  auto positive = [&](int v, const char* field, int hi) {
    if (v < 1 || v > hi) fail(name, fmt::format("field '{}' = {} is out of range [1, {}]", field, v, hi));
  };
  positive(n_routed_experts, "n_routed_experts", kMaxExperts);
  positive(num_experts_per_tok, "num_experts_per_tok", kMaxExperts);
  positive(moe_intermediate_size, "moe_intermediate_size", kMaxDim);
  positive(moe_shared_expert_intermediate_size, "moe_shared_expert_intermediate_size", kMaxDim);
  positive(n_group, "n_group", kMaxExperts);
  positive(topk_group, "topk_group", kMaxExperts);
  if (moe_latent_size < 0 || moe_latent_size > kMaxDim) {
    fail(name, fmt::format("field 'moe_latent_size' = {} is out of range [1, {}] (or null)", moe_latent_size, kMaxDim));
  }
  if (n_shared_experts != 1) {
    fail(name, fmt::format("field 'n_shared_experts' = {} is not supported (NemotronH has exactly one shared expert, "
                           "of width moe_shared_expert_intermediate_size)",
                           n_shared_experts));
  }
  if (num_experts_per_tok > n_routed_experts) {
    fail(name, fmt::format("field 'num_experts_per_tok' = {} is more than n_routed_experts = {}", num_experts_per_tok,
                           n_routed_experts));
  }
  if (n_routed_experts % n_group != 0) {
    fail(name, fmt::format("field 'n_routed_experts' = {} is not a multiple of n_group = {}", n_routed_experts,
                           n_group));
  }
  if (topk_group > n_group) {
    fail(name, fmt::format("field 'topk_group' = {} is more than n_group = {}", topk_group, n_group));
  }
  const int per_group = n_routed_experts / n_group;
  if (n_group > 1 && per_group < 2) {
    fail(name, fmt::format("field 'n_group' = {} leaves {} expert per group; a group's score is the sum of its top 2 "
                           "scores, so a group needs at least 2 experts",
                           n_group, per_group));
  }
  if (num_experts_per_tok > topk_group * per_group) {
    fail(name, fmt::format("field 'num_experts_per_tok' = {} is more than the {} experts of the topk_group = {} groups "
                           "kept per token ({} experts per group)",
                           num_experts_per_tok, topk_group * per_group, topk_group, per_group));
  }
  if (!(routed_scaling_factor > 0.0) || !std::isfinite(routed_scaling_factor)) {
    fail(name, fmt::format("field 'routed_scaling_factor' = {} must be a positive finite number", routed_scaling_factor));
  }
  const std::int64_t elems = std::int64_t(n_routed_experts) * moe_intermediate_size * moe_width();
  if (elems > kMaxExpertElems) {
    fail(name, fmt::format("n_routed_experts * moe_intermediate_size * {} = {} expert weights per layer is too many "
                           "(at most {})",
                           latent_moe() ? "moe_latent_size" : "hidden_size", elems, kMaxExpertElems));
  }
}

model_config model_config::first_layers(int n) const {
  if (n < 1 || n > num_layers()) {
    fail(name, fmt::format("--layers {}: the model has {} layers (use 1..{})", n, num_layers(), num_layers()));
  }
  model_config c = *this;
  c.layers.resize(static_cast<std::size_t>(n));
  c.pattern.resize(static_cast<std::size_t>(n));
  c.validate();
  return c;
}

std::string model_config::kind_counts() const {
  std::string s;
  for (const auto& k : layer_kinds()) {
    if (k.kind == layer_kind::moe && count(k.kind) == 0) continue;  // dense models: "24 M, 4 *, 24 -"
    s += fmt::format("{}{} {}", s.empty() ? "" : ", ", count(k.kind), k.code);
  }
  return s;
}

std::string model_config::moe_summary() const {
  if (count(layer_kind::moe) == 0) return {};
  std::string s = fmt::format("MoE {} experts, top {}, width {}, shared {}", n_routed_experts, num_experts_per_tok,
                              moe_intermediate_size, moe_shared_expert_intermediate_size);
  if (latent_moe()) s += fmt::format(", latent {}", moe_latent_size);
  s += fmt::format(", groups {}/{}, scale {}{}", topk_group, n_group, routed_scaling_factor,
                   norm_topk_prob ? ", renormalised" : "");
  return s;
}

std::string model_config::summary() const {
  return fmt::format(
      "{}: {} layers \"{}\" ({}), V {}, D {}, F {}, attention {}/{} x {}, Mamba {} x {}, N {}, "
      "G {}, K {}, chunk {}, {}{} parameters",
      name, num_layers(), pattern, kind_counts(), vocab_size, hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, head_dim,
      mamba_num_heads, mamba_head_dim, ssm_state_size, n_groups, conv_kernel, chunk_size,
      count(layer_kind::moe) > 0 ? moe_summary() + ", " : "",
      num_parameters() >= 1'000'000'000 ? fmt::format("{:.2f}B", static_cast<double>(num_parameters()) / 1e9)
                                        : fmt::format("{:.2f}M", static_cast<double>(num_parameters()) / 1e6));
}

model_config parse_config_json_text(std::string_view text, std::string_view origin) {
  if (text.size() > kMaxConfigBytes) fail(origin, fmt::format("{} bytes is too large for a config.json", text.size()));
  if (json_depth(text) > kMaxJsonDepth) fail(origin, fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth));
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(origin, fmt::format("invalid JSON: {}", e.what()));
  }
  return parse_json_object(j, origin);
}

model_config parse_config_json(const std::filesystem::path& path) {
  const std::string text = read_small_file(path, kMaxConfigBytes, "a config.json");
  return parse_config_json_text(text, path.string());
}

namespace {

constexpr const char* kPattern8B = "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-";
constexpr const char* kPatternNano9B = "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-";
// The patterns below are Megatron-Bridge's NemotronH providers' (shared/reference/
// nemotron_family.md names the source; the layer counts there match): 45 M / 5 * / 48 -,
// 54 / 10 / 54, 28 / 6 / 28; Nemotron 3: 23 M / 23 E / 6 *, 40 / 40 / 8, 48 / 48 / 12.
constexpr const char* kPattern47B =
    "M-M-M-M-M-M-M-M-M*-M-M-M-M-M-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-M-M---MM---M-M*-M-M-M-M-M-";
constexpr const char* kPattern56B =
    "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-"
    "M-";
constexpr const char* kPatternNano12B = "M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-";
constexpr const char* kPatternNano3_4B = "M-M-M-MM-M-M*-M-M*-M-M-M*-M-M-MM*-MMM-M-M-";
constexpr const char* kPatternNano3_30B = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME";
constexpr const char* kPatternSuper3 =
    "MEMEMEM*EMEMEMEM*EMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEM*EMEMEMEME";
constexpr const char* kPatternUltra3 =
    "MEMEMEM*EMEMEM*EMEMEMEM*EMEMEMEM*EMEMEM*EMEMEMEM*EMEMEMEM*EMEMEM*EMEMEMEM*EMEMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME";

model_config make(std::string name, const char* pattern, int V, int D, int F, int Hq, int Hkv, int hd, int H, int P,
                  int N, int G) {
  model_config c;
  c.name = std::move(name);
  c.pattern = pattern;
  c.layers = pattern_to_layers(c.pattern, c.name, "pattern");
  c.vocab_size = V;
  c.hidden_size = D;
  c.intermediate_size = F;
  c.num_attention_heads = Hq;
  c.num_key_value_heads = Hkv;
  c.head_dim = hd;
  c.mamba_num_heads = H;
  c.mamba_head_dim = P;
  c.ssm_state_size = N;
  c.n_groups = G;
  c.conv_kernel = 4;
  c.chunk_size = 128;
  c.eps = 1e-5;
  c.validate();
  return c;
}

/// The MoE fields of a preset (then validated): E experts, top k, expert width Fe, shared
/// width Fs, latent width (0: none), routed scaling; n_group = topk_group = 1 and
/// norm_topk_prob true, as in every published size.
model_config with_moe(model_config c, int E, int k, int Fe, int Fs, int latent, double scale) {
  c.n_routed_experts = E;
  c.num_experts_per_tok = k;
  c.moe_intermediate_size = Fe;
  c.moe_shared_expert_intermediate_size = Fs;
  c.moe_latent_size = latent;
  c.routed_scaling_factor = scale;
  c.n_group = 1;
  c.topk_group = 1;
  c.norm_topk_prob = true;
  c.n_shared_experts = 1;
  c.validate();
  return c;
}

/// make() for a pattern with 'E' layers: the layers are set after the MoE fields (validate
/// checks them as soon as there is an 'E').
model_config make_moe(std::string name, const char* pattern, int V, int D, int F, int Hq, int Hkv, int hd, int H,
                      int P, int N, int G, int E, int k, int Fe, int Fs, int latent, double scale) {
  model_config c = make(name, "M", V, D, F, Hq, Hkv, hd, H, P, N, G);
  c = with_moe(std::move(c), E, k, Fe, Fs, latent, scale);
  c.pattern = pattern;
  c.layers = pattern_to_layers(c.pattern, c.name, "pattern");
  c.validate();
  return c;
}

}  // namespace

model_config preset(std::string_view name) {
  if (name == "small") {
    // The real 52-layer Nemotron-H-8B pattern (24 M, 4 *, 24 -) at reduced width:
    // D 512 (= 8 x 64), F 2048, attention 8/2 x 128 (the GPU kernels need head_dim 128),
    // Mamba 16 x 64 (d_inner 1024 = 2 D),
    // N 64, G 4, vocab 8192. About 0.1 B parameters.
    return make("small", kPattern8B, 8192, 512, 2048, 8, 2, 128, 16, 64, 64, 4);
  }
  if (name == "tiny") {
    // The shapes of the transformers fixture (tests/data/tiny), chunk 16: attention 4/2 x 128,
    // Mamba 8 x 32, N 64, G 2 (shapes the GPU kernels support).
    model_config c = make("tiny", "M*M-M-", 384, 128, 256, 4, 2, 128, 8, 32, 64, 2);
    c.chunk_size = 16;
    return c;
  }
  if (name == "nano-9b-v2") {
    return make("nano-9b-v2", kPatternNano9B, 131072, 4480, 15680, 40, 8, 128, 128, 80, 128, 8);
  }
  if (name == "nemotron-h-8b") {
    return make("nemotron-h-8b", kPattern8B, 131072, 4096, 21504, 32, 8, 128, 128, 64, 128, 8);
  }
  if (name == "nemotron-h-4b") {
    return make("nemotron-h-4b", kPattern8B, 131072, 3072, 12288, 32, 8, 128, 112, 64, 128, 8);
  }
  if (name == "tiny-moe") {
    // tiny's shapes (the GPU kernels support them except for the 'E' layers) with two MoE
    // layers: 8 experts, top 2, expert width 64, shared expert 128, routed scaling 2.5.
    model_config c = make_moe("tiny-moe", "M*ME-E", 384, 128, 256, 4, 2, 128, 8, 32, 64, 2, 8, 2, 64, 128, 0, 2.5);
    c.chunk_size = 16;
    return c;
  }
  if (name == "nemotron-h-47b") {
    return make("nemotron-h-47b", kPattern47B, 131072, 8192, 30720, 64, 8, 128, 256, 64, 256, 8);
  }
  if (name == "nemotron-h-56b") {
    return make("nemotron-h-56b", kPattern56B, 131072, 8192, 32768, 64, 8, 128, 256, 64, 256, 8);
  }
  if (name == "nano-12b-v2") {
    return make("nano-12b-v2", kPatternNano12B, 131072, 5120, 20480, 40, 8, 128, 128, 80, 128, 8);
  }
  if (name == "nemotron-3-nano-4b") {
    model_config c = make("nemotron-3-nano-4b", kPatternNano3_4B, 131072, 3136, 12544, 40, 8, 128, 96, 80, 128, 8);
    c.chunk_size = 256;
    return c;
  }
  if (name == "nemotron-3-nano-30b-a3b") {
    // No '-' layers: intermediate_size (unused) is the expert width, as in the published config.
    return make_moe("nemotron-3-nano-30b-a3b", kPatternNano3_30B, 131072, 2688, 1856, 32, 2, 128, 64, 64, 128, 8,
                    128, 6, 1856, 3712, 0, 2.5);
  }
  if (name == "nemotron-3-super-120b-a12b") {
    return make_moe("nemotron-3-super-120b-a12b", kPatternSuper3, 131072, 4096, 2688, 32, 2, 128, 128, 64, 128, 8,
                    512, 22, 2688, 5376, 1024, 5.0);
  }
  if (name == "nemotron-3-ultra-550b-a55b") {
    // Routed scaling 5.0 as in Megatron-LM's Ultra training script (the family table does not
    // list it).
    return make_moe("nemotron-3-ultra-550b-a55b", kPatternUltra3, 131072, 8192, 5120, 64, 2, 128, 256, 64, 128, 8,
                    512, 22, 5120, 10240, 2048, 5.0);
  }
  std::string known;
  for (const auto& n : list_presets()) known += (known.empty() ? "" : ", ") + n;
  throw piecewise::config_error(fmt::format("unknown model preset \"{}\" (known: {}; or give a path to a config.json)",
                                            printable(name, kQuoted), known));
}

std::vector<std::string> list_presets() {
  return {"small",          "tiny",          "tiny-moe",           "nano-9b-v2",
          "nemotron-h-8b",  "nemotron-h-4b", "nemotron-h-47b",     "nemotron-h-56b",
          "nano-12b-v2",    "nemotron-3-nano-4b", "nemotron-3-nano-30b-a3b", "nemotron-3-super-120b-a12b",
          "nemotron-3-ultra-550b-a55b"};
}

model_config resolve_model(std::string_view arg) {
  for (const auto& n : list_presets()) {
    if (arg == n) return preset(arg);
  }
  const std::filesystem::path p{std::string(arg)};
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) {
    const auto cfg = p / "config.json";
    if (!std::filesystem::exists(cfg, ec)) {
      throw piecewise::config_error(fmt::format("{}: directory has no config.json", p.string()));
    }
    return parse_config_json(cfg);
  }
  if (std::filesystem::exists(p, ec)) return parse_config_json(p);
  std::string known;
  for (const auto& n : list_presets()) known += (known.empty() ? "" : ", ") + n;
  throw piecewise::config_error(fmt::format(
      "--model \"{}\" is neither a preset ({}) nor an existing config.json or directory", printable(arg, kQuoted), known));
}

}  // namespace nemotron_h
