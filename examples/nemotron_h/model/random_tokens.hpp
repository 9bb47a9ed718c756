// Deterministic pseudo-random numbers for test prompts and benchmarks: a 64-bit LCG (Knuth's
// MMIX constants), top 31 bits of the state. The same on every platform; not for statistics.
#pragma once

#include <cstdint>
#include <vector>

namespace nemotron_h {

/// Advances `state` and returns its top 31 bits.
inline std::uint64_t lcg_next(std::uint64_t& state) {
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  return state >> 33;
}

/// `n` token ids in [0, vocab), continuing the stream in `state`.
inline std::vector<int> random_token_ids(int n, int vocab, std::uint64_t& state) {
  std::vector<int> ids(static_cast<std::size_t>(n));
  for (int& t : ids) t = static_cast<int>(lcg_next(state) % static_cast<std::uint64_t>(vocab));
  return ids;
}

}  // namespace nemotron_h
