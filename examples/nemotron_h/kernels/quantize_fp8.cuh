// Static per-tensor FP8 quantization of GEMM inputs (ModelOpt W8A8): the e4m3 operand that
// gemm_engine::linear_fp8 multiplies with an FP8 weight.
#pragma once

#include <cuda_runtime.h>

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

}  // namespace nemotron_h
