// Mamba2 recurrent SSM update for a batch of state slots (decode): per sequence s, head h,
// for each of its new tokens t (normally exactly one):
//   dt = clamp(softplus(dt_raw[t,h] + dt_bias[h]), dt_min, dt_max),  A = -exp(A_log[h])
//   S  = S * exp(dt*A) + dt * x_t (outer) B_t     (S: fp32 [P][N] in the slot)
//   y_t = S C_t + D[h] * x_t
// Memory-bound: each slot's fp32 state is read once and written once, coalesced.
#pragma once

#include <cuda_runtime.h>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "kernels/mamba_state.cuh"

namespace nemotron_h {

/// Recurrent SSM update.
/// xbc: the conv output, bf16 [tokens, conv_dim] contiguous (x | B | C per row);
/// dt_raw: bf16, element (t, h) at dt_raw[t * ld_dt + h] (the dt columns of the in_proj
/// output: pass zxbcdt + dims.dt_offset() and ld_dt = dims.in_proj_dim());
/// A_log, D, dt_bias: fp32 [H]; ssm_state: fp32 [num_slots][H][P][N] (mamba_state.cuh);
/// y: bf16 [tokens, H*P] (rows >= num_tokens are not written).
/// dt_max may be +infinity (time_step_limit (0, inf)).
/// Sequences with context_lens[s] == 0 start from a zero state. A sequence with several
/// tokens is processed token by token (exact recurrence; meant for decode / tests).
/// Requirements: N in {64, 128, 256}; P >= 1; H % G == 0 (config_error otherwise).
/// Capture-safe: metadata from batch's device buffers; grid (H * splits, batch.max_seqs), where
/// splits (blocks per head, each owning a range of the P state rows) grows as the batch
/// shrinks, so that a batch of one still fills the chip. Results do not depend on splits.
/// load_state_early: the kernel is launched with programmatic dependent launch (kernels/pdl.cuh)
/// and by default loads nothing before the previous kernel on the stream has finished. With
/// true it loads the batch metadata, A_log, D, dt_bias and its first state rows while that
/// kernel drains (one to two memory round trips off the step at batch 1), which is correct only
/// when the kernel just before it on `stream` writes none of them (in a decode step that kernel
/// is the conv update, which writes xbc only; two mamba_decode calls back to back on one state
/// need the default). Same results either way.
/// Throws piecewise::config_error / piecewise::cuda_error.
void mamba_decode(const bf16* xbc, const bf16* dt_raw, int ld_dt, const float* A_log,
                  const float* D, const float* dt_bias, float* ssm_state, bf16* y,
                  const batch_view& batch, const mamba_dims& dims, float dt_min, float dt_max,
                  cudaStream_t stream, bool load_state_early = false);

}  // namespace nemotron_h
