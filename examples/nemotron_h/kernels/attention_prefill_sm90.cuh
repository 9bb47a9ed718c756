// Hopper (sm_90a) path of the causal GQA prefill attention: wgmma + TMA + warp
// specialisation. Internal to attention_prefill.cu (and its benchmark); the public entry point
// is attention_prefill() in attention_prefill.cuh, which picks this path on compute
// capability 9.0 devices.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "kernels/batch.cuh"
#include "kernels/common.cuh"
#include "kernels/kv_cache.cuh"

namespace nemotron_h::detail {

struct prefill_sm90_args {
  const bf16* q = nullptr;
  int ldq = 0;
  kv_cache_view cache;
  batch_view batch;
  int num_q_heads = 0;
  bf16* out = nullptr;
  int ldo = 0;
};

/// True when the current device runs the sm_90a kernel (compute capability 9.0 exactly).
/// Cached per device; not a stream operation (fine during capture).
bool prefill_sm90_supported();

/// Supported K/V ring depths (shared-memory stages of one 128-key K and V tile each).
constexpr int kPrefillSm90MinStages = 2, kPrefillSm90MaxStages = 3, kPrefillSm90DefaultStages = 3;
/// Whether the two consumer warpgroups alternate their MMAs by default (FA3 ping-pong), and
/// whether the grid is persistent (one block per SM walking work items). 3 stages + ping-pong
/// + persistent was the fastest variant at 1 x 4096 and 4 x 1024 tokens on the H200 and within
/// 1% of the fastest at 1 x 1024 (docs/bench/h200/attention_prefill_ac8ddae.log).
constexpr bool kPrefillSm90DefaultPingpong = true;
constexpr bool kPrefillSm90DefaultPersistent = true;

/// Launches the attention part (not the KV append) of prefill on the sm_90a kernel: 128 query
/// rows per block (two consumer warpgroups of 64 rows), 128-key tiles, K/V through a
/// `stages`-deep TMA ring; `pingpong` makes the two consumer warpgroups take turns issuing
/// their MMAs; `persistent` launches one block per SM that walks the work items (otherwise one
/// block per item). head_dim must be 128; the caller validated shapes and alignment.
/// Throws piecewise::config_error when a tensor map cannot be encoded (e.g. the driver lacks
/// cuTensorMapEncodeTiled) or stages is out of range. Capture-safe (tensor maps are kernel
/// parameters, all per-step metadata is read on the device).
void attention_prefill_sm90(const prefill_sm90_args& a, int stages, bool pingpong,
                            bool persistent, cudaStream_t stream, const std::string& shape);

}  // namespace nemotron_h::detail
