// NVFP4 weights on Hopper, weight-only (W4A16): y = x W^T with x bf16 and W NVFP4 (ModelOpt:
// e2m1 elements, one e4m3 scale per 16 elements of a row, one fp32 global scale), fp32
// accumulation on the bf16 tensor cores, bf16 out. Hopper has no FP4 tensor cores, so the
// elements are decoded in registers: e2m1 x block scale is exact in bf16 (at most 6
// significant bits, exponents within range), so the tensor cores see exactly the dequantized
// weight over the global scale (times 2^-8, folded back into the epilogue's alpha).
//
// The device layout (made once at upload by repack_nvfp4 from the checkpoint layout, packed
// [rows, cols / 2] bytes with the low nibble first and e4m3 scales [rows, cols / 16]): strips
// of 16 rows, groups of 64 columns (4 blocks), for each (strip, group) 32 lanes x 16 bytes of
// elements and 32 lanes x 2 bytes of scales, so that one warp streams a (strip, group) with one
// 16-byte and one 2-byte load a lane and holds its mma.m16n8k16 A fragments after a few integer
// operations (no shuffles, no shared memory). Lane (g, t) holds rows 16s + g and 16s + g + 8 of
// block 4 * group + t; the mma's k index is a permutation of the columns (the x fragments are
// loaded with the same permutation: 16 consecutive bf16 a lane). Rows past the weight's and
// columns past K are zero (so are the elements of a block whose scale is 0).
//
// Deterministic and batch invariant: one output's sum has a fixed order (the mma's k steps in
// group order within a warp, alternating between two accumulator sets that are added at the
// end, then the block's warps summed in order) for a given N and K, whatever M or the other
// rows.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/common.cuh"
#include "kernels/gemm.cuh"
#include "kernels/gemv.cuh"
#include "kernels/nvfp4_layout.hpp"

namespace nemotron_h {

/// The multiplier of an NVFP4 GEMM's fp32 sums: the global scale times 2^8 (the tensor cores
/// multiply e2m1 x block scale x 2^-8, which keeps every product a normal bf16).
inline float nvfp4_alpha(const weight& W) noexcept { return W.global_scale * 256.0f; }

/// Device layout from the checkpoint layout: packed [rows, cols / 2] e2m1 bytes (element 2i in
/// the low nibble of byte i), scales [rows, cols / 16] e4m3 (finite, not negative: the loader
/// checks) into dst_packed / dst_scales (nvfp4_layout{out_rows, cols}: out_rows >= rows; the
/// extra rows are zero). All pointers device memory, 16-byte aligned dst_packed. One kernel,
/// no allocation: capture-safe (but it is an upload step). Throws piecewise::config_error for
/// bad sizes (cols not a multiple of 16, out_rows < rows).
void repack_nvfp4(const std::uint8_t* packed, const std::uint8_t* scales, int rows, int cols, int out_rows,
                  std::uint8_t* dst_packed, std::uint8_t* dst_scales, cudaStream_t s);

/// NVFP4 quantization of bf16 weights w [rows, cols] as model/quantize.hpp's quantize_nvfp4
/// does on the host, bit for bit: *global = amax / (6 x 448) in fp32 (1 for amax 0; *amax is
/// the largest |w|, from amax_abs_rows), block scale e4m3(block amax / 6 / global) and elements
/// e2m1(w / (block scale x global)) in float64, into the checkpoint layout (packed, scales).
/// cols a multiple of 16, w 16-byte aligned. Two kernels, no allocation: capture-safe. Throws
/// piecewise::config_error for bad sizes.
void quantize_nvfp4_weight(const bf16* w, int rows, int cols, const float* amax, float* global, std::uint8_t* packed,
                           std::uint8_t* scales, cudaStream_t s);

/// y[m, n] = epilogue(nvfp4_alpha(W) * sum_k x[m * ldx + k] * (e2m1 x block scale x 2^-8)[n, k])
/// for m < M, n < W.rows: W an nvfp4 weight in the device layout (data, block_scales,
/// global_scale). The epilogue as gemv_bf16's (store, accumulate, store_relu2, f32). Requires
/// 1 <= M <= kNvfp4GemvMaxRows, K = W.cols a multiple of 16, ldx a multiple of 8 and >= K,
/// ldy >= N, x 16-byte and y 4-byte aligned (piecewise::config_error naming the tensor
/// otherwise). `warps_per_strip`: how many warps split a strip's columns, one of
/// kNvfp4GemvSplits, or 0 (the default) to pick it from W's shape and the device's occupancy
/// (the same for every M, so a row's result does not depend on M). Launched with programmatic
/// dependent launch. Capture-safe.
void gemv_nvfp4(const bf16* x, int ldx, const weight& W, void* y, int ldy, int M, gemv_out out, cudaStream_t s,
                int warps_per_strip = 0);

/// The warps-a-strip splits gemv_nvfp4 has kernels for.
inline constexpr int kNvfp4GemvSplits[] = {2, 4, 6, 8, 10, 16};
/// The split gemv_nvfp4 picks for an NVFP4 weight of this shape on the current device. Host only.
int nvfp4_gemv_split(const weight& W);

/// out[n * W.cols + k] = (e2m1 x block scale x 2^-8)[n, k] in bf16 (exact) for n < W.rows: the
/// weight the prefill GEMM multiplies, with alpha nvfp4_alpha(W). out 16-byte aligned. One
/// kernel, no allocation: capture-safe. Throws piecewise::config_error naming the tensor.
void dequantize_nvfp4(const weight& W, bf16* out, cudaStream_t s);

}  // namespace nemotron_h
