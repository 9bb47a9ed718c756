// Cheap device-side pseudo-random values for benchmark inputs (a hash of the index): no
// host RNG, no upload, so 9B-sized inputs fill in microseconds. Not for tests (they use
// seeded host generators compared against float64 references).
#pragma once

#include <cstddef>

namespace nemotron_h {

/// Uniform in [-1, 1), a hash of the element index and the seed.
__device__ inline float hash_uniform(std::size_t i, unsigned seed) {
  unsigned x = static_cast<unsigned>(i) * 2654435761u ^ (static_cast<unsigned>(i >> 32) + seed * 97u);
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return (x >> 8) * (1.0f / 8388608.0f) - 1.0f;
}

}  // namespace nemotron_h
