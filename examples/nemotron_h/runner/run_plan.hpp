// The plan of one nemotron_h_run invocation, made on the host before the GPU is touched: every
// argument parsed and checked, the config read and validated, every checkpoint header checked
// against its file and the config (no weight bytes read), the output paths checked, the
// prompts built, and the device memory the run needs estimated. `--dry-run` prints it.
//
// Host only, no CUDA headers: the runner's host tests use it without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/weights.hpp"
#include "piecewise/error.hpp"
#include "runner/batching.hpp"
#include "runner/prompt_file.hpp"
#include "runner/sampling_settings.hpp"
#include "text/chat_format.hpp"
#include "text/tokenizer.hpp"

namespace nemotron_h {

/// Seed of sequence `i`'s sampling stream when the command line gives one seed for all.
std::uint64_t sequence_seed(std::uint64_t seed, int i) noexcept;

/// A bad argument (value out of range, unknown mode, buckets not increasing): exit status 2.
/// Bad inputs (config, checkpoint, prompt ids, output paths) are piecewise::config_error.
class usage_error : public piecewise::config_error {
 public:
  using piecewise::config_error::config_error;
};

/// The command line as given (CLI11 fills it; nothing is checked yet).
struct run_args {
  std::string model;       ///< preset, config.json or checkpoint directory; empty = "small"
  std::string weights;     ///< checkpoint directory (alias of a checkpoint --model)
  std::string mode_name = "auto";
  int batch = 4;
  int prompt_len = 100;
  int gen = 32;
  int max_prefill_tokens = 2048;
  int max_decode_batch = 64;
  std::string buckets;     ///< "8,16,32" or empty (generated)
  /// --graph-execs N: the buckets share at most N graph executables per segment position and
  /// topology (piecewise::runner_options::executables_per_segment); 0 = one each.
  int graph_execs = 0;
  std::uint64_t seed = 0;
  /// --dtype of synthetic weights: "bf16" (default), "fp8" (the Mamba and MLP projections FP8
  /// W8A8, calibrated and quantized on the GPU: runner/synthetic_fp8.hpp) or "nvfp4" (the same
  /// projections NVFP4 weight-only, quantized on the GPU); a checkpoint carries its own
  /// quantization, so any other than bf16 with one is a usage error.
  std::string dtype = "bf16";
  std::string prompt_ids;  ///< "1,2,3;4,5" or empty (random prompts)
  std::string logits_out;
  std::string json_out;
  std::string dot_dir;
  bool print_table = false;
  bool check = false;
  bool dry_run = false;
  // text in, text out
  std::vector<std::string> prompts;  ///< --prompt (repeatable): one sequence each
  std::string prompt_file;           ///< --prompt-file: lines or JSONL (runner/prompt_file.hpp)
  bool chat = false;                 ///< --chat: an interactive session on stdin
  std::optional<std::string> system; ///< --system
  bool think = false;                ///< --think: reasoning on (the chat formats' switch)
  std::string chat_format = "auto";  ///< auto | nemotron-h | chatml
  std::string tokenizer;             ///< --tokenizer FILE (default: the checkpoint's tokenizer.json)
  std::vector<std::string> stop;     ///< --stop (repeatable)
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  int max_context = 0;               ///< --max-context (0: what the prompts need; 4096 for --chat)
  /// Whether the run takes text (--prompt, --prompt-file or --chat) rather than token ids.
  [[nodiscard]] bool text() const noexcept { return !prompts.empty() || !prompt_file.empty() || chat; }
  /// --layers N: run a truncated stack, the first N layers of the model with the same shapes
  /// (-1: not given, all layers). Synthetic weights only (a checkpoint holds every layer).
  int layers = -1;
};

/// Device memory a run needs, estimated on the host (bytes).
struct memory_estimate {
  std::uint64_t weights = 0;      ///< every tensor in its device dtype (a tied lm_head counted twice, as uploaded)
  std::uint64_t activations = 0;  ///< activation buffers, logits, token history
  std::uint64_t state = 0;        ///< KV cache (attention layers) + conv and SSM state (Mamba layers)
  std::uint64_t workspaces = 0;   ///< SSD scan and decode-attention workspaces, the FP8 input scratch
  std::uint64_t graphs = 0;       ///< captured graphs: an estimate from measured runs (docs/benchmarks.md)
  [[nodiscard]] std::uint64_t total() const noexcept { return weights + activations + state + workspaces + graphs; }
};

/// Everything a run needs, checked.
struct run_plan {
  model_config config;
  bool synthetic = true;                  ///< synthetic weights (a preset without a checkpoint)
  bool fp8 = false;                       ///< synthetic weights with --dtype fp8
  bool nvfp4 = false;                     ///< synthetic weights with --dtype nvfp4
  /// --dtype fp8: the device bytes of the bf16 model the calibration prefill runs first (freed
  /// before the FP8 model is built); 0 otherwise.
  std::uint64_t calibration_weights = 0;
  std::filesystem::path checkpoint_dir;   ///< where the weights are read from (not synthetic)
  checkpoint_summary checkpoint;          ///< its headers (not synthetic)
  std::vector<std::string> modes;         ///< "eager", "piecewise", "full", "auto", in run order
  std::vector<int> prefill_buckets;       ///< token counts (--buckets or the default list)
  std::vector<int> decode_buckets;        ///< batch sizes (the default list)
  bool explicit_buckets = false;          ///< prefill_buckets came from --buckets
  int executables_per_segment = 0;        ///< --graph-execs
  std::vector<std::vector<int>> prompts;  ///< token ids, each in [0, vocab)
  gpu_model_limits limits;
  memory_estimate memory;
  // text runs (run_args::text()): the tokenizer and the prompts' texts and settings
  std::shared_ptr<const text::tokenizer> tokenizer;
  text::text_assets text_assets;
  std::optional<text::chat_style> chat;   ///< the chat format (--chat)
  std::vector<text_prompt> text_prompts;  ///< one a sequence; prompts[i] holds its ids (chat: the --prompt turn, if any)
  std::vector<int> stop_ids;              ///< ids that end a sequence (eos; with --chat also the end of turn)
  sampling_settings sampling;             ///< the command line's settings (the default of every prompt)
  int full_layers = 0;                    ///< the model's layer count before --layers (0: not truncated)
  /// "synthetic weights (preset nano-9b-v2, no checkpoint), seed 0" (with --dtype fp8 followed by
  /// "; dtype fp8: N Mamba / MLP projections FP8 W8A8 ...") or the checkpoint source.
  [[nodiscard]] std::string weights_description(std::uint64_t seed) const;
};

/// Parses "1,2,3" (empty items skipped). Throws piecewise::config_error naming `what` and the
/// item that is not an integer.
std::vector<int> parse_int_list(const std::string& text, const char* what);

/// Checks that `path` can be written at the end of the run without writing it now: an
/// existing regular file that is writable (it is not truncated), or a new file in an existing
/// writable directory. Throws piecewise::config_error naming `flag` and the path otherwise.
void check_output_file(const std::filesystem::path& path, const char* flag);

/// Checks that `dir` is a writable directory or can be created (its nearest existing parent
/// is a writable directory). Throws piecewise::config_error naming `flag`.
void check_output_dir(const std::filesystem::path& dir, const char* flag);

/// The GPU kernels' shape requirements, checked on the host (gpu_model checks them again):
/// every limit the config hits, in one message ("moe_intermediate_size 60 is not a multiple of
/// 8; head_dim 64 is not 128 (limits of the GPU kernels)"). Returns "" when the GPU kernels
/// support the config.
std::string gpu_support_problems(const model_config& config);
/// Throws piecewise::config_error "<name>: <gpu_support_problems>" when there are any.
void check_gpu_support(const model_config& config);

/// The device memory of one H200, the card the runner is built for (the driver reports
/// 143771 MiB, about 140 GiB): plans above it say so.
inline constexpr std::uint64_t kH200UsableBytes = 140ull << 30;

/// The memory estimate of a run of `config` with `limits`, over these buckets and modes.
/// `weight_types`: the device dtype of each entry of model_tensors(config) (a checkpoint's
/// checkpoint_summary::types: FP8 weights take one byte an element and two fp32 scales, and
/// the workspaces gain gemm_engine's FP8 input scratch, the most rows times the widest FP8
/// input); empty: the table's dtypes. Throws piecewise::config_error when it has another size.
memory_estimate estimate_memory(const model_config& config, const gpu_model_limits& limits,
                                std::size_t prefill_buckets, std::size_t decode_buckets,
                                const std::vector<std::string>& modes, const std::vector<dtype>& weight_types = {});

/// "bf16", "fp8", "nvfp4": the --dtype of the run (a checkpoint's runs report "bf16" here and their
/// quantization in weights_description).
std::string dtype_label(const run_plan& plan);

/// Makes the plan: every check of the run, in order arguments, config (and --layers),
/// checkpoint headers, prompts, output paths, then the GPU kernels' limits (after the memory
/// estimate, which their message states: a model too large for one card says how much it
/// needs). --dtype: anything but bf16, fp8 and nvfp4 is a usage_error, fp8 or nvfp4 with a
/// checkpoint a usage_error naming --dtype; a preset whose FP8 / NVFP4 weights the GPU cannot
/// run (K not a multiple of 16) a config_error naming the tensor. Touches no GPU and reads no weight data. Throws usage_error for a
/// bad argument, piecewise::config_error for a bad input (naming the file, field, tensor,
/// prompt or path).
run_plan make_run_plan(const run_args& args);

/// The plan as text: model, weights, prompts, limits, buckets per phase, modes, memory.
std::string format_plan(const run_plan& plan, const run_args& args);

}  // namespace nemotron_h
