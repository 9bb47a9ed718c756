// The sizes of an NVFP4 weight in the device layout of kernels/nvfp4.cuh (strips of 16 rows,
// groups of 64 columns), and the GEMV's row limit: host only, no CUDA, so the run plan's
// memory estimate and the upload share them with the kernels.
#pragma once

#include <cstddef>

namespace nemotron_h {

/// Rows of a strip and columns of a group in the device layout.
inline constexpr int kNvfp4StripRows = 16;
inline constexpr int kNvfp4GroupCols = 64;
/// The most token rows gemv_nvfp4 takes (eight mma n-tiles of 8); more rows go through
/// dequantize_nvfp4 and a bf16 GEMM (gemm_engine).
inline constexpr int kNvfp4GemvMaxRows = 64;

/// Sizes of an NVFP4 weight [rows, cols] in the device layout (cols a multiple of 16).
struct nvfp4_layout {
  int rows = 0, cols = 0;
  [[nodiscard]] constexpr int strips() const noexcept { return (rows + kNvfp4StripRows - 1) / kNvfp4StripRows; }
  [[nodiscard]] constexpr int groups() const noexcept { return (cols + kNvfp4GroupCols - 1) / kNvfp4GroupCols; }
  /// Bytes of the elements: 512 a (strip, group).
  [[nodiscard]] constexpr std::size_t packed_bytes() const noexcept {
    return static_cast<std::size_t>(strips()) * static_cast<std::size_t>(groups()) * 512;
  }
  /// Bytes of the block scales: 64 a (strip, group).
  [[nodiscard]] constexpr std::size_t scale_bytes() const noexcept {
    return static_cast<std::size_t>(strips()) * static_cast<std::size_t>(groups()) * 64;
  }
};

}  // namespace nemotron_h
