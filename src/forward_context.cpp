// forward_context: what split(i) does in each kind of forward.
#include "piecewise/forward_context.hpp"

#include <fmt/format.h>

#include "piecewise/cuda_error.hpp"
#include "piecewise/padding.hpp"
#include "split_call.hpp"

namespace piecewise {

forward_context::forward_context(const segment_table& table, const std::string& runner_name, kind k,
                                 int real, int padded, cudaStream_t s, void* user, const int* device_real)
    : runner_name_(runner_name), kind_(k), real_(real), padded_(padded), stream_(s), user_(user),
      device_real_(device_real), schedule_(table, fmt::format("runner '{}'", runner_name)) {}

void forward_context::split(int layer) {
  const split_point& sp = schedule_.enter(layer);
  const auto zero_outputs = [&] {
    for (const auto& b : sp.zero_outputs) zero_padded_rows(b, device_real_, padded_, stream_);
  };
  switch (kind_) {
    case kind::eager:
      detail::invoke_split(runner_name_, sp, split_args{layer, real_, padded_, stream_, user_, device_real_, false},
                           "an eager forward");
      if (real_ < padded_) zero_outputs();
      break;
    case kind::capture_full:
      detail::invoke_split(runner_name_, sp, split_args{layer, real_, padded_, stream_, user_, device_real_, true},
                           "full-graph capture");
      zero_outputs();
      break;
    case kind::capture_piecewise: {
      cudaGraph_t g = nullptr;
      PIECEWISE_CUDA_TRY_CTX(cudaStreamEndCapture(stream_, &g),
                             fmt::format("ending segment {} at split layer {}", segments_.size(), layer));
      segments_.push_back(graph::from_native_handle(g));
      PIECEWISE_CUDA_TRY_CTX(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                             fmt::format("starting segment {} after split layer {}", segments_.size(), layer));
      // The split's padded rows are cleaned at the head of the next segment.
      zero_outputs();
      break;
    }
  }
}

void forward_context::finish() { schedule_.finish(); }

}  // namespace piecewise
