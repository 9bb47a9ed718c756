// Synthetic FP8 models calibrated and quantized on the GPU (see synthetic_fp8.hpp).
#include "runner/synthetic_fp8.hpp"

#include <fmt/format.h>

#include <cstring>

#include "model/random_tokens.hpp"
#include "piecewise/cuda_error.hpp"
#include "piecewise/error.hpp"
#include "piecewise/handles.hpp"
#include "runner/engine.hpp"
#include "runner/weight_support.hpp"

namespace nemotron_h {

std::vector<int> calibration_tokens(const model_config& c, int n) {
  PIECEWISE_EXPECTS(n >= 1, "calibration_tokens: {} tokens", n);
  std::uint64_t state = kCalibrationSeed;
  return random_token_ids(n, c.vocab_size, state);
}

std::map<std::string, double> calibrate_input_amax_gpu(const model_config& c, const weight_source& bf16_source,
                                                       const std::vector<std::string>& names,
                                                       const std::vector<int>& tokens) {
  PIECEWISE_EXPECTS(!tokens.empty(), "GPU calibration: no calibration tokens");
  PIECEWISE_EXPECTS(bf16_source.fp8_input_amax.empty(), "GPU calibration: the model to calibrate must be bf16");
  const int T = static_cast<int>(tokens.size());
  gpu_model_limits lim;
  lim.max_prefill_tokens = T;
  lim.max_decode_batch = 1;
  lim.num_slots = 1;
  lim.max_context = (T + 1 + 15) / 16 * 16;
  lim.max_decode_steps = 1;
  engine eng(c, bf16_source, lim);
  const device_weights& w = eng.model().weights();
  // Each name's device tensor (its data pointer is what gemm_engine sees).
  std::map<std::string, const void*, std::less<>> by_name;
  for (int l = 0; l < c.num_layers(); ++l)
    for (const device_tensor& t : w.at(l).tensors) by_name.emplace(t.name, t.view.data);
  by_name.emplace(w.lm_head().name, w.lm_head().data);
  if (names.empty()) return {};
  piecewise::device_buffer slots(names.size() * sizeof(float), "GPU calibration: input amax");
  PIECEWISE_CUDA_TRY(cudaMemset(slots.data(), 0, names.size() * sizeof(float)));
  std::map<const void*, float*> observed;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto it = by_name.find(names[i]);
    PIECEWISE_EXPECTS(it != by_name.end(),
                      "GPU calibration: '{}' is not a linear weight of {} with a GEMM of its own (fused q | k | v parts "
                      "run as one GEMM)",
                      names[i], c.name);
    PIECEWISE_EXPECTS(observed.emplace(it->second, static_cast<float*>(slots.data()) + i).second,
                      "GPU calibration: '{}' is named twice", names[i]);
  }
  eng.add_mode(piecewise::mode::eager, {T}, {});
  eng.model().gemm().observe_inputs(&observed);
  try {
    (void)eng.run(piecewise::mode::eager, {tokens}, 1);
  } catch (...) {
    eng.model().gemm().observe_inputs(nullptr);
    throw;
  }
  eng.model().gemm().observe_inputs(nullptr);
  std::vector<float> host(names.size());
  PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(host.data(), slots.data(), host.size() * sizeof(float), cudaMemcpyDeviceToHost),
                         "GPU calibration: reading the input amax");
  std::map<std::string, double> amax;
  for (std::size_t i = 0; i < names.size(); ++i) amax[names[i]] = host[i];
  return amax;
}

weight_source synthetic_fp8_source(const model_config& c, std::uint64_t seed, const synthetic_options& opt) {
  const std::vector<std::string> names = synthetic_fp8_weights(c);
  PIECEWISE_EXPECTS(!names.empty(), "--dtype fp8: {} has no Mamba or MLP projections to quantize", c.name);
  auto amax = calibrate_input_amax_gpu(c, weight_source::drawn(seed, opt), names, calibration_tokens(c));
  return weight_source::drawn_fp8(seed, std::move(amax), opt);
}

}  // namespace nemotron_h
