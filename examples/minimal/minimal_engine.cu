// The smallest engine that uses piecewise: a 6-layer model whose layer 3 needs the real
// token count (a split point run eagerly between two captured segments).
#include <cstdio>
#include <vector>

#include "piecewise/piecewise.hpp"

__global__ void scale(float* h, float f, int n) {  // a "layer" captured inside a segment
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) h[i] = h[i] * f + 1.f;
}
__global__ void prefix_sum(float* h, int real) {  // needs the real count: a split point
  if (threadIdx.x == 0 && blockIdx.x == 0)
    for (int i = 1; i < real; ++i) h[i] += h[i - 1];
}

int main() try {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("minimal_engine needs a CUDA GPU\n");
    return 2;
  }
  constexpr int kLayers = 6, kMaxTokens = 256;
  piecewise::device_arena arena(kMaxTokens * sizeof(float));
  float* h = arena.allocate<float>(kMaxTokens, "hidden");

  piecewise::segment_table table(kLayers);  // one entry per layer, all null
  table.set_split(3, {"prefix-sum",
                      [h](const piecewise::split_args& a) {
                        prefix_sum<<<1, 32, 0, a.stream>>>(h, a.real_tokens);
                      },
                      /*capture_safe=*/false,
                      {{"hidden", h, sizeof(float), 0, kMaxTokens}}});  // padded rows zeroed after
  std::printf("%s", table.to_string().c_str());

  auto forward = [h](piecewise::forward_context& ctx) {
    const int n = ctx.padded_tokens();
    for (int layer = 0; layer < kLayers; ++layer) {
      if (layer == 3) ctx.split(layer);
      else scale<<<(n + 127) / 128, 128, 0, ctx.stream()>>>(h, 0.5f, n);
    }
  };

  piecewise::graph_runner runner(table, piecewise::capture_buckets::default_prefill(kMaxTokens),
                                 forward);  // mode auto -> piecewise (the split is eager-only)
  runner.capture([](const piecewise::capture_progress& p) {
    std::printf("captured bucket %4d (%d/%d), %d graphs\n", p.bucket, p.index + 1, p.count, p.segments);
  });

  piecewise::stream s;
  for (int n : {5, 100, 256}) {
    std::vector<float> ones(n, 1.f), out(n);
    PIECEWISE_CUDA_TRY(cudaMemcpy(h, ones.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    // A pageable cudaMemcpy may return before its DMA lands; `s` is a non-blocking stream.
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
    runner.run(n, s);  // pick the bucket, replay segments, run the split in between
    s.synchronize();
    PIECEWISE_CUDA_TRY(cudaMemcpy(out.data(), h, n * sizeof(float), cudaMemcpyDeviceToHost));
    std::printf("n=%3d -> bucket %3d, h[n-1] = %g\n", n, runner.buckets().pick(n).size, out[n - 1]);
  }
  std::printf("%s", runner.report().c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
