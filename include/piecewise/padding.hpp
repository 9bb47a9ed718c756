// piecewise/padding.hpp — the kernels that keep padded rows clean.
//
// Both read the real count from a device int (fixed address), so the same launch works
// eagerly, inside a piecewise segment and inside a full graph: every mode runs the very
// same kernels, which is what makes eager and graph results bit-identical.
#pragma once

#include <cuda_runtime.h>

#include "piecewise/cuda_error.hpp"
#include "piecewise/segment_table.hpp"

namespace piecewise {

/// Zeroes rows [*device_real, padded) of `b` on `s`. The grid is sized for `padded` rows;
/// nothing is written when *device_real >= padded. Capture-safe. Throws cuda_error if the
/// launch fails, config_error if padded exceeds b.rows.
void zero_padded_rows(const row_buffer& b, const int* device_real, int padded, cudaStream_t s);

/// Writes `value` to the device int `dst` on `s` (a one-thread kernel, so the value travels
/// as a kernel parameter and the host may reuse its variable at once). Capture-safe, but a
/// captured launch replays the captured value.
void set_device_int(int* dst, int value, cudaStream_t s);

}  // namespace piecewise
