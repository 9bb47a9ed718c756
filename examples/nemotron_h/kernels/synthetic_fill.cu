// The GPU synthetic fill (see synthetic_fill.cuh).
#include "kernels/synthetic_fill.cuh"

#include <fmt/format.h>

#include <algorithm>

#include "kernels/common.cuh"
#include "model/synthetic_draw.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {

namespace {

/// One thread per pair of elements (2p, 2p + 1), grid-stride. bf16 pairs are stored as one
/// 32-bit word when `out` is 4-byte aligned (pairs start at even indices).
template <bool Normal, bool F32>
__global__ void synthetic_fill_kernel(void* out, std::uint64_t n, std::uint64_t base, double scale) {
  const std::uint64_t pairs = (n + 1) / 2;
  const bool word = (reinterpret_cast<std::uintptr_t>(out) & 3u) == 0;
  for (std::uint64_t p = blockIdx.x * std::uint64_t(blockDim.x) + threadIdx.x; p < pairs;
       p += std::uint64_t(gridDim.x) * blockDim.x) {
    const std::uint64_t i = 2 * p;
    float v0 = 0, v1 = 0;
    if constexpr (Normal) {
      synth::normal_pair(base, p, scale, v0, v1);
    } else {
      v0 = synth::uniform_at(base, i, scale);
      if (i + 1 < n) v1 = synth::uniform_at(base, i + 1, scale);
    }
    const std::uint16_t b0 = synth::bf16_bits(v0), b1 = synth::bf16_bits(v1);
    if constexpr (F32) {
      float* o = static_cast<float*>(out);
      o[i] = __uint_as_float(std::uint32_t(b0) << 16);
      if (i + 1 < n) o[i + 1] = __uint_as_float(std::uint32_t(b1) << 16);
    } else if (word && i + 1 < n) {
      static_cast<std::uint32_t*>(out)[p] = std::uint32_t(b0) | (std::uint32_t(b1) << 16);
    } else {
      std::uint16_t* o = static_cast<std::uint16_t*>(out);
      o[i] = b0;
      if (i + 1 < n) o[i + 1] = b1;
    }
  }
}

template <bool Normal>
void launch(void* out, bool f32, std::uint64_t n, std::uint64_t base, double scale, int grid, cudaStream_t s) {
  if (f32) synthetic_fill_kernel<Normal, true><<<grid, 256, 0, s>>>(out, n, base, scale);
  else synthetic_fill_kernel<Normal, false><<<grid, 256, 0, s>>>(out, n, base, scale);
}

}  // namespace

void synthetic_fill(void* out, dtype type, std::size_t n, std::uint64_t base, bool normal, double scale,
                    cudaStream_t stream) {
  PIECEWISE_EXPECTS(type == dtype::bf16 || type == dtype::f32, "synthetic_fill: dtype {} not supported",
                    dtype_name(type));
  const std::size_t align = type == dtype::f32 ? 4 : 2;
  PIECEWISE_EXPECTS(reinterpret_cast<std::uintptr_t>(out) % align == 0,
                    "synthetic_fill: output {} is not {}-byte aligned", fmt::ptr(out), align);
  if (n == 0) return;
  const std::uint64_t pairs = (n + 1) / 2;
  const int grid = static_cast<int>(std::min<std::uint64_t>((pairs + 255) / 256, std::uint64_t(multiprocessors()) * 16));
  if (normal) launch<true>(out, type == dtype::f32, n, base, scale, grid, stream);
  else launch<false>(out, type == dtype::f32, n, base, scale, grid, stream);
  NH_CHECK_LAUNCH("synthetic_fill");
}

}  // namespace nemotron_h
