// GPU tests of the recurrent one-token SSM update (kernels/mamba_decode.cuh) against the
// float64 reference: batches of slots (fresh and cached), N = 64/128, 9B shapes, and replay
// from a captured graph with new metadata and inputs.
#include <catch2/catch.hpp>

#include "kernels/mamba_decode.cuh"
#include "mamba_ssm_fixture.cuh"

using namespace nh_test;
using nemotron_h::mamba_dims;

namespace {

// fp32 state update, bf16 inputs and bf16 y: only y's rounding and fp32 exp remain.
constexpr double kTolY = 5e-3;
constexpr double kTolState = 1e-4;

void decode(ssm_fixture& f, cudaStream_t s) {
  nemotron_h::mamba_decode(f.xbc.get(), f.dt_ptr(), f.ldz, f.A_log.get(), f.D.get(), f.dt_bias.get(),
                           f.state.get(), f.y.get(), f.batch.view, f.d, f.dt_min, f.dt_max, s);
}

}  // namespace

TEST_CASE("mamba_decode: batch of slots, small shapes", "[mamba][decode]") {
  std::mt19937 rng(301);
  ssm_fixture f(mamba_dims{8, 32, 64, 2, 4}, 10, 8, 8, rng);
  f.make({1, 1, 1, 1, 1}, {4, 0, 1, 7, 2}, {9, 1, 4, 0, 6}, rng);
  decode(f, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("decode batch 5, N=64", kTolY, kTolState);

  ssm_fixture g(mamba_dims{4, 16, 256, 1, 4}, 4, 4, 4, rng);
  g.dt_max = 0.02f;
  g.make({1, 1, 1}, {1, 1, 0}, {3, 1, 2}, rng);
  decode(g, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  g.check("decode batch 3, P=16 N=256, dt_max=0.02", kTolY, kTolState);
}

TEST_CASE("mamba_decode: NemotronH-Nano-9B-v2 shapes", "[mamba][decode][9b]") {
  std::mt19937 rng(302);
  ssm_fixture f(mamba_dims{128, 80, 128, 8, 4}, 12, 8, 8, rng);
  f.make({1, 1, 1, 1, 1, 1, 1, 1}, {3, 1, 0, 9, 2, 5, 1, 1}, {11, 0, 5, 3, 8, 1, 2, 7}, rng);
  decode(f, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("9B decode batch 8", kTolY, kTolState);
}

TEST_CASE("mamba_decode: captured graph replayed with new metadata", "[mamba][decode][graph]") {
  std::mt19937 rng(303);
  ssm_fixture f(mamba_dims{128, 80, 128, 8, 4}, 8, 6, 6, rng);
  f.make({1, 1}, {1, 1}, {0, 1}, rng);
  stream st;
  captured g(st.s, [&](cudaStream_t s) { decode(f, s); });
  g.replay();
  f.check("graph: capture-time batch", kTolY, kTolState);
  f.make({1, 1, 1, 1, 1, 1}, {2, 0, 7, 1, 1, 3}, {7, 2, 4, 6, 0, 5}, rng);
  g.replay();
  f.check("graph: replay with new batch of 6", kTolY, kTolState);
}
