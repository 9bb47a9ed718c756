// The ModelOpt element formats bit for bit (e4m3, e2m1), per-tensor FP8 and per-block NVFP4
// quantization of host weights, dequantization in host_tensor::to_f64, calibration of the
// static input scales and the CPU reference on quantized weights.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <tuple>
#include <limits>
#include <set>
#include <vector>

#include "model/cpu_forward.hpp"
#include "model/quant_config.hpp"
#include "model/quant_formats.hpp"
#include "model/quantize.hpp"
#include "model/random_tokens.hpp"
#include "model/safetensors.hpp"
#include "model/splitmix.hpp"
#include "model_test_util.hpp"
#include "piecewise/element_type.hpp"

using namespace nemotron_h;
using Catch::Matchers::Contains;
using nh_test::error_of;

namespace {

/// Every finite positive e4m3 value with its code, by brute force from the bit fields.
std::vector<std::pair<double, std::uint8_t>> e4m3_table() {
  std::vector<std::pair<double, std::uint8_t>> t;
  for (int b = 0; b < 0x7f; ++b) {
    const int e = b >> 3, m = b & 7;
    const double v = e == 0 ? m * std::pow(2.0, -9) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
    t.emplace_back(v, static_cast<std::uint8_t>(b));
  }
  return t;
}

/// The nearest table entry to a >= 0, ties to the even code, saturating at the largest.
std::uint8_t nearest(const std::vector<std::pair<double, std::uint8_t>>& t, double a) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < t.size(); ++i) {
    const double d = std::fabs(t[i].first - a), db = std::fabs(t[best].first - a);
    if (d < db || (d == db && (t[i].second & 1) == 0)) best = i;
  }
  return t[best].second;
}

host_tensor random_bf16(const std::string& name, std::int64_t rows, std::int64_t cols, double scale,
                        std::uint64_t seed) {
  host_tensor t(name, dtype::bf16, {rows, cols});
  splitmix64 s{seed};
  for (std::int64_t i = 0; i < rows * cols; ++i) {
    // Mixed magnitudes: some rows and blocks much smaller than others.
    const double u = 2 * s.uniform01() - 1, mag = std::pow(10.0, -3 * s.uniform01());
    t.bf16()[i] = piecewise::float_to_bf16_bits(static_cast<float>(u * mag * scale));
  }
  return t;
}

}  // namespace

TEST_CASE("e4m3: every code decodes as its bit fields say and encodes back", "[quant]") {
  const auto table = e4m3_table();
  for (const auto& [v, b] : table) {
    CHECK(quant::e4m3_to_float(b) == static_cast<float>(v));
    CHECK(quant::e4m3_to_float(static_cast<std::uint8_t>(b | 0x80)) == -static_cast<float>(v));
    CHECK(quant::float_to_e4m3(static_cast<float>(v)) == b);
    CHECK(quant::float_to_e4m3(-static_cast<float>(v)) == (b | 0x80));
  }
  CHECK(std::isnan(quant::e4m3_to_float(0x7f)));
  CHECK(std::isnan(quant::e4m3_to_float(0xff)));
  CHECK(quant::e4m3_to_float(0x7e) == 448.0f);
  CHECK(quant::e4m3_to_float(0x38) == 1.0f);
  CHECK(quant::e4m3_to_float(0x01) == std::ldexp(1.0f, -9));
  CHECK(quant::float_to_e4m3(std::numeric_limits<float>::quiet_NaN()) == 0x7f);
  CHECK(quant::float_to_e4m3(1e30f) == 0x7e);
  CHECK(quant::float_to_e4m3(-500.0f) == 0xfe);
  CHECK(quant::float_to_e4m3(-std::numeric_limits<float>::infinity()) == 0xfe);
  CHECK(quant::float_to_e4m3(-0.0f) == 0x80);
}

TEST_CASE("e4m3: rounding is to nearest, ties to even, at every midpoint and on random values", "[quant]") {
  const auto table = e4m3_table();
  for (std::size_t i = 0; i + 1 < table.size(); ++i) {
    const double lo = table[i].first, hi = table[i + 1].first, mid = (lo + hi) / 2;
    CAPTURE(lo, hi);
    const std::uint8_t even = (table[i].second & 1) == 0 ? table[i].second : table[i + 1].second;
    CHECK(quant::double_to_e4m3(mid) == even);
    CHECK(quant::double_to_e4m3(std::nextafter(mid, 0.0)) == table[i].second);
    CHECK(quant::double_to_e4m3(std::nextafter(mid, 1e9)) == table[i + 1].second);
  }
  splitmix64 s{7};
  for (int i = 0; i < 20000; ++i) {
    const double a = std::pow(2.0, -12 + 22 * s.uniform01());
    CAPTURE(a);
    REQUIRE(quant::double_to_e4m3(a) == nearest(table, a));
  }
}

TEST_CASE("e2m1: every nibble, the midpoints (ties to even) and saturation", "[quant]") {
  const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (std::uint8_t n = 0; n < 16; ++n) {
    CHECK(quant::e2m1_to_float(n) == static_cast<float>((n & 8) ? -mag[n & 7] : mag[n & 7]));
    if (n != 8) CHECK(quant::float_to_e2m1(quant::e2m1_to_float(n)) == n);  // -0 keeps its sign bit
  }
  CHECK(quant::float_to_e2m1(-0.0f) == 8);
  struct tie {
    double x;
    std::uint8_t even, below;  // the code at the midpoint x, and just below it
  };
  const tie ties[] = {{0.25, 0, 0}, {0.75, 2, 1}, {1.25, 2, 2}, {1.75, 4, 3}, {2.5, 4, 4}, {3.5, 6, 5}, {5.0, 6, 6}};
  for (const tie& t : ties) {
    CAPTURE(t.x);
    CHECK(quant::double_to_e2m1(t.x) == t.even);
    CHECK(quant::double_to_e2m1(-t.x) == (t.even | 8));
    CHECK(quant::double_to_e2m1(std::nextafter(t.x, 0.0)) == t.below);
    CHECK(quant::double_to_e2m1(std::nextafter(t.x, 9.0)) == t.below + 1);
  }
  CHECK(quant::double_to_e2m1(std::nextafter(0.75, 9.0)) == 2);
  CHECK(quant::double_to_e2m1(std::nextafter(0.75, 0.0)) == 1);
  CHECK(quant::double_to_e2m1(std::nextafter(1.25, 9.0)) == 3);
  CHECK(quant::double_to_e2m1(100.0) == 7);
  CHECK(quant::double_to_e2m1(-7.0) == 15);
}

TEST_CASE("quantize_fp8: per-tensor scale amax / 448, every element within half a step", "[quant]") {
  const host_tensor w = random_bf16("x.weight", 24, 40, 0.05, 3);
  const host_tensor q = quantize_fp8(w, 0.25f);
  REQUIRE(q.type() == dtype::fp8_e4m3);
  REQUIRE(q.scales);
  CHECK(q.data_bytes() == 24 * 40);
  CHECK(q.scales->input == 0.25f);
  const std::vector<double> v = w.to_f64(), d = q.to_f64();
  double amax = 0;
  for (double x : v) amax = std::max(amax, std::fabs(x));
  CHECK(q.scales->global == static_cast<float>(amax) / 448.0f);
  double dmax = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    CAPTURE(i, v[i], d[i]);
    // e4m3 has 3 mantissa bits: half a step is 2^-4 of the value, or 2^-10 x scale below 2^-6.
    CHECK(std::fabs(d[i] - v[i]) <= std::max(std::fabs(v[i]) * 0x1p-4, q.scales->global * 0x1p-10) * (1 + 1e-12));
    dmax = std::max(dmax, std::fabs(d[i]));
  }
  CHECK(dmax == Approx(amax).epsilon(1e-6));
  CHECK_THAT(error_of([&] { (void)quantize_fp8(q, 0); }), Contains("x.weight") && Contains("already fp8_e4m3"));
  host_tensor bad = w;
  bad.bf16()[5] = 0x7fc0;  // NaN
  CHECK_THAT(error_of([&] { (void)quantize_fp8(bad, 0); }), Contains("non-finite value at element 5"));
  const host_tensor zero("z.weight", dtype::bf16, {2, 16});
  CHECK(quantize_fp8(zero, 0).scales->global == 1.0f);
}

TEST_CASE("quantize_nvfp4: layout (low nibble first, block scales per 16 of a row) on a hand-made row", "[quant]") {
  host_tensor w("r.weight", dtype::bf16, {1, 32});
  const float grid[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (int k = 0; k < 16; ++k) {
    w.bf16()[k] = piecewise::float_to_bf16_bits(grid[k]);          // block 0: amax 6, block scale 1
    w.bf16()[16 + k] = piecewise::float_to_bf16_bits(grid[k] / 4);  // block 1: amax 1.5, scale 0.25
  }
  const host_tensor q = quantize_nvfp4(w, 0);
  REQUIRE(q.type() == dtype::nvfp4);
  CHECK(q.data_bytes() == 16);
  CHECK(q.scales->global == 6.0f / (6 * 448));
  CHECK(q.scales->block_shape == std::vector<std::int64_t>{1, 2});
  REQUIRE(q.scales->block.size() == 2);
  CHECK(quant::e4m3_to_float(q.scales->block[0]) == 448.0f);
  CHECK(quant::e4m3_to_float(q.scales->block[1]) == 112.0f);
  const std::uint8_t want[8] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe};
  for (int i = 0; i < 8; ++i) {
    CAPTURE(i);
    CHECK(q.data()[i] == want[i]);
    CHECK(q.data()[8 + i] == want[i]);
  }
  const std::vector<double> d = q.to_f64();
  for (int k = 0; k < 16; ++k) {
    CHECK(d[k] == Approx(grid[k]).margin(1e-6));
    CHECK(d[16 + k] == Approx(grid[k] / 4).margin(1e-6));
  }
}

TEST_CASE("quantize_nvfp4: random weights within the format step, bad shapes refused", "[quant]") {
  const host_tensor w = random_bf16("y.weight", 12, 64, 0.02, 5);
  const host_tensor q = quantize_nvfp4(w, 0);
  const std::vector<double> v = w.to_f64(), d = q.to_f64();
  const std::size_t cols = 64;
  for (std::size_t b = 0; b < v.size() / 16; ++b) {
    double bmax = 0;
    for (std::size_t k = 0; k < 16; ++k) bmax = std::max(bmax, std::fabs(v[b * 16 + k]));
    const double step = quant::e4m3_to_float(q.scales->block[(b * 16 / cols) * 4 + (b * 16 % cols) / 16]) *
                        static_cast<double>(q.scales->global);
    for (std::size_t k = 0; k < 16; ++k) {
      const std::size_t i = b * 16 + k;
      CAPTURE(b, k, v[i], d[i], step, bmax);
      // The grid's widest gap is 2 steps (4 to 6); the e4m3 block scale rounds by <= 2^-4,
      // which can push the block's largest value just past 6 steps (saturated).
      CHECK(std::fabs(d[i] - v[i]) <= step * 1.0 + bmax * 0.0625 + 1e-12);
    }
  }
  host_tensor odd("odd.weight", dtype::bf16, {4, 24});
  CHECK_THAT(error_of([&] { (void)quantize_nvfp4(odd, 0); }), Contains("odd.weight") && Contains("multiple of 16"));
  host_tensor broken = q;
  broken.scales->block_shape = {12, 3};
  CHECK_THAT(error_of([&] { (void)broken.to_f64(); }), Contains("y.weight") && Contains("block scales must be e4m3 [12, 4]"));
  broken.scales.reset();
  CHECK_THAT(error_of([&] { (void)broken.to_f64(); }), Contains("y.weight") && Contains("has no scales"));
}

TEST_CASE("calibrate_input_amax and quantize_weights: which tensors, their input scales, all or nothing", "[quant]") {
  const model_config c = preset("tiny");  // M*M-M-
  const model_weights w = synthetic_weights(c, 11, {.randomize_vectors = true});
  std::uint64_t st = 3;
  const std::vector<std::int32_t> tokens = random_token_ids(24, c.vocab_size, st);
  const auto amax = calibrate_input_amax(c, w, tokens);
  std::set<std::string> linear;
  for (const tensor_entry& e : model_tensors(c)) {
    if (e.spec->linear) linear.insert(e.name);
  }
  for (const auto& n : linear) {
    CAPTURE(n);
    REQUIRE(amax.count(n) == 1);
    CHECK(amax.at(n) > 0);
  }
  CHECK(amax.size() == linear.size());
  // q, k and v see the same input.
  CHECK(amax.at("backbone.layers.1.mixer.q_proj.weight") == amax.at("backbone.layers.1.mixer.v_proj.weight"));

  // Layer 0's in_proj sees rmsnorm(embeddings): check against a direct computation.
  const cpu_model m(c, w);
  double want = 0;
  const auto& nw = m.layers[0].get("norm.weight");
  for (std::int32_t t : tokens) {
    const double* e = m.embeddings.data() + static_cast<std::size_t>(t) * c.hidden_size;
    double ss = 0;
    for (int i = 0; i < c.hidden_size; ++i) ss += e[i] * e[i];
    const double r = 1.0 / std::sqrt(ss / c.hidden_size + c.eps);
    for (int i = 0; i < c.hidden_size; ++i) want = std::max(want, std::fabs(e[i] * r * nw[static_cast<std::size_t>(i)]));
  }
  CHECK(amax.at("backbone.layers.0.mixer.in_proj.weight") == Approx(want).epsilon(1e-12));

  quant_config q;
  q.source = "test";
  q.algo = quant_algo::fp8;
  q.exclude = {"*.mixer.?_proj", "lm_head"};  // attention and lm_head stay bf16
  model_weights fw = w;
  const int n = quantize_weights(fw, c, q, amax);
  CHECK(n == 10);  // M*M-M-: 3 x (in_proj, out_proj) + 2 x (up, down); q, k, v, o and lm_head excluded
  for (const tensor_entry& e : model_tensors(c)) {
    const host_tensor& t = fw.at(e);
    CAPTURE(e.name);
    const bool attn = e.name.find("_proj.weight") != std::string::npos && e.layer == 1;
    const bool want_q = e.spec->linear && !attn && e.name != "lm_head.weight";
    CHECK((t.type() == dtype::fp8_e4m3) == want_q);
    if (want_q) CHECK(t.scales->input == input_scale_from_amax(amax.at(e.name)));
  }
  // A missing amax: an error naming the tensor, nothing changed.
  auto partial = amax;
  partial.erase("backbone.layers.4.mixer.out_proj.weight");
  model_weights pw = w;
  CHECK_THAT(error_of([&] { (void)quantize_weights(pw, c, q, partial); }),
             Contains("backbone.layers.4.mixer.out_proj.weight") && Contains("input amax"));
  CHECK(pw.at(model_tensors(c)[1]) == w.at(model_tensors(c)[1]));
  for (const tensor_entry& e : model_tensors(c)) CHECK(pw.at(e).type() == w.at(e).type());
  // W4A16 needs no calibration.
  q.algo = quant_algo::w4a16_nvfp4;
  model_weights nw4 = w;
  CHECK(quantize_weights(nw4, c, q, {}) > 0);
}

TEST_CASE("CPU reference on FP8 and NVFP4 weights: close to bf16, FP8 activations applied", "[quant]") {
  const model_config c = preset("tiny");
  const model_weights w = synthetic_weights(c, 11, {.randomize_vectors = true});
  std::uint64_t st = 4;
  const std::vector<std::int32_t> tokens = random_token_ids(20, c.vocab_size, st);
  const auto amax = calibrate_input_amax(c, w, tokens);
  const std::vector<double> ref = cpu_session(cpu_model(c, w)).prefill(tokens);

  quant_config q;
  q.source = "test";
  q.algo = quant_algo::fp8;
  model_weights fw = w;
  REQUIRE(quantize_weights(fw, c, q, amax) > 0);
  const cpu_model fm(c, fw);
  const std::vector<double> f8 = cpu_session(fm).prefill(tokens);
  // The same FP8 weights without the activation scales (weight-only).
  model_weights wo = fw;
  for (const tensor_entry& e : model_tensors(c)) {
    host_tensor& t = wo.at(e);
    if (t.scales) t.scales->input = 0;
  }
  const std::vector<double> f8w = cpu_session(cpu_model(c, wo)).prefill(tokens);
  const double e_w8a8 = rel_norm_error(f8, ref), e_w8 = rel_norm_error(f8w, ref), e_act = rel_norm_error(f8, f8w);
  CAPTURE(e_w8a8, e_w8, e_act);
  CHECK(e_w8a8 > 0);
  // e4m3 rounds by up to 2^-4 (about 3.6% rms) in every weight and activation, through six
  // layers of a random model.
  CHECK(e_w8a8 < 0.15);
  CHECK(e_w8 < 0.15);
  CHECK(e_act > 1e-6);  // the activations were quantized
  const auto in_proj = static_cast<std::size_t>(layer_tensor_index(layer_kind::mamba, "mixer.in_proj.weight"));
  CHECK(fm.layers[0].input_scales[in_proj] == input_scale_from_amax(amax.at("backbone.layers.0.mixer.in_proj.weight")));

  q.algo = quant_algo::nvfp4;  // on Hopper: weight-only, the input scale carried but not applied
  model_weights n4 = w;
  REQUIRE(quantize_weights(n4, c, q, amax) > 0);
  const cpu_model nm(c, n4);
  for (const auto& l : nm.layers) {
    for (float s : l.input_scales) CHECK(s == 0);
  }
  const std::vector<double> f4 = cpu_session(nm).prefill(tokens);
  const double e4 = rel_norm_error(f4, ref);
  CAPTURE(e4);
  CHECK(e4 > e_w8);
  CHECK(e4 < 0.4);
}

namespace {

/// Every tensor of `dir`/model.safetensors, raw.
std::vector<st_write_tensor> read_all(const std::filesystem::path& dir) {
  const safetensors_file f(dir / "model.safetensors");
  std::vector<st_write_tensor> out;
  for (const st_tensor_info& t : f.header().tensors) out.push_back({t.name, t.dtype, t.shape, f.read_raw(t)});
  return out;
}

st_write_tensor& find_tensor(std::vector<st_write_tensor>& ts, const std::string& name) {
  for (auto& t : ts) {
    if (t.name == name) return t;
  }
  FAIL("no tensor " << name);
  return ts.front();
}

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::trunc);
  f << text;
}

/// The tiny model with FP8 Mamba / MLP projections (attention and lm_head bf16).
model_weights fp8_tiny(const model_config& c, const model_weights& w) {
  std::uint64_t st = 9;
  const std::vector<std::int32_t> tokens = random_token_ids(16, c.vocab_size, st);
  quant_config q;
  q.source = "test";
  q.algo = quant_algo::fp8;
  q.exclude = {"*.mixer.?_proj", "lm_head"};
  model_weights fw = w;
  quantize_weights(fw, c, q, calibrate_input_amax(c, w, tokens));
  return fw;
}

}  // namespace

TEST_CASE("quantized checkpoints: save_weights writes ModelOpt's layout, load_weights reads it back bit for bit",
          "[quant][weights]") {
  const model_config c = preset("tiny");
  const model_weights w = synthetic_weights(c, 11, {.randomize_vectors = true});
  const model_weights fw = fp8_tiny(c, w);
  // FP8 everywhere it was quantized, then NVFP4 (weight-only) for the MLP layers: mixed.
  model_weights mixed = fw;
  for (int l : {3, 5}) {
    for (const char* p : {"mixer.up_proj.weight", "mixer.down_proj.weight"}) {
      host_tensor& t = mixed.layers[static_cast<std::size_t>(l)].get(p);
      t = quantize_nvfp4(w.layers[static_cast<std::size_t>(l)].get(p), 0);
    }
  }
  for (const auto& [name, weights, prefix] : {std::tuple{"fp8", &fw, "backbone."}, std::tuple{"mixed", static_cast<const model_weights*>(&mixed), "model."}}) {
    CAPTURE(name);
    nh_test::temp_dir td(std::string("quant_") + name);
    save_weights(td.path, c, *weights, prefix);
    const auto q = read_quant_config(td.path);
    REQUIRE(q);
    CHECK(q->mixed == (std::string(name) == "mixed"));
    const std::string in0 = std::string(prefix) + "layers.0.mixer.in_proj";
    CHECK(q->algo_of(in0) == quant_algo::fp8);
    CHECK(q->algo_of(std::string(prefix) + "layers.1.mixer.q_proj") == quant_algo::none);
    const safetensors_file f(td.path / "model.safetensors");
    REQUIRE(f.find(in0 + ".weight"));
    CHECK(f.find(in0 + ".weight")->dtype == st_dtype::f8_e4m3);
    CHECK(f.find(in0 + ".weight_scale")->shape.empty());
    CHECK(f.find(in0 + ".input_scale")->dtype == st_dtype::f32);
    const checkpoint_summary s = check_checkpoint(td.path, c);
    CHECK(s.tensors > 0);
    const model_weights back = load_weights(td.path, c);
    for (const tensor_entry& e : model_tensors(c)) {
      CAPTURE(e.name);
      CHECK(back.at(e) == weights->at(e));
    }
    if (std::string(name) == "mixed") {
      const std::string up = std::string(prefix) + "layers.3.mixer.up_proj";
      CHECK(q->algo_of(up) == quant_algo::w4a16_nvfp4);
      CHECK(f.find(up + ".weight")->dtype == st_dtype::u8);
      CHECK(f.find(up + ".weight")->shape == std::vector<std::int64_t>{c.intermediate_size, c.hidden_size / 2});
      CHECK(f.find(up + ".weight_scale")->dtype == st_dtype::f8_e4m3);
      CHECK(f.find(up + ".weight_scale")->shape == std::vector<std::int64_t>{c.intermediate_size, c.hidden_size / 16});
      CHECK(f.find(up + ".input_scale") == nullptr);
    }
    // The CPU reference on the loaded weights equals the one on the weights saved.
    std::uint64_t st = 5;
    const auto tokens = random_token_ids(9, c.vocab_size, st);
    CHECK(cpu_session(cpu_model(c, back)).prefill(tokens) == cpu_session(cpu_model(c, *weights)).prefill(tokens));
  }
}

TEST_CASE("quantized checkpoints: a missing, broken or undeclared scale or dtype is an error naming file, tensor and layer",
          "[quant][weights]") {
  const model_config c = preset("tiny");
  const model_weights w = synthetic_weights(c, 11, {.randomize_vectors = true});
  nh_test::temp_dir good("quant_good");
  save_weights(good.path, c, fp8_tiny(c, w));
  model_weights n4 = w;
  for (const char* p : {"mixer.up_proj.weight", "mixer.down_proj.weight"}) {
    n4.layers[3].get(p) = quantize_nvfp4(w.layers[3].get(p), 0);
  }
  nh_test::temp_dir good4("quant_good4");
  save_weights(good4.path, c, n4);
  const std::string hf = [&] {
    std::ifstream f(good.path / "hf_quant_config.json");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }();

  // One edit of the good checkpoint: the tensors, and the hf_quant_config.json text.
  auto broken = [&](const std::filesystem::path& from, const std::function<void(std::vector<st_write_tensor>&)>& edit,
                    const std::string* quant_json = nullptr) {
    auto dir = std::make_unique<nh_test::temp_dir>("quant_bad");
    std::vector<st_write_tensor> ts = read_all(from);
    edit(ts);
    write_safetensors(dir->path / "model.safetensors", ts);
    if (quant_json == nullptr) {
      std::filesystem::copy_file(from / "hf_quant_config.json", dir->path / "hf_quant_config.json");
    } else if (!quant_json->empty()) {
      write_text(dir->path / "hf_quant_config.json", *quant_json);
    }
    return dir;
  };
  auto load_error = [&](const nh_test::temp_dir& d) { return error_of([&] { (void)load_weights(d.path, c); }); };
  auto plan_error = [&](const nh_test::temp_dir& d) { return error_of([&] { (void)check_checkpoint(d.path, c); }); };
  const std::string in0 = "backbone.layers.0.mixer.in_proj";

  auto d = broken(good.path, [&](auto& ts) {
    ts.erase(std::find_if(ts.begin(), ts.end(), [&](const auto& t) { return t.name == in0 + ".input_scale"; }));
  });
  CHECK_THAT(plan_error(*d), Contains("model.safetensors: tensor '" + in0 + ".weight' is F8_E4M3 (FP8) but '" + in0 +
                                      ".input_scale' is missing (layer 0, a mamba layer)"));
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), -1.0f, 0.0f, std::numeric_limits<float>::infinity()}) {
    d = broken(good.path, [&](auto& ts) { find_tensor(ts, in0 + ".weight_scale") = make_tensor_from_floats(in0 + ".weight_scale", {}, {bad}, st_dtype::f32); });
    CHECK(plan_error(*d) == "<no exception>");  // values are checked on load, before any weight is read
    CHECK_THAT(load_error(*d), Contains("tensor '" + in0 + ".weight_scale' = ") &&
                                   Contains("a scale must be finite and positive (layer 0, a mamba layer)"));
  }
  d = broken(good.path, [&](auto& ts) { find_tensor(ts, in0 + ".weight_scale").shape = {1, 1}; });
  CHECK(load_error(*d) == "<no exception>");  // [1, 1] is still one number
  d = broken(good.path, [&](auto& ts) {
    auto& t = find_tensor(ts, in0 + ".weight_scale");
    t = make_tensor_from_floats(t.name, {2}, {1.0f, 1.0f}, st_dtype::f32);
  });
  CHECK_THAT(plan_error(*d), Contains("tensor '" + in0 + ".weight_scale' is F32 [2], a scale must be one number"));

  const std::string none;
  d = broken(good.path, [](auto&) {}, &none);
  CHECK_THAT(plan_error(*d), Contains("is F8_E4M3 but the checkpoint declares no quantization"));
  std::string excl = hf;
  excl.replace(excl.find("\"exclude_modules\": ["), 20, "\"exclude_modules\": [\n      \"" + in0 + "\",");
  d = broken(good.path, [](auto&) {}, &excl);
  CHECK_THAT(plan_error(*d), Contains("tensor '" + in0 + ".weight' is F8_E4M3 but ") &&
                                 Contains("hf_quant_config.json declares none for module '" + in0 + "' (layer 0"));
  std::string nv = hf;
  nv.replace(nv.find("\"FP8\""), 5, "\"NVFP4\"");
  d = broken(good.path, [](auto&) {}, &nv);
  CHECK_THAT(plan_error(*d), Contains("is F8_E4M3 but ") && Contains("declares NVFP4 for module"));

  // A norm stored as FP8; a scale without a weight of the model.
  d = broken(good.path, [&](auto& ts) {
    auto& t = find_tensor(ts, "backbone.layers.0.norm.weight");
    t.dtype = st_dtype::f8_e4m3;
    t.bytes.resize(t.bytes.size() / 2);
  });
  CHECK_THAT(plan_error(*d), Contains("tensor 'backbone.layers.0.norm.weight' is F8_E4M3, but only linear weights can "
                                      "be quantized (layer 0, a mamba layer)"));
  d = broken(good.path, [&](auto& ts) { ts.push_back(make_tensor_from_floats("backbone.layers.0.mixer.foo.weight_scale", {}, {1.0f}, st_dtype::f32)); });
  CHECK_THAT(plan_error(*d), Contains("scale tensor 'backbone.layers.0.mixer.foo.weight_scale' belongs to no weight"));
  d = broken(good.path, [&](auto& ts) { ts.push_back(make_tensor_from_floats("backbone.layers.1.mixer.q_proj.input_scale", {}, {1.0f}, st_dtype::f32)); });
  CHECK_THAT(plan_error(*d), Contains("scale tensor 'backbone.layers.1.mixer.q_proj.input_scale' does not belong with a bf16 weight"));
  // A checkpoint declared FP8 whose weights are bf16.
  nh_test::temp_dir plain("quant_plain");
  save_weights(plain.path, c, w);
  write_text(plain.path / "hf_quant_config.json", R"({"quantization": {"quant_algo": "FP8"}})");
  CHECK_THAT(plan_error(plain), Contains("tensor 'backbone.layers.0.mixer.in_proj.weight' is BF16 but ") &&
                                    Contains("declares FP8 for module 'backbone.layers.0.mixer.in_proj'"));

  // NVFP4: block scales of the wrong shape, dtype or value; a missing global scale.
  const std::string up = "backbone.layers.3.mixer.up_proj";
  d = broken(good4.path, [&](auto& ts) { find_tensor(ts, up + ".weight_scale").shape = {c.intermediate_size * 2, c.hidden_size / 32}; });
  CHECK_THAT(plan_error(*d), Contains("tensor '" + up + ".weight_scale' is F8_E4M3 [512, 4], NVFP4 block scales of a "
                                      "[256, 128] weight must be F8_E4M3 [256, 8] (layer 3, a mlp layer)"));
  d = broken(good4.path, [&](auto& ts) { find_tensor(ts, up + ".weight_scale").bytes[9] = 0x7f; });
  CHECK_THAT(load_error(*d), Contains("tensor '" + up + ".weight_scale': block scale 9 (row 1, block 1) is NaN"));
  d = broken(good4.path, [&](auto& ts) { find_tensor(ts, up + ".weight_scale").bytes[0] = 0xb8; });
  CHECK_THAT(load_error(*d), Contains("block scale 0 (row 0, block 0) is negative"));
  d = broken(good4.path, [&](auto& ts) {
    ts.erase(std::find_if(ts.begin(), ts.end(), [&](const auto& t) { return t.name == up + ".weight_scale_2"; }));
  });
  CHECK_THAT(plan_error(*d), Contains("'" + up + ".weight' is U8 (W4A16_NVFP4) but '" + up + ".weight_scale_2' is missing"));

  // The good checkpoints still load after all that.
  CHECK(load_error(good) == "<no exception>");
  CHECK(load_error(good4) == "<no exception>");
}
