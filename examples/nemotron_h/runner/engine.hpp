// The NemotronH engine loop: fixed sequence slots, packed (and chunked) prefill through one
// graph_runner over token-count buckets, then greedy decode on the GPU through another over
// batch-size buckets. Several modes can be run over the same model and compared.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "piecewise/piecewise.hpp"
#include "runner/gpu_model.hpp"
#include "runner/sampling_settings.hpp"

namespace nemotron_h {

/// The runners of one mode: prefill over token counts, decode over batch sizes.
struct mode_runners {
  std::unique_ptr<piecewise::graph_runner> prefill;
  std::unique_ptr<piecewise::graph_runner> decode;
};

/// What one workload produced in one mode.
struct workload_result {
  piecewise::mode mode = piecewise::mode::eager;
  std::vector<std::vector<float>> last_logits;  ///< per prompt: logits after its last prompt token
  std::vector<std::vector<int>> tokens;         ///< per prompt: the generated tokens (greedy)
  double prefill_ms = 0;                        ///< GPU time of all prefill chunks
  int prefill_chunks = 0;
  double decode_ms_per_step = 0;                ///< GPU time per decode step (all sequences)
  int decode_steps = 0;
};

/// One sequence of engine::generate: new tokens for a slot, then tokens generated one a step.
struct generation_request {
  std::vector<int> tokens;        ///< new tokens to prefill: a prompt, or a chat turn (at least one)
  int slot = 0;                   ///< the state slot
  int context = 0;                ///< tokens the slot holds already (0: a fresh sequence)
  sampling_settings sampling;     ///< max_tokens and how tokens are picked (stop strings are the callback's)
  std::vector<int> stop_ids;      ///< generation ends after one of these ids (it is kept in `tokens`)
};

enum class finish_reason { stop_id, max_tokens, callback };
/// "stop token", "max tokens", "stop string".
const char* to_string(finish_reason r) noexcept;

/// What one sequence of engine::generate produced.
struct generation_result {
  std::vector<int> tokens;        ///< the generated tokens, the stop token included
  finish_reason finish = finish_reason::max_tokens;
  /// Tokens the slot's state holds now. With lookahead 0 it is context + prompt + all generated
  /// tokens but the last, so a next turn continues exactly by feeding tokens.back() first; with
  /// lookahead > 0 steps already launched when the sequence stopped may have fed more.
  int state_tokens = 0;
  double first_token_ms = 0;      ///< host time from the call to this sequence's first token
  double last_token_ms = 0;       ///< host time from the call to its last token
};

/// Called on the host for each generated token, in order within a sequence (seq: index into
/// the requests); returning false ends that sequence (finish_reason::callback).
using token_callback = std::function<bool(int seq, int token)>;

struct generation_options {
  /// Decode steps kept in flight beyond the one whose tokens the host is reading: 0 makes the
  /// state after a stop exact (chat turns); more hides the host's work behind the GPU's.
  int lookahead = 2;
};

class engine {
 public:
  engine(const model_config& config, const model_weights& weights, const gpu_model_limits& limits);
  /// The weights from `source`: synthetic ones drawn on the GPU, or a checkpoint streamed to it
  /// (weight_source, runner/device_weights.hpp).
  engine(const model_config& config, const weight_source& source, const gpu_model_limits& limits);

  gpu_model& model() noexcept { return *model_; }

  /// Creates (and captures, unless eager) the prefill and decode runners of mode `m`.
  /// `prefill_buckets` empty = the default prefill sizes up to max_prefill_tokens.
  /// `executables_per_segment` > 0 lets the buckets share graph executables
  /// (piecewise::runner_options::executables_per_segment). Returns the runners; the progress
  /// callback sees every bucket of both.
  mode_runners& add_mode(piecewise::mode m, const std::vector<int>& prefill_buckets,
                         const piecewise::progress_fn& progress, int executables_per_segment = 0);
  mode_runners& runners(piecewise::mode m);

  /// Prefills `prompts` (slot i = prompt i, fresh sequences) in chunks of at most the
  /// largest prefill bucket, then runs `gen - 1` greedy decode steps (the first generated
  /// token comes from the prefill). Synchronizes. Throws piecewise::config_error for a
  /// workload that does not fit the limits.
  workload_result run(piecewise::mode m, const std::vector<std::vector<int>>& prompts, int gen);

  /// Streams generation: prefills every request's tokens (packed, chunked), then decodes one
  /// token a step for all unfinished sequences, handing each token to `on_token` as soon as it
  /// is on the host. A sequence ends at one of its stop ids, at max_tokens or when the callback
  /// says so; the batch then shrinks to the sequences left. Sampling settings are written to
  /// the slots first. Synchronizes. Throws piecewise::config_error for requests that do not
  /// fit the limits (slot, context, max_tokens above max_decode_steps + 1) or sampled settings
  /// on a greedy-only model.
  std::vector<generation_result> generate(piecewise::mode m, const std::vector<generation_request>& requests,
                                          const token_callback& on_token, const generation_options& opt = {});

 private:
  std::unique_ptr<gpu_model> model_;
  std::map<piecewise::mode, mode_runners> runners_;
  piecewise::stream stream_;
};

}  // namespace nemotron_h
