// RMSNorm family of the NemotronH layers: plain, fused residual-add, and the Mamba2 gated
// group norm. fp32 math, bf16 in/out; the _fp8 variants write the e4m3 input of an FP8
// projection instead (ModelOpt W8A8: each bf16-rounded output divided by the weight's static
// input scale, kernels/fp8_device.cuh), equal to the bf16 kernel followed by
// quantize_fp8_rows bit for bit, in one kernel and one byte an element.
//
// Rounding: y = bf16(w * (x * rsqrt(mean(x^2) + eps))) computed in fp32 and rounded once
// (transformers rounds x * rsqrt(...) to bf16 before multiplying by w; the difference is one
// bf16 rounding, well inside the tests' tolerance).
//
// Capture safety: every function here launches one kernel on `stream`, allocates nothing and
// never synchronizes; grids are sized from the host bound `rows` (padded token count). When
// `num_rows` (device pointer) is given, rows >= *num_rows are skipped (left untouched), so a
// graph captured once is replayed with new token counts. All are capture-safe.
//
// Launch order: each kernel is launched with programmatic dependent launch (kernels/pdl.cuh)
// and lets the next kernel start as soon as it has waited for the one before, so a decode
// GEMV after a norm has its first weight loads in flight while the norm runs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common.cuh"

namespace nemotron_h {

/// y[r] = w * x[r] / sqrt(mean(x[r]^2) + eps) for r < rows (or < *num_rows). x, y: [rows, D]
/// contiguous bf16; w: [D]. y may alias x. Requires D % 8 == 0 and 16-byte aligned pointers
/// (throws piecewise::config_error otherwise). Capture-safe.
void rmsnorm(const bf16* x, const bf16* w, bf16* y, int rows, int D, float eps,
             cudaStream_t stream, const int* num_rows = nullptr);

/// Fused residual add + RMSNorm: residual[r] = bf16(residual[r] + x[r]) (fp32 add, rounded to
/// bf16: the residual stream is bf16, as in transformers), then y[r] = rmsnorm(residual[r])
/// computed from the rounded residual. x may be nullptr (no add: plain norm of residual).
/// Same requirements as rmsnorm(); y must not alias residual or x. Capture-safe.
void add_rmsnorm(const bf16* x, bf16* residual, const bf16* w, bf16* y, int rows, int D,
                 float eps, cudaStream_t stream, const int* num_rows = nullptr);

/// rmsnorm() whose output goes to an FP8 GEMM: q[r * D + c] = e4m3(bf16(rmsnorm(x)[r, c]) /
/// *scale), *scale (device memory, read when the kernel runs) the weight's static input scale;
/// quantize_fp8_rows(rmsnorm(x)) bit for bit. q: [rows, D] bytes, 8-byte aligned; otherwise as
/// rmsnorm() (x and w 16-byte aligned, D % 8 == 0; throws piecewise::config_error naming the
/// shape, or for a null q / scale). Rows >= *num_rows are left untouched. Capture-safe.
void rmsnorm_fp8(const bf16* x, const bf16* w, const float* scale, std::uint8_t* q, int rows, int D, float eps,
                 cudaStream_t stream, const int* num_rows = nullptr);

/// Mamba2 gated group RMSNorm (norm_before_gate = False):
///   g = y * silu(z) (fp32), out = w * g / sqrt(mean_group(g^2) + eps) per group of
///   d_inner / G channels. y: fp32 [rows, d_inner] with row stride ldy (the SSD scan
///   output); z: bf16 view with row stride ldz (the z slice of the in_proj output, row stride
///   = in_proj width); w: [d_inner]; out: bf16 [rows, d_inner] with row stride ldo.
/// Requires d_inner % G == 0, group size % 4 == 0, strides % 4 == 0, 16-byte (y) / 8-byte
/// (z, out) aligned pointers; throws piecewise::config_error otherwise. Capture-safe.
void gated_rmsnorm(const float* y, int ldy, const bf16* z, int ldz, const bf16* w, bf16* out,
                   int ldo, int rows, int d_inner, int G, float eps, cudaStream_t stream,
                   const int* num_rows = nullptr);

/// Same with a bf16 y (for a scan that emits bf16). Capture-safe.
void gated_rmsnorm(const bf16* y, int ldy, const bf16* z, int ldz, const bf16* w, bf16* out,
                   int ldo, int rows, int d_inner, int G, float eps, cudaStream_t stream,
                   const int* num_rows = nullptr);

/// gated_rmsnorm() whose output goes to an FP8 GEMM (out_proj): q[r * ldq + c] =
/// e4m3(bf16(out[r, c]) / *scale); gated_rmsnorm() then quantize_fp8_rows bit for bit. q rows of
/// ldq bytes (ldq >= d_inner, a multiple of 4), q 4-byte aligned; otherwise the same
/// requirements and errors as gated_rmsnorm(). Capture-safe.
void gated_rmsnorm_fp8(const float* y, int ldy, const bf16* z, int ldz, const bf16* w, const float* scale,
                       std::uint8_t* q, int ldq, int rows, int d_inner, int G, float eps, cudaStream_t stream,
                       const int* num_rows = nullptr);
/// Same with a bf16 y. Capture-safe.
void gated_rmsnorm_fp8(const bf16* y, int ldy, const bf16* z, int ldz, const bf16* w, const float* scale,
                       std::uint8_t* q, int ldq, int rows, int d_inner, int G, float eps, cudaStream_t stream,
                       const int* num_rows = nullptr);

}  // namespace nemotron_h
