// Synthetic FP8 models on the GPU (`--dtype fp8` for presets, issue 13): the bf16 synthetic
// weights with the linear weights ModelOpt's Nano-9B-v2-FP8 quantizes (synthetic_fp8_weights,
// runner/weight_support.hpp) stored as FP8 W8A8 with per-tensor scales, everything on the GPU:
//  1. calibration: the bf16 model drawn on the GPU runs one eager prefill of a fixed batch of
//     random tokens while gemm_engine observes the amax of every chosen GEMM's input
//     (gemm_engine::observe_inputs); the static input scale is amax / 448
//     (input_scale_from_amax), as ModelOpt's max calibration gives;
//  2. the FP8 weights: drawn again in bf16 (the same bits) and quantized on the GPU
//     (weight_source::drawn_fp8, runner/device_weights.hpp) exactly as quantize_fp8 does on
//     the host: weight scale amax / 448 of the drawn tensor, e4m3 round to nearest even.
// The host path (synthetic_weights, then quantize_weights with synthetic_fp8_quant_config and
// the same amax map) gives the same device bytes; the tests check it.
//
// Nothing here is capture-safe: it builds models, allocates and synchronizes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "runner/device_weights.hpp"
#include "runner/weight_support.hpp"

namespace nemotron_h {

/// kCalibrationTokens ids in [0, vocab) from kCalibrationSeed (or `n` of them).
std::vector<int> calibration_tokens(const model_config& config, int n = kCalibrationTokens);

/// The largest |input| of the GEMM of each weight in `names` (canonical names of linear
/// weights that are device tensors of their own, not parts of q | k | v) over one eager bf16
/// prefill of `tokens` as one sequence, on a GPU model built from `bf16_source` (its own
/// engine with limits for this one prefill; freed before returning). The amax are exact max
/// reductions of the bf16 inputs the GPU forward computes. Throws piecewise::config_error for
/// an empty token list, an id outside the vocabulary, a name that is not such a weight, and as
/// the engine does (piecewise::cuda_error when memory runs out). Synchronizes; NOT capture-safe.
std::map<std::string, double> calibrate_input_amax_gpu(const model_config& config, const weight_source& bf16_source,
                                                       const std::vector<std::string>& names,
                                                       const std::vector<int>& tokens);

/// What a synthetic FP8 model needs: calibrate_input_amax_gpu over synthetic_fp8_weights(config)
/// on weight_source::drawn(seed, opt) with calibration_tokens(config), then
/// weight_source::drawn_fp8(seed, amax, opt). Same errors; NOT capture-safe.
weight_source synthetic_fp8_source(const model_config& config, std::uint64_t seed, const synthetic_options& opt = {});

}  // namespace nemotron_h
