// GPU tests: the producers that write an FP8 projection's e4m3 input themselves (rmsnorm_fp8,
// gated_rmsnorm_fp8, relu2_fp8) against their bf16 kernel followed by quantize_fp8_rows, bit
// for bit; their dequantized outputs against the float64 references; graph replay with new
// inputs, scales and row counts; gemm_engine's fp8_input / linear_fp8_input against linear();
// the errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernel_test_util.cuh"
#include "kernels/activations.cuh"
#include "kernels/gemm.cuh"
#include "kernels/norms.cuh"
#include "kernels/quantize_fp8.cuh"
#include "model/quant_formats.hpp"
#include "reference/reference.hpp"

using namespace nh_test;
namespace nh = nemotron_h;

namespace {

constexpr float kEps = 1e-5f;

/// ModelOpt's static input scale for inputs whose largest |value| is `amax`.
float scale_of(double amax) { return nh::quant::fp8_scale(static_cast<float>(amax)); }

double amax_of(const std::vector<double>& v) {
  double a = 0;
  for (double x : v) a = std::max(a, std::fabs(x));
  return a;
}

/// e4m3 bytes dequantized with `scale`, the first `cols` of each row of `ld` bytes.
std::vector<double> dequantize(const std::vector<std::uint8_t>& q, int rows, int cols, int ld, float scale) {
  std::vector<double> v(static_cast<std::size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      v[static_cast<std::size_t>(r) * cols + c] =
          static_cast<double>(nh::quant::e4m3_to_float(q[static_cast<std::size_t>(r) * ld + c])) * scale;
  return v;
}

// e4m3 keeps 3 mantissa bits: a value is off by at most 1/16 of itself (1/8 below 2^-6 of the
// scale, where the codes are subnormal), about 3% in a relative norm over many values.
constexpr double kTolE4m3 = 0.05;

}  // namespace

TEST_CASE("quantize_fp8_rows equals float_to_e4m3 of the fp32 quotient for every bf16 value and 300 scales",
          "[dense][fp8]") {
  // The device quantizer multiplies by the reciprocal and divides only near e4m3 rounding
  // midpoints (kernels/fp8_device.cuh): every bf16 bit pattern (infinities, NaN, subnormals
  // included) against the host's fp32 division, for power-of-two scales (exact quotients: every
  // midpoint is hit as a tie) and random ones (quotients within an ulp or two of a midpoint
  // occur about once in 10^5 values, so a few hundred times here), scales whose mantissa is all
  // ones, and the extremes.
  const int n = 65536;
  std::vector<bf16> hx(n);
  for (int i = 0; i < n; ++i) {
    const auto b = static_cast<std::uint16_t>(i);
    std::memcpy(&hx[static_cast<std::size_t>(i)], &b, 2);
  }
  std::vector<float> scales;
  for (int e = -30; e <= 10; e += 5) scales.push_back(std::ldexp(1.0f, e));
  std::mt19937 gen(29);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> ex(-40, 12);
  while (scales.size() < 290) scales.push_back(std::ldexp(mant(gen), ex(gen)));
  for (int e : {-20, -3, 0, 4}) scales.push_back(std::ldexp(std::nextafter(2.0f, 0.0f), e));  // 1.11..1 x 2^e
  scales.push_back(std::numeric_limits<float>::min());
  scales.push_back(1.0f / 448.0f);
  scales.push_back(3.0e30f);
  dbuf<bf16> dx(n);
  dbuf<std::uint8_t> dq(n);
  dbuf<float> ds(1);
  dx.upload(hx);
  stream st;
  int mismatches = 0;
  for (float s : scales) {
    ds.upload({s});
    nh::quantize_fp8_rows(dx.get(), n, ds.get(), dq.get(), n, 1, n, st.s);
    st.sync();
    const auto q = dq.download();
    for (int i = 0; i < n; ++i) {
      const float v = __bfloat162float(hx[static_cast<std::size_t>(i)]);
      const std::uint8_t want = nh::quant::float_to_e4m3(v / s);
      const bool ok = std::isnan(v) ? (q[static_cast<std::size_t>(i)] & 0x7f) == 0x7f : q[static_cast<std::size_t>(i)] == want;
      if (!ok && ++mismatches <= 10) {
        FAIL_CHECK("scale " << s << " value " << v << ": device 0x" << std::hex << int{q[static_cast<std::size_t>(i)]}
                            << ", host 0x" << int{want} << std::dec);
      }
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("rmsnorm_fp8 equals rmsnorm then quantize_fp8_rows bit for bit and the float64 norm within e4m3",
          "[dense][norms][fp8]") {
  // The shapes of the rmsnorm test: 1, 2 and 4 pieces a thread and the two-pass kernel.
  for (auto [rows, D] : {std::pair{5, 64}, std::pair{37, 4480}, std::pair{1, 4480}, std::pair{3, 4096},
                         std::pair{2, 16384}, std::pair{1, 36864}, std::pair{3, 8200}}) {
    CAPTURE(rows, D);
    std::mt19937 gen(300 + D + rows);
    std::vector<double> x, w;
    const auto hx = rand_bf16(static_cast<std::size_t>(rows) * D, gen, 1.0, &x);
    const auto hw = rand_bf16(D, gen, 0.2, &w, 1.0);
    std::vector<double> want(x.size());
    nh::ref::rmsnorm(x.data(), w.data(), want.data(), rows, D, kEps);
    dbuf<bf16> dx(hx.size()), dw(D), dy(hx.size());
    dbuf<std::uint8_t> dq(hx.size()), dref(hx.size());
    dbuf<float> ds(1);
    dx.upload(hx);
    dw.upload(hw);
    stream st;
    // A calibrated scale, one that saturates most values, and a large one (subnormal codes).
    for (double f : {1.0, 0.05, 40.0}) {
      CAPTURE(f);
      const float s = scale_of(amax_of(want) * f);
      ds.upload({s});
      dq.poison();
      dref.poison();
      nh::rmsnorm_fp8(dx.get(), dw.get(), ds.get(), dq.get(), rows, D, kEps, st.s);
      nh::rmsnorm(dx.get(), dw.get(), dy.get(), rows, D, kEps, st.s);
      nh::quantize_fp8_rows(dy.get(), D, ds.get(), dref.get(), D, rows, D, st.s);
      st.sync();
      const auto q = dq.download();
      CHECK(q == dref.download());
      if (f == 1.0) CHECK(rel_err(dequantize(q, rows, D, D, s), want) < kTolE4m3);
      if (f == 0.05) CHECK(std::count(q.begin(), q.end(), std::uint8_t{0x7e}) > 0);  // +448 saturation
    }
  }
}

TEST_CASE("rmsnorm_fp8 replays from a captured graph with new inputs, scale and row count, rows beyond untouched",
          "[dense][norms][fp8][graph]") {
  const int rows = 16, D = 4480;
  std::mt19937 gen(17);
  dbuf<bf16> dx(rows * D), dw(D), dy(rows * D);
  dbuf<std::uint8_t> dq(rows * D), dref(rows * D);
  dbuf<float> ds(1);
  dbuf<int> nrows(1);
  stream st;
  const captured graph(st.s, [&](cudaStream_t s) {
    nh::rmsnorm_fp8(dx.get(), dw.get(), ds.get(), dq.get(), rows, D, kEps, s, nrows.get());
  });
  for (int real : {16, 9, 1}) {
    CAPTURE(real);
    std::vector<double> x, w;
    const auto hx = rand_bf16(rows * D, gen, 1.0 + real, &x);
    dx.upload(hx);
    dw.upload(rand_bf16(D, gen, 0.2, &w, 1.0));
    std::vector<double> want(x.size());
    nh::ref::rmsnorm(x.data(), w.data(), want.data(), rows, D, kEps);
    const float s = scale_of(amax_of(want));
    ds.upload({s});
    nrows.upload({real});
    dq.poison();
    graph.replay();
    nh::rmsnorm(dx.get(), dw.get(), dy.get(), rows, D, kEps, st.s);
    nh::quantize_fp8_rows(dy.get(), D, ds.get(), dref.get(), D, rows, D, st.s);
    st.sync();
    const auto q = dq.download(), r = dref.download();
    const auto end = static_cast<std::size_t>(real) * D;
    CHECK(std::equal(q.begin(), q.begin() + static_cast<long>(end), r.begin()));
    CHECK(std::all_of(q.begin() + static_cast<long>(end), q.end(), [](std::uint8_t b) { return b == 0xFF; }));
    want.resize(end);
    CHECK(rel_err(dequantize(q, real, D, D, s), want) < kTolE4m3);
  }
}

TEST_CASE("gated_rmsnorm_fp8 (fp32 and bf16 y, strided z and q) equals gated_rmsnorm then quantize bit for bit",
          "[dense][norms][fp8]") {
  struct shape {
    int rows, d_inner, G, ldz, ldq;
  };
  // The gated test's group sizes: one piece a thread, four, and the shared-memory kernel.
  for (auto sh : {shape{4, 64, 4, 96, 64}, shape{33, 10240, 8, 22656, 10240}, shape{1, 10240, 8, 22656, 10240},
                  shape{5, 8192, 8, 8192, 8200}, shape{2, 16384, 2, 16384, 16384}, shape{1, 40960, 4, 40960, 40960}}) {
    CAPTURE(sh.rows, sh.d_inner, sh.G, sh.ldq);
    std::mt19937 gen(400 + sh.d_inner + sh.rows);
    const int rows = sh.rows, d = sh.d_inner;
    std::vector<double> zfull, w;
    const auto hz = rand_bf16(static_cast<std::size_t>(rows) * sh.ldz, gen, 1.5, &zfull);
    const auto hw = rand_bf16(d, gen, 0.2, &w, 1.0);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> hy(static_cast<std::size_t>(rows) * d);
    for (auto& v : hy) v = nd(gen);
    std::vector<bf16> hyb(hy.size());
    for (std::size_t i = 0; i < hy.size(); ++i) hyb[i] = __float2bfloat16(hy[i]);
    std::vector<double> y(hy.begin(), hy.end()), z(static_cast<std::size_t>(rows) * d), want(y.size());
    for (int t = 0; t < rows; ++t)
      for (int c = 0; c < d; ++c) z[static_cast<std::size_t>(t) * d + c] = zfull[static_cast<std::size_t>(t) * sh.ldz + c];
    nh::ref::gated_rmsnorm(y.data(), z.data(), w.data(), want.data(), rows, d, sh.G, kEps);
    const float s = scale_of(amax_of(want));
    dbuf<float> dy(hy.size()), ds(1);
    dbuf<bf16> dyb(hy.size()), dz(hz.size()), dw(d), dout(hy.size());
    const std::size_t qn = static_cast<std::size_t>(rows) * sh.ldq;
    dbuf<std::uint8_t> dq(qn), dref(qn);
    dy.upload(hy);
    dyb.upload(hyb);
    dz.upload(hz);
    dw.upload(hw);
    ds.upload({s});
    stream st;
    for (bool bf16_y : {false, true}) {
      CAPTURE(bf16_y);
      dq.poison();
      dref.poison();
      if (bf16_y) {
        nh::gated_rmsnorm_fp8(dyb.get(), d, dz.get(), sh.ldz, dw.get(), ds.get(), dq.get(), sh.ldq, rows, d, sh.G,
                              kEps, st.s);
        nh::gated_rmsnorm(dyb.get(), d, dz.get(), sh.ldz, dw.get(), dout.get(), d, rows, d, sh.G, kEps, st.s);
      } else {
        nh::gated_rmsnorm_fp8(dy.get(), d, dz.get(), sh.ldz, dw.get(), ds.get(), dq.get(), sh.ldq, rows, d, sh.G,
                              kEps, st.s);
        nh::gated_rmsnorm(dy.get(), d, dz.get(), sh.ldz, dw.get(), dout.get(), d, rows, d, sh.G, kEps, st.s);
      }
      nh::quantize_fp8_rows(dout.get(), d, ds.get(), dref.get(), sh.ldq, rows, d, st.s);
      st.sync();
      const auto q = dq.download();
      CHECK(q == dref.download());  // the padding columns of a wider ldq stay poisoned in both
      if (!bf16_y) CHECK(rel_err(dequantize(q, rows, d, sh.ldq, s), want) < kTolE4m3);
    }
  }
}

TEST_CASE("gated_rmsnorm_fp8 replays from a captured graph with new inputs, scale and row count",
          "[dense][norms][fp8][graph]") {
  const int rows = 12, d = 10240, G = 8, ldz = 22656;
  std::mt19937 gen(19);
  dbuf<float> dy(rows * d), ds(1);
  dbuf<bf16> dz(static_cast<std::size_t>(rows) * ldz), dw(d), dout(rows * d);
  dbuf<std::uint8_t> dq(rows * d), dref(rows * d);
  dbuf<int> nrows(1);
  stream st;
  const captured graph(st.s, [&](cudaStream_t s) {
    nh::gated_rmsnorm_fp8(dy.get(), d, dz.get(), ldz, dw.get(), ds.get(), dq.get(), d, rows, d, G, kEps, s,
                          nrows.get());
  });
  for (int real : {12, 5}) {
    CAPTURE(real);
    dz.upload(rand_bf16(static_cast<std::size_t>(rows) * ldz, gen, 1.0, nullptr));
    dw.upload(rand_bf16(d, gen, 0.2, nullptr, 1.0));
    std::normal_distribution<float> nd(0.f, 1.f + static_cast<float>(real));
    std::vector<float> hy(rows * d);
    for (auto& v : hy) v = nd(gen);
    dy.upload(hy);
    ds.upload({0.01f * static_cast<float>(real)});
    nrows.upload({real});
    dq.poison();
    graph.replay();
    nh::gated_rmsnorm(dy.get(), d, dz.get(), ldz, dw.get(), dout.get(), d, rows, d, G, kEps, st.s);
    nh::quantize_fp8_rows(dout.get(), d, ds.get(), dref.get(), d, rows, d, st.s);
    st.sync();
    const auto q = dq.download(), r = dref.download();
    const auto end = static_cast<long>(real) * d;
    CHECK(std::equal(q.begin(), q.begin() + end, r.begin()));
    CHECK(std::all_of(q.begin() + end, q.end(), [](std::uint8_t b) { return b == 0xFF; }));
  }
}

TEST_CASE("relu2_fp8 equals relu2_inplace then quantize bit for bit, leaves x alone, and replays with a new scale",
          "[dense][fp8][graph]") {
  stream st;
  for (std::size_t n : {std::size_t{8}, std::size_t{15680}, std::size_t{37} * 15680}) {
    CAPTURE(n);
    const int cols = n % 15680 == 0 ? 15680 : static_cast<int>(n);  // rows of Nano-9B-v2's intermediate width
    const int rows = static_cast<int>(n / static_cast<std::size_t>(cols));
    std::mt19937 gen(static_cast<unsigned>(n));
    std::vector<double> x;
    const auto hx = rand_bf16(n, gen, 2.0, &x);
    std::vector<double> want(n);
    for (std::size_t i = 0; i < n; ++i) want[i] = x[i] > 0 ? x[i] * x[i] : 0.0;
    dbuf<bf16> dx(n), dr(n);
    dbuf<std::uint8_t> dq(n), dref(n);
    dbuf<float> ds(1);
    dx.upload(hx);
    const captured graph(st.s, [&](cudaStream_t s) { nh::relu2_fp8(dx.get(), n, ds.get(), dq.get(), s); });
    for (double f : {1.0, 0.1}) {
      CAPTURE(f);
      const float s = scale_of(std::max(amax_of(want), 1e-3) * f);
      ds.upload({s});
      dq.poison();
      graph.replay();
      dr.upload(hx);
      nh::relu2_inplace(dr.get(), n, st.s);
      nh::quantize_fp8_rows(dr.get(), cols, ds.get(), dref.get(), cols, rows, cols, st.s);
      st.sync();
      const auto q = dq.download();
      CHECK(q == dref.download());
      CHECK(dx.download() == hx);  // x is read only
      if (f == 1.0) CHECK(rel_err(dequantize(q, 1, static_cast<int>(n), static_cast<int>(n), s), want) < kTolE4m3);
    }
  }
}

TEST_CASE("fused FP8 producers and gemm_engine::fp8_input refuse bad sizes, pointers and weights by name",
          "[dense][fp8]") {
  dbuf<bf16> dx(64 * 16), dw(64);
  dbuf<std::uint8_t> dq(64 * 16 + 8);
  dbuf<float> ds(1), dy(64 * 16);
  stream st;
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(nh::rmsnorm_fp8(dx.get(), dw.get(), ds.get(), dq.get() + 4, 4, 64, kEps, st.s),
                    Contains("rmsnorm_fp8") && Contains("aligned"));
  CHECK_THROWS_WITH(nh::rmsnorm_fp8(dx.get(), dw.get(), ds.get(), dq.get(), 4, 60, kEps, st.s),
                    Contains("multiple of 8"));
  CHECK_THROWS_WITH(nh::rmsnorm_fp8(dx.get(), dw.get(), nullptr, dq.get(), 4, 64, kEps, st.s), Contains("scale"));
  CHECK_THROWS_WITH(nh::gated_rmsnorm_fp8(dy.get(), 64, dx.get(), 64, dw.get(), ds.get(), dq.get() + 2, 64, 4, 64, 4,
                                          kEps, st.s),
                    Contains("gated_rmsnorm_fp8") && Contains("misaligned"));
  CHECK_THROWS_WITH(nh::gated_rmsnorm_fp8(dy.get(), 64, dx.get(), 64, dw.get(), ds.get(), dq.get(), 62, 4, 64, 4, kEps,
                                          st.s),
                    Contains("strides"));
  CHECK_THROWS_WITH(nh::relu2_fp8(dx.get(), 12, ds.get(), dq.get(), st.s), Contains("relu2_fp8 (n=12)"));
  CHECK_THROWS_WITH(nh::relu2_fp8(dx.get() + 1, 8, ds.get(), dq.get(), st.s), Contains("aligned"));
  CHECK_NOTHROW(nh::relu2_fp8(dx.get(), 0, nullptr, nullptr, st.s));  // nothing to do
  // fp8_input: only FP8 weights, only as many rows as reserved.
  nh::gemm_engine eng;
  const nh::weight bw = nh::weight::bf16_matrix(dx.get(), 16, 64, "mixer.up_proj.weight");
  CHECK_THROWS_WITH((void)eng.fp8_input(bw, 1), Contains("mixer.up_proj.weight") && Contains("bf16"));
  nh::weight fw;
  fw.data = dq.get();
  fw.type = nh::dtype::fp8_e4m3;
  fw.rows = 16;
  fw.cols = 64;
  fw.scale = ds.get();
  fw.input_scale = ds.get();
  fw.name = "mixer.down_proj.weight";
  eng.reserve_fp8_input(4, 64);
  CHECK(eng.fp8_input(fw, 4) != nullptr);
  CHECK_THROWS_WITH((void)eng.fp8_input(fw, 5), Contains("mixer.down_proj.weight") && Contains("M=5"));
  fw.input_scale = nullptr;
  CHECK_THROWS_WITH((void)eng.fp8_input(fw, 1), Contains("mixer.down_proj.weight") && Contains("input scale"));
  st.sync();
}

TEST_CASE("linear_fp8_input after a fused producer equals linear() on the bf16 input bit for bit, in a graph",
          "[dense][gemm][fp8][graph]") {
  // Nano-9B-v2's hidden width as K, at a decode row and a short prefill.
  const int K = 4480, N = 4096;
  nh::gemm_engine eng;
  stream st;
  std::mt19937 gen(23);
  std::vector<double> W;
  (void)rand_bf16(static_cast<std::size_t>(N) * K, gen, 0.02, &W);
  const float sw = scale_of(amax_of(W));
  std::vector<std::uint8_t> Wq(W.size());
  for (std::size_t i = 0; i < W.size(); ++i) Wq[i] = nh::quant::float_to_e4m3(static_cast<float>(W[i]) / sw);
  dbuf<std::uint8_t> dW(Wq.size());
  dW.upload(Wq);
  dbuf<float> dsw(1), dsx(1);
  dsw.upload({sw});
  nh::weight w;
  w.data = dW.get();
  w.type = nh::dtype::fp8_e4m3;
  w.rows = N;
  w.cols = K;
  w.scale = dsw.get();
  w.input_scale = dsx.get();
  w.name = "mixer.up_proj.weight";
  eng.reserve_fp8_input(17, K);
  for (int M : {1, 17}) {
    CAPTURE(M);
    std::vector<double> x, nw;
    dbuf<bf16> dh(static_cast<std::size_t>(M) * K), dnw(K), dxn(static_cast<std::size_t>(M) * K);
    dbuf<bf16> dy(static_cast<std::size_t>(M) * N), dy2(static_cast<std::size_t>(M) * N);
    dh.upload(rand_bf16(static_cast<std::size_t>(M) * K, gen, 1.0, &x));
    dnw.upload(rand_bf16(K, gen, 0.2, &nw, 1.0));
    std::vector<double> xn(x.size());
    nh::ref::rmsnorm(x.data(), nw.data(), xn.data(), M, K, kEps);
    dsx.upload({scale_of(amax_of(xn))});
    eng.prepare(w, M);
    const captured fused(st.s, [&](cudaStream_t s) {
      nh::rmsnorm_fp8(dh.get(), dnw.get(), w.input_scale, eng.fp8_input(w, M), M, K, kEps, s);
      eng.linear_fp8_input(w, dy.get(), M, s);
    });
    const captured plain(st.s, [&](cudaStream_t s) {
      nh::rmsnorm(dh.get(), dnw.get(), dxn.get(), M, K, kEps, s);
      eng.linear(dxn.get(), w, dy2.get(), M, s);
    });
    dy.poison();
    dy2.poison();
    fused.replay();
    plain.replay();
    st.sync();
    const auto a = dy.download(), b = dy2.download();
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0);
    // And against float64 of the dequantized operands.
    std::vector<double> Wd(W.size()), xd(xn.size()), want(static_cast<std::size_t>(M) * N);
    for (std::size_t i = 0; i < W.size(); ++i) Wd[i] = static_cast<double>(nh::quant::e4m3_to_float(Wq[i])) * sw;
    const auto xq = dxn.download();  // the GPU's bf16 norm, quantized as the kernel did
    const float sx = dsx.download()[0];
    for (std::size_t i = 0; i < xd.size(); ++i)
      xd[i] = static_cast<double>(nh::quant::e4m3_to_float(
                  nh::quant::float_to_e4m3(__bfloat162float(xq[i]) / sx))) * sx;
    nh::ref::linear(xd.data(), Wd.data(), want.data(), M, K, N);
    CHECK(rel_err(to_double(a), want) < 1e-2);
  }
}
