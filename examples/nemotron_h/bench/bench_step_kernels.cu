// The small kernels of one NemotronH-Nano-9B-v2 decode step and one short prefill, each
// timed alone at the shapes the model runs them (issue 11): argmax over the 131072 logits,
// the Mamba2 decode update, conv1d, the SSD scan on 16/128 tokens, the norms and decode
// attention, plus a few long shapes as a bandwidth check. Only public kernel entry points
// are used, so the same file builds against older trees for before/after comparisons.
//
//   nh_step_kernels_bench            graph-replay timing: per case, a CUDA graph of 20
//                                    launches (inputs rotating where the model's would be
//                                    cold in L2), median of 20 replays, us per launch
//   nh_step_kernels_bench --once     each case launched 3 times eagerly, nothing timed: for
//                                    ncu --metrics gpu__time_duration.sum (per-kernel times)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/hash_fill.cuh"
#include "bench/packed_batch.hpp"
#include "kernels/attention_decode.cuh"
#include "kernels/conv1d.cuh"
#include "kernels/kv_cache.cuh"
#include "kernels/mamba_decode.cuh"
#include "kernels/mamba_state.cuh"
#include "kernels/norms.cuh"
#include "kernels/ssd_scan.cuh"
#include "runner/model_kernels.cuh"

namespace {

namespace nh = nemotron_h;
using nh::bf16;

constexpr nh::mamba_dims k9B{128, 80, 128, 8, 4};
constexpr int kD = 4480, kVocab = 131072, kHq = 40, kHkv = 8, kHD = 128;

std::vector<void*> g_allocs;
template <typename T>
T* dalloc(std::size_t n) {
  void* p = nullptr;
  PIECEWISE_CUDA_TRY(cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(T)));
  g_allocs.push_back(p);
  return static_cast<T*>(p);
}

template <typename T>
__global__ void fill_kernel(T* p, std::size_t n, float scale, float offset, unsigned seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    p[i] = static_cast<T>(offset + scale * nemotron_h::hash_uniform(i, seed));
}
unsigned g_seed = 1;
template <typename T>
T* random(std::size_t n, float scale = 1.f, float offset = 0.f) {
  T* p = dalloc<T>(n);
  fill_kernel<T><<<1024, 256>>>(p, n, scale, offset, g_seed++);
  PIECEWISE_CUDA_TRY(cudaGetLastError());
  return p;
}

// Device batch metadata: `lens` new tokens per sequence, slots first_slot.., context ctx;
// host bounds max_seqs / padded_tokens (0: exactly the batch), as a runner bucket has them.
nh::batch_view make_batch(const std::vector<int>& lens, int ctx, int first_slot, int max_seqs = 0, int padded = 0) {
  const int n = static_cast<int>(lens.size());
  const int ms = std::max(n, max_seqs);
  std::vector<int> h(nh::packed_batch_ints(ms), 0);
  const nh::packed_batch_fields<int> f{h.data(), ms};
  *f.num_seqs() = n;
  for (int i = 0; i < ms; ++i) f.cu_seqlens()[i + 1] = f.cu_seqlens()[i] + (i < n ? lens[i] : 0);
  *f.num_tokens() = f.cu_seqlens()[ms];
  for (int i = 0; i < n; ++i) {
    f.slots()[i] = first_slot + i;
    f.context_lens()[i] = ctx;
  }
  int* d = dalloc<int>(h.size());
  PIECEWISE_CUDA_TRY(cudaMemcpy(d, h.data(), h.size() * sizeof(int), cudaMemcpyHostToDevice));
  int mx = 0;
  for (int l : lens) mx = std::max(mx, l);
  return nh::packed_batch_view(d, ms, std::max(*f.num_tokens(), padded), mx);
}

struct bench_case {
  std::string name;
  double bytes;                                // minimum bytes moved (0: not a bandwidth case)
  std::function<void(int, cudaStream_t)> run;  // launch i (inputs rotate with i)
};

double graph_us(const bench_case& c, cudaStream_t s) {
  constexpr int kPerGraph = 20, kReps = 20;
  for (int i = 0; i < 3; ++i) c.run(i, s);  // warm-up (module load, attributes)
  PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  PIECEWISE_CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kPerGraph; ++i) c.run(i, s);
  PIECEWISE_CUDA_TRY(cudaStreamEndCapture(s, &g));
  PIECEWISE_CUDA_TRY(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t a, b;
  PIECEWISE_CUDA_TRY(cudaEventCreate(&a));
  PIECEWISE_CUDA_TRY(cudaEventCreate(&b));
  std::vector<float> t;
  for (int r = 0; r < kReps + 2; ++r) {
    PIECEWISE_CUDA_TRY(cudaEventRecord(a, s));
    PIECEWISE_CUDA_TRY(cudaGraphLaunch(ge, s));
    PIECEWISE_CUDA_TRY(cudaEventRecord(b, s));
    PIECEWISE_CUDA_TRY(cudaEventSynchronize(b));
    float ms = 0;
    PIECEWISE_CUDA_TRY(cudaEventElapsedTime(&ms, a, b));
    if (r >= 2) t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  return t[t.size() / 2] * 1e3 / kPerGraph;
}

double copy_gbs(cudaStream_t s) {
  const std::size_t bytes = std::size_t{1} << 30;
  char* a = dalloc<char>(bytes);
  char* b = dalloc<char>(bytes);
  PIECEWISE_CUDA_TRY(cudaMemset(a, 1, bytes));
  // Best of 10 plain cudaMemcpy calls timed with events (a memcpy node inside a graph runs on
  // a copy engine at about 2.8 TB/s on the H200, not at the SM copy rate of ~4.2 TB/s).
  cudaEvent_t e0, e1;
  PIECEWISE_CUDA_TRY(cudaEventCreate(&e0));
  PIECEWISE_CUDA_TRY(cudaEventCreate(&e1));
  float best = 1e30f;
  for (int i = 0; i < 12; ++i) {
    PIECEWISE_CUDA_TRY(cudaEventRecord(e0, s));
    PIECEWISE_CUDA_TRY(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
    PIECEWISE_CUDA_TRY(cudaEventRecord(e1, s));
    PIECEWISE_CUDA_TRY(cudaEventSynchronize(e1));
    float ms = 0;
    PIECEWISE_CUDA_TRY(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 2) best = std::min(best, ms);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return 2.0 * bytes / (best * 1e-3) / 1e9;
}

std::vector<bench_case> make_cases() {
  std::vector<bench_case> cs;
  const auto d = k9B;
  const int conv_dim = d.conv_dim(), ldz = d.in_proj_dim(), dinner = d.d_inner();

  // --- argmax over the vocabulary (logits hot in L2: the LM head just wrote them)
  for (int rows : {1, 64}) {
    bf16* logits = random<bf16>(static_cast<std::size_t>(rows) * kVocab, 3.f);
    int* ids = dalloc<int>(rows);
    int* nr = dalloc<int>(1);
    int* step = dalloc<int>(1);
    PIECEWISE_CUDA_TRY(cudaMemcpy(nr, &rows, sizeof(int), cudaMemcpyHostToDevice));
    PIECEWISE_CUDA_TRY(cudaMemset(step, 0, sizeof(int)));
    cs.push_back({"argmax_rows rows=" + std::to_string(rows) + " V=131072 (+step)", 2.0 * rows * kVocab,
                  [=](int, cudaStream_t s) {
                    // history stays null here (the step would run past its rows); the step
                    // bump kernel still runs, as in the model's decode step.
                    nh::argmax_rows(logits, kVocab, ids, rows, nr, nullptr, 0, step, s);
                  }});
  }

  // --- Mamba2 decode update: fp32 state cold (rotating slots), inputs hot
  for (int batch : {1, 8, 64}) {
    const int groups = batch == 1 ? 16 : batch == 8 ? 4 : 1;  // slots > 50 MB of L2
    const int slots = groups * batch;
    const std::size_t slot_elems = static_cast<std::size_t>(d.H) * d.P * d.N;
    float* st = random<float>(slot_elems * slots, 0.3f);
    float* A_log = random<float>(d.H, 0.5f);
    float* Dv = random<float>(d.H);
    float* dtb = random<float>(d.H);
    bf16* xbc = random<bf16>(static_cast<std::size_t>(batch) * conv_dim);
    bf16* zx = random<bf16>(static_cast<std::size_t>(batch) * ldz);
    bf16* y = dalloc<bf16>(static_cast<std::size_t>(batch) * dinner);
    std::vector<nh::batch_view> bv;
    for (int gi = 0; gi < groups; ++gi) bv.push_back(make_batch(std::vector<int>(batch, 1), 5, gi * batch));
    cs.push_back({"mamba_decode batch=" + std::to_string(batch), 2.0 * batch * slot_elems * 4,
                  [=](int i, cudaStream_t s) {
                    nh::mamba_decode(xbc, zx + d.dt_offset(), ldz, A_log, Dv, dtb, st, y, bv[i % groups], d, 1e-3f,
                                     INFINITY, s);
                  }});
  }

  // --- conv1d decode (state cold-ish: rotating slots) and prefill
  {
    bf16* w = random<bf16>(static_cast<std::size_t>(conv_dim) * 4, 0.5f);
    bf16* b = random<bf16>(conv_dim, 0.1f);
    for (int batch : {1, 64}) {
      const int groups = batch == 1 ? 16 : 1;
      bf16* zx = random<bf16>(static_cast<std::size_t>(batch) * ldz);
      bf16* cst = random<bf16>(static_cast<std::size_t>(groups) * batch * 3 * conv_dim);
      bf16* out = dalloc<bf16>(static_cast<std::size_t>(batch) * conv_dim);
      std::vector<nh::batch_view> bv;
      for (int gi = 0; gi < groups; ++gi) bv.push_back(make_batch(std::vector<int>(batch, 1), 5, gi * batch));
      cs.push_back({"conv1d_decode batch=" + std::to_string(batch), 2.0 * batch * conv_dim * 2 * 4,
                    [=](int i, cudaStream_t s) {
                      nh::conv1d_decode(zx + d.xbc_offset(), ldz, w, b, cst, out, bv[i % groups], conv_dim, 4, s);
                    }});
    }
    for (int T : {16, 128, 4096}) {
      bf16* zx = random<bf16>(static_cast<std::size_t>(T) * ldz);
      bf16* cst = random<bf16>(static_cast<std::size_t>(16) * 3 * conv_dim);
      bf16* out = dalloc<bf16>(static_cast<std::size_t>(T) * conv_dim);
      const nh::batch_view bv = make_batch({T}, 0, 0, T == 16 ? 16 : 0);
      cs.push_back({"conv1d_prefill tokens=" + std::to_string(T) + (T == 16 ? " (16-slot bucket)" : ""),
                    2.0 * T * conv_dim * 2,
                    [=](int, cudaStream_t s) {
                      nh::conv1d_prefill(zx + d.xbc_offset(), ldz, w, b, cst, out, bv, conv_dim, 4, s);
                    }});
    }
  }

  // --- SSD scan (prefill): one fresh sequence; the same in a runner bucket of 16 tokens and
  // 16 sequence slots (the model's 16-token prefill); 8 sequences of 16 tokens
  struct scan_shape {
    std::vector<int> lens;
    int max_seqs;
    std::string name;
  };
  for (const scan_shape& sh : {scan_shape{{16}, 0, "tokens=16"}, scan_shape{{16}, 16, "tokens=16 in a 16-slot bucket"},
                               scan_shape{std::vector<int>(8, 16), 0, "8 x 16 tokens"}, scan_shape{{128}, 0, "tokens=128"},
                               scan_shape{{1024}, 0, "tokens=1024"}, scan_shape{{4096}, 0, "tokens=4096"}}) {
    const nh::batch_view bv = make_batch(sh.lens, 0, 0, sh.max_seqs);
    const int T = bv.padded_tokens;
    const std::size_t wsb = nh::ssd_scan_workspace_bytes(T, bv.max_seqs, d);
    char* ws = dalloc<char>(wsb);
    float* st = random<float>(static_cast<std::size_t>(bv.max_seqs) * d.H * d.P * d.N, 0.3f);
    float* A_log = random<float>(d.H, 0.5f);
    float* Dv = random<float>(d.H);
    float* dtb = random<float>(d.H);
    bf16* xbc = random<bf16>(static_cast<std::size_t>(T) * conv_dim);
    bf16* zx = random<bf16>(static_cast<std::size_t>(T) * ldz);
    bf16* y = dalloc<bf16>(static_cast<std::size_t>(T) * dinner);
    cs.push_back({"ssd_scan " + sh.name, 0, [=](int, cudaStream_t s) {
                    nh::ssd_scan(xbc, zx + d.dt_offset(), ldz, A_log, Dv, dtb, st, y, ws, wsb, bv, d, 1e-3f, INFINITY,
                                 s);
                  }});
  }

  // --- norms (x hot; 1 and 16 rows are the decode / short-prefill shapes)
  for (int rows : {1, 16, 4096}) {
    bf16* x = random<bf16>(static_cast<std::size_t>(rows) * kD);
    bf16* r = random<bf16>(static_cast<std::size_t>(rows) * kD);
    bf16* w = random<bf16>(kD, 0.2f, 1.f);
    bf16* y = dalloc<bf16>(static_cast<std::size_t>(rows) * kD);
    cs.push_back({"rmsnorm rows=" + std::to_string(rows) + " D=4480", 2.0 * rows * kD * 2,
                  [=](int, cudaStream_t s) { nh::rmsnorm(x, w, y, rows, kD, 1e-5f, s); }});
    cs.push_back({"add_rmsnorm rows=" + std::to_string(rows) + " D=4480", 4.0 * rows * kD * 2,
                  [=](int, cudaStream_t s) { nh::add_rmsnorm(x, r, w, y, rows, kD, 1e-5f, s); }});
    bf16* yb = random<bf16>(static_cast<std::size_t>(rows) * dinner);
    bf16* z = random<bf16>(static_cast<std::size_t>(rows) * ldz);
    bf16* gw = random<bf16>(dinner, 0.2f, 1.f);
    bf16* go = dalloc<bf16>(static_cast<std::size_t>(rows) * dinner);
    cs.push_back({"gated_rmsnorm rows=" + std::to_string(rows) + " d_inner=10240 G=8", 3.0 * rows * dinner * 2,
                  [=](int, cudaStream_t s) {
                    nh::gated_rmsnorm(yb, dinner, z, ldz, gw, go, dinner, rows, dinner, 8, 1e-5f, s);
                  }});
  }

  // --- decode attention at context 4096 (KV cold: 64 MB at batch 64; rotating at batch 1)
  for (int B : {1, 64}) {
    const int C = 4096;
    const int groups = B == 1 ? 16 : 1;
    const int slots = groups * B;
    bf16* kv = random<bf16>(2 * static_cast<std::size_t>(slots) * C * kHkv * kHD);
    const nh::kv_cache_view cache = nh::make_kv_cache_view(kv, slots, C, kHkv, kHD);
    const int ld = (kHq + 2 * kHkv) * kHD;
    bf16* qkv = random<bf16>(static_cast<std::size_t>(B) * ld);
    bf16* out = dalloc<bf16>(static_cast<std::size_t>(B) * kHq * kHD);
    std::vector<nh::batch_view> bv;
    for (int gi = 0; gi < groups; ++gi) bv.push_back(make_batch(std::vector<int>(B, 1), C - 1, gi * B));
    const std::size_t wsb = nh::attention_decode_workspace_bytes(B, kHq, kHkv, kHD, C);
    char* ws = dalloc<char>(wsb);
    PIECEWISE_CUDA_TRY(cudaMemset(ws, 0, wsb));  // the split counters start at zero
    cs.push_back({"attention_decode batch=" + std::to_string(B) + " context=4096 (kv append fused)",
                  2.0 * B * C * kHkv * kHD * 2, [=](int i, cudaStream_t s) {
                    nh::attention_decode(qkv, ld, qkv + kHq * kHD, qkv + (kHq + kHkv) * kHD, ld, cache,
                                         bv[i % groups], kHq, out, kHq * kHD, ws, wsb, C, s);
                  }});
  }
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  return cs;
}

}  // namespace

int main(int argc, char** argv) {
  const bool once = argc > 1 && std::strcmp(argv[1], "--once") == 0;
  cudaStream_t s = nullptr;
  PIECEWISE_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaDeviceProp prop{};
  PIECEWISE_CUDA_TRY(cudaGetDeviceProperties(&prop, 0));
  const auto cases = make_cases();
  if (once) {
    for (const auto& c : cases) {
      for (int i = 0; i < 3; ++i) c.run(i, s);
      PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
      std::printf("ran %s\n", c.name.c_str());
    }
  } else {
    const double bw = copy_gbs(s);
    std::printf("device %s, copy bandwidth %.0f GB/s (1 GiB D2D, read + write)\n", prop.name, bw);
    std::printf("%-52s %12s %12s\n", "case", "us/launch", "of copy bw");
    for (const auto& c : cases) {
      const double us = graph_us(c, s);
      if (c.bytes > 0)
        std::printf("%-52s %12.2f %12.2f\n", c.name.c_str(), us, c.bytes / (us * 1e-6) / 1e9 / bw);
      else
        std::printf("%-52s %12.2f %12s\n", c.name.c_str(), us, "-");
    }
  }
  PIECEWISE_CUDA_TRY(cudaStreamDestroy(s));
  for (void* p : g_allocs) cudaFree(p);
  return 0;
}
