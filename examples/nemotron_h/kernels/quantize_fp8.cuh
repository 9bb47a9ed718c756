// Static per-tensor FP8 quantization of GEMM inputs (ModelOpt W8A8): the e4m3 operand that
// gemm_engine::linear_fp8 multiplies with an FP8 weight. Also the pieces that quantize bf16
// weights on the GPU as model/quantize.hpp's quantize_fp8 does on the host (amax, scale
// amax / 448, e4m3 of w / scale), bit for bit, and observe GEMM inputs for calibration.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/common.cuh"

namespace nemotron_h {

/// q[m * ldq + k] = e4m3(x[m * ldx + k] / *scale) for m < M, k < K: the division in fp32
/// rounded to nearest (__fdiv_rn), the conversion to nearest even and saturating at +-448
/// (NaN stays NaN), which is model/quant_formats.hpp's float_to_e4m3 of the fp32 quotient.
/// `scale` is the static input scale in device memory (read when the kernel runs). K, ldx
/// and ldq multiples of 8, x and q 16-byte aligned. One kernel, grid sized from M and K, no
/// allocation: capture-safe. Throws piecewise::config_error for bad sizes, piecewise::cuda_error
/// if the launch fails.
void quantize_fp8_rows(const bf16* x, int ldx, const float* scale, std::uint8_t* q, int ldq, int M, int K,
                       cudaStream_t stream);

/// *amax = max(*amax, max |x[m * ldx + k]|) over m < M, k < K (an atomic max on the fp32 bits:
/// exact and independent of the order, since |bf16| is exact in fp32; a NaN input makes the
/// result NaN-like and is the caller's to reject). Zero *amax before the first call. K and ldx
/// multiples of 8, x 16-byte aligned. One kernel, no allocation: capture-safe. Throws
/// piecewise::config_error for bad sizes, piecewise::cuda_error if the launch fails.
void amax_abs_rows(const bf16* x, int ldx, int M, int K, float* amax, cudaStream_t stream);

/// *scale = ModelOpt's per-tensor FP8 scale of *amax: amax / 448 in fp32 rounded to nearest
/// (1 for amax 0), model/quant_formats.hpp's fp8_scale. One single-thread kernel: capture-safe.
void fp8_scale_from_amax(const float* amax, float* scale, cudaStream_t stream);

/// q[i] = e4m3(w[i] / *scale) for i < n: the quotient in float64 (bf16 and fp32 are exact
/// there, the division rounded once to nearest), then rounded to nearest even and saturated at
/// +-448, NaN to 0x7f: model/quantize.hpp's quantize_fp8 bit for bit for the same scale
/// (it divides in float64 too). w 16-byte aligned, q 8-byte aligned. One
/// kernel, no allocation: capture-safe. Throws piecewise::config_error for bad sizes or
/// alignment, piecewise::cuda_error if the launch fails.
void quantize_fp8_weight(const bf16* w, std::size_t n, const float* scale, std::uint8_t* q, cudaStream_t stream);

}  // namespace nemotron_h
