// NVFP4 weight-only GEMV and dequantization (see nvfp4.cuh).
//
// One lane's 32-bit word of a tile (8 elements, 2 rows x 4 columns of its block) holds the
// four mma A-fragment pairs so that each decodes to a bf16x2 with few operations: a bf16 whose
// exponent field is the e2m1 exponent E and whose top mantissa bit is the e2m1 mantissa M is
// e2m1 x 2^-126 (E = 0, M = 1 is the subnormal 2^-127 = 0.5 x 2^-126, which the bf16 multiply
// keeps). A pair's low element needs its M, E0, E1, sign at bits 6, 7, 8, 15 (mask T =
// 0x81C081C0), the high element the same 16 bits higher. No layout of a word's 32 bits lets
// every pair be one shift or rotation and one mask (checked exhaustively), so the word holds
//   pair 0 = w & T,  pair 1 = (w << 3) & T,
//   pair 2 = ((w >> 3) & MEM) | ((w << 1) & SIGN),  pair 3 = ((w << 2) & SIGN) | ((w << 6) & MEM)
// (MEM = 0x01C001C0, SIGN = 0x80008000): six logic operations a word; the shifts are integer
// multiplies (the left ones as w * 2^k, the right one as the high word of w * 2^29), which run
// on the FMA pipe and leave the integer pipe, the decode's bottleneck, to the masks.
// Multiplying by the block scale's bf16 broadcast times 2^118 (bf16 multiply, exact) gives
// e2m1 x scale x 2^-8.
//
// The scales are stored as 8-bit codes c with bf16 bits (c << 4) + (236 << 7) = scale x 2^118
// (e4m3 values 2^-9 ... 448 have exponent fields 236 ... 253 there and 3 mantissa bits), so the
// decode is one integer multiply-add a row (the code times 0x100010 puts it in both halves).
#include "kernels/nvfp4.cuh"

#include <iterator>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/fp8_device.cuh"
#include "kernels/pdl.cuh"
#include "kernels/tensor_core.cuh"

namespace nemotron_h {

namespace {

constexpr unsigned kPairMask = 0x81C081C0u, kMagnitude = 0x01C001C0u, kSign = 0x80008000u;
constexpr unsigned kScaleBias = (236u << 7) | (236u << 23);

/// The word bit that pair P's bit j comes from (j one of 6, 7, 8, 15 for the low element, 16
/// more for the high one; see the top of the file).
__host__ __device__ constexpr int pair_source_bit(int pair, int j) {
  const bool sign = j == 15 || j == 31;
  switch (pair) {
    case 0: return j;
    case 1: return j - 3;
    case 2: return sign ? j - 1 : j + 3;
    default: return sign ? j - 2 : j - 6;
  }
}
/// Bit j of a pair for field f of element e (f: M, E0, E1, sign).
__host__ __device__ constexpr int pair_target_bit(int field, int element) {
  return (field < 3 ? 6 + field : 15) + 16 * element;
}

/// The four bf16x2 pairs of one word, each e2m1 x 2^-126 (see the top of the file).
__device__ __forceinline__ void decode_word(unsigned w, unsigned (&a)[4]) {
  a[0] = w & kPairMask;
  a[1] = (w * 8u) & kPairMask;
  a[2] = (__umulhi(w, 1u << 29) & kMagnitude) | ((w * 2u) & kSign);
  a[3] = ((w * 4u) & kSign) | ((w * 64u) & kMagnitude);
}

__device__ __forceinline__ unsigned bf16x2_mul(unsigned a, unsigned b) {
  unsigned d;
  asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

/// Block scale codes (row g in byte 0, row g + 8 in byte 1) to two bf16x2 broadcasts of scale x 2^118.
__device__ __forceinline__ void decode_scales(unsigned codes, unsigned& s0, unsigned& s1) {
  s0 = (codes & 0xffu) * 0x100010u + kScaleBias;
  s1 = __umulhi(codes, 1u << 24) * 0x100010u + kScaleBias;
}

/// The code of an e4m3 scale byte (finite, not negative; 0 for a zero scale, whose elements the
/// repack clears).
__device__ __forceinline__ unsigned scale_code(std::uint8_t b) {
  if ((b & 0x7f) == 0) return 0;
  const unsigned bits = __float_as_uint(e4m3_magnitude(b) * 0x1p118f) >> 16;
  return (bits - (236u << 7)) >> 4;
}

/// One thread a (strip, group, lane): its 16 element bytes (rows r0 = 16s + g and r0 + 8, 16
/// columns of block 4 * group + t) and its 2 scale codes, from the checkpoint layout.
__global__ void repack_kernel(const std::uint8_t* __restrict__ packed, const std::uint8_t* __restrict__ scales,
                              int rows, int cols, int strips, int groups, uint4* __restrict__ dst_packed,
                              unsigned short* __restrict__ dst_scales) {
  const long long total = static_cast<long long>(strips) * groups * 32;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const int blocks_per_row = cols / 16;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int lane = static_cast<int>(i % 32);
    const long long sg = i / 32;
    const int group = static_cast<int>(sg % groups), strip = static_cast<int>(sg / groups);
    const int g = lane / 4, t = lane % 4, block = 4 * group + t;
    unsigned char nib[2][16] = {};  // [row half][column within the block]
    unsigned code[2] = {0, 0};
    for (int h = 0; h < 2; ++h) {
      const int r = strip * 16 + g + 8 * h;
      if (r >= rows || block >= blocks_per_row) continue;
      const std::uint8_t sb = scales[static_cast<long long>(r) * blocks_per_row + block];
      if ((sb & 0x7f) == 0) continue;  // a zero scale: zero elements
      code[h] = scale_code(sb);
      const std::uint8_t* src = packed + static_cast<long long>(r) * (cols / 2) + block * 8;
      for (int q = 0; q < 16; ++q) nib[h][q] = (src[q / 2] >> (4 * (q % 2))) & 15;
    }
    unsigned w[4];
    for (int j = 0; j < 4; ++j) {
      // Pair 0: row g, columns 4j, 4j+1; pair 1: row g + 8, the same; pairs 2, 3: columns 4j+2, 4j+3.
      unsigned word = 0;
      for (int pair = 0; pair < 4; ++pair) {
        const int h = pair & 1, col = 4 * j + (pair >= 2 ? 2 : 0);
        for (int e = 0; e < 2; ++e) {
          const unsigned n = nib[h][col + e];
          for (int f = 0; f < 4; ++f) word |= ((n >> f) & 1u) << pair_source_bit(pair, pair_target_bit(f, e));
        }
      }
      w[j] = word;
    }
    dst_packed[i] = make_uint4(w[0], w[1], w[2], w[3]);
    dst_scales[i] = static_cast<unsigned short>(code[0] | (code[1] << 8));
  }
}

/// model/quant_formats.hpp's double_to_e2m1 in device code.
__device__ std::uint8_t e2m1_of_double(double f) {
  if (isnan(f)) return 0;
  const std::uint8_t sign = signbit(f) ? 8 : 0;
  const double a = fabs(f);
  const double mid[7] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
  std::uint8_t code = 0;
  while (code < 7 && (a > mid[code] || (a == mid[code] && (code & 1)))) ++code;
  return static_cast<std::uint8_t>(sign | code);
}

__global__ void global_scale_kernel(const float* __restrict__ amax, float* __restrict__ global) {
  pdl_wait();
  const float a = *amax;
  *global = a > 0.0f ? __fdiv_rn(a, 2688.0f) : 1.0f;
}

/// One thread a block of 16: as quantize_nvfp4 (model/quantize.cpp), in float64.
__global__ void quantize_kernel(const bf16* __restrict__ w, int rows, int cols, const float* __restrict__ global,
                                std::uint8_t* __restrict__ packed, std::uint8_t* __restrict__ scales) {
  pdl_wait();
  const int nb = cols / 16;
  const long long total = static_cast<long long>(rows) * nb;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const double gs = static_cast<double>(*global);
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const bf16* src = w + i * 16;
    double v[16], bmax = 0;
    for (int k = 0; k < 16; ++k) {
      v[k] = static_cast<double>(to_float(src[k]));
      bmax = fmax(bmax, fabs(v[k]));
    }
    const std::uint8_t bs = e4m3_of_double(bmax / 6.0 / gs);
    scales[i] = bs;
    const double step = static_cast<double>(e4m3_magnitude(bs)) * gs;
    for (int k = 0; k < 16; k += 2) {
      const std::uint8_t lo = step > 0 ? e2m1_of_double(v[k] / step) : 0;
      const std::uint8_t hi = step > 0 ? e2m1_of_double(v[k + 1] / step) : 0;
      packed[i * 8 + k / 2] = static_cast<std::uint8_t>(lo | (hi << 4));
    }
  }
}

/// Groups of 64 columns a warp keeps in flight (their elements and scales in registers) while
/// it decodes one. Two is enough: the decode, not the loads, bounds the kernel, and fewer
/// registers leave room for more warps (measured at 9B shapes: 2 beats 4 by 10-20%).
constexpr int kPrefetch = 2;

/// This lane's 16 columns of a group of x row m (zeros past M or K): its 8 B-fragment words.
__device__ __forceinline__ void load_x16(const bf16* __restrict__ row, bool in, unsigned (&b)[8]) {
  if (in) {
    const uint4 u0 = __ldg(reinterpret_cast<const uint4*>(row)), u1 = __ldg(reinterpret_cast<const uint4*>(row) + 1);
    b[0] = u0.x, b[1] = u0.y, b[2] = u0.z, b[3] = u0.w, b[4] = u1.x, b[5] = u1.y, b[6] = u1.z, b[7] = u1.w;
  } else {
#pragma unroll
    for (int q = 0; q < 8; ++q) b[q] = 0;
  }
}

/// One block of KS warps a strip; warp w takes groups w, w + KS, ... in order (kPrefetch of them
/// in flight) into two accumulator sets, even and odd steps (two chains of dependent mma instead
/// of one), then the warps' sums (set 0 + set 1) are added in warp order through shared memory,
/// one n-tile at a time. KS depends on the weight's shape only and the sets do not depend on
/// NT, so a row's result does not depend on M.
template <int NT, int OUT, int KS>
__global__ void __launch_bounds__(KS * 32)
    gemv_nvfp4_kernel(const bf16* __restrict__ x, int ldx, const uint4* __restrict__ wp,
                      const unsigned short* __restrict__ ws, int N, int K, int groups, float alpha,
                      void* __restrict__ y, int ldy, int M) {
  constexpr int P = kPrefetch;
  __shared__ float part[KS][4][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, strip = blockIdx.x;
  const int g = lane / 4, t = lane % 4;
  // This lane's elements and scales of group gr are at wl[gr * 32] and sl[gr * 32].
  const uint4* __restrict__ wl = wp + static_cast<long long>(strip) * groups * 32 + lane;
  const unsigned short* __restrict__ sl = ws + static_cast<long long>(strip) * groups * 32 + lane;
  // The first groups' elements and scales are in flight before waiting for the previous kernel
  // (weights are constant).
  uint4 wb[P];
  unsigned sb[P];
#pragma unroll
  for (int p = 0; p < P; ++p) {
    const int gr = warp + p * KS;
    wb[p] = gr < groups ? detail::ld_stream16(wl + gr * 32) : make_uint4(0, 0, 0, 0);
    sb[p] = gr < groups ? sl[gr * 32] : 0u;
  }
  pdl_wait();
  // The x rows of this lane's B fragments (row g + 8i), at its 16 columns of group 0.
  const bf16* xr[NT];
#pragma unroll
  for (int i = 0; i < NT; ++i) xr[i] = x + static_cast<long long>(g + 8 * i) * ldx + t * 16;
  float acc[2][NT][4] = {};
  for (int first = warp; first < groups; first += P * KS) {
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int gr = first + p * KS;
      if (gr >= groups) break;  // warp-uniform
      const uint4 wcur = wb[p];
      const unsigned scur = sb[p];
      const int nx = gr + P * KS;
      if (nx < groups) {
        wb[p] = detail::ld_stream16(wl + nx * 32);
        sb[p] = sl[nx * 32];
      }
      const bool kin = gr * kNvfp4GroupCols + t * 16 < K;
      unsigned b[NT][8];
#pragma unroll
      for (int i = 0; i < NT; ++i) load_x16(xr[i] + gr * kNvfp4GroupCols, kin && g + 8 * i < M, b[i]);
      unsigned s0, s1;
      decode_scales(scur, s0, s1);
      const unsigned words[4] = {wcur.x, wcur.y, wcur.z, wcur.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        unsigned a[4];
        decode_word(words[j], a);
        a[0] = bf16x2_mul(a[0], s0);
        a[1] = bf16x2_mul(a[1], s1);
        a[2] = bf16x2_mul(a[2], s0);
        a[3] = bf16x2_mul(a[3], s1);
#pragma unroll
        for (int i = 0; i < NT; ++i) detail::mma_bf16(acc[p % 2][i], a, b[i][2 * j], b[i][2 * j + 1]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < NT; ++i) {
    if (i > 0) __syncthreads();  // warp 0 has read the previous n-tile's sums
#pragma unroll
    for (int c = 0; c < 4; ++c) part[warp][c][lane] = acc[0][i][c] + acc[1][i][c];
    __syncthreads();
    if (warp == 0) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float v = part[0][c][lane];
#pragma unroll
        for (int w = 1; w < KS; ++w) v += part[w][c][lane];
        // c0, c1: row g, columns 2t, 2t + 1; c2, c3: row g + 8.
        const int n = strip * 16 + g + 8 * (c / 2), m = 8 * i + 2 * t + (c % 2);
        if (n < N && m < M) detail::gemv_write<OUT>(y, static_cast<std::size_t>(m) * ldy + n, v * alpha);
      }
    }
  }
}

/// Calls f(std::integral_constant<int, KS>{}) for the KS of kNvfp4GemvSplits equal to `split`
/// (none when there is none: the callers check first).
template <class F, std::size_t... I>
void with_split(int split, F&& f, std::index_sequence<I...>) {
  (void)((split == kNvfp4GemvSplits[I] && (f(std::integral_constant<int, kNvfp4GemvSplits[I]>{}), true)) || ...);
}
template <class F>
void with_split(int split, F&& f) {
  with_split(split, f, std::make_index_sequence<std::size(kNvfp4GemvSplits)>{});
}

/// Blocks of KS warps resident on the whole device at once (the one-row kernel's occupancy;
/// queried once).
template <int KS>
long long resident_blocks() {
  static const long long n = [] {
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_nvfp4_kernel<1, 0, KS>, KS * 32, 0) != cudaSuccess) {
      (void)cudaGetLastError();
      per_sm = 2048 / (KS * 32);
    }
    return static_cast<long long>(per_sm > 0 ? per_sm : 1) * multiprocessors();
  }();
  return n;
}

/// Warps a strip, from the weight's shape alone (so that a row's result does not depend on M):
/// the KS of kNvfp4GemvSplits with the least waves x groups a warp, ceil(strips / resident blocks)
/// x ceil(groups / KS) (a partial last wave costs a whole one), fewer waves on a tie. Splitting
/// K further gives more warps to a narrow weight, but a grid one block over the resident ones
/// doubles the time.
int warps_per_strip(int strips, int groups) {
  int best = 2;
  long long best_cost = -1, best_waves = 0;
  auto consider = [&](int ks, long long resident) {
    const long long waves = (strips + resident - 1) / resident, cost = waves * ((groups + ks - 1) / ks);
    if (best_cost < 0 || cost < best_cost || (cost == best_cost && waves < best_waves)) {
      best = ks;
      best_cost = cost;
      best_waves = waves;
    }
  };
  for (int ks : kNvfp4GemvSplits) with_split(ks, [&](auto k) { consider(ks, resident_blocks<decltype(k)::value>()); });
  return best;
}

template <int NT, int OUT, int KS>
void launch_gemv(const bf16* x, int ldx, const weight& W, void* y, int ldy, int M, cudaStream_t s) {
  const nvfp4_layout L{W.rows, W.cols};
  launch_pdl("gemv_nvfp4", gemv_nvfp4_kernel<NT, OUT, KS>, dim3(static_cast<unsigned>(L.strips())), dim3(KS * 32), 0,
             s, x, ldx, static_cast<const uint4*>(W.data), static_cast<const unsigned short*>(W.block_scales), W.rows,
             W.cols, L.groups(), nvfp4_alpha(W), y, ldy, M);
}

template <int NT, int OUT>
void launch_gemv(const bf16* x, int ldx, const weight& W, void* y, int ldy, int M, int split, cudaStream_t s) {
  with_split(split, [&](auto k) { launch_gemv<NT, OUT, decltype(k)::value>(x, ldx, W, y, ldy, M, s); });
}

template <int NT>
void launch_gemv(const bf16* x, int ldx, const weight& W, void* y, int ldy, int M, gemv_out out, int split,
                 cudaStream_t s) {
  switch (out) {
    case gemv_out::store: launch_gemv<NT, 0>(x, ldx, W, y, ldy, M, split, s); break;
    case gemv_out::accumulate: launch_gemv<NT, 1>(x, ldx, W, y, ldy, M, split, s); break;
    case gemv_out::store_relu2: launch_gemv<NT, 2>(x, ldx, W, y, ldy, M, split, s); break;
    case gemv_out::f32: launch_gemv<NT, 3>(x, ldx, W, y, ldy, M, split, s); break;
  }
}

/// One thread a (strip, group, lane): its 32 elements as bf16 e2m1 x scale x 2^-8, two runs of
/// 16 columns (rows g and g + 8).
__global__ void dequantize_kernel(const uint4* __restrict__ wp, const unsigned short* __restrict__ ws, int rows,
                                  int cols, int strips, int groups, bf16* __restrict__ out) {
  pdl_wait();
  const long long total = static_cast<long long>(strips) * groups * 32;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total; i += stride) {
    const int lane = static_cast<int>(i % 32);
    const long long sg = i / 32;
    const int group = static_cast<int>(sg % groups), strip = static_cast<int>(sg / groups);
    const int g = lane / 4, t = lane % 4, k0 = group * kNvfp4GroupCols + 16 * t;
    if (k0 >= cols) continue;
    const uint4 u = detail::ld_stream16(wp + i);
    unsigned s0, s1;
    decode_scales(ws[i], s0, s1);
    const unsigned words[4] = {u.x, u.y, u.z, u.w};
    unsigned r0[8], r1[8];  // rows g and g + 8: columns 4j, 4j+1 then 4j+2, 4j+3
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      unsigned a[4];
      decode_word(words[j], a);
      r0[2 * j] = bf16x2_mul(a[0], s0);
      r1[2 * j] = bf16x2_mul(a[1], s1);
      r0[2 * j + 1] = bf16x2_mul(a[2], s0);
      r1[2 * j + 1] = bf16x2_mul(a[3], s1);
    }
    for (int h = 0; h < 2; ++h) {
      const int r = strip * 16 + g + 8 * h;
      if (r >= rows) continue;
      const unsigned* v = h == 0 ? r0 : r1;
      uint4* dst = reinterpret_cast<uint4*>(out + static_cast<long long>(r) * cols + k0);
      dst[0] = make_uint4(v[0], v[1], v[2], v[3]);
      dst[1] = make_uint4(v[4], v[5], v[6], v[7]);
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

void expect_weight(const weight& W, const char* what) {
  if (W.type != dtype::nvfp4 || W.data == nullptr || W.block_scales == nullptr || W.rows < 1 || W.cols < 16 ||
      W.cols % 16 != 0 || !aligned16(W.data)) {
    throw piecewise::config_error(
        strf("%s: weight '%s' (%s, %d x %d) is not an NVFP4 weight in the device layout (data and block scales set, "
             "cols a multiple of 16, data 16-byte aligned)",
             what, W.name, dtype_name(W.type), W.rows, W.cols));
  }
}

}  // namespace

void repack_nvfp4(const std::uint8_t* packed, const std::uint8_t* scales, int rows, int cols, int out_rows,
                  std::uint8_t* dst_packed, std::uint8_t* dst_scales, cudaStream_t s) {
  if (rows < 0 || cols < 16 || cols % 16 != 0 || out_rows < rows || packed == nullptr || scales == nullptr ||
      dst_packed == nullptr || dst_scales == nullptr || !aligned16(dst_packed) ||
      (reinterpret_cast<std::uintptr_t>(dst_scales) & 1u) != 0) {
    throw piecewise::config_error(strf(
        "repack_nvfp4: rows=%d cols=%d out_rows=%d: cols must be a positive multiple of 16, out_rows >= rows, the "
        "destination elements 16-byte aligned",
        rows, cols, out_rows));
  }
  const nvfp4_layout L{out_rows, cols};
  const long long work = static_cast<long long>(L.strips()) * L.groups() * 32;
  if (work == 0) return;
  const int threads = 256;
  repack_kernel<<<grid_stride_blocks(work, threads), threads, 0, s>>>(
      packed, scales, rows, cols, L.strips(), L.groups(), reinterpret_cast<uint4*>(dst_packed),
      reinterpret_cast<unsigned short*>(dst_scales));
  NH_CHECK_LAUNCH("repack_nvfp4");
}

void quantize_nvfp4_weight(const bf16* w, int rows, int cols, const float* amax, float* global, std::uint8_t* packed,
                           std::uint8_t* scales, cudaStream_t s) {
  if (rows < 0 || cols < 16 || cols % 16 != 0 || w == nullptr || amax == nullptr || global == nullptr ||
      packed == nullptr || scales == nullptr || !aligned16(w)) {
    throw piecewise::config_error(strf(
        "quantize_nvfp4_weight: rows=%d cols=%d: cols must be a positive multiple of 16, w 16-byte aligned, every "
        "pointer given",
        rows, cols));
  }
  launch_pdl("quantize_nvfp4_weight (global scale)", global_scale_kernel, 1, 1, 0, s, amax, global);
  const long long work = static_cast<long long>(rows) * (cols / 16);
  if (work == 0) return;
  const int threads = 128;
  launch_pdl("quantize_nvfp4_weight", quantize_kernel, grid_stride_blocks(work, threads), threads, 0, s, w, rows, cols,
             static_cast<const float*>(global), packed, scales);
  NH_CHECK_LAUNCH("quantize_nvfp4_weight");
}

int nvfp4_gemv_split(const weight& W) {
  const nvfp4_layout L{W.rows, W.cols};
  return warps_per_strip(L.strips(), L.groups());
}

void gemv_nvfp4(const bf16* x, int ldx, const weight& W, void* y, int ldy, int M, gemv_out out, cudaStream_t s,
                int split) {
  expect_weight(W, "gemv_nvfp4");
  bool known = split == 0;
  std::string splits;
  for (int k : kNvfp4GemvSplits) {
    known = known || split == k;
    splits += std::to_string(k) + ", ";
  }
  if (!known)
    throw piecewise::config_error(strf("gemv_nvfp4: weight '%s': %d warps a strip is not one of %s(or 0)", W.name, split,
                                       splits.c_str()));
  if (split == 0) split = nvfp4_gemv_split(W);
  if (M < 1 || M > kNvfp4GemvMaxRows || ldx < W.cols || ldx % 8 != 0 || ldy < W.rows || x == nullptr ||
      y == nullptr || !aligned16(x) || (reinterpret_cast<std::uintptr_t>(y) & 3u) != 0) {
    throw piecewise::config_error(strf(
        "gemv_nvfp4: weight '%s' [%d, %d]: bad shape or pointers (M=%d ldx=%d ldy=%d; M in 1..%d, ldx a multiple of 8 "
        "and >= K, ldy >= N, x 16-byte aligned)",
        W.name, W.rows, W.cols, M, ldx, ldy, kNvfp4GemvMaxRows));
  }
  if (M <= 8) launch_gemv<1>(x, ldx, W, y, ldy, M, out, split, s);
  else if (M <= 16) launch_gemv<2>(x, ldx, W, y, ldy, M, out, split, s);
  else if (M <= 32) launch_gemv<4>(x, ldx, W, y, ldy, M, out, split, s);
  else launch_gemv<8>(x, ldx, W, y, ldy, M, out, split, s);
}

void dequantize_nvfp4(const weight& W, bf16* out, cudaStream_t s) {
  expect_weight(W, "dequantize_nvfp4");
  if (out == nullptr || !aligned16(out))
    throw piecewise::config_error(strf("dequantize_nvfp4: weight '%s': the output must be 16-byte aligned", W.name));
  const nvfp4_layout L{W.rows, W.cols};
  const long long work = static_cast<long long>(L.strips()) * L.groups() * 32;
  const int threads = 256;
  launch_pdl("dequantize_nvfp4", dequantize_kernel, grid_stride_blocks(work, threads), threads, 0, s,
             static_cast<const uint4*>(W.data), static_cast<const unsigned short*>(W.block_scales), W.rows, W.cols,
             L.strips(), L.groups(), out);
}

}  // namespace nemotron_h
