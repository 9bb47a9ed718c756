// How one sequence picks its tokens and when it stops, as the host states it (the CLI, a
// prompt file's line). The engine turns it into the GPU's sampling_params (kernels/
// sampling.cuh). Host only, no CUDA headers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nemotron_h {

struct sampling_settings {
  float temperature = 0.0f;  ///< 0: greedy
  int top_k = 0;             ///< 0: off
  float top_p = 1.0f;        ///< 1: off
  float min_p = 0.0f;        ///< 0: off
  std::uint64_t seed = 0;    ///< the sequence's random stream
  int max_tokens = 32;       ///< tokens to generate (the stop token counts)
  std::vector<std::string> stop;  ///< stop strings (not printed)

  /// Whether the tokens depend on random numbers (temperature > 0).
  [[nodiscard]] bool sampled() const noexcept { return temperature > 0.0f; }
  /// "greedy" or "temperature 0.7, top-k 50, top-p 0.9, min-p 0.05, seed 3".
  [[nodiscard]] std::string describe() const;
};

/// Checks every field: temperature in [0, 100], top_k in [0, 2^30], top_p in (0, 1], min_p in
/// [0, 1], max_tokens >= 1, no NaN. Throws piecewise::config_error "`where`: temperature -1 ..."
/// (where: "--temperature" style flags for the CLI, "prompts.jsonl:3" for a prompt file).
void check_sampling(const sampling_settings& s, const std::string& where);

}  // namespace nemotron_h
