// GPU tests: cuBLASLt bf16 GEMM engine vs the float64 reference (plain, accumulate, strided),
// capture safety (prepared shapes replay, unprepared shapes throw while capturing); the FP8
// path (input quantization bit for bit against the host's e4m3, the FP8 GEMM against float64
// of the dequantized operands, in a graph replayed with new inputs and a new scale; linear() on
// an fp8_e4m3 weight equal to the two steps by hand).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernel_test_util.cuh"
#include "kernels/gemm.cuh"
#include "kernels/gemv.cuh"
#include "kernels/quantize_fp8.cuh"
#include "model/quant_formats.hpp"
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
  // fused qkv 4480->7168, o_proj 5120->4480. M <= 4 runs both the GEMV and cuBLASLt.
  for (bool gemv : {true, false})
  for (auto c : {gemm_case{5, 64, 48}, gemm_case{1, 4480, 15680}, gemm_case{7, 15680, 4480},
                 gemm_case{8, 4480, 22656}, gemm_case{3, 10240, 4480}, gemm_case{9, 4480, 7168},
                 gemm_case{4, 5120, 4480}, gemm_case{130, 256, 136}}) {
    eng.use_gemv(gemv);
    if (!gemv && c.M != nh::kGemmGemvRows) continue;  // already run
    CAPTURE(c.M, c.K, c.N, gemv);
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
    CHECK(eng.prepared(c.M, c.K, c.N) == !eng.uses_gemv(c.M));  // the GEMV needs no plan
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

TEST_CASE("gemm_engine takes a weight view: bf16 runs as the plain matrix, f32, and nvfp4 and FP8 without scales, are "
          "refused by name",
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
  CHECK(nh::gemm_engine::supports(nh::dtype::fp8_e4m3));
  for (nh::dtype t : {nh::dtype::f32, nh::dtype::fp8_e4m3, nh::dtype::nvfp4}) {
    nh::weight w = nh::weight::bf16_matrix(dW.get(), N, K, "layers.3.mixer.up_proj.weight");
    w.type = t;
    CHECK(nh::gemm_engine::supports(t) == (t != nh::dtype::f32));
    CHECK_FALSE(nh::gemm_engine::supports(w));  // FP8 / NVFP4 without their scales neither
    try {
      eng.linear(dx.get(), w, dz.get(), M, st.s);
      FAIL("no exception for dtype " << nh::dtype_name(t));
    } catch (const piecewise::config_error& e) {
      const std::string what = e.what();
      CHECK(what.find("layers.3.mixer.up_proj.weight") != std::string::npos);
      CHECK(what.find(nh::dtype_name(t)) != std::string::npos);
      CHECK(what.find(t == nh::dtype::fp8_e4m3 ? "no weight scale"
                      : t == nh::dtype::nvfp4  ? "no block scales"
                                               : "not supported yet") != std::string::npos);
    }
  }
}

namespace {

/// e4m3 bytes of `v` / scale (fp32 division, as the kernel), and their dequantized values.
std::vector<std::uint8_t> host_quantize(const std::vector<double>& v, float scale, std::vector<double>* deq) {
  std::vector<std::uint8_t> q(v.size());
  deq->resize(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    q[i] = nh::quant::float_to_e4m3(static_cast<float>(v[i]) / scale);
    (*deq)[i] = static_cast<double>(nh::quant::e4m3_to_float(q[i])) * scale;
  }
  return q;
}

float amax_scale(const std::vector<double>& v) {
  double a = 0;
  for (double x : v) a = std::max(a, std::fabs(x));
  return nh::quant::fp8_scale(static_cast<float>(a));
}

}  // namespace

TEST_CASE("FP8: quantize_fp8_rows equals the host e4m3 bit for bit, linear_fp8 the float64 GEMM of the dequantized "
          "operands, in a graph replayed with new inputs and scale",
          "[dense][gemm][fp8]") {
  nh::gemm_engine eng;
  stream st;
  // Nano-9B-v2's decode in_proj / MLP shapes, a prefill chunk, a small odd one.
  for (auto c : {gemm_case{1, 4480, 15680}, gemm_case{5, 4480, 1024}, gemm_case{130, 256, 136}}) {
    CAPTURE(c.M, c.K, c.N);
    std::mt19937 gen(c.M * 7 + c.N);
    std::vector<double> x, W, x2;
    auto hx = rand_bf16(static_cast<std::size_t>(c.M) * c.K, gen, 1.0, &x);
    auto hx2 = rand_bf16(hx.size(), gen, 3.0, &x2);
    (void)rand_bf16(static_cast<std::size_t>(c.N) * c.K, gen, 0.02, &W);
    const float sw = amax_scale(W);
    std::vector<double> Wd;
    const auto Wq = host_quantize(W, sw, &Wd);
    float sx = amax_scale(x);
    dbuf<bf16> dx(hx.size());
    dbuf<std::uint8_t> dxq(hx.size()), dW(Wq.size());
    dbuf<float> dsx(1), dsw(1);
    dbuf<bf16> dy(static_cast<std::size_t>(c.M) * c.N);
    dx.upload(hx);
    dW.upload(Wq);
    dsx.upload({sx});
    dsw.upload({sw});
    nh::weight w;
    w.data = dW.get();
    w.type = nh::dtype::fp8_e4m3;
    w.rows = c.N;
    w.cols = c.K;
    w.scale = dsw.get();
    w.name = "mixer.in_proj.weight";
    eng.prepare_fp8(c.M, c.K, c.N, c.K, c.N);
    dy.poison();
    const captured g(st.s, [&](cudaStream_t s) {
      nh::quantize_fp8_rows(dx.get(), c.K, dsx.get(), dxq.get(), c.K, c.M, c.K, s);
      eng.linear_fp8(dxq.get(), c.K, dsx.get(), w, dy.get(), c.N, c.M, s);
    });
    for (int round = 0; round < 2; ++round) {
      CAPTURE(round);
      if (round == 1) {  // new inputs and a new input scale, same graph
        dx.upload(hx2);
        sx = amax_scale(x2);
        dsx.upload({sx});
      }
      const std::vector<double>& xin = round == 0 ? x : x2;
      g.replay();
      st.sync();
      std::vector<double> xd;
      const auto xq = host_quantize(xin, sx, &xd);
      CHECK(dxq.download() == xq);
      std::vector<double> want(static_cast<std::size_t>(c.M) * c.N);
      nh::ref::linear(xd.data(), Wd.data(), want.data(), c.M, c.K, c.N);
      const auto got = to_double(dy.download());
      CHECK(rel_err(got, want) < kTol);
    }
    // y += on top of what is there.
    const auto before = to_double(dy.download());
    eng.linear_fp8(dxq.get(), c.K, dsx.get(), w, dy.get(), c.N, c.M, st.s, true);
    st.sync();
    std::vector<double> xd, want(before.size());
    (void)host_quantize(x2, sx, &xd);
    nh::ref::linear(xd.data(), Wd.data(), want.data(), c.M, c.K, c.N);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += before[i];
    CHECK(rel_err(to_double(dy.download()), want) < kTol);
  }
  // Saturation and NaN: values far beyond 448 x scale clamp to +-448.
  {
    std::vector<bf16> hx(16);
    for (int i = 0; i < 16; ++i) hx[i] = nh::to_bf16(i % 2 ? -1e6f : 1e6f);
    dbuf<bf16> dx(16);
    dbuf<std::uint8_t> dq(16);
    dbuf<float> ds(1);
    dx.upload(hx);
    ds.upload({1.0f});
    nh::quantize_fp8_rows(dx.get(), 16, ds.get(), dq.get(), 16, 1, 16, st.s);
    st.sync();
    for (std::uint8_t b : dq.download()) CHECK((b == 0x7e || b == 0xfe));
  }
  nh::weight bf = nh::weight::bf16_matrix(nullptr, 16, 64, "mixer.out_proj.weight");
  CHECK_THROWS_WITH(eng.linear_fp8(nullptr, 64, nullptr, bf, nullptr, 16, 1, st.s),
                    Catch::Contains("mixer.out_proj.weight") && Catch::Contains("fp8_e4m3"));
  CHECK_THROWS_WITH(eng.prepare_fp8(4, 24, 16, 24, 16), Catch::Contains("multiples of 16"));
  CHECK_THROWS_WITH(nh::quantize_fp8_rows(nullptr, 12, nullptr, nullptr, 12, 1, 12, st.s), Catch::Contains("K=12"));
}

TEST_CASE("gemv_bf16 (decode, M 1 to 4) matches float64: store, accumulate, relu2, fp32 out, strided, in a graph",
          "[dense][gemm][gemv]") {
  stream st;
  // Nano-30B decode shapes (shared expert, out_proj, in_proj), a K that is no multiple of the
  // 256 elements a warp takes per step, an odd N, the smallest shape.
  for (auto c : {gemm_case{1, 2688, 3712}, gemm_case{2, 3712, 2688}, gemm_case{3, 4096, 2688},
                 gemm_case{4, 2688, 10304}, gemm_case{4, 264, 13}, gemm_case{1, 8, 1}}) {
    const int ldx = c.K + 8, ldy = c.N + 3;
    CAPTURE(c.M, c.K, c.N);
    std::mt19937 gen(c.M * 11 + c.K + c.N);
    std::vector<double> x, W, y0;
    const auto hx = rand_bf16(static_cast<std::size_t>(c.M) * ldx, gen, 1.0, &x);
    const auto hW = rand_bf16(static_cast<std::size_t>(c.N) * c.K, gen, 0.02, &W);
    const auto hy0 = rand_bf16(static_cast<std::size_t>(c.M) * ldy, gen, 0.5, &y0);
    dbuf<bf16> dx(hx.size()), dW(hW.size()), dy(hy0.size());
    dbuf<float> df(static_cast<std::size_t>(c.M) * ldy);
    dx.upload(hx);
    dW.upload(hW);
    // float64 of the bf16 operands, x read with its stride.
    std::vector<double> acc(static_cast<std::size_t>(c.M) * c.N, 0.0);
    for (int m = 0; m < c.M; ++m)
      for (int n = 0; n < c.N; ++n) {
        double a = 0;
        for (int k = 0; k < c.K; ++k)
          a += x[static_cast<std::size_t>(m) * ldx + k] * W[static_cast<std::size_t>(n) * c.K + k];
        acc[static_cast<std::size_t>(m) * c.N + n] = a;
      }
    const auto strip = [&](const std::vector<double>& y) {  // [M, ldy] -> [M, N]
      std::vector<double> o(acc.size());
      for (int m = 0; m < c.M; ++m)
        for (int n = 0; n < c.N; ++n)
          o[static_cast<std::size_t>(m) * c.N + n] = y[static_cast<std::size_t>(m) * ldy + n];
      return o;
    };
    const auto gap_poisoned = [&](const std::vector<bf16>& y) {
      for (int m = 0; m < c.M; ++m)
        for (int n = c.N; n < ldy; ++n)
          if (!is_poison(y[static_cast<std::size_t>(m) * ldy + n])) return false;
      return true;
    };
    for (auto out : {nh::gemv_out::store, nh::gemv_out::accumulate, nh::gemv_out::store_relu2}) {
      CAPTURE(static_cast<int>(out));
      std::vector<double> want = acc;
      if (out == nh::gemv_out::accumulate) {
        dy.upload(hy0);
        for (int m = 0; m < c.M; ++m)
          for (int n = 0; n < c.N; ++n)
            want[static_cast<std::size_t>(m) * c.N + n] += y0[static_cast<std::size_t>(m) * ldy + n];
      } else {
        dy.poison();
      }
      if (out == nh::gemv_out::store_relu2)
        for (double& v : want) v = v > 0 ? v * v : 0.0;
      nh::gemv_bf16(dx.get(), ldx, dW.get(), c.N, c.K, dy.get(), ldy, c.M, out, st.s);
      st.sync();
      const auto y = dy.download();
      CHECK(rel_err(strip(to_double(y)), want) < kTol);
      if (out != nh::gemv_out::accumulate) CHECK(gap_poisoned(y));
    }
    // fp32 out: the accumulation's error only.
    df.poison();
    nh::gemv_bf16(dx.get(), ldx, dW.get(), c.N, c.K, df.get(), ldy, c.M, nh::gemv_out::f32, st.s);
    st.sync();
    CHECK(rel_err(strip(to_double(df.download())), acc) < 1e-5);
    // A row's bits do not depend on M: row 0 alone equals row 0 of the M-row call.
    dbuf<bf16> d1(static_cast<std::size_t>(ldy));
    nh::gemv_bf16(dx.get(), ldx, dW.get(), c.N, c.K, dy.get(), ldy, c.M, nh::gemv_out::store, st.s);
    nh::gemv_bf16(dx.get(), ldx, dW.get(), c.N, c.K, d1.get(), ldy, 1, nh::gemv_out::store, st.s);
    st.sync();
    const auto yM = dy.download(), y1 = d1.download();
    CHECK(std::memcmp(yM.data(), y1.data(), static_cast<std::size_t>(c.N) * sizeof(bf16)) == 0);
    // In a captured graph, replayed with new inputs.
    const captured g(st.s, [&](cudaStream_t s) {
      nh::gemv_bf16(dx.get(), ldx, dW.get(), c.N, c.K, dy.get(), ldy, c.M, nh::gemv_out::store, s);
    });
    for (int rep = 0; rep < 2; ++rep) {
      std::vector<double> x2;
      dx.upload(rand_bf16(hx.size(), gen, 1.0, &x2));
      dy.poison();
      g.replay();
      std::vector<double> want(acc.size(), 0.0);
      for (int m = 0; m < c.M; ++m)
        for (int n = 0; n < c.N; ++n) {
          double a = 0;
          for (int k = 0; k < c.K; ++k)
            a += x2[static_cast<std::size_t>(m) * ldx + k] * W[static_cast<std::size_t>(n) * c.K + k];
          want[static_cast<std::size_t>(m) * c.N + n] = a;
        }
      const auto y = dy.download();
      CHECK(rel_err(strip(to_double(y)), want) < kTol);
      CHECK(gap_poisoned(y));
    }
    dx.upload(hx);
  }
  // Bad shapes are refused naming them.
  dbuf<bf16> b(64);
  CHECK_THROWS_WITH(nh::gemv_bf16(b.get(), 8, b.get(), 8, 8, b.get(), 8, 5, nh::gemv_out::store, st.s),
                    Catch::Contains("M=5"));
  CHECK_THROWS_WITH(nh::gemv_bf16(b.get(), 12, b.get(), 8, 12, b.get(), 8, 1, nh::gemv_out::store, st.s),
                    Catch::Contains("K=12"));
}

TEST_CASE("gemm_engine::linear_relu2 fuses relu squared at decode rows and matches linear then relu2 beyond",
          "[dense][gemm][gemv]") {
  nh::gemm_engine eng;
  stream st;
  for (int M : {1, 4, 6}) {
    const int K = 2688, N = 3712;
    CAPTURE(M);
    std::mt19937 gen(M + 77);
    std::vector<double> x, W;
    const auto hx = rand_bf16(static_cast<std::size_t>(M) * K, gen, 1.0, &x);
    const auto hW = rand_bf16(static_cast<std::size_t>(N) * K, gen, 0.02, &W);
    dbuf<bf16> dx(hx.size()), dW(hW.size()), dy(static_cast<std::size_t>(M) * N);
    dx.upload(hx);
    dW.upload(hW);
    const nh::weight w = nh::weight::bf16_matrix(dW.get(), N, K, "mixer.shared_experts.up_proj.weight");
    eng.prepare(M, K, N);
    dy.poison();
    const captured g(st.s, [&](cudaStream_t s) { eng.linear_relu2(dx.get(), w, dy.get(), M, s); });
    g.replay();
    st.sync();
    std::vector<double> want(static_cast<std::size_t>(M) * N);
    nh::ref::linear(x.data(), W.data(), want.data(), M, K, N);
    for (double& v : want) v = v > 0 ? v * v : 0.0;
    CHECK(rel_err(to_double(dy.download()), want) < kTol);
  }
}

TEST_CASE("FP8: linear() on an fp8_e4m3 weight quantizes x with its input scale and runs linear_fp8, bit for bit, "
          "captured after prepare(weight, M)",
          "[dense][gemm][fp8]") {
  nh::gemm_engine eng;
  stream st;
  const int M = 24, K = 256, N = 136;
  std::mt19937 gen(41);
  std::vector<double> x, W;
  auto hx = rand_bf16(static_cast<std::size_t>(M) * K, gen, 1.0, &x);
  auto hy0 = rand_bf16(static_cast<std::size_t>(M) * N, gen, 0.5, nullptr);
  (void)rand_bf16(static_cast<std::size_t>(N) * K, gen, 0.02, &W);
  const float sw = amax_scale(W), sx = amax_scale(x) * 0.75f;  // some inputs saturate
  std::vector<double> Wd;
  const auto Wq = host_quantize(W, sw, &Wd);
  dbuf<bf16> dx(hx.size()), dy(hy0.size()), dz(hy0.size());
  dbuf<std::uint8_t> dW(Wq.size()), dxq(hx.size());
  dbuf<float> dscales(8);  // the two scales in 16-byte slots, as device_weights stores them
  dx.upload(hx);
  dW.upload(Wq);
  dscales.upload({sw, 0.f, 0.f, 0.f, sx, 0.f, 0.f, 0.f});
  nh::weight w;
  w.data = dW.get();
  w.type = nh::dtype::fp8_e4m3;
  w.rows = N;
  w.cols = K;
  w.scale = dscales.get();
  w.input_scale = dscales.get() + 4;
  w.name = "layers.0.mixer.in_proj.weight";
  REQUIRE(nh::gemm_engine::supports(w));
  // No scratch yet: refused by name before any launch.
  CHECK_THROWS_WITH(eng.linear(dx.get(), w, dy.get(), M, st.s),
                    Catch::Contains("layers.0.mixer.in_proj.weight") && Catch::Contains("reserve_fp8_input"));
  eng.reserve_fp8_input(M, K);
  CHECK(eng.fp8_input_bytes() == static_cast<std::size_t>(M) * K);
  eng.reserve_fp8_input(1, K);  // never shrinks
  CHECK(eng.fp8_input_bytes() == static_cast<std::size_t>(M) * K);
  eng.prepare(w, M);
  // The reference: the two steps by hand.
  nh::quantize_fp8_rows(dx.get(), K, w.input_scale, dxq.get(), K, M, K, st.s);
  eng.linear_fp8(dxq.get(), K, w.input_scale, w, dz.get(), N, M, st.s);
  st.sync();
  const std::vector<bf16> want = dz.download();
  dy.poison();
  {
    const captured g(st.s, [&](cudaStream_t s) { eng.linear(dx.get(), w, dy.get(), M, s); });
    g.replay();
    st.sync();
    const std::vector<bf16> got = dy.download();
    CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(bf16)) == 0);
  }
  // And against float64 of the dequantized operands (x quantized as the kernel does).
  std::vector<double> xd, ref(static_cast<std::size_t>(M) * N);
  (void)host_quantize(x, sx, &xd);
  nh::ref::linear(xd.data(), Wd.data(), ref.data(), M, K, N);
  CHECK(rel_err(to_double(dy.download()), ref) < kTol);
  // accumulate: y0 + x W^T, eager.
  dy.upload(hy0);
  dz.upload(hy0);
  eng.linear(dx.get(), w, dy.get(), M, st.s, /*accumulate=*/true);
  eng.linear_fp8(dxq.get(), K, w.input_scale, w, dz.get(), N, M, st.s, true);
  st.sync();
  const std::vector<bf16> acc_got = dy.download(), acc_want = dz.download();
  CHECK(std::memcmp(acc_got.data(), acc_want.data(), acc_got.size() * sizeof(bf16)) == 0);
  // One row (decode at batch 1, where bf16 weights take the GEMV): still the FP8 GEMM.
  REQUIRE(eng.uses_gemv(1) == (std::getenv("NH_GEMV") == nullptr || std::getenv("NH_GEMV")[0] != '0'));
  eng.linear(dx.get(), w, dy.get(), 1, st.s);
  eng.linear_fp8(dxq.get(), K, w.input_scale, w, dz.get(), N, 1, st.s);
  st.sync();
  const std::vector<bf16> one_got = dy.download(), one_want = dz.download();
  CHECK(std::memcmp(one_got.data(), one_want.data(), static_cast<std::size_t>(N) * sizeof(bf16)) == 0);
  // More rows than the scratch holds, an FP8 weight with K not a multiple of 16, no input scale.
  CHECK_THROWS_WITH(eng.linear(dx.get(), w, dy.get(), M + 1, st.s), Catch::Contains("M=25"));
  nh::weight odd = w;
  odd.cols = 24;
  CHECK_THROWS_WITH(eng.prepare(odd, 4), Catch::Contains("multiple of 16") && Catch::Contains("in_proj"));
  nh::weight no_in = w;
  no_in.input_scale = nullptr;
  CHECK_THROWS_WITH(eng.linear(dx.get(), no_in, dy.get(), M, st.s), Catch::Contains("no input scale"));
}
