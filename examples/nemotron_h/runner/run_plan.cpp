#include "runner/run_plan.hpp"

#include <unistd.h>

#include <algorithm>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kernels/moe_plan_size.hpp"
#include "kernels/nvfp4_layout.hpp"
#include "model/dtype.hpp"
#include "model/layer_kinds.hpp"
#include "model/messages.hpp"
#include "model/quant_config.hpp"
#include "model/random_tokens.hpp"
#include "model/splitmix.hpp"
#include "piecewise/buckets.hpp"
#include "runner/weight_support.hpp"

namespace nemotron_h {

namespace {

// Upper bounds of the size arguments: far above any real run, low enough that no product of
// them overflows the int and size_t arithmetic of the buffers.
constexpr int kMaxTokensArg = 1 << 20;
constexpr int kMaxBatchArg = 1 << 16;

// Graph memory per layer and bucket, from the H200 runs in docs/bench/h200 (52-layer small
// model, 48 buckets: 182 MiB piecewise, 50 MiB full; Nano-9B-v2, 56 layers x 64 buckets:
// 274 / 76 MiB), rounded up.
constexpr double kPiecewiseGraphMiBPerLayerBucket = 0.08;
constexpr double kFullGraphMiBPerLayerBucket = 0.022;

// Constants of the GPU kernels the estimate mirrors (kernels/ssd_scan.cuh ssd_chunk,
// kernels/attention_decode.cuh kDecodeSplitKeys).
constexpr std::uint64_t kSsdChunk = 128;
constexpr std::uint64_t kDecodeSplitKeys = 128;

std::uint64_t align256(std::uint64_t b) { return (b + 255) / 256 * 256; }

void expect_arg(bool ok, const std::string& msg) {
  if (!ok) throw usage_error(msg);
}

void in_range(int v, int lo, int hi, const char* flag) {
  expect_arg(v >= lo && v <= hi, fmt::format("{} {} is out of range: it must be in {}..{}", flag, v, lo, hi));
}

std::vector<std::string> parse_modes(const std::string& name) {
  if (name == "compare") return {"eager", "piecewise", "full"};
  for (const char* m : {"eager", "piecewise", "full", "auto"}) {
    if (name == m) return {m};
  }
  throw usage_error(fmt::format("--mode '{}' is not a mode: use eager, piecewise, full, auto or compare",
                                printable(name)));
}

bool is_preset(const std::string& name) {
  const auto presets = list_presets();
  return std::find(presets.begin(), presets.end(), name) != presets.end();
}

bool has_checkpoint_file(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::exists(dir / "model.safetensors", ec) ||
         std::filesystem::exists(dir / "model.safetensors.index.json", ec);
}

std::vector<std::vector<int>> make_prompts(const run_args& a, const model_config& cfg) {
  std::vector<std::vector<int>> prompts;
  if (a.prompt_ids.empty()) {
    std::uint64_t x = a.seed;
    for (int i = 0; i < a.batch; ++i) prompts.push_back(random_token_ids(a.prompt_len, cfg.vocab_size, x));
    return prompts;
  }
  std::stringstream ss(a.prompt_ids);
  std::string one;
  while (std::getline(ss, one, ';')) {
    if (one.empty()) continue;
    const std::string what = fmt::format("--prompt-ids: prompt {}", prompts.size());
    std::vector<int> ids = parse_int_list(one, what.c_str());
    if (ids.empty()) throw piecewise::config_error(fmt::format("{} has no token ids", what));
    for (std::size_t j = 0; j < ids.size(); ++j) {
      if (ids[j] < 0 || ids[j] >= cfg.vocab_size) {
        throw piecewise::config_error(fmt::format("{}, token {}: id {} is outside the vocabulary [0, {}) of {}", what,
                                                  j, ids[j], cfg.vocab_size, cfg.name));
      }
    }
    if (ids.size() > static_cast<std::size_t>(kMaxTokensArg)) {
      throw piecewise::config_error(fmt::format("{} has {} tokens (at most {})", what, ids.size(), kMaxTokensArg));
    }
    prompts.push_back(std::move(ids));
  }
  if (prompts.empty()) throw piecewise::config_error(fmt::format("--prompt-ids '{}' holds no prompt", printable(a.prompt_ids)));
  if (prompts.size() > static_cast<std::size_t>(kMaxBatchArg)) {
    throw piecewise::config_error(fmt::format("--prompt-ids holds {} prompts (at most {})", prompts.size(), kMaxBatchArg));
  }
  return prompts;
}

/// The text prompts of a run (--prompt, --prompt-file, --chat): the tokenizer found and
/// built, every prompt encoded and checked against the vocabulary, the stop ids. Host only.
void make_text_prompts(const run_args& a, run_plan& plan) {
  const model_config& cfg = plan.config;
  plan.text_assets = text::find_text_assets(plan.synthetic ? std::filesystem::path() : plan.checkpoint_dir, a.tokenizer);
  plan.tokenizer = std::make_shared<const text::tokenizer>(text::tokenizer::from_file(plan.text_assets.tokenizer_file));
  const text::tokenizer& tok = *plan.tokenizer;
  if (tok.vocab_size() > static_cast<std::uint32_t>(cfg.vocab_size))
    throw piecewise::config_error(fmt::format("{}: the tokenizer has {} ids but the model's vocabulary is {} ({})",
                                              tok.source(), tok.vocab_size(), cfg.vocab_size, cfg.name));
  std::vector<text_prompt> prompts;
  if (!a.prompt_file.empty()) prompts = read_prompt_file(a.prompt_file, plan.sampling);
  for (const std::string& p : a.prompts) prompts.push_back({p, plan.sampling, "--prompt", false});
  for (std::size_t i = 0; i < prompts.size(); ++i)
    if (!prompts[i].own_seed) prompts[i].sampling.seed = sequence_seed(a.seed, static_cast<int>(i));
  for (std::uint32_t id : plan.text_assets.eos_ids) plan.stop_ids.push_back(static_cast<int>(id));
  if (a.chat) {
    plan.chat = text::resolve_chat_style(a.chat_format, plan.text_assets, tok);
    const text::chat_format f(*plan.chat, tok);
    plan.stop_ids.push_back(static_cast<int>(f.end_of_turn()));
    for (const text_prompt& p : prompts) {  // the first user turn (at most one)
      const auto ids = tok.encode(f.first_turn(a.system, p.text, a.think));
      plan.prompts.emplace_back(ids.begin(), ids.end());
    }
  } else {
    for (const text_prompt& p : prompts) {
      const auto ids = tok.encode(p.text, {.add_special_tokens = true});
      if (ids.empty()) throw piecewise::config_error(fmt::format("{}: the prompt encodes to no token", p.where));
      plan.prompts.emplace_back(ids.begin(), ids.end());
    }
  }
  for (const auto& p : plan.prompts)
    if (p.size() > static_cast<std::size_t>(kMaxTokensArg))
      throw piecewise::config_error(fmt::format("a prompt has {} tokens (at most {})", p.size(), kMaxTokensArg));
  plan.text_prompts = std::move(prompts);
}

/// "12.3 MiB" below 1 GiB, "4.56 GiB" from there.
std::string size_text(std::uint64_t b) {
  const double d = static_cast<double>(b);
  return d < 1073741824.0 ? fmt::format("{:.1f} MiB", d / 1048576.0) : fmt::format("{:.2f} GiB", d / 1073741824.0);
}

}  // namespace

std::uint64_t sequence_seed(std::uint64_t seed, int i) noexcept {
  return mix_seed(seed, static_cast<std::uint64_t>(i));
}

std::vector<int> parse_int_list(const std::string& text, const char* what) {
  std::vector<int> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      std::size_t used = 0;
      v.push_back(std::stoi(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw piecewise::config_error(fmt::format("{}: '{}' is not an integer", what, printable(item)));
    }
  }
  return v;
}

void check_output_file(const std::filesystem::path& path, const char* flag) {
  namespace fs = std::filesystem;
  const std::string p = path.string();
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (fs::exists(st)) {
    if (fs::is_directory(st)) throw piecewise::config_error(fmt::format("{} '{}' is a directory, not a file", flag, p));
    if (::access(p.c_str(), W_OK) != 0) {
      throw piecewise::config_error(fmt::format("{} '{}' exists and is not writable", flag, p));
    }
    return;  // written (truncated) only at the end of the run
  }
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  if (!fs::is_directory(dir, ec)) {
    throw piecewise::config_error(fmt::format("{} '{}': the directory '{}' does not exist", flag, p, dir.string()));
  }
  if (::access(dir.string().c_str(), W_OK | X_OK) != 0) {
    throw piecewise::config_error(fmt::format("{} '{}': the directory '{}' is not writable", flag, p, dir.string()));
  }
}

void check_output_dir(const std::filesystem::path& dir, const char* flag) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path existing = dir;
  while (!existing.empty() && !fs::exists(existing, ec)) existing = existing.parent_path();
  if (existing.empty()) existing = ".";
  if (!fs::is_directory(existing, ec)) {
    throw piecewise::config_error(
        fmt::format("{} '{}': '{}' exists and is not a directory", flag, dir.string(), existing.string()));
  }
  if (::access(existing.string().c_str(), W_OK | X_OK) != 0) {
    throw piecewise::config_error(
        fmt::format("{} '{}': the directory '{}' is not writable", flag, dir.string(), existing.string()));
  }
}

std::string gpu_support_problems(const model_config& c) {
  std::vector<std::string> problems;
  auto need = [&](bool ok, const std::string& msg) {
    if (!ok) problems.push_back(msg);
  };
  if (c.count(layer_kind::moe) > 0) {
    for (const auto& [v, field] : {std::pair{c.moe_intermediate_size, "moe_intermediate_size"},
                                   std::pair{c.moe_shared_expert_intermediate_size, "moe_shared_expert_intermediate_size"},
                                   std::pair{c.moe_latent_size, "moe_latent_size"}})
      need(v % 8 == 0, fmt::format("{} {} is not a multiple of 8", field, v));
    need(c.n_routed_experts <= kMoeMaxExperts, fmt::format("n_routed_experts {} is above {}", c.n_routed_experts, kMoeMaxExperts));
    need(c.num_experts_per_tok <= kMoeMaxTopK,
         fmt::format("num_experts_per_tok {} is above {}", c.num_experts_per_tok, kMoeMaxTopK));
  }
  need(c.hidden_size % 8 == 0, fmt::format("hidden_size {} is not a multiple of 8", c.hidden_size));
  need(c.conv_kernel == 4, fmt::format("conv_kernel {} is not 4", c.conv_kernel));
  if (c.count(layer_kind::attention) > 0) {
    need(c.head_dim == 128, fmt::format("head_dim {} is not 128", c.head_dim));
    // kDecodeMaxGroup (kernels/attention_decode.cuh); prefill takes any ratio.
    need(c.num_attention_heads / c.num_key_value_heads <= 32,
         fmt::format("{} query heads per KV head (at most 32)", c.num_attention_heads / c.num_key_value_heads));
  }
  if (c.count(layer_kind::mamba) > 0) {
    need(c.mamba_head_dim == 32 || c.mamba_head_dim == 64 || c.mamba_head_dim == 80,
         fmt::format("mamba_head_dim {} is not 32, 64 or 80", c.mamba_head_dim));
    // The chunked scan takes multiples of 16 up to 256, the decode update 64, 128 and 256.
    need(c.ssm_state_size == 64 || c.ssm_state_size == 128 || c.ssm_state_size == 256,
         fmt::format("ssm_state_size {} is not 64, 128 or 256", c.ssm_state_size));
  }
  if (problems.empty()) return {};
  return fmt::format("{} (limit{} of the GPU kernels)", fmt::join(problems, "; "), problems.size() == 1 ? "" : "s");
}

void check_gpu_support(const model_config& c) {
  const std::string p = gpu_support_problems(c);
  if (!p.empty()) fail(c.name, p);
}

memory_estimate estimate_memory(const model_config& c, const gpu_model_limits& lim, std::size_t prefill_buckets,
                                std::size_t decode_buckets, const std::vector<std::string>& modes,
                                const std::vector<dtype>& weight_types) {
  memory_estimate m;
  const std::vector<tensor_entry> entries = model_tensors(c);
  PIECEWISE_EXPECTS(weight_types.empty() || weight_types.size() == entries.size(),
                    "estimate_memory: {} weight dtypes for the {} tensors of {}", weight_types.size(), entries.size(),
                    c.name);
  std::uint64_t fp8_k = 0;  // the widest input of an FP8 weight: gemm_engine's FP8 input scratch
  std::uint64_t nvfp4_n = 0;  // the largest NVFP4 weight: gemm_engine's NVFP4 scratch (bf16)
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const tensor_entry& e = entries[i];
    const dtype t = weight_types.empty() ? e.spec->type : weight_types[i];
    std::uint64_t n = 1;
    for (auto d : e.shape) n *= static_cast<std::uint64_t>(d);
    if (t == dtype::nvfp4 && e.shape.size() == 2) {
      m.weights += nvfp4_device_bytes(e.shape[0], e.shape[1]);
      nvfp4_n = std::max(nvfp4_n, static_cast<std::uint64_t>(device_rows(e.shape[0]) * e.shape[1]));
      continue;
    }
    m.weights += dtype_storage_bytes(t, n);
    if (t == dtype::fp8_e4m3) {
      m.weights += kFp8ScaleBytes;  // weight scale, input scale
      fp8_k = std::max(fp8_k, e.shape.size() == 2 ? static_cast<std::uint64_t>(e.shape[1]) : 0);
    }
  }
  const auto T = static_cast<std::uint64_t>(max_rows(lim)), S = static_cast<std::uint64_t>(max_sequences(lim));
  // The e4m3 inputs of FP8 GEMMs: the most rows of any GEMM times the widest FP8 input.
  if (fp8_k > 0) m.workspaces += std::max(T, S) * fp8_k;
  // A dequantized NVFP4 weight, for GEMMs above the NVFP4 GEMV's rows.
  if (nvfp4_n > 0 && std::max(T, S) > static_cast<std::uint64_t>(kNvfp4GemvMaxRows)) m.workspaces += nvfp4_n * 2;
  const auto D = static_cast<std::uint64_t>(c.hidden_size);
  // MoE layers ('E'): their weights are in model_tensors (router, experts, shared expert,
  // latent projections); the shared expert's up projection goes through the projection
  // buffer; the router logits, the plan and the experts' permuted rows are gpu_model's
  // moe_* buffers.
  const bool moe = c.count(layer_kind::moe) > 0;
  const int moe_proj = moe ? c.moe_shared_expert_intermediate_size : 0;
  const auto proj = static_cast<std::uint64_t>(
      std::max({(c.in_proj_dim() + 7) / 8 * 8, c.q_dim() + 2 * c.kv_dim(), c.intermediate_size, moe_proj}));
  if (moe) {
    const auto E = static_cast<std::uint64_t>(c.n_routed_experts), k = static_cast<std::uint64_t>(c.num_experts_per_tok);
    m.activations += align256(T * ((E + 7) / 8 * 8) * 4) +
                     moe_plan_bytes_unchecked(static_cast<int>(T), c.n_routed_experts, c.num_experts_per_tok) +
                     align256(T * k * static_cast<std::uint64_t>(c.moe_intermediate_size) * 2) +
                     align256(T * k * static_cast<std::uint64_t>(c.moe_width()) * 2) +
                     (c.latent_moe() ? align256(T * static_cast<std::uint64_t>(c.moe_latent_size) * 2) : 0);
  }
  const auto y = static_cast<std::uint64_t>(std::max(c.d_inner(), 8));
  // The buffers of gpu_model's plan, 2 bytes an element (bf16), ints 4.
  for (std::uint64_t b : {T * D * 2, T * D * 2, T * proj * 2, T * static_cast<std::uint64_t>(std::max(c.conv_dim(), 8)) * 2,
                          T * y * 2, T * y * 2, T * static_cast<std::uint64_t>(std::max(c.q_dim(), 8)) * 2, S * D * 2,
                          S * D * 2, S * static_cast<std::uint64_t>(c.vocab_size) * 2, S * 4,
                          static_cast<std::uint64_t>(lim.max_decode_steps) * S * 4, T * 4, (S + 1) * 4, S * 4, S * 4})
    m.activations += align256(b);
  const auto slots = static_cast<std::uint64_t>(lim.num_slots), ctx = static_cast<std::uint64_t>(lim.max_context);
  const auto H = static_cast<std::uint64_t>(c.mamba_num_heads), P = static_cast<std::uint64_t>(c.mamba_head_dim),
             N = static_cast<std::uint64_t>(c.ssm_state_size);
  const std::uint64_t mamba_state = align256(slots * static_cast<std::uint64_t>(c.conv_kernel - 1) *
                                             static_cast<std::uint64_t>(c.conv_dim()) * 2) +
                                    align256(slots * H * P * N * 4);
  const std::uint64_t kv = 2 * align256(slots * ctx * static_cast<std::uint64_t>(c.kv_dim()) * 2);
  m.state = static_cast<std::uint64_t>(c.count(layer_kind::mamba)) * mamba_state +
            static_cast<std::uint64_t>(c.count(layer_kind::attention)) * kv;
  if (c.count(layer_kind::mamba) > 0) {
    const auto P_tokens = static_cast<std::uint64_t>(lim.max_prefill_tokens);
    const std::uint64_t chunks = std::min((P_tokens + kSsdChunk - 1) / kSsdChunk + std::min(S, P_tokens), P_tokens);
    m.workspaces += 2 * align256(chunks * H * kSsdChunk * 4) + align256(chunks * H * P * N * 2);
  }
  if (c.count(layer_kind::attention) > 0) {
    const std::uint64_t n = static_cast<std::uint64_t>(lim.max_decode_batch) * ((ctx + kDecodeSplitKeys - 1) / kDecodeSplitKeys) *
                            static_cast<std::uint64_t>(c.num_attention_heads);
    m.workspaces += align256(n * static_cast<std::uint64_t>(c.head_dim) * 4) + align256(n * 2 * 4);
  }
  const double layer_buckets = static_cast<double>(c.num_layers()) * static_cast<double>(prefill_buckets + decode_buckets);
  double graph_mib = 0;
  for (const std::string& md : modes) {
    if (md == "piecewise") graph_mib += kPiecewiseGraphMiBPerLayerBucket * layer_buckets;
    else if (md != "eager") graph_mib += kFullGraphMiBPerLayerBucket * layer_buckets;  // full, auto (= full here)
  }
  m.graphs = static_cast<std::uint64_t>(graph_mib * 1048576.0);
  return m;
}

std::string dtype_label(const run_plan& plan) { return plan.fp8 ? "fp8" : plan.nvfp4 ? "nvfp4" : "bf16"; }

std::string run_plan::weights_description(std::uint64_t seed) const {
  if (synthetic && fp8) {
    const std::size_t n = synthetic_fp8_weights(config).size();
    return fmt::format("synthetic weights (preset {}, no checkpoint), seed {}; dtype fp8: {} Mamba / MLP projection{} "
                       "FP8 W8A8 (per-tensor scales, input scales calibrated by one eager bf16 prefill of {} tokens on "
                       "the GPU), the rest bf16",
                       config.name, seed, n, n == 1 ? "" : "s", kCalibrationTokens);
  }
  if (synthetic && nvfp4) {
    const std::size_t n = synthetic_fp8_weights(config).size();
    return fmt::format("synthetic weights (preset {}, no checkpoint), seed {}; dtype nvfp4: {} Mamba / MLP projection{} "
                       "NVFP4 weight-only (e2m1, e4m3 block scales of 16, global scale; bf16 activations), the rest bf16",
                       config.name, seed, n, n == 1 ? "" : "s");
  }
  if (synthetic) return fmt::format("synthetic weights (preset {}, no checkpoint), seed {}", config.name, seed);
  int fp8 = 0, nvfp4 = 0;
  for (dtype t : checkpoint.types) {
    fp8 += t == dtype::fp8_e4m3;
    nvfp4 += t == dtype::nvfp4;
  }
  std::string runs;
  if (fp8 > 0) runs += fmt::format(": {} FP8 weight{} run on the FP8 tensor cores", fp8, fp8 == 1 ? "" : "s");
  if (nvfp4 > 0)
    runs += fmt::format("{} {} NVFP4 weight{} run weight-only (decoded to bf16 in the GEMV / GEMM)", fp8 > 0 ? ";" : ":",
                        nvfp4, nvfp4 == 1 ? "" : "s");
  const std::string quant =
      checkpoint.quantization ? fmt::format("; quantized, {}{}", checkpoint.quantization->summary(), runs) : std::string();
  return fmt::format("{} ({} tensors in {} file{}, {} of data; headers checked, data read on the GPU run{})",
                     checkpoint.source.string(), checkpoint.tensors, checkpoint.shards, checkpoint.shards == 1 ? "" : "s",
                     size_text(checkpoint.file_bytes), quant);
}

run_plan make_run_plan(const run_args& a) {
  run_plan plan;
  // 1. Arguments alone.
  plan.modes = parse_modes(a.mode_name);
  in_range(a.batch, 1, kMaxBatchArg, "--batch");
  in_range(a.prompt_len, 1, kMaxTokensArg, "--prompt-len");
  in_range(a.gen, 1, kMaxTokensArg, "--gen");
  in_range(a.max_prefill_tokens, 1, kMaxTokensArg, "--max-prefill-tokens");
  in_range(a.max_decode_batch, 1, kMaxBatchArg, "--max-decode-batch");
  in_range(a.graph_execs, 0, kMaxBatchArg, "--graph-execs");
  plan.executables_per_segment = a.graph_execs;
  if (!a.buckets.empty()) {
    std::vector<int> b;
    try {
      b = parse_int_list(a.buckets, "--buckets");
      (void)piecewise::capture_buckets(b);
    } catch (const piecewise::config_error& e) {
      throw usage_error(fmt::format("--buckets '{}': {}", printable(a.buckets), e.what()));
    }
    expect_arg(b.back() <= a.max_prefill_tokens,
               fmt::format("--buckets: the largest prefill bucket {} is above --max-prefill-tokens {}", b.back(),
                           a.max_prefill_tokens));
    plan.prefill_buckets = std::move(b);
    plan.explicit_buckets = true;
  } else {
    plan.prefill_buckets = piecewise::capture_buckets::default_prefill(a.max_prefill_tokens).sizes();
  }
  expect_arg(a.json_out.empty() || a.json_out != a.logits_out, "--json and --logits-out name the same file");
  expect_arg(a.dtype == "bf16" || a.dtype == "fp8" || a.dtype == "nvfp4",
             fmt::format("--dtype '{}' is not a dtype: use bf16, fp8 or nvfp4", printable(a.dtype)));
  if (a.text()) {
    expect_arg(a.prompt_ids.empty(), "--prompt-ids gives token ids; it does not go with --prompt, --prompt-file or --chat");
    expect_arg(!a.check, "--check compares token-id runs with the CPU reference; use --prompt-ids (or random prompts)");
    expect_arg(a.logits_out.empty(), "--logits-out is for token-id runs (--prompt-ids or random prompts)");
    expect_arg(!a.chat || a.prompt_file.empty(), "--chat takes its turns from the terminal, not --prompt-file");
    expect_arg(!a.chat || a.prompts.size() <= 1, "--chat takes at most one --prompt (the first turn)");
    expect_arg(!a.chat || plan.modes.size() == 1, "--chat runs one mode, not --mode compare");
  } else {
    expect_arg(!a.system && !a.think && a.stop.empty() && a.tokenizer.empty() && a.chat_format == "auto",
               "--system, --think, --stop, --tokenizer and --chat-format need text prompts (--prompt, "
               "--prompt-file or --chat)");
  }
  in_range(a.max_context, 0, kMaxTokensArg, "--max-context");
  plan.sampling.temperature = a.temperature;
  plan.sampling.top_k = a.top_k;
  plan.sampling.top_p = a.top_p;
  plan.sampling.min_p = a.min_p;
  plan.sampling.seed = a.seed;
  plan.sampling.max_tokens = a.gen;
  plan.sampling.stop = a.stop;
  try {
    check_sampling(plan.sampling, "the command line");
  } catch (const piecewise::config_error& e) {
    throw usage_error(e.what());
  }
  expect_arg(a.text() || (!plan.sampling.sampled() && a.top_k == 0 && a.top_p == 1.0f && a.min_p == 0.0f),
             "--temperature, --top-k, --top-p and --min-p need text prompts (--prompt, --prompt-file or --chat); "
             "token-id runs are greedy");

  // 2. The config, then the checkpoint headers (no tensor data).
  const std::string model = !a.model.empty() ? a.model : !a.weights.empty() ? a.weights : std::string("small");
  plan.config = resolve_model(model);
  if (a.layers != -1) {
    expect_arg(a.layers >= 1 && a.layers <= plan.config.num_layers(),
               fmt::format("--layers {} is out of range: {} has {} layers (use 1..{})", a.layers, plan.config.name,
                           plan.config.num_layers(), plan.config.num_layers()));
    expect_arg(a.weights.empty() && is_preset(model),
               fmt::format("--layers {}: a truncated stack runs synthetic weights (a preset); a checkpoint holds "
                           "every layer",
                           a.layers));
    plan.full_layers = plan.config.num_layers();
    plan.config = plan.config.first_layers(a.layers);
  }
  std::filesystem::path dir;
  if (!a.weights.empty()) {
    dir = a.weights;
  } else if (!is_preset(model)) {
    std::error_code ec;
    dir = std::filesystem::is_directory(model, ec) ? std::filesystem::path(model)
                                                   : std::filesystem::path(model).parent_path();
    if (dir.empty()) dir = ".";
    if (!has_checkpoint_file(dir)) {
      throw piecewise::config_error(fmt::format(
          "--model {}: '{}' has no model.safetensors or model.safetensors.index.json; synthetic weights are only "
          "for presets ({}), or give the checkpoint with --weights DIR",
          printable(model), dir.string(), fmt::join(list_presets(), ", ")));
    }
  }
  if (!dir.empty()) {
    expect_arg(a.dtype == "bf16",
               fmt::format("--dtype {} is for synthetic weights (presets): the checkpoint '{}' carries its own "
                           "quantization (a ModelOpt FP8 checkpoint runs in FP8 as it is)",
                           a.dtype, dir.string()));
    plan.synthetic = false;
    plan.checkpoint_dir = dir;
    // A quantized checkpoint (ModelOpt FP8 / NVFP4) runs as it is: FP8 on the FP8 tensor
    // cores, NVFP4 weight-only.
    plan.checkpoint = check_checkpoint(dir, plan.config);
    // Every linear weight as the GPU takes it (dtype, FP8 input width, fused groups of one
    // dtype), from the headers; the scales' values are checked when the weights load.
    check_gpu_weight_types(plan.config, plan.checkpoint.types, plan.checkpoint.source.string());
  } else if (a.dtype == "fp8") {
    plan.fp8 = true;
    if (synthetic_fp8_weights(plan.config).empty())
      throw piecewise::config_error(
          fmt::format("--dtype fp8: {} has no Mamba or MLP projections to quantize", plan.config.name));
    // The FP8 weights as the GPU takes them (K a multiple of 16), named by tensor.
    check_gpu_weight_types(plan.config, synthetic_weight_types(plan.config, true), "--dtype fp8");
  } else if (a.dtype == "nvfp4") {
    plan.nvfp4 = true;
    if (synthetic_fp8_weights(plan.config).empty())
      throw piecewise::config_error(
          fmt::format("--dtype nvfp4: {} has no Mamba or MLP projections to quantize", plan.config.name));
    check_gpu_weight_types(plan.config, synthetic_weight_types(plan.config, dtype::nvfp4), "--dtype nvfp4");
  }

  // 3. Prompts and the limits they need.
  int max_tokens = a.gen;
  bool sampled = plan.sampling.sampled();
  if (a.text()) {
    make_text_prompts(a, plan);
    for (const text_prompt& p : plan.text_prompts) {
      max_tokens = std::max(max_tokens, p.sampling.max_tokens);
      sampled = sampled || p.sampling.sampled();
    }
  } else {
    plan.prompts = make_prompts(a, plan.config);
  }
  std::size_t longest = 0;
  for (const auto& p : plan.prompts) longest = std::max(longest, p.size());
  gpu_model_limits& lim = plan.limits;
  lim.max_prefill_tokens = a.max_prefill_tokens;
  lim.num_slots = std::max(1, static_cast<int>(plan.prompts.size()));
  lim.max_decode_batch = std::max(a.max_decode_batch, lim.num_slots);
  const auto needed = static_cast<int>((longest + static_cast<std::size_t>(max_tokens) + 15) / 16 * 16);
  lim.max_context = a.max_context > 0 ? a.max_context : a.chat ? std::max(4096, needed) : needed;
  if (lim.max_context < needed)
    throw usage_error(fmt::format("--max-context {}: the longest prompt ({} tokens) and {} generated tokens need {}",
                                  a.max_context, longest, max_tokens, needed));
  lim.max_decode_steps = max_tokens;
  lim.sampling = sampled;
  check_limits(lim);
  plan.decode_buckets = piecewise::capture_buckets::default_decode(lim.max_decode_batch).sizes();

  // 4. Output paths (nothing is written until the end of the run).
  if (!a.json_out.empty()) check_output_file(a.json_out, "--json");
  if (!a.logits_out.empty()) check_output_file(a.logits_out, "--logits-out");
  if (!a.dot_dir.empty()) check_output_dir(a.dot_dir, "--dot");

  plan.memory = estimate_memory(plan.config, lim, plan.prefill_buckets.size(), plan.decode_buckets.size(), plan.modes,
                                plan.synthetic ? synthetic_weight_types(plan.config, plan.fp8     ? dtype::fp8_e4m3
                                                                                     : plan.nvfp4 ? dtype::nvfp4
                                                                                                  : dtype::bf16)
                                               : plan.checkpoint.types);
  if (plan.fp8) {
    // The calibration's bf16 model: its weights (the run's own buffers come after it is freed).
    gpu_model_limits cl;
    cl.max_prefill_tokens = kCalibrationTokens;
    cl.max_decode_batch = 1;
    cl.num_slots = 1;
    cl.max_context = kCalibrationTokens + 16;
    cl.max_decode_steps = 1;
    plan.calibration_weights = estimate_memory(plan.config, cl, 1, 1, {"eager"}).weights;
  }

  // 5. The GPU kernels' limits, with what the run would need (a model larger than one card
  // says so here too).
  const std::string gpu = gpu_support_problems(plan.config);
  if (!gpu.empty()) {
    fail(plan.config.name,
         fmt::format("cannot run on the GPU: {}. The run would need about {} of device memory (estimate: weights "
                     "{}){}",
                     gpu, size_text(plan.memory.total()), size_text(plan.memory.weights),
                     plan.memory.total() > kH200UsableBytes ? fmt::format(", more than one H200 ({})",
                                                                          size_text(kH200UsableBytes))
                                                            : std::string()));
  }
  return plan;
}

std::string format_plan(const run_plan& p, const run_args& a) {
  std::string s;
  auto line = [&](const char* key, const std::string& text) { s += fmt::format("{:<8}{}\n", key, text); };
  line("model", p.config.summary());
  if (p.full_layers > 0) {
    line("layers", fmt::format("--layers {}: the first {} of the model's {} layers (same shapes)",
                               p.config.num_layers(), p.config.num_layers(), p.full_layers));
  }
  line("weights", p.weights_description(a.seed));
  line("dtype", p.synthetic ? fmt::format("{}{}", dtype_label(p),
                                          p.fp8 ? fmt::format(" (the bf16 model of the calibration first: weights {}, "
                                                              "freed before the FP8 model is built)",
                                                              size_text(p.calibration_weights))
                                                : std::string())
                            : std::string("the checkpoint's (see weights)"));
  for (const std::string& n : p.checkpoint.notes) line("", n);
  if (p.prompts.empty()) {
    line("prompts", "none yet: the chat's turns come from the terminal");
  } else {
    std::size_t lo = p.prompts.front().size(), hi = lo;
    for (const auto& q : p.prompts) {
      lo = std::min(lo, q.size());
      hi = std::max(hi, q.size());
    }
    const std::string source = a.text()               ? "text"
                               : a.prompt_ids.empty() ? fmt::format("random ids, seed {}", a.seed)
                                                      : std::string("--prompt-ids");
    line("prompts", fmt::format("{} sequence{} of {} token{} ({}), up to {} generated each", p.prompts.size(),
                                p.prompts.size() == 1 ? "" : "s",
                                lo == hi ? fmt::format("{}", lo) : fmt::format("{}..{}", lo, hi), hi == 1 ? "" : "s",
                                source, p.limits.max_decode_steps));
  }
  if (a.text()) {
    line("text", fmt::format("tokenizer {} ({} ids){}", p.text_assets.tokenizer_file.string(), p.tokenizer->vocab_size(),
                             p.chat ? fmt::format(", chat format {} ({}), thinking {}", text::to_string(*p.chat),
                                                  a.chat_format == "auto" ? p.text_assets.chat_reason : "--chat-format",
                                                  a.think ? "on" : "off")
                                    : std::string()));
    line("stop", fmt::format("ids [{}]{}", fmt::join(p.stop_ids, ", "),
                             p.sampling.stop.empty() ? std::string() : fmt::format(", {} stop string(s)", p.sampling.stop.size())));
    for (std::size_t i = 0; i < p.text_prompts.size(); ++i)
      line(i == 0 ? "sample" : "", fmt::format("sequence {}: {}", i, p.text_prompts[i].sampling.describe()));
    if (p.text_prompts.empty()) line("sample", p.sampling.describe());
  } else {
    line("sample", "greedy");
  }
  line("limits", fmt::format("prefill chunk <= {} tokens, decode batch <= {}, {} slots, context <= {}",
                             p.limits.max_prefill_tokens, p.limits.max_decode_batch, p.limits.num_slots,
                             p.limits.max_context));
  line("buckets", fmt::format("prefill ({} sizes{}): {}", p.prefill_buckets.size(),
                              p.explicit_buckets ? ", --buckets" : ", generated", fmt::join(p.prefill_buckets, ",")));
  line("", fmt::format("decode ({} sizes, generated): {}", p.decode_buckets.size(), fmt::join(p.decode_buckets, ",")));
  if (p.executables_per_segment > 0)
    line("graphs", fmt::format("the buckets share at most {} executables per segment position and topology "
                               "(--graph-execs; the graph memory estimate assumes one each)",
                               p.executables_per_segment));
  line("modes", fmt::format("{}{}", fmt::join(p.modes, ", "), a.check ? " + --check (CPU float64 reference)" : ""));
  const memory_estimate& m = p.memory;
  line("memory", fmt::format("{} needed (estimate): weights {}, activations {}, state {} (KV cache, conv/SSM), "
                             "workspaces {}, graphs ~{}",
                             size_text(m.total()), size_text(m.weights), size_text(m.activations), size_text(m.state),
                             size_text(m.workspaces), size_text(m.graphs)));
  if (m.total() > kH200UsableBytes) {
    line("", fmt::format("more than one H200 holds ({}): this run does not fit one card; --layers N runs a "
                         "truncated stack",
                         size_text(kH200UsableBytes)));
  }
  if (!a.json_out.empty()) line("json", a.json_out);
  if (!a.logits_out.empty()) line("logits", a.logits_out);
  if (!a.dot_dir.empty()) line("dot", a.dot_dir);
  return s;
}

}  // namespace nemotron_h
