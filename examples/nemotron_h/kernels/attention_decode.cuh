// GQA decode attention (one new token per sequence) over the KV cache: one launch that
// appends the new K/V rows, splits each sequence's context over several blocks
// (flash-decoding) and merges the splits in the block that finishes last.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "kernels/kv_cache.cuh"

namespace nemotron_h {

/// Keys per pipeline tile (a split is a whole number of tiles).
inline constexpr int kDecodeTileKeys = 64;
/// Largest Hq / Hkv ratio attention_decode supports. Up to 16 query heads of a KV head share
/// one block (one m16 tensor-core tile); larger groups (up to 32: Nemotron-3-Ultra's 64/2) take
/// ceil(ratio / 16) blocks per KV head.
inline constexpr int kDecodeMaxGroup = 32;
/// Largest number of splits per sequence.
inline constexpr int kDecodeMaxSplits = 128;

/// Tunables of attention_decode (0 = automatic). Benchmarks sweep them; a runner leaves
/// them at their defaults.
struct attention_decode_tuning {
  /// Most blocks per (sequence, KV head); the context is cut into that many nearly equal
  /// runs of whole tiles. Automatic: enough that max_seqs * Hkv * splits fills the resident
  /// blocks of the card about once, at most 2 sqrt(ceil(max_context / 64)).
  int splits = 0;
  /// cp.async pipeline depth in tiles of K and V (2, 3 or 4; automatic: 3).
  int stages = 0;
};

/// Workspace bytes attention_decode() needs for any batch with batch.max_seqs <= max_seqs
/// and this max_context: fp32 partial outputs and (max, sum) pairs of the splits, then the
/// per-(sequence, KV head, query sub-group) split counters at the end. max_context bounds context_lens[s] + 1 over the batch.
/// Host only; it queries the current device (SM count, occupancy). Throws
/// piecewise::config_error for non-positive sizes or out-of-range tuning.
[[nodiscard]] std::size_t attention_decode_workspace_bytes(int max_seqs, int num_q_heads,
                                                           int num_kv_heads, int head_dim,
                                                           int max_context,
                                                           const attention_decode_tuning& tune = {});

/// Bytes at the END of the workspace (of workspace_bytes as passed to attention_decode) that
/// hold the split counters of batches up to max_seqs sequences (room for the
/// ceil(kDecodeMaxGroup / 16) query sub-groups of any supported ratio). They must be zero before the
/// first attention_decode() call on a workspace (e.g. cudaMemset of the whole workspace once
/// after allocation); every call leaves them zero again, so pass the same workspace_bytes
/// every call. The rest of the workspace needs no initialization. Host only.
[[nodiscard]] std::size_t attention_decode_counter_bytes(int max_seqs, int num_kv_heads);

/// Decode attention. Sequence s has its new token(s) at packed rows cu_seqlens[s] ..
/// cu_seqlens[s+1]-1; their K/V are written to slot slots[s] at positions context_lens[s] + i
/// (as kv_cache_append would, dropping positions >= cache.max_context), and the query of the
/// last row attends to keys 0 .. context_lens[s] + len - 1 (the new keys are read from k/v
/// directly). The Hq/Hkv query heads of a KV head are processed by the same block when there
/// are at most 16 of them, so each K/V row is read once; a larger group is cut into
/// ceil(ratio / 16) sub-groups of nearly equal size, one block each (adjacent blocks: the
/// repeated K/V reads mostly hit L2). The context is split over up to `splits` blocks per
/// (sequence, KV head, sub-group) chosen from the host bounds; the last block of each to
/// finish merges the splits in a fixed order, so results are deterministic.
/// q: [tokens, Hq*hd] row stride ldq; k, v: [tokens, Hkv*hd] row stride ldkv (see
/// attention_prefill for the fused-qkv convention); out: [tokens, Hq*hd] row stride ldo
/// (only the sequences' last rows are written). workspace: device memory of at least
/// attention_decode_workspace_bytes(batch.max_seqs, Hq, Hkv, hd, max_context, tune) bytes,
/// 256-byte aligned, its counters zero (see attention_decode_counter_bytes); calls that share
/// a workspace must run in stream order (the layers of a model do). max_context:
/// host bound on context_lens[s] + len (<= cache.max_context); it bounds the splits.
/// Requirements (piecewise::config_error otherwise): head_dim == 128, Hq % Hkv == 0,
/// Hq / Hkv <= kDecodeMaxGroup, strides multiples of 8, 16-byte aligned pointers, a large
/// enough workspace, tuning in range.
/// Capture-safe: metadata from device memory, grid (Hkv * sub-groups, splits, max_seqs) from host bounds,
/// surplus blocks exit early, no allocation or host sync.
void attention_decode(const bf16* q, int ldq, const bf16* k, const bf16* v, int ldkv,
                      const kv_cache_view& cache, const batch_view& batch, int num_q_heads,
                      bf16* out, int ldo, void* workspace, std::size_t workspace_bytes,
                      int max_context, cudaStream_t stream,
                      const attention_decode_tuning& tune = {});

}  // namespace nemotron_h
