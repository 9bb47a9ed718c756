// Synthetic FP8 models made on the GPU (runner/synthetic_fp8.hpp, `--dtype fp8`): the GPU's
// weight quantization against the host's quantize_fp8 bit for bit, the GPU calibration against
// the CPU's, and a model built with dtype fp8 across the modes and against the same model
// quantized on the host with the same input amax.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gpu_test_config.hpp"
#include "logits_test_util.hpp"
#include "kernels/quantize_fp8.cuh"
#include "model/cpu_forward.hpp"
#include "model/quant_formats.hpp"
#include "model/quantize.hpp"
#include "model/random_tokens.hpp"
#include "model/synthetic_draw.hpp"
#include "model/weights.hpp"
#include "piecewise/element_type.hpp"
#include "piecewise/handles.hpp"
#include "runner/engine.hpp"
#include "runner/synthetic_fp8.hpp"
#include "runner/weight_support.hpp"

using namespace nemotron_h;
using piecewise::mode;
using nh_test::bit_equal;
using nh_test::run_logits;

namespace {

model_config test_config() { return nh_test::gpu_test_config("synthetic-fp8-test", "M-M*-MM*-"); }

float bf16_value(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

template <class T>
std::vector<T> to_host(const void* p, std::size_t n) {
  std::vector<T> v(n);
  if (n > 0) REQUIRE(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return v;
}

/// amax, scale and e4m3 of `bits` ([rows, cols] bf16) by the GPU kernels device_weights runs.
struct gpu_quantized {
  float scale = 0;
  std::vector<std::uint8_t> q;
};
gpu_quantized quantize_on_gpu(const std::vector<std::uint16_t>& bits, int rows, int cols) {
  const std::size_t n = bits.size();
  piecewise::device_buffer w(n * 2), q(n), s(16), amax(16);
  REQUIRE(cudaMemcpy(w.data(), bits.data(), n * 2, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemset(amax.data(), 0, 4) == cudaSuccess);
  amax_abs_rows(static_cast<const bf16*>(w.data()), cols, rows, cols, static_cast<float*>(amax.data()), nullptr);
  fp8_scale_from_amax(static_cast<const float*>(amax.data()), static_cast<float*>(s.data()), nullptr);
  quantize_fp8_weight(static_cast<const bf16*>(w.data()), n, static_cast<const float*>(s.data()),
                      static_cast<std::uint8_t*>(q.data()), nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  return {to_host<float>(s.data(), 1)[0], to_host<std::uint8_t>(q.data(), n)};
}

}  // namespace

TEST_CASE("synthetic FP8: the GPU weight quantization equals the host quantize_fp8 bit for bit, weights and scale, "
          "ties and saturation included",
          "[fp8][synthetic_fp8]") {
  std::mt19937 rng(1234);
  // Random tensors over several magnitudes (subnormal e4m3 results at the small end).
  for (double mag : {1e-3, 0.02, 1.0, 37.0, 3e4}) {
    const int rows = 13, cols = 40;
    std::normal_distribution<float> nd(0.0f, static_cast<float>(mag));
    host_tensor t("w", dtype::bf16, {rows, cols});
    for (int i = 0; i < rows * cols; ++i) t.bf16()[i] = piecewise::float_to_bf16_bits(nd(rng));
    const host_tensor h = quantize_fp8(t, 0.25f);
    const std::vector<std::uint16_t> bits(t.bf16(), t.bf16() + rows * cols);
    const gpu_quantized g = quantize_on_gpu(bits, rows, cols);
    INFO("magnitude " << mag);
    CHECK(g.scale == h.scales->global);
    CHECK(std::memcmp(g.q.data(), h.data(), g.q.size()) == 0);
  }
  // Exact ties: amax 448 makes the scale exactly 1, so every e4m3 midpoint that bf16 holds
  // is a tie (subnormal 1.5 x 2^-9, 1.0625, 17, 232, 440, ...) and must go to the even code.
  {
    std::vector<float> v = {448.0f, 1.0625f, -1.0625f, 1.1875f, 17.0f, 19.0f, 232.0f, -440.0f, 0.0029296875f,
                            -0.0048828125f, 0.015625f * 1.0625f, 3.25f, 0.0f, -0.0f, 1.0f / 1024};
    while (v.size() % 8 != 0) v.push_back(0.5f);
    std::vector<std::uint16_t> bits;
    host_tensor t("ties", dtype::bf16, {1, static_cast<std::int64_t>(v.size())});
    for (std::size_t i = 0; i < v.size(); ++i) {
      bits.push_back(piecewise::float_to_bf16_bits(v[i]));
      REQUIRE(bf16_value(bits.back()) == v[i]);  // exactly representable
      t.bf16()[i] = bits.back();
    }
    const host_tensor h = quantize_fp8(t, 0.0f);
    REQUIRE(h.scales->global == 1.0f);
    const gpu_quantized g = quantize_on_gpu(bits, 1, static_cast<int>(v.size()));
    CHECK(g.scale == 1.0f);
    for (std::size_t i = 0; i < v.size(); ++i) {
      INFO("value " << v[i]);
      CHECK(static_cast<int>(g.q[i]) == static_cast<int>(h.data()[i]));
    }
    CHECK(g.q[1] == quant::float_to_e4m3(1.0f));  // 1.0625 -> 1 (even), not 1.125
    CHECK(g.q[4] == quant::float_to_e4m3(16.0f));  // 17 -> 16 (even)
  }
  // A given scale: saturation at +-448 (and inf), NaN to 0x7f, and a tail that is not a
  // multiple of 8 elements, against the host's double_to_e4m3 of the float64 quotient.
  {
    std::vector<std::uint16_t> bits;
    std::uniform_real_distribution<float> ud(-400.0f, 400.0f);
    for (int i = 0; i < 517; ++i) bits.push_back(piecewise::float_to_bf16_bits(ud(rng)));
    bits[3] = piecewise::float_to_bf16_bits(std::numeric_limits<float>::infinity());
    bits[4] = piecewise::float_to_bf16_bits(-std::numeric_limits<float>::infinity());
    bits[5] = 0x7fc0;  // NaN
    bits[516] = piecewise::float_to_bf16_bits(-399.0f);
    const float scale = 0.375f;
    piecewise::device_buffer w(bits.size() * 2), q(bits.size() + 8), s(16);
    REQUIRE(cudaMemcpy(w.data(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaMemcpy(s.data(), &scale, 4, cudaMemcpyHostToDevice) == cudaSuccess);
    quantize_fp8_weight(static_cast<const bf16*>(w.data()), bits.size(), static_cast<const float*>(s.data()),
                        static_cast<std::uint8_t*>(q.data()), nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const auto got = to_host<std::uint8_t>(q.data(), bits.size());
    int saturated = 0;
    for (std::size_t i = 0; i < bits.size(); ++i) {
      const std::uint8_t want = quant::double_to_e4m3(static_cast<double>(bf16_value(bits[i])) / scale);
      saturated += (want & 0x7f) == 0x7e;
      INFO("element " << i << " value " << bf16_value(bits[i]));
      REQUIRE(static_cast<int>(got[i]) == static_cast<int>(want));
    }
    CHECK(got[5] == 0x7f);
    CHECK(got[3] == 0x7e);
    CHECK(got[4] == 0xfe);
    CHECK(saturated > 50);
  }
  // The scale rule on its own, 0 included.
  for (float a : {0.0f, 1e-30f, 0.7f, 448.0f, 1.0f / 3.0f, 12345.678f}) {
    piecewise::device_buffer in(16), out(16);
    REQUIRE(cudaMemcpy(in.data(), &a, 4, cudaMemcpyHostToDevice) == cudaSuccess);
    fp8_scale_from_amax(static_cast<const float*>(in.data()), static_cast<float*>(out.data()), nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    CHECK(to_host<float>(out.data(), 1)[0] == quant::fp8_scale(a));
  }
}

// Tolerance: both calibrations run the same forward on the same bf16 weights; the CPU in
// float64, the GPU with every activation rounded to bf16 (relative 2^-9 each) and fp32 sums.
// An amax is one element's magnitude, so it differs by about that element's error: the bf16
// GPU forward is within 2% of the float64 reference at the logits on these models (the
// runner's mode tests), and the inputs of the first layers within a few bf16 roundings. 3%
// covers the deepest layer with margin; layer 0's in_proj input (one norm from the
// embeddings) must be within 1%.
TEST_CASE("synthetic FP8: the GPU calibration's input amax matches the CPU float64 calibration within 3 percent",
          "[fp8][synthetic_fp8]") {
  const model_config cfg = test_config();
  const model_weights w = synthetic_weights(cfg, 7);
  const std::vector<std::string> names = synthetic_fp8_weights(cfg);
  REQUIRE(names.size() == static_cast<std::size_t>(2 * (cfg.count(layer_kind::mamba) + cfg.count(layer_kind::mlp))));
  const std::vector<int> tokens = calibration_tokens(cfg, 64);
  const auto gpu = calibrate_input_amax_gpu(cfg, weight_source::from_host(w), names, tokens);
  const std::vector<std::int32_t> t32(tokens.begin(), tokens.end());
  const auto cpu = calibrate_input_amax(cfg, w, t32);
  REQUIRE(gpu.size() == names.size());
  double worst = 0;
  for (const std::string& n : names) {
    INFO(n);
    REQUIRE(cpu.count(n) == 1);
    REQUIRE(gpu.at(n) > 0);
    const double rel = std::fabs(gpu.at(n) - cpu.at(n)) / cpu.at(n);
    worst = std::max(worst, rel);
    CHECK(rel < 0.03);
  }
  const std::string first = names.front();
  REQUIRE(first == "backbone.layers.0.mixer.in_proj.weight");
  CHECK(std::fabs(gpu.at(first) - cpu.at(first)) / cpu.at(first) < 0.01);
  WARN("GPU vs CPU calibration: largest relative difference of an input amax " << worst);
  // The drawn source gives the same amax as the same weights from the host.
  CHECK(calibrate_input_amax_gpu(cfg, weight_source::drawn(7), names, tokens) == gpu);
  // Names that have no GEMM of their own are refused by name.
  const std::vector<std::string> fused = {"backbone.layers.3.mixer.q_proj.weight"};
  CHECK_THROWS_WITH(calibrate_input_amax_gpu(cfg, weight_source::from_host(w), fused, tokens),
                    Catch::Contains("q_proj") && Catch::Contains("GEMM of its own"));
}

// Bit-identical across modes: every FP8 GEMM and quantization kernel is deterministic and
// M-independent in its bits, as the bf16 ones are (the runner's mode tests). Against the host:
// the same bf16 draw, the same amax map and quantize_fp8's arithmetic give the same device
// bytes, so the host-quantized model's logits are the same bits too.
TEST_CASE("synthetic FP8: a model built with dtype fp8 agrees bit for bit across eager, piecewise and full and equals "
          "the host-quantized model with the same scales",
          "[fp8][synthetic_fp8]") {
  const model_config cfg = test_config();
  const std::vector<std::string> names = synthetic_fp8_weights(cfg);
  const auto amax = calibrate_input_amax_gpu(cfg, weight_source::drawn(7), names, calibration_tokens(cfg, 64));
  const weight_source src = weight_source::drawn_fp8(7, amax);
  model_weights hw = synthetic_weights(cfg, 7);
  REQUIRE(quantize_weights(hw, cfg, synthetic_fp8_quant_config(cfg), amax) == static_cast<int>(names.size()));
  {
    const device_weights gd(cfg, src), hd(cfg, hw);
    CHECK(gd.bytes() == hd.bytes());
    const std::vector<tensor_entry> entries = model_tensors(cfg);
    int fp8 = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      INFO("tensor " << entries[i].name);
      REQUIRE(gd.tensor(i).bytes == hd.tensor(i).bytes);
      const auto a = to_host<std::uint8_t>(gd.tensor(i).data, gd.tensor(i).bytes);
      const auto b = to_host<std::uint8_t>(hd.tensor(i).data, hd.tensor(i).bytes);
      CHECK(a == b);
      fp8 += hw.at(entries[i]).type() == dtype::fp8_e4m3;
    }
    CHECK(fp8 == static_cast<int>(names.size()));
    // The scales each FP8 view points at: the host's weight scale and input scale.
    for (int l = 0; l < cfg.num_layers(); ++l) {
      for (const device_tensor& t : gd.at(l).tensors) {
        if (t.view.type != dtype::fp8_e4m3) continue;
        INFO(t.name);
        const host_tensor* h = nullptr;
        for (const tensor_entry& e : entries)
          if (e.name == t.name) h = &hw.at(e);
        REQUIRE(h != nullptr);
        CHECK(to_host<float>(t.view.scale, 1)[0] == h->scales->global);
        CHECK(to_host<float>(t.view.input_scale, 1)[0] == h->scales->input);
        CHECK(h->scales->input == input_scale_from_amax(amax.at(t.name)));
      }
    }
    CHECK(gd.lm_head().type == dtype::bf16);
    CHECK(gd.at(3).get("mixer.qkv_proj.weight").type == dtype::bf16);
  }
  gpu_model_limits lim;
  lim.max_prefill_tokens = 64;
  lim.max_decode_batch = 4;
  lim.num_slots = 3;
  lim.max_context = 256;
  lim.max_decode_steps = 4;
  std::uint64_t st = 21;
  std::vector<std::vector<int>> prompts;
  for (int len : {1, 37, 100}) prompts.push_back(random_token_ids(len, cfg.vocab_size, st));  // 100: chunked
  engine eng(cfg, src, lim);
  std::vector<std::vector<std::vector<float>>> per_mode;
  std::vector<std::vector<std::vector<int>>> tokens;
  for (mode m : {mode::eager, mode::piecewise, mode::full}) {
    eng.add_mode(m, {}, {});
    const workload_result r = eng.run(m, prompts, 3);
    per_mode.push_back(r.last_logits);
    tokens.push_back(r.tokens);
  }
  CHECK(bit_equal(per_mode[0], per_mode[1]));
  CHECK(bit_equal(per_mode[0], per_mode[2]));
  CHECK(tokens[0] == tokens[1]);
  CHECK(tokens[0] == tokens[2]);
  engine host_eng(cfg, hw, lim);
  host_eng.add_mode(mode::full, {}, {});
  CHECK(bit_equal(run_logits(host_eng, mode::full, prompts), per_mode[2]));
  // The FP8 inputs written by the norms and the squared ReLU (the default) equal the separate
  // quantize kernel's, through the whole model: same logits and tokens, eager and full.
  {
    REQUIRE(eng.model().fuses_fp8_inputs() == (std::getenv("NH_FP8_FUSE") == nullptr ||
                                               std::getenv("NH_FP8_FUSE")[0] != '0'));
    engine unfused(cfg, src, lim);
    unfused.model().fuse_fp8_inputs(!eng.model().fuses_fp8_inputs());
    for (mode m : {mode::eager, mode::full}) {
      INFO("unfused, mode " << static_cast<int>(m));
      unfused.add_mode(m, {}, {});
      const workload_result r = unfused.run(m, prompts, 3);
      CHECK(bit_equal(r.last_logits, per_mode[0]));
      CHECK(r.tokens == tokens[0]);
    }
  }
  // FP8 ran: the logits moved away from the bf16 model's.
  engine bf(cfg, weight_source::drawn(7), lim);
  bf.add_mode(mode::full, {}, {});
  const auto b = run_logits(bf, mode::full, prompts);
  double moved = 1;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<double> x(b[i].begin(), b[i].end()), y(per_mode[2][i].begin(), per_mode[2][i].end());
    moved = std::min(moved, rel_norm_error(y, x));
  }
  WARN("synthetic FP8: smallest relative distance of the logits from the bf16 model " << moved);
  CHECK(moved > 1e-3);
  // The one-call recipe (256 calibration tokens) builds and runs.
  engine one(cfg, synthetic_fp8_source(cfg, 7), lim);
  one.add_mode(mode::full, {}, {});
  CHECK(one.model().weights().widest_fp8_input() == cfg.intermediate_size);
  (void)one.run(mode::full, prompts, 2);
}

TEST_CASE("synthetic FP8: weights that cannot be FP8 are refused by name before device memory is taken",
          "[fp8][synthetic_fp8]") {
  const model_config cfg = test_config();
  CHECK_THROWS_WITH(device_weights(cfg, weight_source::drawn_fp8(1, {{"backbone.layers.3.mixer.q_proj.weight", 1.0}})),
                    Catch::Contains("q_proj") && Catch::Contains("fused"));
  CHECK_THROWS_WITH(device_weights(cfg, weight_source::drawn_fp8(1, {{"backbone.layers.0.mixer.nope.weight", 1.0}})),
                    Catch::Contains("nope") && Catch::Contains("not a tensor"));
  CHECK_THROWS_WITH(device_weights(cfg, weight_source::drawn_fp8(1, {{"backbone.layers.0.mixer.conv1d.weight", 1.0}})),
                    Catch::Contains("conv1d") && Catch::Contains("not a linear weight"));
  const model_weights w = synthetic_weights(cfg, 1);
  weight_source s = weight_source::from_host(w);
  s.fp8_input_amax = {{"backbone.layers.0.mixer.in_proj.weight", 1.0}};
  CHECK_THROWS_WITH(device_weights(cfg, s), Catch::Contains("only synthetic weights"));
}
