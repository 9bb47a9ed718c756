// The synthetic weights drawn on the GPU, straight into device tensors: the same values as the
// host's synthetic_weights (model/synthetic_draw.hpp is the one definition both use).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "model/dtype.hpp"

namespace nemotron_h {

/// Writes the n values of a tensor drawn normal(0, scale) (`normal`) or uniform(-scale, scale)
/// from the stream `base` (tensor_seed(seed, name)) to `out`, a device buffer of n bf16 or
/// f32 elements (f32 receives the bf16-rounded values, as the host draw stores them). Bit for
/// bit what the host draw gives. Asynchronous on `stream`; one kernel, no allocation or sync:
/// capture-safe. Throws piecewise::config_error for another dtype or a misaligned `out`.
void synthetic_fill(void* out, dtype type, std::size_t n, std::uint64_t base, bool normal, double scale,
                    cudaStream_t stream);

}  // namespace nemotron_h
