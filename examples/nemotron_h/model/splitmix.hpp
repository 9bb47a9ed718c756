// The random streams of the synthetic weights: splitmix64, seeded per tensor from the seed
// and the tensor's name, so a tensor's values depend on nothing else (not on the other
// tensors, the order they are drawn in, or the number of threads). The same on every
// platform. Host only, C++17.
#pragma once

#include <cstdint>
#include <string_view>

namespace nemotron_h {

/// One splitmix64 stream.
struct splitmix64 {
  std::uint64_t state = 0;

  std::uint64_t next() noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in (0, 1].
  double uniform01() noexcept { return (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53; }
};

/// A seed derived from two values (the seed of a sub-stream).
inline std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) noexcept {
  splitmix64 s{a ^ (b * 0xd6e8feb86659fd93ull)};
  s.next();
  return s.next();
}

/// The seed of the stream of the tensor called `name` (FNV-1a of the name, mixed with `seed`).
inline std::uint64_t tensor_seed(std::uint64_t seed, std::string_view name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return mix_seed(seed, h);
}

}  // namespace nemotron_h
