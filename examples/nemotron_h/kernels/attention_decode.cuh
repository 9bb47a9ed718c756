// GQA decode attention (one new token per sequence) over the KV cache, split along the
// context (flash-decoding) with a combine step.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "kernels/kv_cache.cuh"

namespace nemotron_h {

/// Keys handled by one block of the split kernel.
inline constexpr int kDecodeSplitKeys = 128;

/// Workspace bytes attention_decode() needs for these host bounds: fp32 partial outputs and
/// (max, sum) pairs for max_seqs x ceil(max_context / kDecodeSplitKeys) x Hq.
/// max_context bounds context_lens[s] + 1 over the batch. Host only.
[[nodiscard]] std::size_t attention_decode_workspace_bytes(int max_seqs, int num_q_heads,
                                                           int head_dim, int max_context);

/// Decode attention. Sequence s has its new token at packed row cu_seqlens[s+1]-1 (decode
/// batches have one token per sequence); the token's K/V are first appended to slot slots[s]
/// at position context_lens[s] (kv_cache_append), then its query attends to keys
/// 0 .. context_lens[s] of the slot. All Hq/Hkv query heads of a KV head are processed by
/// the same block, so each K/V row is read once. Long contexts are split into chunks of
/// kDecodeSplitKeys keys (one block each) and merged by a combine kernel.
/// q: [tokens, Hq*hd] row stride ldq; k, v: [tokens, Hkv*hd] row stride ldkv (see
/// attention_prefill for the fused-qkv convention); out: [tokens, Hq*hd] row stride ldo
/// (only the sequences' last rows are written). workspace: device memory of at least
/// attention_decode_workspace_bytes(batch.max_seqs, Hq, hd, max_context) bytes, 256-byte
/// aligned. max_context: host bound on context_lens[s] + 1 (<= cache.max_context); it sizes
/// the grid. Requirements (piecewise::config_error otherwise): head_dim == 128,
/// Hq / Hkv <= 8, Hq % Hkv == 0, strides multiples of 8, 16-byte aligned pointers, a large
/// enough workspace.
/// Capture-safe: metadata from device memory, grid from host bounds (max_seqs, max_context),
/// surplus blocks exit early, no allocation or host sync.
void attention_decode(const bf16* q, int ldq, const bf16* k, const bf16* v, int ldkv,
                      const kv_cache_view& cache, const batch_view& batch, int num_q_heads,
                      bf16* out, int ldo, void* workspace, std::size_t workspace_bytes,
                      int max_context, cudaStream_t stream);

}  // namespace nemotron_h
