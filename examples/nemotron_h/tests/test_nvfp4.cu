// GPU tests of the NVFP4 weight-only kernels (kernels/nvfp4.cuh): the device layout decoded
// exactly for every e2m1 code under every e4m3 block scale; gemv_nvfp4 against float64 of the
// dequantized weight at 1 ... 64 rows, every epilogue, strided, padded rows and a partial last
// group, batch invariant; replayed from a captured graph with new inputs; gemm_engine::linear
// on an NVFP4 weight (the GEMV, and above 64 rows the dequantized bf16 GEMM); the errors. The
// GPU quantizer against the host's is in tests/test_synthetic_nvfp4.cpp (a C++20 host file).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernel_test_util.cuh"
#include "kernels/gemm.cuh"
#include "kernels/nvfp4.cuh"
#include "model/quant_formats.hpp"

using namespace nh_test;
namespace nh = nemotron_h;
namespace q = nemotron_h::quant;

namespace {

/// An NVFP4 weight in the checkpoint layout and its exact values (float64, global included).
struct raw_nvfp4 {
  int rows = 0, cols = 0;
  std::vector<std::uint8_t> packed, scales;
  float global = 1.0f;
  std::vector<double> value;  // [rows, cols]

  std::uint8_t nibble(int r, int k) const {
    const std::uint8_t b = packed[static_cast<std::size_t>(r) * (cols / 2) + k / 2];
    return k % 2 ? b >> 4 : b & 15;
  }
  void finish() {
    value.resize(static_cast<std::size_t>(rows) * cols);
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < cols; ++k)
        value[static_cast<std::size_t>(r) * cols + k] =
            static_cast<double>(q::e2m1_to_float(nibble(r, k))) *
            static_cast<double>(q::e4m3_to_float(scales[static_cast<std::size_t>(r) * (cols / 16) + k / 16])) *
            static_cast<double>(global);
  }
};

/// Random nibbles and random finite non-negative block scales (some zero, some subnormal).
raw_nvfp4 random_raw(int rows, int cols, std::mt19937& gen, float global) {
  raw_nvfp4 w;
  w.rows = rows;
  w.cols = cols;
  w.global = global;
  w.packed.resize(static_cast<std::size_t>(rows) * cols / 2);
  w.scales.resize(static_cast<std::size_t>(rows) * cols / 16);
  std::uniform_int_distribution<int> byte(0, 255), scale(0, 0x7e), normal_scale(0x30, 0x5f);
  for (auto& b : w.packed) b = static_cast<std::uint8_t>(byte(gen));
  for (std::size_t i = 0; i < w.scales.size(); ++i)
    w.scales[i] = static_cast<std::uint8_t>(i % 11 == 3 ? scale(gen) : normal_scale(gen));
  if (!w.scales.empty()) w.scales[w.scales.size() / 2] = 0;  // a zero block
  w.finish();
  return w;
}

/// A device NVFP4 weight: the raw layout uploaded and repacked (rows padded to a multiple of 8,
/// as device_weights does).
struct dev_nvfp4 {
  dbuf<std::uint8_t> packed, scales;
  nh::weight view;
  explicit dev_nvfp4(const raw_nvfp4& w, const char* name = "layers.0.mixer.up_proj.weight") {
    const int out_rows = (w.rows + 7) / 8 * 8;
    const nh::nvfp4_layout L{out_rows, w.cols};
    packed = dbuf<std::uint8_t>(L.packed_bytes());
    scales = dbuf<std::uint8_t>(L.scale_bytes());
    dbuf<std::uint8_t> rp(w.packed.size()), rs(w.scales.size());
    rp.upload(w.packed);
    rs.upload(w.scales);
    packed.poison();
    scales.poison();
    nh::repack_nvfp4(rp.get(), rs.get(), w.rows, w.cols, out_rows, packed.get(), scales.get(), nullptr);
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    view.data = packed.get();
    view.type = nh::dtype::nvfp4;
    view.rows = out_rows;
    view.cols = w.cols;
    view.block_scales = scales.get();
    view.global_scale = w.global;
    view.name = name;
  }
};

double bf16_value(bf16 v) { return static_cast<double>(__bfloat162float(v)); }

/// Checks y (rows of ldy, bf16 or float) against x [M, ldx] W^T in float64, epilogue applied.
void check_gemv(const std::vector<double>& y, int ldy, const std::vector<double>& x, int ldx, const raw_nvfp4& w,
                int M, nh::gemv_out out, const std::vector<double>& y0) {
  int bad = 0;
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < w.rows; ++n) {
      double ref = 0, mag = 0;
      for (int k = 0; k < w.cols; ++k) {
        const double p = x[static_cast<std::size_t>(m) * ldx + k] * w.value[static_cast<std::size_t>(n) * w.cols + k];
        ref += p;
        mag += std::fabs(p);
      }
      // fp32 sums (1e-4 of the magnitudes is far above their error and far below a wrong
      // element's), then one bf16 rounding; relu² squares a sum that may be rounded once first.
      double tol = 1e-4 * mag + 1e-30;
      if (out == nh::gemv_out::accumulate) ref += y0[static_cast<std::size_t>(m) * ldy + n];
      if (out == nh::gemv_out::store_relu2) {
        tol = 2 * std::fabs(ref) * (tol + std::ldexp(std::fabs(ref), -8));
        ref = ref > 0 ? ref * ref : 0;
      }
      if (out != nh::gemv_out::f32) tol += std::ldexp(std::fabs(ref), -8);
      const double got = y[static_cast<std::size_t>(m) * ldy + n];
      if (!(std::fabs(got - ref) <= tol) && ++bad <= 5)
        UNSCOPED_INFO("m " << m << " n " << n << ": " << got << " vs " << ref << " (tol " << tol << ")");
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("NVFP4 device layout: every e2m1 code under every e4m3 block scale decodes exactly (dequantize_nvfp4)",
          "[dense][nvfp4]") {
  // 127 rows (the finite non-negative scales 0x00 ... 0x7e, each row's blocks rotating through
  // them), every block holding the 16 codes in a row-dependent order; cols 80 leaves the last
  // 64-column group partial, and row 127 is the zero padding row.
  for (int cols : {128, 80}) {
    raw_nvfp4 w;
    w.rows = 127;
    w.cols = cols;
    w.global = 0.37f;
    w.packed.resize(static_cast<std::size_t>(w.rows) * cols / 2);
    w.scales.resize(static_cast<std::size_t>(w.rows) * cols / 16);
    for (int r = 0; r < w.rows; ++r) {
      for (int b = 0; b < cols / 16; ++b) w.scales[static_cast<std::size_t>(r) * (cols / 16) + b] = (r + 37 * b) % 127;
      for (int k = 0; k < cols; ++k) {
        const auto nib = static_cast<std::uint8_t>((k * 5 + r) % 16);
        std::uint8_t& byte = w.packed[static_cast<std::size_t>(r) * (cols / 2) + k / 2];
        byte = static_cast<std::uint8_t>(k % 2 ? (byte & 0x0f) | (nib << 4) : (byte & 0xf0) | nib);
      }
    }
    w.finish();
    const dev_nvfp4 d(w);
    dbuf<bf16> out(static_cast<std::size_t>(d.view.rows) * cols);
    out.poison();
    nh::dequantize_nvfp4(d.view, out.get(), nullptr);
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    const std::vector<bf16> h = out.download();
    int bad = 0;
    for (int r = 0; r < d.view.rows; ++r) {
      for (int k = 0; k < cols; ++k) {
        // e2m1 x block scale x 2^-8: the value over the global scale, exact in bf16.
        const double want = r < w.rows ? std::ldexp(w.value[static_cast<std::size_t>(r) * cols + k] / w.global, -8) : 0.0;
        const double got = bf16_value(h[static_cast<std::size_t>(r) * cols + k]);
        if (!(got == want) && ++bad <= 5) UNSCOPED_INFO("cols " << cols << " r " << r << " k " << k << ": " << got << " vs " << want);
      }
    }
    CHECK(bad == 0);
    CHECK(nh::nvfp4_alpha(d.view) == 0.37f * 256.0f);
  }
}

TEST_CASE("gemv_nvfp4 matches float64 of the dequantized weight at 1 to 64 rows: store, accumulate, relu2, fp32, "
          "strided, batch invariant, in a graph",
          "[dense][nvfp4][graph]") {
  std::mt19937 gen(41);
  stream st;
  struct shape {
    int N, K;
  };
  // 264 rows: a half strip at the end (8 padded rows); K 4480: 70 groups over 8 warps; K 80: a
  // partial group; K 10240 with 40 rows: 160 groups a strip.
  for (const shape sh : {shape{264, 4480}, shape{1021, 80}, shape{40, 10240}}) {
    const raw_nvfp4 w = random_raw(sh.N, sh.K, gen, 0.0123f);
    const dev_nvfp4 d(w);
    for (int M : {1, 2, 3, 8, 9, 16, 17, 32, 33, 64}) {
      for (nh::gemv_out out : {nh::gemv_out::store, nh::gemv_out::accumulate, nh::gemv_out::store_relu2, nh::gemv_out::f32}) {
        if (M > 9 && M != 64 && out != nh::gemv_out::store) continue;  // the epilogues at a few row counts
        const int ldx = sh.K + (M == 3 ? 24 : 0), ldy = d.view.rows + (M == 3 ? 8 : 0);
        std::vector<double> xr;
        const std::vector<bf16> hx = rand_bf16(static_cast<std::size_t>(M) * ldx, gen, 1.0, &xr);
        dbuf<bf16> dx(hx.size());
        dx.upload(hx);
        std::vector<double> y0;
        const std::vector<bf16> hy0 = rand_bf16(static_cast<std::size_t>(M) * ldy, gen, 0.5, &y0);
        std::vector<double> got;
        if (out == nh::gemv_out::f32) {
          dbuf<float> dy(static_cast<std::size_t>(M) * ldy);
          dy.poison();
          nh::gemv_nvfp4(dx.get(), ldx, d.view, dy.get(), ldy, M, out, st.s);
          st.sync();
          got = to_double(dy.download());
        } else {
          dbuf<bf16> dy(hy0.size());
          dy.upload(hy0);
          nh::gemv_nvfp4(dx.get(), ldx, d.view, dy.get(), ldy, M, out, st.s);
          st.sync();
          got = to_double(dy.download());
        }
        INFO("N " << sh.N << " K " << sh.K << " M " << M << " out " << static_cast<int>(out));
        check_gemv(got, ldy, xr, ldx, w, M, out, y0);
        if (out == nh::gemv_out::store && M > 1) {
          // Batch invariance: row 0 alone gives the same bits.
          dbuf<bf16> d1(static_cast<std::size_t>(ldy));
          nh::gemv_nvfp4(dx.get(), ldx, d.view, d1.get(), ldy, 1, out, st.s);
          st.sync();
          const std::vector<double> one = to_double(d1.download());
          CHECK(std::equal(one.begin(), one.begin() + sh.N, got.begin()));
        }
      }
    }
  }
  // Every split of a strip's columns over warps (the shape picks one; the others are what other
  // shapes and devices pick), at 1 and 33 rows; a bad split is refused.
  {
    const raw_nvfp4 w = random_raw(136, 4480, gen, 0.5f);
    const dev_nvfp4 d(w);
    for (int split : nh::kNvfp4GemvSplits) {
      for (int M : {1, 33}) {
        std::vector<double> xr;
        dbuf<bf16> dx(static_cast<std::size_t>(M) * w.cols), dy(static_cast<std::size_t>(M) * d.view.rows);
        dx.upload(rand_bf16(dx.size(), gen, 1.0, &xr));
        dy.poison();
        nh::gemv_nvfp4(dx.get(), w.cols, d.view, dy.get(), d.view.rows, M, nh::gemv_out::store, st.s, split);
        st.sync();
        INFO("split " << split << " M " << M);
        check_gemv(to_double(dy.download()), d.view.rows, xr, w.cols, w, M, nh::gemv_out::store, {});
      }
    }
    const int picked = nh::nvfp4_gemv_split(d.view);
    CHECK(std::find(std::begin(nh::kNvfp4GemvSplits), std::end(nh::kNvfp4GemvSplits), picked) !=
          std::end(nh::kNvfp4GemvSplits));
    dbuf<bf16> dx(w.cols), dy(d.view.rows);
    CHECK_THROWS_AS(nh::gemv_nvfp4(dx.get(), w.cols, d.view, dy.get(), d.view.rows, 1, nh::gemv_out::store, st.s, 3),
                    piecewise::config_error);
  }
  // Captured, replayed with new inputs.
  const raw_nvfp4 w = random_raw(264, 4480, gen, 2.5f);
  const dev_nvfp4 d(w);
  const int M = 5;
  dbuf<bf16> dx(static_cast<std::size_t>(M) * w.cols), dy(static_cast<std::size_t>(M) * d.view.rows);
  const captured g(st.s, [&](cudaStream_t s) { nh::gemv_nvfp4(dx.get(), w.cols, d.view, dy.get(), d.view.rows, M, nh::gemv_out::store, s); });
  for (int round = 0; round < 2; ++round) {
    std::vector<double> xr;
    dx.upload(rand_bf16(static_cast<std::size_t>(M) * w.cols, gen, 1.0 + round, &xr));
    dy.poison();
    g.replay();
    check_gemv(to_double(dy.download()), d.view.rows, xr, w.cols, w, M, nh::gemv_out::store, {});
  }
}

TEST_CASE("gemm_engine::linear on an NVFP4 weight: the GEMV up to 64 rows, the dequantized bf16 GEMM above, captured",
          "[dense][nvfp4][gemm][graph]") {
  std::mt19937 gen(43);
  stream st;
  nh::gemm_engine eng;
  const raw_nvfp4 w = random_raw(520, 448, gen, 0.004f);
  const dev_nvfp4 d(w);
  CHECK(nh::gemm_engine::supports(d.view));
  // Without the scratch, rows above the GEMV's are refused naming the tensor.
  {
    dbuf<bf16> dx(static_cast<std::size_t>(100) * w.cols), dy(static_cast<std::size_t>(100) * d.view.rows);
    try {
      eng.linear(dx.get(), d.view, dy.get(), 100, st.s);
      FAIL("no exception without the NVFP4 scratch");
    } catch (const piecewise::config_error& e) {
      CHECK(std::string(e.what()).find("layers.0.mixer.up_proj.weight") != std::string::npos);
      CHECK(std::string(e.what()).find("reserve_nvfp4_scratch") != std::string::npos);
    }
  }
  eng.reserve_nvfp4_scratch(static_cast<std::size_t>(d.view.rows) * w.cols);
  for (int M : {1, 7, 64, 65, 200}) {
    std::vector<double> xr;
    const std::vector<bf16> hx = rand_bf16(static_cast<std::size_t>(M) * w.cols, gen, 1.0, &xr);
    dbuf<bf16> dx(hx.size()), dy(static_cast<std::size_t>(M) * d.view.rows), dz(dy.size());
    dx.upload(hx);
    eng.prepare(d.view, M);
    dy.poison();
    const captured g(st.s, [&](cudaStream_t s) { eng.linear(dx.get(), d.view, dy.get(), M, s); });
    g.replay();
    INFO("M " << M);
    const std::vector<double> got = to_double(dy.download());
    check_gemv(got, d.view.rows, xr, w.cols, w, M, nh::gemv_out::store, {});
    if (M <= nh::kNvfp4GemvMaxRows) {
      nh::gemv_nvfp4(dx.get(), w.cols, d.view, dz.get(), d.view.rows, M, nh::gemv_out::store, st.s);
      st.sync();
      CHECK(to_double(dz.download()) == got);
    }
    // linear_relu2: relu² of the same sums (one rounding on the GEMV, two beyond).
    eng.linear_relu2(dx.get(), d.view, dz.get(), M, st.s);
    st.sync();
    check_gemv(to_double(dz.download()), d.view.rows, xr, w.cols, w, M, nh::gemv_out::store_relu2, {});
  }
}

TEST_CASE("NVFP4 kernels refuse bad shapes and views naming the tensor", "[dense][nvfp4]") {
  std::mt19937 gen(53);
  const raw_nvfp4 w = random_raw(16, 64, gen, 1.0f);
  const dev_nvfp4 d(w, "layers.7.mixer.out_proj.weight");
  dbuf<bf16> dx(64 * 65), dy(16 * 65);
  auto refused = [&](auto&& f, const char* what) {
    try {
      f();
      FAIL("no exception: " << what);
    } catch (const piecewise::config_error& e) {
      CHECK(std::string(e.what()).find(what) != std::string::npos);
    }
  };
  refused([&] { nh::gemv_nvfp4(dx.get(), 64, d.view, dy.get(), 16, 0, nh::gemv_out::store, nullptr); },
          "layers.7.mixer.out_proj.weight");
  refused([&] { nh::gemv_nvfp4(dx.get(), 64, d.view, dy.get(), 16, 65, nh::gemv_out::store, nullptr); }, "M=65");
  refused([&] { nh::gemv_nvfp4(dx.get(), 60, d.view, dy.get(), 16, 1, nh::gemv_out::store, nullptr); }, "ldx=60");
  nh::weight bad = d.view;
  bad.block_scales = nullptr;
  CHECK_FALSE(nh::gemm_engine::supports(bad));
  refused([&] { nh::gemv_nvfp4(dx.get(), 64, bad, dy.get(), 16, 1, nh::gemv_out::store, nullptr); }, "not an NVFP4 weight");
  refused([&] { nh::gemm_engine::require_supported(bad); }, "no block scales");
  bad = d.view;
  bad.cols = 40;
  refused([&] { nh::gemm_engine::require_supported(bad); }, "multiple of 16");
  refused([&] { nh::repack_nvfp4(d.packed.get(), d.scales.get(), 16, 40, 16, d.packed.get(), d.scales.get(), nullptr); },
          "cols=40");
  refused([&] { nh::repack_nvfp4(d.packed.get(), d.scales.get(), 16, 64, 8, d.packed.get(), d.scales.get(), nullptr); },
          "out_rows=8");
}
