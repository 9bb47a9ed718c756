// Hopper (sm_90a) path of the MoE grouped GEMM: wgmma with the weights as the M side (64
// weight rows a warpgroup) and the token rows as N (16, 64 or 128). Internal to moe.cu, which
// picks it on compute capability 9.0 devices for every tile height, so that a row's bits do
// not depend on the tile height within one device.
#pragma once

#include <cuda_runtime.h>

#include "kernels/common.cuh"

namespace nemotron_h::detail {

struct moe_gemm_sm90_args {
  const bf16* X = nullptr;
  int ldx = 0;
  bool gather = false;
  const bf16* W = nullptr;
  int N = 0, K = 0;
  bf16* Y = nullptr;
  int ldy = 0;
  bool relu2 = false;
  int E = 0;
  long long R = 0;  ///< plan.rows * k, the host bound
  const int* offsets = nullptr;
  const int* sorted_token = nullptr;
  const int* tile_prefix = nullptr;  ///< of the tile height `bm`
  const int* tile_expert = nullptr;  ///< the expert of every m-tile of that height
};

/// True when the current device runs the sm_90a kernels (compute capability 9.0 exactly) and
/// NH_MOE_NO_WGMMA is not set to 1. Cached per device; not a stream operation.
bool moe_gemm_sm90_supported();

/// Launches the grouped GEMM for token tiles of `bm` rows (16, 64 or 128), with programmatic
/// dependent launch (kernels/pdl.cuh). Capture-safe.
void moe_gemm_sm90(const moe_gemm_sm90_args& a, int bm, cudaStream_t s);

}  // namespace nemotron_h::detail
