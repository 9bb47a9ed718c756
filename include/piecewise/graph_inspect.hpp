// piecewise/graph_inspect.hpp — what a captured graph contains, and Graphviz export.
// Host-only; safe to call on graphs that are not being captured.
#pragma once

#include <cuda_runtime.h>

#include <string>

namespace piecewise {

/// Node counts of a graph by type.
struct graph_node_counts {
  int total = 0;
  int kernel = 0;
  int memcpy = 0;
  int memset = 0;
  int host = 0;       ///< host callbacks: CPU work that replays, usually a mistake
  int mem_alloc = 0;  ///< cudaMallocAsync inside capture: the graph owns memory
  int mem_free = 0;
  int event = 0;      ///< event record / wait nodes
  int empty = 0;
  int child = 0;
  int conditional = 0;
  int other = 0;

  graph_node_counts& operator+=(const graph_node_counts& o) noexcept;
};

/// Counts the nodes of `g` by type (child graphs count as one node). Throws cuda_error.
graph_node_counts inspect_graph(cudaGraph_t g);

/// Writes `g` as a Graphviz DOT file (cudaGraphDebugDotPrint, verbose). Throws cuda_error
/// naming the path.
void write_graph_dot(cudaGraph_t g, const std::string& path);

/// "12 nodes: 10 kernel, 2 memset" style summary.
std::string to_string(const graph_node_counts& c);

}  // namespace piecewise
