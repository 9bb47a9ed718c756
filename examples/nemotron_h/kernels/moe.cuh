// Mixture-of-experts kernels for the NemotronH 'E' layers (Nemotron 3): routing, the expert
// plan (a stable counting sort of the token -> expert assignments), grouped GEMMs over the
// routed experts, and the weighted combine. The math is docs/moe.md's; the float64 reference
// is reference/moe_ref.cpp.
//
// One MoE layer on `rows` token rows (a host-side bound: the padded bucket), of which the first
// *num_tokens (device memory) are real:
//   logits  = x W_gate^T                     fp32 [rows, E] (a cuBLASLt GEMM, not here)
//   moe_route(logits)                        -> plan.topk_ids / topk_weights   [rows, k]
//   moe_build_plan(plan)                     -> counts, offsets, permutation, GEMM tiles
//   moe_grouped_gemm(x, up,   relu2 = true)  -> u  [rows * k, F]  (permuted rows)
//   moe_grouped_gemm(u, down, relu2 = false) -> y  [rows * k, W]  (permuted rows)
//   moe_combine(y)                           -> out[t] (+)= sum_j w[t, j] y[pos(t, j)]
//
// Every kernel reads its counts from device memory and sizes its grid from host bounds, so
// all of them are capture-safe (no allocation, no host synchronisation) and a graph captured
// once is replayed with any routing. Results are deterministic and a row's result does not
// depend on `rows`, on the other rows, or on which expert tile it lands in: the permuted
// order is stable (by token, then by j), the GEMM accumulates every output element in the
// same K order whatever the tile shape, and the combine sums j = 0..k-1 in order.
//
// Rows t >= *num_tokens are not routed (topk_ids = -1, weights 0) and cost no expert work.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/common.cuh"
#include "kernels/moe_plan_size.hpp"

namespace nemotron_h {

/// The routing of one MoE layer (docs/moe.md): sigmoid scores, `bias` (the
/// e_score_correction_bias) added for choosing only, grouped top-k, renormalisation, scaling.
struct moe_route_params {
  int num_experts = 0;      ///< E (1..kMoeMaxExperts)
  int top_k = 0;            ///< k (1..min(E, kMoeMaxTopK))
  int n_group = 1;          ///< E % n_group == 0
  int topk_group = 1;       ///< groups kept (<= n_group)
  bool renormalize = true;  ///< norm_topk_prob: divide the k weights by their sum (+1e-20)
  float scaling = 1.0f;     ///< routed_scaling_factor
};


/// The routing and plan of one MoE layer in device memory (non-owning views into one block
/// from make_moe_plan_view). `rows` and E are those the view was made for; a caller may lower
/// `rows` in a copy of the view to the rows of one call (a smaller bucket: the grids shrink
/// with it), as the layout depends only on the rows it was made for. One view can serve every
/// MoE layer of a model in turn (layers run one after another on one stream).
struct moe_plan_view {
  int rows = 0;              ///< token rows this view was sized for (host bound)
  int num_experts = 0;       ///< E
  int top_k = 0;             ///< k
  int* topk_ids = nullptr;   ///< [rows * k] expert of assignment (t, j); -1 for t >= *num_tokens
  float* topk_weights = nullptr;  ///< [rows * k] its weight (0 for t >= *num_tokens)
  int* expert_offsets = nullptr;  ///< [E + 1] first permuted row of expert e; [E] = routed rows
  int* sorted_token = nullptr;    ///< [rows * k] permuted row -> its token t
  int* assignment_row = nullptr;  ///< [rows * k] assignment t * k + j -> its permuted row
  void* internal = nullptr;       ///< the kernels' own part (counts, tile list), opaque
  std::size_t internal_bytes = 0;
  /// The kernels' own: per tile height, the expert of every m-tile (written by moe_build_plan,
  /// sized for the rows the view was made for).
  int* tile_expert[kMoeTileKinds] = {};
};

/// Device bytes of a plan for `rows` token rows, E experts, top-k (moe_plan_bytes_unchecked,
/// kernels/moe_plan_size.hpp, after range checks: piecewise::config_error). Host only.
std::size_t moe_plan_bytes(int rows, int num_experts, int top_k);
/// Carves a plan view out of `p` (moe_plan_bytes(rows, E, k) bytes, 256-byte aligned).
moe_plan_view make_moe_plan_view(void* p, int rows, int num_experts, int top_k);

/// Routing of rows t < *num_tokens from fp32 router logits [rows, ld] (ld >= E) and the fp32
/// correction bias [E] (nullable: zero): writes plan.topk_ids / topk_weights with the k chosen
/// experts in descending biased score, ties by the lower expert index (docs/moe.md's rule).
/// Rows t >= *num_tokens get ids -1 and weights 0. Throws piecewise::config_error for params
/// out of range or not matching the plan. Capture-safe.
void moe_route(const float* logits, int ld, const float* bias, const moe_route_params& params,
               const moe_plan_view& plan, const int* num_tokens, cudaStream_t s);

/// From plan.topk_ids: expert_offsets, sorted_token and assignment_row (a stable counting sort:
/// within an expert, assignments in increasing t * k + j), and the tile list the grouped GEMMs
/// walk. Assignments t >= *num_tokens (and invalid ids) get assignment_row -1. One launch of
/// ceil(E / 32) blocks. Throws piecewise::config_error for a bad view. Capture-safe;
/// deterministic.
void moe_build_plan(const moe_plan_view& plan, const int* num_tokens, cudaStream_t s);

/// Which kernel moe_grouped_gemm uses. small_m, medium_m, large_m: tensor-core tiles of 16, 64
/// or 128 rows of one expert a block, all bit-identical (the same k16 mma sequence per output
/// element). gemv: for decode, one warp a weight row of an expert streaming it at full
/// bandwidth for up to 16 rows of that expert (in passes of 4), fp32 fmaf in K order: its own
/// deterministic bits, not the tensor-core paths'. `automatic` picks from the host bounds by
/// the mean rows an expert, plan.rows * k / E (small below 24, medium below 128, large above);
/// it takes gemv (at plan.rows * k <= 2 E) only with NH_MOE_GEMV=1 in the environment (read
/// once; its first version was slower than small_m on the H200, docs/moe.md). Forcing a path
/// is for tests and benchmarks.
enum class moe_gemm_path { automatic, small_m, medium_m, large_m, gemv };

/// The path moe_grouped_gemm takes for `path` on this plan (automatic resolved, a tile height
/// raised when its grid would exceed 65535 m-tiles). Host only.
moe_gemm_path moe_resolve_path(const moe_plan_view& plan, moe_gemm_path path = moe_gemm_path::automatic);

/// Grouped GEMM over the routed experts: for every permuted row i < expert_offsets[E] of expert
/// e, Y[i, :N] = act(A_i W[e]^T), with A_i = X[sorted_token[i], :K] when `gather` (X indexed by
/// token, e.g. the normed hidden state) else X[i, :K] (X already permuted, e.g. the up
/// projection's output), W [E, N, K] bf16 contiguous (one expert after another, nn.Linear
/// layout), act = relu(.)^2 when `relu2` else identity; fp32 accumulation, one bf16 rounding.
/// Rows i >= expert_offsets[E] of Y are not written. Requires K, N, ldx, ldy multiples of 8,
/// ldx >= K, ldy >= N, 16-byte aligned pointers (piecewise::config_error otherwise).
/// Reads only the weights of experts that received a row. Needs moe_build_plan's tile list.
/// Capture-safe (the grid is sized from plan.rows * k and E; surplus blocks exit at once).
void moe_grouped_gemm(const bf16* X, int ldx, bool gather, const bf16* W, int N, int K, bf16* Y, int ldy, bool relu2,
                      const moe_plan_view& plan, cudaStream_t s,
                      moe_gemm_path path = moe_gemm_path::automatic);

/// out[t, :W] = (accumulate ? out[t, :W] : 0) + sum_{j < k} topk_weights[t, j] * Y[assignment_row[t * k + j], :W]
/// for t < *num_tokens: the j terms summed in fp32 in j order (fmaf), then added to the old
/// out value (when `accumulate`), one bf16 rounding; assignments without a permuted row
/// (assignment_row -1) are skipped. Rows t >= *num_tokens
/// (up to plan.rows) are left alone when `accumulate`, zeroed otherwise. W, ldy, ldo multiples
/// of 8. Capture-safe.
void moe_combine(const bf16* Y, int ldy, const moe_plan_view& plan, bf16* out, int ldo, int W, bool accumulate,
                 const int* num_tokens, cudaStream_t s);

}  // namespace nemotron_h
