// Writes the seed corpus of the NemotronH fuzz targets with the project's own writers.
//
// Usage: gen_corpus OUT_DIR FIXTURE_DIR   (FIXTURE_DIR: tests/data/tiny)
//        gen_corpus --describe CORPUS_DIR  (prints what each parser says about each seed)
// Writes OUT_DIR/{safetensors,config,npy}/<name>: valid files (make_safetensors, make_npy,
// the transformers fixture's config.json and preset-shaped configs) plus truncated and
// corrupted variants of them. Every file is small (a few KB) so libFuzzer's max_len stays small.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/npy.hpp"
#include "model/safetensors.hpp"
#include "piecewise/error.hpp"

using namespace nemotron_h;
namespace fs = std::filesystem;
using bytes = std::vector<std::uint8_t>;

namespace {

void put(const fs::path& dir, const std::string& name, const bytes& b) {
  fs::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f) throw std::runtime_error("cannot write " + (dir / name).string());
}

void put(const fs::path& dir, const std::string& name, const std::string& s) { put(dir, name, bytes(s.begin(), s.end())); }

bytes read_all(const fs::path& p, std::size_t max = SIZE_MAX) {
  std::ifstream f(p, std::ios::binary);
  bytes b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (b.size() > max) b.resize(max);
  return b;
}

std::vector<float> ramp(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = 0.01f * static_cast<float>(i) - 0.5f;
  return v;
}

/// Replaces the first occurrence of `from` in the JSON header of a safetensors file by `to`
/// (the header length is fixed up, the data is kept).
bytes edit_header(const bytes& file, const std::string& from, const std::string& to) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[i];
  std::string hdr(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  const auto p = hdr.find(from);
  if (p == std::string::npos) throw std::runtime_error("edit_header: '" + from + "' not found");
  hdr.replace(p, from.size(), to);
  bytes out(8);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(hdr.size() >> (8 * i));
  out.insert(out.end(), hdr.begin(), hdr.end());
  out.insert(out.end(), file.begin() + 8 + static_cast<std::ptrdiff_t>(n), file.end());
  return out;
}

bytes set_len(bytes b, std::uint64_t n) {
  for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(n >> (8 * i));
  return b;
}

bytes cut(const bytes& b, std::size_t n) { return bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(std::min(n, b.size()))); }

void safetensors_corpus(const fs::path& out, const fs::path& fixture) {
  const fs::path d = out / "safetensors";
  // Valid: every dtype, a scalar, an empty tensor, metadata.
  const bytes all = make_safetensors(
      {make_tensor_from_floats("backbone.embeddings.weight", {12, 8}, ramp(96), st_dtype::bf16),
       make_tensor_from_floats("backbone.layers.0.mixer.A_log", {4}, ramp(4), st_dtype::f32),
       make_tensor_from_floats("backbone.layers.0.mixer.D", {4}, ramp(4), st_dtype::f16),
       make_tensor_from_floats("backbone.layers.0.mixer.dt_bias", {4}, ramp(4), st_dtype::f64),
       make_tensor_from_floats("scalar", {}, {3.0f}, st_dtype::f32),
       make_tensor_from_floats("empty", {0, 5}, {}, st_dtype::bf16)},
      {{"format", "pt"}});
  put(d, "valid_all_dtypes", all);
  put(d, "valid_empty", make_safetensors({}));
  put(d, "valid_one_bf16", make_safetensors({make_tensor_from_floats("lm_head.weight", {16, 4}, ramp(64), st_dtype::bf16)}));
  // ModelOpt's quantized layouts: an FP8 weight with its scales, an NVFP4 one (U8 pairs, e4m3
  // block scales).
  put(d, "valid_quantized",
      make_safetensors({make_tensor_from_floats("backbone.layers.0.mixer.in_proj.weight", {4, 16}, ramp(64), st_dtype::f8_e4m3),
                        make_tensor_from_floats("backbone.layers.0.mixer.in_proj.weight_scale", {}, {0.5f}, st_dtype::f32),
                        make_tensor_from_floats("backbone.layers.0.mixer.in_proj.input_scale", {}, {0.25f}, st_dtype::f32),
                        {"backbone.layers.1.mixer.up_proj.weight", st_dtype::u8, {4, 8}, bytes(32, 0x21)},
                        make_tensor_from_floats("backbone.layers.1.mixer.up_proj.weight_scale", {4, 1}, ramp(4), st_dtype::f8_e4m3),
                        make_tensor_from_floats("backbone.layers.1.mixer.up_proj.weight_scale_2", {}, {0.01f}, st_dtype::f32)}));
  // The transformers fixture's real header, with the data cut off (a truncated real file) and
  // with offsets that do fit.
  const bytes fx = read_all(fixture / "model.safetensors", 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | fx[i];
  const bytes fixture_head = read_all(fixture / "model.safetensors", 8 + n + 64);
  put(d, "fixture_truncated", fixture_head);
  // Truncations of the valid file.
  std::uint64_t hn = 0;
  for (int i = 7; i >= 0; --i) hn = (hn << 8) | all[i];
  for (std::size_t c : {std::size_t(0), std::size_t(4), std::size_t(8), std::size_t(8 + hn / 2), std::size_t(8 + hn),
                        all.size() - 1}) {
    put(d, "trunc_" + std::to_string(c), cut(all, c));
  }
  // Forged header lengths.
  put(d, "len_huge", set_len(all, ~std::uint64_t(0)));
  put(d, "len_over_cap", set_len(all, kMaxSafetensorsHeader + 1));
  put(d, "len_plus_one", set_len(all, hn + 1));
  put(d, "len_zero", set_len(all, 0));
  // Corrupted entries.
  put(d, "bad_dtype", edit_header(all, "\"F32\"", "\"I32\""));
  put(d, "unknown_dtype", edit_header(all, "\"F32\"", "\"Q4\""));
  put(d, "shape_mismatch", edit_header(all, "[12,8]", "[12,9]"));
  put(d, "shape_negative", edit_header(all, "[12,8]", "[-12,8]"));
  put(d, "shape_huge", edit_header(all, "[12,8]", "[4294967296,4294967296]"));
  put(d, "shape_float", edit_header(all, "[12,8]", "[12.0,8]"));
  put(d, "offsets_past_end", edit_header(all, "[0,192]", "[0,1000192]"));
  put(d, "offsets_reversed", edit_header(all, "[0,192]", "[192,0]"));
  put(d, "offsets_huge", edit_header(all, "[0,192]", "[18446744073709551615,18446744073709551615]"));
  put(d, "offsets_overlap", edit_header(all, "[0,192]", "[8,200]"));
  put(d, "offsets_one", edit_header(all, "[0,192]", "[0]"));
  put(d, "metadata_not_string", edit_header(all, "\"pt\"", "7"));
  put(d, "not_object", edit_header(all, "{\"__metadata__\"", "[{\"__metadata__\""));
  put(d, "deep", edit_header(all, "\"pt\"", std::string(40, '[') + std::string(40, ']')));
  put(d, "bad_json", edit_header(all, "\"dtype\"", "\"dtype"));
}

void config_corpus(const fs::path& out, const fs::path& fixture) {
  using json = nlohmann::json;
  const fs::path d = out / "config";
  const bytes fx = read_all(fixture / "config.json");
  const std::string text(fx.begin(), fx.end());
  put(d, "fixture_config.json", text);
  const json base = json::parse(text);
  // Preset shapes written as hybrid_override_pattern configs.
  for (const char* name : {"tiny", "small", "nano-9b-v2"}) {
    const model_config c = preset(name);
    json j = {{"model_type", "nemotron_h"},
              {"hybrid_override_pattern", c.pattern},
              {"num_hidden_layers", c.num_layers()},
              {"vocab_size", c.vocab_size},
              {"hidden_size", c.hidden_size},
              {"intermediate_size", c.intermediate_size},
              {"num_attention_heads", c.num_attention_heads},
              {"num_key_value_heads", c.num_key_value_heads},
              {"head_dim", c.head_dim},
              {"mamba_num_heads", c.mamba_num_heads},
              {"mamba_head_dim", c.mamba_head_dim},
              {"ssm_state_size", c.ssm_state_size},
              {"n_groups", c.n_groups},
              {"conv_kernel", c.conv_kernel},
              {"chunk_size", c.chunk_size},
              {"layer_norm_epsilon", c.eps},
              {"time_step_limit", {0.0, "Infinity"}},
              {"tie_word_embeddings", false}};
    put(d, std::string("preset_") + name + ".json", j.dump(1));
  }
  auto variant = [&](const std::string& name, auto&& edit) {
    json j = base;
    edit(j);
    put(d, name, j.dump());
  };
  variant("valid_moe_layer.json", [](json& j) { j["layers_block_type"][3] = "moe"; });
  variant("moe_topk_above_experts.json", [](json& j) { j["layers_block_type"][3] = "moe"; j["num_experts_per_tok"] = 9; });
  variant("missing_vocab.json", [](json& j) { j.erase("vocab_size"); });
  variant("string_hidden.json", [](json& j) { j["hidden_size"] = "128"; });
  variant("huge_hidden.json", [](json& j) { j["hidden_size"] = 18446744073709551615ull; });
  variant("negative_heads.json", [](json& j) { j["num_attention_heads"] = -4; });
  variant("kv_not_divisor.json", [](json& j) { j["num_key_value_heads"] = 3; });
  variant("groups_not_divisor.json", [](json& j) { j["n_groups"] = 3; });
  variant("eps_zero.json", [](json& j) { j["layer_norm_epsilon"] = 0.0; });
  variant("limit_bad.json", [](json& j) { j["time_step_limit"] = {{{"__float__", "NaN"}}, 1.0}; });
  variant("pattern_disagree.json", [](json& j) { j["hybrid_override_pattern"] = "MMM-M-"; });
  variant("pattern_unknown.json", [](json& j) { j["hybrid_override_pattern"] = "M*X"; j.erase("layers_block_type"); });
  variant("wrong_model_type.json", [](json& j) { j["model_type"] = "mamba2"; });
  variant("bias_true.json", [](json& j) { j["use_bias"] = true; });
  variant("act_gelu.json", [](json& j) { j["mlp_hidden_act"] = "gelu"; });
  variant("num_layers_off.json", [](json& j) { j["num_hidden_layers"] = 7; });
  variant("width_overflow.json", [](json& j) {
    j["mamba_num_heads"] = 1048576;
    j["mamba_head_dim"] = 1048576;
    j["n_groups"] = 1;
  });
  put(d, "truncated.json", text.substr(0, text.size() / 2));
  put(d, "not_object.json", std::string("[1, 2, 3]"));
  put(d, "deep.json", std::string(100, '[') + std::string(100, ']'));
  put(d, "empty.json", std::string());
}

void npy_corpus(const fs::path& out, const fs::path& fixture) {
  const fs::path d = out / "npy";
  const bytes v2x3 = make_npy(ramp(6), {2, 3});
  put(d, "valid_2x3", v2x3);
  put(d, "valid_scalar", make_npy({4.0f}, {}));
  put(d, "valid_vector", make_npy(ramp(5), {5}));
  put(d, "valid_empty", make_npy({}, {0, 7}));
  put(d, "valid_rank4", make_npy(ramp(24), {1, 2, 3, 4}));
  // The fixture's logits, first row only (its header says [40, 384]: data size mismatch).
  put(d, "fixture_truncated", read_all(fixture / "logits.npy", 128 + 4 * 384));
  // Version 2.0 header and a float64 array, built by editing a valid file.
  {
    bytes b = v2x3;
    const std::size_t hlen = b[8] | (b[9] << 8);
    bytes v2 = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, static_cast<std::uint8_t>(hlen & 0xff),
                static_cast<std::uint8_t>(hlen >> 8), 0, 0};
    v2.insert(v2.end(), b.begin() + 10, b.end());
    put(d, "valid_v2", v2);
    bytes f8 = b;
    const std::string s(b.begin(), b.end());
    f8[s.find("<f4") + 2] = '8';
    f8.resize(10 + hlen);
    for (int i = 0; i < 6; ++i) {
      const double x = 0.25 * i;
      std::uint8_t raw[8];
      std::memcpy(raw, &x, 8);
      f8.insert(f8.end(), raw, raw + 8);
    }
    put(d, "valid_f8", f8);
    bytes bad = b;
    bad[1] = 'X';
    put(d, "bad_magic", bad);
    bad = b;
    bad[6] = 9;
    put(d, "bad_version", bad);
    bad = b;
    bad[8] = 0xff;
    bad[9] = 0xff;
    put(d, "hlen_huge", bad);
    bad = b;
    bad[s.find("<f4") + 1] = 'i';
    put(d, "dtype_int", bad);
    bad = b;
    std::memcpy(bad.data() + s.find("False"), "True ", 5);
    put(d, "fortran", bad);
    bad = b;
    std::memcpy(bad.data() + s.find("(2, 3)"), "(9, 3)", 6);
    put(d, "shape_mismatch", bad);
    bad = b;
    std::memcpy(bad.data() + s.find("(2, 3)"), "(2,-3)", 6);
    put(d, "shape_negative", bad);
    bad = b;
    std::memcpy(bad.data() + s.find("(2, 3)"), "(2, 3 ", 6);
    put(d, "shape_unterminated", bad);
    for (std::size_t c : {std::size_t(5), std::size_t(10), std::size_t(40), b.size() - 3}) {
      put(d, "trunc_" + std::to_string(c), cut(b, c));
    }
  }
}

/// One line a seed: "target/file (N bytes): loads" or the parser's error message.
void describe(const fs::path& corpus) {
  for (const char* target : {"safetensors", "config", "npy"}) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(corpus / target)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      const bytes b = read_all(f);
      std::string what = "loads";
      try {
        if (std::string(target) == "safetensors") (void)parse_safetensors_header(b.data(), b.size(), "f");
        else if (std::string(target) == "config") (void)parse_config_json_text(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), "f");
        else (void)parse_npy(b.data(), b.size(), "f");
      } catch (const piecewise::config_error& e) {
        what = std::string("config_error: ") + (e.what() + 3);  // drop the "f: " origin
      }
      if (what.size() > 150) what = what.substr(0, 147) + "...";
      std::printf("%s/%s (%zu bytes): %s\n", target, f.filename().c_str(), b.size(), what.c_str());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--describe") {
    describe(argv[2]);
    return 0;
  }
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR FIXTURE_DIR | --describe CORPUS_DIR\n", argv[0]);
    return 2;
  }
  try {
    const fs::path out = argv[1], fixture = argv[2];
    safetensors_corpus(out, fixture);
    config_corpus(out, fixture);
    npy_corpus(out, fixture);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gen_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
