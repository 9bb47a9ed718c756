// CPU checks of the float64 Mamba2 reference (reference/mamba_ref.cpp): hand-computed
// cases, conv-state round trips, token-by-token == whole-sequence scans, and the chunked
// (SSD) formulation in float64 == the sequential recurrence. Runs in CI (no GPU).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "reference/reference.hpp"

namespace ref = nemotron_h::ref;

namespace {

std::vector<double> randn(std::size_t n, std::mt19937& rng, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> v(n);
  for (auto& e : v) e = d(rng);
  return v;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

}  // namespace

TEST_CASE("mamba ref: conv1d hand-computed case", "[mamba][ref]") {
  // C = 1, K = 3, w = [1, 2, 3], bias = 0.5, state = [10, 20], x = [1, 2].
  const double w[3] = {1, 2, 3};
  const double bias[1] = {0.5};
  const double st[2] = {10, 20};
  const double x[2] = {1, 2};
  double out[2], st_out[2];
  ref::conv1d_silu(x, w, bias, st, out, st_out, 2, 1, 3);
  CHECK(out[0] == Approx(silu(0.5 + 10 * 1 + 20 * 2 + 1 * 3)));
  CHECK(out[1] == Approx(silu(0.5 + 20 * 1 + 1 * 2 + 2 * 3)));
  CHECK(st_out[0] == 1);
  CHECK(st_out[1] == 2);
  // Zero state and T = 1 < K - 1: the new state keeps the older state row.
  double out1[1], st1[2];
  ref::conv1d_silu(x, w, bias, nullptr, out1, st1, 1, 1, 3);
  CHECK(out1[0] == Approx(silu(0.5 + 3 * 1)));
  CHECK(st1[0] == 0);
  CHECK(st1[1] == 1);
  // In place state update with T = 1 keeps the second state row shifted.
  double st2[2] = {10, 20};
  ref::conv1d_silu(x, w, bias, st2, out1, st2, 1, 1, 3);
  CHECK(st2[0] == 20);
  CHECK(st2[1] == 1);
}

TEST_CASE("mamba ref: conv1d split == whole (state round trip)", "[mamba][ref]") {
  std::mt19937 rng(11);
  const int C = 24, K = 4;
  for (int T : {1, 2, 3, 7, 40}) {
    for (int cut = 0; cut <= T; cut += (T > 8 ? 5 : 1)) {
      auto x = randn(static_cast<std::size_t>(T) * C, rng);
      auto w = randn(static_cast<std::size_t>(C) * K, rng, 0.5);
      auto b = randn(C, rng, 0.1);
      auto s0 = randn(static_cast<std::size_t>(K - 1) * C, rng);
      std::vector<double> whole(x.size()), s_whole((K - 1) * C);
      ref::conv1d_silu(x.data(), w.data(), b.data(), s0.data(), whole.data(), s_whole.data(), T,
                       C, K);
      std::vector<double> parts(x.size()), s = s0;
      ref::conv1d_silu(x.data(), w.data(), b.data(), s.data(), parts.data(), s.data(), cut, C, K);
      ref::conv1d_silu(x.data() + static_cast<std::size_t>(cut) * C, w.data(), b.data(), s.data(),
                       parts.data() + static_cast<std::size_t>(cut) * C, s.data(), T - cut, C, K);
      CHECK(max_abs_diff(whole, parts) < 1e-12);
      CHECK(max_abs_diff(s_whole, s) < 1e-12);
    }
  }
}

TEST_CASE("mamba ref: dt_softplus clamps", "[mamba][ref]") {
  const double raw[4] = {-30, 0, 3, 50};
  const double bias[2] = {0.0, 1.0};
  double dt[4];
  ref::dt_softplus(raw, bias, dt, 2, 2, 1e-3, 10.0);
  CHECK(dt[0] == 1e-3);                               // softplus(-30) ~ 1e-13, clamped up
  CHECK(dt[1] == Approx(std::log1p(std::exp(1.0))));  // softplus(0 + 1)
  CHECK(dt[2] == Approx(std::log1p(std::exp(3.0))));
  CHECK(dt[3] == 10.0);  // clamped down
}

TEST_CASE("mamba ref: ssm_scan hand-computed scalar case", "[mamba][ref]") {
  // H = P = G = N = 1: S_t = e^{dt A} S + dt x B; y = S C + D x.
  const double x[2] = {1.0, -2.0}, dt[2] = {0.5, 0.25}, A[1] = {-2.0};
  const double B[2] = {3.0, 1.0}, C[2] = {2.0, 4.0}, D[1] = {0.5};
  double S[1] = {1.0}, y[2];
  ref::ssm_scan(x, dt, A, B, C, D, S, y, 2, 1, 1, 1, 1);
  const double s1 = std::exp(-1.0) * 1.0 + 0.5 * 1.0 * 3.0;
  const double s2 = std::exp(-0.5) * s1 + 0.25 * -2.0 * 1.0;
  CHECK(y[0] == Approx(s1 * 2.0 + 0.5));
  CHECK(y[1] == Approx(s2 * 4.0 - 1.0));
  CHECK(S[0] == Approx(s2));
}

TEST_CASE("mamba ref: ssm_scan of T tokens == T one-token calls", "[mamba][ref]") {
  std::mt19937 rng(5);
  const int T = 37, H = 4, P = 3, G = 2, N = 5;
  auto x = randn(static_cast<std::size_t>(T) * H * P, rng);
  auto B = randn(static_cast<std::size_t>(T) * G * N, rng);
  auto C = randn(static_cast<std::size_t>(T) * G * N, rng);
  auto raw = randn(static_cast<std::size_t>(T) * H, rng);
  std::vector<double> bias = {-1, 0, 0.5, -2}, A = {-1, -2, -0.5, -4}, D = {1, 0.5, -1, 2};
  std::vector<double> dt(raw.size());
  ref::dt_softplus(raw.data(), bias.data(), dt.data(), T, H, 1e-3, 1e30);
  auto s0 = randn(static_cast<std::size_t>(H) * P * N, rng);
  std::vector<double> S = s0, y(x.size());
  ref::ssm_scan(x.data(), dt.data(), A.data(), B.data(), C.data(), D.data(), S.data(), y.data(),
                T, H, P, G, N);
  std::vector<double> S1 = s0, y1(x.size());
  for (int t = 0; t < T; ++t)
    ref::ssm_scan(x.data() + t * H * P, dt.data() + t * H, A.data(), B.data() + t * G * N,
                  C.data() + t * G * N, D.data(), S1.data(), y1.data() + t * H * P, 1, H, P, G, N);
  CHECK(max_abs_diff(y, y1) == 0.0);
  CHECK(max_abs_diff(S, S1) == 0.0);
}

TEST_CASE("mamba ref: chunked SSD form == sequential recurrence", "[mamba][ref]") {
  // Float64 version of the chunked algorithm the GPU scan implements (chunk L): checks the
  // formulas (intra-chunk, chunk state, state passing, inter-chunk) against ssm_scan.
  std::mt19937 rng(9);
  const int T = 23, H = 2, P = 2, G = 1, N = 3, L = 5;
  auto x = randn(static_cast<std::size_t>(T) * H * P, rng);
  auto B = randn(static_cast<std::size_t>(T) * G * N, rng);
  auto C = randn(static_cast<std::size_t>(T) * G * N, rng);
  auto raw = randn(static_cast<std::size_t>(T) * H, rng);
  std::vector<double> bias = {0.2, -0.7}, A = {-0.8, -3.0}, D = {1.0, 0.3};
  std::vector<double> dt(raw.size());
  ref::dt_softplus(raw.data(), bias.data(), dt.data(), T, H, 1e-3, 1e30);
  auto s0 = randn(static_cast<std::size_t>(H) * P * N, rng);
  std::vector<double> S = s0, y(x.size());
  ref::ssm_scan(x.data(), dt.data(), A.data(), B.data(), C.data(), D.data(), S.data(), y.data(),
                T, H, P, G, N);

  std::vector<double> Hs = s0, yc(x.size());
  for (int c0 = 0; c0 < T; c0 += L) {
    const int len = std::min(L, T - c0);
    for (int h = 0; h < H; ++h) {
      std::vector<double> acs(len);
      double run = 0;
      for (int l = 0; l < len; ++l) acs[l] = run += dt[(c0 + l) * H + h] * A[h];
      for (int l = 0; l < len; ++l)
        for (int p = 0; p < P; ++p) {
          double v = 0;
          for (int s = 0; s <= l; ++s) {
            double cb = 0;
            for (int n = 0; n < N; ++n) cb += C[(c0 + l) * N + n] * B[(c0 + s) * N + n];
            v += cb * std::exp(acs[l] - acs[s]) * dt[(c0 + s) * H + h] * x[((c0 + s) * H + h) * P + p];
          }
          double off = 0;
          for (int n = 0; n < N; ++n) off += C[(c0 + l) * N + n] * Hs[(h * P + p) * N + n];
          yc[((c0 + l) * H + h) * P + p] =
              v + std::exp(acs[l]) * off + D[h] * x[((c0 + l) * H + h) * P + p];
        }
      for (int p = 0; p < P; ++p)
        for (int n = 0; n < N; ++n) {
          double st = 0;
          for (int s = 0; s < len; ++s)
            st += std::exp(acs[len - 1] - acs[s]) * dt[(c0 + s) * H + h] *
                  x[((c0 + s) * H + h) * P + p] * B[(c0 + s) * N + n];
          double& hv = Hs[(h * P + p) * N + n];
          hv = std::exp(acs[len - 1]) * hv + st;
        }
    }
  }
  CHECK(max_abs_diff(y, yc) < 1e-10);
  CHECK(max_abs_diff(S, Hs) < 1e-10);
}
