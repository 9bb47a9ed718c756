// float64 CPU references of the dense NemotronH building blocks (see reference.hpp).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "reference/reference.hpp"

namespace nemotron_h::ref {

void rmsnorm(const double* x, const double* w, double* y, int T, int D, double eps) {
  for (int t = 0; t < T; ++t) {
    const double* xr = x + static_cast<std::size_t>(t) * D;
    double* yr = y + static_cast<std::size_t>(t) * D;
    double ss = 0.0;
    for (int i = 0; i < D; ++i) ss += xr[i] * xr[i];
    const double inv = 1.0 / std::sqrt(ss / D + eps);
    for (int i = 0; i < D; ++i) yr[i] = w[i] * (xr[i] * inv);
  }
}

void linear(const double* x, const double* W, double* y, int T, int K, int N) {
  for (int t = 0; t < T; ++t) {
    const double* xr = x + static_cast<std::size_t>(t) * K;
    for (int n = 0; n < N; ++n) {
      const double* wr = W + static_cast<std::size_t>(n) * K;
      double acc = 0.0;
      for (int k = 0; k < K; ++k) acc += xr[k] * wr[k];
      y[static_cast<std::size_t>(t) * N + n] = acc;
    }
  }
}

void relu2(double* x, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const double r = x[i] > 0.0 ? x[i] : 0.0;
    x[i] = r * r;
  }
}

void gated_rmsnorm(const double* y, const double* z, const double* w, double* out, int T,
                   int d_inner, int G, double eps) {
  const int gs = d_inner / G;
  std::vector<double> g(static_cast<std::size_t>(gs));
  for (int t = 0; t < T; ++t) {
    for (int grp = 0; grp < G; ++grp) {
      const std::size_t base = static_cast<std::size_t>(t) * d_inner + static_cast<std::size_t>(grp) * gs;
      double ss = 0.0;
      for (int i = 0; i < gs; ++i) {
        const double zz = z[base + i];
        const double silu = zz / (1.0 + std::exp(-zz));
        g[i] = y[base + i] * silu;
        ss += g[i] * g[i];
      }
      const double inv = 1.0 / std::sqrt(ss / gs + eps);
      for (int i = 0; i < gs; ++i) out[base + i] = w[grp * gs + i] * (g[i] * inv);
    }
  }
}

void attention(const double* q, const double* k, const double* v, double* out, int Tq, int Tk,
               int Hq, int Hkv, int hd) {
  const int group = Hq / Hkv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> s(static_cast<std::size_t>(Tk));
  std::vector<double> acc(static_cast<std::size_t>(hd));
  for (int i = 0; i < Tq; ++i) {
    const int last = Tk - Tq + i;  // inclusive
    for (int h = 0; h < Hq; ++h) {
      const int kh = h / group;
      const double* qr = q + (static_cast<std::size_t>(i) * Hq + h) * hd;
      double mx = -INFINITY;
      for (int j = 0; j <= last; ++j) {
        const double* kr = k + (static_cast<std::size_t>(j) * Hkv + kh) * hd;
        double d = 0.0;
        for (int c = 0; c < hd; ++c) d += qr[c] * kr[c];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      double den = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int j = 0; j <= last; ++j) {
        const double p = std::exp(s[j] - mx);
        den += p;
        const double* vr = v + (static_cast<std::size_t>(j) * Hkv + kh) * hd;
        for (int c = 0; c < hd; ++c) acc[c] += p * vr[c];
      }
      double* o = out + (static_cast<std::size_t>(i) * Hq + h) * hd;
      for (int c = 0; c < hd; ++c) o[c] = last >= 0 ? acc[c] / den : 0.0;
    }
  }
}

}  // namespace nemotron_h::ref
