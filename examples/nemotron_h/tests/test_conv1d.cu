// GPU tests of the causal conv1d + SiLU kernels (kernels/conv1d.cuh) against the float64
// reference: packed prefill with per-slot initial states, decode, state write-back, small
// and NemotronH-Nano-9B-v2 shapes, eager and replayed from a captured CUDA graph with new
// metadata and inputs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>

#include "kernels/conv1d.cuh"
#include "kernel_test_util.cuh"
#include "reference/reference.hpp"
#include "slow_producer.cuh"

using namespace nh_test;
using nemotron_h::bf16;

namespace {

// Output is bf16-rounded silu(.) of fp32 sums of bf16 products: ~2^-9 relative.
constexpr double kConvOutTol = 5e-3;

struct conv_fixture {
  int C, ld, xoff, K = 4, num_slots, padded, max_seqs;
  dbuf<bf16> zx, w, bias, state, out;
  batch_buffers batch;
  std::vector<double> w_d, b_d, zx_d, state0_d;
  std::vector<int> lens, ctx, slots;

  conv_fixture(int C_, int ld_, int xoff_, int num_slots_, int padded_, int max_seqs_, std::mt19937& rng)
      : C(C_), ld(ld_), xoff(xoff_), num_slots(num_slots_), padded(padded_), max_seqs(max_seqs_),
        zx(static_cast<std::size_t>(padded_) * ld_), w(static_cast<std::size_t>(C_) * 4), bias(C_),
        state(static_cast<std::size_t>(num_slots_) * 3 * C_), out(static_cast<std::size_t>(padded_) * C_),
        batch(max_seqs_, padded_, padded_) {
    w.upload(rand_bf16(w.size(), rng, 0.5, &w_d));
    bias.upload(rand_bf16(bias.size(), rng, 0.2, &b_d));
  }

  // New inputs, states and metadata written into the same device buffers.
  void make(std::vector<int> l, std::vector<int> c, std::vector<int> s, std::mt19937& rng) {
    lens = std::move(l);
    ctx = std::move(c);
    slots = std::move(s);
    zx.upload(rand_bf16(zx.size(), rng, 1.0, &zx_d));
    state.upload(rand_bf16(state.size(), rng, 1.0, &state0_d));
    batch.update(lens, ctx, slots);
    out.poison();
  }

  void check(const char* what) const {
    const auto got_out = to_double(out.download());
    const auto got_state = to_double(state.download());
    std::vector<double> expect_state = state0_d;
    std::vector<double> a, b;
    int start = 0;
    const std::size_t slot_elems = static_cast<std::size_t>(K - 1) * C;
    for (std::size_t i = 0; i < lens.size(); ++i) {
      const int T = lens[i];
      std::vector<double> x(static_cast<std::size_t>(T) * C), o(x.size()), st(slot_elems);
      for (int t = 0; t < T; ++t)
        for (int c = 0; c < C; ++c) x[static_cast<std::size_t>(t) * C + c] = zx_d[static_cast<std::size_t>(start + t) * ld + xoff + c];
      const double* st_in = ctx[i] > 0 ? state0_d.data() + slots[i] * slot_elems : nullptr;
      nemotron_h::ref::conv1d_silu(x.data(), w_d.data(), b_d.data(), st_in, o.data(), st.data(), T, C, K);
      std::copy(st.begin(), st.end(), expect_state.begin() + slots[i] * slot_elems);
      for (std::size_t e = 0; e < o.size(); ++e) {
        a.push_back(got_out[static_cast<std::size_t>(start) * C + e]);
        b.push_back(o[e]);
      }
      start += T;
    }
    const double err = rel_err(a, b);
    double state_diff = 0;
    for (std::size_t e = 0; e < got_state.size(); ++e)
      state_diff = std::max(state_diff, std::abs(got_state[e] - expect_state[e]));
    std::printf("[conv1d] %-40s C=%5d tokens=%5d out rel err %.3e, state max abs diff %.1e\n", what, C,
                start, err, state_diff);
    CHECK(err < kConvOutTol);
    CHECK(state_diff == 0.0);  // the state is a bf16 copy of bf16 inputs: exact
  }
};

void prefill(conv_fixture& f, cudaStream_t s) {
  nemotron_h::conv1d_prefill(f.zx.get() + f.xoff, f.ld, f.w.get(), f.bias.get(), f.state.get(),
                             f.out.get(), f.batch.view, f.C, f.K, s);
}
// early: conv1d_decode's load_state_early (every decode test runs both load orders).
void decode(conv_fixture& f, cudaStream_t s, bool early) {
  nemotron_h::conv1d_decode(f.zx.get() + f.xoff, f.ld, f.w.get(), f.bias.get(), f.state.get(),
                            f.out.get(), f.batch.view, f.C, f.K, s, early);
}

}  // namespace

TEST_CASE("conv1d prefill: packed sequences, initial states, small shape", "[mamba][conv1d]") {
  std::mt19937 rng(101);
  // H=8, P=32, G=2, N=64: conv_dim 512, in_proj width 776, xBC at column 256.
  conv_fixture f(512, 776, 256, 8, 420, 8, rng);
  f.make({1, 5, 130, 2, 64, 3, 200}, {0, 7, 3, 0, 1, 2, 0}, {3, 0, 5, 1, 2, 7, 6}, rng);
  prefill(f, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("prefill pack of 7");
  f.make({1}, {4}, {2}, rng);
  prefill(f, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("prefill single token with state");
}

TEST_CASE("conv1d decode: one token per slot, small shape", "[mamba][conv1d]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(102);
  conv_fixture f(512, 776, 256, 16, 16, 16, rng);
  f.make({1, 1, 1, 1, 1, 1}, {5, 1, 0, 9, 2, 3}, {9, 4, 0, 15, 2, 7}, rng);
  decode(f, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("decode batch 6");
  // Multi-token sequences through the decode kernel (sequential path).
  f.make({3, 1, 4}, {1, 0, 2}, {1, 2, 3}, rng);
  decode(f, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("decode kernel with 3/1/4 tokens");
}

TEST_CASE("conv1d: NemotronH-Nano-9B-v2 shapes", "[mamba][conv1d][9b]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(103);
  // conv_dim = 128*80 + 2*8*128 = 12288; in_proj width 22656; xBC at column 10240.
  conv_fixture f(12288, 22656, 10240, 12, 600, 6, rng);
  f.make({1, 127, 128, 129, 200}, {3, 0, 5, 9, 0}, {11, 0, 4, 7, 3}, rng);
  prefill(f, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("9B prefill pack of 5");
  f.make({1, 1, 1, 1}, {1, 2, 0, 100}, {1, 2, 3, 4}, rng);
  decode(f, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("9B decode batch 4");
}

TEST_CASE("conv1d: Nemotron-H 47B/56B shapes (N = 256), eager and replayed", "[mamba][conv1d][n256]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  // conv1d sees N only through conv_dim = 256*64 + 2*8*256 = 20480; in_proj width
  // 16384 + 20480 + 256 = 37120; xBC at column 16384.
  std::mt19937 rng(107);
  conv_fixture f(20480, 37120, 16384, 6, 400, 4, rng);
  f.make({1, 129, 200}, {3, 0, 5}, {5, 0, 2}, rng);
  prefill(f, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("47B prefill pack of 3");
  stream st;
  captured g(st.s, [&](cudaStream_t s) { prefill(f, s); });
  f.make({64, 1, 250}, {0, 7, 1}, {1, 4, 3}, rng);
  g.replay();
  f.check("47B prefill, graph replay with a new batch");
  conv_fixture d(20480, 37120, 16384, 6, 4, 4, rng);
  d.make({1, 1}, {1, 1}, {0, 1}, rng);
  captured gd(st.s, [&](cudaStream_t s) { decode(d, s, early); });
  d.make({1, 1, 1, 1}, {2, 0, 9, 1}, {5, 3, 0, 2}, rng);
  gd.replay();
  d.check("47B decode batch 4, graph replay");
}

TEST_CASE("conv1d: captured graphs replayed with new metadata", "[mamba][conv1d][graph]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(104);
  conv_fixture f(512, 776, 256, 8, 300, 6, rng);
  f.make({10, 20}, {0, 1}, {0, 1}, rng);
  stream st;
  captured g(st.s, [&](cudaStream_t s) { prefill(f, s); });
  g.replay();
  f.check("graph prefill, capture-time batch");
  f.make({1, 140, 3, 129, 9}, {2, 0, 1, 5, 0}, {5, 2, 7, 0, 3}, rng);
  g.replay();
  f.check("graph prefill, new batch replay");

  conv_fixture d(512, 776, 256, 16, 8, 8, rng);
  d.make({1, 1}, {1, 1}, {0, 1}, rng);
  captured gd(st.s, [&](cudaStream_t s) { decode(d, s, early); });
  d.make({1, 1, 1, 1, 1, 1, 1, 1}, {3, 1, 0, 2, 8, 1, 1, 4}, {15, 3, 8, 1, 0, 9, 10, 2}, rng);
  gd.replay();
  f.check("graph prefill (unchanged)");
  d.check("graph decode, new batch replay");
}

TEST_CASE("conv1d: short prompts and batch-1 decode at 9B shapes", "[mamba][conv1d][9b][short]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(105);
  // 16-token prompt, fresh and with a cached state: the short-batch tiling (4 tokens a
  // thread, narrow blocks); sequences starting on tile edges read their state rows there.
  conv_fixture f(12288, 22656, 10240, 6, 48, 4, rng);
  f.make({16}, {0}, {2}, rng);
  prefill(f, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("9B prefill 16 tokens, fresh");
  f.make({16}, {5}, {2}, rng);
  prefill(f, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("9B prefill 16 tokens, cached");
  f.make({4, 8, 2, 3}, {3, 1, 2, 0}, {5, 1, 0, 4}, rng);
  prefill(f, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  f.check("9B prefill pack 4/8/2/3 with states");
  conv_fixture d(12288, 22656, 10240, 4, 1, 1, rng);
  for (int ctx : {0, 3}) {
    d.make({1}, {ctx}, {3}, rng);
    decode(d, nullptr, early);
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    d.check(ctx == 0 ? "9B decode batch 1, fresh" : "9B decode batch 1, cached");
  }
}

TEST_CASE("conv1d: output bits do not depend on the tiling, unaligned weights", "[mamba][conv1d][tiling]") {
  const bool early = GENERATE(false, true);  // the load_state_early argument
  CAPTURE(early);
  std::mt19937 rng(106);
  // The same 40-token pack through the short tiling (padded_tokens 40) and the long one
  // (padded_tokens 2048 makes the grid large enough): identical bits.
  conv_fixture f(12288, 22656, 10240, 4, 2048, 3, rng);
  f.make({17, 3, 20}, {2, 0, 9}, {1, 3, 0}, rng);
  const auto state0 = f.state.download();
  std::vector<std::vector<bf16>> outs, states;
  for (int padded : {40, 2048}) {
    nemotron_h::batch_view v = f.batch.view;
    v.padded_tokens = padded;
    f.state.upload(state0);
    f.out.poison();
    nemotron_h::conv1d_prefill(f.zx.get() + f.xoff, f.ld, f.w.get(), f.bias.get(), f.state.get(), f.out.get(), v,
                               f.C, f.K, nullptr);
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    auto o = f.out.download();
    o.resize(static_cast<std::size_t>(40) * f.C);
    outs.push_back(o);
    states.push_back(f.state.download());
  }
  f.check("9B pack 17/3/20, long tiling");
  CHECK(std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(bf16)) == 0);
  CHECK(std::memcmp(states[0].data(), states[1].data(), states[0].size() * sizeof(bf16)) == 0);

  // Weights and bias 2 bytes off 16-byte alignment: the element-wise weight loads.
  conv_fixture g(512, 776, 256, 8, 64, 4, rng);
  dbuf<bf16> w1(g.w.size() + 1), b1(g.bias.size() + 1);
  PIECEWISE_CUDA_TRY(cudaMemcpy(w1.get() + 1, g.w.get(), g.w.size() * sizeof(bf16), cudaMemcpyDeviceToDevice));
  PIECEWISE_CUDA_TRY(cudaMemcpy(b1.get() + 1, g.bias.get(), g.bias.size() * sizeof(bf16), cudaMemcpyDeviceToDevice));
  g.make({9, 1, 30}, {1, 0, 4}, {2, 5, 7}, rng);
  nemotron_h::conv1d_prefill(g.zx.get() + g.xoff, g.ld, w1.get() + 1, b1.get() + 1, g.state.get(), g.out.get(),
                             g.batch.view, g.C, g.K, nullptr);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  g.check("prefill, unaligned weights");
  g.make({1, 1, 1}, {1, 0, 4}, {2, 5, 7}, rng);
  nemotron_h::conv1d_decode(g.zx.get() + g.xoff, g.ld, w1.get() + 1, b1.get() + 1, g.state.get(), g.out.get(),
                            g.batch.view, g.C, g.K, nullptr, early);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  g.check("decode, unaligned weights");
}

TEST_CASE("conv1d decode: load_state_early waits for xbc from a kernel still running", "[mamba][conv1d][pdl]") {
  // The producer just before lets conv1d_decode start at once and writes its input 20 us later:
  // the weights, metadata and conv state may be loaded early, the input must not.
  std::mt19937 rng(107);
  conv_fixture f(12288, 22656, 10240, 6, 4, 4, rng);
  for (int graph : {0, 1}) {
    CAPTURE(graph);
    f.make({1, 1, 1}, {2, 0, 5}, {4, 1, 0}, rng);
    dbuf<bf16> staged(f.zx.size());
    PIECEWISE_CUDA_TRY(cudaMemcpy(staged.get(), f.zx.get(), f.zx.size() * sizeof(bf16), cudaMemcpyDeviceToDevice));
    f.zx.poison();
    const auto step = [&](cudaStream_t s) {
      slow_copy({staged.get(), f.zx.get(), staged.size() * sizeof(bf16)}, {}, 20000, s);
      decode(f, s, /*early=*/true);
    };
    run_once(graph != 0, step);
    f.check(graph != 0 ? "early loads, slow producer, graph" : "early loads, slow producer, stream");
  }
}
