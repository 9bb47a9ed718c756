// Benchmarks of the dense NemotronH kernels at Nemotron-H-Nano-9B-v2 shapes, reported
// against this card's measured roofline (copy bandwidth, bf16 GEMM rate; see roofline.cuh).
// Google Benchmark with manual time from CUDA events.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/packed_batch.hpp"
#include "bench/roofline.cuh"
#include "kernels/activations.cuh"
#include "kernels/attention_decode.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/gemm.cuh"
#include "kernels/kv_cache.cuh"
#include "kernels/norms.cuh"
#include "kernels/nvfp4.cuh"

namespace nh = nemotron_h;
using nemotron_h::bf16;

namespace {

constexpr int kD = 4480, kF = 15680, kHq = 40, kHkv = 8, kHD = 128, kDInner = 10240, kG = 8;
constexpr int kInProj = 2 * kDInner + 2 * kG * 128 + 128;  // 22656

struct roof {
  double bw_gbs = 0, tflops = 0;
};
roof& roofline() {
  static roof r;
  return r;
}
nh::gemm_engine& engine() {
  static nh::gemm_engine e;
  return e;
}

template <typename T>
T* dalloc(std::size_t n) {
  void* p = nullptr;
  PIECEWISE_CUDA_TRY(cudaMalloc(&p, n * sizeof(T)));
  return static_cast<T*>(p);
}

// Times fn() per iteration with events; sets manual time.
void run_timed(benchmark::State& state, const std::function<void()>& fn) {
  nh::event_timer t;
  for (int i = 0; i < 3; ++i) fn();
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  for (auto _ : state) state.SetIterationTime(t.ms(fn) * 1e-3);
}

void set_bw(benchmark::State& state, double bytes) {
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes"] = bytes;
}

// The best time of one launch of a graph of calls call(0 ... calls - 1, st) (ms), after one call
// outside the capture (it sets kernel attributes).
float graph_launch_ms(int calls, const std::function<void(int, cudaStream_t)>& call, cudaStream_t st) {
  call(0, st);
  PIECEWISE_CUDA_TRY(cudaStreamSynchronize(st));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  PIECEWISE_CUDA_TRY(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls; ++i) call(i, st);
  PIECEWISE_CUDA_TRY(cudaStreamEndCapture(st, &graph));
  PIECEWISE_CUDA_TRY(cudaGraphInstantiate(&exec, graph, 0));
  nh::event_timer t;
  const float ms = t.best_ms([&] { PIECEWISE_CUDA_TRY(cudaGraphLaunch(exec, st)); }, 2, 5, st);
  PIECEWISE_CUDA_TRY(cudaGraphExecDestroy(exec));
  PIECEWISE_CUDA_TRY(cudaGraphDestroy(graph));
  return ms;
}

void BM_roofline(benchmark::State& state) {
  for (auto _ : state) {
    roofline().bw_gbs = nh::measure_copy_bandwidth_gbs();
    roofline().tflops = nh::measure_bf16_gemm_tflops(engine());
    state.SetIterationTime(1.0);
  }
  state.counters["copy_GB/s"] = roofline().bw_gbs;
  state.counters["gemm_TFLOP/s"] = roofline().tflops;
  std::printf("ROOFLINE copy_bandwidth_GBps=%.1f bf16_gemm_TFLOPs=%.1f\n", roofline().bw_gbs,
              roofline().tflops);
}
BENCHMARK(BM_roofline)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

// Decode attention: batch B, context C (C-1 cached + the new token), 9B heads; args 2 and 3
// are the tuning (splits, stages; 0 = automatic). BM_attention_decode_gqa: other head counts
// (Nano-30B / Super 32/2, Ultra 64/2). The work is captured as a graph of R calls
// that rotate over R copies of the cache (>= 192 MB in all, so K/V come from HBM, not the
// 50 MB L2, as in a model step); the reported time is one call inside the graph. eager_us:
// one call launched on its own (launch latency included).
void decode_attention_bench(benchmark::State& state, int B, int C, nh::attention_decode_tuning tune, int Hq,
                            int Hkv) {
  const double bytes = 2.0 * B * C * Hkv * kHD * 2;  // K and V read once
  const int R = std::clamp(static_cast<int>(192e6 / bytes) + 1, 1, 256), calls = std::max(R, 16);
  const std::size_t cache_elems = static_cast<std::size_t>(R) * B * C * Hkv * kHD;
  bf16* kv = dalloc<bf16>(2 * cache_elems);
  nh::fill_random(kv, 2 * cache_elems, 3u);
  nh::kv_cache_view cache = nh::make_kv_cache_view(kv, R * B, C, Hkv, kHD);
  const int ld = (Hq + 2 * Hkv) * kHD;
  bf16* qkv = dalloc<bf16>(static_cast<std::size_t>(B) * ld);
  bf16* out = dalloc<bf16>(static_cast<std::size_t>(B) * Hq * kHD);
  nh::fill_random(qkv, static_cast<std::size_t>(B) * ld, 4u);
  // Metadata of copy r: one packed batch (bench/packed_batch.hpp) each.
  const std::size_t per = nh::packed_batch_ints(B);
  std::vector<int> meta(static_cast<std::size_t>(R) * per);
  for (int r = 0; r < R; ++r) {
    const nh::packed_batch_fields<int> f{meta.data() + r * per, B};
    *f.num_seqs() = *f.num_tokens() = B;
    for (int i = 0; i <= B; ++i) f.cu_seqlens()[i] = i;
    for (int i = 0; i < B; ++i) {
      f.slots()[i] = r * B + i;
      f.context_lens()[i] = C - 1;
    }
  }
  int* d = dalloc<int>(meta.size());
  PIECEWISE_CUDA_TRY(cudaMemcpy(d, meta.data(), meta.size() * sizeof(int), cudaMemcpyHostToDevice));
  std::vector<nh::batch_view> views;
  for (int r = 0; r < R; ++r) views.push_back(nh::packed_batch_view(d + r * per, B, B, 1));
  const std::size_t ws_bytes = nh::attention_decode_workspace_bytes(B, Hq, Hkv, kHD, C, tune);
  void* ws = dalloc<char>(ws_bytes);
  PIECEWISE_CUDA_TRY(cudaMemset(ws, 0, ws_bytes));  // split counters start at zero
  cudaStream_t st = nullptr;
  PIECEWISE_CUDA_TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  auto call = [&](int i, cudaStream_t s) {
    nh::attention_decode(qkv, ld, qkv + Hq * kHD, qkv + (Hq + Hkv) * kHD, ld, cache, views[i % R], Hq, out,
                         Hq * kHD, ws, ws_bytes, C, s, tune);
  };
  const float graph_ms = graph_launch_ms(calls, call, st);
  nh::event_timer t;
  int e = 0;
  const float eager_ms = t.best_ms([&] { call(e++, st); }, 3, 20, st);
  for (auto _ : state) state.SetIterationTime(graph_ms * 1e-3 / calls);
  state.counters["us"] = graph_ms * 1e3 / calls;
  state.counters["eager_us"] = eager_ms * 1e3;
  state.counters["GB/s"] = bytes / (graph_ms * 1e-3 / calls) / 1e9;
  if (roofline().bw_gbs > 0) state.counters["frac_of_copy_bw"] = state.counters["GB/s"] / roofline().bw_gbs;
  PIECEWISE_CUDA_TRY(cudaStreamDestroy(st));
  cudaFree(kv);
  cudaFree(qkv);
  cudaFree(out);
  cudaFree(d);
  cudaFree(ws);
}
void BM_attention_decode(benchmark::State& state) {
  decode_attention_bench(state, static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
                         {static_cast<int>(state.range(2)), static_cast<int>(state.range(3))}, kHq, kHkv);
}
// The same at other head counts (automatic tuning): args batch, context, Hq, Hkv.
void BM_attention_decode_gqa(benchmark::State& state) {
  decode_attention_bench(state, static_cast<int>(state.range(0)), static_cast<int>(state.range(1)), {},
                         static_cast<int>(state.range(2)), static_cast<int>(state.range(3)));
}
BENCHMARK(BM_attention_decode_gqa)
    ->ArgNames({"batch", "context", "Hq", "Hkv"})
    ->ArgsProduct({{1, 8, 64}, {1024, 4096}, {32, 64}, {2}})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
// Defaults at b1/b8/b64 x context 256/1024/4096, then a sweep of the tunables.
void decode_attention_args(benchmark::internal::Benchmark* b) {
  for (int B : {1, 8, 64})
    for (int C : {256, 1024, 4096}) b->Args({B, C, 0, 0});
  for (int st : {2, 3, 4}) {
    for (int sp : {8, 16, 32, 64, 128}) b->Args({1, 4096, sp, st});
    for (int sp : {2, 3, 4, 6}) b->Args({8, 4096, sp, st});
    for (int sp : {1, 2}) b->Args({64, 4096, sp, st});
  }
  for (int st : {2, 3}) {
    for (int sp : {4, 8, 16}) b->Args({1, 1024, sp, st});
    for (int sp : {2, 4}) b->Args({1, 256, sp, st});
    for (int sp : {1, 2, 4, 8}) b->Args({8, 1024, sp, st});
    for (int sp : {1, 2, 4}) b->Args({64, 256, sp, st});
    for (int sp : {1, 2, 4}) b->Args({64, 1024, sp, st});
  }
}
BENCHMARK(BM_attention_decode)
    ->ArgNames({"batch", "context", "splits", "stages"})
    ->Apply(decode_attention_args)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// Prefill attention: S sequences of T tokens each (packed), no prefix, 9B heads. range(2)
// picks the kernel: 0 the portable mma.sync kernel; stages + 10 * pingpong + 20 * persistent
// (22 .. 33) the sm_90a wgmma kernel with a K/V ring of 2 or 3 stages, with or without
// ping-pong and a persistent grid (skipped on other devices); -1 what attention_prefill()
// picks by default.
void BM_attention_prefill(benchmark::State& state) {
  const int S = static_cast<int>(state.range(0)), T = static_cast<int>(state.range(1));
  const int variant = static_cast<int>(state.range(2));
  nh::prefill_options opt;
  if (variant == 0) opt.kernel = nh::prefill_kernel::mma_sync;
  if (variant >= 2) {
    int dev = 0, major = 0, minor = 0;
    PIECEWISE_CUDA_TRY(cudaGetDevice(&dev));
    PIECEWISE_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    PIECEWISE_CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (major != 9 || minor != 0) {
      state.SkipWithError("the wgmma prefill kernel needs a compute capability 9.0 device");
      return;
    }
    opt.kernel = nh::prefill_kernel::wgmma;
    opt.stages = variant % 10;
    opt.pingpong = (variant / 10) % 2;
    opt.persistent = variant / 20;
  }
  std::string label = variant == 0 ? "mma_sync" : variant < 0 ? "default" : "wgmma/" + std::to_string(opt.stages);
  if (variant > 0 && opt.pingpong == 1) label += "/pp";
  if (variant > 0 && opt.persistent == 1) label += "/pers";
  state.SetLabel(label);
  const int tokens = S * T;
  const std::size_t cache_elems = static_cast<std::size_t>(S) * T * kHkv * kHD;
  bf16* kv = dalloc<bf16>(2 * cache_elems);
  nh::kv_cache_view cache = nh::make_kv_cache_view(kv, S, T, kHkv, kHD);
  const int ld = (kHq + 2 * kHkv) * kHD;
  bf16* qkv = dalloc<bf16>(static_cast<std::size_t>(tokens) * ld);
  bf16* out = dalloc<bf16>(static_cast<std::size_t>(tokens) * kHq * kHD);
  nh::fill_random(qkv, static_cast<std::size_t>(tokens) * ld, 5u);
  std::vector<int> h(nh::packed_batch_ints(S), 0);
  const nh::packed_batch_fields<int> f{h.data(), S};
  *f.num_seqs() = S;
  *f.num_tokens() = tokens;
  for (int i = 0; i <= S; ++i) f.cu_seqlens()[i] = i * T;
  for (int i = 0; i < S; ++i) f.slots()[i] = i;  // context_lens stay 0
  int* d = dalloc<int>(h.size());
  PIECEWISE_CUDA_TRY(cudaMemcpy(d, h.data(), h.size() * sizeof(int), cudaMemcpyHostToDevice));
  const nh::batch_view bv = nh::packed_batch_view(d, S, tokens, T);
  run_timed(state, [&] {
    nh::attention_prefill(qkv, ld, qkv + kHq * kHD, qkv + (kHq + kHkv) * kHD, ld, cache, bv, kHq,
                          out, kHq * kHD, nullptr, opt);
  });
  // Causal FLOPs: QK^T and PV, 2*hd each per visible (query, key) pair.
  const double flops = 4.0 * kHD * kHq * S * (static_cast<double>(T) * (T + 1) / 2);
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
  if (roofline().tflops > 0) {
    state.counters["frac_of_gemm_rate"] = benchmark::Counter(
        flops / 1e12 / roofline().tflops, benchmark::Counter::kIsIterationInvariantRate);
  }
  cudaFree(kv);
  cudaFree(qkv);
  cudaFree(out);
  cudaFree(d);
}
BENCHMARK(BM_attention_prefill)
    ->ArgNames({"S", "T", "kernel"})
    ->ArgsProduct({{1}, {4096, 1024}, {-1, 0, 2, 3, 12, 13, 22, 23, 32, 33}})
    ->ArgsProduct({{4}, {1024}, {-1, 0, 2, 3, 12, 13, 22, 23, 32, 33}})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

// GEMMs of the 9B layers: y[M,N] = x[M,K] W[N,K]^T.
void BM_gemm(benchmark::State& state) {
  const int M = static_cast<int>(state.range(0)), K = static_cast<int>(state.range(1)),
            N = static_cast<int>(state.range(2));
  bf16* x = dalloc<bf16>(static_cast<std::size_t>(M) * K);
  bf16* W = dalloc<bf16>(static_cast<std::size_t>(N) * K);
  bf16* y = dalloc<bf16>(static_cast<std::size_t>(M) * N);
  nh::fill_random(x, static_cast<std::size_t>(M) * K, 6u);
  nh::fill_random(W, static_cast<std::size_t>(N) * K, 7u, 0.05f);
  engine().prepare(M, K, N);
  run_timed(state, [&] { engine().linear(x, W, y, M, K, N, nullptr); });
  const double flops = 2.0 * M * N * static_cast<double>(K);
  const double bytes = 2.0 * (static_cast<double>(M) * K + static_cast<double>(N) * K + static_cast<double>(M) * N);
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  if (roofline().tflops > 0) {
    // Roofline time: max(FLOPs / rate, bytes / bandwidth); report achieved / roofline.
    const double t_roof = std::max(flops / (roofline().tflops * 1e12), bytes / (roofline().bw_gbs * 1e9));
    state.counters["frac_of_roofline"] =
        benchmark::Counter(t_roof, benchmark::Counter::kIsIterationInvariantRate);
  }
  cudaFree(x);
  cudaFree(W);
  cudaFree(y);
}
BENCHMARK(BM_gemm)
    ->ArgNames({"M", "K", "N"})
    ->Args({4096, kD, kInProj})   // mamba in_proj
    ->Args({4096, kDInner, kD})   // mamba out_proj
    ->Args({4096, kD, kF})        // mlp up_proj
    ->Args({4096, kF, kD})        // mlp down_proj
    ->Args({4096, kD, (kHq + 2 * kHkv) * kHD})  // fused qkv
    ->Args({4096, kHq * kHD, kD})  // o_proj
    ->Args({64, kD, kInProj})
    ->Args({64, kDInner, kD})
    ->Args({64, kD, kF})
    ->Args({64, kF, kD})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

// Decode GEMVs of the 9B layers, bf16 (gemm_engine::linear, the bf16 GEMV) against NVFP4
// weight-only (gemv_nvfp4, random e2m1 codes under random normal block scales): y[M,N] =
// x[M,K] W[N,K]^T at M = 1, 8, 64. Captured as a graph of calls that rotate over copies of the
// weight (>= 256 MB in all, so weights stream from HBM as in a model step); the reported time
// is one call inside the graph, GB/s counts the weight bytes (layout + block scales for NVFP4).
void BM_gemv(benchmark::State& state) {
  const int M = static_cast<int>(state.range(0)), K = static_cast<int>(state.range(1)),
            N = static_cast<int>(state.range(2));
  const bool nvfp4 = state.range(3) != 0;
  const nh::nvfp4_layout L{N, K};
  const double wbytes = nvfp4 ? static_cast<double>(L.packed_bytes() + L.scale_bytes()) : 2.0 * N * K;
  const int R = std::clamp(static_cast<int>(256e6 / wbytes) + 1, 1, 64), calls = std::max(R, 16);
  std::vector<void*> bufs;
  std::vector<nh::weight> W(R);
  if (nvfp4) {
    std::vector<std::uint8_t> packed(static_cast<std::size_t>(N) * K / 2), scales(static_cast<std::size_t>(N) * K / 16);
    std::uint32_t s = 12345u;
    auto next = [&s] { s ^= s << 13, s ^= s >> 17, s ^= s << 5; return s; };
    for (auto& b : packed) b = static_cast<std::uint8_t>(next());
    for (auto& b : scales) b = static_cast<std::uint8_t>(0x30 + next() % 0x30);  // e4m3 0.125 ... 1.9
    std::uint8_t* rp = dalloc<std::uint8_t>(packed.size());
    std::uint8_t* rs = dalloc<std::uint8_t>(scales.size());
    PIECEWISE_CUDA_TRY(cudaMemcpy(rp, packed.data(), packed.size(), cudaMemcpyHostToDevice));
    PIECEWISE_CUDA_TRY(cudaMemcpy(rs, scales.data(), scales.size(), cudaMemcpyHostToDevice));
    for (nh::weight& w : W) {
      auto* dp = dalloc<std::uint8_t>(L.packed_bytes());
      auto* ds = dalloc<std::uint8_t>(L.scale_bytes());
      nh::repack_nvfp4(rp, rs, N, K, N, dp, ds, nullptr);
      bufs.push_back(dp);
      bufs.push_back(ds);
      w.data = dp;
      w.block_scales = ds;
      w.type = nh::dtype::nvfp4;
      w.rows = N;
      w.cols = K;
      w.global_scale = 1.0f / 256;
      w.name = "bench.nvfp4";
    }
    cudaFree(rp);
    cudaFree(rs);
  } else {
    for (nh::weight& w : W) {
      bf16* d = dalloc<bf16>(static_cast<std::size_t>(N) * K);
      nh::fill_random(d, static_cast<std::size_t>(N) * K, 7u, 0.05f);
      bufs.push_back(d);
      w.data = d;
      w.type = nh::dtype::bf16;
      w.rows = N;
      w.cols = K;
      w.name = "bench.bf16";
    }
  }
  bf16* x = dalloc<bf16>(static_cast<std::size_t>(M) * K);
  bf16* y = dalloc<bf16>(static_cast<std::size_t>(M) * N);
  nh::fill_random(x, static_cast<std::size_t>(M) * K, 6u);
  cudaStream_t st = nullptr;
  PIECEWISE_CUDA_TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  engine().prepare(W[0], M);
  auto call = [&](int i, cudaStream_t s) { engine().linear(x, W[i % R], y, M, s); };
  const float graph_ms = graph_launch_ms(calls, call, st);
  for (auto _ : state) state.SetIterationTime(graph_ms * 1e-3 / calls);
  state.counters["us"] = graph_ms * 1e3 / calls;
  state.counters["GB/s"] = wbytes / (graph_ms * 1e-3 / calls) / 1e9;
  if (roofline().bw_gbs > 0) state.counters["frac_of_copy_bw"] = state.counters["GB/s"] / roofline().bw_gbs;
  if (nvfp4) state.counters["split"] = nh::nvfp4_gemv_split(W[0]);
  PIECEWISE_CUDA_TRY(cudaStreamDestroy(st));
  for (void* b : bufs) cudaFree(b);
  cudaFree(x);
  cudaFree(y);
}
BENCHMARK(BM_gemv)
    ->ArgNames({"M", "K", "N", "nvfp4"})
    ->ArgsProduct({{1, 8, 64}, {kD}, {kInProj, kF}, {0, 1}})    // mamba in_proj, mlp up_proj
    ->ArgsProduct({{1, 8, 64}, {kDInner}, {kD}, {0, 1}})        // mamba out_proj
    ->ArgsProduct({{1, 8, 64}, {kF}, {kD}, {0, 1}})             // mlp down_proj
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

// Norms at 4096 tokens (bandwidth-bound).
void BM_norms(benchmark::State& state) {
  const int rows = 4096;
  const int which = static_cast<int>(state.range(0));
  const std::size_t n = static_cast<std::size_t>(rows) * kInProj;
  bf16* a = dalloc<bf16>(n);
  bf16* b = dalloc<bf16>(n);
  bf16* w = dalloc<bf16>(kDInner);
  float* yf = dalloc<float>(static_cast<std::size_t>(rows) * kDInner);
  nh::fill_random(a, n, 8u);
  nh::fill_random(w, kDInner, 9u);
  PIECEWISE_CUDA_TRY(cudaMemset(yf, 0, static_cast<std::size_t>(rows) * kDInner * sizeof(float)));
  double bytes = 0;
  if (which == 0) {
    run_timed(state, [&] { nh::rmsnorm(a, w, b, rows, kD, 1e-5f, nullptr); });
    bytes = 2.0 * 2 * rows * kD;
    state.SetLabel("rmsnorm 4096x4480");
  } else if (which == 1) {
    run_timed(state, [&] { nh::add_rmsnorm(a, b, w, b + static_cast<std::size_t>(rows) * kD, rows, kD, 1e-5f, nullptr); });
    bytes = 2.0 * 4 * rows * kD;
    state.SetLabel("add_rmsnorm 4096x4480");
  } else if (which == 2) {
    run_timed(state, [&] {
      nh::gated_rmsnorm(yf, kDInner, a, kInProj, w, b, kDInner, rows, kDInner, kG, 1e-5f, nullptr);
    });
    bytes = static_cast<double>(rows) * kDInner * (4 + 2 + 2);
    state.SetLabel("gated_rmsnorm 4096x10240 (fp32 y)");
  } else {
    run_timed(state, [&] { nh::relu2_inplace(a, static_cast<std::size_t>(rows) * kF, nullptr); });
    bytes = 2.0 * 2 * rows * kF;
    state.SetLabel("relu2 4096x15680");
  }
  set_bw(state, bytes);
  if (roofline().bw_gbs > 0) {
    state.counters["frac_of_copy_bw"] = benchmark::Counter(
        bytes / 1e9 / roofline().bw_gbs, benchmark::Counter::kIsIterationInvariantRate);
  }
  cudaFree(a);
  cudaFree(b);
  cudaFree(w);
  cudaFree(yf);
}
BENCHMARK(BM_norms)->DenseRange(0, 3)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
