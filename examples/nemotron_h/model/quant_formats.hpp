// The element formats of ModelOpt's quantized checkpoints, bit exact on the host:
//   e4m3 (float8_e4m3fn): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities,
//     0x7f / 0xff are NaN, the largest finite value is 448, subnormals are m * 2^-9.
//   e2m1 (the NVFP4 element): 1 sign, 2 exponent bits (bias 1), 1 mantissa bit, in a nibble:
//     0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives.
// Encoding rounds to nearest, ties to even, and saturates at the largest finite value (as
// ModelOpt does by clamping before the cast); NaN encodes as e4m3 NaN (e2m1 has none: 0).
// Also the per-tensor and per-block scale rules ModelOpt's calibration uses (amax / max).
// Host only (CUDA sources may include it for host code), C++17, no allocation.
#pragma once

#include <cmath>
#include <cstdint>

namespace nemotron_h::quant {

inline constexpr float kE4m3Max = 448.0f;
inline constexpr float kE2m1Max = 6.0f;
/// NVFP4: elements per block scale.
inline constexpr int kNvfp4Block = 16;

/// The value of an e4m3 byte (NaN for 0x7f and 0xff).
inline float e4m3_to_float(std::uint8_t b) noexcept {
  const int sign = b >> 7, exp = (b >> 3) & 0xf, man = b & 7;
  if (exp == 0xf && man == 7) return NAN;
  const float mag = exp == 0 ? std::ldexp(static_cast<float>(man), -9)
                             : std::ldexp(static_cast<float>(8 + man), exp - 10);
  return sign ? -mag : mag;
}

/// The e4m3 byte nearest `f` (ties to even), saturated to +-448; NaN gives 0x7f.
inline std::uint8_t double_to_e4m3(double f) noexcept {
  if (std::isnan(f)) return 0x7f;
  const std::uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const double a = std::fabs(f);
  if (a >= kE4m3Max) return sign | 0x7e;
  int code;
  if (a < 0x1p-6) {
    code = static_cast<int>(std::nearbyint(a * 0x1p9));  // subnormal steps of 2^-9 (8 is 2^-6)
  } else {
    int e = std::ilogb(a);  // >= -6
    int r = static_cast<int>(std::nearbyint((std::ldexp(a, -e) - 1.0) * 8.0));
    if (r == 8) {
      r = 0;
      ++e;
    }
    code = ((e + 7) << 3) | r;
  }
  if (code > 0x7e) code = 0x7e;
  return static_cast<std::uint8_t>(sign | code);
}
inline std::uint8_t float_to_e4m3(float f) noexcept { return double_to_e4m3(f); }

/// The value of an e2m1 nibble (the low 4 bits of `n`).
inline float e2m1_to_float(std::uint8_t n) noexcept {
  constexpr float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float m = mag[n & 7];
  return (n & 8) ? -m : m;
}

/// The e2m1 nibble nearest `f` (ties to even), saturated to +-6; NaN gives 0.
inline std::uint8_t double_to_e2m1(double f) noexcept {
  if (std::isnan(f)) return 0;
  const std::uint8_t sign = std::signbit(f) ? 8 : 0;
  const double a = std::fabs(f);
  // The midpoints between neighbouring magnitudes; at a tie the even code wins.
  constexpr double mid[7] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
  std::uint8_t code = 0;
  while (code < 7 && (a > mid[code] || (a == mid[code] && (code & 1)))) ++code;
  return static_cast<std::uint8_t>(sign | code);
}
inline std::uint8_t float_to_e2m1(float f) noexcept { return double_to_e2m1(f); }

/// ModelOpt's per-tensor FP8 scale for a tensor whose largest magnitude is `amax`: amax / 448
/// (1 for an all-zero tensor, so that the scale stays finite and positive).
inline float fp8_scale(float amax) noexcept { return amax > 0 ? amax / kE4m3Max : 1.0f; }

/// NVFP4's global scale (weight_scale_2): amax / (6 * 448), 1 for an all-zero tensor.
inline float nvfp4_global_scale(float amax) noexcept {
  return amax > 0 ? amax / (kE2m1Max * kE4m3Max) : 1.0f;
}

/// Fake quantization of an activation with a static FP8 scale: e4m3(x / scale) * scale.
inline double fp8_fake_quant(double x, float scale) noexcept {
  return static_cast<double>(e4m3_to_float(double_to_e4m3(x / scale))) * scale;
}

}  // namespace nemotron_h::quant
