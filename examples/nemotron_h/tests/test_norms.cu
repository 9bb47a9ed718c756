// GPU tests: RMSNorm, fused add + RMSNorm, gated group RMSNorm, embedding, squared ReLU
// against the float64 references, eagerly and replayed from captured graphs.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "kernel_test_util.cuh"
#include "kernels/activations.cuh"
#include "kernels/embedding.cuh"
#include "kernels/norms.cuh"
#include "reference/reference.hpp"

using namespace nh_test;
namespace nh = nemotron_h;

namespace {
constexpr double kTolBf16 = 1e-2;  // relative-norm tolerance for bf16 outputs
constexpr float kEps = 1e-5f;

std::vector<double> download_d(const dbuf<bf16>& b) { return to_double(b.download()); }
}  // namespace

TEST_CASE("rmsnorm and add_rmsnorm match the reference", "[dense][norms]") {
  // Shapes cover every kernel: up to 512 16-byte pieces per thread-row (D <= 4096), 2 and 4
  // pieces per thread (4480, 16384) and the two-pass kernel beyond (36864); one row (decode).
  for (auto [rows, D] : {std::pair{5, 64}, std::pair{37, 4480}, std::pair{3, 4096}, std::pair{1, 4480},
                         std::pair{1, 4096}, std::pair{2, 16384}, std::pair{1, 36864}, std::pair{3, 8200}}) {
    CAPTURE(rows, D);
    std::mt19937 gen(100 + D + rows);
    std::vector<double> x, w, r;
    auto hx = rand_bf16(static_cast<std::size_t>(rows) * D, gen, 1.0, &x);
    auto hw = rand_bf16(D, gen, 0.2, &w, 1.0);
    auto hr = rand_bf16(static_cast<std::size_t>(rows) * D, gen, 2.0, &r);
    dbuf<bf16> dx(hx.size()), dw(D), dy(hx.size()), dr(hr.size());
    dx.upload(hx);
    dw.upload(hw);
    dr.upload(hr);
    stream st;
    // plain
    dy.poison();
    nh::rmsnorm(dx.get(), dw.get(), dy.get(), rows, D, kEps, st.s);
    st.sync();
    std::vector<double> want(x.size());
    nh::ref::rmsnorm(x.data(), w.data(), want.data(), rows, D, kEps);
    const double e1 = rel_err(download_d(dy), want);
    CHECK(e1 < kTolBf16);
    // fused: residual += x (rounded to bf16), y = norm(residual)
    dy.poison();
    nh::add_rmsnorm(dx.get(), dr.get(), dw.get(), dy.get(), rows, D, kEps, st.s);
    st.sync();
    std::vector<double> sum(x.size());
    for (std::size_t i = 0; i < sum.size(); ++i)
      sum[i] = __bfloat162float(__float2bfloat16(static_cast<float>(x[i] + r[i])));
    nh::ref::rmsnorm(sum.data(), w.data(), want.data(), rows, D, kEps);
    const double e2 = rel_err(download_d(dr), sum);
    const double e3 = rel_err(download_d(dy), want);
    CHECK(e2 < 1e-6);  // same rounding as the reference sum
    CHECK(e3 < kTolBf16);
    WARN("rmsnorm rows=" << rows << " D=" << D << " rel err " << e1 << ", add_rmsnorm " << e3);
  }
}

TEST_CASE("rmsnorm honours the device row count and runs from a captured graph",
          "[dense][norms][graph]") {
  const int rows = 16, D = 4480;
  std::mt19937 gen(7);
  dbuf<bf16> dx(rows * D), dw(D), dy(rows * D), dr(rows * D), dy2(rows * D);
  dbuf<int> nrows(1);
  stream st;
  const captured graph(st.s, [&](cudaStream_t s) {
    nh::rmsnorm(dx.get(), dw.get(), dy.get(), rows, D, kEps, s, nrows.get());
    nh::add_rmsnorm(dx.get(), dr.get(), dw.get(), dy2.get(), rows, D, kEps, s, nrows.get());
  });
  for (int real : {16, 9, 1}) {
    CAPTURE(real);
    std::vector<double> x, w, r;
    dx.upload(rand_bf16(rows * D, gen, 1.0, &x));
    dw.upload(rand_bf16(D, gen, 0.2, &w, 1.0));
    dr.upload(rand_bf16(rows * D, gen, 1.0, &r));
    nrows.upload({real});
    dy.poison();
    dy2.poison();
    graph.replay();
    auto y = dy.download();
    std::vector<double> want(real * D), got(real * D);
    nh::ref::rmsnorm(x.data(), w.data(), want.data(), real, D, kEps);
    for (int i = 0; i < real * D; ++i) got[i] = __bfloat162float(y[i]);
    CHECK(rel_err(got, want) < kTolBf16);
    bool untouched = true;  // rows >= real are skipped
    for (std::size_t i = static_cast<std::size_t>(real) * D; i < y.size(); ++i)
      untouched = untouched && is_poison(y[i]);
    CHECK(untouched);
    std::vector<double> sum(real * D);
    for (int i = 0; i < real * D; ++i)
      sum[i] = __bfloat162float(__float2bfloat16(static_cast<float>(x[i] + r[i])));
    nh::ref::rmsnorm(sum.data(), w.data(), want.data(), real, D, kEps);
    auto y2 = dy2.download();
    for (int i = 0; i < real * D; ++i) got[i] = __bfloat162float(y2[i]);
    CHECK(rel_err(got, want) < kTolBf16);
  }
}

TEST_CASE("gated_rmsnorm (fp32 and bf16 y, strided z) matches the reference",
          "[dense][norms]") {
  struct shape {
    int rows, d_inner, G, ldz;
  };
  // 9B: in_proj width = 2*10240 + 2*8*128 + 128 = 22656; z is its first d_inner columns.
  // Group sizes: 16, 1280 and 1024 (one 4-channel piece per thread), 8192 (four) and
  // 10240 (the shared-memory kernel); one row (decode).
  for (auto sh : {shape{4, 64, 4, 96}, shape{33, 10240, 8, 22656}, shape{5, 8192, 8, 8192}, shape{1, 10240, 8, 22656},
                  shape{2, 16384, 2, 16384}, shape{1, 40960, 4, 40960}}) {
    CAPTURE(sh.rows, sh.d_inner, sh.G);
    std::mt19937 gen(200 + sh.d_inner);
    const int rows = sh.rows, d = sh.d_inner;
    std::vector<double> zfull, w;
    auto hz = rand_bf16(static_cast<std::size_t>(rows) * sh.ldz, gen, 1.5, &zfull);
    auto hw = rand_bf16(d, gen, 0.2, &w, 1.0);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> hy(static_cast<std::size_t>(rows) * d);
    for (auto& v : hy) v = nd(gen);
    std::vector<double> y(hy.begin(), hy.end()), z(static_cast<std::size_t>(rows) * d);
    for (int t = 0; t < rows; ++t)
      for (int c = 0; c < d; ++c) z[t * d + c] = zfull[static_cast<std::size_t>(t) * sh.ldz + c];
    std::vector<double> want(y.size());
    nh::ref::gated_rmsnorm(y.data(), z.data(), w.data(), want.data(), rows, d, sh.G, kEps);
    dbuf<float> dy(hy.size());
    dbuf<bf16> dz(hz.size()), dw(d), dout(hy.size()), dyb(hy.size());
    dy.upload(hy);
    dz.upload(hz);
    dw.upload(hw);
    stream st;
    dout.poison();
    nh::gated_rmsnorm(dy.get(), d, dz.get(), sh.ldz, dw.get(), dout.get(), d, rows, d, sh.G, kEps,
                      st.s);
    st.sync();
    const double e = rel_err(to_double(dout.download()), want);
    CHECK(e < kTolBf16);
    // bf16 y
    std::vector<bf16> hyb(hy.size());
    std::vector<double> yb(hy.size());
    for (std::size_t i = 0; i < hy.size(); ++i) {
      hyb[i] = __float2bfloat16(hy[i]);
      yb[i] = __bfloat162float(hyb[i]);
    }
    dyb.upload(hyb);
    nh::ref::gated_rmsnorm(yb.data(), z.data(), w.data(), want.data(), rows, d, sh.G, kEps);
    dout.poison();
    nh::gated_rmsnorm(dyb.get(), d, dz.get(), sh.ldz, dw.get(), dout.get(), d, rows, d, sh.G,
                      kEps, st.s);
    st.sync();
    const double eb = rel_err(to_double(dout.download()), want);
    CHECK(eb < kTolBf16);
    WARN("gated_rmsnorm d_inner=" << d << " G=" << sh.G << " rel err fp32-y " << e << ", bf16-y "
                                  << eb);
  }
}

TEST_CASE("gated_rmsnorm replays from a captured graph with new inputs and row count",
          "[dense][norms][graph]") {
  const int rows = 12, d = 10240, G = 8, ldz = 22656;
  std::mt19937 gen(9);
  dbuf<float> dy(rows * d);
  dbuf<bf16> dz(static_cast<std::size_t>(rows) * ldz), dw(d), dout(rows * d);
  dbuf<int> nrows(1);
  stream st;
  const captured graph(st.s, [&](cudaStream_t s) {
    nh::gated_rmsnorm(dy.get(), d, dz.get(), ldz, dw.get(), dout.get(), d, rows, d, G, kEps, s,
                      nrows.get());
  });
  for (int real : {12, 5}) {
    std::vector<double> zfull, w;
    dz.upload(rand_bf16(static_cast<std::size_t>(rows) * ldz, gen, 1.0, &zfull));
    dw.upload(rand_bf16(d, gen, 0.2, &w, 1.0));
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> hy(rows * d);
    for (auto& v : hy) v = nd(gen);
    dy.upload(hy);
    nrows.upload({real});
    dout.poison();
    graph.replay();
    std::vector<double> y(hy.begin(), hy.begin() + real * d), z(real * d), want(real * d);
    for (int t = 0; t < real; ++t)
      for (int c = 0; c < d; ++c) z[t * d + c] = zfull[static_cast<std::size_t>(t) * ldz + c];
    nh::ref::gated_rmsnorm(y.data(), z.data(), w.data(), want.data(), real, d, G, kEps);
    auto out = to_double(dout.download());
    out.resize(real * d);
    CHECK(rel_err(out, want) < kTolBf16);
  }
}

TEST_CASE("embedding gathers rows exactly, eagerly and from a graph", "[dense][embedding]") {
  const int vocab = 1000, D = 4480, rows = 17;
  std::mt19937 gen(11);
  auto table = rand_bf16(static_cast<std::size_t>(vocab) * D, gen, 1.0, nullptr);
  dbuf<bf16> dt(table.size()), dout(rows * D);
  dbuf<int> ids(rows), nrows(1);
  dt.upload(table);
  stream st;
  auto check = [&](const std::vector<int>& hid, int real) {
    auto out = dout.download();
    bool ok = true;
    for (int r = 0; r < rows; ++r) {
      const int id = (hid[r] < 0 || hid[r] >= vocab) ? 0 : hid[r];
      for (int c = 0; c < D; ++c) {
        const bf16 v = out[static_cast<std::size_t>(r) * D + c];
        if (r < real) {
          ok = ok && std::memcmp(&v, &table[static_cast<std::size_t>(id) * D + c], 2) == 0;
        } else {
          ok = ok && is_poison(v);
        }
      }
    }
    CHECK(ok);
  };
  std::uniform_int_distribution<int> ud(0, vocab - 1);
  std::vector<int> hid(rows);
  for (auto& v : hid) v = ud(gen);
  hid[3] = -5;      // out of range -> row 0
  hid[4] = vocab;   // out of range -> row 0
  ids.upload(hid);
  dout.poison();
  nh::embedding(ids.get(), dt.get(), dout.get(), rows, D, vocab, st.s);
  st.sync();
  check(hid, rows);
  const captured graph(st.s, [&](cudaStream_t s) {
    nh::embedding(ids.get(), dt.get(), dout.get(), rows, D, vocab, s, nrows.get());
  });
  for (auto& v : hid) v = ud(gen);
  ids.upload(hid);
  nrows.upload({11});
  dout.poison();
  graph.replay();
  check(hid, 11);
}

TEST_CASE("relu2_inplace is exact (vector, tail and unaligned paths) and graph-safe",
          "[dense][activations]") {
  std::mt19937 gen(13);
  for (std::size_t n : {std::size_t{8}, std::size_t{10007}, std::size_t{64} * 15680}) {
    for (int offset : {0, 1}) {
      CAPTURE(n, offset);
      std::vector<double> x;
      auto hx = rand_bf16(n, gen, 2.0, &x);
      dbuf<bf16> d(n + 1);
      d.poison();
      PIECEWISE_CUDA_TRY(
          cudaMemcpy(d.get() + offset, hx.data(), n * sizeof(bf16), cudaMemcpyHostToDevice));
      PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());  // the DMA may still be in flight (see dbuf::upload)
      stream st;
      nh::relu2_inplace(d.get() + offset, n, st.s);
      st.sync();
      nh::ref::relu2(x.data(), n);
      auto out = d.download();
      bool exact = true;
      for (std::size_t i = 0; i < n; ++i) {
        const bf16 want = __float2bfloat16(static_cast<float>(x[i]));
        exact = exact && std::memcmp(&out[i + offset], &want, 2) == 0;
      }
      CHECK(exact);
    }
  }
  // graph: replay with new data
  const std::size_t n = 4096 * 8 + 3;
  dbuf<bf16> d(n);
  stream st;
  const captured graph(st.s, [&](cudaStream_t s) { nh::relu2_inplace(d.get(), n, s); });
  for (int rep = 0; rep < 2; ++rep) {
    std::vector<double> x;
    d.upload(rand_bf16(n, gen, 1.0, &x));
    graph.replay();
    nh::ref::relu2(x.data(), n);
    for (auto& v : x) v = __bfloat162float(__float2bfloat16(static_cast<float>(v)));
    CHECK(rel_err(to_double(d.download()), x) == 0.0);  // exact: one rounding of an exact square
  }
}
