// Mamba2 SSD chunked scan for prefill over packed sequences (chunk length L = 128; chunks
// never cross a sequence boundary). Per sequence s and head h, from the initial state
// (the slot's fp32 SSM state when context_lens[s] > 0, else zero):
//   dt = clamp(softplus(dt_raw + dt_bias), dt_min, dt_max), A = -exp(A_log)
//   S_t = exp(dt_t A) S_{t-1} + dt_t x_t (outer) B_t,   y_t = S_t C_t + D x_t
// computed in the chunked (SSD) form; the final state is written back to the slot (fp32).
//
// Three kernels, tensor cores (mma.sync m16n8k16 bf16 -> fp32, ldmatrix, cp.async pipelines):
//   1. ssd_chunk_prep:  per (chunk, head): dt (clamped) and the inclusive cumsum of dt*A.
//   2. state walk: one block per (64 state columns, head, sequence) walks the sequence's
//      chunks in order with the running state in registers:
//      H_{c+1} = exp(Acs_last) H_c + (x*dt*exp(Acs_last - Acs))^T B; stores each chunk's
//      entering state H_c (bf16) in the workspace and the final state in the slot (fp32).
//   3. output: one block per (chunk, group, 1..16 heads: fewer when chunks are few, so that
//      short prompts still fill the chip); C B^T is computed once per block and chunk and
//      kept in registers: y = ((C B^T) o decay o dt) X + (exp(Acs) C) H_c^T + D x.
// The original wmma kernels remain selectable with NH_SSD_SCAN_LEGACY=1 (A/B timing).
//
// Data types: xbc is the conv output, bf16 [tokens, conv_dim] contiguous (x | B | C);
// dt_raw bf16 strided (element (t,h) at dt_raw[t*ld_dt + h]); A_log, D, dt_bias fp32 [H];
// ssm_state fp32 [num_slots][H][P][N]; y bf16 [tokens, H*P] contiguous (rows >= num_tokens
// are not written). Accumulation fp32; matmul operands rounded to bf16.
// Supported shapes: P in {32, 64, 80}, N % 16 == 0 with 16 <= N <= 256 (N > 128: the output
// kernel keeps C in shared memory instead of registers; N <= 128 under NH_SSD_SCAN_LEGACY=1), H % G == 0,
// conv_dim % 8 == 0 (config_error otherwise).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "kernels/mamba_state.cuh"

namespace nemotron_h {

/// SSD chunk length.
inline constexpr int ssd_chunk = 128;

/// Upper bound of the number of chunks of a packed batch with these host bounds:
/// min(padded_tokens, ceil(padded_tokens / L) + max_seqs).
[[nodiscard]] int ssd_max_chunks(int padded_tokens, int max_seqs);

/// Workspace bytes ssd_scan needs for these bounds (dt and cumsum per chunk/head/position,
/// fp32, plus every chunk's entering state, bf16 [chunks][H][P][N]). Host only.
[[nodiscard]] std::size_t ssd_scan_workspace_bytes(int padded_tokens, int max_seqs,
                                                   const mamba_dims& dims);

/// Runs the chunked scan (see the file comment). `workspace` must hold
/// ssd_scan_workspace_bytes(batch.padded_tokens, batch.max_seqs, dims) bytes, 256-byte
/// aligned. dt_max may be +infinity.
/// Capture-safe: counts, offsets, slots and context lengths are read from batch's device
/// buffers; grids are sized from batch.padded_tokens / batch.max_seqs (and the device's
/// multiprocessor count) and blocks loop over the real chunks / sequences, or exit early
/// when there are none; no allocation, no host synchronisation. Results do not depend on
/// the grid.
/// Throws piecewise::config_error (unsupported shape, small workspace, null pointers) or
/// piecewise::cuda_error (launch failure).
void ssd_scan(const bf16* xbc, const bf16* dt_raw, int ld_dt, const float* A_log,
              const float* D, const float* dt_bias, float* ssm_state, bf16* y, void* workspace,
              std::size_t workspace_bytes, const batch_view& batch, const mamba_dims& dims,
              float dt_min, float dt_max, cudaStream_t stream);

}  // namespace nemotron_h
