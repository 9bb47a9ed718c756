// GEMM through cuBLASLt for the NemotronH linear layers.
//
// y[M, N] = x[M, K] * W[N, K]^T (PyTorch nn.Linear layout, row-major, no bias), bf16 in,
// fp32 accumulate, bf16 out; optionally y += x * W^T (beta = 1) so out_proj / down_proj /
// o_proj can add straight into the residual stream. W is a `weight`: a device matrix with its
// dtype and, for the quantized formats, its scales. linear() dispatches on the weight's dtype:
// bf16 weights run one bf16 GEMM; FP8 e4m3 weights (ModelOpt W8A8, per-tensor scales) first
// quantize x with the weight's static input scale into the engine's e4m3 scratch
// (kernels/quantize_fp8.cuh, reserve_fp8_input) and then run linear_fp8() on Hopper's FP8
// tensor cores; NVFP4 weights (weight-only, in kernels/nvfp4.cuh's device layout) run the
// NVFP4 GEMV up to kNvfp4GemvMaxRows rows and above that are dequantized into the engine's bf16
// scratch (reserve_nvfp4_scratch) for one bf16 GEMM with the global scale as alpha.
//
// The handle, the workspace, the FP8 input scratch and the per-shape algorithm choice are made
// outside any capture (constructor, reserve_fp8_input(), prepare()); afterwards linear()
// launches one cublasLtMatmul (bf16) or one quantize kernel and one cublasLtMatmul (FP8) and
// is capture-safe. A kernel that produces an FP8 weight's input can write it quantized into
// fp8_input(W, M) itself (the norms and the squared ReLU do, gpu_model.cpp) and call
// linear_fp8_input(), which skips the quantize kernel. At M = kGemmGemvRows (decode at batch
// 1) bf16 GEMMs run as a GEMV kernel instead (kernels/gemv.cuh), which needs no preparation;
// use_gemv(false), or NH_GEMV=0 in the environment (read once, for A/B measurements), keeps
// cuBLASLt there too. FP8 weights always take the FP8 GEMM. NH_FP8_FAST_ACCUM=1 (read once,
// for A/B measurements; it changes the results) turns on cuBLASLt's fast FP8 accumulation.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

#include "kernels/common.cuh"
#include "model/dtype.hpp"
#include "piecewise/handles.hpp"

namespace nemotron_h {

/// The token rows at which gemm_engine runs bf16 GEMMs as the decode GEMV (kernels/gemv.cuh).
inline constexpr int kGemmGemvRows = 1;

/// A weight matrix in device memory, as the GEMM reads it (non-owning view): W [rows, cols]
/// row-major, rows = N (output features), cols = K (input features).
struct weight {
  const void* data = nullptr;
  dtype type = dtype::bf16;
  int rows = 0;
  int cols = 0;
  /// fp8_e4m3: the per-tensor scale; nvfp4: the global scale (one fp32 in device memory).
  const float* scale = nullptr;
  /// fp8_e4m3: the static input scale (one fp32 in device memory) linear() quantizes the GEMM
  /// input with (ModelOpt's `input_scale`); null for the other dtypes.
  const float* input_scale = nullptr;
  /// nvfp4: the block scales in device memory, in the GEMV's tile layout with the packed
  /// elements `data` (kernels/nvfp4.cuh: repack_nvfp4 makes both from the checkpoint layout).
  const void* block_scales = nullptr;
  /// nvfp4: the global scale (weight_scale_2) as a host value (the GEMMs' alpha is made from
  /// it when they are launched; a weight's scales never change).
  float global_scale = 1.0f;
  /// The tensor's name, for messages (the owner of the view keeps the string alive).
  const char* name = "weight";

  /// A plain bf16 matrix [rows, cols].
  static weight bf16_matrix(const bf16* p, int rows, int cols, const char* name = "weight") {
    weight w;
    w.data = p;
    w.rows = rows;
    w.cols = cols;
    w.name = name;
    return w;
  }
};

/// Owns a cuBLASLt handle, a device workspace (a piecewise::device_buffer, so it shows in
/// piecewise::live_handles()) and a cache of heuristic algorithm choices
/// keyed by (M, K, N). Move-only in spirit: not copyable, not movable (hold it by value in
/// one owner or by unique_ptr). Not thread-safe; one workspace, so do not run two linear()
/// calls of the same engine concurrently on different streams.
class gemm_engine {
 public:
  /// Default workspace: 32 MiB (cuBLASLt on Hopper recommends at least 32 MiB).
  static constexpr std::size_t default_workspace_bytes = std::size_t{32} << 20;

  /// Allocates the workspace and creates the cuBLASLt handle.
  /// Throws piecewise::cuda_error / piecewise::error on failure. NOT capture-safe.
  explicit gemm_engine(std::size_t workspace_bytes = default_workspace_bytes);
  ~gemm_engine();
  gemm_engine(const gemm_engine&) = delete;
  gemm_engine& operator=(const gemm_engine&) = delete;
  gemm_engine(gemm_engine&&) = delete;
  gemm_engine& operator=(gemm_engine&&) = delete;

  /// Runs the cuBLASLt heuristic for y[M,N] = x[M,K] W[N,K]^T once and caches the chosen
  /// algorithm (no-op if already cached). Pointers passed to linear() later must be 16-byte
  /// aligned and K, N multiples of 8. Throws piecewise::config_error for bad shapes or when
  /// no algorithm exists. Launches no GPU work, but call it before capture (NOT meant to be
  /// called while capturing).
  void prepare(int M, int K, int N);

  /// True when (M, K, N) has a cached algorithm.
  [[nodiscard]] bool prepared(int M, int K, int N) const;

  /// prepare() for linear(x, W, y, M, ...) with this weight: the bf16 plan (M, K, N) for a bf16
  /// weight (and for an nvfp4 one above kNvfp4GemvMaxRows rows; the GEMV needs none), the FP8
  /// plan (M, K, N, K, N) for an fp8_e4m3 one. Throws piecewise::config_error
  /// naming the tensor unless supports(W), and as prepare() does. NOT meant to be called while
  /// capturing.
  void prepare(const weight& W, int M);

  /// True for the weight dtypes linear() runs: bf16, fp8_e4m3 with its weight and input
  /// scales, and nvfp4 (weight-only) with its block scales.
  static constexpr bool supports(dtype t) noexcept {
    return t == dtype::bf16 || t == dtype::fp8_e4m3 || t == dtype::nvfp4;
  }
  /// True when linear() runs W: a supported dtype; for fp8_e4m3 both scale pointers set and
  /// K = W.cols a multiple of 16 (Hopper's FP8 GEMMs); for nvfp4 the block scales set and K a
  /// multiple of 16 (the block size).
  static bool supports(const weight& W) noexcept {
    if (W.type == dtype::fp8_e4m3) return W.scale != nullptr && W.input_scale != nullptr && W.cols % 16 == 0;
    if (W.type == dtype::nvfp4) return W.block_scales != nullptr && W.cols % 16 == 0 && W.cols > 0;
    return supports(W.type);
  }
  /// Throws piecewise::config_error naming the tensor and its dtype unless supports(W):
  /// "f32 ... not supported yet", or for fp8_e4m3 / nvfp4 what it lacks (a scale, an input
  /// scale, block scales, K a multiple of 16). Host only; capture-safe.
  static void require_supported(const weight& W);

  /// Makes the e4m3 scratch that linear() quantizes FP8 weights' inputs into hold at least
  /// rows x cols bytes (rows: the most rows of any call, cols: the widest K of any FP8
  /// weight). Allocates (a piecewise::device_buffer named "gemm_engine FP8 input") only when
  /// the scratch is smaller; never shrinks (a larger scratch has a new address: graphs
  /// captured before it read the old one, so reserve before capturing). Call it once before the first FP8 linear() and
  /// before any capture. NOT capture-safe. Throws piecewise::cuda_error when device memory
  /// runs out, piecewise::config_error for negative sizes.
  void reserve_fp8_input(int rows, int cols);
  /// Bytes of the FP8 input scratch (0 until reserve_fp8_input).
  [[nodiscard]] std::size_t fp8_input_bytes() const noexcept { return fp8_input_bytes_; }

  /// Makes the bf16 scratch that linear() dequantizes an NVFP4 weight into (above
  /// kNvfp4GemvMaxRows rows) hold at least `elems` elements (the largest NVFP4 weight's rows x
  /// cols). Same rules as reserve_fp8_input (a piecewise::device_buffer named "gemm_engine NVFP4
  /// dequantized weight"; never shrinks; reserve before capturing). NOT capture-safe.
  void reserve_nvfp4_scratch(std::size_t elems);
  /// Bytes of the NVFP4 scratch (0 until reserve_nvfp4_scratch).
  [[nodiscard]] std::size_t nvfp4_scratch_bytes() const noexcept { return nvfp4_scratch_bytes_; }

  /// y = x W^T (accumulate = false) or y += x W^T (accumulate = true) on stream s, with
  /// K = W.cols and N = W.rows. x: [M, K], y: [M, N], row-major bf16 with contiguous rows.
  /// bf16 W: one bf16 GEMM (the GEMV at M = kGemmGemvRows, see uses_gemv). fp8_e4m3 W: quantize_fp8_rows(x, *W.input_scale) into the FP8
  /// input scratch (rows of K bytes; see reserve_fp8_input), then linear_fp8 with W's scales,
  /// so y = e4m3(x / s_in) e4m3(W)^T * s_in * s_w, accumulated in fp32, rounded to bf16 once.
  /// nvfp4 W: y = x dequant(W)^T, bf16 x, fp32 accumulation: gemv_nvfp4 for M <=
  /// kNvfp4GemvMaxRows, else dequantize_nvfp4 into the NVFP4 scratch (throws
  /// piecewise::config_error naming the tensor when it is smaller than W) and one bf16 GEMM.
  /// Capture-safe once the shape is prepared (prepare(W, M)). An unprepared shape is prepared
  /// lazily when s is not capturing; while s is capturing it throws piecewise::config_error
  /// naming the shape. Throws piecewise::config_error naming the tensor unless supports(W),
  /// when the FP8 scratch is smaller than M x K (naming both), for misaligned pointers;
  /// piecewise::error when cublasLtMatmul fails. M == 0 is a no-op.
  void linear(const bf16* x, const weight& W, bf16* y, int M, cudaStream_t s, bool accumulate = false);

  /// The e4m3 scratch that holds the input of FP8 weight W for M rows (rows of W.cols bytes,
  /// contiguous): where a producer that quantizes while it computes (rmsnorm_fp8,
  /// gated_rmsnorm_fp8, relu2_fp8, with *W.input_scale) writes it before linear_fp8_input().
  /// One scratch for every FP8 weight: fill and consume it in stream order. Throws
  /// piecewise::config_error naming the tensor unless W is an FP8 weight that supports(W), or
  /// when the reserved scratch is smaller than M x K. Host only, no GPU work: capture-safe.
  [[nodiscard]] std::uint8_t* fp8_input(const weight& W, int M);
  /// y = x W^T (accumulate: y += x W^T) for an FP8 weight W whose quantized input a producer
  /// has already written into fp8_input(W, M): linear_fp8(fp8_input(W, M), K, W.input_scale,
  /// W, y, N, M, s, accumulate). Equals linear(x, W, ...) bit for bit when the producer wrote
  /// e4m3(x / *W.input_scale). There is no bf16 input, so observe_inputs() does not see it
  /// (calibration runs bf16 weights). Same preparation, capture rules and errors as linear().
  void linear_fp8_input(const weight& W, bf16* y, int M, cudaStream_t s, bool accumulate = false);

  /// y = relu(x W^T)^2 (the MLP and shared-expert up projections): fused into the GEMV's
  /// epilogue (one bf16 rounding) when M takes a GEMV path (bf16 or NVFP4), else linear() then
  /// relu2_inplace (two roundings). Same rules and errors as linear().
  void linear_relu2(const bf16* x, const weight& W, bf16* y, int M, cudaStream_t s);

  /// Whether bf16 GEMMs with M = kGemmGemvRows run as the GEMV kernel (default: yes unless
  /// NH_GEMV=0); FP8 weights take the FP8 GEMM at every M. Set it before preparing and capturing; a captured graph keeps its kernels.
  void use_gemv(bool on) noexcept { gemv_ = on; }
  [[nodiscard]] bool uses_gemv(int M) const noexcept;

  /// Same as linear(), with explicit row strides (elements) for x and y (ldx >= K,
  /// ldy >= N, multiples of 8); W is contiguous. Strided shapes are cached separately (an FP8
  /// weight's plan is (M, K, N, K, ldy): the quantized input is contiguous).
  void linear_strided(const bf16* x, int ldx, const weight& W, bf16* y, int ldy, int M, cudaStream_t s,
                      bool accumulate = false);

  /// linear() for a plain bf16 matrix W [N, K].
  void linear(const bf16* x, const bf16* W, bf16* y, int M, int K, int N, cudaStream_t s,
              bool accumulate = false) {
    linear(x, weight::bf16_matrix(W, N, K), y, M, s, accumulate);
  }
  /// linear_strided() for a plain bf16 matrix W [N, K].
  void linear_strided(const bf16* x, int ldx, const bf16* W, bf16* y, int ldy, int M, int K,
                      int N, cudaStream_t s, bool accumulate = false) {
    linear_strided(x, ldx, weight::bf16_matrix(W, N, K), y, ldy, M, s, accumulate);
  }

  /// y[M, N] (fp32, row stride ldy >= N, a multiple of 8) = x[M, K] W[N, K]^T with bf16 x and
  /// W, fp32 accumulation and no rounding of the result: the MoE router's logits, which
  /// transformers computes in fp32. Same preparation, alignment and capture rules as linear()
  /// (prepare with prepare_f32_out). Throws piecewise::config_error for a weight that is not bf16.
  void linear_f32_out(const bf16* x, const weight& W, float* y, int ldy, int M, cudaStream_t s);
  /// prepare() for linear_f32_out with output row stride ldy.
  void prepare_f32_out(int M, int K, int N, int ldy);

  /// y[M, N] = (xq[M, K] W[N, K]^T) * (*x_scale) * (*W.scale) (accumulate: y += ...), with xq
  /// e4m3 bytes (rows of ldx bytes, quantized with the same x_scale by quantize_fp8_rows) and W
  /// a fp8_e4m3 weight with its per-tensor scale; both scales are fp32 in device memory, read
  /// when the GEMM runs. fp32 accumulation (cuBLASLt's default, not fast accumulation), bf16
  /// out with row stride ldy. K and ldx multiples of 16, N and ldy of 8, 16-byte aligned
  /// pointers. Same preparation and capture rules as linear() (prepare with prepare_fp8).
  /// Throws piecewise::config_error naming the tensor when W is not fp8_e4m3 or has no scale.
  void linear_fp8(const std::uint8_t* xq, int ldx, const float* x_scale, const weight& W, bf16* y, int ldy, int M,
                  cudaStream_t s, bool accumulate = false);
  /// prepare() for linear_fp8 with these strides.
  void prepare_fp8(int M, int K, int N, int ldx, int ldy);

  /// Calibration of static input scales: while `slots` is set, every linear(),
  /// linear_strided() and linear_relu2() whose weight's data pointer is a key of `slots` first
  /// launches amax_abs_rows (kernels/quantize_fp8.cuh) of its input x[M, K] into that key's
  /// device float (a running max; the caller zeroes it first and reads it after a sync). Other
  /// weights run as always. The map is the caller's and must outlive its use; null turns the
  /// observation off (the default). The added kernel is capture-safe, but a graph captured
  /// while observing keeps it: observe eager forwards only. Host only, no GPU work.
  void observe_inputs(const std::map<const void*, float*>* slots) noexcept { observe_ = slots; }

  [[nodiscard]] cublasLtHandle_t handle() const noexcept { return handle_; }
  [[nodiscard]] std::size_t workspace_bytes() const noexcept { return workspace_bytes_; }

 private:
  struct plan;  // descriptors + algorithm for one shape (defined in gemm.cu)
  /// The operand and output types of a plan.
  enum class variant : int { bf16, f32_out, fp8 };
  using key = std::tuple<int, int, int, int, int, int>;  // M, K, N, ldx, ldy, variant
  const plan& get_plan(int M, int K, int N, int ldx, int ldy, variant v, cudaStream_t s);
  const plan& make_plan(int M, int K, int N, int ldx, int ldy, variant v);

  std::size_t workspace_bytes_ = 0;
  piecewise::device_buffer workspace_;  // before handle_: freed after it
  std::size_t fp8_input_bytes_ = 0;
  piecewise::device_buffer fp8_input_;  // e4m3 inputs of FP8 weights (reserve_fp8_input)
  std::size_t nvfp4_scratch_bytes_ = 0;
  piecewise::device_buffer nvfp4_scratch_;  // a dequantized NVFP4 weight (reserve_nvfp4_scratch)
  cublasLtHandle_t handle_ = nullptr;
  std::map<key, plan*> plans_;
  bool gemv_ = true;
  const std::map<const void*, float*>* observe_ = nullptr;
  void observe(const bf16* x, int ldx, const weight& W, int M, cudaStream_t s) const;
};

}  // namespace nemotron_h
