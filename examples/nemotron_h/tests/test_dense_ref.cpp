// CPU checks of the float64 dense references (reference/dense_ref.cpp) against independent
// naive formulations and exact identities. Runs in CI (no GPU).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "reference/reference.hpp"

namespace {

using vec = std::vector<double>;

vec randn(std::size_t n, std::uint32_t seed, double sd = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> d(0.0, sd);
  vec v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

double max_abs_diff(const vec& a, const vec& b) {
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// Independent attention: full score matrix per head, additive -inf mask, explicit softmax.
vec naive_attention(const vec& q, const vec& k, const vec& v, int T, int Hq, int Hkv, int hd) {
  vec out(static_cast<std::size_t>(T) * Hq * hd, 0.0);
  const int group = Hq / Hkv;
  for (int h = 0; h < Hq; ++h) {
    const int kh = h / group;
    std::vector<vec> P(T, vec(T));
    for (int i = 0; i < T; ++i) {
      for (int j = 0; j < T; ++j) {
        double d = 0;
        for (int c = 0; c < hd; ++c) d += q[(i * Hq + h) * hd + c] * k[(j * Hkv + kh) * hd + c];
        P[i][j] = j <= i ? d / std::sqrt(double(hd)) : -INFINITY;
      }
      double sum = 0;
      for (int j = 0; j < T; ++j) sum += std::exp(P[i][j]);
      for (int j = 0; j < T; ++j) P[i][j] = std::exp(P[i][j]) / sum;
      for (int c = 0; c < hd; ++c) {
        double acc = 0;
        for (int j = 0; j < T; ++j) acc += P[i][j] * v[(j * Hkv + kh) * hd + c];
        out[(i * Hq + h) * hd + c] = acc;
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("ref attention with Tq == Tk equals a naive masked softmax", "[dense][ref]") {
  const int T = 37, Hq = 6, Hkv = 2, hd = 16;
  vec q = randn(T * Hq * hd, 1), k = randn(T * Hkv * hd, 2), v = randn(T * Hkv * hd, 3);
  vec out(q.size(), NAN);
  nemotron_h::ref::attention(q.data(), k.data(), v.data(), out.data(), T, T, Hq, Hkv, hd);
  vec want = naive_attention(q, k, v, T, Hq, Hkv, hd);
  CHECK(max_abs_diff(out, want) < 1e-12);
}

TEST_CASE("ref attention: prefix + new equals the whole sequence", "[dense][ref]") {
  const int T = 50, Hq = 4, Hkv = 4, hd = 8;
  vec q = randn(T * Hq * hd, 4), k = randn(T * Hkv * hd, 5), v = randn(T * Hkv * hd, 6);
  vec whole(q.size());
  nemotron_h::ref::attention(q.data(), k.data(), v.data(), whole.data(), T, T, Hq, Hkv, hd);
  for (int prefix : {0, 1, 17, 49}) {
    const int Tq = T - prefix;
    vec part(static_cast<std::size_t>(Tq) * Hq * hd, NAN);
    nemotron_h::ref::attention(q.data() + prefix * Hq * hd, k.data(), v.data(), part.data(), Tq, T,
                               Hq, Hkv, hd);
    vec tail(whole.begin() + prefix * Hq * hd, whole.end());
    CHECK(max_abs_diff(part, tail) < 1e-12);
  }
}

TEST_CASE("ref attention: GQA equals MHA with repeated KV heads, and one key returns v",
          "[dense][ref]") {
  const int T = 9, Hq = 8, Hkv = 2, hd = 4;
  vec q = randn(T * Hq * hd, 7), k = randn(T * Hkv * hd, 8), v = randn(T * Hkv * hd, 9);
  vec kr(T * Hq * hd), vr(T * Hq * hd);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < Hq; ++h)
      for (int c = 0; c < hd; ++c) {
        kr[(t * Hq + h) * hd + c] = k[(t * Hkv + h / 4) * hd + c];
        vr[(t * Hq + h) * hd + c] = v[(t * Hkv + h / 4) * hd + c];
      }
  vec a(q.size()), b(q.size());
  nemotron_h::ref::attention(q.data(), k.data(), v.data(), a.data(), T, T, Hq, Hkv, hd);
  nemotron_h::ref::attention(q.data(), kr.data(), vr.data(), b.data(), T, T, Hq, Hq, hd);
  CHECK(max_abs_diff(a, b) < 1e-14);
  // The first query sees only key 0: output = v[0] of its KV head.
  for (int h = 0; h < Hq; ++h)
    for (int c = 0; c < hd; ++c) CHECK(a[h * hd + c] == Approx(v[(h / 4) * hd + c]).epsilon(1e-14));
}

TEST_CASE("ref rmsnorm identities", "[dense][ref]") {
  const int T = 5, D = 64;
  vec x = randn(T * D, 10), w(D, 1.0), y(T * D);
  nemotron_h::ref::rmsnorm(x.data(), w.data(), y.data(), T, D, 0.0);
  for (int t = 0; t < T; ++t) {  // unit weight, eps 0: mean square of the output is 1
    double ss = 0;
    for (int i = 0; i < D; ++i) ss += y[t * D + i] * y[t * D + i];
    CHECK(ss / D == Approx(1.0).epsilon(1e-12));
  }
  vec x3(x), y3(T * D);  // scale invariance with eps 0
  for (auto& e : x3) e *= 3.5;
  nemotron_h::ref::rmsnorm(x3.data(), w.data(), y3.data(), T, D, 0.0);
  CHECK(max_abs_diff(y, y3) < 1e-12);
  vec w2 = randn(D, 11), y2(T * D), xa(x);  // weight multiplies elementwise; in place works
  nemotron_h::ref::rmsnorm(x.data(), w2.data(), y2.data(), T, D, 1e-5);
  nemotron_h::ref::rmsnorm(xa.data(), w2.data(), xa.data(), T, D, 1e-5);
  CHECK(max_abs_diff(y2, xa) == 0.0);
  // Hand example: x = [3, 4], w = [1, 2], eps = 0 -> rms = sqrt(12.5).
  double hx[2] = {3, 4}, hw[2] = {1, 2}, hy[2];
  nemotron_h::ref::rmsnorm(hx, hw, hy, 1, 2, 0.0);
  CHECK(hy[0] == Approx(3 / std::sqrt(12.5)));
  CHECK(hy[1] == Approx(8 / std::sqrt(12.5)));
}

TEST_CASE("ref linear and relu2 on hand examples", "[dense][ref]") {
  // x [2,3], W [2,3] -> y [2,2]
  double x[6] = {1, 2, 3, -1, 0, 2}, W[6] = {1, 0, 1, 2, -1, 0.5}, y[4];
  nemotron_h::ref::linear(x, W, y, 2, 3, 2);
  CHECK(y[0] == 4.0);
  CHECK(y[1] == 1.5);
  CHECK(y[2] == 1.0);
  CHECK(y[3] == -1.0);
  double r[4] = {-2, 0, 1.5, 3};
  nemotron_h::ref::relu2(r, 4);
  CHECK(r[0] == 0.0);
  CHECK(r[1] == 0.0);
  CHECK(r[2] == 2.25);
  CHECK(r[3] == 9.0);
}

TEST_CASE("ref gated_rmsnorm equals per-group rmsnorm of y * silu(z)", "[dense][ref]") {
  const int T = 3, d = 48, G = 4, gs = d / G;
  vec y = randn(T * d, 12), z = randn(T * d, 13), w = randn(d, 14), out(T * d);
  nemotron_h::ref::gated_rmsnorm(y.data(), z.data(), w.data(), out.data(), T, d, G, 1e-5);
  for (int t = 0; t < T; ++t)
    for (int g = 0; g < G; ++g) {
      vec gin(gs), gw(gs), gout(gs);
      for (int i = 0; i < gs; ++i) {
        const double zz = z[t * d + g * gs + i];
        gin[i] = y[t * d + g * gs + i] * zz / (1 + std::exp(-zz));
        gw[i] = w[g * gs + i];
      }
      nemotron_h::ref::rmsnorm(gin.data(), gw.data(), gout.data(), 1, gs, 1e-5);
      for (int i = 0; i < gs; ++i) CHECK(out[t * d + g * gs + i] == Approx(gout[i]).epsilon(1e-13));
    }
}
