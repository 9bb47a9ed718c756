// KV cache of the NemotronH attention layers.
//
// Layout, per attention layer: K and V are each [num_slots][max_context][Hkv][head_dim] bf16,
// row-major. A token's K (or V) for all KV heads is one contiguous Hkv*head_dim row, so
// appending the new tokens of a step is a contiguous row copy, and the attention kernels read
// one 256-byte (head_dim 128) segment per key and KV head (fully used 32-byte sectors).
// A runner allocates the cache once (fixed addresses, so captured graphs stay valid) and
// selects a sequence's rows through batch_view::slots, read from device memory.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"

namespace nemotron_h {

/// Non-owning view of one attention layer's KV cache (device pointers + dims).
struct kv_cache_view {
  bf16* k = nullptr;  ///< [num_slots][max_context][num_kv_heads][head_dim]
  bf16* v = nullptr;  ///< same layout as k
  int num_slots = 0;
  int max_context = 0;  ///< positions per slot (prefix + new tokens must fit)
  int num_kv_heads = 0;
  int head_dim = 0;

  /// Elements between consecutive positions of one slot.
  [[nodiscard]] __host__ __device__ std::size_t row_elems() const {
    return static_cast<std::size_t>(num_kv_heads) * head_dim;
  }
  /// Element offset of (slot, position, kv head) in k or v.
  [[nodiscard]] __host__ __device__ std::size_t offset(int slot, int pos, int head) const {
    return (static_cast<std::size_t>(slot) * max_context + pos) * row_elems() +
           static_cast<std::size_t>(head) * head_dim;
  }
};

/// Bytes of ONE of K or V for one layer.
[[nodiscard]] inline std::size_t kv_cache_tensor_bytes(int num_slots, int max_context,
                                                       int num_kv_heads, int head_dim) {
  return static_cast<std::size_t>(num_slots) * max_context * num_kv_heads * head_dim *
         sizeof(bf16);
}

/// Bytes of K plus V for one attention layer.
[[nodiscard]] inline std::size_t kv_cache_layer_bytes(int num_slots, int max_context,
                                                      int num_kv_heads, int head_dim) {
  return 2 * kv_cache_tensor_bytes(num_slots, max_context, num_kv_heads, head_dim);
}

/// View of one layer inside a caller-owned buffer of kv_cache_layer_bytes() bytes
/// (K first, then V; both 256-byte aligned when `base` is). Host only, no GPU work.
[[nodiscard]] inline kv_cache_view make_kv_cache_view(void* base, int num_slots, int max_context,
                                                      int num_kv_heads, int head_dim) {
  kv_cache_view view;
  view.k = static_cast<bf16*>(base);
  view.v = view.k + kv_cache_tensor_bytes(num_slots, max_context, num_kv_heads, head_dim) /
                        sizeof(bf16);
  view.num_slots = num_slots;
  view.max_context = max_context;
  view.num_kv_heads = num_kv_heads;
  view.head_dim = head_dim;
  return view;
}

/// Writes the K/V rows of this batch's new tokens into the cache: packed token t of sequence
/// s (cu_seqlens[s] <= t < cu_seqlens[s+1]) goes to position context_lens[s] + (t -
/// cu_seqlens[s]) of slot slots[s]. k, v: [padded_tokens, Hkv*head_dim] views with row stride
/// ldkv elements (e.g. slices of a fused qkv projection output). Positions >= max_context are
/// dropped (the runner must size the cache for its longest sequence). Padding rows are
/// skipped. Requires head_dim % 8 == 0, ldkv % 8 == 0 and 16-byte aligned k/v (throws
/// piecewise::config_error). Capture-safe: metadata from device memory, grid from
/// batch.padded_tokens. Implemented in attention_prefill.cu; both attention paths call it.
void kv_cache_append(const kv_cache_view& cache, const bf16* k, const bf16* v, int ldkv,
                     const batch_view& batch, cudaStream_t stream);

}  // namespace nemotron_h
