// Helpers of the runner GPU tests that compare whole-model runs: the last-position logits of a
// workload in one mode, and bit-for-bit equality of such logits.
#pragma once

#include <cstring>
#include <vector>

#include "piecewise/runner_options.hpp"
#include "runner/engine.hpp"

namespace nh_test {

/// Logits of `prompts` (last position, one row each) in mode m, 3 tokens generated.
inline std::vector<std::vector<float>> run_logits(nemotron_h::engine& eng, piecewise::mode m,
                                                  const std::vector<std::vector<int>>& prompts) {
  return eng.run(m, prompts, 3).last_logits;
}

inline bool bit_equal(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0)
      return false;
  return true;
}

}  // namespace nh_test
