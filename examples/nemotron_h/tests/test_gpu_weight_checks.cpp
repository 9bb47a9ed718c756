// Which linear weights the GPU model takes (runner/weight_support.hpp), checked on the host
// without a GPU: the checks device_weights makes before it takes device memory, and those the
// run plan makes from a quantized checkpoint's headers (FP8 runs, NVFP4 is refused by name).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kernels/nvfp4_layout.hpp"
#include "model/quantize.hpp"
#include "model/random_tokens.hpp"
#include "model/weights.hpp"
#include "model_test_util.hpp"
#include "run_plan_test_util.hpp"
#include "runner/run_plan.hpp"
#include "runner/weight_support.hpp"

using namespace nemotron_h;
using Catch::Matchers::Contains;
using nh_test::error_of;
using nh_test::input_error_of;
using nh_test::temp_dir;

namespace {

const char* const kIn0 = "backbone.layers.0.mixer.in_proj.weight";
const char* const kQ1 = "backbone.layers.1.mixer.q_proj.weight";

struct quantized_tiny {
  model_config c = preset("tiny");  // M*M-M-
  model_weights bf16;
  std::map<std::string, double> amax;
  quantized_tiny() {
    bf16 = synthetic_weights(c, 5, {.randomize_vectors = true});
    std::uint64_t st = 9;
    amax = calibrate_input_amax(c, bf16, random_token_ids(16, c.vocab_size, st));
  }
  /// The weights with `algo` on every linear module but the excluded ones.
  model_weights quantized(quant_algo algo, std::vector<std::string> exclude) const {
    quant_config q;
    q.source = "test";
    q.algo = algo;
    q.exclude = std::move(exclude);
    model_weights w = bf16;
    REQUIRE(quantize_weights(w, c, q, amax) > 0);
    return w;
  }
  template <class W>
  auto& at(W& w, const std::string& name) const {
    for (const tensor_entry& e : model_tensors(c))
      if (e.name == name) return w.at(e);
    FAIL("no tensor " << name);
    throw 0;
  }
};

}  // namespace

TEST_CASE("GPU weight checks: FP8 and NVFP4 linear weights run, a fused NVFP4 group is refused naming it",
          "[quant][gpu_weights]") {
  const quantized_tiny t;
  CHECK_NOTHROW(check_gpu_weights(t.c, t.bf16));
  // Mamba and MLP projections FP8, attention and lm_head bf16: what the GPU runner test runs.
  const model_weights fp8 = t.quantized(quant_algo::fp8, {"*.mixer.?_proj", "lm_head"});
  CHECK_NOTHROW(check_gpu_weights(t.c, fp8));
  // Every linear module FP8, q | k | v included: their weight scales differ (amax of each).
  const model_weights all_fp8 = t.quantized(quant_algo::fp8, {});
  CHECK_THAT(error_of([&] { check_gpu_weights(t.c, all_fp8); }),
             Contains("'backbone.layers.1.mixer.qkv_proj.weight' fuses FP8 tensors with different scales") &&
                 Contains(kQ1) && Contains("exclude_modules"));
  // The same scales on all three: one GEMM, accepted.
  model_weights same = all_fp8;
  for (const char* p : {"q", "k", "v"}) {
    host_tensor& x = t.at(same, fmt::format("backbone.layers.1.mixer.{}_proj.weight", p));
    x.scales->global = t.at(same, kQ1).scales->global;
  }
  CHECK_NOTHROW(check_gpu_weights(t.c, same));
  // NVFP4 (either variant) runs weight-only; a fused q | k | v of NVFP4 tensors does not (yet).
  for (quant_algo a : {quant_algo::nvfp4, quant_algo::w4a16_nvfp4}) {
    CAPTURE(to_string(a));
    CHECK_NOTHROW(check_gpu_weights(t.c, t.quantized(a, {"*.mixer.?_proj", "lm_head"})));
    const model_weights all = t.quantized(a, {});
    CHECK_THAT(error_of([&] { check_gpu_weights(t.c, all); }),
               Contains("'backbone.layers.1.mixer.qkv_proj.weight' fuses NVFP4 tensors") && Contains(kQ1) &&
                   Contains("exclude_modules"));
  }
  // One NVFP4 tensor among FP8 ones (mixed precision) runs too.
  model_weights mixed = fp8;
  host_tensor& down = t.at(mixed, "backbone.layers.3.mixer.down_proj.weight");
  down = quantize_nvfp4(t.at(t.bf16, down.name()), 0.0f);
  CHECK_NOTHROW(check_gpu_weights(t.c, mixed));
}

TEST_CASE("GPU weight checks: fused groups of mixed dtypes and weight-only FP8 are refused by name",
          "[quant][gpu_weights]") {
  const quantized_tiny t;
  // q alone FP8: one GEMM cannot take bf16 and e4m3 parts.
  model_weights w = t.bf16;
  host_tensor& q = t.at(w, kQ1);
  q = quantize_fp8(q, input_scale_from_amax(t.amax.at(kQ1)));
  CHECK_THAT(error_of([&] { check_gpu_weights(t.c, w); }),
             Contains("'backbone.layers.1.mixer.qkv_proj.weight' fuses '" + std::string(kQ1) + "' (fp8_e4m3) with "
                      "'backbone.layers.1.mixer.k_proj.weight' (bf16)"));
  // An FP8 weight without an input scale (weight-only FP8): the GPU runs W8A8 only.
  model_weights wo = t.bf16;
  host_tensor& in0 = t.at(wo, kIn0);
  in0 = quantize_fp8(in0, 0.0f);
  CHECK_THAT(error_of([&] { check_gpu_weights(t.c, wo); }),
             Contains(std::string("tensor '") + kIn0 + "' is fp8_e4m3 without an input scale"));
  // The part-level rule on its own: K not a multiple of 16.
  const std::string odd = gpu_linear_problem("x.weight", {{"x.weight", dtype::fp8_e4m3, 16, 24, 1.0f, 1.0f}});
  CHECK_THAT(odd, Contains("'x.weight' is fp8_e4m3 [16, 24]") && Contains("multiple of 16"));
  CHECK(gpu_linear_problem("x.weight", {{"x.weight", dtype::fp8_e4m3, 16, 32, 1.0f, 1.0f}}).empty());
  // Headers only (scales not known yet): dtype rules only.
  CHECK(gpu_linear_problem("x.weight", {{"x.weight", dtype::fp8_e4m3, 16, 32, {}, {}}}).empty());
  CHECK_THAT(gpu_linear_problem("x.weight", {{"x.weight", dtype::f32, 16, 32, {}, {}}}), Contains("not supported yet"));
}

TEST_CASE("run plan: FP8 and NVFP4 checkpoints plan (weights at one byte / in the NVFP4 device layout, the scratches "
          "counted)",
          "[quant][run_plan]") {
  const quantized_tiny t;
  const temp_dir bf("plan_bf16"), f8("plan_fp8"), n4("plan_nvfp4"), half("plan_q_only");
  save_weights(bf.path, t.c, t.bf16);
  save_weights(f8.path, t.c, t.quantized(quant_algo::fp8, {"*.mixer.?_proj", "lm_head"}));
  save_weights(n4.path, t.c, t.quantized(quant_algo::nvfp4, {"*.mixer.?_proj", "lm_head"}));
  run_args a;
  a.batch = 2;
  a.prompt_len = 5;
  a.gen = 3;
  a.dry_run = true;
  a.model = "tiny";  // the preset's config, the checkpoint from --weights
  a.weights = bf.path.string();
  const run_plan pb = make_run_plan(a);
  a.weights = f8.path.string();
  const run_plan pf = make_run_plan(a);
  CHECK_FALSE(pf.synthetic);
  REQUIRE(pf.checkpoint.quantization);
  CHECK(pf.checkpoint.quantization->algo == quant_algo::fp8);
  int n_fp8 = 0;
  std::uint64_t fp8_elems = 0, widest = 0;
  const std::vector<tensor_entry> entries = model_tensors(t.c);
  REQUIRE(pf.checkpoint.types.size() == entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (pf.checkpoint.types[i] != dtype::fp8_e4m3) continue;
    ++n_fp8;
    fp8_elems += static_cast<std::uint64_t>(entries[i].shape[0] * entries[i].shape[1]);
    widest = std::max(widest, static_cast<std::uint64_t>(entries[i].shape[1]));
  }
  CHECK(n_fp8 == 10);  // 3 x (in_proj, out_proj) + 2 x (up, down)
  CHECK(pf.weights_description(0).find("FP8 (ModelOpt") != std::string::npos);
  CHECK(pf.weights_description(0).find("10 FP8 weights run on the FP8 tensor cores") != std::string::npos);
  // One byte an element instead of two, plus two fp32 scales each in 16-byte slots; the scratch: the most rows
  // of a GEMM (the prefill chunk) times the widest FP8 input.
  CHECK(pb.memory.weights - pf.memory.weights == fp8_elems - kFp8ScaleBytes * static_cast<std::uint64_t>(n_fp8));
  const auto rows = static_cast<std::uint64_t>(std::max(max_rows(pf.limits), max_sequences(pf.limits)));
  CHECK(pf.memory.workspaces - pb.memory.workspaces == rows * widest);
  CHECK(widest == static_cast<std::uint64_t>(t.c.intermediate_size));  // down_proj's input
  // NVFP4 (the projections; attention and lm_head bf16): weight-only in the device layout.
  a.weights = n4.path.string();
  const run_plan pn = make_run_plan(a);
  REQUIRE(pn.checkpoint.quantization);
  CHECK(pn.checkpoint.quantization->algo == quant_algo::nvfp4);
  std::uint64_t saved = 0;
  int n_nvfp4 = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (pn.checkpoint.types[i] != dtype::nvfp4) continue;
    ++n_nvfp4;
    const nvfp4_layout L{static_cast<int>((entries[i].shape[0] + 7) / 8 * 8), static_cast<int>(entries[i].shape[1])};
    saved += static_cast<std::uint64_t>(entries[i].shape[0] * entries[i].shape[1]) * 2 -
             (L.packed_bytes() + L.scale_bytes() + kFp8ScaleSlotBytes);
  }
  CHECK(n_nvfp4 == 10);
  CHECK(pb.memory.weights - pn.memory.weights == saved);
  CHECK(pn.weights_description(0).find("10 NVFP4 weights run weight-only") != std::string::npos);
  // FP8 on q alone (mixed precision): a fused group of two dtypes, refused from the headers.
  model_weights qw = t.bf16;
  host_tensor& q = t.at(qw, kQ1);
  q = quantize_fp8(q, input_scale_from_amax(t.amax.at(kQ1)));
  save_weights(half.path, t.c, qw);
  a.weights = half.path.string();
  CHECK_THAT(input_error_of(a), Contains("model.safetensors: 'backbone.layers.1.mixer.qkv_proj.weight' fuses '" +
                                         std::string(kQ1) + "' (fp8_e4m3) with"));
}
