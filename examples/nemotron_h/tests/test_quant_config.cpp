// The ModelOpt quantization declarations (model/quant_config.hpp): hf_quant_config.json and
// config.json's quantization_config, exclude wildcards, mixed precision, and the errors.
#include <catch2/catch.hpp>

#include <fstream>

#include "model/quant_config.hpp"
#include "model_test_util.hpp"

using namespace nemotron_h;
using nh_test::error_of;

TEST_CASE("quant config: hf_quant_config.json with FP8, an FP8 KV cache and exclude wildcards", "[quant]") {
  // The shape of Nano-9B-v2-FP8's file: attention and conv1d stay bf16.
  const auto c = parse_quant_config(R"({"producer": {"name": "modelopt", "version": "0.29"},
      "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8",
                       "exclude_modules": ["lm_head", "backbone.layers.*.mixer.conv1d", "backbone.layers.1[26].mixer*"]}})",
                                    "hf_quant_config.json", true);
  REQUIRE(c);
  CHECK(c->algo == quant_algo::fp8);
  CHECK(c->kv_cache == quant_algo::fp8);
  CHECK(c->algo_of("backbone.layers.0.mixer.in_proj") == quant_algo::fp8);
  CHECK(c->algo_of("backbone.layers.3.mixer.down_proj") == quant_algo::fp8);
  CHECK(c->algo_of("lm_head") == quant_algo::none);
  CHECK(c->algo_of("backbone.layers.7.mixer.conv1d") == quant_algo::none);
  CHECK(c->algo_of("backbone.layers.12.mixer.q_proj") == quant_algo::none);   // [26] matches 12
  CHECK(c->algo_of("backbone.layers.16.mixer.o_proj") == quant_algo::none);
  CHECK(c->algo_of("backbone.layers.14.mixer.q_proj") == quant_algo::fp8);    // not 14
  CHECK(c->algo_of("lm_head.extra") == quant_algo::fp8);                      // a whole-name match
  CHECK_THAT(c->summary(), Catch::Contains("FP8 (ModelOpt, hf_quant_config.json), KV cache FP8, 3 exclude patterns"));
}

TEST_CASE("quant config: config.json's quantization_config, NVFP4 and mixed precision", "[quant]") {
  CHECK_FALSE(parse_quant_config(R"({"model_type": "nemotron_h"})", "config.json", false));
  CHECK_FALSE(parse_quant_config(R"({"quantization_config": null})", "config.json", false));
  const auto n = parse_quant_config(R"({"quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4",
      "group_size": 16, "ignore": ["*router*", "lm_head"], "kv_cache_scheme": {"type": "float", "num_bits": 8}}})",
                                    "config.json", false);
  REQUIRE(n);
  CHECK(n->algo == quant_algo::nvfp4);
  CHECK(n->group_size == 16);
  CHECK(n->kv_cache == quant_algo::fp8);
  CHECK(n->algo_of("backbone.layers.1.mixer.gate.router") == quant_algo::none);
  CHECK(n->algo_of("backbone.layers.1.mixer.experts.0.up_proj") == quant_algo::nvfp4);

  // Super's recipe: routed experts NVFP4, Mamba projections FP8, the rest bf16.
  const auto m = parse_quant_config(R"({"quantization": {"quant_algo": "MIXED_PRECISION",
      "quantized_layers": {"backbone.layers.0.mixer.in_proj": {"quant_algo": "FP8"},
                           "backbone.layers.1.mixer.experts.3.up_proj": {"quant_algo": "NVFP4", "group_size": 16}}}})",
                                    "hf_quant_config.json", true);
  REQUIRE(m);
  CHECK(m->mixed);
  CHECK(m->algo_of("backbone.layers.0.mixer.in_proj") == quant_algo::fp8);
  CHECK(m->algo_of("backbone.layers.1.mixer.experts.3.up_proj") == quant_algo::nvfp4);
  CHECK(m->algo_of("backbone.layers.0.mixer.out_proj") == quant_algo::none);
  CHECK_THAT(m->summary(), Catch::Contains("mixed precision (2 quantized modules)"));
}

TEST_CASE("quant config: bad declarations name the file and the field", "[quant]") {
  auto hf = [](const std::string& q) {
    return error_of([&] { (void)parse_quant_config(R"({"quantization": )" + q + "}", "hf_quant_config.json", true); });
  };
  CHECK_THAT(hf(R"({"quant_algo": "INT4_AWQ"})"),
             Catch::Contains("hf_quant_config.json: quant_algo 'INT4_AWQ' is not supported"));
  CHECK_THAT(hf(R"({"quant_algo": 8})"), Catch::Contains("quant_algo must be a string"));
  CHECK_THAT(hf(R"({"quant_algo": "FP8", "kv_cache_quant_algo": "NVFP4"})"),
             Catch::Contains("kv_cache_quant_algo 'NVFP4' is not supported"));
  CHECK_THAT(hf(R"({"quant_algo": "FP8", "exclude_modules": "lm_head"})"),
             Catch::Contains("exclude_modules must be a list"));
  CHECK_THAT(hf(R"({"quant_algo": "FP8", "exclude_modules": ["a", 3]})"), Catch::Contains("holds 3"));
  CHECK_THAT(hf(R"({"quant_algo": "NVFP4", "group_size": 32})"), Catch::Contains("group_size 32 is not supported for NVFP4"));
  CHECK_THAT(hf(R"({"quant_algo": "MIXED_PRECISION"})"), Catch::Contains("needs a \"quantized_layers\" object"));
  CHECK_THAT(hf(R"({"quant_algo": "MIXED_PRECISION", "quantized_layers": {"x": {}}})"),
             Catch::Contains("quantized_layers.x has no quant_algo"));
  CHECK_THAT(error_of([] { (void)parse_quant_config("{", "hf_quant_config.json", true); }), Catch::Contains("invalid JSON"));
  CHECK_THAT(error_of([] { (void)parse_quant_config("{}", "hf_quant_config.json", true); }),
             Catch::Contains("no \"quantization\" object"));
  CHECK_THAT(error_of([] {
               (void)parse_quant_config(R"({"quantization_config": {"quant_method": "gptq"}})", "config.json", false);
             }),
             Catch::Contains("config.json: quantization_config.quant_method 'gptq' is not supported (modelopt)"));
}

TEST_CASE("quant config: read from a checkpoint directory, hf_quant_config.json first", "[quant]") {
  nh_test::temp_dir d("quant");
  CHECK_FALSE(read_quant_config(d.path));
  std::ofstream(d.path / "config.json") << R"({"quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}})";
  CHECK(read_quant_config(d.path)->algo == quant_algo::nvfp4);
  std::ofstream(d.path / "hf_quant_config.json") << R"({"quantization": {"quant_algo": "FP8"}})";
  const auto q = read_quant_config(d.path);
  CHECK(q->algo == quant_algo::fp8);
  CHECK_THAT(q->source, Catch::Contains("hf_quant_config.json"));
}
