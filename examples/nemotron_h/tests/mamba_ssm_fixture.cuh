// Test fixture of the Mamba2 SSM kernels (ssd_scan, mamba_decode): random inputs in device
// buffers sized once for (padded_tokens, max_seqs, num_slots), new metadata and inputs
// written into the same buffers (so captured graphs can be replayed), and a check against
// the float64 reference (ref::dt_softplus + ref::ssm_scan per sequence).
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "kernels/mamba_state.cuh"
#include "kernel_test_util.cuh"
#include "reference/reference.hpp"

namespace nh_test {

struct ssm_errors {
  double y = 0, y_ssm = 0, state = 0;
};

struct ssm_fixture {
  nemotron_h::mamba_dims d;
  int num_slots, padded, max_seqs, conv_dim, ldz;
  float dt_min = 1e-3f, dt_max = std::numeric_limits<float>::infinity();
  dbuf<bf16> xbc, zx, y;
  dbuf<float> A_log, D, dt_bias, state;
  batch_buffers batch;
  std::vector<double> xbc_d, zx_d, A_log_d, D_d, dtb_d, state0_d;
  std::vector<int> lens, ctx, slots;

  ssm_fixture(nemotron_h::mamba_dims dims, int num_slots_, int padded_, int max_seqs_, std::mt19937& rng)
      : d(dims), num_slots(num_slots_), padded(padded_), max_seqs(max_seqs_), conv_dim(dims.conv_dim()),
        ldz(dims.in_proj_dim()), xbc(static_cast<std::size_t>(padded_) * dims.conv_dim()),
        zx(static_cast<std::size_t>(padded_) * dims.in_proj_dim()),
        y(static_cast<std::size_t>(padded_) * dims.d_inner()), A_log(dims.H), D(dims.H), dt_bias(dims.H),
        state(static_cast<std::size_t>(num_slots_) * dims.H * dims.P * dims.N), batch(max_seqs_, padded_, padded_) {
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<float> a(d.H), dd(d.H), b(d.H);
    for (int h = 0; h < d.H; ++h) {
      a[h] = static_cast<float>(std::log(1.0 + 15.0 * u(rng)));  // A in [-16, -1]
      dd[h] = static_cast<float>(0.5 + u(rng));
      const double dt0 = std::exp(std::log(1e-3) + u(rng) * (std::log(0.1) - std::log(1e-3)));
      b[h] = static_cast<float>(dt0 + std::log(-std::expm1(-dt0)));  // inverse softplus
    }
    A_log.upload(a);
    D.upload(dd);
    dt_bias.upload(b);
    A_log_d = to_double(a);
    D_d = to_double(dd);
    dtb_d = to_double(b);
  }

  const bf16* dt_ptr() const { return zx.get() + d.dt_offset(); }

  void make(std::vector<int> l, std::vector<int> c, std::vector<int> s, std::mt19937& rng) {
    lens = std::move(l);
    ctx = std::move(c);
    slots = std::move(s);
    xbc.upload(rand_bf16(xbc.size(), rng, 1.0, &xbc_d));
    zx.upload(rand_bf16(zx.size(), rng, 0.7, &zx_d));
    std::normal_distribution<float> nd(0.f, 0.3f);
    std::vector<float> st(state.size());
    for (auto& e : st) e = nd(rng);
    state.upload(st);
    state0_d = to_double(st);
    batch.update(lens, ctx, slots);
    y.poison();
  }

  /// Reference outputs of the current batch: y rows of real tokens and all slot states.
  void reference(std::vector<double>& y_ref, std::vector<double>& state_ref, std::vector<double>& dx) const {
    const int H = d.H, P = d.P, G = d.G, N = d.N;
    const std::size_t slot_elems = static_cast<std::size_t>(H) * P * N;
    state_ref = state0_d;
    y_ref.clear();
    dx.clear();
    std::vector<double> A(H);
    for (int h = 0; h < H; ++h) A[h] = -std::exp(A_log_d[h]);
    int start = 0;
    for (std::size_t i = 0; i < lens.size(); ++i) {
      const int T = lens[i];
      std::vector<double> x(static_cast<std::size_t>(T) * H * P), B(static_cast<std::size_t>(T) * G * N),
          C(B.size()), raw(static_cast<std::size_t>(T) * H), dt(raw.size()), yy(x.size());
      for (int t = 0; t < T; ++t) {
        const double* row = xbc_d.data() + static_cast<std::size_t>(start + t) * conv_dim;
        std::copy(row, row + H * P, x.begin() + static_cast<std::size_t>(t) * H * P);
        std::copy(row + H * P, row + H * P + G * N, B.begin() + static_cast<std::size_t>(t) * G * N);
        std::copy(row + H * P + G * N, row + H * P + 2 * G * N, C.begin() + static_cast<std::size_t>(t) * G * N);
        const double* zr = zx_d.data() + static_cast<std::size_t>(start + t) * ldz + d.dt_offset();
        std::copy(zr, zr + H, raw.begin() + static_cast<std::size_t>(t) * H);
      }
      nemotron_h::ref::dt_softplus(raw.data(), dtb_d.data(), dt.data(), T, H, dt_min,
                                   static_cast<double>(dt_max));
      std::vector<double> S(slot_elems, 0.0);
      if (ctx[i] > 0) std::copy_n(state0_d.begin() + slots[i] * slot_elems, slot_elems, S.begin());
      nemotron_h::ref::ssm_scan(x.data(), dt.data(), A.data(), B.data(), C.data(), D_d.data(), S.data(),
                                yy.data(), T, H, P, G, N);
      std::copy(S.begin(), S.end(), state_ref.begin() + slots[i] * slot_elems);
      y_ref.insert(y_ref.end(), yy.begin(), yy.end());
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < H; ++h)
          for (int p = 0; p < P; ++p) dx.push_back(D_d[h] * x[(static_cast<std::size_t>(t) * H + h) * P + p]);
      start += T;
    }
  }

  /// Compares the device y and states with the reference; untouched slots must be exact.
  ssm_errors check(const char* what, double tol_y, double tol_state) const {
    std::vector<double> y_ref, st_ref, dx;
    reference(y_ref, st_ref, dx);
    const auto y_all = to_double(y.download());
    std::vector<double> y_got(y_all.begin(), y_all.begin() + static_cast<std::ptrdiff_t>(y_ref.size()));
    const auto st_got = to_double(state.download());
    ssm_errors e;
    e.y = rel_err(y_got, y_ref);
    std::vector<double> a(y_ref.size()), b(y_ref.size());
    for (std::size_t i = 0; i < y_ref.size(); ++i) {
      a[i] = y_got[i] - dx[i];
      b[i] = y_ref[i] - dx[i];
    }
    e.y_ssm = rel_err(a, b);
    // States: used slots by relative norm, the others exactly unchanged.
    const std::size_t slot_elems = static_cast<std::size_t>(d.H) * d.P * d.N;
    std::vector<double> sg, sr;
    double untouched = 0;
    for (int s = 0; s < num_slots; ++s) {
      const bool used = std::find(slots.begin(), slots.end(), s) != slots.end();
      for (std::size_t k = 0; k < slot_elems; ++k) {
        const std::size_t o = s * slot_elems + k;
        if (used) {
          sg.push_back(st_got[o]);
          sr.push_back(st_ref[o]);
        } else {
          untouched = std::max(untouched, std::abs(st_got[o] - state0_d[o]));
        }
      }
    }
    e.state = rel_err(sg, sr);
    std::printf("[ssm] %-44s H=%3d P=%2d N=%3d tokens=%5zu  y %.2e  y-Dx %.2e  state %.2e\n", what, d.H,
                d.P, d.N, y_ref.size() / d.d_inner(), e.y, e.y_ssm, e.state);
    CHECK(e.y < tol_y);
    CHECK(e.y_ssm < 2 * tol_y);
    CHECK(e.state < tol_state);
    CHECK(untouched == 0.0);
    return e;
  }
};

}  // namespace nh_test
