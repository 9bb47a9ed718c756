// bf16 GEMM through cuBLASLt for the NemotronH linear layers.
//
// y[M, N] = x[M, K] * W[N, K]^T (PyTorch nn.Linear layout, row-major, no bias), bf16 in,
// fp32 accumulate, bf16 out; optionally y += x * W^T (beta = 1) so out_proj / down_proj /
// o_proj can add straight into the residual stream.
//
// The handle, the workspace and the per-shape algorithm choice are made outside any
// capture (constructor, prepare()); afterwards linear() launches one cublasLtMatmul and is
// capture-safe.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <tuple>

#include "kernels/common.cuh"

namespace nemotron_h {

/// Owns a cuBLASLt handle, a device workspace and a cache of heuristic algorithm choices
/// keyed by (M, K, N). Move-only in spirit: not copyable, not movable (hold it by value in
/// one owner or by unique_ptr). Not thread-safe; one workspace, so do not run two linear()
/// calls of the same engine concurrently on different streams.
class gemm_engine {
 public:
  /// Default workspace: 32 MiB (cuBLASLt on Hopper recommends at least 32 MiB).
  static constexpr std::size_t default_workspace_bytes = std::size_t{32} << 20;

  /// Creates the cuBLASLt handle and allocates the workspace (cudaMalloc).
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

  /// y = x W^T (accumulate = false) or y += x W^T (accumulate = true) on stream s.
  /// x: [M, K], W: [N, K], y: [M, N], all row-major bf16 with contiguous rows.
  /// Capture-safe once (M, K, N) is prepared. An unprepared shape is prepared lazily when
  /// s is not capturing; while s is capturing it throws piecewise::config_error naming the
  /// shape. Throws piecewise::config_error for misaligned pointers, piecewise::error when
  /// cublasLtMatmul fails. M == 0 is a no-op.
  void linear(const bf16* x, const bf16* W, bf16* y, int M, int K, int N, cudaStream_t s,
              bool accumulate = false);

  /// Same as linear(), with explicit row strides (elements) for x and y (ldx >= K,
  /// ldy >= N, multiples of 8); W is contiguous. Strided shapes are cached separately.
  void linear_strided(const bf16* x, int ldx, const bf16* W, bf16* y, int ldy, int M, int K,
                      int N, cudaStream_t s, bool accumulate = false);

  [[nodiscard]] cublasLtHandle_t handle() const noexcept { return handle_; }
  [[nodiscard]] std::size_t workspace_bytes() const noexcept { return workspace_bytes_; }

 private:
  struct plan;  // descriptors + algorithm for one shape (defined in gemm.cu)
  using key = std::tuple<int, int, int, int, int>;  // M, K, N, ldx, ldy
  const plan& get_plan(int M, int K, int N, int ldx, int ldy, cudaStream_t s);
  const plan& make_plan(int M, int K, int N, int ldx, int ldy);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
  std::map<key, plan*> plans_;
};

}  // namespace nemotron_h
