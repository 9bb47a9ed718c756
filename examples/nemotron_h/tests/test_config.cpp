// config.json parsing, validation and presets.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>

#include "model/config.hpp"
#include "model_test_util.hpp"

using namespace nemotron_h;
using Catch::Matchers::Contains;
using nh_test::error_of;
using json = nlohmann::json;

namespace {

json base_config() {
  return json::parse(R"({
    "model_type": "nemotron_h", "architectures": ["NemotronHForCausalLM"],
    "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256,
    "num_hidden_layers": 6, "hybrid_override_pattern": "M*M-M-",
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
    "mamba_num_heads": 8, "mamba_head_dim": 16, "ssm_state_size": 16, "n_groups": 2,
    "conv_kernel": 4, "chunk_size": 16, "layer_norm_epsilon": 1e-5,
    "time_step_min": 0.001, "time_step_max": 0.1, "time_step_limit": [0.0, {"__float__": "Infinity"}],
    "use_conv_bias": true, "use_bias": false, "mlp_bias": false, "attention_bias": false,
    "mlp_hidden_act": "relu2", "mamba_hidden_act": "silu", "tie_word_embeddings": false
  })");
}

std::string err(const json& j) {
  return error_of([&] { (void)parse_config_json_text(j.dump(), "cfg/config.json"); });
}

}  // namespace

TEST_CASE("config: a valid config.json parses with every field", "[config]") {
  const model_config c = parse_config_json_text(base_config().dump(), "cfg/config.json");
  CHECK(c.name == "cfg/config.json");
  CHECK(c.pattern == "M*M-M-");
  REQUIRE(c.num_layers() == 6);
  CHECK(c.layers[0] == layer_kind::mamba);
  CHECK(c.layers[1] == layer_kind::attention);
  CHECK(c.layers[3] == layer_kind::mlp);
  CHECK(c.vocab_size == 512);
  CHECK(c.hidden_size == 128);
  CHECK(c.intermediate_size == 256);
  CHECK(c.num_attention_heads == 4);
  CHECK(c.num_key_value_heads == 2);
  CHECK(c.head_dim == 32);
  CHECK(c.mamba_num_heads == 8);
  CHECK(c.mamba_head_dim == 16);
  CHECK(c.ssm_state_size == 16);
  CHECK(c.n_groups == 2);
  CHECK(c.conv_kernel == 4);
  CHECK(c.chunk_size == 16);
  CHECK(c.eps == 1e-5);
  CHECK(c.time_step_min == 0.001);
  CHECK(c.time_step_max == 0.1);
  CHECK(c.time_step_limit_lo == 0.0);
  CHECK(std::isinf(c.time_step_limit_hi));
  CHECK(c.use_conv_bias);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.d_inner() == 128);
  CHECK(c.conv_dim() == 128 + 2 * 2 * 16);
  CHECK(c.in_proj_dim() == 2 * 128 + 2 * 2 * 16 + 8);
  CHECK(c.q_dim() == 128);
  CHECK(c.kv_dim() == 64);
  CHECK(c.count(layer_kind::mamba) == 3);
  CHECK(c.index_in_kind(4) == 2);
  CHECK(c.index_in_kind(5) == 1);
  CHECK_THAT(c.summary(), Contains("M*M-M-"));
}

TEST_CASE("config: layers_block_type in both spellings, and field aliases", "[config]") {
  json j = base_config();
  j.erase("hybrid_override_pattern");
  j["layers_block_type"] = {"linear_attention", "full_attention", "mamba", "mlp", "mamba", "mlp"};
  j.erase("head_dim");
  j["attention_head_dim"] = 32;
  j.erase("n_groups");
  j["mamba_n_groups"] = 2;
  j.erase("conv_kernel");
  j["mamba_d_conv"] = 4;
  const model_config c = parse_config_json_text(j.dump(), "x");
  CHECK(c.pattern == "M*M-M-");
  CHECK(c.head_dim == 32);
  CHECK(c.n_groups == 2);
  CHECK(c.conv_kernel == 4);

  j["layers_block_type"] = {"mamba", "attention", "mamba", "mlp", "mamba", "mlp"};
  CHECK(parse_config_json_text(j.dump(), "x").pattern == "M*M-M-");
  // Both fields present and agreeing is fine; disagreeing is an error.
  j["hybrid_override_pattern"] = "M*M-M-";
  CHECK(parse_config_json_text(j.dump(), "x").pattern == "M*M-M-");
  j["hybrid_override_pattern"] = "MMM-M-";
  CHECK_THAT(err(j), Contains("cfg/config.json") && Contains("disagree"));
  // num_key_value_heads defaults to num_attention_heads; time_step_limit may be a plain pair.
  j = base_config();
  j.erase("num_key_value_heads");
  j["time_step_limit"] = {0.0, 1e9};
  const model_config d = parse_config_json_text(j.dump(), "x");
  CHECK(d.num_key_value_heads == 4);
  CHECK(d.time_step_limit_hi == 1e9);
}

TEST_CASE("config: the transformers fixture's config.json parses", "[config]") {
  const model_config c = parse_config_json(nh_test::data_dir() / "tiny" / "config.json");
  const model_config t = preset("tiny");
  CHECK(c.pattern == "M*M-M-");
  CHECK(c.vocab_size == t.vocab_size);
  CHECK(c.hidden_size == t.hidden_size);
  CHECK(c.intermediate_size == t.intermediate_size);
  CHECK(c.head_dim == t.head_dim);
  CHECK(c.num_attention_heads == t.num_attention_heads);
  CHECK(c.num_key_value_heads == t.num_key_value_heads);
  CHECK(c.mamba_num_heads == t.mamba_num_heads);
  CHECK(c.mamba_head_dim == t.mamba_head_dim);
  CHECK(c.ssm_state_size == t.ssm_state_size);
  CHECK(c.n_groups == t.n_groups);
  CHECK(c.chunk_size == t.chunk_size);
  CHECK(std::isinf(c.time_step_limit_hi));
}

TEST_CASE("config: missing and mistyped fields name the file and the field", "[config]") {
  for (const char* f : {"vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "head_dim",
                        "mamba_num_heads", "mamba_head_dim", "ssm_state_size", "n_groups", "conv_kernel",
                        "chunk_size", "layer_norm_epsilon", "model_type"}) {
    json j = base_config();
    j.erase(f);
    CAPTURE(f);
    CHECK_THAT(err(j), Contains("cfg/config.json") && Contains("missing field") && Contains(f));
  }
  json j = base_config();
  j.erase("hybrid_override_pattern");
  CHECK_THAT(err(j), Contains("missing field 'hybrid_override_pattern'") && Contains("layers_block_type"));

  j = base_config();
  j["hidden_size"] = "128";
  CHECK_THAT(err(j), Contains("cfg/config.json") && Contains("'hidden_size' must be an integer"));
  j = base_config();
  j["hidden_size"] = 128.5;
  CHECK_THAT(err(j), Contains("'hidden_size' must be an integer"));
  j = base_config();
  j["hidden_size"] = -4;
  CHECK_THAT(err(j), Contains("'hidden_size'") && Contains("out of range"));
  j = base_config();
  j["hidden_size"] = 18446744073709551615ull;
  CHECK_THAT(err(j), Contains("'hidden_size'") && Contains("out of range"));
  j = base_config();
  j["use_conv_bias"] = 1;
  CHECK_THAT(err(j), Contains("'use_conv_bias' must be a boolean"));
  j = base_config();
  j["layer_norm_epsilon"] = "1e-5";
  CHECK_THAT(err(j), Contains("'layer_norm_epsilon' must be a number"));
  j = base_config();
  j["layer_norm_epsilon"] = 0;
  CHECK_THAT(err(j), Contains("layer_norm_epsilon"));
  j = base_config();
  j["hybrid_override_pattern"] = 5;
  CHECK_THAT(err(j), Contains("'hybrid_override_pattern' must be a string"));
  j = base_config();
  j["time_step_limit"] = {0.0};
  CHECK_THAT(err(j), Contains("'time_step_limit' must be an array of two numbers"));
  j = base_config();
  j["model_type"] = "llama";
  CHECK_THAT(err(j), Contains("'model_type'") && Contains("nemotron_h"));
}

TEST_CASE("config: inconsistent values are rejected", "[config]") {
  json j = base_config();
  j["num_key_value_heads"] = 3;
  CHECK_THAT(err(j), Contains("cfg/config.json") && Contains("num_attention_heads (4) is not a multiple of num_key_value_heads (3)"));
  j = base_config();
  j["n_groups"] = 3;
  CHECK_THAT(err(j), Contains("mamba_num_heads (8) is not a multiple of n_groups (3)"));
  j = base_config();
  j["num_hidden_layers"] = 7;
  CHECK_THAT(err(j), Contains("'num_hidden_layers' = 7") && Contains("6 layers"));
  j = base_config();
  j["hybrid_override_pattern"] = "M*MXM-";
  CHECK_THAT(err(j), Contains("unknown block type 'X' at layer 3"));
  j = base_config();
  j["hybrid_override_pattern"] = "";
  j.erase("num_hidden_layers");
  CHECK_THAT(err(j), Contains("empty"));
  j = base_config();
  j.erase("hybrid_override_pattern");
  j["layers_block_type"] = {"mamba", "attention", "mamba", "ffn", "mamba", "mlp"};
  CHECK_THAT(err(j), Contains("'layers_block_type'[3]") && Contains("\"ffn\""));
  j["layers_block_type"] = {"mamba", "attention", "mamba", 3, "mamba", "mlp"};
  CHECK_THAT(err(j), Contains("'layers_block_type'[3] must be a string"));
  j = base_config();
  j["time_step_min"] = 0.5;
  CHECK_THAT(err(j), Contains("time_step_min"));
}

TEST_CASE("config: MoE layers parse (test_moe.cpp checks them), unsupported features give clear errors", "[config]") {
  json j = base_config();
  j["hybrid_override_pattern"] = "M*MEM-";
  CHECK(parse_config_json_text(j.dump(), "x").layers[3] == layer_kind::moe);
  j = base_config();
  j.erase("hybrid_override_pattern");
  j["layers_block_type"] = {"mamba", "moe", "mamba", "mlp", "mamba", "mlp"};
  CHECK(parse_config_json_text(j.dump(), "x").count(layer_kind::moe) == 1);
  j["layers_block_type"] = {"mamba", "experts", "mamba", "mlp", "mamba", "mlp"};
  CHECK_THAT(err(j), Contains("'layers_block_type'[1]: unknown block type \"experts\"") && Contains("moe"));
  for (const char* f : {"use_bias", "mlp_bias", "attention_bias", "mamba_proj_bias"}) {
    j = base_config();
    j[f] = true;
    CAPTURE(f);
    CHECK_THAT(err(j), Contains("cfg/config.json") && Contains(f) && Contains("not supported"));
  }
  j = base_config();
  j["mlp_hidden_act"] = "gelu";
  CHECK_THAT(err(j), Contains("'mlp_hidden_act' = \"gelu\" is not supported"));
  j = base_config();
  j["mamba_hidden_act"] = "relu";
  CHECK_THAT(err(j), Contains("'mamba_hidden_act' = \"relu\" is not supported"));
}

TEST_CASE("config: malformed JSON never crashes", "[config]") {
  CHECK_THAT(error_of([] { (void)parse_config_json_text("{\"a\": ", "bad.json"); }),
             Contains("bad.json") && Contains("invalid JSON"));
  CHECK_THAT(error_of([] { (void)parse_config_json_text("[1, 2]", "bad.json"); }), Contains("must be a JSON object"));
  CHECK_THAT(error_of([] { (void)parse_config_json_text("", "bad.json"); }), Contains("invalid JSON"));
  CHECK_THAT(error_of([] { (void)parse_config_json_text(std::string(100000, '['), "deep.json"); }),
             Contains("deep.json") && Contains("nested deeper"));
  // Every prefix of a valid config either parses or throws config_error.
  const std::string text = base_config().dump();
  for (std::size_t n = 0; n < text.size(); ++n) {
    const std::string e = error_of([&] { (void)parse_config_json_text(text.substr(0, n), "p"); });
    CHECK(e.rfind("<other", 0) != 0);
  }
}

TEST_CASE("config: presets", "[config]") {
  const auto names = list_presets();
  REQUIRE(names.front() == "small");
  for (const auto& n : names) {
    const model_config c = preset(n);
    CAPTURE(n);
    CHECK(c.name == n);
    CHECK_NOTHROW(c.validate());
    CHECK(c.count(layer_kind::mamba) > 0);
    CHECK(c.count(layer_kind::attention) > 0);
    CHECK(c.count(layer_kind::mlp) + c.count(layer_kind::moe) > 0);  // Nemotron 3 MoE models have no '-'
  }
  const model_config s = preset("small");
  CHECK(s.num_layers() == 52);
  CHECK(s.hidden_size % 64 == 0);
  CHECK((s.head_dim == 64 || s.head_dim == 128));
  CHECK(s.mamba_head_dim == 64);
  CHECK(s.chunk_size == 128);
  CHECK(s.vocab_size >= 4096);
  CHECK(s.vocab_size <= 8192);

  const model_config n9 = preset("nano-9b-v2");
  CHECK(n9.num_layers() == 56);
  CHECK(n9.count(layer_kind::mamba) == 27);
  CHECK(n9.count(layer_kind::attention) == 4);
  CHECK(n9.count(layer_kind::mlp) == 25);
  CHECK(n9.layers[14] == layer_kind::attention);
  CHECK(n9.layers[21] == layer_kind::attention);
  CHECK(n9.layers[30] == layer_kind::attention);
  CHECK(n9.layers[39] == layer_kind::attention);
  CHECK(n9.hidden_size == 4480);
  CHECK(n9.intermediate_size == 15680);
  CHECK(n9.num_attention_heads == 40);
  CHECK(n9.num_key_value_heads == 8);
  CHECK(n9.head_dim == 128);
  CHECK(n9.mamba_num_heads == 128);
  CHECK(n9.mamba_head_dim == 80);
  CHECK(n9.ssm_state_size == 128);
  CHECK(n9.n_groups == 8);
  CHECK(n9.vocab_size == 131072);
  CHECK(n9.conv_kernel == 4);

  const model_config h8 = preset("nemotron-h-8b");
  CHECK(h8.num_layers() == 52);
  CHECK(h8.count(layer_kind::mamba) == 24);
  CHECK(h8.count(layer_kind::attention) == 4);
  CHECK(h8.count(layer_kind::mlp) == 24);
  CHECK(h8.hidden_size == 4096);
  CHECK(h8.intermediate_size == 21504);
  CHECK(h8.num_attention_heads == 32);
  CHECK(h8.num_key_value_heads == 8);
  CHECK(h8.mamba_num_heads == 128);
  CHECK(h8.mamba_head_dim == 64);
  CHECK(h8.ssm_state_size == 128);
  CHECK(h8.n_groups == 8);
  CHECK(h8.num_parameters() > 7'500'000'000LL);
  CHECK(h8.num_parameters() < 8'500'000'000LL);

  CHECK_THAT(error_of([] { (void)preset("huge"); }), Contains("unknown model preset \"huge\"") && Contains("small"));
}

TEST_CASE("config: resolve_model takes a preset, a file or a directory", "[config]") {
  CHECK(resolve_model("small").name == "small");
  const auto dir = nh_test::data_dir() / "tiny";
  CHECK(resolve_model(dir.string()).pattern == "M*M-M-");
  CHECK(resolve_model((dir / "config.json").string()).pattern == "M*M-M-");
  CHECK_THAT(error_of([] { (void)resolve_model("/nonexistent/nowhere"); }),
             Contains("/nonexistent/nowhere") && Contains("neither a preset"));
  nh_test::temp_dir td("cfg");
  CHECK_THAT(error_of([&] { (void)resolve_model(td.path.string()); }), Contains("no config.json"));
  {
    std::ofstream f(td.path / "config.json");
    f << "{\"model_type\": \"nemotron_h\"}";
  }
  CHECK_THAT(error_of([&] { (void)resolve_model(td.path.string()); }),
             Contains((td.path / "config.json").string()) && Contains("missing field"));
}
