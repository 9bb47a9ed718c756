// Hopper grouped GEMM for the MoE experts (see moe_sm90.cuh): Y^T tile = W_e tile X^T through
// wgmma.m64nNk16 (A = 64 weight rows, B = N token rows, both K-major in 128-byte swizzled
// shared memory filled by cp.async in a multi-stage pipeline). Every output element is the
// same sequence of k16 wgmma steps over K in increasing order into one fp32 accumulator.
#include "kernels/moe_sm90.cuh"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/hopper.cuh"
#include "kernels/moe_plan_size.hpp"
#include "kernels/pdl.cuh"
#include "kernels/tensor_core.cuh"

namespace nemotron_h::detail {

namespace {

constexpr int kBK = 64;  // one 128-byte swizzle row of bf16

__device__ inline int swz(int row, int chunk) { return row * kBK + ((chunk ^ (row & 7)) << 3); }

// d (+)= A[64x16] B[16xN], A and B K-major from shared memory. N = 16, 64 or 128.
template <int N>
__device__ inline void wgmma_ss(float (&d)[N / 2], std::uint64_t a, std::uint64_t b, int acc);

template <>
__device__ inline void wgmma_ss<16>(float (&d)[8], std::uint64_t a, std::uint64_t b, int acc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7}, %8, %9, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
      : "l"(a), "l"(b), "r"(acc));
}

#define NH_D32                                                                                          \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26," \
  "%27,%28,%29,%30,%31}"
#define NH_D32_OPS(d)                                                                                   \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),       \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),          \
      "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),        \
      "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),        \
      "+f"(d[29]), "+f"(d[30]), "+f"(d[31])

template <>
__device__ inline void wgmma_ss<64>(float (&d)[32], std::uint64_t a, std::uint64_t b, int acc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " NH_D32 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
      : NH_D32_OPS(d)
      : "l"(a), "l"(b), "r"(acc));
}

template <>
__device__ inline void wgmma_ss<128>(float (&d)[64], std::uint64_t a, std::uint64_t b, int acc) {
  hopper::wgmma_m64n128k16_ss(d, a, b, acc != 0);
}

#undef NH_D32
#undef NH_D32_OPS

template <int N>
__device__ inline void fence_acc(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// Block: WG warpgroups, each 64 weight rows; BT token rows. STAGES-deep cp.async pipeline.
template <int BT, int WG, int STAGES>
struct cfg {
  static constexpr int threads = WG * 128;
  static constexpr int BW = 64 * WG;
  static constexpr int tok_elems = BT * kBK, w_elems = BW * kBK;
  static constexpr int stage_bytes = (tok_elems + w_elems) * 2;  // multiple of 1024
  static constexpr int smem_bytes = STAGES * stage_bytes + 1024;  // + alignment slack
  static_assert(STAGES >= 3, "prefetch distance STAGES - 2");
  static_assert(BT * (BW + 8) * 2 <= STAGES * stage_bytes, "the output tile fits the pipeline smem");
  static constexpr int t_iters = (BT * 8 + threads - 1) / threads;
  static constexpr int w_iters = BW * 8 / threads;
  static_assert(stage_bytes % 1024 == 0, "swizzle atoms");
};

template <int BT, int WG, int STAGES, bool W1, bool SEPI>
__global__ void __launch_bounds__(WG * 128)
    moe_gemm_sm90_kernel(const bf16* __restrict__ X, int ldx, int gather, const bf16* __restrict__ W, int N, int K,
                         bf16* __restrict__ Y, int ldy, int relu2, int E, const int* __restrict__ offsets,
                         const int* __restrict__ sorted_token, const int* __restrict__ tile_prefix,
                         const int* __restrict__ tile_expert) {
  using C = cfg<BT, WG, STAGES>;
  extern __shared__ unsigned char smem_raw[];
  pdl_wait();  // launched with launch_pdl
  const int mt = blockIdx.y;
  if (mt >= tile_prefix[E]) return;
  const int e = tile_expert[mt];
  const int row0 = offsets[e] + (mt - tile_prefix[e]) * BT;
  const int row_end = offsets[e + 1];
  const int n0 = blockIdx.x * C::BW;
  const bf16* We = W + static_cast<std::size_t>(e) * N * K;
  const int tid = threadIdx.x;

  const std::uint32_t raw = smem_addr(smem_raw);
  const std::uint32_t sbase = (raw + 1023u) & ~1023u;

  const bf16* t_src[C::t_iters];
  bool t_ok[C::t_iters];
  int t_dst[C::t_iters];
#pragma unroll
  for (int it = 0; it < C::t_iters; ++it) {
    const int id = tid + it * C::threads, r = id >> 3, ch = id & 7;
    const int i = row0 + r;
    t_ok[it] = id < BT * 8 && i < row_end;
    const int src_row = t_ok[it] ? (gather ? sorted_token[i] : i) : 0;
    t_src[it] = X + static_cast<std::size_t>(src_row) * ldx + ch * 8;
    t_dst[it] = id < BT * 8 ? swz(r, ch) : -1;
  }
  const bf16* w_src[C::w_iters];
  bool w_ok[C::w_iters];
  int w_dst[C::w_iters];
#pragma unroll
  for (int it = 0; it < C::w_iters; ++it) {
    const int id = tid + it * C::threads, r = id >> 3, ch = id & 7;
    w_ok[it] = n0 + r < N;
    w_src[it] = We + static_cast<std::size_t>(w_ok[it] ? n0 + r : 0) * K + ch * 8;
    w_dst[it] = C::tok_elems + swz(r, ch);
  }
  const int chunk_k = (tid & 7) * 8;
  const int ktiles = (K + kBK - 1) / kBK;
  auto load = [&](int kt, int slot) {
    const int k0 = kt * kBK;
    const bool kok = k0 + chunk_k < K;
    const std::uint32_t st = sbase + slot * C::stage_bytes;
#pragma unroll
    for (int it = 0; it < C::t_iters; ++it)
      if (t_dst[it] >= 0) cp_async16(st + t_dst[it] * 2, t_src[it] + (kok ? k0 : 0), t_ok[it] && kok);
#pragma unroll
    for (int it = 0; it < C::w_iters; ++it)
      cp_async16(st + w_dst[it] * 2, w_src[it] + (kok ? k0 : 0), w_ok[it] && kok);
  };

  float d[BT / 2];
#pragma unroll
  for (int i = 0; i < BT / 2; ++i) d[i] = 0.0f;
  const int wg = tid / 128;

  // W1: prefetch distance STAGES - 2; the slot refilled at step kt was last read by the wgmma
  // of kt - 2, which wgmma_wait<1> at step kt - 1 completed (one wgmma group stays in flight).
  // Otherwise distance STAGES - 1 and every step waits for its wgmma (wgmma_wait<0>).
  constexpr int PF = W1 ? STAGES - 2 : STAGES - 1;
#pragma unroll
  for (int s = 0; s < PF; ++s) {
    if (s < ktiles) load(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<PF - 1>();
    hopper::fence_proxy_async();
    __syncthreads();
    const int pf = kt + PF;
    if (pf < ktiles) load(pf, pf % STAGES);
    cp_async_commit();
    const std::uint32_t st = sbase + (kt % STAGES) * C::stage_bytes;
    const std::uint32_t ta = st, wa = st + C::tok_elems * 2 + wg * 64 * 128;
    hopper::wgmma_fence();
    if (kt * kBK + kBK <= K) {
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        wgmma_ss<BT>(d, hopper::smem_desc_sw128(wa + kk * 32, 16, 1024),
                     hopper::smem_desc_sw128(ta + kk * 32, 16, 1024), 1);
      }
    } else {  // the last, partial k tile: steps past K are skipped (in every shape)
      for (int kk = 0; kk < kBK / 16 && kt * kBK + kk * 16 < K; ++kk) {
        wgmma_ss<BT>(d, hopper::smem_desc_sw128(wa + kk * 32, 16, 1024),
                     hopper::smem_desc_sw128(ta + kk * 32, 16, 1024), 1);
      }
    }
    hopper::wgmma_commit();
    if constexpr (W1) {
      hopper::wgmma_wait<1>();
    } else {
      hopper::wgmma_wait<0>();
    }
  }
  hopper::wgmma_wait<0>();
  fence_acc(d);
  cp_async_wait<0>();
  __syncthreads();  // every wgmma and copy done: the pipeline smem holds the output tile now

  if constexpr (!SEPI) {  // direct 2-byte stores
    const int lane = tid & 31, w = (tid / 32) & 3, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < BT / 8; ++j) {
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int i = row0 + 8 * j + 2 * t + (q & 1);
        const int n = n0 + wg * 64 + 16 * w + g + 8 * (q >> 1);
        if (i < row_end && n < N) {
          float v = d[4 * j + q];
          if (relu2) {
            v = fmaxf(v, 0.0f);
            v *= v;
          }
          Y[static_cast<std::size_t>(i) * ldy + n] = __float2bfloat16(v);
        }
      }
    }
    return;
  }
  // d[4j + q]: weight row 16 w + g + 8 (q >> 1), token 8 j + 2 t + (q & 1). Staged through
  // shared memory as [token][weight row] (padded rows), then written in 16-byte pieces.
  constexpr int LD = C::BW + 8;
  bf16* tile = reinterpret_cast<bf16*>(smem_raw + (sbase - raw));
  const int lane = tid & 31, w = (tid / 32) & 3, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < BT / 8; ++j) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      float v = d[4 * j + q];
      if (relu2) {
        v = fmaxf(v, 0.0f);
        v *= v;
      }
      tile[(8 * j + 2 * t + (q & 1)) * LD + wg * 64 + 16 * w + g + 8 * (q >> 1)] = __float2bfloat16(v);
    }
  }
  __syncthreads();
  constexpr int chunks = BT * C::BW / 8;
  for (int c = tid; c < chunks; c += C::threads) {
    const int r = c / (C::BW / 8), cc = (c % (C::BW / 8)) * 8;
    const int i = row0 + r, n = n0 + cc;
    if (i < row_end && n < N) {
      *reinterpret_cast<uint4*>(Y + static_cast<std::size_t>(i) * ldy + n) =
          *reinterpret_cast<const uint4*>(tile + r * LD + cc);
    }
  }
}

template <int BT, int WG, int STAGES, bool W1, bool SEPI = true>
void launch(const moe_gemm_sm90_args& a, cudaStream_t s) {
  using C = cfg<BT, WG, STAGES>;
  auto kern = moe_gemm_sm90_kernel<BT, WG, STAGES, W1, SEPI>;
  PIECEWISE_CUDA_TRY_CTX(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::smem_bytes),
                         "moe_grouped_gemm (sm90): shared memory attribute");
  const std::size_t mtiles = moe_tile_bound(static_cast<std::size_t>(a.R), static_cast<std::size_t>(a.E), BT);
  if (mtiles == 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(a.N, C::BW)), static_cast<unsigned>(mtiles));
  launch_pdl("moe_grouped_gemm (sm90)", kern, grid, dim3(C::threads), static_cast<std::size_t>(C::smem_bytes), s, a.X,
             a.ldx, a.gather ? 1 : 0, a.W, a.N, a.K, a.Y, a.ldy, a.relu2 ? 1 : 0, a.E, a.offsets, a.sorted_token,
             a.tile_prefix, a.tile_expert);
}

}  // namespace

bool moe_gemm_sm90_supported() {
  static int cached[64];  // 0 unknown, 1 yes, 2 no
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    (void)cudaGetLastError();
    return false;
  }
  if (cached[dev] == 0) {
    int major = 0, minor = 0;
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess;
    if (!ok) (void)cudaGetLastError();
    const char* off = std::getenv("NH_MOE_NO_WGMMA");
    const bool disabled = off != nullptr && std::strcmp(off, "1") == 0;
    cached[dev] = ok && major == 9 && minor == 0 && !disabled ? 1 : 2;
  }
  return cached[dev] == 1;
}

void moe_gemm_sm90(const moe_gemm_sm90_args& a, int bm, cudaStream_t s) {
  // Measured at Nano-30B shapes, 4096 tokens: keeping one wgmma group in flight (W1), deeper
  // pipelines (5 stages) and direct 2-byte stores were all within noise of these.
  if (bm == 16) {
    launch<16, 1, 8, false>(a, s);
  } else if (bm == 64) {
    launch<64, 2, 4, false>(a, s);
  } else {
    launch<128, 2, 3, false>(a, s);
  }
}

}  // namespace nemotron_h::detail
