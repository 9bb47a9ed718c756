// Mamba2 causal depthwise conv1d + bias + SiLU over packed sequences, with per-slot conv
// state (kernels/mamba_state.cuh layout: bf16 [num_slots][K-1][conv_dim], oldest first).
//
// Inputs come straight from the in_proj output: xbc points at the first xBC column of row 0
// of zxbcdt = [z | xBC | dt] and rows are ld_xbc elements apart (the in_proj width).
// Output: bf16 [padded_tokens, conv_dim] contiguous; rows >= num_tokens are not written.
// Weights: conv1d.weight as bf16 [conv_dim][K] (the [C,1,K] tensor squeezed), bias bf16
// [conv_dim]. Arithmetic in fp32.
// Requirements (checked, config_error otherwise): K == 4, conv_dim % 8 == 0, ld_xbc % 8 == 0,
// xbc / out / conv_state 16-byte aligned.
#pragma once

#include <cuda_runtime.h>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"

namespace nemotron_h {

/// Prefill: out[t] = silu(bias + sum_k w[:,k] * in[t-K+1+k]) for every packed token t,
/// where in[] before a sequence's first token is its slot's conv state when
/// context_lens[s] > 0, else zeros. Afterwards each sequence's slot holds the last K-1
/// inputs of [old state ; its new tokens] (a sequence with 0 new tokens is left untouched).
/// Two kernels (conv, then state write-back). Capture-safe: every count, offset and slot is
/// read from `batch`'s device buffers; grids come from batch.padded_tokens / max_seqs.
/// Throws piecewise::config_error for unsupported shapes, piecewise::cuda_error on launch
/// failure.
void conv1d_prefill(const bf16* xbc, int ld_xbc, const bf16* weight, const bf16* bias,
                    bf16* conv_state, bf16* out, const batch_view& batch, int conv_dim, int K,
                    cudaStream_t stream);

/// Decode (and any short sequences): one thread per (sequence, 8 channels) walks that
/// sequence's tokens in order (normally exactly one) with the window in registers, then
/// writes the slot's new conv state. Same inputs/outputs/semantics as conv1d_prefill; fast
/// when every sequence has few tokens. Capture-safe (device metadata, grid from
/// batch.max_seqs). Throws like conv1d_prefill.
/// Launched with programmatic dependent launch (kernels/pdl.cuh); it lets the next kernel start
/// as soon as it has waited for the one before it. load_state_early: also load the weights, the
/// batch metadata and the conv state while the previous kernel drains, correct only when the
/// kernel just before it on `stream` writes none of them (in a decode step that is in_proj,
/// which writes the projections only). Same results either way.
void conv1d_decode(const bf16* xbc, int ld_xbc, const bf16* weight, const bf16* bias,
                   bf16* conv_state, bf16* out, const batch_view& batch, int conv_dim, int K,
                   cudaStream_t stream, bool load_state_early = false);

}  // namespace nemotron_h
