// The host-only plan of nemotron_h_run (runner/run_plan.hpp): every argument, config,
// checkpoint-header and output-path check, and the memory estimate. No GPU.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "kernels/nvfp4_layout.hpp"
#include "model/layer_kinds.hpp"
#include "model/quant_config.hpp"
#include "model/safetensors.hpp"
#include "model/weights.hpp"
#include "model_test_util.hpp"
#include "run_plan_test_util.hpp"
#include "runner/run_plan.hpp"
#include "runner/weight_support.hpp"

using namespace nemotron_h;
using nh_test::error_of;
using nh_test::input_error_of;
using nh_test::usage_error_of;
using nh_test::temp_dir;
using Catch::Matchers::Contains;

namespace {

run_args tiny_args() {
  run_args a;
  a.model = "tiny";
  a.batch = 2;
  a.prompt_len = 3;
  a.gen = 4;
  return a;
}

std::string read_all(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("run plan: a preset runs synthetic weights, said so, with the default buckets", "[run_plan]") {
  const run_plan p = make_run_plan(tiny_args());
  CHECK(p.synthetic);
  CHECK(p.config.name == "tiny");
  CHECK(p.weights_description(7) == "synthetic weights (preset tiny, no checkpoint), seed 7");
  CHECK(p.modes == std::vector<std::string>{"auto"});
  REQUIRE(p.prompts.size() == 2);
  for (const auto& q : p.prompts) {
    CHECK(q.size() == 3);
    for (int id : q) CHECK((id >= 0 && id < p.config.vocab_size));
  }
  CHECK_FALSE(p.explicit_buckets);
  CHECK(p.prefill_buckets.back() == 2048);
  CHECK(p.decode_buckets.back() == 64);
  CHECK(p.limits.num_slots == 2);
  CHECK(p.limits.max_context == 16);  // 3 + 4 rounded up to 16
  CHECK(p.limits.max_decode_steps == 4);
}

TEST_CASE("run plan: the memory estimate matches the weights and the state sizes", "[run_plan]") {
  const run_plan p = make_run_plan(tiny_args());
  // Weights: what synthetic_weights holds (and the GPU uploads), tensor for tensor.
  CHECK(p.memory.weights == synthetic_weights(p.config, 0).bytes());
  // State of "M*M-M-" with 2 slots x 16 positions, by hand: one attention layer's K and V,
  // 2 x (2 slots x 16 x (2 KV heads x 128) x 2 bytes); three Mamba layers' conv state
  // (2 slots x 3 x conv_dim 512 x 2 bytes) and SSM state (2 x 8 heads x 32 x 64 x 4 bytes).
  CHECK(p.memory.state == 2 * 16384 + 3 * (6144 + 131072));
  CHECK(p.memory.activations > 0);
  CHECK(p.memory.workspaces > 0);
  CHECK(p.memory.graphs > 0);  // auto = full graphs
  CHECK(p.memory.total() ==
        p.memory.weights + p.memory.activations + p.memory.state + p.memory.workspaces + p.memory.graphs);
  // Eager captures nothing; piecewise graphs are larger than full ones.
  run_args a = tiny_args();
  a.mode_name = "eager";
  CHECK(make_run_plan(a).memory.graphs == 0);
  a.mode_name = "piecewise";
  CHECK(make_run_plan(a).memory.graphs > p.memory.graphs);
  // A longer context grows the KV cache only.
  a = tiny_args();
  a.gen = 4 + 16;
  CHECK(make_run_plan(a).memory.state == 2 * 2 * 16384 + 3 * (6144 + 131072));
}

TEST_CASE("run plan: modes", "[run_plan]") {
  run_args a = tiny_args();
  a.mode_name = "compare";
  CHECK(make_run_plan(a).modes == std::vector<std::string>{"eager", "piecewise", "full"});
  a.mode_name = "bogus";
  CHECK(usage_error_of(a) == "--mode 'bogus' is not a mode: use eager, piecewise, full, auto or compare");
}

TEST_CASE("run plan: --buckets must be positive, strictly increasing and within --max-prefill-tokens", "[run_plan]") {
  run_args a = tiny_args();
  a.buckets = "8,16,64";
  const run_plan p = make_run_plan(a);
  CHECK(p.explicit_buckets);
  CHECK(p.prefill_buckets == std::vector<int>{8, 16, 64});
  a.buckets = "16,8";
  CHECK_THAT(usage_error_of(a), Catch::Contains("--buckets '16,8'") && Catch::Contains("sorted and unique"));
  a.buckets = "8,8";
  CHECK_THAT(usage_error_of(a), Catch::Contains("sorted and unique"));
  a.buckets = "0,8";
  CHECK_THAT(usage_error_of(a), Catch::Contains("positive"));
  a.buckets = "8,x";
  CHECK_THAT(usage_error_of(a), Catch::Contains("'x' is not an integer"));
  a.buckets = ",";
  CHECK_THAT(usage_error_of(a), Catch::Contains("empty"));
  a.buckets = "8,4096";
  CHECK_THAT(usage_error_of(a), Catch::Contains("largest prefill bucket 4096 is above --max-prefill-tokens 2048"));
}

TEST_CASE("run plan: size arguments out of range are usage errors naming the flag", "[run_plan]") {
  auto with = [](int run_args::*field, int v) {
    run_args a = tiny_args();
    a.*field = v;
    return usage_error_of(a);
  };
  CHECK(with(&run_args::batch, 0) == "--batch 0 is out of range: it must be in 1..65536");
  CHECK_THAT(with(&run_args::gen, 0), Catch::StartsWith("--gen 0 is out of range"));
  CHECK_THAT(with(&run_args::prompt_len, -1), Catch::StartsWith("--prompt-len -1 is out of range"));
  CHECK_THAT(with(&run_args::max_prefill_tokens, 0), Catch::StartsWith("--max-prefill-tokens 0"));
  CHECK_THAT(with(&run_args::max_decode_batch, 1 << 20), Catch::StartsWith("--max-decode-batch 1048576"));
  run_args a = tiny_args();
  a.json_out = a.logits_out = "out";
  CHECK(usage_error_of(a) == "--json and --logits-out name the same file");
}

TEST_CASE("run plan: --prompt-ids are parsed and checked against the vocabulary", "[run_plan]") {
  run_args a = tiny_args();
  a.prompt_ids = "1,2,3;4,5";
  const run_plan p = make_run_plan(a);
  CHECK(p.prompts == std::vector<std::vector<int>>{{1, 2, 3}, {4, 5}});
  CHECK(p.limits.num_slots == 2);
  a.prompt_ids = "garbage";
  CHECK(input_error_of(a) == "--prompt-ids: prompt 0: 'garbage' is not an integer");
  a.prompt_ids = "1,2;3,4,384";  // tiny's vocabulary is 384
  CHECK(input_error_of(a) == "--prompt-ids: prompt 1, token 2: id 384 is outside the vocabulary [0, 384) of tiny");
  a.prompt_ids = "-1";
  CHECK_THAT(input_error_of(a), Catch::Contains("id -1 is outside the vocabulary"));
  a.prompt_ids = ";;";
  CHECK(input_error_of(a) == "--prompt-ids ';;' holds no prompt");
  a.prompt_ids = "1,99999999999";
  CHECK_THAT(input_error_of(a), Catch::Contains("'99999999999' is not an integer"));
}

TEST_CASE("run plan: --model DIR reads the checkpoint headers, --weights DIR alone is the same", "[run_plan]") {
  run_args a = tiny_args();
  a.model = (nh_test::data_dir() / "tiny").string();
  const run_plan p = make_run_plan(a);
  CHECK_FALSE(p.synthetic);
  CHECK(p.checkpoint_dir == nh_test::data_dir() / "tiny");
  CHECK(p.checkpoint.source.filename() == "model.safetensors");
  CHECK(p.checkpoint.shards == 1);
  // Every tensor of the checkpoint, and its data bytes as the header states them.
  const checkpoint ck(p.checkpoint_dir);
  CHECK(p.checkpoint.tensors == ck.names().size());
  std::uint64_t bytes = 0;
  for (const auto& n : ck.names()) bytes += ck.find(n).second->nbytes();
  CHECK(p.checkpoint.file_bytes == bytes);
  CHECK_THAT(p.weights_description(0), Catch::Contains("model.safetensors") && Catch::Contains("headers checked"));

  run_args w = tiny_args();
  w.model.clear();
  w.weights = a.model;
  const run_plan q = make_run_plan(w);
  CHECK_FALSE(q.synthetic);
  CHECK(q.config.vocab_size == p.config.vocab_size);

  // The config.json path also finds the checkpoint beside it.
  run_args c = tiny_args();
  c.model = (nh_test::data_dir() / "tiny" / "config.json").string();
  CHECK_FALSE(make_run_plan(c).synthetic);
}

TEST_CASE("run plan: bad checkpoints and configs are caught from the headers", "[run_plan]") {
  temp_dir t("run_plan_ckpt");
  run_args a = tiny_args();
  a.model = t.path.string();

  CHECK_THAT(input_error_of(a), Catch::Contains("neither a preset") || Catch::Contains("no config.json"));

  std::filesystem::copy_file(nh_test::data_dir() / "tiny" / "config.json", t.path / "config.json");
  CHECK_THAT(input_error_of(a), Catch::Contains("has no model.safetensors or model.safetensors.index.json") &&
                                    Catch::Contains("synthetic weights are only for presets"));

  std::ofstream(t.path / "model.safetensors").close();  // zero bytes
  CHECK_THAT(input_error_of(a), Catch::Contains("model.safetensors: truncated: 0 bytes"));

  std::filesystem::remove(t.path / "model.safetensors");
  std::filesystem::copy_file(nh_test::data_dir() / "tiny" / "model.safetensors", t.path / "model.safetensors");
  CHECK_FALSE(make_run_plan(a).synthetic);
  const auto full = std::filesystem::file_size(t.path / "model.safetensors");
  std::filesystem::resize_file(t.path / "model.safetensors", full - 1);  // the last tensor loses a byte
  CHECK_THAT(input_error_of(a), Catch::Contains("model.safetensors") &&
                                    (Catch::Contains("beyond") || Catch::Contains("truncated")));
  std::filesystem::resize_file(t.path / "model.safetensors", 100);  // inside the header
  CHECK_THAT(input_error_of(a), Catch::Contains("model.safetensors") && Catch::Contains("truncated or corrupt"));

  // A checkpoint for another config: the tensor and both shapes are named.
  run_args other = tiny_args();
  other.model = "small";
  other.weights = (nh_test::data_dir() / "tiny").string();
  CHECK_THAT(input_error_of(other), Catch::Contains("tensor"));

  // A truncated config.json.
  const std::string cfg = read_all(nh_test::data_dir() / "tiny" / "config.json");
  std::ofstream(t.path / "config.json", std::ios::trunc) << cfg.substr(0, cfg.size() / 2);
  CHECK_THAT(input_error_of(a), Catch::Contains("config.json: invalid JSON"));
}

TEST_CASE("run plan: output paths are checked without writing them", "[run_plan]") {
  temp_dir t("run_plan_out");
  const auto keep = t.path / "keep.json";
  std::ofstream(keep) << "keep";
  run_args a = tiny_args();
  a.json_out = keep.string();
  a.logits_out = (t.path / "new.npy").string();
  a.dot_dir = (t.path / "dot" / "nested").string();
  (void)make_run_plan(a);
  CHECK(read_all(keep) == "keep");  // not truncated
  CHECK_FALSE(std::filesystem::exists(t.path / "new.npy"));
  CHECK_FALSE(std::filesystem::exists(t.path / "dot"));

  a = tiny_args();
  a.json_out = (t.path / "missing" / "out.json").string();
  CHECK_THAT(input_error_of(a), Catch::Contains("--json") && Catch::Contains("does not exist"));
  a = tiny_args();
  a.logits_out = t.path.string();
  CHECK_THAT(input_error_of(a), Catch::Contains("--logits-out") && Catch::Contains("is a directory"));
  a = tiny_args();
  a.dot_dir = (keep / "sub").string();
  CHECK_THAT(input_error_of(a), Catch::Contains("--dot") && Catch::Contains("is not a directory"));
  CHECK_NOTHROW(check_output_file("relative-file-in-cwd.json", "--json"));
}

TEST_CASE("run plan: shapes the GPU kernels do not support are refused before any weight is read", "[run_plan]") {
  model_config c = preset("tiny");
  CHECK_NOTHROW(check_gpu_support(c));
  c.head_dim = 64;
  CHECK_THAT(error_of([&] { check_gpu_support(c); }), Catch::Contains("tiny: head_dim 64 is not 128"));
  c = preset("tiny");
  c.mamba_head_dim = 48;
  CHECK_THAT(error_of([&] { check_gpu_support(c); }), Catch::Contains("mamba_head_dim 48"));
  c = preset("tiny");
  c.conv_kernel = 3;
  CHECK_THAT(error_of([&] { check_gpu_support(c); }), Catch::Contains("conv_kernel 3 is not 4"));
}

TEST_CASE("run plan: the printed plan names model, weights, buckets, modes and memory", "[run_plan]") {
  run_args a = tiny_args();
  a.mode_name = "compare";
  a.buckets = "8,16";
  const std::string s = format_plan(make_run_plan(a), a);
  CHECK_THAT(s, Catch::Contains("model   tiny: 6 layers"));
  CHECK_THAT(s, Catch::Contains("weights synthetic weights (preset tiny, no checkpoint), seed 0"));
  CHECK_THAT(s, Catch::Contains("prompts 2 sequences of 3 tokens (random ids, seed 0), up to 4 generated each"));
  CHECK_THAT(s, Catch::Contains("buckets prefill (2 sizes, --buckets): 8,16"));
  CHECK_THAT(s, Catch::Contains("decode (20 sizes, generated): 1,2,3"));
  CHECK_THAT(s, Catch::Contains("modes   eager, piecewise, full"));
  CHECK_THAT(s, Catch::Contains("MiB needed (estimate)"));
}

TEST_CASE("run plan: MoE models pass the GPU checks, and the MoE kernels' limits and the memory are named", "[run_plan][moe]") {
  CHECK(gpu_support_problems(preset("tiny")).empty());
  CHECK(gpu_support_problems(preset("tiny-moe")).empty());
  CHECK(gpu_support_problems(preset("nemotron-3-nano-30b-a3b")).empty());
  CHECK(gpu_support_problems(preset("nemotron-3-super-120b-a12b")).empty());
  // Every limit hit, in one message.
  model_config c = preset("tiny-moe");
  c.head_dim = 64;
  c.conv_kernel = 3;
  c.moe_intermediate_size = 60;
  c.num_experts_per_tok = 40;
  c.n_routed_experts = 1100;
  const std::string p = gpu_support_problems(c);
  CHECK_THAT(p, Contains("moe_intermediate_size 60 is not a multiple of 8") && Contains("head_dim 64 is not 128") &&
                    Contains("conv_kernel 3 is not 4") && Contains("num_experts_per_tok 40 is above 32") &&
                    Contains("n_routed_experts 1100 is above 1024") && Contains("limits of the GPU kernels"));
  CHECK(gpu_support_problems(preset("nemotron-h-47b")).empty());

  run_args a = tiny_args();
  a.model = "tiny-moe";
  CHECK_NOTHROW(make_run_plan(a));
  // A model larger than one card plans (--dry-run shows it) and says so; the GPU run refuses
  // it before allocating (main.cpp, against the free memory).
  a.model = "nemotron-3-super-120b-a12b";
  const run_plan big = make_run_plan(a);
  CHECK(big.memory.weights > kH200UsableBytes);
  CHECK_THAT(format_plan(big, a), Contains("more than one H200 holds") && Contains("--layers N"));
  // The estimate counts the MoE weights: what synthetic_weights holds.
  const model_config m = preset("tiny-moe");
  gpu_model_limits lim;
  lim.max_prefill_tokens = 64;
  lim.num_slots = 2;
  lim.max_decode_batch = 2;
  lim.max_context = 16;
  lim.max_decode_steps = 4;
  const memory_estimate e = estimate_memory(m, lim, 4, 2, {"auto"});
  CHECK(e.weights == synthetic_weights(m, 0).bytes());
  CHECK(e.weights > estimate_memory(preset("tiny"), lim, 4, 2, {"auto"}).weights);
}

TEST_CASE("run plan: GPU limits of attention group size and SSM state size", "[run_plan]") {
  // Every dense preset runs on the GPU: 47B / 56B have N = 256, the others ratio 4 or 5.
  for (const char* name : {"nano-9b-v2", "nano-12b-v2", "nemotron-h-4b", "nemotron-h-8b", "nemotron-h-47b",
                           "nemotron-h-56b", "nemotron-3-nano-4b"}) {
    CAPTURE(name);
    CHECK(gpu_support_problems(preset(name)).empty());
  }
  // The MoE presets' attention (32/2, 64/2: ratios 16 and 32) is no longer a limit.
  for (const char* name : {"nemotron-3-nano-30b-a3b", "nemotron-3-super-120b-a12b", "nemotron-3-ultra-550b-a55b"}) {
    CAPTURE(name);
    CHECK_THAT(gpu_support_problems(preset(name)), !Contains("query heads per KV head") && !Contains("ssm_state_size"));
  }
  model_config c = preset("tiny");
  c.num_attention_heads = 32;
  c.num_key_value_heads = 1;
  c.validate();
  CHECK(gpu_support_problems(c).empty());
  c.num_attention_heads = 66;
  c.num_key_value_heads = 2;
  c.validate();
  CHECK_THAT(gpu_support_problems(c), Contains("33 query heads per KV head (at most 32)"));
  c = preset("tiny");
  for (int n : {64, 128, 256}) {
    c.ssm_state_size = n;
    c.validate();
    CHECK(gpu_support_problems(c).empty());
  }
  for (int n : {32, 192, 512}) {
    c.ssm_state_size = n;
    c.validate();
    CHECK_THAT(gpu_support_problems(c), Contains("ssm_state_size " + std::to_string(n) + " is not 64, 128 or 256"));
  }
}

TEST_CASE("run plan: --layers N runs the first N layers of the same shapes", "[run_plan][moe]") {
  run_args a = tiny_args();
  a.model = "tiny-moe";
  a.layers = 3;  // "M*M": no MoE layer
  const run_plan p = make_run_plan(a);
  CHECK(p.config.pattern == "M*M");
  CHECK(p.config.hidden_size == 128);
  CHECK(p.full_layers == 6);
  CHECK(p.synthetic);
  const std::string s = format_plan(p, a);
  CHECK_THAT(s, Contains("layers  --layers 3: the first 3 of the model's 6 layers (same shapes)"));
  CHECK_THAT(s, Contains("model   tiny-moe: 3 layers \"M*M\""));
  CHECK(p.memory.weights == synthetic_weights(p.config, 0).bytes());
  a.layers = 4;  // "M*ME": with its MoE layer
  CHECK(make_run_plan(a).config.pattern == "M*ME");
  a.layers = 0;
  CHECK(usage_error_of(a) == "--layers 0 is out of range: tiny-moe has 6 layers (use 1..6)");
  a.layers = 7;
  CHECK_THAT(usage_error_of(a), Contains("--layers 7 is out of range"));
  a = tiny_args();
  a.model = (nh_test::data_dir() / "tiny").string();
  a.layers = 2;
  CHECK_THAT(usage_error_of(a), Contains("--layers 2: a truncated stack runs synthetic weights"));
  // A big model truncated to its first layers fits; the plan of one that does not fit says so.
  a = tiny_args();
  a.model = "nemotron-3-nano-30b-a3b";
  a.layers = 1;
  run_plan q = make_run_plan(a);
  CHECK(q.config.pattern == "M");
  CHECK_THAT(format_plan(q, a), !Contains("more than one H200"));
  q.memory.weights = 200ull << 30;
  CHECK_THAT(format_plan(q, a), Contains("more than one H200 holds (140.00 GiB)"));
}

TEST_CASE("run plan: --dtype fp8 for a preset plans FP8 Mamba and MLP projections and estimates them at one byte",
          "[run_plan][fp8]") {
  run_args a = tiny_args();
  const run_plan bf = make_run_plan(a);
  CHECK_FALSE(bf.fp8);
  CHECK(dtype_label(bf) == "bf16");
  CHECK(bf.calibration_weights == 0);
  a.dtype = "fp8";
  const run_plan p = make_run_plan(a);
  CHECK(p.synthetic);
  CHECK(p.fp8);
  CHECK(dtype_label(p) == "fp8");
  // "M*M-M-": three Mamba layers (in_proj, out_proj) and two MLP layers (up, down).
  const std::vector<std::string> names = synthetic_fp8_weights(p.config);
  REQUIRE(names.size() == 10);
  CHECK(names.front() == "backbone.layers.0.mixer.in_proj.weight");
  CHECK(names.back() == "backbone.layers.5.mixer.down_proj.weight");
  for (const std::string& n : names) {
    CHECK(synthetic_fp8_quant_config(p.config).algo_of(module_of(n)) == quant_algo::fp8);
  }
  const quant_config q = synthetic_fp8_quant_config(p.config);
  for (const char* bf16_module : {"backbone.layers.1.mixer.q_proj", "backbone.layers.1.mixer.o_proj",
                                  "backbone.layers.0.mixer.conv1d", "lm_head", "backbone.embeddings"})
    CHECK(q.algo_of(bf16_module) == quant_algo::none);
  // The estimate: each FP8 weight one byte an element (half its bf16 bytes) plus two scale slots.
  std::uint64_t fp8_elems = 0;
  std::uint64_t widest = 0;
  for (const tensor_entry& e : model_tensors(p.config)) {
    if (std::find(names.begin(), names.end(), e.name) == names.end()) continue;
    fp8_elems += static_cast<std::uint64_t>(e.shape[0] * e.shape[1]);
    widest = std::max(widest, static_cast<std::uint64_t>(e.shape[1]));
  }
  CHECK(p.memory.weights == bf.memory.weights - fp8_elems + names.size() * kFp8ScaleBytes);
  CHECK(widest == 256);  // down_proj's input: the intermediate size
  CHECK(p.memory.workspaces == bf.memory.workspaces + 2048 * widest);  // the FP8 input scratch, the most rows
  // The calibration's bf16 model comes first: its weights are the bf16 model's.
  CHECK(p.calibration_weights == bf.memory.weights);
  const std::vector<dtype> types = synthetic_weight_types(p.config, true);
  CHECK(std::count(types.begin(), types.end(), dtype::fp8_e4m3) == 10);
  const std::vector<dtype> table = synthetic_weight_types(p.config, false);
  CHECK(std::count(table.begin(), table.end(), dtype::fp8_e4m3) == 0);
  CHECK(table.size() == types.size());
  const std::string s = format_plan(p, a);
  CHECK_THAT(s, Contains("dtype   fp8 (the bf16 model of the calibration first"));
  CHECK_THAT(s, Contains("dtype fp8: 10 Mamba / MLP projections FP8 W8A8"));
  CHECK_THAT(format_plan(bf, tiny_args()), Contains("dtype   bf16\n"));
  // The 9B preset: FP8 saves half of the projections' bytes.
  a.model = "nano-9b-v2";
  a.dtype = "bf16";
  const std::uint64_t w9_bf16 = make_run_plan(a).memory.weights;
  a.dtype = "fp8";
  const run_plan p9 = make_run_plan(a);
  CHECK(p9.memory.weights < w9_bf16 * 6 / 10);
  CHECK(synthetic_fp8_weights(p9.config).size() == 2 * 27 + 2 * 25);
}

TEST_CASE("run plan: --dtype nvfp4 for a preset plans NVFP4 Mamba and MLP projections in the GEMV's device layout",
          "[run_plan][nvfp4]") {
  run_args a = tiny_args();
  const run_plan bf = make_run_plan(a);
  a.dtype = "nvfp4";
  const run_plan p = make_run_plan(a);
  CHECK(p.synthetic);
  CHECK(p.nvfp4);
  CHECK_FALSE(p.fp8);
  CHECK(dtype_label(p) == "nvfp4");
  CHECK(p.calibration_weights == 0);  // weight-only: no calibration
  const std::vector<std::string> names = synthetic_fp8_weights(p.config);
  REQUIRE(names.size() == 10);
  const quant_config q = synthetic_nvfp4_quant_config(p.config);
  for (const std::string& n : names) CHECK(q.algo_of(module_of(n)) == quant_algo::w4a16_nvfp4);
  CHECK(q.algo_of("backbone.layers.1.mixer.q_proj") == quant_algo::none);
  CHECK(q.algo_of("lm_head") == quant_algo::none);
  // The estimate: each NVFP4 weight in the device layout (elements, block scales, the global
  // scale's slot) instead of two bytes an element; the dequantization scratch for the prefill.
  std::uint64_t saved = 0, largest = 0;
  for (const tensor_entry& e : model_tensors(p.config)) {
    if (std::find(names.begin(), names.end(), e.name) == names.end()) continue;
    const nvfp4_layout L{static_cast<int>((e.shape[0] + 7) / 8 * 8), static_cast<int>(e.shape[1])};
    saved += static_cast<std::uint64_t>(e.shape[0] * e.shape[1]) * 2 - (L.packed_bytes() + L.scale_bytes() + kFp8ScaleSlotBytes);
    largest = std::max(largest, static_cast<std::uint64_t>(L.rows) * static_cast<std::uint64_t>(L.cols));
  }
  CHECK(p.memory.weights == bf.memory.weights - saved);
  CHECK(p.memory.workspaces == bf.memory.workspaces + 2 * largest);
  const std::vector<dtype> types = synthetic_weight_types(p.config, dtype::nvfp4);
  CHECK(std::count(types.begin(), types.end(), dtype::nvfp4) == 10);
  const std::string s = format_plan(p, a);
  CHECK_THAT(s, Contains("dtype   nvfp4\n"));
  CHECK_THAT(s, Contains("dtype nvfp4: 10 Mamba / MLP projections NVFP4 weight-only"));
  // The 9B preset: about a quarter of the projections' bf16 bytes.
  a.model = "nano-9b-v2";
  a.dtype = "bf16";
  const std::uint64_t w9_bf16 = make_run_plan(a).memory.weights;
  a.dtype = "nvfp4";
  CHECK(make_run_plan(a).memory.weights < w9_bf16 * 45 / 100);
}

TEST_CASE("run plan: an unknown dtype and --dtype fp8 / nvfp4 with a checkpoint are usage errors", "[run_plan][fp8]") {
  run_args a = tiny_args();
  a.dtype = "int8";
  CHECK(usage_error_of(a) == "--dtype 'int8' is not a dtype: use bf16, fp8 or nvfp4");
  a.dtype = "fp8";
  a.model = (nh_test::data_dir() / "tiny").string();
  CHECK_THAT(usage_error_of(a), Contains("--dtype fp8 is for synthetic weights (presets)") &&
                                    Contains("carries its own quantization"));
  a.dtype = "bf16";
  CHECK_FALSE(make_run_plan(a).fp8);  // a checkpoint with the default dtype plans as before
  a.model = "tiny";
  a.weights = (nh_test::data_dir() / "tiny").string();
  a.dtype = "fp8";
  CHECK_THAT(usage_error_of(a), Contains("--dtype fp8 is for synthetic weights"));
}
