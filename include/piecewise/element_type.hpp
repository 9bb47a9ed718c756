// piecewise/element_type.hpp — element types of declared buffers and their host decoding.
//
// The one home of bf16 / f16 bit conversions on the host: validation compares typed outputs
// by value with them, and the bundled model reads and writes checkpoint tensors with them.
// Host-only (no CUDA headers), C++17, no allocation; every function may be called while a
// stream is being captured.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace piecewise {

/// Element type of a buffer, for value-aware comparisons in validation.
enum class element_type { bytes, f32, f16, bf16, i32 };

/// Bytes per element (1 for element_type::bytes).
constexpr std::size_t element_size(element_type t) noexcept {
  switch (t) {
    case element_type::f32: case element_type::i32: return 4;
    case element_type::bf16: case element_type::f16: return 2;
    case element_type::bytes: return 1;
  }
  return 1;
}

/// "f32", "bf16", ...
constexpr const char* to_string(element_type t) noexcept {
  switch (t) {
    case element_type::bytes: return "bytes";
    case element_type::f32: return "f32";
    case element_type::f16: return "f16";
    case element_type::bf16: return "bf16";
    case element_type::i32: return "i32";
  }
  return "?";
}

/// bf16 bits -> float (exact).
inline float bf16_bits_to_float(std::uint16_t b) noexcept {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// float -> bf16 bits, round to nearest even; a NaN stays a (quiet) NaN.
inline std::uint16_t float_to_bf16_bits(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

/// IEEE half bits -> float (exact, subnormals, infinities and NaN included).
inline float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  std::uint32_t u;
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24, exact
    return sign ? -v : v;
  }
  if (exp == 31) u = sign | 0x7f800000u | (mant << 13);
  else u = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// float -> IEEE half bits, round to nearest even (overflow -> inf, NaN stays NaN).
inline std::uint16_t float_to_half_bits(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {  // below the smallest normal half: a subnormal (or zero)
    float a;
    std::memcpy(&a, &abs, 4);
    // a * 2^24 rounded to nearest even is the subnormal mantissa (exact in float arithmetic).
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(a * 16777216.0f)));
  }
  std::uint32_t r = abs - (112u << 23);  // rebias the exponent (127 -> 15)
  r += 0xfffu + ((r >> 13) & 1u);        // round to nearest even at bit 13
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

/// The value of one element at `p` (unaligned is fine); 0 for element_type::bytes.
inline double element_to_double(const void* p, element_type t) noexcept {
  switch (t) {
    case element_type::f32: { float f; std::memcpy(&f, p, 4); return f; }
    case element_type::i32: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
    case element_type::bf16: { std::uint16_t h; std::memcpy(&h, p, 2); return bf16_bits_to_float(h); }
    case element_type::f16: { std::uint16_t h; std::memcpy(&h, p, 2); return half_bits_to_float(h); }
    case element_type::bytes: return 0;
  }
  return 0;
}

}  // namespace piecewise
