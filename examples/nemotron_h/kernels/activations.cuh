// Activations of the NemotronH MLP.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/common.cuh"

namespace nemotron_h {

/// In place x = relu(x)^2 over n bf16 elements (fp32 math, one rounding), 16-byte vectors
/// where x is 16-byte aligned, scalar tail otherwise. One grid-stride kernel sized from n
/// (use the padded element count); no allocation or sync: capture-safe. Throws
/// piecewise::cuda_error if the launch fails.
void relu2_inplace(bf16* x, std::size_t n, cudaStream_t stream);

/// The squared ReLU of an FP8 down_proj's input: q[i] = e4m3(bf16(relu(x[i])^2) / *scale), the
/// weight's static input scale in device memory (read when the kernel runs); relu2_inplace then
/// quantize_fp8_rows bit for bit (kernels/fp8_device.cuh), with x left as it is. n a multiple of
/// 8, x 16-byte and q 8-byte aligned; throws piecewise::config_error naming what is wrong,
/// piecewise::cuda_error if the launch fails. One grid-stride kernel sized from n, no
/// allocation: capture-safe.
void relu2_fp8(const bf16* x, std::size_t n, const float* scale, std::uint8_t* q, cudaStream_t stream);

}  // namespace nemotron_h
