// Activations of the NemotronH MLP.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/common.cuh"

namespace nemotron_h {

/// In place x = relu(x)^2 over n bf16 elements (fp32 math, one rounding), 16-byte vectors
/// where x is 16-byte aligned, scalar tail otherwise. One grid-stride kernel sized from n
/// (use the padded element count); no allocation or sync: capture-safe. Throws
/// piecewise::cuda_error if the launch fails.
void relu2_inplace(bf16* x, std::size_t n, cudaStream_t stream);

}  // namespace nemotron_h
