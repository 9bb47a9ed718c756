#include "piecewise/graph_inspect.hpp"

#include <vector>

#include <fmt/format.h>

#include "piecewise/cuda_error.hpp"

namespace piecewise {

graph_node_counts& graph_node_counts::operator+=(const graph_node_counts& o) noexcept {
  total += o.total;
  kernel += o.kernel;
  memcpy += o.memcpy;
  memset += o.memset;
  host += o.host;
  mem_alloc += o.mem_alloc;
  mem_free += o.mem_free;
  event += o.event;
  empty += o.empty;
  child += o.child;
  conditional += o.conditional;
  other += o.other;
  return *this;
}

graph_node_counts inspect_graph(cudaGraph_t g) {
  graph_node_counts c;
  std::size_t n = 0;
  PIECEWISE_CUDA_TRY(cudaGraphGetNodes(g, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  if (n > 0) PIECEWISE_CUDA_TRY(cudaGraphGetNodes(g, nodes.data(), &n));
  c.total = static_cast<int>(n);
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType t{};
    PIECEWISE_CUDA_TRY(cudaGraphNodeGetType(node, &t));
    switch (t) {
      case cudaGraphNodeTypeKernel: ++c.kernel; break;
      case cudaGraphNodeTypeMemcpy: ++c.memcpy; break;
      case cudaGraphNodeTypeMemset: ++c.memset; break;
      case cudaGraphNodeTypeHost: ++c.host; break;
      case cudaGraphNodeTypeMemAlloc: ++c.mem_alloc; break;
      case cudaGraphNodeTypeMemFree: ++c.mem_free; break;
      case cudaGraphNodeTypeEventRecord:
      case cudaGraphNodeTypeWaitEvent: ++c.event; break;
      case cudaGraphNodeTypeEmpty: ++c.empty; break;
      case cudaGraphNodeTypeGraph: ++c.child; break;
      case cudaGraphNodeTypeConditional: ++c.conditional; break;
      default: ++c.other; break;
    }
  }
  return c;
}

void write_graph_dot(cudaGraph_t g, const std::string& path) {
  PIECEWISE_CUDA_TRY_CTX(cudaGraphDebugDotPrint(g, path.c_str(), cudaGraphDebugDotFlagsVerbose),
                         fmt::format("writing '{}'", path));
}

std::string to_string(const graph_node_counts& c) {
  std::string s = fmt::format("{} nodes", c.total);
  std::string sep = ": ";
  auto add = [&](int v, const char* what) {
    if (v == 0) return;
    s += fmt::format("{}{} {}", sep, v, what);
    sep = ", ";
  };
  add(c.kernel, "kernel");
  add(c.memcpy, "memcpy");
  add(c.memset, "memset");
  add(c.host, "host");
  add(c.mem_alloc, "alloc");
  add(c.mem_free, "free");
  add(c.event, "event");
  add(c.empty, "empty");
  add(c.child, "child graph");
  add(c.conditional, "conditional");
  add(c.other, "other");
  return s;
}

}  // namespace piecewise
