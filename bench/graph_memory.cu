// Device memory taken by graph executables, and the host cost of switching one executable
// between graphs: the basis for the piecewise graph-memory design (docs/benchmarks.md).
//
//   piecewise_graph_memory                    the memory table: each shape in a fresh process
//                                             (the driver keeps freed graph memory cached, so
//                                             shapes measured in one process hide each other)
//   piecewise_graph_memory --nodes N --execs E --upload 0|1
//                                             one shape: capture a chain of N tiny kernels,
//                                             instantiate E executables of it (uploaded, or
//                                             launched once), print the cudaMemGetInfo delta
//   piecewise_graph_memory --update N         host time of cudaGraphExecUpdate between two
//                                             N-node graphs that differ in every kernel's
//                                             grid and arguments, idle and behind in-flight
//                                             launches of the same executable, next to
//                                             cudaGraphLaunch and cudaGraphInstantiate
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <unistd.h>

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

piecewise::graph chain(cudaStream_t s, float* buf, int nodes, int blocks, float bias) {
  PIECEWISE_CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int k = 0; k < nodes; ++k) tiny<<<blocks, 128, 0, s>>>(buf, bias + 1.f * k, blocks * 128);
  cudaGraph_t g = nullptr;
  PIECEWISE_CUDA_TRY(cudaStreamEndCapture(s, &g));
  return piecewise::graph::from_native_handle(g);
}

using clk = std::chrono::steady_clock;
double us(clk::time_point a, clk::time_point b) { return std::chrono::duration<double, std::micro>(b - a).count(); }

void one_shape(int nodes, int execs, bool upload) {
  piecewise::device_buffer buf(1 << 20, "scratch");
  piecewise::stream s;
  piecewise::graph graph = chain(s, buf.as<float>(), nodes, 4, 0.f);
  // One executable first, so the CUDA context's own lazy allocations are not counted.
  { piecewise::graph_exec warm = piecewise::graph_exec::instantiate(graph, s.get()); warm.launch(s); }
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

void update_cost(int nodes) {
  piecewise::device_buffer buf(1 << 22, "scratch");
  piecewise::stream s;
  piecewise::graph a = chain(s, buf.as<float>(), nodes, 4, 0.f);
  piecewise::graph b = chain(s, buf.as<float>() + 4096, nodes, 8, 3.f);
  const int reps = 200;
  auto t0 = clk::now();
  piecewise::graph_exec x = piecewise::graph_exec::instantiate(a, s.get());
  const double inst = us(t0, clk::now());
  x.launch(s);
  s.synchronize();
  double idle = 0, busy = 0, launch = 0;
  for (int r = 0; r < reps; ++r) {  // idle: the executable has no launch in flight
    const auto t1 = clk::now();
    if (!x.update(r % 2 == 0 ? b : a)) throw piecewise::error("cudaGraphExecUpdate refused a same-topology graph");
    idle += us(t1, clk::now());
  }
  s.synchronize();
  for (int r = 0; r < reps; ++r) {  // busy: update right behind a launch of the same executable
    const auto t1 = clk::now();
    x.launch(s);
    const auto t2 = clk::now();
    if (!x.update(r % 2 == 0 ? b : a)) throw piecewise::error("cudaGraphExecUpdate refused a same-topology graph");
    const auto t3 = clk::now();
    launch += us(t1, t2);
    busy += us(t2, t3);
  }
  s.synchronize();
  std::printf("%8d %14.1f %14.1f %14.1f %14.1f\n", nodes, idle / reps, busy / reps, launch / reps, inst);
}
}  // namespace

int main(int argc, char** argv) try {
  int nodes = -1, execs = -1, upload = -1, update = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--nodes") nodes = v;
    else if (k == "--execs") execs = v;
    else if (k == "--upload") upload = v;
    else if (k == "--update") update = v;
    else throw piecewise::config_error("unknown option " + k + " (--nodes N --execs E --upload 0|1, or --update N)");
  }
  if (update > 0) {
    std::printf("%8s %14s %14s %14s %14s\n", "nodes", "update_idle_us", "update_busy_us", "launch_us", "instantiate_us");
    update_cost(update);
    return 0;
  }
  if (nodes > 0 && execs > 0 && upload >= 0) {
    one_shape(nodes, execs, upload != 0);
    return 0;
  }
  std::printf("%8s %8s %8s %12s %12s %12s\n", "nodes", "execs", "upload", "total_MiB", "KiB/exec", "B/node");
  std::fflush(stdout);
  char path[4096] = {};
  const ssize_t len = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (len <= 0) throw piecewise::error("cannot read /proc/self/exe to run each shape in a fresh process");
  const std::string self(path, static_cast<std::size_t>(len));
  for (int n : {1, 16, 64, 256, 1024})
    for (int e : {64, 512})
      for (int u : {0, 1}) {
        const std::string cmd = "\"" + self + "\" --nodes " + std::to_string(n) + " --execs " + std::to_string(e) +
                                " --upload " + std::to_string(u);
        if (std::system(cmd.c_str()) != 0) throw piecewise::error("a child run failed: " + cmd);
      }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
