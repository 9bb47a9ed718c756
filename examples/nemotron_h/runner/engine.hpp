// The NemotronH engine loop: fixed sequence slots, packed (and chunked) prefill through one
// graph_runner over token-count buckets, then greedy decode on the GPU through another over
// batch-size buckets. Several modes can be run over the same model and compared.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "piecewise/piecewise.hpp"
#include "runner/gpu_model.hpp"

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

class engine {
 public:
  engine(const model_config& config, const model_weights& weights, const gpu_model_limits& limits);
  /// The weights from `source`: synthetic ones drawn on the GPU, or a checkpoint streamed to it
  /// (weight_source, runner/device_weights.hpp).
  engine(const model_config& config, const weight_source& source, const gpu_model_limits& limits);

  gpu_model& model() noexcept { return *model_; }

  /// Creates (and captures, unless eager) the prefill and decode runners of mode `m`.
  /// `prefill_buckets` empty = the default prefill sizes up to max_prefill_tokens.
  /// Returns the runners; the progress callback sees every bucket of both.
  mode_runners& add_mode(piecewise::mode m, const std::vector<int>& prefill_buckets,
                         const piecewise::progress_fn& progress);
  mode_runners& runners(piecewise::mode m);

  /// Prefills `prompts` (slot i = prompt i, fresh sequences) in chunks of at most the
  /// largest prefill bucket, then runs `gen - 1` greedy decode steps (the first generated
  /// token comes from the prefill). Synchronizes. Throws piecewise::config_error for a
  /// workload that does not fit the limits.
  workload_result run(piecewise::mode m, const std::vector<std::vector<int>>& prompts, int gen);

 private:
  std::unique_ptr<gpu_model> model_;
  std::map<piecewise::mode, mode_runners> runners_;
  piecewise::stream stream_;
};

}  // namespace nemotron_h
