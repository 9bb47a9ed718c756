// piecewise/segment_table.hpp — the layer-indexed segment table with null placeholders.
//
// One entry per model layer, fixed at construction. A null entry means the layer is
// captured whole inside a segment; a non-null entry is a split point: the forward stops the
// current segment there, the split-point callback runs (eagerly between two segment graphs
// in piecewise mode, captured in full mode), and a new segment starts. After the callback
// the library zeroes rows [real, padded) of the split point's declared outputs, so garbage
// in padded rows never reaches residuals.
//
// The table also names the model's declared inputs (padded rows zeroed before every
// forward), its outputs (compared by the runner's validation) and any other tracked buffers.
// rebind() records that a buffer moved; runners captured before then refuse to replay until
// update()d. All members are host-only; none launch GPU work.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "piecewise/element_type.hpp"
#include "piecewise/error.hpp"

namespace piecewise {

/// What a split-point callback receives.
struct split_args {
  int layer = 0;                          ///< layer index of the split point
  int real_tokens = 0;                    ///< real token (or batch) count of this forward
  int padded_tokens = 0;                  ///< the bucket size (== real_tokens when eager-unpadded)
  cudaStream_t stream = nullptr;          ///< launch everything on this stream
  void* user = nullptr;                   ///< the runner's user context pointer
  const int* device_real_tokens = nullptr;///< device int holding real_tokens (fixed address)
  bool capturing = false;                 ///< true while captured into a full graph: real_tokens
                                          ///< is then the padded count; read the device value
};

/// A split-point callback. It must launch its work on args.stream and not synchronize.
using split_fn = std::function<void(const split_args&)>;

/// A device buffer of `rows` rows (the capacity, i.e. the largest bucket) of `row_bytes`
/// bytes, `pitch` bytes apart (0 = row_bytes). Rows [real, padded) are the padding.
struct row_buffer {
  std::string name;
  void* data = nullptr;
  std::size_t row_bytes = 0;
  std::size_t pitch = 0;
  int rows = 0;
  element_type type = element_type::bytes;

  [[nodiscard]] std::size_t stride() const noexcept { return pitch == 0 ? row_bytes : pitch; }
};

/// A non-null table entry.
struct split_point {
  std::string name;                    ///< e.g. "mamba", "attention"
  split_fn fn;                         ///< the callback
  bool capture_safe = false;           ///< true: may be captured inside a full graph
  std::vector<row_buffer> zero_outputs;///< padded rows zeroed after the callback
};

class segment_table {
 public:
  /// A table of `num_layers` null entries. Throws config_error if num_layers <= 0.
  explicit segment_table(int num_layers) : entries_(check_layers(num_layers)) {}

  /// Makes `layer` a split point. Throws config_error naming the layer if it is out of
  /// range, already a split point, or the split point has no callback or a bad buffer.
  void set_split(int layer, split_point sp) {
    check_layer(layer, "set_split");
    PIECEWISE_EXPECTS(!entries_[static_cast<std::size_t>(layer)].has_value(),
                      "segment_table::set_split: layer {} is already a split point ('{}')", layer,
                      entries_[static_cast<std::size_t>(layer)]->name);
    PIECEWISE_EXPECTS(static_cast<bool>(sp.fn), "segment_table::set_split: split point '{}' at layer {} has no callback",
                      sp.name, layer);
    for (const auto& b : sp.zero_outputs) check_buffer(b, fmt::format("output of split point '{}' at layer {}", sp.name, layer));
    entries_[static_cast<std::size_t>(layer)] = std::move(sp);
    ++version_;
  }

  /// The split point at `layer`, or nullptr for a placeholder. Throws config_error if out
  /// of range.
  [[nodiscard]] const split_point* at(int layer) const {
    check_layer(layer, "at");
    const auto& e = entries_[static_cast<std::size_t>(layer)];
    return e.has_value() ? &*e : nullptr;
  }

  [[nodiscard]] int num_layers() const noexcept { return static_cast<int>(entries_.size()); }

  /// Layer indices of the split points, ascending: the order a forward must call them in.
  [[nodiscard]] std::vector<int> split_layers() const {
    std::vector<int> v;
    for (int i = 0; i < num_layers(); ++i)
      if (entries_[static_cast<std::size_t>(i)].has_value()) v.push_back(i);
    return v;
  }
  [[nodiscard]] int num_splits() const { return static_cast<int>(split_layers().size()); }
  /// Segments of one piecewise forward: splits + 1.
  [[nodiscard]] int num_segments() const { return num_splits() + 1; }

  /// Layers whose split points are not capture-safe (empty: full graphs are allowed).
  [[nodiscard]] std::vector<int> unsafe_layers() const {
    std::vector<int> v;
    for (int i : split_layers())
      if (!entries_[static_cast<std::size_t>(i)]->capture_safe) v.push_back(i);
    return v;
  }

  /// Declares a model input whose rows [real, padded) are zeroed before every forward.
  void declare_input(row_buffer b) {
    check_buffer(b, "declared input");
    inputs_.push_back(std::move(b));
    ++version_;
  }
  /// Declares a model output, compared by graph_runner::validate_against_eager.
  void declare_output(row_buffer b) {
    check_buffer(b, "declared output");
    outputs_.push_back(std::move(b));
    ++version_;
  }
  /// Declares any other buffer the captured graphs use, so moving it is detected.
  void track_buffer(std::string name, const void* data) {
    PIECEWISE_EXPECTS(data != nullptr, "segment_table::track_buffer: buffer '{}' is null", name);
    tracked_.push_back({std::move(name), data});
    ++version_;
  }

  /// Records that the buffer called `name` (an input, output, split output or tracked
  /// buffer) now lives at `data`. Runners captured earlier refuse to replay until update().
  /// Throws config_error if no buffer has that name.
  void rebind(const std::string& name, void* data) {
    PIECEWISE_EXPECTS(data != nullptr, "segment_table::rebind: new address of '{}' is null", name);
    bool found = false;
    auto fix = [&](std::vector<row_buffer>& v) {
      for (auto& b : v)
        if (b.name == name) b.data = data, found = true;
    };
    fix(inputs_);
    fix(outputs_);
    for (auto& e : entries_)
      if (e) fix(e->zero_outputs);
    for (auto& t : tracked_)
      if (t.first == name) t.second = data, found = true;
    PIECEWISE_EXPECTS(found, "segment_table::rebind: no declared buffer is called '{}'", name);
    ++version_;
  }

  [[nodiscard]] const std::vector<row_buffer>& inputs() const noexcept { return inputs_; }
  [[nodiscard]] const std::vector<row_buffer>& outputs() const noexcept { return outputs_; }

  /// Every declared address (inputs, outputs, split outputs, tracked), with its name.
  [[nodiscard]] std::vector<std::pair<std::string, const void*>> addresses() const {
    std::vector<std::pair<std::string, const void*>> v;
    for (const auto& b : inputs_) v.emplace_back(b.name, b.data);
    for (const auto& b : outputs_) v.emplace_back(b.name, b.data);
    for (const auto& e : entries_)
      if (e)
        for (const auto& b : e->zero_outputs) v.emplace_back(b.name, b.data);
    for (const auto& t : tracked_) v.emplace_back(t.first, t.second);
    return v;
  }

  /// Incremented by every change (set_split, declarations, rebind).
  [[nodiscard]] std::uint64_t version() const noexcept { return version_; }

  /// A readable listing: one line per layer, "layer -> segment k" or "layer -> split
  /// 'name' (capture-safe) between segments k and k+1", with runs of placeholders folded.
  [[nodiscard]] std::string to_string() const {
    std::string out = fmt::format("segment table: {} layers, {} split points, {} segments\n",
                                  num_layers(), num_splits(), num_segments());
    int seg = 0;
    int run_start = 0;
    auto flush = [&](int end) {  // layers [run_start, end) are placeholders in segment seg
      if (end <= run_start) return;
      if (end - run_start == 1)
        out += fmt::format("  layer {:>4}        -> segment {} (captured whole)\n", run_start, seg);
      else
        out += fmt::format("  layers {:>4}..{:<4} -> segment {} (captured whole)\n", run_start, end - 1, seg);
    };
    for (int i = 0; i < num_layers(); ++i) {
      const auto& e = entries_[static_cast<std::size_t>(i)];
      if (!e) continue;
      flush(i);
      out += fmt::format("  layer {:>4}        -> split '{}' ({}) between segments {} and {}\n", i,
                         e->name, e->capture_safe ? "capture-safe" : "eager only", seg, seg + 1);
      ++seg;
      run_start = i + 1;
    }
    flush(num_layers());
    if (!inputs_.empty() || !outputs_.empty())
      out += fmt::format("  {} declared inputs, {} declared outputs\n", inputs_.size(), outputs_.size());
    return out;
  }

 private:
  static std::vector<std::optional<split_point>> check_layers(int n) {
    PIECEWISE_EXPECTS(n > 0, "segment_table: layer count must be positive, got {}", n);
    return std::vector<std::optional<split_point>>(static_cast<std::size_t>(n));
  }
  void check_layer(int layer, const char* what) const {
    PIECEWISE_EXPECTS(layer >= 0 && layer < num_layers(),
                      "segment_table::{}: layer {} is out of range (the table has {} layers, 0..{})",
                      what, layer, num_layers(), num_layers() - 1);
  }
  static void check_buffer(const row_buffer& b, const std::string& role) {
    PIECEWISE_EXPECTS(b.data != nullptr, "segment_table: {} '{}' has a null address", role, b.name);
    PIECEWISE_EXPECTS(b.row_bytes > 0 && b.rows > 0,
                      "segment_table: {} '{}' has {} rows of {} bytes; both must be positive", role,
                      b.name, b.rows, b.row_bytes);
    PIECEWISE_EXPECTS(b.pitch == 0 || b.pitch >= b.row_bytes,
                      "segment_table: {} '{}' has pitch {} smaller than its row size {}", role,
                      b.name, b.pitch, b.row_bytes);
  }

  std::vector<std::optional<split_point>> entries_;
  std::vector<row_buffer> inputs_;
  std::vector<row_buffer> outputs_;
  std::vector<std::pair<std::string, const void*>> tracked_;
  std::uint64_t version_ = 0;
};

}  // namespace piecewise
