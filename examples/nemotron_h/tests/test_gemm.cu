// GPU tests: cuBLASLt bf16 GEMM engine vs the float64 reference (plain, accumulate, strided),
// capture safety (prepared shapes replay, unprepared shapes throw while capturing).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "kernel_test_util.cuh"
#include "kernels/gemm.cuh"
#include "reference/reference.hpp"

using namespace nh_test;
namespace nh = nemotron_h;

namespace {
constexpr double kTol = 1e-2;  // bf16 output, fp32 accumulate

struct gemm_case {
  int M, K, N;
};
}  // namespace

TEST_CASE("gemm_engine::linear matches the reference (small and 9B layer shapes)",
          "[dense][gemm]") {
  nh::gemm_engine eng;
  stream st;
  // 9B: up_proj 4480->15680, down_proj 15680->4480, in_proj 4480->22656, out_proj 10240->4480,
  // fused qkv 4480->7168, o_proj 5120->4480.
  for (auto c : {gemm_case{5, 64, 48}, gemm_case{1, 4480, 15680}, gemm_case{7, 15680, 4480},
                 gemm_case{8, 4480, 22656}, gemm_case{3, 10240, 4480}, gemm_case{9, 4480, 7168},
                 gemm_case{4, 5120, 4480}, gemm_case{130, 256, 136}}) {
    CAPTURE(c.M, c.K, c.N);
    std::mt19937 gen(c.M * 7 + c.K + c.N);
    std::vector<double> x, W, y0;
    auto hx = rand_bf16(static_cast<std::size_t>(c.M) * c.K, gen, 1.0, &x);
    auto hW = rand_bf16(static_cast<std::size_t>(c.N) * c.K, gen, 0.02, &W);
    auto hy0 = rand_bf16(static_cast<std::size_t>(c.M) * c.N, gen, 0.5, &y0);
    dbuf<bf16> dx(hx.size()), dW(hW.size()), dy(hy0.size());
    dx.upload(hx);
    dW.upload(hW);
    dy.poison();
    eng.linear(dx.get(), dW.get(), dy.get(), c.M, c.K, c.N, st.s);  // lazy prepare
    st.sync();
    CHECK(eng.prepared(c.M, c.K, c.N));
    std::vector<double> want(hy0.size());
    nh::ref::linear(x.data(), W.data(), want.data(), c.M, c.K, c.N);
    const double e = rel_err(to_double(dy.download()), want);
    CHECK(e < kTol);
    // accumulate: y = y0 + x W^T
    dy.upload(hy0);
    eng.linear(dx.get(), dW.get(), dy.get(), c.M, c.K, c.N, st.s, true);
    st.sync();
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += y0[i];
    const double ea = rel_err(to_double(dy.download()), want);
    CHECK(ea < kTol);
    WARN("gemm M=" << c.M << " K=" << c.K << " N=" << c.N << " rel err " << e << ", accumulate "
                   << ea);
  }
}

TEST_CASE("gemm_engine::linear_strided reads and writes row-strided views", "[dense][gemm]") {
  nh::gemm_engine eng;
  stream st;
  const int M = 6, K = 64, N = 40, ldx = 96, ldy = 56;
  std::mt19937 gen(3);
  std::vector<double> xf, W;
  auto hx = rand_bf16(static_cast<std::size_t>(M) * ldx, gen, 1.0, &xf);
  auto hW = rand_bf16(static_cast<std::size_t>(N) * K, gen, 0.1, &W);
  dbuf<bf16> dx(hx.size()), dW(hW.size()), dy(static_cast<std::size_t>(M) * ldy);
  dx.upload(hx);
  dW.upload(hW);
  dy.poison();
  eng.linear_strided(dx.get(), ldx, dW.get(), dy.get(), ldy, M, K, N, st.s);
  st.sync();
  std::vector<double> x(M * K), want(M * N);
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) x[m * K + k] = xf[m * ldx + k];
  nh::ref::linear(x.data(), W.data(), want.data(), M, K, N);
  auto y = dy.download();
  std::vector<double> got(M * N);
  bool gap_untouched = true;
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) got[m * N + n] = __bfloat162float(y[m * ldy + n]);
    for (int n = N; n < ldy; ++n) gap_untouched = gap_untouched && is_poison(y[m * ldy + n]);
  }
  CHECK(rel_err(got, want) < kTol);
  CHECK(gap_untouched);
}

TEST_CASE("gemm_engine::linear_f32_out gives fp32 logits (the MoE router), strided, in a graph",
          "[dense][gemm][moe]") {
  nh::gemm_engine eng;
  stream st;
  // Nano-30B's router (E 128 over D 2688), Super's (512 over 4096), a tiny one with ld > N.
  for (auto c : {gemm_case{3, 2688, 128}, gemm_case{130, 4096, 512}, gemm_case{5, 128, 8}}) {
    const int ldy = c.N == 8 ? 16 : c.N;
    CAPTURE(c.M, c.K, c.N, ldy);
    std::mt19937 gen(c.K + c.N);
    std::vector<double> x, W;
    auto hx = rand_bf16(static_cast<std::size_t>(c.M) * c.K, gen, 1.0, &x);
    auto hW = rand_bf16(static_cast<std::size_t>(c.N) * c.K, gen, 0.02, &W);
    dbuf<bf16> dx(hx.size()), dW(hW.size());
    dbuf<float> dy(static_cast<std::size_t>(c.M) * ldy);
    dx.upload(hx);
    dW.upload(hW);
    const nh::weight w = nh::weight::bf16_matrix(dW.get(), c.N, c.K, "mixer.gate.weight");
    eng.prepare_f32_out(c.M, c.K, c.N, ldy);
    dy.poison();
    const captured g(st.s, [&](cudaStream_t s) { eng.linear_f32_out(dx.get(), w, dy.get(), ldy, c.M, s); });
    g.replay();
    st.sync();
    std::vector<double> want(static_cast<std::size_t>(c.M) * c.N);
    nh::ref::linear(x.data(), W.data(), want.data(), c.M, c.K, c.N);
    const auto y = dy.download();
    std::vector<double> got(want.size());
    bool gap_untouched = true;
    for (int m = 0; m < c.M; ++m) {
      for (int n = 0; n < c.N; ++n) got[static_cast<std::size_t>(m) * c.N + n] = y[static_cast<std::size_t>(m) * ldy + n];
      for (int n = c.N; n < ldy; ++n) gap_untouched = gap_untouched && std::isnan(y[static_cast<std::size_t>(m) * ldy + n]);
    }
    // fp32 output: the error is the fp32 accumulation's, far below bf16's 4e-3.
    CHECK(rel_err(got, want) < 1e-5);
    CHECK(gap_untouched);
  }
  nh::weight f8 = nh::weight::bf16_matrix(nullptr, 8, 64, "mixer.gate.weight");
  f8.type = nh::dtype::f32;
  CHECK_THROWS_WITH(eng.linear_f32_out(nullptr, f8, nullptr, 8, 1, st.s), Catch::Contains("mixer.gate.weight"));
}

TEST_CASE("gemm_engine is capture-safe for prepared shapes and refuses unprepared ones",
          "[dense][gemm][graph]") {
  nh::gemm_engine eng;
  stream st;
  const int M = 32, K = 4480, N = 7168;
  eng.prepare(M, K, N);
  dbuf<bf16> dx(static_cast<std::size_t>(M) * K), dW(static_cast<std::size_t>(N) * K),
      dy(static_cast<std::size_t>(M) * N), dr(static_cast<std::size_t>(M) * N);
  const captured graph(st.s, [&](cudaStream_t s) {
    eng.linear(dx.get(), dW.get(), dy.get(), M, K, N, s);
    eng.linear(dx.get(), dW.get(), dr.get(), M, K, N, s, true);
  });
  std::mt19937 gen(5);
  for (int rep = 0; rep < 2; ++rep) {
    std::vector<double> x, W, r0;
    dx.upload(rand_bf16(static_cast<std::size_t>(M) * K, gen, 1.0, &x));
    dW.upload(rand_bf16(static_cast<std::size_t>(N) * K, gen, 0.02, &W));
    dr.upload(rand_bf16(static_cast<std::size_t>(M) * N, gen, 1.0, &r0));
    dy.poison();
    graph.replay();
    std::vector<double> want(static_cast<std::size_t>(M) * N);
    nh::ref::linear(x.data(), W.data(), want.data(), M, K, N);
    CHECK(rel_err(to_double(dy.download()), want) < kTol);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += r0[i];
    CHECK(rel_err(to_double(dr.download()), want) < kTol);
  }
  // An unprepared shape inside a capture throws config_error naming the shape.
  bool threw = false;
  try {
    const captured e2(st.s, [&](cudaStream_t s) {
      eng.linear(dx.get(), dW.get(), dy.get(), 17, K, N, s);
    });
  } catch (const piecewise::config_error& err) {
    threw = true;
    CHECK(std::string(err.what()).find("M=17") != std::string::npos);
  }
  CHECK(threw);
  CHECK_FALSE(eng.prepared(17, K, N));
  CHECK_THROWS_AS(eng.prepare(4, 30, 16), piecewise::config_error);  // K not a multiple of 8
}

TEST_CASE("gemm_engine takes a weight view: bf16 runs as the plain matrix, other dtypes are refused by name",
          "[dense][gemm]") {
  nh::gemm_engine eng;
  stream st;
  const int M = 4, K = 64, N = 32;
  dbuf<bf16> dx(static_cast<std::size_t>(M) * K), dW(static_cast<std::size_t>(N) * K),
      dy(static_cast<std::size_t>(M) * N), dz(static_cast<std::size_t>(M) * N);
  std::mt19937 gen(9);
  dx.upload(rand_bf16(static_cast<std::size_t>(M) * K, gen, 1.0, nullptr));
  dW.upload(rand_bf16(static_cast<std::size_t>(N) * K, gen, 0.02, nullptr));
  eng.linear(dx.get(), dW.get(), dy.get(), M, K, N, st.s);
  eng.linear(dx.get(), nh::weight::bf16_matrix(dW.get(), N, K, "test.weight"), dz.get(), M, st.s);
  st.sync();  // the downloads run on the legacy stream, which does not wait for `st`
  CHECK(to_double(dy.download()) == to_double(dz.download()));
  for (nh::dtype t : {nh::dtype::f32, nh::dtype::fp8_e4m3, nh::dtype::nvfp4}) {
    nh::weight w = nh::weight::bf16_matrix(dW.get(), N, K, "layers.3.mixer.up_proj.weight");
    w.type = t;
    CHECK_FALSE(nh::gemm_engine::supports(t));
    try {
      eng.linear(dx.get(), w, dz.get(), M, st.s);
      FAIL("no exception for dtype " << nh::dtype_name(t));
    } catch (const piecewise::config_error& e) {
      const std::string what = e.what();
      CHECK(what.find("layers.3.mixer.up_proj.weight") != std::string::npos);
      CHECK(what.find(nh::dtype_name(t)) != std::string::npos);
      CHECK(what.find("not supported yet") != std::string::npos);
    }
  }
}
