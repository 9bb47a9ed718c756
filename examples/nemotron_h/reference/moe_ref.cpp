// Float64 CPU reference of the NemotronH MoE mixer (Nemotron 3): sigmoid router with the
// score-correction bias used for choosing only, grouped top-k, renormalisation and routed
// scaling, relu^2 experts, the shared expert, latent projections. See reference.hpp and
// docs/moe.md for the contract and the tie rule.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <vector>

#include "reference/reference.hpp"

namespace nemotron_h::ref {

namespace {

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

/// The first `k` of `idx` ordered by descending key, ties by ascending index (a stable total
/// order, so the result does not depend on the sort algorithm).
void top_by_key(std::vector<int>& idx, const std::vector<double>& key, int k) {
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    if (key[static_cast<std::size_t>(a)] != key[static_cast<std::size_t>(b)]) {
      return key[static_cast<std::size_t>(a)] > key[static_cast<std::size_t>(b)];
    }
    return a < b;
  });
  idx.resize(static_cast<std::size_t>(k));
}

}  // namespace

void moe_route(const double* logits, const double* bias, const moe_routing& r, int* experts, double* weights) {
  const int E = r.num_experts, per_group = E / r.n_group;
  std::vector<double> score(static_cast<std::size_t>(E)), biased(static_cast<std::size_t>(E));
  for (int e = 0; e < E; ++e) {
    score[e] = sigmoid(logits[e]);
    biased[e] = score[e] + (bias != nullptr ? bias[e] : 0.0);
  }
  // Experts eligible for the top-k: those of the kept groups (all of them with one group).
  std::vector<int> eligible;
  if (r.n_group > 1) {
    std::vector<double> group_score(static_cast<std::size_t>(r.n_group));
    for (int g = 0; g < r.n_group; ++g) {
      double a = -INFINITY, b = -INFINITY;  // the two largest biased scores of the group
      for (int e = g * per_group; e < (g + 1) * per_group; ++e) {
        if (biased[e] > a) {
          b = a;
          a = biased[e];
        } else if (biased[e] > b) {
          b = biased[e];
        }
      }
      group_score[g] = a + b;
    }
    std::vector<int> groups(static_cast<std::size_t>(r.n_group));
    std::iota(groups.begin(), groups.end(), 0);
    top_by_key(groups, group_score, r.topk_group);
    std::sort(groups.begin(), groups.end());
    for (int g : groups) {
      for (int e = g * per_group; e < (g + 1) * per_group; ++e) eligible.push_back(e);
    }
  } else {
    eligible.resize(static_cast<std::size_t>(E));
    std::iota(eligible.begin(), eligible.end(), 0);
  }
  top_by_key(eligible, biased, r.top_k);
  double sum = 0.0;
  for (int j = 0; j < r.top_k; ++j) {
    experts[j] = eligible[static_cast<std::size_t>(j)];
    weights[j] = score[static_cast<std::size_t>(experts[j])];
    sum += weights[j];
  }
  for (int j = 0; j < r.top_k; ++j) {
    if (r.norm_topk_prob) weights[j] /= sum + 1e-20;
    weights[j] *= r.routed_scaling_factor;
  }
}

void moe_forward(const double* x, int T, int D, const moe_layer_ref& w, const moe_routing& r, double* out,
                 int* experts_out, double* weights_out) {
  const int E = r.num_experts, k = r.top_k, F = w.F, W = w.W;
  const auto Tz = static_cast<std::size_t>(T);
  // The shared expert's and the latent projections' GEMMs (the caller's hook, or linear()).
  auto proj = [&w](std::string_view suffix, const double* in, const double* Wt, double* y, int rows, int K, int N) {
    if (w.linear) {
      w.linear(suffix, in, Wt, y, rows, K, N);
    } else {
      linear(in, Wt, y, rows, K, N);
    }
  };
  // 1. Routing, from the full hidden state.
  std::vector<double> logits(Tz * E);
  linear(x, w.gate, logits.data(), T, D, E);
  std::vector<int> chosen(Tz * k);
  std::vector<double> cw(Tz * k);
  for (int t = 0; t < T; ++t) {
    moe_route(logits.data() + static_cast<std::size_t>(t) * E, w.bias, r, chosen.data() + static_cast<std::size_t>(t) * k,
              cw.data() + static_cast<std::size_t>(t) * k);
  }
  // 2. The experts' input: the latent projection of x, or x.
  std::vector<double> h;
  const double* hin = x;
  if (w.fc1_latent != nullptr) {
    h.resize(Tz * W);
    proj("mixer.fc1_latent_proj.weight", x, w.fc1_latent, h.data(), T, D, W);
    hin = h.data();
  }
  // 3. Each expert over the tokens routed to it, weighted, accumulated per token.
  std::vector<double> acc(Tz * W, 0.0);
  std::vector<double> xs, u, y;
  for (int e = 0; e < E; ++e) {
    std::vector<int> rows;
    std::vector<double> rw;
    for (int t = 0; t < T; ++t) {
      for (int j = 0; j < k; ++j) {
        if (chosen[static_cast<std::size_t>(t) * k + j] == e) {
          rows.push_back(t);
          rw.push_back(cw[static_cast<std::size_t>(t) * k + j]);
        }
      }
    }
    if (rows.empty()) continue;  // an expert no token chose
    const int n = static_cast<int>(rows.size());
    xs.resize(static_cast<std::size_t>(n) * W);
    for (int i = 0; i < n; ++i) {
      std::copy_n(hin + static_cast<std::size_t>(rows[i]) * W, W, xs.begin() + static_cast<std::ptrdiff_t>(i) * W);
    }
    u.resize(static_cast<std::size_t>(n) * F);
    y.resize(static_cast<std::size_t>(n) * W);
    linear(xs.data(), w.up + static_cast<std::size_t>(e) * F * W, u.data(), n, W, F);
    relu2(u.data(), u.size());
    linear(u.data(), w.down + static_cast<std::size_t>(e) * W * F, y.data(), n, F, W);
    for (int i = 0; i < n; ++i) {
      double* a = acc.data() + static_cast<std::size_t>(rows[i]) * W;
      for (int c = 0; c < W; ++c) a[c] += rw[i] * y[static_cast<std::size_t>(i) * W + c];
    }
  }
  // 4. Back to hidden size, then the shared expert (unscaled), from x itself.
  if (w.fc2_latent != nullptr) {
    proj("mixer.fc2_latent_proj.weight", acc.data(), w.fc2_latent, out, T, W, D);
  } else {
    std::copy(acc.begin(), acc.end(), out);
  }
  std::vector<double> su(Tz * w.Fs), so(Tz * D);
  proj("mixer.shared_experts.up_proj.weight", x, w.shared_up, su.data(), T, D, w.Fs);
  relu2(su.data(), su.size());
  proj("mixer.shared_experts.down_proj.weight", su.data(), w.shared_down, so.data(), T, w.Fs, D);
  for (std::size_t i = 0; i < Tz * D; ++i) out[i] += so[i];
  if (experts_out != nullptr) std::copy(chosen.begin(), chosen.end(), experts_out);
  if (weights_out != nullptr) std::copy(cw.begin(), cw.end(), weights_out);
}

}  // namespace nemotron_h::ref
