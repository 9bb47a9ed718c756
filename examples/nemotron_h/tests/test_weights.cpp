// Host weights: checkpoint loading (prefixes, aliases, dtypes, ties, every error) and
// synthetic initialisation.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "model/safetensors.hpp"
#include "model/staged_read.hpp"
#include "model/synthetic_draw.hpp"
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

/// load_weights' error; check_checkpoint (headers only) must give the same one.
std::string load_err(const std::filesystem::path& dir, const model_config& c) {
  const std::string e = error_of([&] { (void)load_weights(dir, c); });
  CHECK(error_of([&] { (void)check_checkpoint(dir, c); }) == e);
  return e;
}

}  // namespace

TEST_CASE("weights: synthetic weights are deterministic and initialised like transformers", "[weights]") {
  const model_config c = test_config();
  const model_weights a = synthetic_weights(c, 7, {.randomize_vectors = false, .threads = 1});
  const model_weights b = synthetic_weights(c, 7, {.randomize_vectors = false, .threads = 4});
  const model_weights d = synthetic_weights(c, 8);
  CHECK_NOTHROW(a.check_shapes(c));
  CHECK(a.embeddings() == b.embeddings());
  CHECK(a.layers[0].get("mixer.in_proj.weight") == b.layers[0].get("mixer.in_proj.weight"));
  CHECK(a.layers[0].get("mixer.dt_bias") == b.layers[0].get("mixer.dt_bias"));
  CHECK(a.embeddings() != d.embeddings());
  CHECK(a.lm_head() != a.embeddings());  // untied

  // A fixed value: guards against accidental changes of the generator (cross-platform).
  const model_weights a2 = synthetic_weights(c, 7);
  CHECK(a2.embeddings() == a.embeddings());
  CHECK(a2.embeddings().bf16()[0] == 0x3c92);
  CHECK(a2.layers[0].get("mixer.dt_bias").f32()[1] == -3.046875f);

  auto stats = [](const host_tensor& t) {
    double s = 0, s2 = 0;
    for (double x : t.to_f64()) {
      s += x;
      s2 += x * x;
    }
    const double m = s / double(t.numel());
    return std::pair{m, std::sqrt(s2 / double(t.numel()) - m * m)};
  };
  // Large enough samples for the std to be within a few percent.
  model_config big = c;
  big.vocab_size = 4096;
  big.hidden_size = 64;
  const model_weights w = synthetic_weights(big, 1);
  auto [em, es] = stats(w.embeddings());
  CHECK(std::abs(em) < 0.002);
  CHECK(es == Approx(0.02).epsilon(0.03));
  auto [im, is] = stats(w.layers[0].get("mixer.in_proj.weight"));
  CHECK(is == Approx(0.02).epsilon(0.05));
  (void)im;
  const layer_weights& m = w.layers[0];
  for (int h = 0; h < big.mamba_num_heads; ++h) {
    CHECK(m.get("mixer.A_log").f32()[h] == Approx(std::log(h + 1.0)).epsilon(0.01));
    CHECK(m.get("mixer.D").f32()[h] == 1.0f);
    const double dt = std::log1p(std::exp(double(m.get("mixer.dt_bias").f32()[h])));
    CHECK(dt >= big.time_step_min * 0.99);
    CHECK(dt <= big.time_step_max * 1.01);
  }
  const double conv_bound = 1.0 / std::sqrt(double(big.conv_kernel));
  float cmax = 0;
  for (double x : m.get("mixer.conv1d.weight").to_f64()) cmax = std::max(cmax, static_cast<float>(std::abs(x)));
  CHECK(cmax <= conv_bound * 1.01);
  CHECK(cmax > conv_bound * 0.9);
  const double out_bound = 1.0 / std::sqrt(double(big.d_inner())) / std::sqrt(double(big.num_layers()));
  float omax = 0;
  for (double x : m.get("mixer.out_proj.weight").to_f64()) omax = std::max(omax, static_cast<float>(std::abs(x)));
  CHECK(omax <= out_bound * 1.01);
  CHECK(omax > out_bound * 0.9);
  for (double x : w.layers[1].get("norm.weight").to_f64()) CHECK(x == 1.0);

  const model_weights r = synthetic_weights(c, 7, {.randomize_vectors = true});
  CHECK(r.layers[0].get("norm.weight") != a.layers[0].get("norm.weight"));
  CHECK(r.layers[0].get("mixer.D") != a.layers[0].get("mixer.D"));
  CHECK(r.layers[0].get("mixer.A_log") != a.layers[0].get("mixer.A_log"));
  CHECK(r.layers[0].get("mixer.in_proj.weight") == a.layers[0].get("mixer.in_proj.weight"));

  model_config tied = c;
  tied.tie_word_embeddings = true;
  const model_weights t = synthetic_weights(tied, 7);
  CHECK(t.lm_head() == t.embeddings());
  CHECK(t.lm_head().name() == "lm_head.weight");

  // Without use_conv_bias the bias is zeros, and not a checkpoint tensor.
  model_config nobias = c;
  nobias.use_conv_bias = false;
  const model_weights nb = synthetic_weights(nobias, 7);
  for (double x : nb.layers[0].get("mixer.conv1d.bias").to_f64()) REQUIRE(x == 0.0);
  for (const auto& e : expected_tensors(nobias)) CHECK(e.name.find("conv1d.bias") == std::string::npos);
  CHECK(nobias.num_parameters() == c.num_parameters() - 2 * c.conv_dim());
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
    const checkpoint_summary cs = check_checkpoint(td.path, c);
    CHECK(cs.source == td.path / "model.safetensors");
    CHECK(cs.shards == 1);
    CHECK(cs.tensors == f.header().tensors.size());
    CHECK(cs.file_bytes == f.header().data_size);
    const model_weights l = load_weights(td.path, c);
    for (std::size_t j = 0; j < w.globals.size(); ++j) CHECK(l.globals[j] == w.globals[j]);
    for (int i = 0; i < c.num_layers(); ++i) {
      CAPTURE(i);
      CHECK(l.layers[i].kind == w.layers[i].kind);
      REQUIRE(l.layers[i].tensors.size() == w.layers[i].tensors.size());
      for (std::size_t j = 0; j < w.layers[i].tensors.size(); ++j) {
        CAPTURE(w.layers[i].tensors[j].name());
        CHECK(l.layers[i].tensors[j].name() == w.layers[i].tensors[j].name());
        CHECK(l.layers[i].tensors[j] == w.layers[i].tensors[j]);
      }
    }
    CHECK(l.bytes() == w.bytes());
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
  for (std::size_t i = 0; i < emb.size(); ++i) REQUIRE(w.embeddings().bf16()[i] == piecewise::float_to_bf16_bits(emb[i]));
  CHECK(w.lm_head() == w.embeddings());
  const std::uint16_t* up_bits = w.layers[2].get("mixer.up_proj.weight").bf16();
  for (std::size_t i = 0; i < up.size(); ++i) {
    REQUIRE(up_bits[i] == piecewise::float_to_bf16_bits(piecewise::half_bits_to_float(piecewise::float_to_half_bits(up[i]))));
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
  CHECK(w.lm_head() != w.embeddings());
  // transformers' init: A_log perturbed by the fixture script, D near 1 +- 0.5 n.
  CHECK(w.layers[0].get("mixer.A_log").numel() == 8);
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

TEST_CASE("layer kinds: the table is consistent and drives the tensor list", "[weights][layer_kinds]") {
  for (const layer_kind_info& k : layer_kinds()) {
    CAPTURE(k.name);
    CHECK(&kind_info(k.kind) == &k);
    CHECK(find_kind(k.code) == &k);
    CHECK(find_block_type(std::string(1, k.code)) == &k);
    for (const char* b : k.block_types) CHECK(find_block_type(b) == &k);
    const auto& specs = layer_tensor_specs(k.kind);
    REQUIRE(specs.size() == k.tensors.size() + 1);
    CHECK(std::string(specs[0]->suffix) == "norm.weight");
    for (std::size_t j = 0; j < specs.size(); ++j) CHECK(layer_tensor_index(k.kind, specs[j]->suffix) == int(j));
    // Fused tensors are consecutive and stack rows of the same width and dtype.
    for (std::size_t j = 1; j < specs.size(); ++j) {
      const tensor_spec& a = *specs[j - 1];
      const tensor_spec& b = *specs[j];
      if (a.fused_as == nullptr || b.fused_as == nullptr || std::string(a.fused_as) != b.fused_as) continue;
      const model_config c = preset("small");
      CHECK(a.shape(c).back() == b.shape(c).back());
      CHECK(a.type == b.type);
    }
  }
  CHECK(find_kind('E') == &kind_info(layer_kind::moe));
  CHECK(find_block_type("moe") == &kind_info(layer_kind::moe));
  CHECK(find_kind('X') == nullptr);
  CHECK(layer_tensor_index(layer_kind::mlp, "mixer.in_proj.weight") == -1);

  const model_config c = test_config();
  const std::vector<tensor_entry> all = model_tensors(c);
  REQUIRE(all.size() == 1 + (1 + 8) + (1 + 4) + (1 + 2) + (1 + 8) + 2);
  CHECK(all.front().name == "backbone.embeddings.weight");
  CHECK(all[1].name == "backbone.layers.0.norm.weight");
  CHECK(all[2].name == "backbone.layers.0.mixer.in_proj.weight");
  CHECK(all[2].shape == std::vector<std::int64_t>{c.in_proj_dim(), c.hidden_size});
  CHECK(all[all.size() - 2].name == "backbone.norm_f.weight");
  CHECK(all.back().name == "lm_head.weight");
  CHECK(all.back().spec->tied_to_embeddings);
  std::int64_t params = 0;
  for (const auto& e : all) {
    std::int64_t n = 1;
    for (auto d : e.shape) n *= d;
    params += n;
  }
  CHECK(params == c.num_parameters());  // untied, every tensor in the checkpoint
  CHECK(expected_tensors(c).size() == all.size());
}

TEST_CASE("weights: host tensors and check_shapes name the tensor, the shape and the dtype", "[weights]") {
  const model_config c = test_config();
  const model_weights w = synthetic_weights(c, 1);
  host_tensor t("x.weight", dtype::f32, {2, 3});
  CHECK(t.rows() == 2);
  CHECK(t.cols() == 3);
  CHECK(t.data_bytes() == 24);
  CHECK_THAT(error_of([&] { (void)t.bf16(); }), Contains("tensor 'x.weight' has dtype f32, read as bf16"));
  CHECK_THAT(error_of([&] { (void)host_tensor("q", dtype::bf16, {2, -1}); }), Contains("'q'") && Contains("[2, -1]"));
  const host_tensor q("fp8.weight", dtype::fp8_e4m3, {4, 8});
  CHECK(q.data_bytes() == 32);
  CHECK(host_tensor("fp4.weight", dtype::nvfp4, {4, 8}).data_bytes() == 16);
  CHECK_THAT(error_of([&] { (void)q.to_f64(); }), Contains("fp8.weight") && Contains("is fp8_e4m3 but has no scales"));
  CHECK_THAT(error_of([&] { (void)w.layers[2].get("mixer.in_proj.weight"); }),
             Contains("mlp layer has no tensor 'mixer.in_proj.weight'"));

  auto check_err = [&](const model_weights& x) { return error_of([&] { x.check_shapes(c); }); };
  model_weights bad = w;
  host_tensor& up = bad.layers[2].get("mixer.up_proj.weight");
  up = host_tensor(up.name(), dtype::bf16, {c.intermediate_size, c.hidden_size + 1});
  CHECK_THAT(check_err(bad), Contains("tensor 'backbone.layers.2.mixer.up_proj.weight' has shape [48, 33], the "
                                      "config needs [48, 32]"));
  bad = w;
  host_tensor& norm = bad.layers[1].get("norm.weight");
  norm = host_tensor(norm.name(), dtype::f32, norm.shape());
  CHECK_THAT(check_err(bad), Contains("'backbone.layers.1.norm.weight' has dtype f32, the model needs bf16"));
  // A linear weight may be quantized, with its scales; a norm may not.
  bad = w;
  host_tensor& down = bad.layers[2].get("mixer.down_proj.weight");
  down = host_tensor(down.name(), dtype::fp8_e4m3, down.shape());
  CHECK_THAT(check_err(bad), Contains("is fp8_e4m3 but has no scales"));
  down.scales = tensor_scales{0.5f, {}, {}};
  CHECK(check_err(bad) == "<no exception>");
  CHECK(bad.bytes() == w.bytes() - down.data_bytes() + 4);
  norm = host_tensor(norm.name(), dtype::fp8_e4m3, norm.shape());
  norm.scales = tensor_scales{};
  CHECK_THAT(check_err(bad), Contains("'backbone.layers.1.norm.weight' has dtype fp8_e4m3, the model needs bf16"));
  nh_test::temp_dir td("quant");
  // Saved in ModelOpt's layout (tests/test_quantize.cpp); FP8 without an input scale (dynamic
  // activation quantization) is not a layout ModelOpt writes, and loading says what is missing.
  model_weights q8 = w;
  q8.layers[2].get("mixer.down_proj.weight") = down;
  save_weights(td.path, c, q8);
  CHECK_THAT(error_of([&] { (void)load_weights(td.path, c); }),
             Contains("mixer.down_proj.weight' is F8_E4M3 (FP8) but ") && Contains("down_proj.input_scale' is missing"));
  bad = w;
  bad.layers.pop_back();
  CHECK_THAT(check_err(bad), Contains("weights have 3 layers, the config has 4"));
}

TEST_CASE("weights: the synthetic draw's own log, cos and sin are accurate", "[weights]") {
  std::mt19937_64 rng(11);
  double worst_log = 0, worst_trig = 0;
  std::vector<double> us = {0x1.0p-53, 0x1.0p-52, 0.25, 0.5, 0.70710678118654752, 0.75, 1.0 - 0x1.0p-53, 1.0,
                            0.125, 0.375, 0.625, 0.875};
  for (int i = 0; i < 200000; ++i) us.push_back(uniform01_of(rng()));
  for (double u : us) {
    const double l = synth::log_pos(u), want = std::log(u);
    worst_log = std::max(worst_log, std::abs(l - want) / std::max(std::abs(want), 1e-300));
    double c = 0, s = 0;
    synth::cos_sin_2pi(u, c, s);
    worst_trig = std::max({worst_trig, std::abs(c - std::cos(6.283185307179586 * u)),
                           std::abs(s - std::sin(6.283185307179586 * u))});
  }
  INFO("worst relative log error " << worst_log << ", worst cos/sin error " << worst_trig);
  CHECK(worst_log < 1e-15);
  CHECK(worst_trig < 2e-15);  // includes the rounding of 2 pi u in the reference
  CHECK(synth::log_pos(1.0) == 0.0);
}

TEST_CASE("weights: host synthetic matrices are the shared element function's values", "[weights]") {
  model_config c = test_config();
  c.vocab_size = 4099;  // an odd tensor larger than one 2^16 block (4099 x 32)
  const model_weights w = synthetic_weights(c, 21, {.randomize_vectors = false, .threads = 3});
  for (const tensor_entry& e : model_tensors(c)) {
    const init_rule& r = e.spec->init;
    if (!e.in_checkpoint || (r.how != init_rule::kind::normal && r.how != init_rule::kind::uniform)) continue;
    const host_tensor& t = w.at(e);
    const std::uint64_t base = tensor_seed(21, e.name);
    std::size_t bad = 0;
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      bad += t.bf16()[i] != synth::bf16_at(base, static_cast<std::uint64_t>(i), r.how == init_rule::kind::normal, r.scale(c));
    }
    INFO(e.name);
    CHECK(bad == 0);
  }
}

namespace {

/// A staging sink into host memory that checks the slot protocol: a slot is only refilled
/// after wait() on it.
struct host_sink final : staging_sink {
  std::vector<std::uint8_t>& out;
  std::vector<std::atomic<int>> busy;
  std::atomic<int> violations{0};
  std::atomic<std::uint64_t> bytes{0};
  int throw_after = -1;
  std::atomic<int> submits{0};
  host_sink(std::vector<std::uint8_t>& o, std::size_t slots) : out(o), busy(slots) {}
  void wait(int slot) override { busy[static_cast<std::size_t>(slot)] = 0; }
  void submit(int, int slot, const void* src, std::uint64_t dst, std::uint64_t n) override {
    if (busy[static_cast<std::size_t>(slot)].exchange(1) != 0) ++violations;
    if (throw_after >= 0 && submits++ >= throw_after) throw std::runtime_error("sink failed");
    std::memcpy(out.data() + dst, src, n);
    bytes += n;
  }
};

}  // namespace

TEST_CASE("weights: staged reads split jobs into chunks and copy every byte through the slots", "[weights]") {
  const std::uint64_t C = 1000;
  const std::vector<read_job> jobs = {{3, 0, 0, 0, "a"}, {3, 5, 1, 10, "b"}, {3, 7, C, 20, "c"},
                                      {3, 9, C + 1, 2000, "d"}, {3, 11, 3 * C, 5000, "e"}};
  const auto ch = split_read_jobs(jobs, C);
  REQUIRE(ch.size() == 1 + 1 + 2 + 3);
  CHECK(ch[0].job == 1);
  CHECK(ch[2].job == 3);
  CHECK(ch[2].bytes == C);
  CHECK(ch[3].bytes == 1);
  CHECK(ch[3].offset == 9 + C);
  CHECK(ch[3].dst == 2000 + C);
  CHECK(ch[6].offset == 11 + 2 * C);
  CHECK_THROWS_WITH(split_read_jobs(jobs, 0), Contains("chunk size"));

  // A file of random bytes read in scattered ranges to scattered destinations.
  nh_test::temp_dir td("staged");
  const auto path = td.path / "data.bin";
  std::vector<std::uint8_t> file(1 << 20);
  std::mt19937_64 rng(3);
  for (auto& b : file) b = static_cast<std::uint8_t>(rng());
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(file.data()), static_cast<std::streamsize>(file.size()));
  const int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  std::vector<read_job> rj;
  std::uint64_t dst = 0;
  for (std::uint64_t off = 0; off < file.size();) {
    const std::uint64_t n = std::min<std::uint64_t>(rng() % 70000, file.size() - off);
    rj.push_back({fd, off, n, file.size() - dst - n, "range"});  // reversed order in the output
    dst += n;
    off += n;
  }
  for (const staged_read_options& o : {staged_read_options{1, 1, 4096}, staged_read_options{4, 2, 10000},
                                       staged_read_options{7, 3, 65536}, staged_read_options{3, 2, 1 << 22}}) {
    INFO("threads " << o.threads << " slots " << o.slots_per_thread << " chunk " << o.chunk_bytes);
    std::vector<std::uint8_t> out(file.size());
    std::vector<std::vector<std::uint8_t>> mem(static_cast<std::size_t>(o.threads * o.slots_per_thread),
                                               std::vector<std::uint8_t>(o.chunk_bytes));
    std::vector<void*> slots;
    for (auto& m : mem) slots.push_back(m.data());
    host_sink sink(out, slots.size());
    staged_read(rj, slots, sink, o);
    CHECK(sink.violations == 0);
    CHECK(sink.bytes == file.size());
    for (const read_job& j : rj) REQUIRE(std::memcmp(out.data() + j.dst, file.data() + j.offset, j.bytes) == 0);
  }

  std::vector<std::uint8_t> out(file.size() + 100);
  std::vector<std::uint8_t> m0(4096), m1(4096);
  std::vector<void*> two = {m0.data(), m1.data()};
  {
    // The file ends before a job does (it changed after its header was read): the error names the job.
    host_sink sink(out, 2);
    const std::vector<read_job> past = {{fd, file.size() - 10, 50, 0, "f.safetensors: tensor 'backbone.layers.3.x'"}};
    CHECK_THROWS_WITH(staged_read(past, two, sink, {2, 1, 4096}),
                      Contains("f.safetensors: tensor 'backbone.layers.3.x'") && Contains("ends at byte"));
  }
  {
    host_sink sink(out, 2);
    sink.throw_after = 3;
    CHECK_THROWS_WITH(staged_read(rj, two, sink, {2, 1, 4096}), Contains("sink failed"));
  }
  {
    host_sink sink(out, 2);
    CHECK_THROWS_WITH(staged_read(rj, two, sink, {0, 1, 4096}), Contains("threads (0)"));
    CHECK_THROWS_WITH(staged_read(rj, two, sink, {2, 2, 4096}), Contains("2 staging slots for 2 threads x 2"));
    CHECK_THROWS_WITH(staged_read({{-1, 0, 10, 0, "bad fd"}}, two, sink, {1, 1, 4096}),
                      Contains("bad fd") && Contains("read failed"));
  }
  ::close(fd);
}

TEST_CASE("weights: save_checkpoint streams the file make_safetensors builds in memory", "[weights]") {
  const model_config c = test_config();
  const model_weights w = synthetic_weights(c, 5, {.randomize_vectors = true});
  nh_test::temp_dir a("save_a"), b("save_b");
  std::vector<st_write_tensor> all;
  for (const tensor_entry& e : model_tensors(c)) {
    const host_tensor& t = w.at(e);
    all.push_back({e.name, t.type() == dtype::f32 ? st_dtype::f32 : st_dtype::bf16, e.shape,
                   std::vector<std::uint8_t>(t.data(), t.data() + t.data_bytes())});
  }
  write_safetensors(a.path / "model.safetensors", all, {{"format", "pt"}});
  save_checkpoint(b.path, c, [&](const tensor_entry& e, std::uint8_t* out, std::size_t n) {
    REQUIRE(w.at(e).data_bytes() == n);
    std::memcpy(out, w.at(e).data(), n);
  });
  auto bytes = [](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
  };
  CHECK(bytes(a.path / "model.safetensors") == bytes(b.path / "model.safetensors"));
  CHECK(load_weights(b.path, c).layers[0].get("mixer.in_proj.weight") == w.layers[0].get("mixer.in_proj.weight"));
  CHECK_THROWS_WITH(save_checkpoint("/proc/nonexistent/dir", c, [](const tensor_entry&, std::uint8_t*, std::size_t) {}),
                    Contains("cannot open for writing"));
}
