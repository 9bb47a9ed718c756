// CPU references of every NemotronH building block, in float64.
//
// Layouts are row-major with the token dimension first. One call handles ONE sequence;
// packed batches are handled by the caller (tests, the whole-model CPU forward) by looping
// over sequences. These functions define the math the CUDA kernels are checked against;
// see ../shared/reference/nemotron_h.md.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace nemotron_h::ref {

// ---- dense (reference/dense_ref.cpp) ---------------------------------------------------

/// y[t] = w * x[t] / sqrt(mean(x[t]^2) + eps). x, y: [T, D]; w: [D]. y may alias x.
void rmsnorm(const double* x, const double* w, double* y, int T, int D, double eps);

/// y[T, N] = x[T, K] * W[N, K]^T (PyTorch nn.Linear layout, no bias).
void linear(const double* x, const double* W, double* y, int T, int K, int N);

/// In place: x = relu(x)^2.
void relu2(double* x, std::size_t n);

/// Gated RMSNorm (norm_before_gate = False): g = y * silu(z), then RMSNorm over each of
/// the G groups of d_inner / G channels, times w. y, z, out: [T, d_inner]; w: [d_inner].
void gated_rmsnorm(const double* y, const double* z, const double* w, double* out, int T,
                   int d_inner, int G, double eps);

/// Causal GQA attention for one sequence, no positional encoding.
/// q: [Tq, Hq, hd]; k, v: [Tk, Hkv, hd] (cached prefix followed by the new tokens, Tk >= Tq);
/// query i sits at absolute position Tk - Tq + i and sees keys 0 .. Tk - Tq + i.
/// Query head h reads KV head h / (Hq / Hkv). scale = 1/sqrt(hd) applied to q.k.
/// out: [Tq, Hq, hd].
void attention(const double* q, const double* k, const double* v, double* out, int Tq, int Tk,
               int Hq, int Hkv, int hd);

// ---- Mamba2 (reference/mamba_ref.cpp) ---------------------------------------------------

/// Causal depthwise conv1d + bias + SiLU over one sequence.
/// xbc: [T, C]; w: [C, K] (conv1d.weight [C, 1, K] squeezed); bias: [C].
/// state_in: [K-1, C], the K-1 inputs before this sequence, oldest first (nullptr = zeros).
/// out: [T, C]. state_out (may be nullptr): [K-1, C], the last K-1 inputs of
/// [state_in ; xbc] (oldest first), i.e. the conv state after this sequence.
void conv1d_silu(const double* xbc, const double* w, const double* bias, const double* state_in,
                 double* out, double* state_out, int T, int C, int K);

/// dt = softplus(dt_raw + dt_bias), clamped to [dt_min, dt_max]. dt_raw, dt: [T, H].
void dt_softplus(const double* dt_raw, const double* dt_bias, double* dt, int T, int H,
                 double dt_min, double dt_max);

/// Mamba2 SSM recurrence over one sequence (the exact sequential form).
/// x: [T, H, P]; dt: [T, H] (after dt_softplus); A: [H] (= -exp(A_log)); B, C: [T, G, N];
/// D: [H]. state: [H, P, N], the initial state on entry and the final state on return.
/// y: [T, H, P] = S_t C_t + D x_t. Head h uses group h / (H / G).
void ssm_scan(const double* x, const double* dt, const double* A, const double* B,
              const double* C, const double* D, double* state, double* y, int T, int H, int P,
              int G, int N);

// ---- MoE, Nemotron 3 (reference/moe_ref.cpp; docs/moe.md) -----------------------------------

/// The routing constants of a MoE layer (model_config's n_routed_experts, num_experts_per_tok,
/// n_group, topk_group, norm_topk_prob, routed_scaling_factor).
struct moe_routing {
  int num_experts = 0;   ///< E
  int top_k = 0;         ///< k <= topk_group * E / n_group
  int n_group = 1;       ///< E % n_group == 0; with n_group > 1, at least 2 experts a group
  int topk_group = 1;    ///< groups kept per token, <= n_group
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.0;
};

/// The router of one token from its logits (x . gate.weight^T, [E]) and the correction bias
/// [E]: scores s = sigmoid(logits); the bias is added for choosing only (b = s + bias). With
/// n_group > 1, a group's score is the sum of its two largest b, and the topk_group best
/// groups are kept (the other experts cannot be chosen). The k experts with the largest b
/// among the kept ones are chosen; their weights are the plain s, divided by their sum (+1e-20)
/// when norm_topk_prob, then times routed_scaling_factor.
/// Ties (equal b, or equal group scores): the lower index first. `experts` [k] receives the
/// chosen experts in descending b (ties: lower index first), `weights` [k] their weights.
void moe_route(const double* logits, const double* bias, const moe_routing& r, int* experts, double* weights);

/// The tensors of one MoE layer (float64, PyTorch layouts), W = the experts' width
/// (moe_latent_size, or D without latent projections).
struct moe_layer_ref {
  const double* gate = nullptr;         ///< [E, D]
  const double* bias = nullptr;         ///< [E], e_score_correction_bias
  const double* up = nullptr;           ///< [E, F, W], routed experts' up_proj
  const double* down = nullptr;         ///< [E, W, F], routed experts' down_proj
  const double* shared_up = nullptr;    ///< [Fs, D]
  const double* shared_down = nullptr;  ///< [D, Fs]
  const double* fc1_latent = nullptr;   ///< [W, D], or nullptr without latent projections
  const double* fc2_latent = nullptr;   ///< [D, W], or nullptr
  int F = 0;   ///< moe_intermediate_size
  int Fs = 0;  ///< moe_shared_expert_intermediate_size
  int W = 0;   ///< expert width: moe_latent_size, or D
  /// How the shared expert's and the latent projections' GEMMs run: y[T, N] = x[T, K] Wt^T
  /// for the layer tensor named `suffix` ("mixer.shared_experts.up_proj.weight", ...,
  /// "mixer.fc2_latent_proj.weight"), Wt the pointer above. Empty: linear(). The whole-model
  /// reference passes its own, which fake-quantizes the inputs of FP8 weights and lets
  /// calibration observe them (those four are the MoE layer's linear weights; the router and
  /// the routed experts always run here, unquantized).
  std::function<void(std::string_view suffix, const double* x, const double* Wt, double* y, int T, int K, int N)>
      linear;
};

/// The MoE mixer over T tokens: x [T, D] (the normed hidden state) -> out [T, D] =
/// fc2(sum_j w_j down_j(relu(up_j(fc1(x)))^2)) + shared_down(relu(shared_up(x))^2), with the
/// experts j and weights w_j of moe_route (the router and the shared expert read x itself; fc1
/// and fc2 are the identity without latent projections). Each expert is run once over the
/// tokens routed to it (none: skipped). When `experts` / `weights` are not null they receive
/// the routing [T, k].
void moe_forward(const double* x, int T, int D, const moe_layer_ref& w, const moe_routing& r, double* out,
                 int* experts = nullptr, double* weights = nullptr);

}  // namespace nemotron_h::ref
