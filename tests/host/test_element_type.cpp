// Host bf16 / f16 conversions (exhaustive over all 65536 bit patterns) and element decoding.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "piecewise/element_type.hpp"

using namespace piecewise;

namespace {
std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
// Reference: round a float to the nearest value representable with `mant` mantissa bits
// (ties to even) by exact double arithmetic, for normal results.
double round_to_mantissa(double v, int mant) {
  int e = 0;
  const double m = std::frexp(v, &e);  // v = m * 2^e, 0.5 <= |m| < 1
  const double scale = std::ldexp(1.0, mant + 1);
  return std::ldexp(std::nearbyint(m * scale) / scale, e);
}
}  // namespace

TEST_CASE("bf16 and f16 decode exactly and round-trip every bit pattern") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto b = static_cast<std::uint16_t>(h);
    const float fb = bf16_bits_to_float(b);
    REQUIRE(bits(fb) == (h << 16));
    if (!std::isnan(fb)) REQUIRE(float_to_bf16_bits(fb) == b);
    else REQUIRE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(fb))));

    const float fh = half_bits_to_float(b);
    const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    const double want = exp == 0 ? std::ldexp(mant, -24) : std::ldexp(mant + 1024, exp - 25);
    if (exp == 31) {
      REQUIRE((mant == 0 ? std::isinf(fh) : std::isnan(fh)));
    } else {
      REQUIRE(std::fabs(static_cast<double>(fh)) == want);
      REQUIRE(std::signbit(fh) == ((h & 0x8000u) != 0));
    }
    if (!std::isnan(fh)) REQUIRE(float_to_half_bits(fh) == b);
  }
}

TEST_CASE("float to bf16 and f16 rounds to nearest even, with overflow, NaN and subnormals") {
  // Halfway between two bf16 values: ties go to the even mantissa.
  REQUIRE(float_to_bf16_bits(bf16_bits_to_float(0x3f80) + std::ldexp(1.0f, -8)) == 0x3f80);  // 1 + 2^-8 -> 1
  REQUIRE(float_to_bf16_bits(bf16_bits_to_float(0x3f81) + std::ldexp(1.0f, -8)) == 0x3f82);  // odd -> up
  REQUIRE(float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()) >= 0x7fc0);
  REQUIRE(float_to_half_bits(65520.0f) == 0x7c00);   // rounds to inf
  REQUIRE(float_to_half_bits(65519.0f) == 0x7bff);   // the largest half
  REQUIRE(float_to_half_bits(-1e9f) == 0xfc00);
  REQUIRE(float_to_half_bits(std::ldexp(1.0f, -24)) == 0x0001);  // the smallest subnormal
  REQUIRE(float_to_half_bits(std::ldexp(1.0f, -26)) == 0x0000);  // below half of it
  REQUIRE((float_to_half_bits(std::numeric_limits<float>::quiet_NaN()) & 0x7fff) > 0x7c00);
  // Random normal floats against an exact double reference.
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 200000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const float f = std::ldexp(static_cast<float>(x % 1000003) / 1000003.0f + 0.5f, static_cast<int>(x >> 60) - 8);
    REQUIRE(static_cast<double>(bf16_bits_to_float(float_to_bf16_bits(f))) == round_to_mantissa(f, 7));
    REQUIRE(static_cast<double>(half_bits_to_float(float_to_half_bits(f))) == round_to_mantissa(f, 10));
  }
}

TEST_CASE("element sizes and element_to_double") {
  REQUIRE(element_size(element_type::f32) == 4);
  REQUIRE(element_size(element_type::i32) == 4);
  REQUIRE(element_size(element_type::bf16) == 2);
  REQUIRE(element_size(element_type::f16) == 2);
  REQUIRE(element_size(element_type::bytes) == 1);
  const float f = -2.5f;
  const std::int32_t i = -7;
  const std::uint16_t b = float_to_bf16_bits(3.0f), h = float_to_half_bits(0.125f);
  unsigned char buf[5] = {0, 0, 0, 0, 0};
  std::memcpy(buf + 1, &f, 4);  // unaligned
  REQUIRE(element_to_double(buf + 1, element_type::f32) == -2.5);
  REQUIRE(element_to_double(&i, element_type::i32) == -7.0);
  REQUIRE(element_to_double(&b, element_type::bf16) == 3.0);
  REQUIRE(element_to_double(&h, element_type::f16) == 0.125);
  REQUIRE(element_to_double(&h, element_type::bytes) == 0.0);
  REQUIRE(std::string(to_string(element_type::bf16)) == "bf16");
}
