// Element types of model weights, on the host and on the GPU.
//
// bf16 and f32 are what every tensor uses today. fp8_e4m3 (one scale per tensor) and nvfp4
// (packed e2m1, two values a byte, low nibble first, with e4m3 scales per block of 16 and one
// global fp32 scale) are the ModelOpt formats of the quantized NemotronH checkpoints
// (shared/reference/nemotron_family.md); they are named here so that a weight can carry them,
// and every consumer that cannot handle them yet says so ("not supported yet").
// Host only, C++17, no allocation (CUDA sources include it through kernels/gemm.cuh).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nemotron_h {

enum class dtype : std::uint8_t { bf16, f32, fp8_e4m3, nvfp4 };

/// "bf16", "f32", "fp8_e4m3", "nvfp4".
constexpr const char* dtype_name(dtype t) noexcept {
  switch (t) {
    case dtype::bf16: return "bf16";
    case dtype::f32: return "f32";
    case dtype::fp8_e4m3: return "fp8_e4m3";
    case dtype::nvfp4: return "nvfp4";
  }
  return "?";
}

/// Bytes that `numel` elements occupy (nvfp4: two a byte, rounded up); scales not included.
constexpr std::size_t dtype_storage_bytes(dtype t, std::size_t numel) noexcept {
  switch (t) {
    case dtype::bf16: return 2 * numel;
    case dtype::f32: return 4 * numel;
    case dtype::fp8_e4m3: return numel;
    case dtype::nvfp4: return (numel + 1) / 2;
  }
  return 0;
}

/// True for the quantized formats, whose weights carry scales.
constexpr bool dtype_is_quantized(dtype t) noexcept { return t == dtype::fp8_e4m3 || t == dtype::nvfp4; }

}  // namespace nemotron_h
