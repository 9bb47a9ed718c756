// The layer-kind table (see layer_kinds.hpp). Shapes, dtypes, names and initialisations follow
// shared/reference/nemotron_h.md and transformers 5.17's NemotronH `_init_weights`.
#include "model/layer_kinds.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace nemotron_h {

namespace {

using dims = std::vector<std::int64_t>;

// ---- initialisations ----------------------------------------------------------------------

double init_range(const model_config& c) { return c.initializer_range; }
/// PyTorch's Conv1d default: uniform(+-1/sqrt(fan_in)), fan_in = K (depthwise).
double conv_bound(const model_config& c) { return 1.0 / std::sqrt(static_cast<double>(c.conv_kernel)); }
/// Mamba out_proj: kaiming-uniform (bound 1/sqrt(d_inner)) divided by sqrt(num_layers).
double out_proj_bound(const model_config& c) {
  return 1.0 / std::sqrt(static_cast<double>(c.d_inner())) / std::sqrt(static_cast<double>(c.num_layers()));
}

constexpr init_rule normal(double (*scale)(const model_config&)) { return {init_rule::kind::normal, scale}; }
constexpr init_rule uniform(double (*bound)(const model_config&)) { return {init_rule::kind::uniform, bound}; }
/// `value`, or normal(value, spread) when the vectors are randomised.
constexpr init_rule constant(double value, double spread) {
  init_rule r;
  r.how = init_rule::kind::constant;
  r.value = value;
  r.spread = spread;
  return r;
}
constexpr init_rule special(void (*fill)(const model_config&, splitmix64&, bool, float*, std::size_t)) {
  init_rule r;
  r.how = init_rule::kind::special;
  r.fill = fill;
  return r;
}

/// A_log = log(1..H); randomised: log(U[1, 16)).
void fill_a_log(const model_config&, splitmix64& s, bool randomize, float* out, std::size_t n) {
  for (std::size_t h = 0; h < n; ++h) {
    out[h] = randomize ? static_cast<float>(std::log(1.0 + 15.0 * (s.uniform01() - 0x1.0p-53)))
                       : static_cast<float>(std::log(static_cast<double>(h + 1)));
  }
}

/// dt_bias = inverse_softplus(dt), dt log-uniform in [time_step_min, time_step_max] and at
/// least time_step_floor.
void fill_dt_bias(const model_config& c, splitmix64& s, bool, float* out, std::size_t n) {
  const double lmin = std::log(c.time_step_min), lmax = std::log(c.time_step_max);
  for (std::size_t h = 0; h < n; ++h) {
    const double u = s.uniform01() - 0x1.0p-53;  // [0, 1)
    const double dt = std::max(std::exp(u * (lmax - lmin) + lmin), c.time_step_floor);
    out[h] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
  }
}

bool has_conv_bias(const model_config& c) { return c.use_conv_bias; }
bool has_latent(const model_config& c) { return c.latent_moe(); }

constexpr init_rule kLinear = normal(init_range);
constexpr init_rule kNormWeight = constant(1.0, 0.2);

// ---- the table ----------------------------------------------------------------------------

constexpr tensor_spec kLayerNorm{"norm.weight", [](const model_config& c) -> dims { return {c.hidden_size}; },
                             dtype::bf16, kNormWeight};

std::vector<layer_kind_info> make_kinds() {
  std::vector<layer_kind_info> k;
  k.push_back({layer_kind::mamba, 'M', "mamba", {"mamba", "linear_attention"}, {
      {"mixer.in_proj.weight", [](const model_config& c) -> dims { return {c.in_proj_dim(), c.hidden_size}; },
       dtype::bf16, kLinear, true},
      {"mixer.conv1d.weight", [](const model_config& c) -> dims { return {c.conv_dim(), 1, c.conv_kernel}; },
       dtype::bf16, uniform(conv_bound)},
      {"mixer.conv1d.bias", [](const model_config& c) -> dims { return {c.conv_dim()}; }, dtype::bf16,
       uniform(conv_bound), false, has_conv_bias},
      {"mixer.A_log", [](const model_config& c) -> dims { return {c.mamba_num_heads}; }, dtype::f32,
       special(fill_a_log)},
      {"mixer.D", [](const model_config& c) -> dims { return {c.mamba_num_heads}; }, dtype::f32,
       constant(1.0, 0.5)},
      {"mixer.dt_bias", [](const model_config& c) -> dims { return {c.mamba_num_heads}; }, dtype::f32,
       special(fill_dt_bias)},
      {"mixer.norm.weight", [](const model_config& c) -> dims { return {c.d_inner()}; }, dtype::bf16,
       kNormWeight},
      {"mixer.out_proj.weight", [](const model_config& c) -> dims { return {c.hidden_size, c.d_inner()}; },
       dtype::bf16, uniform(out_proj_bound), true},
  }});
  k.push_back({layer_kind::attention, '*', "attention", {"attention", "full_attention"}, {
      {"mixer.q_proj.weight", [](const model_config& c) -> dims { return {c.q_dim(), c.hidden_size}; },
       dtype::bf16, kLinear, true, nullptr, "mixer.qkv_proj.weight"},
      {"mixer.k_proj.weight", [](const model_config& c) -> dims { return {c.kv_dim(), c.hidden_size}; },
       dtype::bf16, kLinear, true, nullptr, "mixer.qkv_proj.weight"},
      {"mixer.v_proj.weight", [](const model_config& c) -> dims { return {c.kv_dim(), c.hidden_size}; },
       dtype::bf16, kLinear, true, nullptr, "mixer.qkv_proj.weight"},
      {"mixer.o_proj.weight", [](const model_config& c) -> dims { return {c.hidden_size, c.q_dim()}; },
       dtype::bf16, kLinear, true},
  }});
  k.push_back({layer_kind::mlp, '-', "mlp", {"mlp"}, {
      {"mixer.up_proj.weight", [](const model_config& c) -> dims { return {c.intermediate_size, c.hidden_size}; },
       dtype::bf16, kLinear, true},
      {"mixer.down_proj.weight", [](const model_config& c) -> dims { return {c.hidden_size, c.intermediate_size}; },
       dtype::bf16, kLinear, true},
  }});
  // MoE (Nemotron 3): router, routed experts (held fused, [E, out, in] each: a checkpoint with
  // one tensor per expert, `mixer.experts.{e}.up_proj.weight`, is stacked on load), the shared
  // expert and, for latent MoE, the projections hidden -> latent -> hidden. transformers 5.17
  // initialises all of them normal(0, initializer_range) and the correction bias to zeros
  // (randomised here with randomize_vectors so that using the bias wrongly shows in tests).
  // The router and the 3-D expert tensors are not `linear`: the router runs in fp32 and stays
  // bf16 in quantized checkpoints; the experts are grouped GEMMs, not one [out, in] weight.
  k.push_back({layer_kind::moe, 'E', "moe", {"moe"}, {
      {"mixer.gate.weight", [](const model_config& c) -> dims { return {c.n_routed_experts, c.hidden_size}; },
       dtype::bf16, kLinear},
      {"mixer.gate.e_score_correction_bias", [](const model_config& c) -> dims { return {c.n_routed_experts}; },
       dtype::f32, constant(0.0, 0.05)},
      {"mixer.experts.up_proj",
       [](const model_config& c) -> dims { return {c.n_routed_experts, c.moe_intermediate_size, c.moe_width()}; },
       dtype::bf16, kLinear},
      {"mixer.experts.down_proj",
       [](const model_config& c) -> dims { return {c.n_routed_experts, c.moe_width(), c.moe_intermediate_size}; },
       dtype::bf16, kLinear},
      {"mixer.shared_experts.up_proj.weight",
       [](const model_config& c) -> dims { return {c.moe_shared_expert_intermediate_size, c.hidden_size}; },
       dtype::bf16, kLinear, true},
      {"mixer.shared_experts.down_proj.weight",
       [](const model_config& c) -> dims { return {c.hidden_size, c.moe_shared_expert_intermediate_size}; },
       dtype::bf16, kLinear, true},
      {"mixer.fc1_latent_proj.weight", [](const model_config& c) -> dims { return {c.moe_latent_size, c.hidden_size}; },
       dtype::bf16, kLinear, true, has_latent},
      {"mixer.fc2_latent_proj.weight", [](const model_config& c) -> dims { return {c.hidden_size, c.moe_latent_size}; },
       dtype::bf16, kLinear, true, has_latent},
  }});
  return k;
}

std::vector<tensor_spec> make_globals() {
  tensor_spec lm_head{"lm_head.weight", [](const model_config& c) -> dims { return {c.vocab_size, c.hidden_size}; },
                      dtype::bf16, kLinear, true};
  lm_head.tied_to_embeddings = true;
  return {
      {"backbone.embeddings.weight", [](const model_config& c) -> dims { return {c.vocab_size, c.hidden_size}; },
       dtype::bf16, kLinear},
      {"backbone.norm_f.weight", [](const model_config& c) -> dims { return {c.hidden_size}; }, dtype::bf16,
       kNormWeight},
      lm_head,
  };
}

}  // namespace

const std::vector<layer_kind_info>& layer_kinds() {
  static const std::vector<layer_kind_info> kinds = [] {
    auto k = make_kinds();
    for (std::size_t i = 0; i < k.size(); ++i) {
      // kind_info() indexes the table by the enum.
      if (static_cast<std::size_t>(k[i].kind) != i) std::abort();
    }
    return k;
  }();
  return kinds;
}

const layer_kind_info& kind_info(layer_kind kind) noexcept { return layer_kinds()[static_cast<std::size_t>(kind)]; }

const layer_kind_info* find_kind(char code) noexcept {
  for (const auto& k : layer_kinds()) {
    if (k.code == code) return &k;
  }
  return nullptr;
}

const layer_kind_info* find_block_type(std::string_view name) noexcept {
  for (const auto& k : layer_kinds()) {
    if (name.size() == 1 && name[0] == k.code) return &k;
    for (const char* b : k.block_types) {
      if (name == b) return &k;
    }
  }
  return nullptr;
}

const std::vector<unsupported_kind>& unsupported_kinds() {
  static const std::vector<unsupported_kind> u = {};  // MoE ('E') is supported since the Nemotron 3 work
  return u;
}

const std::vector<const tensor_spec*>& layer_tensor_specs(layer_kind kind) {
  static const std::vector<std::vector<const tensor_spec*>> lists = [] {
    std::vector<std::vector<const tensor_spec*>> l;
    for (const auto& k : layer_kinds()) {
      std::vector<const tensor_spec*> specs = {&kLayerNorm};
      for (const auto& t : k.tensors) specs.push_back(&t);
      l.push_back(std::move(specs));
    }
    return l;
  }();
  return lists[static_cast<std::size_t>(kind)];
}

int layer_tensor_index(layer_kind kind, std::string_view suffix) noexcept {
  const auto& specs = layer_tensor_specs(kind);
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (suffix == specs[i]->suffix) return static_cast<int>(i);
  }
  return -1;
}

const std::vector<tensor_spec>& global_tensor_specs() {
  static const std::vector<tensor_spec> t = [] {
    auto g = make_globals();
    // The indices of enum global_tensor.
    if (std::string_view(g[kEmbeddings].suffix) != "backbone.embeddings.weight" ||
        std::string_view(g[kNormF].suffix) != "backbone.norm_f.weight" ||
        std::string_view(g[kLmHead].suffix) != "lm_head.weight") {
      std::abort();
    }
    return g;
  }();
  return t;
}

std::string layer_prefix(int layer) { return fmt::format("backbone.layers.{}.", layer); }

std::vector<tensor_entry> model_tensors(const model_config& c) {
  std::vector<tensor_entry> out;
  auto add = [&](std::string name, const tensor_spec& s, int layer, int index) {
    out.push_back({std::move(name), &s, layer, index, s.shape(c), s.present == nullptr || s.present(c)});
  };
  const auto& model = global_tensor_specs();
  for (std::size_t j = 0; j < kGlobalsBeforeLayers; ++j) add(model[j].suffix, model[j], -1, static_cast<int>(j));
  for (int i = 0; i < c.num_layers(); ++i) {
    const std::string p = layer_prefix(i);
    const auto& specs = layer_tensor_specs(c.layers[static_cast<std::size_t>(i)]);
    for (std::size_t j = 0; j < specs.size(); ++j) add(p + specs[j]->suffix, *specs[j], i, static_cast<int>(j));
  }
  for (std::size_t j = kGlobalsBeforeLayers; j < model.size(); ++j) {
    add(model[j].suffix, model[j], -1, static_cast<int>(j));
  }
  return out;
}

}  // namespace nemotron_h
