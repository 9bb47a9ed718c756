// A tour of the rest of the engine API, in one small program that checks its own results:
// full mode with capture-safe split points that read the real count from the device, declared
// inputs and outputs, a decode runner beside a prefill runner, runner_options (mode, warm-ups,
// validation), update() after a buffer moves, and the statistics. minimal_engine.cu shows the
// piecewise path. Exits 0 when every check holds, 1 on a failed check or error, 2 without a GPU.
#include <cmath>
#include <cstdio>
#include <vector>

#include "piecewise/piecewise.hpp"

namespace {
constexpr int kMaxTokens = 256, kMaxBatch = 16;

__global__ void affine(const float* in, float* out, float a, float b, int n) {  // captured whole
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a * in[i] + b;
}
// Capture-safe split point: the real count comes from the device, so one captured launch is
// right for every count that maps to this bucket.
__global__ void prefix_sum(const float* in, float* out, const int* real) {
  if (threadIdx.x == 0)
    for (int i = 0, n = *real; i < n; ++i) out[i] = (i ? out[i - 1] : 0.f) + in[i];
}
__global__ void accumulate(const float* in, float* state, float* out, const int* real) {  // decode
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < *real) out[i] = state[i] += in[i];
}
int blocks(int n) { return (n + 127) / 128; }

int failures = 0;
void check(bool ok, const char* what) {
  std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what);
  failures += !ok;
}
std::vector<float> read(const float* p, int n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  PIECEWISE_CUDA_TRY(cudaMemcpy(v.data(), p, v.size() * sizeof(float), cudaMemcpyDeviceToHost));
  return v;
}
}  // namespace

int main() try {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("engine_tour needs a CUDA GPU\n");
    return 2;
  }
  piecewise::device_arena arena(8 * kMaxTokens * sizeof(float));
  float* x = arena.allocate<float>(kMaxTokens, "x");
  float* mix = arena.allocate<float>(kMaxTokens, "mix");
  float* out = arena.allocate<float>(kMaxTokens, "out");
  float* state = arena.allocate<float>(kMaxBatch, "state");
  float* moved_out = arena.allocate<float>(kMaxTokens, "out (moved)");

  // Prefill: layer 0 affine, layer 1 prefix sum (split, capture-safe), layer 2 affine.
  piecewise::segment_table prefill(3);
  prefill.set_split(1, {"prefix-sum", [&](const piecewise::split_args& a) {
                          prefix_sum<<<1, 32, 0, a.stream>>>(mix, mix, a.device_real_tokens);
                        }, /*capture_safe=*/true, {{"mix", mix, sizeof(float), 0, kMaxTokens}}});
  prefill.declare_input({"x", x, sizeof(float), 0, kMaxTokens, piecewise::element_type::f32});
  prefill.declare_output({"out", out, sizeof(float), 0, kMaxTokens, piecewise::element_type::f32});
  float* prefill_out = out;
  auto prefill_forward = [&](piecewise::forward_context& ctx) {
    const int n = ctx.padded_tokens();
    affine<<<blocks(n), 128, 0, ctx.stream()>>>(x, mix, 2.f, 0.f, n);
    ctx.split(1);
    affine<<<blocks(n), 128, 0, ctx.stream()>>>(mix, prefill_out, 1.f, 1.f, n);
  };
  piecewise::runner_options po;
  po.requested = piecewise::mode::full;  // every split point is capture-safe
  po.warmup_runs = 1;
  po.validate = true;                    // every replay checks the declared addresses
  po.name = "prefill";
  piecewise::graph_runner pre(prefill, piecewise::capture_buckets::default_prefill(kMaxTokens), prefill_forward, po);

  // Decode: one split point that updates per-sequence state, beside the prefill runner.
  piecewise::segment_table decode(1);
  decode.set_split(0, {"state-update", [&](const piecewise::split_args& a) {
                         accumulate<<<blocks(a.padded_tokens), 128, 0, a.stream>>>(x, state, out, a.device_real_tokens);
                       }, true, {{"out", out, sizeof(float), 0, kMaxBatch}}});
  piecewise::runner_options dopt = po;
  dopt.name = "decode";
  piecewise::graph_runner dec(decode, piecewise::capture_buckets::default_decode(kMaxBatch),
                              [](piecewise::forward_context& ctx) { ctx.split(0); }, dopt);
  pre.capture();
  dec.capture();
  std::printf("%s%s", pre.report().c_str(), dec.report().c_str());

  piecewise::stream s;
  std::printf("checks:\n");
  const std::vector<float> ones(kMaxTokens, 1.f), zeros(kMaxBatch, 0.f);
  PIECEWISE_CUDA_TRY(cudaMemcpy(x, ones.data(), kMaxTokens * sizeof(float), cudaMemcpyHostToDevice));
  // A pageable cudaMemcpy may return before its DMA lands; `s` is a non-blocking stream.
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  pre.run(100, s);  // bucket 112: rows 100..111 of x are zeroed first, the scan reads 100 rows
  s.synchronize();
  const auto p = read(out, 100);
  check(p[0] == 3.f && p[99] == 201.f, "full-graph prefill of 100 tokens: out[t] = 2 (t + 1) + 1");
  const auto v = pre.validate_against_eager(77, s, {});
  check(v.bitwise_equal, "replay == eager for 77 tokens, bit for bit");

  PIECEWISE_CUDA_TRY(cudaMemcpy(state, zeros.data(), kMaxBatch * sizeof(float), cudaMemcpyHostToDevice));
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  for (int step = 0; step < 3; ++step) dec.run(5, s);
  s.synchronize();
  check(read(out, 5)[4] == 3.f, "three decode steps of batch 5: state = 3");
  check(dec.stats().graph_replays == 3 && dec.stats_for(5).replays == 3, "decode statistics: 3 replays of bucket 5");

  // The output moves: replays are refused until update() re-captures onto the new address.
  prefill_out = moved_out;
  prefill.rebind("out", moved_out);
  bool refused = false;
  try {
    pre.run(10, s);
  } catch (const piecewise::error& e) {
    refused = true;
    std::printf("  refused as expected: %s\n", e.what());
  }
  check(refused, "a replay after rebind() is refused");
  const piecewise::update_report rep = pre.update();
  std::printf("  %s\n", rep.to_string().c_str());
  pre.run(10, s);
  s.synchronize();
  check(read(moved_out, 10)[9] == 21.f && rep.segments_reinstantiated == 0,
        "after update(): the graphs write the moved buffer, updated in place");
  const auto& st = pre.stats_for(16);
  std::printf("bucket 16: %d graph, %d kernels, captured in %.2f ms, instantiated in %.2f ms\n", st.segments,
              st.nodes.kernel, st.capture_ms, st.instantiate_ms);
  std::printf("%s", pre.report().c_str());
  return failures == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
