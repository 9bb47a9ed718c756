// GPU tests of the SSD chunked scan (kernels/ssd_scan.cuh) against the float64 sequential
// reference: sequence lengths around the chunk size, several chunks, packs of different
// lengths, non-zero initial states, final states, small, 9B and N = 256 (47B) shapes, equality with the
// token-by-token decode update, and replay from a captured graph with new metadata.
#include <catch2/catch.hpp>

#include "kernels/mamba_decode.cuh"
#include "kernels/ssd_scan.cuh"
#include "mamba_ssm_fixture.cuh"

using namespace nh_test;
using nemotron_h::mamba_dims;

namespace {

// bf16 inputs, bf16 tensor-core operands (x*dt*decay, C*exp(Acs), the chunk states),
// fp32 accumulation, bf16 y: errors of a few 1e-3 are expected.
constexpr double kTolY = 1e-2;
constexpr double kTolState = 1e-2;

struct scan_runner {
  ssm_fixture& f;
  dbuf<char> ws;
  explicit scan_runner(ssm_fixture& fx)
      : f(fx), ws(nemotron_h::ssd_scan_workspace_bytes(fx.padded, fx.max_seqs, fx.d)) {}
  void operator()(cudaStream_t s) {
    nemotron_h::ssd_scan(f.xbc.get(), f.dt_ptr(), f.ldz, f.A_log.get(), f.D.get(), f.dt_bias.get(),
                         f.state.get(), f.y.get(), ws.get(), ws.size(), f.batch.view, f.d, f.dt_min,
                         f.dt_max, s);
  }
};

const mamba_dims kSmall{8, 32, 64, 2, 4};
const mamba_dims kSmall64{4, 64, 32, 2, 4};
const mamba_dims k9B{128, 80, 128, 8, 4};
// N > 128: the output kernel keeps C in shared memory (P = 80 with 2 head stages).
const mamba_dims kN256{16, 64, 256, 2, 4};
const mamba_dims kN256P80{8, 80, 256, 2, 4};
const mamba_dims kN256P32{8, 32, 256, 1, 4};
const mamba_dims kN192{8, 64, 192, 2, 4};
const mamba_dims k47B{256, 64, 256, 8, 4};  // Nemotron-H 47B / 56B

}  // namespace

TEST_CASE("ssd_scan: single sequences around the chunk size", "[mamba][ssd]") {
  std::mt19937 rng(201);
  ssm_fixture f(kSmall, 4, 3 * 128 + 5, 1, rng);
  scan_runner run(f);
  for (int T : {1, 127, 128, 129, 3 * 128 + 5}) {
    for (int ctx : {0, 17}) {
      f.make({T}, {ctx}, {2}, rng);
      run(nullptr);
      PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
      char name[64];
      std::snprintf(name, sizeof name, "T=%d ctx=%d", T, ctx);
      f.check(name, kTolY, kTolState);
    }
  }
}

TEST_CASE("ssd_scan: packs of different lengths, P=64/N=32 and finite dt_max", "[mamba][ssd]") {
  std::mt19937 rng(202);
  ssm_fixture f(kSmall, 8, 900, 8, rng);
  scan_runner run(f);
  f.make({1, 200, 128, 3, 129, 300, 127}, {5, 0, 1, 2, 0, 9, 3}, {7, 0, 3, 1, 5, 2, 6}, rng);
  run(nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("pack of 7 (small)", kTolY, kTolState);

  ssm_fixture g(kSmall64, 6, 600, 4, rng);
  g.dt_max = 0.05f;
  scan_runner run2(g);
  g.make({260, 1, 130}, {1, 1, 0}, {4, 0, 5}, rng);
  run2(nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  g.check("pack of 3, P=64 N=32, dt_max=0.05", kTolY, kTolState);
}

TEST_CASE("ssd_scan: NemotronH-Nano-9B-v2 shapes", "[mamba][ssd][9b]") {
  std::mt19937 rng(203);
  ssm_fixture f(k9B, 4, 3 * 128 + 5 + 131, 4, rng);
  scan_runner run(f);
  f.make({3 * 128 + 5}, {4}, {1}, rng);
  run(nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("9B T=3L+5 with state", kTolY, kTolState);
  f.make({1, 129, 128, 127}, {0, 3, 0, 8}, {3, 0, 2, 1}, rng);
  run(nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("9B pack 1/129/128/127", kTolY, kTolState);
}

TEST_CASE("ssd_scan: state size N = 256 (and 192), several chunks and sequences, states from context",
          "[mamba][ssd][n256]") {
  std::mt19937 rng(207);
  for (const mamba_dims& d : {kN256, kN256P80, kN256P32, kN192}) {
    CAPTURE(d.H, d.P, d.N, d.G);
    ssm_fixture f(d, 6, 800, 5, rng);
    scan_runner run(f);
    f.make({300, 1, 129, 200, 128}, {0, 5, 17, 0, 3}, {3, 0, 5, 1, 2}, rng);
    run(nullptr);
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    char name[96];
    std::snprintf(name, sizeof name, "pack of 5, H=%d P=%d N=%d G=%d", d.H, d.P, d.N, d.G);
    f.check(name, kTolY, kTolState);
    f.make({3 * 128 + 5}, {9}, {4}, rng);
    run(nullptr);
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    std::snprintf(name, sizeof name, "T=3L+5 with state, H=%d P=%d N=%d", d.H, d.P, d.N);
    f.check(name, kTolY, kTolState);
  }
}

TEST_CASE("ssd_scan: Nemotron-H 47B/56B shapes (H=256, P=64, N=256, G=8)", "[mamba][ssd][n256][47b]") {
  std::mt19937 rng(208);
  ssm_fixture f(k47B, 3, 260 + 131 + 1, 3, rng);
  scan_runner run(f);
  f.make({260, 131, 1}, {4, 0, 2}, {1, 2, 0}, rng);
  run(nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("47B pack 260/131/1", kTolY, kTolState);
}

TEST_CASE("ssd_scan equals the decode update token by token", "[mamba][ssd][decode]") {
  std::mt19937 rng(204);
  for (const mamba_dims& d : {kSmall, k9B, kN256}) {
    const std::vector<int> lens = {1, 130, 7};
    const std::vector<int> ctx = {2, 1, 0}, slots = {2, 0, 1};
    ssm_fixture f(d, 3, 140, 3, rng);
    scan_runner run(f);
    f.make(lens, ctx, slots, rng);
    const auto state0 = f.state.download();
    run(nullptr);
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    f.check("scan (for decode comparison)", kTolY, kTolState);
    const auto y_scan = to_double(f.y.download());
    const auto st_scan = to_double(f.state.download());

    // Token by token: step k feeds token k of every sequence still running.
    f.state.upload(state0);
    const int conv_dim = d.conv_dim(), ldz = d.in_proj_dim();
    const auto xbc_all = f.xbc.download();
    const auto zx_all = f.zx.download();
    dbuf<bf16> xs(3 * static_cast<std::size_t>(conv_dim)), zs(3 * static_cast<std::size_t>(ldz)),
        ys(3 * static_cast<std::size_t>(d.d_inner()));
    batch_buffers step(3, 3, 3);
    std::vector<double> y_dec(y_scan.size());
    const int max_len = 130;
    std::vector<int> starts = {0, 1, 131};
    for (int k = 0; k < max_len; ++k) {
      std::vector<int> l, c, s, src;
      for (int i = 0; i < 3; ++i)
        if (k < lens[i]) {
          l.push_back(1);
          c.push_back(ctx[i] + k);
          s.push_back(slots[i]);
          src.push_back(starts[i] + k);
        }
      std::vector<bf16> xh(xs.size()), zh(zs.size());
      for (std::size_t j = 0; j < src.size(); ++j) {
        std::copy_n(xbc_all.begin() + static_cast<std::size_t>(src[j]) * conv_dim, conv_dim, xh.begin() + j * conv_dim);
        std::copy_n(zx_all.begin() + static_cast<std::size_t>(src[j]) * ldz, ldz, zh.begin() + j * ldz);
      }
      xs.upload(xh);
      zs.upload(zh);
      step.update(l, c, s);
      ys.poison();
      nemotron_h::mamba_decode(xs.get(), zs.get() + d.dt_offset(), ldz, f.A_log.get(), f.D.get(),
                               f.dt_bias.get(), f.state.get(), ys.get(), step.view, d, f.dt_min, f.dt_max,
                               nullptr);
      const auto yh = to_double(ys.download());
      for (std::size_t j = 0; j < src.size(); ++j)
        std::copy_n(yh.begin() + j * d.d_inner(), d.d_inner(), y_dec.begin() + static_cast<std::size_t>(src[j]) * d.d_inner());
    }
    const std::size_t ny = static_cast<std::size_t>(138) * d.d_inner();
    const std::vector<double> a(y_scan.begin(), y_scan.begin() + ny), b(y_dec.begin(), y_dec.begin() + ny);
    const auto st_dec = to_double(f.state.download());
    const double ey = rel_err(a, b), es = rel_err(st_scan, st_dec);
    std::printf("[ssm] scan vs token-by-token decode H=%d: y %.2e state %.2e\n", d.H, ey, es);
    CHECK(ey < kTolY);
    CHECK(es < kTolState);
    f.check("decode token by token vs reference (state)", 1e300, kTolState);
  }
}

TEST_CASE("ssd_scan: captured graph replayed with new metadata", "[mamba][ssd][graph]") {
  std::mt19937 rng(205);
  for (const mamba_dims& d : {kSmall, k9B, kN256, kN256P80}) {
    ssm_fixture f(d, 6, 520, 5, rng);
    scan_runner run(f);
    f.make({40, 3}, {0, 2}, {0, 1}, rng);
    stream st;
    captured g(st.s, [&](cudaStream_t s) { run(s); });
    g.replay();
    f.check("graph: capture-time batch", kTolY, kTolState);
    f.make({133, 1, 129, 250}, {3, 0, 1, 0}, {5, 2, 3, 0}, rng);
    g.replay();
    f.check("graph: replay with new batch", kTolY, kTolState);
  }
}

TEST_CASE("ssd_scan: short prompts at 9B shapes, output bits do not depend on the head split",
          "[mamba][ssd][9b][short]") {
  // padded_tokens 16 (one chunk: one head per output block), 1024 (a few heads per block)
  // and 2048 (all 16 heads of a group in one block) run the same 16-token and 3-sequence
  // batches: each matches the reference and all give the same bits.
  std::mt19937 rng(206);
  ssm_fixture f(k9B, 3, 2048, 3, rng);
  scan_runner run(f);
  for (const auto& lens : {std::vector<int>{16}, std::vector<int>{5, 16, 9}}) {
    const std::vector<int> ctx = lens.size() == 1 ? std::vector<int>{3} : std::vector<int>{0, 2, 1};
    const std::vector<int> slots = lens.size() == 1 ? std::vector<int>{1} : std::vector<int>{2, 0, 1};
    f.make(lens, ctx, slots, rng);
    const auto state0 = f.state.download();
    int total = 0;
    for (int l : lens) total += l;
    std::vector<std::vector<bf16>> ys;
    std::vector<std::vector<float>> states;
    for (int padded : {total, 1024, 2048}) {
      CAPTURE(padded);
      nemotron_h::batch_view v = f.batch.view;
      v.padded_tokens = padded;
      v.max_seqlen = padded;
      f.state.upload(state0);
      f.y.poison();
      nemotron_h::ssd_scan(f.xbc.get(), f.dt_ptr(), f.ldz, f.A_log.get(), f.D.get(), f.dt_bias.get(), f.state.get(),
                           f.y.get(), run.ws.get(), run.ws.size(), v, f.d, f.dt_min, f.dt_max, nullptr);
      PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
      f.check(lens.size() == 1 ? "9B 16 tokens with state" : "9B pack 5/16/9", kTolY, kTolState);
      auto y = f.y.download();
      y.resize(static_cast<std::size_t>(total) * f.d.d_inner());
      ys.push_back(y);
      states.push_back(f.state.download());
    }
    for (std::size_t i = 1; i < ys.size(); ++i) {
      CHECK(std::memcmp(ys[0].data(), ys[i].data(), ys[0].size() * sizeof(bf16)) == 0);
      CHECK(std::memcmp(states[0].data(), states[i].data(), states[0].size() * sizeof(float)) == 0);
    }
  }
}
