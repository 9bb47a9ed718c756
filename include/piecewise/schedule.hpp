// piecewise/schedule.hpp — checks that a forward calls its split points as the table says.
//
// A forward must call split(i) exactly at the table's non-null layers, in ascending order,
// each once. split_schedule tracks one forward's progress and throws schedule_error naming
// the layer and what was expected when it does not. Host-only, capture-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "piecewise/error.hpp"
#include "piecewise/segment_table.hpp"

namespace piecewise {

class split_schedule {
 public:
  /// `owner` names the runner in messages.
  split_schedule(const segment_table& table, std::string owner)
      : table_(table), owner_(std::move(owner)), expected_(table.split_layers()) {}

  /// Records a split call at `layer` and returns its split point. Throws schedule_error if
  /// the layer is out of range, its entry is null, or it is not the next expected split.
  const split_point& enter(int layer) {
    if (layer < 0 || layer >= table_.num_layers())
      throw schedule_error(fmt::format("{}: split called at layer {}, out of range (the table has {} layers)",
                                       owner_, layer, table_.num_layers()));
    const split_point* sp = table_.at(layer);
    if (sp == nullptr)
      throw schedule_error(fmt::format("{}: split called at layer {}, whose table entry is null (a "
                                       "placeholder captured whole); expected {}",
                                       owner_, layer, expected_text()));
    if (next_ >= expected_.size() || expected_[next_] != layer)
      throw schedule_error(fmt::format("{}: split at layer {} ('{}') is out of order; expected {}",
                                       owner_, layer, sp->name, expected_text()));
    ++next_;
    return *sp;
  }

  /// Throws schedule_error naming the first split point that was never reached.
  void finish() const {
    if (next_ == expected_.size()) return;
    const int layer = expected_[next_];
    throw schedule_error(fmt::format("{}: the forward returned without reaching the split point at "
                                     "layer {} ('{}'); {} of {} split points were called",
                                     owner_, layer, table_.at(layer)->name, next_, expected_.size()));
  }

  [[nodiscard]] std::size_t reached() const noexcept { return next_; }
  [[nodiscard]] const std::vector<int>& expected() const noexcept { return expected_; }

 private:
  [[nodiscard]] std::string expected_text() const {
    return next_ < expected_.size() ? fmt::format("the split point at layer {}", expected_[next_])
                                    : std::string("no further split point");
  }

  const segment_table& table_;
  std::string owner_;
  std::vector<int> expected_;
  std::size_t next_ = 0;
};

}  // namespace piecewise
