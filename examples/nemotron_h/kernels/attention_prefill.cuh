// Causal GQA prefill attention over packed sequences with cached prefixes (no RoPE).
#pragma once

#include <cuda_runtime.h>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "kernels/kv_cache.cuh"

namespace nemotron_h {

/// Prefill attention for a packed batch. For every sequence s (tokens cu_seqlens[s] ..
/// cu_seqlens[s+1]-1, with context_lens[s] tokens already cached in slot slots[s]):
///  1. appends the new tokens' K/V to the cache (kv_cache_append);
///  2. out[t, h*hd:(h+1)*hd] = softmax(q_t . K^T / sqrt(hd)) V over the slot's keys
///     0 .. context_lens[s] + i (i = t - cu_seqlens[s]): the cached prefix plus the causal part
///     of the new tokens, read back from the cache. Query head h uses KV head h / (Hq / Hkv).
/// Inputs are views into the projection output: q [tokens, Hq*hd] with row stride ldq; k, v
/// [tokens, Hkv*hd] with row stride ldkv (separate buffers: ldq = Hq*hd, ldkv = Hkv*hd; one
/// fused qkv buffer [tokens, (Hq+2Hkv)*hd]: q = qkv, k = qkv + Hq*hd, v = k + Hkv*hd, all
/// strides (Hq+2Hkv)*hd). out: bf16 [tokens, Hq*hd] with row stride ldo; padding rows are not
/// written. Flash-style: bf16 tensor-core mma (m16n8k16) for QK^T and PV, online softmax in
/// fp32, 64x64 tiles.
/// Requirements (piecewise::config_error otherwise): head_dim == 128 (all NemotronH models),
/// Hq % Hkv == 0, strides multiples of 8, 16-byte aligned pointers, context_lens[s] + new
/// tokens <= cache.max_context.
/// Capture-safe: all per-step metadata is read from batch's device buffers; the grid is sized
/// from batch.max_seqlen (query tiles) and batch.max_seqs, surplus blocks exit early; no
/// allocation, no host sync (the one-time cudaFuncSetAttribute is not a stream operation).
void attention_prefill(const bf16* q, int ldq, const bf16* k, const bf16* v, int ldkv,
                       const kv_cache_view& cache, const batch_view& batch, int num_q_heads,
                       bf16* out, int ldo, cudaStream_t stream);

}  // namespace nemotron_h
