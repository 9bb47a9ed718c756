// GPU tests of the recurrent one-token SSM update (kernels/mamba_decode.cuh) against the
// float64 reference: batches of slots (fresh and cached), N = 64/128, 9B shapes, and replay
// from a captured graph with new metadata and inputs.
#include <catch2/catch.hpp>

#include "kernels/mamba_decode.cuh"
#include "mamba_ssm_fixture.cuh"
#include "slow_producer.cuh"

using namespace nh_test;
using nemotron_h::mamba_dims;

namespace {

// fp32 state update, bf16 inputs and bf16 y: only y's rounding and fp32 exp remain.
constexpr double kTolY = 5e-3;
constexpr double kTolState = 1e-4;

// early: mamba_decode's load_state_early (every test runs both load orders).
void decode(ssm_fixture& f, cudaStream_t s, bool early) {
  nemotron_h::mamba_decode(f.xbc.get(), f.dt_ptr(), f.ldz, f.A_log.get(), f.D.get(), f.dt_bias.get(),
                           f.state.get(), f.y.get(), f.batch.view, f.d, f.dt_min, f.dt_max, s, early);
}

}  // namespace

TEST_CASE("mamba_decode: batch of slots, small shapes", "[mamba][decode]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(301);
  ssm_fixture f(mamba_dims{8, 32, 64, 2, 4}, 10, 8, 8, rng);
  f.make({1, 1, 1, 1, 1}, {4, 0, 1, 7, 2}, {9, 1, 4, 0, 6}, rng);
  decode(f, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("decode batch 5, N=64", kTolY, kTolState);

  ssm_fixture g(mamba_dims{4, 16, 256, 1, 4}, 4, 4, 4, rng);
  g.dt_max = 0.02f;
  g.make({1, 1, 1}, {1, 1, 0}, {3, 1, 2}, rng);
  decode(g, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  g.check("decode batch 3, P=16 N=256, dt_max=0.02", kTolY, kTolState);
}

TEST_CASE("mamba_decode: NemotronH-Nano-9B-v2 shapes", "[mamba][decode][9b]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(302);
  ssm_fixture f(mamba_dims{128, 80, 128, 8, 4}, 12, 8, 8, rng);
  f.make({1, 1, 1, 1, 1, 1, 1, 1}, {3, 1, 0, 9, 2, 5, 1, 1}, {11, 0, 5, 3, 8, 1, 2, 7}, rng);
  decode(f, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("9B decode batch 8", kTolY, kTolState);
}

TEST_CASE("mamba_decode: Nemotron-H 47B/56B shapes (N = 256), batch 8 and batch 1", "[mamba][decode][n256]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(305);
  ssm_fixture f(mamba_dims{256, 64, 256, 8, 4}, 10, 8, 8, rng);
  f.make({1, 1, 1, 1, 1, 1, 1, 1}, {3, 1, 0, 9, 2, 5, 1, 1}, {9, 0, 5, 3, 8, 1, 2, 7}, rng);
  decode(f, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("47B decode batch 8", kTolY, kTolState);
  ssm_fixture g(mamba_dims{256, 64, 256, 8, 4}, 2, 1, 1, rng);
  g.make({1}, {6}, {1}, rng);
  decode(g, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  g.check("47B decode batch 1 (split heads)", kTolY, kTolState);
}

TEST_CASE("mamba_decode: captured graph replayed with new metadata", "[mamba][decode][graph]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(303);
  for (const mamba_dims& d : {mamba_dims{128, 80, 128, 8, 4}, mamba_dims{256, 64, 256, 8, 4}}) {
  CAPTURE(d.N);
  ssm_fixture f(d, 8, 6, 6, rng);
  f.make({1, 1}, {1, 1}, {0, 1}, rng);
  stream st;
  captured g(st.s, [&](cudaStream_t s) { decode(f, s, early); });
  g.replay();
  f.check("graph: capture-time batch", kTolY, kTolState);
  f.make({1, 1, 1, 1, 1, 1}, {2, 0, 7, 1, 1, 3}, {7, 2, 4, 6, 0, 5}, rng);
  g.replay();
  f.check("graph: replay with new batch of 6", kTolY, kTolState);
  }
}

TEST_CASE("mamba_decode: batch of one (split heads), fresh and cached, odd P", "[mamba][decode][split]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(304);
  // 9B at batch 1: each head's 80 state rows are split over several blocks.
  ssm_fixture f(mamba_dims{128, 80, 128, 8, 4}, 3, 1, 1, rng);
  for (int ctx : {0, 6}) {
    f.make({1}, {ctx}, {2}, rng);
    decode(f, nullptr, early);
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    f.check(ctx == 0 ? "9B decode batch 1, fresh" : "9B decode batch 1, cached", kTolY, kTolState);
  }
  // P = 24 (not a multiple of the 16 rows a block takes at a time), N = 64, batch 2.
  ssm_fixture g(mamba_dims{6, 24, 64, 3, 4}, 4, 2, 2, rng);
  g.make({1, 1}, {3, 0}, {3, 1}, rng);
  decode(g, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  g.check("decode batch 2, P=24 N=64", kTolY, kTolState);
  // Two tokens of one sequence through the split kernel (token-by-token recurrence).
  ssm_fixture m(mamba_dims{16, 80, 128, 2, 4}, 2, 2, 1, rng);
  m.make({2}, {1}, {1}, rng);
  decode(m, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  m.check("decode 2 tokens of one sequence, P=80", kTolY, kTolState);
}

TEST_CASE("mamba_decode: results do not depend on the head split (bit for bit)", "[mamba][decode][split]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  // The same sequences launched with max_seqs 1 (many blocks per head) and 64 (one block per
  // head): y and the state must be identical bits.
  std::mt19937 rng(305);
  ssm_fixture f(mamba_dims{128, 80, 128, 8, 4}, 2, 64, 64, rng);
  f.make({1}, {4}, {1}, rng);
  const auto state0 = f.state.download();
  nemotron_h::batch_view one = f.batch.view;
  one.max_seqs = 1;
  one.padded_tokens = 1;
  std::vector<std::vector<bf16>> ys;
  std::vector<std::vector<float>> states;
  for (const nemotron_h::batch_view* v : {&one, &f.batch.view}) {
    f.state.upload(state0);
    f.y.poison();
    nemotron_h::mamba_decode(f.xbc.get(), f.dt_ptr(), f.ldz, f.A_log.get(), f.D.get(), f.dt_bias.get(),
                             f.state.get(), f.y.get(), *v, f.d, f.dt_min, f.dt_max, nullptr, early);
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    auto y = f.y.download();
    y.resize(static_cast<std::size_t>(f.d.d_inner()));
    ys.push_back(y);
    states.push_back(f.state.download());
  }
  f.check("9B batch 1 launched with max_seqs 64", kTolY, kTolState);
  CHECK(std::memcmp(ys[0].data(), ys[1].data(), ys[0].size() * sizeof(bf16)) == 0);
  CHECK(std::memcmp(states[0].data(), states[1].data(), states[0].size() * sizeof(float)) == 0);
}

TEST_CASE("mamba_decode: load_state_early waits for xbc and dt from a kernel still running", "[mamba][decode][pdl]") {
  // The producer just before lets mamba_decode start at once and writes xbc and dt 20 us
  // later: the state, metadata and parameters may be loaded early, the inputs must not.
  std::mt19937 rng(306);
  ssm_fixture f(mamba_dims{128, 80, 128, 8, 4}, 4, 2, 2, rng);
  for (int graph : {0, 1}) {
    CAPTURE(graph);
    f.make({1, 1}, {3, 0}, {2, 0}, rng);
    dbuf<bf16> xs(f.xbc.size()), zs(f.zx.size());
    PIECEWISE_CUDA_TRY(cudaMemcpy(xs.get(), f.xbc.get(), f.xbc.size() * sizeof(bf16), cudaMemcpyDeviceToDevice));
    PIECEWISE_CUDA_TRY(cudaMemcpy(zs.get(), f.zx.get(), f.zx.size() * sizeof(bf16), cudaMemcpyDeviceToDevice));
    f.xbc.poison();
    f.zx.poison();
    const auto step = [&](cudaStream_t s) {
      slow_copy({xs.get(), f.xbc.get(), xs.size() * sizeof(bf16)}, {zs.get(), f.zx.get(), zs.size() * sizeof(bf16)},
                20000, s);
      decode(f, s, /*early=*/true);
    };
    run_once(graph != 0, step);
    f.check(graph != 0 ? "early loads, slow producer, graph" : "early loads, slow producer, stream", kTolY, kTolState);
  }
}
