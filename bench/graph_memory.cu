// Device memory taken by graph executables, as a function of their node count and how many
// there are: the basis for the piecewise graph-memory target (docs/benchmarks.md). For each
// shape, captures a chain of `nodes` tiny kernels, instantiates `execs` copies (uploaded, or
// not), and reports the cudaMemGetInfo delta per executable and per node.
//   piecewise_graph_memory            prints a table
#include <cstdio>
#include <vector>

#include "piecewise/piecewise.hpp"

namespace {
__global__ void tiny(float* p, float v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = p[i] * 0.5f + v;
}

std::size_t free_bytes() {
  std::size_t f = 0, t = 0;
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  PIECEWISE_CUDA_TRY(cudaMemGetInfo(&f, &t));
  return f;
}
}  // namespace

int main() try {
  piecewise::device_buffer buf(1 << 20, "scratch");
  piecewise::stream s;
  std::printf("%8s %8s %8s %12s %12s %12s\n", "nodes", "execs", "upload", "total_MiB", "KiB/exec", "B/node");
  for (int nodes : {1, 16, 64, 256, 1024}) {
    for (int execs : {64, 512}) {
      for (bool upload : {false, true}) {
        PIECEWISE_CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        for (int k = 0; k < nodes; ++k) tiny<<<4, 128, 0, s>>>(buf.as<float>(), 1.f * k, 512);
        cudaGraph_t g = nullptr;
        PIECEWISE_CUDA_TRY(cudaStreamEndCapture(s, &g));
        piecewise::graph graph = piecewise::graph::from_native_handle(g);
        const std::size_t f0 = free_bytes();
        std::vector<piecewise::graph_exec> ex;
        for (int e = 0; e < execs; ++e) ex.push_back(piecewise::graph_exec::instantiate(graph, upload ? s.get() : nullptr));
        if (!upload)
          for (auto& x : ex) x.launch(s);  // memory a first launch takes
        const std::size_t f1 = free_bytes();
        const double bytes = static_cast<double>(f0) - static_cast<double>(f1);
        std::printf("%8d %8d %8s %12.1f %12.1f %12.0f\n", nodes, execs, upload ? "yes" : "launch", bytes / 1048576.0,
                    bytes / execs / 1024.0, bytes / execs / nodes);
      }
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
