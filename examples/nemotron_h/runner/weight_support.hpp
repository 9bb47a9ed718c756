// Which linear weights the GPU model runs, decided on the host before any device memory is
// taken: the GPU upload (runner/device_weights.cpp) and the run plan (--dry-run, from the
// checkpoint headers) ask it, and host tests check it without a GPU. It mirrors
// gemm_engine::supports (kernels/gemm.cuh): bf16, and ModelOpt FP8 (W8A8, per tensor) with a
// weight scale and an input scale and K a multiple of 16, and NVFP4 weight-only (W4A16) with K a
// multiple of 16, one tensor a GEMM (a fused NVFP4 group is refused).
//
// Fused groups (q | k | v: one matrix, one GEMM on the GPU) must be one dtype; an all-FP8
// group runs only when its parts share their weight scale and their input scale (one GEMM
// takes one pair of scales). Parts with different scales are refused naming them: requantizing
// to the largest scale (as vLLM does) or three GEMMs are the ways to lift it; ModelOpt's
// Nemotron-H FP8 checkpoints keep attention in bf16.
//
// Host only, C++20, no CUDA. Errors are piecewise::config_error naming the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/nvfp4_layout.hpp"
#include "model/config.hpp"
#include "model/dtype.hpp"
#include "model/layer_kinds.hpp"
#include "model/quant_config.hpp"
#include "model/weights.hpp"

namespace nemotron_h {

/// Device bytes after an FP8 weight's rows that hold its two fp32 scales (weight scale, then
/// input scale), each in a 16-byte slot of its own: cuBLASLt refuses a scale pointer that is
/// not 16-byte aligned (CUBLAS_STATUS_NOT_SUPPORTED, seen on the H200).
inline constexpr std::size_t kFp8ScaleSlotBytes = 16;
inline constexpr std::size_t kFp8ScaleBytes = 2 * kFp8ScaleSlotBytes;

/// Rows of a linear weight on the device: padded with zero rows to a multiple of 8, so that
/// its GEMM's output rows stay 16-byte aligned.
constexpr std::int64_t device_rows(std::int64_t rows) noexcept { return (rows + 7) / 8 * 8; }

/// Device bytes of an NVFP4 weight [rows, cols]: the GEMV's layout (kernels/nvfp4_layout.hpp) of
/// its device_rows, then its global scale in a 16-byte slot.
constexpr std::size_t nvfp4_device_bytes(std::int64_t rows, std::int64_t cols) noexcept {
  const nvfp4_layout L{static_cast<int>(device_rows(rows)), static_cast<int>(cols)};
  return L.packed_bytes() + L.scale_bytes() + kFp8ScaleSlotBytes;
}

/// One tensor of a device tensor (a fused group has several), as the check needs it.
struct gpu_weight_part {
  std::string name;  ///< the tensor's name, for messages
  dtype type = dtype::bf16;
  std::int64_t rows = 0, cols = 0;
  /// fp8_e4m3: weight_scale and input_scale when known (host weights, or a checkpoint once its
  /// scales are read; 0 for an input scale the tensor does not have); nullopt: not known yet
  /// (headers only: the scales' presence is checked by plan_checkpoint, their values later).
  std::optional<float> weight_scale, input_scale;
};

/// Why the GPU model cannot run the linear device tensor `group` (one weight, or a fused
/// group) made of `parts`; "" when it can. The message names the tensor, its dtype and the
/// limit ("tensor '...' is fp8_e4m3 without an input scale: ...").
std::string gpu_linear_problem(std::string_view group, const std::vector<gpu_weight_part>& parts);

/// The device tensors the GPU upload makes of `entries` (model_tensors order): each a list of
/// entry indices, one entry alone or a run of consecutive entries of one layer with the same
/// tensor_spec::fused_as, and its name (the fused name for a group:
/// "backbone.layers.1.mixer.qkv_proj.weight").
struct gpu_tensor_group {
  std::string name;
  std::vector<std::size_t> entries;
  bool linear = false;
};
std::vector<gpu_tensor_group> gpu_tensor_groups(const std::vector<tensor_entry>& entries);

/// Throws piecewise::config_error "device weights: <gpu_linear_problem>" for the first linear
/// weight of `w` (checked against nothing else: call check_shapes first) that the GPU cannot
/// run. Host only; what device_weights checks for host weights before taking device memory.
void check_gpu_weights(const model_config& config, const model_weights& w);

/// The same from the dtypes a checkpoint stores (per entry of model_tensors(config), e.g.
/// checkpoint_summary::types), scales not known yet: "<source>: <gpu_linear_problem>".
void check_gpu_weight_types(const model_config& config, const std::vector<dtype>& types, const std::string& source);

/// Tokens of the calibration prefill of a synthetic FP8 model (runner/synthetic_fp8.hpp).
inline constexpr int kCalibrationTokens = 256;
/// Seed of the calibration tokens (random_token_ids): fixed, so a preset's FP8 model is one model.
inline constexpr std::uint64_t kCalibrationSeed = 0x5eedca1bULL;

/// The linear weights a synthetic `--dtype fp8` model stores in FP8 (by canonical name, in
/// model_tensors order): what ModelOpt's Nano-9B-v2-FP8 quantizes, the Mamba in_proj / out_proj
/// and the MLP up_proj / down_proj. Attention, conv1d, embeddings, lm_head and every tensor of
/// MoE layers (router, routed and shared experts, latent projections) stay bf16. Host only.
std::vector<std::string> synthetic_fp8_weights(const model_config& config);

/// The same set as a ModelOpt quant_config (MIXED_PRECISION, each module FP8), for
/// quantize_weights on host weights. Host only.
quant_config synthetic_fp8_quant_config(const model_config& config);

/// The same set as NVFP4 weight-only (W4A16_NVFP4, block size 16): what a synthetic `--dtype
/// nvfp4` model stores in NVFP4 (quantize_weights on host weights; the GPU draws the same bits,
/// device_weights' nvfp4_weights). Host only.
quant_config synthetic_nvfp4_quant_config(const model_config& config);

/// The device dtype of each entry of model_tensors(config) for synthetic weights: the table's,
/// with synthetic_fp8_weights as `quantized` (bf16: none; fp8_e4m3 or nvfp4): estimate_memory's
/// weight_types. Host only.
std::vector<dtype> synthetic_weight_types(const model_config& config, dtype quantized);
/// synthetic_weight_types(config, fp8 ? fp8_e4m3 : bf16).
std::vector<dtype> synthetic_weight_types(const model_config& config, bool fp8);

}  // namespace nemotron_h
