// piecewise/forward_context.hpp — what a model's forward sees: the token counts, the stream,
// and split(i) at every split point of the segment table.
//
// The forward is written once, as ordinary code that launches kernels on ctx.stream() and
// calls ctx.split(i) at every layer i whose table entry is a split point; a graph_runner
// (piecewise/runner.hpp) runs it eagerly, captures it piecewise, or captures it whole. Model
// code includes only this header.
//
// Rules a forward must follow (checked and reported, never silently ignored):
// - call ctx.split(i) exactly at the table's split points, in ascending layer order;
// - launch only on ctx.stream() (streams forked from it must be joined before a split);
// - allocate nothing and synchronize nothing; use fixed-address buffers sized for the
//   largest bucket;
// - non-split kernels process ctx.padded_tokens() rows; kernels whose result depends on the
//   real count read it from ctx.device_real_tokens() (or their own device metadata).
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <string>
#include <vector>

#include "piecewise/handles.hpp"
#include "piecewise/schedule.hpp"
#include "piecewise/segment_table.hpp"

namespace piecewise {

class graph_runner;

/// Handed to the forward. Not copyable; valid only during the forward call.
class forward_context {
 public:
  forward_context(const forward_context&) = delete;
  forward_context& operator=(const forward_context&) = delete;

  /// Real token count. While capturing it equals padded_tokens(): kernels whose result
  /// depends on the real count must read device_real_tokens() (or their own device metadata).
  [[nodiscard]] int real_tokens() const noexcept { return real_; }
  /// The bucket size (rows every non-split kernel must process).
  [[nodiscard]] int padded_tokens() const noexcept { return padded_; }
  [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }
  /// runner_options::user of the runner.
  [[nodiscard]] void* user() const noexcept { return user_; }
  /// Device int holding the real count of the forward being run or replayed (fixed address).
  [[nodiscard]] const int* device_real_tokens() const noexcept { return device_real_; }
  /// True while the forward is being captured (piecewise or full).
  [[nodiscard]] bool capturing() const noexcept { return kind_ != kind::eager; }

  /// Marks the split point of `layer`: runs its callback (eager), or ends the current segment
  /// graph and starts the next one (piecewise capture), or captures the callback (full), and
  /// zeroes the padded rows of the split point's declared outputs. Throws schedule_error
  /// naming the layer and what was expected if the table's entry at `layer` is null, out of
  /// range or out of order; a throwing callback surfaces as error naming the runner, split
  /// point, layer, phase, real count and bucket, with the callback's exception nested.
  void split(int layer);

 private:
  friend class graph_runner;
  enum class kind { eager, capture_piecewise, capture_full };
  forward_context(const segment_table& table, const std::string& runner_name, kind k, int real,
                  int padded, cudaStream_t s, void* user, const int* device_real);
  void finish();  // throws schedule_error unless every split point was reached

  const std::string& runner_name_;
  kind kind_;
  int real_;
  int padded_;
  cudaStream_t stream_;
  void* user_;
  const int* device_real_;
  split_schedule schedule_;
  std::vector<graph> segments_;  // finished segment graphs (piecewise capture)
};

/// The model's forward, written once for every mode.
using forward_fn = std::function<void(forward_context&)>;

}  // namespace piecewise
