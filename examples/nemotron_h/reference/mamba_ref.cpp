// Float64 CPU references of the Mamba2 mixer pieces: causal depthwise conv1d + SiLU,
// dt softplus with its clamp, and the exact sequential SSM recurrence. See reference.hpp
// for the contracts and ../shared/reference/nemotron_h.md for the math.
#include <algorithm>
#include <cmath>
#include <vector>

#include "reference.hpp"

namespace nemotron_h::ref {

namespace {
double silu(double v) { return v / (1.0 + std::exp(-v)); }
double softplus(double v) { return v > 20.0 ? v : std::log1p(std::exp(v)); }
}  // namespace

void conv1d_silu(const double* xbc, const double* w, const double* bias, const double* state_in,
                 double* out, double* state_out, int T, int C, int K) {
  const int hist = K - 1;
  // Concatenated input [state_in ; xbc] of hist + T rows, row j = time j - hist.
  auto input = [&](int j, int c) -> double {
    if (j < hist) return state_in != nullptr ? state_in[static_cast<long>(j) * C + c] : 0.0;
    return xbc[static_cast<long>(j - hist) * C + c];
  };
  // Compute the new state first into a temporary: state_out may alias state_in.
  std::vector<double> new_state(static_cast<size_t>(hist) * C);
  for (int i = 0; i < hist; ++i)
    for (int c = 0; c < C; ++c) new_state[static_cast<size_t>(i) * C + c] = input(T + i, c);
  for (int t = 0; t < T; ++t) {
    for (int c = 0; c < C; ++c) {
      double acc = bias != nullptr ? bias[c] : 0.0;
      for (int k = 0; k < K; ++k) acc += w[static_cast<long>(c) * K + k] * input(t + k, c);
      out[static_cast<long>(t) * C + c] = silu(acc);
    }
  }
  if (state_out != nullptr) std::copy(new_state.begin(), new_state.end(), state_out);
}

void dt_softplus(const double* dt_raw, const double* dt_bias, double* dt, int T, int H,
                 double dt_min, double dt_max) {
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      const long i = static_cast<long>(t) * H + h;
      dt[i] = std::clamp(softplus(dt_raw[i] + dt_bias[h]), dt_min, dt_max);
    }
}

void ssm_scan(const double* x, const double* dt, const double* A, const double* B,
              const double* C, const double* D, double* state, double* y, int T, int H, int P,
              int G, int N) {
  const int heads_per_group = H / G;
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      const int g = h / heads_per_group;
      const double d = dt[static_cast<long>(t) * H + h];
      const double decay = std::exp(d * A[h]);
      const double* Bt = B + (static_cast<long>(t) * G + g) * N;
      const double* Ct = C + (static_cast<long>(t) * G + g) * N;
      for (int p = 0; p < P; ++p) {
        const double xv = x[(static_cast<long>(t) * H + h) * P + p];
        double* S = state + (static_cast<long>(h) * P + p) * N;
        double acc = 0.0;
        for (int n = 0; n < N; ++n) {
          S[n] = S[n] * decay + d * xv * Bt[n];
          acc += S[n] * Ct[n];
        }
        y[(static_cast<long>(t) * H + h) * P + p] = acc + D[h] * xv;
      }
    }
  }
}

}  // namespace nemotron_h::ref
