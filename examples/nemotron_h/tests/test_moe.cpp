// MoE layers (Nemotron 3): config fields and their checks, the layer-kind table's MoE tensors,
// synthetic weights, both checkpoint layouts of the routed experts, the float64 reference
// (reference/moe_ref.cpp) against an independent naive implementation, the tie rule, and
// that plausible mistakes (no renormalisation, the correction bias in the weights, another
// group rule) change the result.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <set>

#include "model/config.hpp"
#include "model/cpu_forward.hpp"
#include "model/layer_kinds.hpp"
#include "model/quant_config.hpp"
#include "model/quantize.hpp"
#include "model/random_tokens.hpp"
#include "model/safetensors.hpp"
#include "model/weights.hpp"
#include "model_test_util.hpp"
#include "reference/reference.hpp"

using namespace nemotron_h;
using Catch::Matchers::Contains;
using nh_test::error_of;
using json = nlohmann::json;

namespace {

// ---- an independent naive MoE, token by token ---------------------------------------------------

/// Deliberate mistakes the naive implementation can make, to show the tests catch them.
struct mistakes {
  bool no_renorm = false;        ///< ignore norm_topk_prob
  bool bias_in_weights = false;  ///< weights = s + bias instead of s
  bool group_by_max = false;     ///< group score = the group's largest biased score
  bool group_by_sum = false;     ///< group score = the sum of all its biased scores
  bool scale_shared = false;     ///< multiply the shared expert by routed_scaling_factor
};

struct naive_moe {
  int D = 0, E = 0, k = 0, F = 0, Fs = 0, W = 0, n_group = 1, topk_group = 1;
  bool norm = true, latent = false;
  double scale = 1.0;
  std::vector<double> gate, bias, up, down, sup, sdown, fc1, fc2;

  /// The chosen experts of one token (selection by repeated argmax: the first maximum wins).
  std::vector<std::pair<int, double>> route(const double* x, const mistakes& m = {}) const {
    std::vector<double> s(E), b(E);
    for (int e = 0; e < E; ++e) {
      double l = 0;
      for (int i = 0; i < D; ++i) l += x[i] * gate[static_cast<std::size_t>(e) * D + i];
      s[e] = 1.0 / (1.0 + std::exp(-l));
      b[e] = s[e] + bias[e];
    }
    std::vector<bool> allowed(E, true);
    if (n_group > 1) {
      const int per = E / n_group;
      std::vector<double> gs(n_group);
      for (int g = 0; g < n_group; ++g) {
        std::vector<double> v(b.begin() + g * per, b.begin() + (g + 1) * per);
        std::sort(v.rbegin(), v.rend());
        double sum = 0;
        for (double q : v) sum += q;
        gs[g] = m.group_by_max ? v[0] : m.group_by_sum ? sum : v[0] + v[1];
      }
      std::vector<bool> keep(n_group, false);
      for (int n = 0; n < topk_group; ++n) {
        int best = -1;
        for (int g = 0; g < n_group; ++g)
          if (!keep[g] && (best < 0 || gs[g] > gs[best])) best = g;
        keep[best] = true;
      }
      for (int e = 0; e < E; ++e) allowed[e] = keep[e / per];
    }
    std::vector<std::pair<int, double>> out;
    std::vector<bool> taken(E, false);
    for (int n = 0; n < k; ++n) {
      int best = -1;
      for (int e = 0; e < E; ++e)
        if (allowed[e] && !taken[e] && (best < 0 || b[e] > b[best])) best = e;
      taken[best] = true;
      out.push_back({best, m.bias_in_weights ? b[best] : s[best]});
    }
    double sum = 0;
    for (auto& p : out) sum += p.second;
    for (auto& p : out) p.second = (norm && !m.no_renorm ? p.second / (sum + 1e-20) : p.second) * scale;
    return out;
  }

  static std::vector<double> mlp(const double* x, const double* U, const double* Dn, int in, int mid, int out) {
    std::vector<double> h(mid), y(out, 0.0);
    for (int f = 0; f < mid; ++f) {
      double a = 0;
      for (int i = 0; i < in; ++i) a += U[static_cast<std::size_t>(f) * in + i] * x[i];
      a = a > 0 ? a : 0;
      h[f] = a * a;
    }
    for (int o = 0; o < out; ++o)
      for (int f = 0; f < mid; ++f) y[o] += Dn[static_cast<std::size_t>(o) * mid + f] * h[f];
    return y;
  }

  std::vector<double> forward(const std::vector<double>& x, int T, const mistakes& m = {}) const {
    std::vector<double> out(static_cast<std::size_t>(T) * D);
    for (int t = 0; t < T; ++t) {
      const double* xt = x.data() + static_cast<std::size_t>(t) * D;
      std::vector<double> h(xt, xt + D);
      if (latent) {
        h.assign(W, 0.0);
        for (int j = 0; j < W; ++j)
          for (int i = 0; i < D; ++i) h[j] += fc1[static_cast<std::size_t>(j) * D + i] * xt[i];
      }
      std::vector<double> acc(W, 0.0);
      for (auto [e, w] : route(xt, m)) {
        const auto y = mlp(h.data(), up.data() + static_cast<std::size_t>(e) * F * W,
                           down.data() + static_cast<std::size_t>(e) * W * F, W, F, W);
        for (int j = 0; j < W; ++j) acc[j] += w * y[j];
      }
      std::vector<double> r(acc);
      if (latent) {
        r.assign(D, 0.0);
        for (int i = 0; i < D; ++i)
          for (int j = 0; j < W; ++j) r[i] += fc2[static_cast<std::size_t>(i) * W + j] * acc[j];
      }
      const auto sh = mlp(xt, sup.data(), sdown.data(), D, Fs, D);
      for (int i = 0; i < D; ++i) out[static_cast<std::size_t>(t) * D + i] = r[i] + (m.scale_shared ? scale : 1.0) * sh[i];
    }
    return out;
  }

  [[nodiscard]] ref::moe_routing routing() const {
    ref::moe_routing r;
    r.num_experts = E;
    r.top_k = k;
    r.n_group = n_group;
    r.topk_group = topk_group;
    r.norm_topk_prob = norm;
    r.routed_scaling_factor = scale;
    return r;
  }
  [[nodiscard]] ref::moe_layer_ref layer() const {
    ref::moe_layer_ref w;
    w.gate = gate.data();
    w.bias = bias.data();
    w.up = up.data();
    w.down = down.data();
    w.shared_up = sup.data();
    w.shared_down = sdown.data();
    w.fc1_latent = latent ? fc1.data() : nullptr;
    w.fc2_latent = latent ? fc2.data() : nullptr;
    w.F = F;
    w.Fs = Fs;
    w.W = W;
    return w;
  }
  std::vector<double> reference(const std::vector<double>& x, int T, std::vector<int>* ex = nullptr,
                                std::vector<double>* wt = nullptr) const {
    std::vector<double> out(static_cast<std::size_t>(T) * D);
    std::vector<int> e(static_cast<std::size_t>(T) * k);
    std::vector<double> w(static_cast<std::size_t>(T) * k);
    ref::moe_forward(x.data(), T, D, layer(), routing(), out.data(), e.data(), w.data());
    if (ex) *ex = e;
    if (wt) *wt = w;
    return out;
  }
};

std::vector<double> randn(std::mt19937_64& g, std::size_t n, double sd) {
  std::normal_distribution<double> d(0.0, sd);
  std::vector<double> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

naive_moe random_moe(std::uint64_t seed, int D, int E, int k, int F, int Fs, int latent, int n_group, int topk_group,
                     bool norm, double scale, double bias_sd) {
  std::mt19937_64 g(seed);
  naive_moe m;
  m.D = D, m.E = E, m.k = k, m.F = F, m.Fs = Fs, m.W = latent > 0 ? latent : D;
  m.n_group = n_group, m.topk_group = topk_group, m.norm = norm, m.scale = scale, m.latent = latent > 0;
  m.gate = randn(g, static_cast<std::size_t>(E) * D, 0.5);
  m.bias = randn(g, E, bias_sd);
  m.up = randn(g, static_cast<std::size_t>(E) * F * m.W, 0.3);
  m.down = randn(g, static_cast<std::size_t>(E) * m.W * F, 0.3);
  m.sup = randn(g, static_cast<std::size_t>(Fs) * D, 0.3);
  m.sdown = randn(g, static_cast<std::size_t>(D) * Fs, 0.3);
  if (latent > 0) {
    m.fc1 = randn(g, static_cast<std::size_t>(latent) * D, 0.3);
    m.fc2 = randn(g, static_cast<std::size_t>(D) * latent, 0.3);
  }
  return m;
}

double rel(const std::vector<double>& a, const std::vector<double>& b) { return rel_norm_error(a, b); }

/// The logit whose sigmoid is p.
double logit(double p) { return std::log(p / (1.0 - p)); }

json moe_config() {
  return json::parse(R"({
    "model_type": "nemotron_h", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256,
    "hybrid_override_pattern": "M*ME-E", "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 128,
    "mamba_num_heads": 8, "mamba_head_dim": 32, "ssm_state_size": 64, "n_groups": 2,
    "conv_kernel": 4, "chunk_size": 16, "layer_norm_epsilon": 1e-5,
    "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
    "moe_shared_expert_intermediate_size": 128, "n_shared_experts": 1, "n_group": 1, "topk_group": 1,
    "norm_topk_prob": true, "routed_scaling_factor": 2.5, "moe_latent_size": null,
    "num_nextn_predict_layers": 1, "mtp_layers_block_type": ["attention", "moe"], "mtp_hybrid_override_pattern": "*E"
  })");
}

std::string cfg_err(const json& j) {
  return error_of([&] { (void)parse_config_json_text(j.dump(), "moe/config.json"); });
}

}  // namespace

// ---- config ---------------------------------------------------------------------------------------

TEST_CASE("moe config: both layer-list schemas, the MoE fields, MTP fields ignored", "[moe][config]") {
  const model_config c = parse_config_json_text(moe_config().dump(), "moe/config.json");
  CHECK(c.pattern == "M*ME-E");
  CHECK(c.count(layer_kind::moe) == 2);
  CHECK(c.layers[3] == layer_kind::moe);
  CHECK(c.n_routed_experts == 8);
  CHECK(c.num_experts_per_tok == 2);
  CHECK(c.moe_intermediate_size == 64);
  CHECK(c.moe_shared_expert_intermediate_size == 128);
  CHECK(c.routed_scaling_factor == 2.5);
  CHECK(c.norm_topk_prob);
  CHECK_FALSE(c.latent_moe());
  CHECK(c.moe_width() == 128);
  CHECK(c.num_nextn_predict_layers == 1);
  CHECK_THAT(c.summary(), Contains("2 E") && Contains("MoE 8 experts, top 2, width 64, shared 128"));

  for (const auto& names : std::vector<std::vector<const char*>>{
           {"linear_attention", "full_attention", "linear_attention", "moe", "mlp", "moe"},
           {"mamba", "attention", "mamba", "moe", "mlp", "moe"}}) {
    json j = moe_config();
    j.erase("hybrid_override_pattern");
    j["layers_block_type"] = names;
    j["num_hidden_layers"] = 6;
    CHECK(parse_config_json_text(j.dump(), "x").pattern == "M*ME-E");
  }
  json j = moe_config();
  j.erase("n_routed_experts");
  j["num_local_experts"] = 16;
  CHECK(parse_config_json_text(j.dump(), "x").n_routed_experts == 16);
  j = moe_config();
  j["moe_latent_size"] = 32;
  const model_config lat = parse_config_json_text(j.dump(), "x");
  CHECK(lat.latent_moe());
  CHECK(lat.moe_width() == 32);
  // transformers' defaults when a field is absent.
  j = moe_config();
  for (const char* f : {"n_group", "topk_group", "norm_topk_prob", "routed_scaling_factor", "moe_latent_size"}) j.erase(f);
  const model_config d = parse_config_json_text(j.dump(), "x");
  CHECK(d.n_group == 1);
  CHECK(d.topk_group == 1);
  CHECK(d.norm_topk_prob);
  CHECK(d.routed_scaling_factor == 1.0);
  CHECK(d.moe_latent_size == 0);
  // A dense config's MoE fields are not read (transformers writes its defaults into every config).
  j = moe_config();
  j["hybrid_override_pattern"] = "M*M-M-";
  j["num_experts_per_tok"] = 99;
  CHECK(parse_config_json_text(j.dump(), "x").count(layer_kind::moe) == 0);
}

TEST_CASE("moe config: inconsistent or unsupported MoE fields name the file and the field", "[moe][config]") {
  auto with = [](const char* field, json v) {
    json j = moe_config();
    j[field] = std::move(v);
    return cfg_err(j);
  };
  CHECK_THAT(with("num_experts_per_tok", 9),
             Contains("moe/config.json") && Contains("field 'num_experts_per_tok' = 9 is more than n_routed_experts = 8"));
  json j = moe_config();
  j["n_group"] = 2;
  j["topk_group"] = 3;
  CHECK_THAT(cfg_err(j), Contains("moe/config.json") && Contains("field 'topk_group' = 3 is more than n_group = 2"));
  CHECK_THAT(with("n_group", 3), Contains("field 'n_routed_experts' = 8 is not a multiple of n_group = 3"));
  CHECK_THAT(with("n_group", 8), Contains("field 'n_group' = 8 leaves 1 expert per group"));
  j = moe_config();
  j["n_group"] = 4;
  j["topk_group"] = 1;
  j["num_experts_per_tok"] = 3;
  CHECK_THAT(cfg_err(j), Contains("field 'num_experts_per_tok' = 3 is more than the 2 experts of the topk_group = 1"));
  CHECK_THAT(with("n_shared_experts", 2), Contains("field 'n_shared_experts' = 2 is not supported"));
  CHECK_THAT(with("routed_scaling_factor", 0.0), Contains("field 'routed_scaling_factor' = 0 must be a positive"));
  CHECK_THAT(with("moe_latent_size", -4), Contains("field 'moe_latent_size' = -4 is out of range"));
  CHECK_THAT(with("moe_latent_size", "big"), Contains("field 'moe_latent_size' must be an integer"));
  CHECK_THAT(with("n_routed_experts", 0), Contains("field 'n_routed_experts' = 0 is out of range"));
  CHECK_THAT(with("moe_intermediate_size", 1.5), Contains("field 'moe_intermediate_size' must be an integer"));
  CHECK_THAT(with("norm_topk_prob", "yes"), Contains("field 'norm_topk_prob' must be a boolean"));
  CHECK_THAT(with("moe_router_score_function", "softmax"),
             Contains("field 'moe_router_score_function' = \"softmax\" is not supported"));
  // The same checks on a config made in code (presets, --layers).
  model_config c = preset("tiny-moe");
  c.num_experts_per_tok = 9;
  CHECK_THAT(error_of([&] { c.validate(); }), Contains("tiny-moe: field 'num_experts_per_tok' = 9"));
}

TEST_CASE("moe config: first_layers keeps the shapes and checks N", "[moe][config]") {
  const model_config c = preset("nemotron-3-nano-30b-a3b");
  const model_config t = c.first_layers(4);
  CHECK(t.pattern == "MEME");
  CHECK(t.num_layers() == 4);
  CHECK(t.hidden_size == c.hidden_size);
  CHECK(t.n_routed_experts == 128);
  CHECK(c.first_layers(1).count(layer_kind::moe) == 0);
  CHECK_THAT(error_of([&] { (void)c.first_layers(0); }), Contains("--layers 0: the model has 52 layers"));
  CHECK_THAT(error_of([&] { (void)c.first_layers(53); }), Contains("--layers 53"));
}

TEST_CASE("moe config: the published shapes as presets", "[moe][config][presets]") {
  struct want {
    const char* name;
    int layers, M, E, A, F, D;
    double params_b;  // published total, billions
  };
  for (const want& w : {want{"nemotron-h-47b", 98, 45, 0, 5, 48, 8192, 47},
                        want{"nemotron-h-56b", 118, 54, 0, 10, 54, 8192, 56},
                        want{"nano-12b-v2", 62, 28, 0, 6, 28, 5120, 12.3},
                        want{"nemotron-3-nano-4b", 42, 21, 0, 4, 17, 3136, 3.97},
                        want{"nemotron-3-nano-30b-a3b", 52, 23, 23, 6, 0, 2688, 31.6},
                        want{"nemotron-3-super-120b-a12b", 88, 40, 40, 8, 0, 4096, 120},
                        want{"nemotron-3-ultra-550b-a55b", 108, 48, 48, 12, 0, 8192, 550}}) {
    CAPTURE(w.name);
    const model_config c = preset(w.name);
    CHECK(c.num_layers() == w.layers);
    CHECK(c.count(layer_kind::mamba) == w.M);
    CHECK(c.count(layer_kind::moe) == w.E);
    CHECK(c.count(layer_kind::attention) == w.A);
    CHECK(c.count(layer_kind::mlp) == w.F);
    CHECK(c.hidden_size == w.D);
    CHECK(c.vocab_size == 131072);
    const double b = static_cast<double>(c.num_parameters()) / 1e9;
    INFO("parameters: " << b << "B");
    CHECK(b > w.params_b * 0.93);
    CHECK(b < w.params_b * 1.07);
  }
  const model_config n3 = preset("nemotron-3-nano-30b-a3b");
  CHECK(n3.layers[1] == layer_kind::moe);
  CHECK(n3.num_key_value_heads == 2);
  CHECK(n3.n_routed_experts == 128);
  CHECK(n3.num_experts_per_tok == 6);
  CHECK(n3.moe_intermediate_size == 1856);
  CHECK(n3.moe_shared_expert_intermediate_size == 3712);
  CHECK(n3.routed_scaling_factor == 2.5);
  CHECK(n3.mamba_num_heads == 64);
  CHECK(n3.mamba_head_dim == 64);
  const model_config s3 = preset("nemotron-3-super-120b-a12b");
  CHECK(s3.n_routed_experts == 512);
  CHECK(s3.num_experts_per_tok == 22);
  CHECK(s3.moe_latent_size == 1024);
  CHECK(s3.moe_intermediate_size == 2688);
  CHECK(s3.moe_shared_expert_intermediate_size == 5376);
  CHECK(s3.routed_scaling_factor == 5.0);
  const model_config u3 = preset("nemotron-3-ultra-550b-a55b");
  CHECK(u3.moe_latent_size == 2048);
  CHECK(u3.moe_intermediate_size == 5120);
  CHECK(u3.moe_shared_expert_intermediate_size == 10240);
  CHECK(u3.mamba_num_heads == 256);
  CHECK(preset("nemotron-h-47b").ssm_state_size == 256);
  CHECK(preset("nemotron-3-nano-4b").chunk_size == 256);
  CHECK(preset("nemotron-3-nano-4b").mamba_head_dim == 80);
  const model_config tm = preset("tiny-moe");
  CHECK(tm.pattern == "M*ME-E");
  CHECK(tm.hidden_size == preset("tiny").hidden_size);
}

// ---- table and weights ---------------------------------------------------------------------------

TEST_CASE("moe weights: the table's MoE tensors, synthetic weights, existing tensors unchanged", "[moe][weights]") {
  const model_config c = preset("tiny-moe");
  std::map<std::string, std::vector<std::int64_t>> shapes;
  for (const auto& e : expected_tensors(c)) shapes[e.name] = e.shape;
  const std::string p = "backbone.layers.3.mixer.";
  CHECK(shapes.at(p + "gate.weight") == std::vector<std::int64_t>{8, 128});
  CHECK(shapes.at(p + "gate.e_score_correction_bias") == std::vector<std::int64_t>{8});
  CHECK(shapes.at(p + "experts.up_proj") == std::vector<std::int64_t>{8, 64, 128});
  CHECK(shapes.at(p + "experts.down_proj") == std::vector<std::int64_t>{8, 128, 64});
  CHECK(shapes.at(p + "shared_experts.up_proj.weight") == std::vector<std::int64_t>{128, 128});
  CHECK(shapes.at(p + "shared_experts.down_proj.weight") == std::vector<std::int64_t>{128, 128});
  CHECK_FALSE(shapes.count(p + "fc1_latent_proj.weight"));  // no latent: not in the checkpoint
  model_config lat = c;
  lat.moe_latent_size = 32;
  lat.validate();
  std::map<std::string, std::vector<std::int64_t>> ls;
  for (const auto& e : expected_tensors(lat)) ls[e.name] = e.shape;
  CHECK(ls.at(p + "fc1_latent_proj.weight") == std::vector<std::int64_t>{32, 128});
  CHECK(ls.at(p + "fc2_latent_proj.weight") == std::vector<std::int64_t>{128, 32});
  CHECK(ls.at(p + "experts.up_proj") == std::vector<std::int64_t>{8, 64, 32});
  CHECK(ls.at(p + "experts.down_proj") == std::vector<std::int64_t>{8, 32, 64});
  CHECK(find_kind('E') == &kind_info(layer_kind::moe));
  CHECK(find_block_type("moe") == &kind_info(layer_kind::moe));

  // Synthetic: deterministic, transformers' init (bias 0, gate normal(0, 0.02)), and every
  // tensor the dense "tiny" also has keeps its values (streams are drawn per tensor name).
  const model_weights w = synthetic_weights(c, 5);
  const model_weights w2 = synthetic_weights(c, 5);
  const model_weights dense = synthetic_weights(preset("tiny"), 5);
  CHECK(w.bytes() == w2.bytes());
  CHECK(w.embeddings() == dense.embeddings());
  CHECK(w.lm_head() == dense.lm_head());
  for (int l : {0, 1, 2}) {
    for (std::size_t i = 0; i < w.layers[l].tensors.size(); ++i) CHECK(w.layers[l].tensors[i] == dense.layers[l].tensors[i]);
  }
  for (std::size_t i = 0; i < w.layers[3].tensors.size(); ++i) CHECK(w.layers[3].tensors[i] == w2.layers[3].tensors[i]);
  const host_tensor& bias = w.layers[3].get("mixer.gate.e_score_correction_bias");
  CHECK(bias.type() == dtype::f32);
  for (std::int64_t i = 0; i < bias.numel(); ++i) CHECK(bias.f32()[i] == 0.0f);
  const auto g = w.layers[3].get("mixer.gate.weight").to_f64();
  double ss = 0;
  for (double v : g) ss += v * v;
  CHECK(std::sqrt(ss / g.size()) == Approx(0.02).epsilon(0.1));
  // Two MoE layers draw different experts.
  CHECK(w.layers[3].get("mixer.experts.up_proj") != w.layers[5].get("mixer.experts.up_proj"));
  const model_weights r = synthetic_weights(c, 5, {.randomize_vectors = true});
  double bs = 0;
  for (double v : r.layers[3].get("mixer.gate.e_score_correction_bias").to_f64()) bs += std::abs(v);
  CHECK(bs > 0.05);
  std::int64_t params = 0;
  std::size_t bytes = 0;
  for (const auto& e : expected_tensors(c)) {
    std::int64_t n = 1;
    for (auto d : e.shape) n *= d;
    params += n;
    bytes += static_cast<std::size_t>(n) * (e.type == dtype::f32 ? 4 : 2);
  }
  CHECK(c.num_parameters() == params);
  CHECK(w.bytes() == bytes);
}

namespace {

/// The checkpoint tensors of `w` (as save_weights writes them) with the routed experts split
/// into one tensor per expert, names under `prefix`.
std::vector<st_write_tensor> per_expert_tensors(const model_config& c, const model_weights& w, const std::string& prefix) {
  std::vector<st_write_tensor> out;
  for (const tensor_entry& e : model_tensors(c)) {
    if (!e.in_checkpoint) continue;
    const host_tensor& t = w.at(e);
    const std::string name = e.name.rfind("backbone.", 0) == 0 ? prefix + e.name.substr(9) : e.name;
    const std::string suffix = e.layer >= 0 ? e.name.substr(layer_prefix(e.layer).size()) : "";
    if (suffix == "mixer.experts.up_proj" || suffix == "mixer.experts.down_proj") {
      const std::vector<std::int64_t> one(e.shape.begin() + 1, e.shape.end());
      const std::size_t per = static_cast<std::size_t>(t.numel() / e.shape[0]);
      const std::string proj = suffix.substr(suffix.rfind('.') + 1);
      for (std::int64_t x = 0; x < e.shape[0]; ++x) {
        std::vector<std::uint16_t> v(t.bf16() + x * per, t.bf16() + (x + 1) * per);
        out.push_back(make_tensor_from_bf16(
            fmt::format("{}layers.{}.mixer.experts.{}.{}.weight", prefix, e.layer, x, proj), one, v));
      }
      continue;
    }
    st_write_tensor s;
    s.name = name;
    s.dtype = t.type() == dtype::f32 ? st_dtype::f32 : st_dtype::bf16;
    s.shape = e.shape;
    s.bytes.assign(t.data(), t.data() + t.data_bytes());
    out.push_back(std::move(s));
  }
  return out;
}

std::string load_error(const std::filesystem::path& dir, const model_config& c) {
  const std::string e = error_of([&] { (void)load_weights(dir, c); });
  CHECK(error_of([&] { (void)check_checkpoint(dir, c); }) == e);  // headers alone find it
  return e;
}

}  // namespace

TEST_CASE("moe weights: fused and per-expert checkpoints, every prefix, mtp tensors unused", "[moe][weights]") {
  model_config c = preset("tiny-moe");
  c.moe_latent_size = 32;  // every MoE tensor, latent projections included
  c.validate();
  const model_weights w = synthetic_weights(c, 9, {.randomize_vectors = true});
  nh_test::temp_dir td("moe_ckpt");

  save_weights(td.path / "fused", c, w, "model.");
  const model_weights a = load_weights(td.path / "fused", c);
  for (const tensor_entry& e : model_tensors(c)) CHECK(a.at(e) == w.at(e));

  for (const std::string prefix : {"backbone.", "model.", "language_model.backbone."}) {
    CAPTURE(prefix);
    auto tensors = per_expert_tensors(c, w, prefix);
    tensors.push_back(make_tensor_from_floats("mtp.layers.0.mixer.gate.weight", {8, 128}, std::vector<float>(1024, 0.5f), st_dtype::bf16));
    tensors.push_back(make_tensor_from_floats("mtp.norm.weight", {128}, std::vector<float>(128, 1.0f), st_dtype::bf16));
    const auto dir = td.path / ("split_" + std::to_string(prefix.size()));
    std::filesystem::create_directories(dir);
    write_safetensors(dir / "model.safetensors", tensors);
    const model_weights b = load_weights(dir, c);
    for (const tensor_entry& e : model_tensors(c)) CHECK(b.at(e) == w.at(e));
    const checkpoint_summary s = check_checkpoint(dir, c);
    CHECK(s.tensors == tensors.size() - 2);
    REQUIRE(s.notes.size() == 1);
    CHECK_THAT(s.notes[0], Contains("2 multi-token-prediction tensors (mtp.*)") && Contains("not used"));
  }
}

TEST_CASE("moe weights: a missing expert, a wrong router, experts given twice: errors before any data", "[moe][weights]") {
  const model_config c = preset("tiny-moe");
  const model_weights w = synthetic_weights(c, 3);
  nh_test::temp_dir td("moe_err");
  const auto file = (td.path / "model.safetensors").string();
  auto write = [&](std::vector<st_write_tensor> t) { write_safetensors(td.path / "model.safetensors", t); };

  auto t = per_expert_tensors(c, w, "backbone.");
  std::erase_if(t, [](const st_write_tensor& x) { return x.name == "backbone.layers.5.mixer.experts.6.down_proj.weight"; });
  write(t);
  CHECK_THAT(load_error(td.path, c),
             Contains(file) && Contains("1 missing tensor") &&
                 Contains("'backbone.layers.5.mixer.experts.6.down_proj.weight' [128, 64] (layer 5, expert 6 of 8)"));

  t = per_expert_tensors(c, w, "backbone.");
  for (auto& x : t) {
    if (x.name == "backbone.layers.3.mixer.gate.weight") {
      x.shape = {7, 128};
      x.bytes.resize(7 * 128 * 2);
    }
  }
  write(t);
  CHECK_THAT(load_error(td.path, c), Contains(file) && Contains("tensor 'backbone.layers.3.mixer.gate.weight'") &&
                                         Contains("has shape [7, 128] but the config expects [8, 128]") &&
                                         Contains("(layer 3, a moe layer)"));

  t = per_expert_tensors(c, w, "backbone.");
  for (auto& x : t) {
    if (x.name == "backbone.layers.3.mixer.experts.2.up_proj.weight") x.shape = {64, 127}, x.bytes.resize(64 * 127 * 2);
  }
  write(t);
  CHECK_THAT(load_error(td.path, c), Contains("'backbone.layers.3.mixer.experts.2.up_proj.weight' has shape [64, 127] "
                                              "but the config expects [64, 128] (layer 3, a moe layer)"));

  t = per_expert_tensors(c, w, "backbone.");
  t.push_back(make_tensor_from_floats("backbone.layers.3.mixer.experts.up_proj", {8, 64, 128},
                                      std::vector<float>(8 * 64 * 128, 0.0f), st_dtype::bf16));
  write(t);
  CHECK_THAT(load_error(td.path, c), Contains("'backbone.layers.3.mixer.experts.up_proj' is given twice") &&
                                         Contains("one tensor per expert") && Contains("layer 3"));

  t = per_expert_tensors(c, w, "backbone.");
  t.push_back(make_tensor_from_floats("backbone.layers.3.mixer.experts.8.up_proj.weight", {64, 128},
                                      std::vector<float>(64 * 128, 0.0f), st_dtype::bf16));
  write(t);
  CHECK_THAT(load_error(td.path, c),
             Contains("1 unexpected tensor") && Contains("'backbone.layers.3.mixer.experts.8.up_proj.weight'"));

  save_weights(td.path, c, w);
  std::vector<st_write_tensor> fused;
  {
    const checkpoint ck(td.path);
    for (const auto& n : ck.names()) {
      if (n == "backbone.layers.5.mixer.experts.up_proj") continue;
      auto [f, info] = ck.find(n);
      st_write_tensor x{n, info->dtype, info->shape, {}};
      if (info->dtype == st_dtype::f32) {
        const auto v = f->read_f32(*info);
        x = make_tensor_from_floats(n, info->shape, v, st_dtype::f32);
      } else {
        x = make_tensor_from_bf16(n, info->shape, f->read_bf16(*info));
      }
      fused.push_back(std::move(x));
    }
  }
  write(fused);
  CHECK_THAT(load_error(td.path, c), Contains("'backbone.layers.5.mixer.experts.up_proj' [8, 64, 128] (layer 5, a moe layer)"));
}

// ---- the reference -------------------------------------------------------------------------------

TEST_CASE("moe_ref: random routing equals an independent naive implementation", "[moe][moe_ref]") {
  struct shape {
    int E, k, n_group, topk_group, latent;
    bool norm;
    double scale;
  };
  int case_no = 0;
  for (const shape& s : {shape{8, 2, 1, 1, 0, true, 2.5}, shape{8, 2, 1, 1, 0, false, 1.0},
                         shape{16, 4, 4, 2, 0, true, 2.5}, shape{12, 3, 3, 1, 0, true, 1.5},
                         shape{16, 6, 4, 3, 8, true, 5.0}, shape{8, 8, 1, 1, 6, false, 1.0},
                         shape{6, 1, 2, 1, 0, false, 3.0}}) {
    CAPTURE(case_no++);
    const int D = 12, T = 9;
    const naive_moe m = random_moe(100 + case_no, D, s.E, s.k, 5, 7, s.latent, s.n_group, s.topk_group, s.norm,
                                   s.scale, 0.2);
    std::mt19937_64 g(7 + case_no);
    const auto x = randn(g, static_cast<std::size_t>(T) * D, 1.0);
    std::vector<int> ex;
    std::vector<double> wt;
    const auto out = m.reference(x, T, &ex, &wt);
    const auto want = m.forward(x, T);
    CHECK(rel(out, want) < 1e-13);
    for (int t = 0; t < T; ++t) {
      const auto r = m.route(x.data() + static_cast<std::size_t>(t) * D);
      for (int j = 0; j < s.k; ++j) {
        CHECK(ex[static_cast<std::size_t>(t) * s.k + j] == r[j].first);
        CHECK(wt[static_cast<std::size_t>(t) * s.k + j] == Approx(r[j].second).epsilon(1e-14));
      }
      if (s.norm) {
        double sum = 0;
        for (int j = 0; j < s.k; ++j) sum += wt[static_cast<std::size_t>(t) * s.k + j];
        CHECK(sum == Approx(s.scale).epsilon(1e-14));
      }
    }
  }
}

TEST_CASE("moe_ref: ties choose the lower expert index (and the lower group)", "[moe][moe_ref]") {
  ref::moe_routing r;
  r.num_experts = 8;
  r.top_k = 3;
  int ex[8];
  double wt[8];
  std::vector<double> logits(8, 0.0), bias(8, 0.0);
  ref::moe_route(logits.data(), bias.data(), r, ex, wt);  // all scores equal
  CHECK(std::vector<int>(ex, ex + 3) == std::vector<int>{0, 1, 2});
  for (int j = 0; j < 3; ++j) CHECK(wt[j] == Approx(1.0 / 3.0));
  // A tie at the boundary of the top 3: experts 5 and 2 share the third-largest score.
  logits = {0.1, 0.9, 0.3, -1.0, 0.8, 0.3, 0.0, -0.5};
  ref::moe_route(logits.data(), bias.data(), r, ex, wt);
  CHECK(std::vector<int>(ex, ex + 3) == std::vector<int>{1, 4, 2});
  // Groups: two groups with equal group scores: the lower one is kept.
  r.n_group = 2;
  r.topk_group = 1;
  r.top_k = 2;
  logits = {0.5, 0.2, 0.0, 0.0, 0.0, 0.0, 0.5, 0.2};
  ref::moe_route(logits.data(), bias.data(), r, ex, wt);
  CHECK(std::vector<int>(ex, ex + 2) == std::vector<int>{0, 1});
}

TEST_CASE("moe_ref: experts without tokens, all tokens on one expert, top-k = E", "[moe][moe_ref]") {
  const int D = 10, T = 6;
  naive_moe m = random_moe(31, D, 8, 1, 4, 5, 0, 1, 1, false, 2.0, 0.0);
  // The correction bias sends every token to expert 5 (it only chooses; the weight stays the
  // plain sigmoid score): the other experts get no token, and NaN weights there must not
  // reach the output.
  m.bias.assign(8, 0.0);
  m.bias[5] = 10.0;
  for (int e = 0; e < 8; ++e) {
    if (e == 5) continue;
    std::fill_n(m.up.begin() + static_cast<std::ptrdiff_t>(e) * 4 * D, 4 * D, std::numeric_limits<double>::quiet_NaN());
  }
  std::mt19937_64 g(3);
  const auto x = randn(g, static_cast<std::size_t>(T) * D, 1.0);
  std::vector<int> ex;
  std::vector<double> wt;
  const auto out = m.reference(x, T, &ex, &wt);
  for (double v : out) CHECK(std::isfinite(v));
  CHECK(std::set<int>(ex.begin(), ex.end()) == std::set<int>{5});
  for (int t = 0; t < T; ++t) {
    double l = 0;
    for (int i = 0; i < D; ++i) l += x[static_cast<std::size_t>(t) * D + i] * m.gate[5 * D + i];
    CHECK(wt[t] == Approx(2.0 / (1.0 + std::exp(-l))).epsilon(1e-14));  // scale * sigmoid, no bias
  }
  CHECK(rel(out, m.forward(x, T)) < 1e-13);
  mistakes bias_w;
  bias_w.bias_in_weights = true;
  CHECK(rel(m.forward(x, T, bias_w), out) > 0.1);

  // Every expert chosen (k = E), weights renormalised to routed_scaling_factor.
  naive_moe all = random_moe(32, D, 6, 6, 4, 5, 0, 1, 1, true, 2.5, 0.3);
  const auto oa = all.reference(x, T, &ex, &wt);
  CHECK(rel(oa, all.forward(x, T)) < 1e-13);
  for (int t = 0; t < T; ++t) {
    CHECK(std::set<int>(ex.begin() + t * 6, ex.begin() + (t + 1) * 6) == std::set<int>{0, 1, 2, 3, 4, 5});
  }
  mistakes nr;
  nr.no_renorm = true;
  CHECK(rel(all.forward(x, T, nr), oa) > 0.1);  // without renormalisation the sum is not 2.5
}

TEST_CASE("moe_ref: grouped routing keeps the groups with the best top-2 sum", "[moe][moe_ref]") {
  // 8 experts in 2 groups of 4, one group kept, top 2. Scores (bias 0):
  //   group 0: 0.90 0.80 0.05 0.05   top-2 sum 1.70, max 0.90, sum 1.80
  //   group 1: 0.70 0.65 0.60 0.60   top-2 sum 1.35, max 0.70, sum 2.55
  // The top-2 rule keeps group 0 (experts 0, 1); summing the whole group would keep group 1.
  ref::moe_routing r;
  r.num_experts = 8;
  r.top_k = 2;
  r.n_group = 2;
  r.topk_group = 1;
  std::vector<double> logits, bias(8, 0.0);
  for (double p : {0.90, 0.80, 0.05, 0.05, 0.70, 0.65, 0.60, 0.60}) logits.push_back(logit(p));
  int ex[2];
  double wt[2];
  ref::moe_route(logits.data(), bias.data(), r, ex, wt);
  CHECK(std::vector<int>(ex, ex + 2) == std::vector<int>{0, 1});
  //   group 0: 0.95 0.10 0.10 0.10   top-2 1.05, max 0.95
  //   group 1: 0.60 0.55 0.10 0.10   top-2 1.15, max 0.60
  // The top-2 rule keeps group 1 (experts 4, 5); the largest score alone would keep group 0.
  logits.clear();
  for (double p : {0.95, 0.10, 0.10, 0.10, 0.60, 0.55, 0.10, 0.10}) logits.push_back(logit(p));
  ref::moe_route(logits.data(), bias.data(), r, ex, wt);
  CHECK(std::vector<int>(ex, ex + 2) == std::vector<int>{4, 5});
  // The correction bias takes part in the group choice: +0.2 on expert 1 makes group 0 win.
  bias[1] = 0.2;
  ref::moe_route(logits.data(), bias.data(), r, ex, wt);
  CHECK(std::vector<int>(ex, ex + 2) == std::vector<int>{0, 1});
  CHECK(wt[0] == Approx(0.95 / (0.95 + 0.10)));  // weights from the unbiased scores
  CHECK(wt[1] == Approx(0.10 / (0.95 + 0.10)));

  // On random data, the wrong group rules change the output.
  const int D = 12, T = 16;
  const naive_moe m = random_moe(77, D, 16, 4, 5, 7, 0, 4, 2, true, 2.5, 0.1);
  std::mt19937_64 g(5);
  const auto x = randn(g, static_cast<std::size_t>(T) * D, 1.0);
  const auto out = m.reference(x, T);
  CHECK(rel(out, m.forward(x, T)) < 1e-13);
  mistakes by_max, by_sum, shared;
  by_max.group_by_max = true;
  by_sum.group_by_sum = true;
  shared.scale_shared = true;
  CHECK(rel(m.forward(x, T, by_max), out) > 1e-3);
  CHECK(rel(m.forward(x, T, by_sum), out) > 1e-3);
  CHECK(rel(m.forward(x, T, shared), out) > 0.1);
}

TEST_CASE("moe_ref: latent MoE: the router and the shared expert read the full hidden state", "[moe][moe_ref]") {
  const int D = 16, T = 5;
  const naive_moe m = random_moe(55, D, 8, 3, 6, 9, 4, 1, 1, true, 5.0, 0.2);
  std::mt19937_64 g(9);
  const auto x = randn(g, static_cast<std::size_t>(T) * D, 1.0);
  const auto out = m.reference(x, T);
  CHECK(rel(out, m.forward(x, T)) < 1e-13);
  // Dropping the latent projections (experts fed x directly is impossible at W != D), so check
  // that both projections matter: zeroing fc2 leaves exactly the shared expert.
  naive_moe z = m;
  std::fill(z.fc2.begin(), z.fc2.end(), 0.0);
  const auto oz = z.reference(x, T);
  std::vector<double> shared(static_cast<std::size_t>(T) * D);
  for (int t = 0; t < T; ++t) {
    const auto sh = naive_moe::mlp(x.data() + t * D, m.sup.data(), m.sdown.data(), D, m.Fs, D);
    std::copy(sh.begin(), sh.end(), shared.begin() + t * D);
  }
  CHECK(rel(oz, shared) < 1e-14);
  CHECK(rel(out, shared) > 0.1);
}

// ---- the whole model -----------------------------------------------------------------------------

TEST_CASE("cpu_forward: a MoE model: chunked prefill and decode agree, the MoE layers matter", "[moe][cpu_forward]") {
  model_config c = preset("tiny-moe");
  const model_weights w = synthetic_weights(c, 21, {.randomize_vectors = true});
  const cpu_model m(c, w);
  std::uint64_t state = 4;
  const std::vector<std::int32_t> ids = random_token_ids(12, c.vocab_size, state);
  cpu_session one(m);
  std::vector<double> all;
  (void)one.prefill(ids, &all);
  cpu_session two(m);
  (void)two.prefill(std::span<const std::int32_t>(ids).first(7));
  for (int t = 7; t < 12; ++t) {
    const auto l = two.decode(ids[static_cast<std::size_t>(t)]);
    CHECK(rel_norm_error(l, std::span<const double>(all).subspan(static_cast<std::size_t>(t) * c.vocab_size,
                                                                  static_cast<std::size_t>(c.vocab_size))) < 1e-12);
  }
  // The routed experts contribute: zeroing one MoE layer's experts moves the logits.
  model_weights w0 = w;
  auto& up = w0.layers[3].get("mixer.experts.up_proj");
  std::fill_n(up.bf16(), up.numel(), std::uint16_t{0});
  const cpu_model m0(c, w0);
  cpu_session s0(m0);
  std::vector<double> all0;
  (void)s0.prefill(ids, &all0);
  CHECK(rel_norm_error(all0, all) > 1e-3);
  // The correction bias changes which experts run.
  model_weights wb = w;
  auto& b = wb.layers[5].get("mixer.gate.e_score_correction_bias");
  for (std::int64_t e = 0; e < b.numel(); ++e) b.f32()[e] = e == 7 ? 4.0f : 0.0f;
  const cpu_model mb(c, wb);
  cpu_session sb(mb);
  std::vector<double> allb;
  (void)sb.prefill(ids, &allb);
  CHECK(rel_norm_error(allb, all) > 1e-4);
}

TEST_CASE("moe_ref: the linear hook runs exactly the shared expert's and the latent projections' GEMMs", "[moe][moe_ref]") {
  model_config c = preset("tiny-moe");
  c.moe_latent_size = 64;
  c.validate();
  const model_weights w = synthetic_weights(c, 25, {.randomize_vectors = true});
  const cpu_model m(c, w);
  const cpu_model::layer& L = m.layers[3];
  REQUIRE(L.kind == layer_kind::moe);
  ref::moe_layer_ref r = moe_layer_of(c, L);
  REQUIRE(r.fc1_latent != nullptr);
  REQUIRE(r.fc2_latent != nullptr);
  const int T = 9, D = c.hidden_size;
  std::mt19937 gen(5);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<double> x(static_cast<std::size_t>(T) * D), plain(x.size()), hooked(x.size());
  for (double& v : x) v = nd(gen);
  ref::moe_forward(x.data(), T, D, r, moe_routing_of(c), plain.data());
  std::vector<std::string> seen;
  r.linear = [&](std::string_view suffix, const double* in, const double* Wt, double* y, int rows, int K, int N) {
    seen.emplace_back(suffix);
    CHECK(rows == T);
    ref::linear(in, Wt, y, rows, K, N);
  };
  ref::moe_forward(x.data(), T, D, r, moe_routing_of(c), hooked.data());
  CHECK(hooked == plain);
  CHECK(seen == std::vector<std::string>{"mixer.fc1_latent_proj.weight", "mixer.fc2_latent_proj.weight",
                                         "mixer.shared_experts.up_proj.weight",
                                         "mixer.shared_experts.down_proj.weight"});
}

TEST_CASE("cpu_forward: FP8 shared experts and latent projections are calibrated and fake-quantized in MoE layers",
          "[moe][quant][cpu_forward]") {
  for (bool latent : {false, true}) {
    CAPTURE(latent);
    model_config c = preset("tiny-moe");
    if (latent) {
      c.name = "tiny-moe-latent";
      c.moe_latent_size = 64;
      c.validate();
    }
    const model_weights w = synthetic_weights(c, 27, {.randomize_vectors = true});
    std::uint64_t st = 6;
    const std::vector<std::int32_t> tokens = random_token_ids(24, c.vocab_size, st);
    const auto amax = calibrate_input_amax(c, w, tokens);
    // Every linear weight's input is observed, the MoE layers' included.
    quant_config q;
    q.source = "test";
    q.algo = quant_algo::none;
    q.mixed = true;
    int moe_linear = 0;
    for (const tensor_entry& e : model_tensors(c)) {
      if (!e.spec->linear || !e.in_checkpoint) continue;  // no latent projections without moe_latent_size
      CAPTURE(e.name);
      REQUIRE(amax.count(e.name) == 1);
      CHECK(amax.at(e.name) > 0);
      if (e.layer >= 0 && c.layers[static_cast<std::size_t>(e.layer)] == layer_kind::moe) {
        q.layers[module_of(e.name)] = quant_algo::fp8;
        ++moe_linear;
      }
    }
    CHECK(moe_linear == c.count(layer_kind::moe) * (latent ? 4 : 2));
    // The shared expert and fc1 read the same normed hidden state as the router.
    if (latent) {
      CHECK(amax.at("backbone.layers.3.mixer.shared_experts.up_proj.weight") ==
            amax.at("backbone.layers.3.mixer.fc1_latent_proj.weight"));
    }
    model_weights fw = w;
    REQUIRE(quantize_weights(fw, c, q, amax) == moe_linear);
    const std::vector<double> ref = cpu_session(cpu_model(c, w)).prefill(tokens);
    const std::vector<double> f8 = cpu_session(cpu_model(c, fw)).prefill(tokens);
    // The same FP8 weights without their input scales: the activations' quantization matters.
    model_weights wo = fw;
    for (const tensor_entry& e : model_tensors(c)) {
      host_tensor& t = wo.at(e);
      if (t.scales) t.scales->input = 0;
    }
    const std::vector<double> f8w = cpu_session(cpu_model(c, wo)).prefill(tokens);
    const double moved = rel_norm_error(f8, ref), act = rel_norm_error(f8, f8w);
    WARN("FP8 MoE projections (latent " << latent << "): logits " << moved << " from bf16, " << act
                                        << " from weight-only FP8");
    CHECK(moved > 1e-4);
    CHECK(moved < 0.2);
    CHECK(act > 1e-6);
  }
}
