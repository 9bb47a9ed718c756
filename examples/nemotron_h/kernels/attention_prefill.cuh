// Causal GQA prefill attention over packed sequences with cached prefixes (no RoPE).
#pragma once

#include <cuda_runtime.h>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "kernels/kv_cache.cuh"

namespace nemotron_h {

/// Which kernel attention_prefill() runs.
enum class prefill_kernel {
  automatic,  ///< wgmma on compute capability 9.0 (Hopper), mma.sync everywhere else
  mma_sync,   ///< the portable kernel: mma.sync m16n8k16, cp.async double buffering, 64x64 tiles
  wgmma,      ///< the sm_90a kernel (config_error on any other device)
};

struct prefill_options {
  prefill_kernel kernel = prefill_kernel::automatic;
  int stages = 0;     ///< wgmma K/V ring depth, 2 or 3; 0 = the default (3)
  int pingpong = -1;  ///< wgmma: 1 = the two consumer warpgroups take turns issuing their MMAs
                      ///< (FA3 ping-pong), 0 = they do not, -1 = the default (1)
  int persistent = -1;  ///< wgmma: 1 = one block per SM walking the query tiles, 0 = one block
                        ///< per query tile, -1 = the default (1)
};

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
/// written. Flash-style, online softmax in fp32, bf16 P in the PV product. Two kernels
/// (opt.kernel): on Hopper (compute capability 9.0) a FlashAttention-3 style sm_90a kernel
/// (TMA K/V ring with mbarriers, a producer warpgroup and two wgmma consumer warpgroups,
/// 128x128 tiles, attention_prefill_sm90.cu); elsewhere, or when asked, the portable mma.sync
/// kernel (64x64 tiles). Both cover every case below; neither uses atomics (deterministic).
/// Requirements (piecewise::config_error otherwise): head_dim == 128 (all NemotronH models),
/// Hq % Hkv == 0, strides multiples of 8, 16-byte aligned pointers, context_lens[s] + new
/// tokens <= cache.max_context; prefill_kernel::wgmma only on a compute capability 9.0
/// device, stages 0, 2 or 3, pingpong and persistent -1, 0 or 1.
/// Capture-safe: all per-step metadata is read from batch's device buffers; the grid is sized
/// from batch.max_seqlen (query tiles) and batch.max_seqs, surplus blocks exit early; no
/// allocation, no host sync (the one-time cudaFuncSetAttribute and device query are not
/// stream operations; the wgmma kernel's tensor maps are encoded on the host per call and
/// passed by value, so a captured graph keeps them).
void attention_prefill(const bf16* q, int ldq, const bf16* k, const bf16* v, int ldkv,
                       const kv_cache_view& cache, const batch_view& batch, int num_q_heads,
                       bf16* out, int ldo, cudaStream_t stream, const prefill_options& opt = {});

}  // namespace nemotron_h
