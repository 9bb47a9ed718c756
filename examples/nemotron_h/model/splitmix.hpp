// The random streams of the synthetic weights: splitmix64, seeded per tensor from the seed
// and the tensor's name, so a tensor's values depend on nothing else (not on the other
// tensors, the order they are drawn in, or the number of threads). The same on every
// platform. C++17; the stream functions are also __device__ when compiled by nvcc (the GPU
// synthetic fill, kernels/synthetic_fill.cu), so host and GPU draw the same numbers.
#pragma once

#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define NH_HOST_DEVICE __host__ __device__
#else
#define NH_HOST_DEVICE
#endif

namespace nemotron_h {

/// The splitmix64 output for the state `z` (state already advanced).
NH_HOST_DEVICE inline std::uint64_t splitmix_mix(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// The increment of the splitmix64 state per output.
inline constexpr std::uint64_t kSplitmixGamma = 0x9e3779b97f4a7c15ull;

/// Output number k (1-based) of the stream that starts in state `state`: the stream is
/// counter-based, splitmix64{state} called k times returns this.
NH_HOST_DEVICE inline std::uint64_t splitmix_at(std::uint64_t state, std::uint64_t k) noexcept {
  return splitmix_mix(state + k * kSplitmixGamma);
}

/// Uniform in (0, 1] from 64 random bits (53 of them).
NH_HOST_DEVICE inline double uniform01_of(std::uint64_t bits) noexcept {
  return (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53;
}

/// One splitmix64 stream.
struct splitmix64 {
  std::uint64_t state = 0;

  NH_HOST_DEVICE std::uint64_t next() noexcept { return splitmix_mix(state += kSplitmixGamma); }
  /// Uniform in (0, 1].
  NH_HOST_DEVICE double uniform01() noexcept { return uniform01_of(next()); }
};

/// A seed derived from two values (the seed of a sub-stream).
NH_HOST_DEVICE inline std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) noexcept {
  return splitmix_at(a ^ (b * 0xd6e8feb86659fd93ull), 2);
}

/// The seed of the stream of the tensor called `name` (FNV-1a of the name, mixed with `seed`).
/// Host only (the GPU fill receives the result).
inline std::uint64_t tensor_seed(std::uint64_t seed, std::string_view name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return mix_seed(seed, h);
}

}  // namespace nemotron_h
