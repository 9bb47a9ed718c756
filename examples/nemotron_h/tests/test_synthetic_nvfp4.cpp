// Synthetic NVFP4 models (`--dtype nvfp4`, weight-only): the GPU quantizer (kernels/nvfp4.cuh)
// against the host's quantize_nvfp4 bit for bit; the GPU's quantization and repack
// against the host's quantize_weights + upload bit for bit; a model with NVFP4 projections
// across eager, piecewise and full (bit for bit) and against the float64 CPU reference, which
// runs the same dequantized weights; a checkpoint with NVFP4 weights streamed to the GPU equals
// the host upload; what is refused.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "gpu_test_config.hpp"
#include "logits_test_util.hpp"
#include "kernels/nvfp4.cuh"
#include "kernels/quantize_fp8.cuh"
#include "model/cpu_forward.hpp"
#include "model/quantize.hpp"
#include "model/random_tokens.hpp"
#include "model/weights.hpp"
#include "piecewise/handles.hpp"
#include "runner/engine.hpp"
#include "runner/weight_support.hpp"

using namespace nemotron_h;
using piecewise::mode;
using nh_test::bit_equal;
using nh_test::run_logits;

namespace {

model_config nvfp4_config() {
  // 80 Mamba heads' worth of in_proj rows is not a multiple of 16: a half strip at the end.
  return nh_test::gpu_test_config("synthetic-nvfp4-test", "M-M*-MM*-");
}

std::vector<std::uint8_t> download(const device_weights::span& s) {
  std::vector<std::uint8_t> v(s.bytes);
  if (!v.empty()) REQUIRE(cudaMemcpy(v.data(), s.data, s.bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
  return v;
}

struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const char* name) : path(std::filesystem::temp_directory_path() / name) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("synthetic NVFP4: quantize_nvfp4_weight equals quantize_nvfp4 (model/quantize.hpp) bit for bit",
          "[nvfp4][synthetic_nvfp4]") {
  std::mt19937 gen(47);
  std::normal_distribution<float> d(0.0f, 0.02f);
  for (int trial = 0; trial < 3; ++trial) {
    const int rows = trial == 0 ? 37 : 256, cols = trial == 2 ? 4480 : 96;
    host_tensor t("w", dtype::bf16, {rows, cols});
    std::uint16_t* b = t.bf16();
    auto put = [&](std::size_t i, float v) {
      std::uint32_t u;
      std::memcpy(&u, &v, 4);
      b[i] = static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // to nearest even
    };
    for (std::size_t i = 0; i < static_cast<std::size_t>(rows) * cols; ++i) put(i, d(gen));
    // A zero block, a block of tiny values (subnormal block scales), one large value.
    for (int k = 0; k < 16; ++k) {
      put(static_cast<std::size_t>(16 + k), 0.0f);
      put(static_cast<std::size_t>(cols + k), 1e-7f * static_cast<float>(k - 8));
    }
    put(static_cast<std::size_t>(2 * cols + 3), trial == 1 ? 0.0f : 3.0f);
    const host_tensor want = quantize_nvfp4(t, 0.5f);
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    piecewise::device_buffer w(n * 2), amax(16), global(16), packed(n / 2), scales(n / 16);
    REQUIRE(cudaMemcpy(w.data(), t.data(), n * 2, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaMemset(amax.data(), 0, 4) == cudaSuccess);
    amax_abs_rows(static_cast<const bf16*>(w.data()), cols, rows, cols, static_cast<float*>(amax.data()), nullptr);
    quantize_nvfp4_weight(static_cast<const bf16*>(w.data()), rows, cols, static_cast<const float*>(amax.data()),
                          static_cast<float*>(global.data()), static_cast<std::uint8_t*>(packed.data()),
                          static_cast<std::uint8_t*>(scales.data()), nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    float g = 0;
    std::vector<std::uint8_t> hp(n / 2), hs(n / 16);
    REQUIRE(cudaMemcpy(&g, global.data(), 4, cudaMemcpyDeviceToHost) == cudaSuccess);
    REQUIRE(cudaMemcpy(hp.data(), packed.data(), hp.size(), cudaMemcpyDeviceToHost) == cudaSuccess);
    REQUIRE(cudaMemcpy(hs.data(), scales.data(), hs.size(), cudaMemcpyDeviceToHost) == cudaSuccess);
    INFO("trial " << trial);
    CHECK(g == want.scales->global);
    CHECK(std::equal(hp.begin(), hp.end(), want.data()));
    CHECK(hs == want.scales->block);
  }
}

TEST_CASE("synthetic NVFP4: the GPU quantization and repack equal the host-quantized upload bit for bit, and a "
          "checkpoint streams the same bytes",
          "[nvfp4][synthetic_nvfp4]") {
  const model_config cfg = nvfp4_config();
  const std::vector<std::string> names = synthetic_fp8_weights(cfg);
  model_weights hw = synthetic_weights(cfg, 7);
  REQUIRE(quantize_weights(hw, cfg, synthetic_nvfp4_quant_config(cfg), {}) == static_cast<int>(names.size()));
  const device_weights gd(cfg, weight_source::drawn_nvfp4(7, names)), hd(cfg, hw);
  CHECK(gd.bytes() == hd.bytes());
  const std::vector<tensor_entry> entries = model_tensors(cfg);
  int nvfp4 = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    INFO("tensor " << entries[i].name);
    REQUIRE(gd.tensor(i).bytes == hd.tensor(i).bytes);
    CHECK(download(gd.tensor(i)) == download(hd.tensor(i)));
    nvfp4 += hw.at(entries[i]).type() == dtype::nvfp4;
  }
  CHECK(nvfp4 == static_cast<int>(names.size()));
  // Each view: the device layout's size, its global scale on the host and in its slot.
  std::size_t largest = 0;
  for (int l = 0; l < cfg.num_layers(); ++l) {
    for (const device_tensor& t : gd.at(l).tensors) {
      if (t.view.type != dtype::nvfp4) continue;
      INFO(t.name);
      const host_tensor* h = nullptr;
      for (const tensor_entry& e : entries)
        if (e.name == t.name) h = &hw.at(e);
      REQUIRE(h != nullptr);
      CHECK(t.view.global_scale == h->scales->global);
      float g = 0;
      REQUIRE(cudaMemcpy(&g, t.view.scale, sizeof g, cudaMemcpyDeviceToHost) == cudaSuccess);
      CHECK(g == h->scales->global);
      CHECK(t.view.rows == (h->rows() + 7) / 8 * 8);
      largest = std::max(largest, static_cast<std::size_t>(t.view.rows) * static_cast<std::size_t>(t.view.cols));
    }
  }
  CHECK(gd.largest_nvfp4_weight() == largest);
  CHECK(gd.lm_head().type == dtype::bf16);
  // A checkpoint with the NVFP4 weights (ModelOpt layout, hf_quant_config.json) streams the same.
  const temp_dir dir("nh_synthetic_nvfp4_ckpt");
  save_weights(dir.path, cfg, hw);
  const device_weights cd(cfg, weight_source::from_checkpoint(dir.path));
  for (std::size_t i = 0; i < entries.size(); ++i) {
    INFO("tensor " << entries[i].name);
    CHECK(download(cd.tensor(i)) == download(hd.tensor(i)));
  }
}

TEST_CASE("synthetic NVFP4: a model with NVFP4 projections agrees bit for bit across eager, piecewise and full, "
          "with the host-quantized model, and with the float64 CPU reference of the same weights",
          "[nvfp4][synthetic_nvfp4]") {
  const model_config cfg = nvfp4_config();
  const std::vector<std::string> names = synthetic_fp8_weights(cfg);
  gpu_model_limits lim;
  lim.max_prefill_tokens = 128;  // prompts of 100 tokens run the dequantized GEMM (> 64 rows)
  lim.max_decode_batch = 4;
  lim.num_slots = 3;
  lim.max_context = 256;
  lim.max_decode_steps = 4;
  std::uint64_t st = 23;
  std::vector<std::vector<int>> prompts;
  for (int len : {1, 37, 100}) prompts.push_back(random_token_ids(len, cfg.vocab_size, st));
  engine eng(cfg, weight_source::drawn_nvfp4(7, names), lim);
  CHECK(eng.model().gemm().nvfp4_scratch_bytes() >= eng.model().weights().largest_nvfp4_weight() * 2);
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
  model_weights hw = synthetic_weights(cfg, 7);
  REQUIRE(quantize_weights(hw, cfg, synthetic_nvfp4_quant_config(cfg), {}) == static_cast<int>(names.size()));
  engine host_eng(cfg, hw, lim);
  host_eng.add_mode(mode::full, {}, {});
  CHECK(bit_equal(run_logits(host_eng, mode::full, prompts), per_mode[2]));
  // Weight-only: the CPU reference multiplies the same dequantized weights in float64, so the
  // GPU is as close to it as the bf16 model is to its own (bf16 activations), not FP8's 15%.
  const cpu_model ref(cfg, hw);
  double worst = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    cpu_session s(ref);
    const std::vector<std::int32_t> p(prompts[i].begin(), prompts[i].end());
    const std::vector<double> want = s.prefill(p);
    const std::vector<double> got(per_mode[2][i].begin(), per_mode[2][i].end());
    worst = std::max(worst, rel_norm_error(got, want));
  }
  WARN("synthetic NVFP4: worst last-position logits error against the float64 reference " << worst);
  CHECK(worst < 5e-2);
  // NVFP4 ran: the logits moved away from the bf16 model's (by far more than the bound above).
  engine bf(cfg, weight_source::drawn(7), lim);
  bf.add_mode(mode::full, {}, {});
  const auto b = run_logits(bf, mode::full, prompts);
  double moved = 1;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<double> x(b[i].begin(), b[i].end()), y(per_mode[2][i].begin(), per_mode[2][i].end());
    moved = std::min(moved, rel_norm_error(y, x));
  }
  WARN("synthetic NVFP4: smallest relative distance of the logits from the bf16 model " << moved);
  CHECK(moved > 3 * worst);
}

TEST_CASE("synthetic NVFP4: weights that cannot be NVFP4 are refused by name before device memory is taken",
          "[nvfp4][synthetic_nvfp4]") {
  const model_config cfg = nvfp4_config();
  CHECK_THROWS_WITH(device_weights(cfg, weight_source::drawn_nvfp4(1, {"backbone.layers.3.mixer.q_proj.weight"})),
                    Catch::Contains("q_proj") && Catch::Contains("fused"));
  CHECK_THROWS_WITH(device_weights(cfg, weight_source::drawn_nvfp4(1, {"backbone.layers.0.mixer.nope.weight"})),
                    Catch::Contains("nope") && Catch::Contains("not a tensor"));
  CHECK_THROWS_WITH(device_weights(cfg, weight_source::drawn_nvfp4(1, {"backbone.layers.0.mixer.conv1d.weight"})),
                    Catch::Contains("conv1d") && Catch::Contains("not a linear weight"));
  CHECK_THROWS_WITH(device_weights(cfg, weight_source::drawn_nvfp4(1, {"backbone.layers.0.mixer.in_proj.weight",
                                                                        "backbone.layers.0.mixer.in_proj.weight"})),
                    Catch::Contains("named twice"));
  const model_weights w = synthetic_weights(cfg, 1);
  weight_source s = weight_source::from_host(w);
  s.nvfp4_weights = {"backbone.layers.0.mixer.in_proj.weight"};
  CHECK_THROWS_WITH(device_weights(cfg, s), Catch::Contains("only synthetic weights"));
}
