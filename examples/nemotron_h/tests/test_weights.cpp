// Host weights: checkpoint loading (prefixes, aliases, dtypes, ties, every error) and
// synthetic initialisation.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "model/safetensors.hpp"
#include "piecewise/element_type.hpp"
#include "model/weights.hpp"
#include "model_test_util.hpp"

using namespace nemotron_h;
using Catch::Matchers::Contains;
using nh_test::error_of;

namespace {

model_config test_config() {
  model_config c = preset("tiny");
  c.name = "test";
  c.vocab_size = 96;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.mamba_num_heads = 4;
  c.mamba_head_dim = 8;
  c.ssm_state_size = 8;
  c.n_groups = 2;
  c.pattern = "M*-M";
  c.layers = {layer_kind::mamba, layer_kind::attention, layer_kind::mlp, layer_kind::mamba};
  c.validate();
  return c;
}

/// Checkpoint tensors with zero data of the expected shapes, names with `prefix`.
std::vector<st_write_tensor> zero_tensors(const model_config& c, const std::string& prefix = "backbone.") {
  std::vector<st_write_tensor> out;
  for (const auto& e : expected_tensors(c)) {
    std::int64_t n = 1;
    for (auto d : e.shape) n *= d;
    std::string name = e.name.rfind("backbone.", 0) == 0 ? prefix + e.name.substr(9) : e.name;
    out.push_back({name, st_dtype::bf16, e.shape, std::vector<std::uint8_t>(static_cast<std::size_t>(2 * n))});
  }
  return out;
}

std::string load_err(const std::filesystem::path& dir, const model_config& c) {
  return error_of([&] { (void)load_weights(dir, c); });
}

}  // namespace

TEST_CASE("weights: synthetic weights are deterministic and initialised like transformers", "[weights]") {
  const model_config c = test_config();
  const model_weights a = synthetic_weights(c, 7, {.randomize_vectors = false, .threads = 1});
  const model_weights b = synthetic_weights(c, 7, {.randomize_vectors = false, .threads = 4});
  const model_weights d = synthetic_weights(c, 8);
  CHECK_NOTHROW(a.check_shapes(c));
  CHECK(a.embeddings == b.embeddings);
  CHECK(a.layers[0].mamba.in_proj == b.layers[0].mamba.in_proj);
  CHECK(a.layers[0].mamba.dt_bias == b.layers[0].mamba.dt_bias);
  CHECK(a.embeddings != d.embeddings);
  CHECK(a.lm_head != a.embeddings);  // untied

  // A fixed value: guards against accidental changes of the generator (cross-platform).
  const model_weights a2 = synthetic_weights(c, 7);
  CHECK(a2.embeddings == a.embeddings);

  auto stats = [](const std::vector<bf16_bits>& v) {
    double s = 0, s2 = 0;
    for (auto x : v) {
      s += piecewise::bf16_bits_to_float(x);
      s2 += double(piecewise::bf16_bits_to_float(x)) * piecewise::bf16_bits_to_float(x);
    }
    const double m = s / double(v.size());
    return std::pair{m, std::sqrt(s2 / double(v.size()) - m * m)};
  };
  // Large enough samples for the std to be within a few percent.
  model_config big = c;
  big.vocab_size = 4096;
  big.hidden_size = 64;
  const model_weights w = synthetic_weights(big, 1);
  auto [em, es] = stats(w.embeddings);
  CHECK(std::abs(em) < 0.002);
  CHECK(es == Approx(0.02).epsilon(0.03));
  auto [im, is] = stats(w.layers[0].mamba.in_proj);
  CHECK(is == Approx(0.02).epsilon(0.05));
  (void)im;
  const auto& m = w.layers[0].mamba;
  for (int h = 0; h < big.mamba_num_heads; ++h) {
    CHECK(m.A_log[h] == Approx(std::log(h + 1.0)).epsilon(0.01));
    CHECK(m.D[h] == 1.0f);
    const double dt = std::log1p(std::exp(double(m.dt_bias[h])));
    CHECK(dt >= big.time_step_min * 0.99);
    CHECK(dt <= big.time_step_max * 1.01);
  }
  const double conv_bound = 1.0 / std::sqrt(double(big.conv_kernel));
  float cmax = 0;
  for (auto x : m.conv_w) cmax = std::max(cmax, std::abs(piecewise::bf16_bits_to_float(x)));
  CHECK(cmax <= conv_bound * 1.01);
  CHECK(cmax > conv_bound * 0.9);
  const double out_bound = 1.0 / std::sqrt(double(big.d_inner())) / std::sqrt(double(big.num_layers()));
  float omax = 0;
  for (auto x : m.out_proj) omax = std::max(omax, std::abs(piecewise::bf16_bits_to_float(x)));
  CHECK(omax <= out_bound * 1.01);
  CHECK(omax > out_bound * 0.9);
  for (auto x : w.layers[1].norm) CHECK(x == piecewise::float_to_bf16_bits(1.0f));

  const model_weights r = synthetic_weights(c, 7, {.randomize_vectors = true});
  CHECK(r.layers[0].norm != a.layers[0].norm);
  CHECK(r.layers[0].mamba.D != a.layers[0].mamba.D);

  model_config tied = c;
  tied.tie_word_embeddings = true;
  const model_weights t = synthetic_weights(tied, 7);
  CHECK(t.lm_head == t.embeddings);
}

TEST_CASE("weights: save / load round trip with both prefixes", "[weights]") {
  const model_config c = test_config();
  const model_weights w = synthetic_weights(c, 3, {.randomize_vectors = true});
  for (const std::string prefix : {"backbone.", "model."}) {
    nh_test::temp_dir td("rt");
    save_weights(td.path, c, w, prefix);
    const safetensors_file f(td.path / "model.safetensors");
    CHECK(f.find(prefix + "embeddings.weight") != nullptr);
    CHECK(f.find(prefix + "layers.0.mixer.A_log")->dtype == st_dtype::f32);
    const model_weights l = load_weights(td.path, c);
    CHECK(l.embeddings == w.embeddings);
    CHECK(l.lm_head == w.lm_head);
    CHECK(l.norm_f == w.norm_f);
    for (int i = 0; i < c.num_layers(); ++i) {
      CAPTURE(i);
      CHECK(l.layers[i].kind == w.layers[i].kind);
      CHECK(l.layers[i].norm == w.layers[i].norm);
      CHECK(l.layers[i].mamba.in_proj == w.layers[i].mamba.in_proj);
      CHECK(l.layers[i].mamba.conv_w == w.layers[i].mamba.conv_w);
      CHECK(l.layers[i].mamba.conv_b == w.layers[i].mamba.conv_b);
      CHECK(l.layers[i].mamba.A_log == w.layers[i].mamba.A_log);
      CHECK(l.layers[i].mamba.D == w.layers[i].mamba.D);
      CHECK(l.layers[i].mamba.dt_bias == w.layers[i].mamba.dt_bias);
      CHECK(l.layers[i].mamba.norm == w.layers[i].mamba.norm);
      CHECK(l.layers[i].mamba.out_proj == w.layers[i].mamba.out_proj);
      CHECK(l.layers[i].attn.q_proj == w.layers[i].attn.q_proj);
      CHECK(l.layers[i].attn.k_proj == w.layers[i].attn.k_proj);
      CHECK(l.layers[i].attn.v_proj == w.layers[i].attn.v_proj);
      CHECK(l.layers[i].attn.o_proj == w.layers[i].attn.o_proj);
      CHECK(l.layers[i].mlp.up_proj == w.layers[i].mlp.up_proj);
      CHECK(l.layers[i].mlp.down_proj == w.layers[i].mlp.down_proj);
    }
  }
}

TEST_CASE("weights: embedding alias, tied lm_head, F32/F16 sources", "[weights]") {
  model_config c = test_config();
  nh_test::temp_dir td("alias");
  auto t = zero_tensors(c, "model.");
  for (auto& x : t) {
    if (x.name == "model.embeddings.weight") x.name = "model.embedding.weight";
  }
  // Store the embeddings as F32 and one matrix as F16: converted to bf16 on load.
  std::vector<float> emb(static_cast<std::size_t>(c.vocab_size) * c.hidden_size);
  for (std::size_t i = 0; i < emb.size(); ++i) emb[i] = std::sin(0.37f * static_cast<float>(i));
  std::vector<float> up(static_cast<std::size_t>(c.intermediate_size) * c.hidden_size);
  for (std::size_t i = 0; i < up.size(); ++i) up[i] = 0.001f * static_cast<float>(i % 977) - 0.3f;
  for (auto& x : t) {
    if (x.name == "model.embedding.weight") x = make_tensor_from_floats(x.name, x.shape, emb, st_dtype::f32);
    if (x.name == "model.layers.2.mixer.up_proj.weight") x = make_tensor_from_floats(x.name, x.shape, up, st_dtype::f16);
  }
  // Tied: no lm_head in the file.
  std::erase_if(t, [](const st_write_tensor& x) { return x.name == "lm_head.weight"; });
  write_safetensors(td.path / "model.safetensors", t);
  CHECK_THAT(load_err(td.path, c), Contains("missing tensor") && Contains("'lm_head.weight' [96, 32]"));
  c.tie_word_embeddings = true;
  const model_weights w = load_weights(td.path, c);
  for (std::size_t i = 0; i < emb.size(); ++i) REQUIRE(w.embeddings[i] == piecewise::float_to_bf16_bits(emb[i]));
  CHECK(w.lm_head == w.embeddings);
  for (std::size_t i = 0; i < up.size(); ++i) {
    REQUIRE(w.layers[2].mlp.up_proj[i] == piecewise::float_to_bf16_bits(piecewise::half_bits_to_float(piecewise::float_to_half_bits(up[i]))));
  }
}

TEST_CASE("weights: loading errors name the file, tensor and shapes", "[weights]") {
  const model_config c = test_config();
  nh_test::temp_dir td("err");
  const auto file = (td.path / "model.safetensors").string();

  auto t = zero_tensors(c);
  std::erase_if(t, [](const st_write_tensor& x) { return x.name == "backbone.layers.3.mixer.dt_bias"; });
  write_safetensors(file, t);
  CHECK_THAT(load_err(td.path, c),
             Contains(file) && Contains("1 missing tensor") && Contains("'backbone.layers.3.mixer.dt_bias' [4]"));

  t = zero_tensors(c);
  t.push_back({"backbone.layers.9.mixer.q_proj.weight", st_dtype::bf16, {2}, std::vector<std::uint8_t>(4)});
  t.push_back({"vision_tower.weight", st_dtype::bf16, {1}, std::vector<std::uint8_t>(2)});
  write_safetensors(file, t);
  CHECK_THAT(load_err(td.path, c), Contains(file) && Contains("2 unexpected tensors") &&
                                       Contains("'backbone.layers.9.mixer.q_proj.weight'") &&
                                       Contains("'vision_tower.weight'"));

  t = zero_tensors(c);
  for (int i = 0; i < 7; ++i) {
    t.push_back({"extra." + std::to_string(i), st_dtype::bf16, {1}, std::vector<std::uint8_t>(2)});
  }
  write_safetensors(file, t);
  CHECK_THAT(load_err(td.path, c), Contains("7 unexpected tensors") && Contains("and 2 more"));

  t = zero_tensors(c);
  for (auto& x : t) {
    if (x.name == "backbone.layers.1.mixer.k_proj.weight") {
      x.shape = {32, 16};
      x.bytes.resize(32 * 16 * 2);
    }
  }
  write_safetensors(file, t);
  CHECK_THAT(load_err(td.path, c), Contains(file) && Contains("tensor 'backbone.layers.1.mixer.k_proj.weight'") &&
                                       Contains("has shape [32, 16] but the config expects [16, 32]"));

  t = zero_tensors(c);
  for (auto& x : t) {
    if (x.name == "backbone.layers.0.mixer.conv1d.weight") {
      x.shape = {c.conv_dim(), c.conv_kernel};  // squeezed: not the checkpoint layout
    }
  }
  write_safetensors(file, t);
  CHECK_THAT(load_err(td.path, c), Contains("conv1d.weight") && Contains("[64, 4] but the config expects [64, 1, 4]"));

  t = zero_tensors(c);
  t.push_back({"model.norm_f.weight", st_dtype::bf16, {32}, std::vector<std::uint8_t>(64)});
  write_safetensors(file, t);
  CHECK_THAT(load_err(td.path, c), Contains("'backbone.norm_f.weight' is given twice"));

  // A config that does not match the checkpoint (another pattern).
  t = zero_tensors(c);
  write_safetensors(file, t);
  model_config other = c;
  other.pattern = "M*--";
  other.layers[3] = layer_kind::mlp;
  CHECK_THAT(load_err(td.path, other), Contains("unexpected tensor") && Contains("layers.3.mixer.A_log"));

  // A truncated checkpoint.
  auto bytes = make_safetensors(zero_tensors(c));
  bytes.resize(bytes.size() - 10);
  {
    std::ofstream f(file, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  CHECK_THAT(load_err(td.path, c), Contains(file) && Contains("tensor 'lm_head.weight'") && Contains("truncated"));
}

TEST_CASE("weights: the transformers fixture checkpoint loads", "[weights]") {
  const auto dir = nh_test::data_dir() / "tiny";
  const model_config c = parse_config_json(dir / "config.json");
  const model_weights w = load_weights(dir, c);
  CHECK_NOTHROW(w.check_shapes(c));
  CHECK(w.lm_head != w.embeddings);
  // transformers' init: A_log perturbed by the fixture script, D near 1 +- 0.5 n.
  CHECK(w.layers[0].mamba.A_log.size() == 8);
}

TEST_CASE("weights: presets build synthetic weights of the right size", "[weights]") {
  const model_config s = preset("small");
  CHECK(s.num_parameters() > 50'000'000);
  CHECK(s.num_parameters() < 200'000'000);
  const model_config t = preset("tiny");
  const model_weights w = synthetic_weights(t, 1);
  CHECK_NOTHROW(w.check_shapes(t));
  CHECK(w.bytes() > 2 * static_cast<std::size_t>(t.num_parameters()) - 1000);
}
