// Host tensors (see tensor.hpp).
#include "model/tensor.hpp"

#include <fmt/format.h>

#include "model/messages.hpp"
#include "model/quant_formats.hpp"
#include "piecewise/element_type.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {

host_tensor::host_tensor(std::string name, dtype type, std::vector<std::int64_t> shape)
    : name_(std::move(name)), type_(type), shape_(std::move(shape)) {
  for (std::int64_t d : shape_) {
    PIECEWISE_EXPECTS(d >= 0, "tensor '{}': negative extent in shape {}", name_, shape_str(shape_));
  }
  data_.resize(dtype_storage_bytes(type_, static_cast<std::size_t>(numel())));
}

std::int64_t host_tensor::numel() const noexcept {
  std::int64_t n = 1;
  for (std::int64_t d : shape_) n *= d;
  return n;
}

std::int64_t host_tensor::rows() const noexcept { return shape_.empty() ? 1 : shape_[0]; }

std::int64_t host_tensor::cols() const noexcept {
  const std::int64_t r = rows();
  return r == 0 ? 0 : numel() / r;
}

std::size_t host_tensor::bytes() const noexcept {
  return data_.size() + (scales ? sizeof(float) + scales->block.size() + (scales->input > 0 ? sizeof(float) : 0) : 0);
}

void host_tensor::expect(dtype t) const {
  if (type_ != t) {
    throw piecewise::config_error(
        fmt::format("tensor '{}' has dtype {}, read as {}", name_, dtype_name(type_), dtype_name(t)));
  }
}

// The byte vector comes from operator new, aligned for any element type.
const std::uint16_t* host_tensor::bf16() const {
  expect(dtype::bf16);
  return reinterpret_cast<const std::uint16_t*>(data_.data());
}
std::uint16_t* host_tensor::bf16() {
  expect(dtype::bf16);
  return reinterpret_cast<std::uint16_t*>(data_.data());
}
const float* host_tensor::f32() const {
  expect(dtype::f32);
  return reinterpret_cast<const float*>(data_.data());
}
float* host_tensor::f32() {
  expect(dtype::f32);
  return reinterpret_cast<float*>(data_.data());
}

std::vector<double> host_tensor::to_f64() const {
  const auto n = static_cast<std::size_t>(numel());
  std::vector<double> out(n);
  switch (type_) {
    case dtype::bf16: {
      const std::uint16_t* p = bf16();
      for (std::size_t i = 0; i < n; ++i) out[i] = piecewise::bf16_bits_to_float(p[i]);
      break;
    }
    case dtype::f32: {
      const float* p = f32();
      for (std::size_t i = 0; i < n; ++i) out[i] = p[i];
      break;
    }
    case dtype::fp8_e4m3: {
      if (!scales) throw piecewise::config_error(fmt::format("tensor '{}' is fp8_e4m3 but has no scales", name_));
      const double s = scales->global;
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(quant::e4m3_to_float(data_[i])) * s;
      break;
    }
    case dtype::nvfp4: {
      const auto r = static_cast<std::size_t>(rows()), c = static_cast<std::size_t>(cols());
      const std::vector<std::int64_t> want{rows(), cols() / quant::kNvfp4Block};
      if (!scales) throw piecewise::config_error(fmt::format("tensor '{}' is nvfp4 but has no scales", name_));
      if (c % quant::kNvfp4Block != 0 || scales->block_shape != want || scales->block.size() != r * (c / quant::kNvfp4Block)) {
        throw piecewise::config_error(fmt::format(
            "tensor '{}' is nvfp4 [{} x {}]: its block scales must be e4m3 [{}, {}] (one per {} elements of a row){}",
            name_, r, c, r, c / quant::kNvfp4Block, quant::kNvfp4Block,
            c % quant::kNvfp4Block ? ", and the row length a multiple of 16" : ""));
      }
      const double g = scales->global;
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint8_t nib = static_cast<std::uint8_t>(i % 2 ? data_[i / 2] >> 4 : data_[i / 2] & 0xf);
        const double bs = quant::e4m3_to_float(scales->block[(i / c) * (c / quant::kNvfp4Block) + (i % c) / quant::kNvfp4Block]);
        out[i] = static_cast<double>(quant::e2m1_to_float(nib)) * bs * g;
      }
      break;
    }
  }
  return out;
}

}  // namespace nemotron_h
