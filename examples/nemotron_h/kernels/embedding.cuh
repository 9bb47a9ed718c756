// Token embedding gather.
#pragma once

#include <cuda_runtime.h>

#include "kernels/common.cuh"

namespace nemotron_h {

/// out[r] = table[ids[r]] for r < rows (or < *num_rows when num_rows is given; later rows
/// are left untouched). ids: int32 [rows] on the device; table: bf16 [vocab, D]; out: bf16
/// [rows, D]. An id outside [0, vocab) reads row 0 (padding rows may hold any id; the runner
/// writes 0 there). Requires D % 8 == 0 and 16-byte aligned table/out (throws
/// piecewise::config_error). One kernel, no allocation or sync: capture-safe.
void embedding(const int* ids, const bf16* table, bf16* out, int rows, int D, int vocab,
               cudaStream_t stream, const int* num_rows = nullptr);

}  // namespace nemotron_h
