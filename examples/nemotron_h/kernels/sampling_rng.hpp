// The random numbers of token sampling (kernels/sampling.cu) and of its float64 reference
// (reference/sampling_ref.cpp): counter-based, so a draw depends only on the sequence's seed,
// the position of the token being sampled and the candidate token's id. Plain C++17; the
// functions are also __device__ when compiled by nvcc. Every operation below is exact (integer
// arithmetic, then a float with at most 24 significant bits), so host and GPU agree bit for bit.
#pragma once

#include <cstdint>

#include "model/splitmix.hpp"

namespace nemotron_h {

/// The stream of the draw at `position` of the sequence seeded with `seed`.
NH_HOST_DEVICE inline std::uint64_t sampling_stream(std::uint64_t seed, std::int64_t position) noexcept {
  return mix_seed(seed, static_cast<std::uint64_t>(position));
}

/// The uniform of candidate token `token` in the open interval (0, 1): (m + 1/2) / 2^23 with m
/// the top 23 bits of output token + 1 of the stream. Exact in float.
NH_HOST_DEVICE inline float sampling_uniform(std::uint64_t stream, std::uint32_t token) noexcept {
  const std::uint64_t bits = splitmix_at(stream, static_cast<std::uint64_t>(token) + 1u);
  return (static_cast<float>(static_cast<std::uint32_t>(bits >> 41)) + 0.5f) * 0x1p-23f;
}

}  // namespace nemotron_h
