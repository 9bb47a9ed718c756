// Device-side e4m3 quantization of GEMM inputs with a static per-tensor scale: the one rounding
// every FP8 input producer uses (quantize_fp8_rows, and the norms / squared ReLU that write an
// FP8 projection's input directly), so a fused producer equals its unfused bf16 kernel followed
// by quantize_fp8_rows bit for bit; and the float64 e4m3 rounding that quantizes weights on the
// GPU as the host does (quantize_fp8_weight, the NVFP4 block scales). Include from .cu files only.
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

namespace nemotron_h {

/// e4m3(v / s) for one scale s > 0: the quotient rounded to nearest in fp32 (what __fdiv_rn
/// gives), then to nearest even e4m3, saturating at +-448 (NaN stays NaN), which is
/// model/quant_formats.hpp's float_to_e4m3 of the fp32 quotient, bit for bit.
///
/// Without a division per value: q = RN(v * RN(1 / s)) is within 2 fp32 ulps of RN(v / s)
/// (two roundings of relative size 2^-24 each, 2^-23 of |v / s| < 2 ulps, plus RN's own half
/// ulp), and the e4m3 of a normal fp32 value changes only at the midpoints between e4m3 codes
/// (fp32 mantissa bit 19 set, bits 18..0 clear; above 448 everything saturates to 448). So q
/// gives the same code unless it lies within 4 ulps of a midpoint (low 20 mantissa bits within
/// 4 of 0x80000) or in e4m3's subnormal range (|q| < 2^-6, where the midpoints sit elsewhere);
/// there, about 1 value in 10^5 plus the tiny ones, the exact __fdiv_rn decides. Zeros, infinities
/// and NaN take the product (exact for them). Construct once per thread (one correctly rounded
/// reciprocal), then call per value.
struct e4m3_quantizer {
  float s;  ///< the scale
  float r;  ///< RN(1 / s)
  __device__ explicit e4m3_quantizer(float scale) {
    s = scale;
    r = __frcp_rn(scale);
  }
  __device__ std::uint8_t operator()(float v) const {
    float q = __fmul_rn(v, r);
    const float a = fabsf(q);
    const unsigned low = __float_as_uint(q) & 0xFFFFFu;
    if ((low - 0x7FFFCu) <= 8u || (a < 0x1p-6f && a != 0.0f)) q = __fdiv_rn(v, s);
    return static_cast<std::uint8_t>(__nv_cvt_float_to_fp8(q, __NV_SATFINITE, __NV_E4M3));
  }
};

/// The magnitude of an e4m3 byte as model/quant_formats.hpp's e4m3_to_float gives it (sign
/// ignored; not for the NaN byte), in device code: exact in float.
__device__ inline float e4m3_magnitude(std::uint8_t b) {
  const int exp = (b >> 3) & 15, man = b & 7;
  return exp == 0 ? ldexpf(static_cast<float>(man), -9) : ldexpf(static_cast<float>(8 + man), exp - 10);
}

/// model/quant_formats.hpp's double_to_e4m3, the same steps in device code (every step but the
/// final rounding is exact: scaling by powers of two).
__device__ inline std::uint8_t e4m3_of_double(double f) {
  if (isnan(f)) return 0x7f;
  const std::uint8_t sign = signbit(f) ? 0x80 : 0;
  const double a = fabs(f);
  if (a >= 448.0) return sign | 0x7e;
  int code;
  if (a < 0x1p-6) {
    code = static_cast<int>(rint(a * 0x1p9));  // subnormal steps of 2^-9
  } else {
    int e = ilogb(a);
    int r = static_cast<int>(rint((ldexp(a, -e) - 1.0) * 8.0));  // rint: to nearest even
    if (r == 8) {
      r = 0;
      ++e;
    }
    code = ((e + 7) << 3) | r;
  }
  if (code > 0x7e) code = 0x7e;
  return static_cast<std::uint8_t>(sign | code);
}

}  // namespace nemotron_h
