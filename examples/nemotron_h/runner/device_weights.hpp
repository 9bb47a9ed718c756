// The NemotronH weights on the GPU: every tensor of the model in one arena, in the layer-kind
// table's order, with the table's fused groups (q | k | v) stacked into one matrix. Each tensor
// is a `weight` view (kernels/gemm.cuh): pointer, dtype, rows, cols, name. Linear weights are
// bf16 or ModelOpt FP8 (fp8_e4m3, per-tensor scales): an FP8 weight's e4m3 rows are followed in
// the arena by its weight scale and its input scale (two fp32 in 16-byte slots, kFp8ScaleBytes), which the view's `scale` and
// `input_scale` point at. NVFP4 weights (weight-only) are stored in the GEMV's device layout
// (kernels/nvfp4.cuh: the elements, then the block scale codes, then the global scale in a
// 16-byte slot), repacked on the GPU from the checkpoint layout; runner/weight_support.hpp
// says what runs.
//
// The tensors come from a weight_source: host weights (uploaded), synthetic weights drawn on
// the GPU straight into the arena (the same bits as synthetic_weights on the host, no host
// copy), or a safetensors checkpoint streamed from the file through a small ring of pinned
// staging buffers (parallel pread overlapped with the copies; no host copy of the model).
//
// Construction is not capture-safe (it allocates, copies and synchronizes); the views are plain
// values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/common.cuh"
#include "kernels/gemm.cuh"
#include "model/config.hpp"
#include "model/staged_read.hpp"
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

/// Where device_weights take the tensors from.
struct weight_source {
  enum class kind : std::uint8_t { host, synthetic, checkpoint };
  kind how = kind::host;
  const model_weights* host = nullptr;  ///< kind::host; read during construction only
  std::uint64_t seed = 0;               ///< kind::synthetic
  synthetic_options synthetic{};        ///< kind::synthetic (`threads` unused)
  /// kind::synthetic: the linear weights (canonical names) to store as FP8, each with the
  /// calibrated amax of its GEMM input (input scale input_scale_from_amax(amax)). Each is drawn
  /// in bf16 into a scratch and quantized on the GPU as quantize_fp8 does on the host (scale
  /// amax / 448 of the drawn tensor, e4m3 round to nearest even, saturating), bit for bit, with
  /// no host copy. Empty: every tensor in the table's dtype.
  std::map<std::string, double> fp8_input_amax;
  /// kind::synthetic: the linear weights (canonical names) to store as NVFP4 weight-only
  /// (W4A16: no input scale), each drawn in bf16 into a scratch and quantized on the GPU as
  /// quantize_nvfp4 does on the host, bit for bit (kernels/nvfp4.cuh quantize_nvfp4_weight).
  std::vector<std::string> nvfp4_weights;
  std::filesystem::path path;           ///< kind::checkpoint: what load_weights accepts
  staged_read_options staging{};        ///< kind::checkpoint: reader threads, ring of pinned slots

  static weight_source from_host(const model_weights& w) {
    weight_source s;
    s.host = &w;
    return s;
  }
  /// synthetic_weights(config, seed, opt), drawn on the GPU.
  static weight_source drawn(std::uint64_t seed, const synthetic_options& opt = {}) {
    weight_source s;
    s.how = kind::synthetic;
    s.seed = seed;
    s.synthetic = opt;
    return s;
  }
  /// drawn(seed, opt) with the weights named in `input_amax` stored as FP8 (see fp8_input_amax;
  /// runner/synthetic_fp8.hpp makes the map by calibrating on the GPU).
  static weight_source drawn_fp8(std::uint64_t seed, std::map<std::string, double> input_amax,
                                 const synthetic_options& opt = {}) {
    weight_source s = drawn(seed, opt);
    s.fp8_input_amax = std::move(input_amax);
    return s;
  }
  /// drawn(seed, opt) with the weights named in `names` stored as NVFP4 (see nvfp4_weights).
  static weight_source drawn_nvfp4(std::uint64_t seed, std::vector<std::string> names,
                                   const synthetic_options& opt = {}) {
    weight_source s = drawn(seed, opt);
    s.nvfp4_weights = std::move(names);
    return s;
  }
  static weight_source from_checkpoint(std::filesystem::path p, const staged_read_options& staging = {}) {
    weight_source s;
    s.how = kind::checkpoint;
    s.path = std::move(p);
    s.staging = staging;
    return s;
  }
};

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
  /// against what gemm_engine runs (gpu_linear_problem, runner/weight_support.hpp: bf16,
  /// fp8_e4m3 with a weight scale, an input scale and K a multiple of 16, nvfp4 with K a
  /// multiple of 16; a fused group of one dtype and, for FP8, one pair of scales, not NVFP4;
  /// a config_error naming the tensor otherwise) and every fused group's width, all before any
  /// device memory is taken; then allocates one arena and uploads. Throws
  /// piecewise::cuda_error when device memory runs out (naming the size).
  device_weights(const model_config& config, const model_weights& w);
  /// The same from any source. Synthetic: synthetic_weights(config, seed, opt) bit for bit,
  /// the matrices drawn by the GPU (kernels/synthetic_fill.cuh), the small vectors on the host.
  /// Checkpoint: the same checks and errors as load_weights (every name, shape and dtype is
  /// checked, and every scale of a quantized checkpoint read and checked, before a weight byte
  /// is read), then the GPU checks above; tensors whose file dtype is the model's (F8_E4M3 for
  /// an FP8 weight) are
  /// streamed through `staging` (threads x slots_per_thread pinned slots of chunk_bytes, taken
  /// for the load and freed after it); other dtypes are converted on the host one tensor at a
  /// time; the result equals device_weights(config, load_weights(path, config)) bit for bit.
  /// Read errors name the file and the tensor (its name holds the layer).
  /// Synthetic with fp8_input_amax: a name that is not a linear weight of the model, or that
  /// the GPU cannot run in FP8 (gpu_linear_problem: K not a multiple of 16, part of a fused
  /// group), is a piecewise::config_error naming it, before any device memory is taken; a
  /// fp8_input_amax given with another source is one too. The same for nvfp4_weights (and a
  /// name in both lists).
  device_weights(const model_config& config, const weight_source& source);
  device_weights(const device_weights&) = delete;
  device_weights& operator=(const device_weights&) = delete;

  [[nodiscard]] const weight& embeddings() const noexcept { return globals_[kEmbeddings].view; }
  [[nodiscard]] const weight& norm_f() const noexcept { return globals_[kNormF].view; }
  [[nodiscard]] const weight& lm_head() const noexcept { return globals_[kLmHead].view; }
  [[nodiscard]] const layer& at(int l) const { return layers_.at(static_cast<std::size_t>(l)); }
  /// Device bytes of the weights (the arena's size).
  [[nodiscard]] std::size_t bytes() const noexcept { return arena_->used(); }
  /// The widest input (cols) of any fp8_e4m3 weight, 0 when there is none: with the most rows
  /// of a forward, the size of gemm_engine's FP8 input scratch (reserve_fp8_input).
  [[nodiscard]] int widest_fp8_input() const noexcept;
  /// The elements (rows x cols, rows padded to 8) of the largest nvfp4 weight, 0 when there is
  /// none: the size of gemm_engine's NVFP4 scratch (reserve_nvfp4_scratch).
  [[nodiscard]] std::size_t largest_nvfp4_weight() const noexcept;
  /// Where entry i of model_tensors(config) lies (inside its fused group for q / k / v), and
  /// its bytes (an nvfp4 weight: its whole device layout, elements, block scales and global
  /// scale). For tests and for saving the device weights (save_checkpoint).
  struct span {
    const void* data = nullptr;
    std::size_t bytes = 0;
  };
  [[nodiscard]] span tensor(std::size_t entry) const { return entries_.at(entry); }

 private:
  std::vector<span> entries_;
  std::vector<device_tensor> globals_;
  std::vector<layer> layers_;
  std::unique_ptr<piecewise::device_arena> arena_;
};

}  // namespace nemotron_h
