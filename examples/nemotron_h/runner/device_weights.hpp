// The NemotronH weights on the GPU: every tensor of the host weights uploaded into one arena,
// in the layer-kind table's order, with the table's fused groups (q | k | v) stacked into one
// matrix. Each tensor is a `weight` view (kernels/gemm.cuh): pointer, dtype, rows, cols, name.
//
// Construction uploads (cudaMemcpy) and is not capture-safe; the views are plain values.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/common.cuh"
#include "kernels/gemm.cuh"
#include "model/config.hpp"
#include "model/weights.hpp"
#include "piecewise/arena.hpp"

namespace nemotron_h {

/// One tensor (or fused group) on the device.
struct device_tensor {
  std::string name;  ///< canonical: "backbone.layers.3.mixer.qkv_proj.weight"
  std::string suffix;  ///< the table suffix or fused name: "mixer.qkv_proj.weight"
  weight view;       ///< view.name points into `name`
};

/// The data of a bf16 / f32 device tensor; throws piecewise::config_error naming the tensor
/// and its dtype otherwise. Host only.
const bf16* bf16_data(const weight& w);
const float* f32_data(const weight& w);

class device_weights {
 public:
  /// One layer's tensors, in table order with fused groups merged.
  struct layer {
    layer_kind kind;
    std::vector<device_tensor> tensors;
    /// The tensor with table suffix (or fused name) `suffix`. Throws piecewise::config_error
    /// naming the kind and the suffix when there is none.
    [[nodiscard]] const weight& get(std::string_view suffix) const;
  };

  /// Checks `w` against `config` (model_weights::check_shapes), then checks every linear weight
  /// against what gemm_engine runs (a config_error naming the tensor and its dtype, "not
  /// supported yet") and every fused group (same dtype and width), all before any device
  /// memory is taken; then allocates one arena and uploads. Throws piecewise::cuda_error when
  /// device memory runs out (naming the size).
  device_weights(const model_config& config, const model_weights& w);
  device_weights(const device_weights&) = delete;
  device_weights& operator=(const device_weights&) = delete;

  [[nodiscard]] const weight& embeddings() const noexcept { return globals_[kEmbeddings].view; }
  [[nodiscard]] const weight& norm_f() const noexcept { return globals_[kNormF].view; }
  [[nodiscard]] const weight& lm_head() const noexcept { return globals_[kLmHead].view; }
  [[nodiscard]] const layer& at(int l) const { return layers_.at(static_cast<std::size_t>(l)); }
  /// Device bytes of the weights (the arena's size).
  [[nodiscard]] std::size_t bytes() const noexcept { return arena_->used(); }

 private:
  std::vector<device_tensor> globals_;
  std::vector<layer> layers_;
  std::unique_ptr<piecewise::device_arena> arena_;
};

}  // namespace nemotron_h
