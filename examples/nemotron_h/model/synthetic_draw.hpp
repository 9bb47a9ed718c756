// The values of the synthetic matrices, element by element: one function that the host
// (model/weights.cpp, synthetic_weights) and the GPU (kernels/synthetic_fill.cu) both call,
// so a tensor drawn on the GPU equals the host's bit for bit.
//
// A tensor of n values, drawn normal(0, scale) or uniform(-scale, scale) from the stream
// `base` = tensor_seed(seed, name): blocks of 2^16 values, block b from the splitmix64 stream
// mix_seed(base, b). In a block, a uniform value is output k + 1 of the stream (k = index in
// the block); normal values come in pairs (Box-Muller: outputs 2p + 1 and 2p + 2 give
// elements 2p (cos) and 2p + 1 (sin)). Every value is a function of (base, index) alone.
//
// Bit-identical on host and GPU: only IEEE-754 operations that both round the same way (+, -,
// *, /, sqrt and fused multiply-add, each written explicitly so that no compiler contracts or
// reorders them) and our own log / sin / cos built from them (the libraries' differ in the
// last bit). C++17 host code, or __host__ __device__ under nvcc; no CUDA header needed.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "model/splitmix.hpp"

namespace nemotron_h::synth {

/// Values per sub-stream block.
inline constexpr std::uint64_t kBlock = std::uint64_t(1) << 16;

// ---- IEEE operations, explicit on both sides ---------------------------------------------------
NH_HOST_DEVICE inline double add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
NH_HOST_DEVICE inline double mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
NH_HOST_DEVICE inline double fma_rn(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
NH_HOST_DEVICE inline double div_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
NH_HOST_DEVICE inline double sqrt_rn(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
NH_HOST_DEVICE inline float to_float_rn(double a) {
#if defined(__CUDA_ARCH__)
  return __double2float_rn(a);
#else
  return static_cast<float>(a);
#endif
}
NH_HOST_DEVICE inline std::uint64_t bits_of(double x) {
  std::uint64_t u;
  std::memcpy(&u, &x, 8);
  return u;
}
NH_HOST_DEVICE inline double double_of(std::uint64_t u) {
  double x;
  std::memcpy(&x, &u, 8);
  return x;
}

/// float -> bf16 bits, round to nearest even, NaN kept quiet (piecewise::float_to_bf16_bits).
NH_HOST_DEVICE inline std::uint16_t bf16_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

// ---- math ------------------------------------------------------------------------------------

/// Natural log of a positive normal double (relative error ~1e-16): x = 2^e m with m in
/// [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172.
NH_HOST_DEVICE inline double log_pos(double x) {
  const std::uint64_t b = bits_of(x);
  int e = static_cast<int>((b >> 52) & 0x7ff) - 1023;
  double m = double_of((b & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // [1, 2)
  if (m > 1.4142135623730951) {
    m = mul(m, 0.5);
    ++e;
  }
  const double s = div_rn(add(m, -1.0), add(m, 1.0));
  const double s2 = mul(s, s);
  // 1/3 + s2/5 + s2^2/7 + ... + s2^10/23
  double p = 1.0 / 23.0;
  p = fma_rn(p, s2, 1.0 / 21.0);
  p = fma_rn(p, s2, 1.0 / 19.0);
  p = fma_rn(p, s2, 1.0 / 17.0);
  p = fma_rn(p, s2, 1.0 / 15.0);
  p = fma_rn(p, s2, 1.0 / 13.0);
  p = fma_rn(p, s2, 1.0 / 11.0);
  p = fma_rn(p, s2, 1.0 / 9.0);
  p = fma_rn(p, s2, 1.0 / 7.0);
  p = fma_rn(p, s2, 1.0 / 5.0);
  p = fma_rn(p, s2, 1.0 / 3.0);
  const double two_s = mul(2.0, s);
  const double log_m = fma_rn(mul(two_s, s2), p, two_s);
  return fma_rn(static_cast<double>(e), 0.6931471805599453, log_m);
}

/// cos(2 pi u) and sin(2 pi u) for u in [0, 1]: quadrant q = round(4u), x = (pi/2)(4u - q) in
/// [-pi/4, pi/4] (4u - q is exact), Taylor polynomials in x (error < 1e-17).
NH_HOST_DEVICE inline void cos_sin_2pi(double u, double& c, double& s) {
  const double u4 = mul(u, 4.0);
  const double q = std::floor(add(u4, 0.5));
  const double x = mul(add(u4, -q), 1.5707963267948966);
  const double x2 = mul(x, x);
  // sin x = x + x^3 (-1/3! + x2/5! - ... + x2^7/17!), Horner from the highest term.
  double sp = 1.0 / 355687428096000.0;               //  x^17: +1/17!
  sp = fma_rn(sp, x2, -1.0 / 1307674368000.0);       //  x^15: -1/15!
  sp = fma_rn(sp, x2, 1.0 / 6227020800.0);           //  x^13: +1/13!
  sp = fma_rn(sp, x2, -1.0 / 39916800.0);            //  x^11: -1/11!
  sp = fma_rn(sp, x2, 1.0 / 362880.0);               //  x^9:  +1/9!
  sp = fma_rn(sp, x2, -1.0 / 5040.0);                //  x^7:  -1/7!
  sp = fma_rn(sp, x2, 1.0 / 120.0);                  //  x^5:  +1/5!
  sp = fma_rn(sp, x2, -1.0 / 6.0);                   //  x^3:  -1/3!
  const double sn = fma_rn(mul(x, x2), sp, x);
  // cos x = 1 - x2 (1/2! - x2/4! + ... + x2^8/18!)
  double cp = 1.0 / 6402373705728000.0;              //  x^18: +1/18!
  cp = fma_rn(cp, x2, -1.0 / 20922789888000.0);      //  x^16: -1/16!
  cp = fma_rn(cp, x2, 1.0 / 87178291200.0);          //  x^14: +1/14!
  cp = fma_rn(cp, x2, -1.0 / 479001600.0);           //  x^12: -1/12!
  cp = fma_rn(cp, x2, 1.0 / 3628800.0);              //  x^10: +1/10!
  cp = fma_rn(cp, x2, -1.0 / 40320.0);               //  x^8:  -1/8!
  cp = fma_rn(cp, x2, 1.0 / 720.0);                  //  x^6:  +1/6!
  cp = fma_rn(cp, x2, -1.0 / 24.0);                  //  x^4:  -1/4! (cos = 1 - x2 cp)
  cp = fma_rn(cp, x2, 0.5);
  const double cs = fma_rn(x2, -cp, 1.0);
  switch (static_cast<int>(q) & 3) {
    case 0: c = cs; s = sn; break;
    case 1: c = -sn; s = cs; break;
    case 2: c = -cs; s = -sn; break;
    default: c = sn; s = -cs; break;
  }
}

// ---- the values ------------------------------------------------------------------------------

/// The stream state of the block holding element i.
NH_HOST_DEVICE inline std::uint64_t block_state(std::uint64_t base, std::uint64_t i) {
  return mix_seed(base, i / kBlock);
}

/// Elements 2p and 2p + 1 of a normal(0, scale) tensor (both as floats before bf16 rounding).
NH_HOST_DEVICE inline void normal_pair(std::uint64_t base, std::uint64_t p, double scale, float& v0, float& v1) {
  const std::uint64_t i = 2 * p;
  const std::uint64_t st = block_state(base, i);
  const std::uint64_t k = i % kBlock;  // even
  const double u1 = uniform01_of(splitmix_at(st, k + 1));
  const double u2 = uniform01_of(splitmix_at(st, k + 2));
  const double r = sqrt_rn(mul(-2.0, log_pos(u1)));
  double c = 0, s = 0;
  cos_sin_2pi(u2, c, s);
  const double a = mul(scale, r);
  v0 = to_float_rn(mul(a, c));
  v1 = to_float_rn(mul(a, s));
}

/// Element i of a uniform(-scale, scale) tensor.
NH_HOST_DEVICE inline float uniform_at(std::uint64_t base, std::uint64_t i, double scale) {
  const double u = uniform01_of(splitmix_at(block_state(base, i), i % kBlock + 1));
  return to_float_rn(mul(scale, add(mul(2.0, u), -1.0)));
}

/// Element i of a tensor drawn normal(0, scale) (`normal`) or uniform(-scale, scale), as bf16
/// bits. (The GPU fill computes pairs with normal_pair; this is the same value.)
NH_HOST_DEVICE inline std::uint16_t bf16_at(std::uint64_t base, std::uint64_t i, bool normal, double scale) {
  if (!normal) return bf16_bits(uniform_at(base, i, scale));
  float v0 = 0, v1 = 0;
  normal_pair(base, i / 2, scale, v0, v1);
  return bf16_bits(i % 2 == 0 ? v0 : v1);
}

}  // namespace nemotron_h::synth
