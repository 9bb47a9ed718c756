// ModelOpt-style quantization of host weights and calibration (see quantize.hpp).
#include "model/quantize.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "model/cpu_forward.hpp"
#include "model/layer_kinds.hpp"
#include "model/quant_formats.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {
namespace {

/// The values of an unquantized tensor in float64, checked finite; their largest magnitude.
std::vector<double> values_of(const host_tensor& w, const char* what, double& amax) {
  if (dtype_is_quantized(w.type())) {
    throw piecewise::config_error(fmt::format("{}: tensor '{}' is already {}", what, w.name(), dtype_name(w.type())));
  }
  std::vector<double> v = w.to_f64();
  amax = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      throw piecewise::config_error(
          fmt::format("{}: tensor '{}' holds a non-finite value at element {}", what, w.name(), i));
    }
    amax = std::max(amax, std::fabs(v[i]));
  }
  return v;
}

}  // namespace

host_tensor quantize_fp8(const host_tensor& w, float input_scale) {
  double amax = 0;
  const std::vector<double> v = values_of(w, "quantize_fp8", amax);
  host_tensor q(w.name(), dtype::fp8_e4m3, w.shape());
  const float scale = quant::fp8_scale(static_cast<float>(amax));
  for (std::size_t i = 0; i < v.size(); ++i) q.data()[i] = quant::double_to_e4m3(v[i] / scale);
  q.scales = tensor_scales{scale, {}, {}, input_scale};
  return q;
}

host_tensor quantize_nvfp4(const host_tensor& w, float input_scale) {
  constexpr int B = quant::kNvfp4Block;
  if (w.cols() % B != 0) {
    throw piecewise::config_error(fmt::format("quantize_nvfp4: tensor '{}' has rows of {} elements, not a multiple of {}",
                                              w.name(), w.cols(), B));
  }
  double amax = 0;
  const std::vector<double> v = values_of(w, "quantize_nvfp4", amax);
  const auto rows = static_cast<std::size_t>(w.rows()), cols = static_cast<std::size_t>(w.cols());
  const std::size_t nb = cols / B;
  host_tensor q(w.name(), dtype::nvfp4, w.shape());
  tensor_scales s;
  s.global = quant::nvfp4_global_scale(static_cast<float>(amax));
  s.block_shape = {w.rows(), static_cast<std::int64_t>(nb)};
  s.block.resize(rows * nb);
  s.input = input_scale;
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t b = 0; b < nb; ++b) {
      const double* blk = v.data() + r * cols + b * B;
      double bmax = 0;
      for (int k = 0; k < B; ++k) bmax = std::max(bmax, std::fabs(blk[k]));
      const std::uint8_t bs = quant::double_to_e4m3(bmax / quant::kE2m1Max / s.global);
      s.block[r * nb + b] = bs;
      const double step = static_cast<double>(quant::e4m3_to_float(bs)) * s.global;
      for (int k = 0; k < B; ++k) {
        const std::size_t i = r * cols + b * B + static_cast<std::size_t>(k);
        const std::uint8_t nib = step > 0 ? quant::double_to_e2m1(blk[k] / step) : 0;
        q.data()[i / 2] = static_cast<std::uint8_t>(i % 2 ? (q.data()[i / 2] & 0x0f) | (nib << 4)
                                                          : (q.data()[i / 2] & 0xf0) | nib);
      }
    }
  }
  q.scales = std::move(s);
  return q;
}

float input_scale_from_amax(double amax) { return quant::fp8_scale(static_cast<float>(amax)); }

std::map<std::string, double> calibrate_input_amax(const model_config& c, const model_weights& w,
                                                   std::span<const std::int32_t> tokens) {
  const cpu_model m(c, w);
  std::map<std::pair<int, std::string>, std::string> names;
  for (const tensor_entry& e : model_tensors(c)) {
    if (e.spec->linear) names[{e.layer, e.spec->suffix}] = e.name;
  }
  std::map<std::string, double> amax;
  cpu_session s(m);
  s.set_linear_observer([&](int layer, std::string_view suffix, std::span<const double> x) {
    const auto it = names.find({layer, std::string(suffix)});
    PIECEWISE_EXPECTS(it != names.end(), "calibrate_input_amax: no linear weight '{}' in layer {}", suffix, layer);
    double& a = amax[it->second];
    for (double v : x) a = std::max(a, std::fabs(v));
  });
  (void)s.prefill(tokens);
  return amax;
}

int quantize_weights(model_weights& w, const model_config& c, const quant_config& q,
                     const std::map<std::string, double>& input_amax) {
  w.check_shapes(c);
  std::vector<std::pair<const tensor_entry*, host_tensor>> done;  // applied only when all succeed
  const std::vector<tensor_entry> entries = model_tensors(c);
  for (const tensor_entry& e : entries) {
    if (!e.spec->linear || !e.in_checkpoint) continue;
    if (e.spec->tied_to_embeddings && c.tie_word_embeddings) continue;
    const quant_algo a = q.algo_of(module_of(e.name));
    if (a == quant_algo::none) continue;
    float in_scale = 0;
    if (a != quant_algo::w4a16_nvfp4) {
      const auto it = input_amax.find(e.name);
      if (it == input_amax.end()) {
        throw piecewise::config_error(fmt::format(
            "quantize_weights: no calibrated input amax for '{}' ({} needs a static input scale)", e.name, to_string(a)));
      }
      in_scale = input_scale_from_amax(it->second);
    }
    const host_tensor& t = w.at(e);
    done.emplace_back(&e, a == quant_algo::fp8 ? quantize_fp8(t, in_scale) : quantize_nvfp4(t, in_scale));
  }
  for (auto& [e, t] : done) w.at(*e) = std::move(t);
  return static_cast<int>(done.size());
}

}  // namespace nemotron_h
