// The MoE kernels' limits and the device size of their routing plan (kernels/moe.cuh), in a
// host-only header: the runner's memory estimate (runner/run_plan.cpp, no CUDA) and the
// kernels state them once, here.
#pragma once

#include <cstddef>

namespace nemotron_h {

inline constexpr int kMoeMaxExperts = 1024;  ///< E the routing kernel takes
inline constexpr int kMoeMaxTopK = 32;       ///< k the routing kernel takes
inline constexpr int kMoeTileKinds = 3;      ///< tile heights of the grouped GEMM (16, 64, 128 rows)
inline constexpr int kMoeTileRows[kMoeTileKinds] = {16, 64, 128};

/// The most m-tiles of `bm` rows that R = rows * k assignments over E experts can need: every
/// non-empty expert (at most min(R, E)) rounds its rows up to a whole tile.
constexpr std::size_t moe_tile_bound(std::size_t R, std::size_t E, int bm) {
  const std::size_t nonempty = R < E ? R : E;
  return (R + nonempty * static_cast<std::size_t>(bm - 1)) / static_cast<std::size_t>(bm);
}

/// Device bytes of a plan for `rows` token rows, E experts, top-k (moe_plan_view's arrays,
/// each 256-byte aligned: topk_ids, topk_weights, sorted_token, assignment_row [rows * k],
/// expert_offsets [E + 1], one tile prefix [E + 1] per tile height, then per tile height the
/// expert of every m-tile [moe_tile_bound]). No range checks (the kernels' entry points make
/// them).
constexpr std::size_t moe_plan_bytes_unchecked(int rows, int num_experts, int top_k) {
  const auto a256 = [](std::size_t n) { return (n + 255) / 256 * 256; };
  const std::size_t R = static_cast<std::size_t>(rows) * static_cast<std::size_t>(top_k);
  const auto E = static_cast<std::size_t>(num_experts);
  std::size_t tiles = 0;
  for (int bm : kMoeTileRows) tiles += a256(moe_tile_bound(R, E, bm) * 4);
  return a256(R * 4) * 4 + a256((E + 1) * 4) + a256(kMoeTileKinds * (E + 1) * 4) + tiles;
}

}  // namespace nemotron_h
