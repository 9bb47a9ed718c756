// A host tensor of the model: its checkpoint name, element type, shape, the elements' bytes
// (in the host's byte order; the weights code requires a little-endian host, as safetensors
// files are) and, for the quantized formats, its scales.
//
// Host only, C++17 (the benchmark, a CUDA source, includes the weights). Never touches the GPU.
// Errors are piecewise::config_error naming the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/dtype.hpp"

namespace nemotron_h {

/// The scales of a quantized tensor (ModelOpt layout, see model/dtype.hpp).
struct tensor_scales {
  /// fp8_e4m3: `weight_scale`; nvfp4: `weight_scale_2` (the global scale).
  float global = 1.0f;
  /// nvfp4: `weight_scale`, e4m3 bytes of shape block_shape = [rows, cols / 16]; empty otherwise.
  std::vector<std::int64_t> block_shape;
  std::vector<std::uint8_t> block;
  /// `input_scale`: the static per-tensor scale the GEMM's input is quantized with (FP8 W8A8,
  /// NVFP4 W4A4); 0 when the checkpoint has none (weight-only, W4A16). Hopper runs NVFP4
  /// weight-only, so for nvfp4 it is carried but not applied.
  float input = 0.0f;

  friend bool operator==(const tensor_scales& a, const tensor_scales& b) noexcept {
    return a.global == b.global && a.block_shape == b.block_shape && a.block == b.block && a.input == b.input;
  }
  friend bool operator!=(const tensor_scales& a, const tensor_scales& b) noexcept { return !(a == b); }
};

class host_tensor {
 public:
  host_tensor() = default;
  /// A zero-filled tensor. Throws piecewise::config_error naming it for a negative extent.
  host_tensor(std::string name, dtype type, std::vector<std::int64_t> shape);

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// Renames the tensor (a tied lm_head is a copy of the embeddings under its own name).
  void rename(std::string name) { name_ = std::move(name); }
  [[nodiscard]] dtype type() const noexcept { return type_; }
  [[nodiscard]] const std::vector<std::int64_t>& shape() const noexcept { return shape_; }
  [[nodiscard]] std::int64_t numel() const noexcept;
  /// The matrix view: rows = shape[0] (1 for a scalar), cols = numel / rows. A linear weight
  /// [out, in] has rows = out, cols = in; conv1d.weight [conv_dim, 1, K] has cols = K.
  [[nodiscard]] std::int64_t rows() const noexcept;
  [[nodiscard]] std::int64_t cols() const noexcept;

  /// The elements' bytes (dtype_storage_bytes(type(), numel()) of them).
  [[nodiscard]] const std::uint8_t* data() const noexcept { return data_.data(); }
  [[nodiscard]] std::uint8_t* data() noexcept { return data_.data(); }
  [[nodiscard]] std::size_t data_bytes() const noexcept { return data_.size(); }
  /// Bytes held: the elements plus the scales (global, blocks, input scale when set).
  [[nodiscard]] std::size_t bytes() const noexcept;

  /// The elements as bf16 bit patterns / as floats. Throw piecewise::config_error naming the
  /// tensor and its dtype when it is not bf16 / f32.
  [[nodiscard]] const std::uint16_t* bf16() const;
  [[nodiscard]] std::uint16_t* bf16();
  [[nodiscard]] const float* f32() const;
  [[nodiscard]] float* f32();

  /// The values in float64: exact for bf16 and f32; the quantized formats dequantized exactly
  /// (fp8_e4m3: e4m3 x scale; nvfp4: e2m1 x e4m3 block scale x global scale, model/quant_formats.hpp).
  /// Throws piecewise::config_error naming the tensor when a quantized tensor has no scales or
  /// its block scales do not match its shape.
  [[nodiscard]] std::vector<double> to_f64() const;

  /// Scales of a quantized tensor; empty for bf16 and f32.
  std::optional<tensor_scales> scales;

  /// Same contents: dtype, shape, bytes and scales. Names are not compared (a tied lm_head
  /// equals the embeddings it copies).
  friend bool operator==(const host_tensor& a, const host_tensor& b) noexcept {
    return a.type_ == b.type_ && a.shape_ == b.shape_ && a.data_ == b.data_ && a.scales == b.scales;
  }
  friend bool operator!=(const host_tensor& a, const host_tensor& b) noexcept { return !(a == b); }

 private:
  void expect(dtype t) const;

  std::string name_;
  dtype type_ = dtype::bf16;
  std::vector<std::int64_t> shape_;
  std::vector<std::uint8_t> data_;
};

}  // namespace nemotron_h
