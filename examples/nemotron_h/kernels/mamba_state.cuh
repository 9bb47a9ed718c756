// Mamba2 per-sequence state slots: the layout a runner allocates once (fixed addresses)
// and the kernels index from device memory (batch_view::slots).
//
// Per Mamba layer:
//   conv state  bf16 [num_slots][K-1][conv_dim]  the last K-1 conv inputs (xBC before the
//               conv), time-major, oldest first (same order as ref::conv1d_silu's state)
//   SSM state   fp32 [num_slots][H][P][N]        the recurrent state S of every head
// A slot's contents are only meaningful once a sequence has run through it; kernels treat
// context_lens[s] == 0 as "fresh" and read zeros instead of the slot.
#pragma once

#include <cstddef>

#include "kernels/common.cuh"

namespace nemotron_h {

/// Shape of one Mamba2 layer's mixer (NemotronH-Nano-9B-v2: H=128, P=80, N=128, G=8, K=4).
struct mamba_dims {
  int H = 0;  ///< heads
  int P = 0;  ///< head dim
  int N = 0;  ///< state size
  int G = 0;  ///< groups (B/C shared by H/G consecutive heads)
  int K = 4;  ///< conv kernel width
  [[nodiscard]] constexpr int d_inner() const { return H * P; }
  [[nodiscard]] constexpr int conv_dim() const { return H * P + 2 * G * N; }
  /// Width of the in_proj output row zxbcdt = [z | xBC | dt].
  [[nodiscard]] constexpr int in_proj_dim() const { return 2 * H * P + 2 * G * N + H; }
  /// Column offsets inside a zxbcdt row.
  [[nodiscard]] constexpr int xbc_offset() const { return H * P; }
  [[nodiscard]] constexpr int dt_offset() const { return 2 * H * P + 2 * G * N; }
};

/// Device pointers of one Mamba layer's state slots (non-owning view).
struct mamba_layer_state {
  bf16* conv = nullptr;  ///< [num_slots][K-1][conv_dim]
  float* ssm = nullptr;  ///< [num_slots][H][P][N]
  int num_slots = 0;

  [[nodiscard]] static constexpr std::size_t conv_elems_per_slot(const mamba_dims& d) {
    return static_cast<std::size_t>(d.K - 1) * d.conv_dim();
  }
  [[nodiscard]] static constexpr std::size_t ssm_elems_per_slot(const mamba_dims& d) {
    return static_cast<std::size_t>(d.H) * d.P * d.N;
  }
};

/// Bytes of one layer's conv state (all slots), rounded up to 256 bytes.
[[nodiscard]] constexpr std::size_t mamba_conv_state_bytes(const mamba_dims& d, int num_slots) {
  const std::size_t b = mamba_layer_state::conv_elems_per_slot(d) * num_slots * sizeof(bf16);
  return (b + 255) / 256 * 256;
}
/// Bytes of one layer's SSM state (all slots), rounded up to 256 bytes.
[[nodiscard]] constexpr std::size_t mamba_ssm_state_bytes(const mamba_dims& d, int num_slots) {
  const std::size_t b = mamba_layer_state::ssm_elems_per_slot(d) * num_slots * sizeof(float);
  return (b + 255) / 256 * 256;
}
/// Bytes of one layer's conv + SSM state; a runner allocates num_layers times this once.
[[nodiscard]] constexpr std::size_t mamba_layer_state_bytes(const mamba_dims& d, int num_slots) {
  return mamba_conv_state_bytes(d, num_slots) + mamba_ssm_state_bytes(d, num_slots);
}
/// Carves one layer's state view out of `base` (mamba_layer_state_bytes(d, num_slots) bytes,
/// 256-byte aligned): the SSM state first, then the conv state. Host-only pointer math.
[[nodiscard]] inline mamba_layer_state make_mamba_layer_state(void* base, const mamba_dims& d,
                                                              int num_slots) {
  mamba_layer_state s;
  s.ssm = static_cast<float*>(base);
  s.conv = reinterpret_cast<bf16*>(static_cast<char*>(base) + mamba_ssm_state_bytes(d, num_slots));
  s.num_slots = num_slots;
  return s;
}

}  // namespace nemotron_h
