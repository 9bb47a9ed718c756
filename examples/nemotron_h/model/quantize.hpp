// Quantizing host weights as NVIDIA ModelOpt does (per-tensor FP8 e4m3, NVFP4 with e4m3 block
// scales per 16 elements and a global scale), and calibrating the static activation scales
// with the float64 CPU forward. Synthetic quantized models and the tests' ModelOpt-layout
// checkpoints are made with it. Formats: model/quant_formats.hpp; config: model/quant_config.hpp.
// Host only, C++20; nothing here touches the GPU.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "model/config.hpp"
#include "model/quant_config.hpp"
#include "model/tensor.hpp"
#include "model/weights.hpp"

namespace nemotron_h {

/// `w` (bf16 or f32, [out, in]) as fp8_e4m3 with ModelOpt's per-tensor scale amax / 448 and
/// the static activation scale `input_scale` (0: none). Throws piecewise::config_error naming
/// the tensor when it is already quantized or its values are not finite.
host_tensor quantize_fp8(const host_tensor& w, float input_scale);

/// `w` (bf16 or f32, [out, in]) as nvfp4: global scale amax / (6 x 448), per block of 16
/// elements of a row the e4m3 scale e4m3(amax_block / 6 / global), elements
/// e2m1(w / (block scale x global)) (0 where the block scale is 0). `input_scale` as above.
/// Throws piecewise::config_error naming the tensor when `in` is not a multiple of 16, the
/// tensor is already quantized, or a value is not finite.
host_tensor quantize_nvfp4(const host_tensor& w, float input_scale);

/// The static activation scale of an FP8 GEMM whose input reached `amax`: amax / 448 (1 for 0).
float input_scale_from_amax(double amax);

/// The largest |input| of every linear weight's GEMM (by canonical weight name, e.g.
/// "backbone.layers.3.mixer.in_proj.weight"; lm_head included) over one CPU forward of
/// `tokens` as one sequence on `w` (before any quantization of the activations). For small
/// models: the reference is single-threaded float64. MoE layers' GEMMs are not observed.
/// Throws piecewise::config_error as cpu_model / cpu_session do.
std::map<std::string, double> calibrate_input_amax(const model_config& config, const model_weights& w,
                                                   std::span<const std::int32_t> tokens);

/// Quantizes in place every linear weight of `w` (tensor_spec::linear; not the fused MoE
/// experts, not a tied lm_head) whose module (the weight's name without ".weight") `q`
/// quantizes: FP8 and NVFP4 with the input scale from `input_amax` (amax / 448), W4A16_NVFP4
/// without one. The other tensors stay as they are. Returns the number quantized.
/// Throws piecewise::config_error naming the tensor when its input amax is missing (FP8,
/// NVFP4) or it cannot be quantized (see above); `w` is unchanged then.
int quantize_weights(model_weights& w, const model_config& config, const quant_config& q,
                     const std::map<std::string, double>& input_amax);

}  // namespace nemotron_h
