// GPU timing for the NemotronH benchmarks: two timing-enabled piecewise::event around the
// work a callable enqueues. Not capture-safe (it waits for the second event).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "piecewise/handles.hpp"

namespace nemotron_h {

class event_timer {
 public:
  /// Milliseconds of the work fn() enqueues on `stream` (default: the legacy stream).
  /// Throws piecewise::cuda_error.
  template <typename F>
  float ms(F&& fn, cudaStream_t stream = nullptr) {
    start_.record(stream);
    fn();
    stop_.record(stream);
    stop_.synchronize();
    return stop_.elapsed_ms_since(start_);
  }
  /// The fastest of `runs` timings of fn(), after `warmups` timings that do not count.
  template <typename F>
  float best_ms(F&& fn, int warmups = 3, int runs = 10, cudaStream_t stream = nullptr) {
    float best = 1e30f;
    for (int i = 0; i < warmups + runs; ++i) {
      const float t = ms(fn, stream);
      if (i >= warmups) best = std::min(best, t);
    }
    return best;
  }

 private:
  piecewise::event start_{cudaEventDefault}, stop_{cudaEventDefault};
};

}  // namespace nemotron_h
