// Benchmarks of the Mamba2 kernels at NemotronH-Nano-9B-v2 shapes (H=128, P=80, N=128,
// G=8, conv_dim=12288, in_proj width 22656, D=4480), Google Benchmark with manual time from
// cudaEvents. Run in registration order:
//   copy      a 1 GiB device-to-device cudaMemcpy (measured in main, before the benchmarks)
//   gemm      in_proj [4096 x 4480] x [22656 x 4480]^T and out_proj [4096 x 10240] x
//             [4480 x 10240]^T through nemotron_h::gemm_engine (the SSD target's yardstick)
//   decode    the recurrent SSM update for batch 64: bytes = fp32 state read + written
//             (+ inputs/outputs), as GB/s and as a fraction of the copy bandwidth
//   conv      conv1d prefill over 4096 tokens
//   ssd_scan  the chunked scan at 4096 tokens (1 x 4096 and 8 x 512), with its time as a
//             fraction of the in_proj + out_proj GEMM time
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "bench/hash_fill.cuh"
#include "bench/event_timer.cuh"
#include "kernels/conv1d.cuh"
#include "kernels/mamba_decode.cuh"
#include "kernels/mamba_state.cuh"
#include "kernels/ssd_scan.cuh"
#include "kernels/gemm.cuh"

namespace {

using nemotron_h::bf16;
constexpr nemotron_h::mamba_dims k9B{128, 80, 128, 8, 4};
constexpr nemotron_h::mamba_dims k47B{256, 64, 256, 8, 4};  // Nemotron-H 47B / 56B (N = 256)
constexpr int kHidden = 4480;

double g_copy_gbs = 0;   // measured copy bandwidth, GB/s
double g_gemm_ms = 0;    // in_proj + out_proj at 4096 tokens, ms

template <typename T>
struct dev {
  T* p = nullptr;
  explicit dev(std::size_t n) { PIECEWISE_CUDA_TRY(cudaMalloc(&p, n * sizeof(T))); }
  ~dev() { cudaFree(p); }
  dev(const dev&) = delete;
  dev& operator=(const dev&) = delete;
};

template <typename T>
__global__ void fill_kernel(T* p, std::size_t n, float scale, unsigned seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    p[i] = static_cast<T>(scale * nemotron_h::hash_uniform(i, seed));
}
template <typename T>
void fill_random(T* p, std::size_t n, float scale, unsigned seed) {
  fill_kernel<T><<<1024, 256>>>(p, n, scale, seed);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
}
void fill_random_bf16(bf16* p, std::size_t n, float scale, unsigned seed) {
  fill_random<bf16>(p, n, scale, seed);
}

// Device batch metadata for `lens` (one slot per sequence, fresh or cached).
struct meta {
  dev<int> num_seqs{1}, num_tokens{1}, cu, slots, ctx;
  nemotron_h::batch_view v;
  meta(const std::vector<int>& lens, int ctx_len)
      : cu(lens.size() + 1), slots(lens.size()), ctx(lens.size()) {
    std::vector<int> c(lens.size() + 1, 0), s(lens.size()), x(lens.size(), ctx_len);
    for (std::size_t i = 0; i < lens.size(); ++i) {
      c[i + 1] = c[i] + lens[i];
      s[i] = static_cast<int>(i);
    }
    const int n = static_cast<int>(lens.size());
    cudaMemcpy(num_seqs.p, &n, sizeof(int), cudaMemcpyHostToDevice);
    cudaMemcpy(num_tokens.p, &c[n], sizeof(int), cudaMemcpyHostToDevice);
    cudaMemcpy(cu.p, c.data(), c.size() * sizeof(int), cudaMemcpyHostToDevice);
    cudaMemcpy(slots.p, s.data(), s.size() * sizeof(int), cudaMemcpyHostToDevice);
    cudaMemcpy(ctx.p, x.data(), x.size() * sizeof(int), cudaMemcpyHostToDevice);
    v.num_seqs = num_seqs.p;
    v.num_tokens = num_tokens.p;
    v.cu_seqlens = cu.p;
    v.slots = slots.p;
    v.context_lens = ctx.p;
    v.padded_tokens = c[n];
    v.max_seqs = n;
    v.max_seqlen = c[n];
  }
};

// The card's copy bandwidth: best of 10 device-to-device cudaMemcpy of 1 GiB (read + write
// bytes counted), measured in the same process before the benchmarks.
void measure_copy_bandwidth() {
  const std::size_t bytes = std::size_t{1} << 30;
  dev<char> a(bytes), b(bytes);
  cudaMemset(a.p, 1, bytes);
  nemotron_h::event_timer t;
  double best = 1e30;
  for (int i = 0; i < 10; ++i)
    best = std::min<double>(best, t.ms([&] { cudaMemcpy(b.p, a.p, bytes, cudaMemcpyDeviceToDevice); }));
  g_copy_gbs = 2.0 * bytes / (best * 1e-3) / 1e9;
}

void BM_gemm_in_out_proj(benchmark::State& state) {
  const int M = 4096, din = k9B.in_proj_dim(), dinner = k9B.d_inner();
  dev<bf16> x(static_cast<std::size_t>(M) * kHidden), win(static_cast<std::size_t>(din) * kHidden),
      zx(static_cast<std::size_t>(M) * din), g(static_cast<std::size_t>(M) * dinner),
      wout(static_cast<std::size_t>(kHidden) * dinner), out(static_cast<std::size_t>(M) * kHidden);
  fill_random_bf16(x.p, static_cast<std::size_t>(M) * kHidden, 1.f, 1);
  fill_random_bf16(win.p, static_cast<std::size_t>(din) * kHidden, 0.02f, 2);
  fill_random_bf16(g.p, static_cast<std::size_t>(M) * dinner, 1.f, 3);
  fill_random_bf16(wout.p, static_cast<std::size_t>(kHidden) * dinner, 0.02f, 4);
  nemotron_h::gemm_engine eng;
  eng.prepare(M, kHidden, din);
  eng.prepare(M, dinner, kHidden);
  nemotron_h::event_timer t;
  double best = 1e30;
  for (auto _ : state) {
    const double ms = t.ms([&] {
      eng.linear(x.p, win.p, zx.p, M, kHidden, din, nullptr);
      eng.linear(g.p, wout.p, out.p, M, dinner, kHidden, nullptr);
    });
    best = std::min(best, ms);
    state.SetIterationTime(ms / 1e3);
  }
  g_gemm_ms = best;
  const double flops = 2.0 * M * (static_cast<double>(kHidden) * din + static_cast<double>(dinner) * kHidden);
  state.counters["TFLOP/s"] = benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["best_ms"] = best;
}
BENCHMARK(BM_gemm_in_out_proj)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);

void mamba_decode_bench(benchmark::State& state, const nemotron_h::mamba_dims d) {
  const int batch = static_cast<int>(state.range(0));
  const std::size_t st_elems = static_cast<std::size_t>(batch) * d.H * d.P * d.N;
  dev<float> st(st_elems), A_log(d.H), D(d.H), dtb(d.H);
  dev<bf16> xbc(static_cast<std::size_t>(batch) * d.conv_dim()), zx(static_cast<std::size_t>(batch) * d.in_proj_dim()),
      y(static_cast<std::size_t>(batch) * d.d_inner());
  fill_random(st.p, st_elems, 0.3f, 5);
  fill_random(A_log.p, d.H, 0.5f, 6);
  fill_random(D.p, d.H, 1.f, 7);
  fill_random(dtb.p, d.H, 1.f, 8);
  fill_random_bf16(xbc.p, static_cast<std::size_t>(batch) * d.conv_dim(), 1.f, 9);
  fill_random_bf16(zx.p, static_cast<std::size_t>(batch) * d.in_proj_dim(), 1.f, 10);
  meta m(std::vector<int>(batch, 1), 5);
  nemotron_h::event_timer t;
  auto run = [&] {
    nemotron_h::mamba_decode(xbc.p, zx.p + d.dt_offset(), d.in_proj_dim(), A_log.p, D.p, dtb.p, st.p, y.p, m.v,
                             d, 1e-3f, INFINITY, nullptr);
  };
  run();
  cudaDeviceSynchronize();
  double best = 1e30;
  for (auto _ : state) {
    const double ms = t.ms(run);
    best = std::min(best, ms);
    state.SetIterationTime(ms / 1e3);
  }
  const double bytes = 2.0 * st_elems * sizeof(float) +
                       static_cast<double>(batch) * (d.conv_dim() + d.d_inner() + d.H) * sizeof(bf16);
  const double gbs = bytes / (best * 1e-3) / 1e9;
  state.counters["GB/s(best)"] = gbs;
  state.counters["copy_GB/s"] = g_copy_gbs;
  state.counters["frac_of_copy"] = g_copy_gbs > 0 ? gbs / g_copy_gbs : 0;
  state.counters["best_us"] = best * 1e3;
}
void BM_mamba_decode(benchmark::State& state) { mamba_decode_bench(state, k9B); }
void BM_mamba_decode_47b(benchmark::State& state) { mamba_decode_bench(state, k47B); }
BENCHMARK(BM_mamba_decode_47b)->Arg(1)->Arg(64)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);
BENCHMARK(BM_mamba_decode)->Arg(64)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);

void BM_conv_prefill(benchmark::State& state) {
  const int T = 4096;
  const auto d = k9B;
  dev<bf16> zx(static_cast<std::size_t>(T) * d.in_proj_dim()), w(static_cast<std::size_t>(d.conv_dim()) * 4),
      b(d.conv_dim()), cst(static_cast<std::size_t>(3) * d.conv_dim()), out(static_cast<std::size_t>(T) * d.conv_dim());
  fill_random_bf16(zx.p, static_cast<std::size_t>(T) * d.in_proj_dim(), 1.f, 11);
  fill_random_bf16(w.p, static_cast<std::size_t>(d.conv_dim()) * 4, 0.5f, 12);
  fill_random_bf16(b.p, d.conv_dim(), 0.1f, 13);
  meta m({T}, 0);
  nemotron_h::event_timer t;
  auto run = [&] {
    nemotron_h::conv1d_prefill(zx.p + d.xbc_offset(), d.in_proj_dim(), w.p, b.p, cst.p, out.p, m.v, d.conv_dim(), 4,
                               nullptr);
  };
  run();
  double best = 1e30;
  for (auto _ : state) {
    const double ms = t.ms(run);
    best = std::min(best, ms);
    state.SetIterationTime(ms / 1e3);
  }
  const double bytes = 2.0 * T * d.conv_dim() * sizeof(bf16);
  state.counters["GB/s(best)"] = bytes / (best * 1e-3) / 1e9;
  state.counters["frac_of_copy"] = g_copy_gbs > 0 ? bytes / (best * 1e-3) / 1e9 / g_copy_gbs : 0;
  state.counters["best_us"] = best * 1e3;
}
BENCHMARK(BM_conv_prefill)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);

void ssd_scan_bench(benchmark::State& state, const nemotron_h::mamba_dims d) {
  const int nseq = static_cast<int>(state.range(0));
  const int T = 4096;
  std::vector<int> lens(nseq, T / nseq);
  meta m(lens, 0);
  const std::size_t wsb = nemotron_h::ssd_scan_workspace_bytes(T, nseq, d);
  dev<char> ws(wsb);
  dev<float> st(static_cast<std::size_t>(nseq) * d.H * d.P * d.N), A_log(d.H), D(d.H), dtb(d.H);
  dev<bf16> xbc(static_cast<std::size_t>(T) * d.conv_dim()), zx(static_cast<std::size_t>(T) * d.in_proj_dim()),
      y(static_cast<std::size_t>(T) * d.d_inner());
  fill_random(A_log.p, d.H, 0.5f, 14);
  fill_random(D.p, d.H, 1.f, 15);
  fill_random(dtb.p, d.H, 1.f, 16);
  fill_random_bf16(xbc.p, static_cast<std::size_t>(T) * d.conv_dim(), 1.f, 17);
  fill_random_bf16(zx.p, static_cast<std::size_t>(T) * d.in_proj_dim(), 1.f, 18);
  nemotron_h::event_timer t;
  auto run = [&] {
    nemotron_h::ssd_scan(xbc.p, zx.p + d.dt_offset(), d.in_proj_dim(), A_log.p, D.p, dtb.p, st.p, y.p, ws.p, wsb,
                         m.v, d, 1e-3f, INFINITY, nullptr);
  };
  run();
  double best = 1e30;
  for (auto _ : state) {
    const double ms = t.ms(run);
    best = std::min(best, ms);
    state.SetIterationTime(ms / 1e3);
  }
  state.counters["best_us"] = best * 1e3;
  state.counters["gemm_us"] = g_gemm_ms * 1e3;
  state.counters["frac_of_gemm"] = g_gemm_ms > 0 ? best / g_gemm_ms : 0;
}
void BM_ssd_scan(benchmark::State& state) { ssd_scan_bench(state, k9B); }
// gemm_us / frac_of_gemm there compare with the 9B projections (g_gemm_ms).
void BM_ssd_scan_47b(benchmark::State& state) { ssd_scan_bench(state, k47B); }
BENCHMARK(BM_ssd_scan_47b)->Arg(1)->Arg(8)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);
BENCHMARK(BM_ssd_scan)->Arg(1)->Arg(8)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.3);

}  // namespace

int main(int argc, char** argv) {
  measure_copy_bandwidth();
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("copy_GB/s", std::to_string(g_copy_gbs));
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  benchmark::AddCustomContext("device", prop.name);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
