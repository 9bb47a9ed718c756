// MoE kernels (see moe.cuh): routing (one warp per token row), the plan (one warp per expert,
// a ballot scan over the assignments in order: a stable counting sort), the grouped GEMM
// (mma.sync m16n8k16 bf16 with a cp.async multi-stage pipeline, two tile shapes that run the
// same per-element k16 instruction sequence) and the weighted combine.
#include "kernels/moe.cuh"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels/gemv.cuh"
#include "kernels/moe_sm90.cuh"
#include "kernels/pdl.cuh"
#include "kernels/tensor_core.cuh"

namespace nemotron_h {

namespace {

void expects(bool cond, const std::string& msg) {
  if (!cond) throw piecewise::config_error(msg);
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }

// The GEMM tile heights (rows of one expert a block). All shapes use BK = 64 and the same
// k16 mma sequence per element.
constexpr int kSmallBM = kMoeTileRows[0];
constexpr int kMediumBM = kMoeTileRows[1];
constexpr int kLargeBM = kMoeTileRows[2];
constexpr int kTileKinds = kMoeTileKinds;
// Whether `automatic` takes the decode GEMV at rows * k <= 2 E: off unless NH_MOE_GEMV=1 (read
// once, for A/B measurements): on the H200 its first version lost to the 16-row wgmma tiles
// (Nano-30B up projection at 1 token: 21.5 vs 18.8 us).
bool moe_gemv_auto() {
  static const bool on = [] {
    const char* e = std::getenv("NH_MOE_GEMV");
    return e != nullptr && e[0] == '1';
  }();
  return on;
}

// internal layout: for each tile height, tile_prefix [E + 1] (ints): the first m-tile of
// expert e; [E] = the m-tile count.
int* tile_prefix(const moe_plan_view& p, int kind) {
  return static_cast<int*>(p.internal) + static_cast<std::size_t>(kind) * (p.num_experts + 1);
}

void check_view(const moe_plan_view& p, const char* what) {
  expects(p.rows >= 0 && p.num_experts >= 1 && p.num_experts <= kMoeMaxExperts && p.top_k >= 1 &&
              p.top_k <= p.num_experts && p.top_k <= kMoeMaxTopK,
          strf("%s: bad plan view (rows %d, E %d, k %d)", what, p.rows, p.num_experts, p.top_k));
  expects(p.topk_ids != nullptr && p.topk_weights != nullptr && p.expert_offsets != nullptr &&
              p.sorted_token != nullptr && p.assignment_row != nullptr && p.internal != nullptr,
          strf("%s: plan view with null pointers (make it with make_moe_plan_view)", what));
}

// ---------------------------------------------------------------------------------------------
// Routing: one warp per token row.

constexpr int kRouteWarps = 4;

__device__ inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// The better of (v, i) and (w, j): larger value, ties (and invalid -1) by lower index.
__device__ inline bool better(float v, int i, float w, int j) {
  if (j < 0) return i >= 0;
  if (i < 0) return false;
  return v > w || (v == w && i < j);
}

__device__ inline void warp_argmax(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    const int j = __shfl_xor_sync(0xffffffffu, i, o);
    if (better(w, j, v, i)) {
      v = w;
      i = j;
    }
  }
}

__global__ void moe_route_kernel(const float* __restrict__ logits, int ld, const float* __restrict__ bias,
                                 moe_route_params p, int rows, int* __restrict__ ids, float* __restrict__ wts,
                                 const int* __restrict__ num_tokens) {
  extern __shared__ float route_smem[];
  pdl_wait();  // launched with launch_pdl
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int E = p.num_experts, k = p.top_k;
  float* b = route_smem + warp * (E + p.n_group);  // biased scores; NaN = not choosable
  float* gs = b + E;                               // group scores
  const int t = blockIdx.x * kRouteWarps + warp;
  if (t >= rows) return;
  int n = *num_tokens;
  n = n < 0 ? 0 : (n > rows ? rows : n);
  int* out_ids = ids + static_cast<std::size_t>(t) * k;
  float* out_w = wts + static_cast<std::size_t>(t) * k;
  if (t >= n) {
    for (int j = lane; j < k; j += 32) {
      out_ids[j] = -1;
      out_w[j] = 0.0f;
    }
    return;
  }
  const float* l = logits + static_cast<std::size_t>(t) * ld;
  for (int e = lane; e < E; e += 32) b[e] = sigmoidf_(l[e]) + (bias != nullptr ? bias[e] : 0.0f);
  __syncwarp();
  if (p.n_group > 1) {
    const int per = E / p.n_group;
    // Group scores: the sum of the two largest b (the reference's scan, in expert order).
    for (int g = lane; g < p.n_group; g += 32) {
      float a1 = -INFINITY, a2 = -INFINITY;
      for (int e = g * per; e < (g + 1) * per; ++e) {
        const float v = b[e];
        if (v > a1) {
          a2 = a1;
          a1 = v;
        } else if (v > a2) {
          a2 = v;
        }
      }
      gs[g] = a1 + a2;
    }
    __syncwarp();
    // Keep the topk_group best groups (ties: lower index); a kept group's score becomes NaN.
    for (int r = 0; r < p.topk_group; ++r) {
      float v = 0.0f;
      int i = -1;
      for (int g = lane; g < p.n_group; g += 32) {
        const float w = gs[g];
        if (!isnan(w) && better(w, g, v, i)) {
          v = w;
          i = g;
        }
      }
      warp_argmax(v, i);
      if (lane == 0 && i >= 0) gs[i] = NAN;  // i < 0 only for NaN scores
      __syncwarp();
    }
    // Experts of the groups not kept cannot be chosen.
    for (int e = lane; e < E; e += 32) {
      if (!isnan(gs[e / per])) b[e] = NAN;
    }
    __syncwarp();
  }
  float my_s = 0.0f;  // lane j keeps the score of its chosen expert j
  int my_e = -1;
  for (int j = 0; j < k; ++j) {
    float v = 0.0f;
    int i = -1;
    for (int e = lane; e < E; e += 32) {
      const float w = b[e];
      if (!isnan(w) && better(w, e, v, i)) {
        v = w;
        i = e;
      }
    }
    warp_argmax(v, i);
    if (lane == 0 && i >= 0) b[i] = NAN;  // i < 0 only for NaN scores: left unrouted (-1)
    if (lane == j) my_e = i;
    __syncwarp();
  }
  if (lane < k && my_e >= 0) my_s = sigmoidf_(l[my_e]);
  // Sum in j order (lane 0 adds them one by one), like the reference.
  float sum = 0.0f;
  for (int j = 0; j < k; ++j) sum += __shfl_sync(0xffffffffu, my_s, j);
  if (lane < k) {
    float w = my_s;
    if (p.renormalize) w /= sum + 1e-20f;
    w *= p.scaling;
    out_ids[lane] = my_e;
    out_w[lane] = w;
  }
}

// ---------------------------------------------------------------------------------------------
// Plan: every block computes the histogram and the offsets (cheap, redundant), then places
// the assignments of its 32 experts: the assignments are cut into 32 contiguous ranges, one a
// warp; each warp counts its range's hits per expert, the counts are scanned over the ranges
// (in range order), and each warp walks its range again in order, ranking equal experts
// within a 32-wide step with __match_any_sync. The result is the stable order.

constexpr int kPlanThreads = 1024;
constexpr int kPlanWarps = kPlanThreads / 32;

// Exclusive scan of v[0..3] over the block (1024 threads, one scan for all four); totals too.
__device__ void block_exclusive_scan4(const int (&v)[4], int (&excl)[4], int (&total)[4], int (*warp_sums)[4]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int x[4];
#pragma unroll
  for (int c = 0; c < 4; ++c) x[c] = v[c];
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int y = __shfl_up_sync(0xffffffffu, x[c], o);
      if (lane >= o) x[c] += y;
    }
  }
  if (lane == 31) {
#pragma unroll
    for (int c = 0; c < 4; ++c) warp_sums[warp][c] = x[c];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      int s = warp_sums[lane][c];
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, s, o);
        if (lane >= o) s += y;
      }
      warp_sums[lane][c] = s;  // inclusive
    }
  }
  __syncthreads();
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    excl[c] = x[c] - v[c] + (warp > 0 ? warp_sums[warp - 1][c] : 0);
    total[c] = warp_sums[kPlanWarps - 1][c];
  }
}

__global__ void __launch_bounds__(kPlanThreads)
    moe_plan_kernel(const int* __restrict__ ids, int rows, int E, int k, const int* __restrict__ num_tokens,
                    int* __restrict__ offsets, int* __restrict__ sorted_token, int* __restrict__ assignment_row,
                    int* __restrict__ tile_prefixes, int* __restrict__ te_small, int* __restrict__ te_medium,
                    int* __restrict__ te_large) {
  __shared__ int cnt[kMoeMaxExperts];
  __shared__ int my_tiles[kTileKinds][32][2];  // this block's experts: first m-tile, m-tiles
  pdl_wait();  // launched with launch_pdl
  __shared__ int off[kMoeMaxExperts];
  __shared__ int wbase[kPlanWarps][33];  // [range][expert of this block]: count, then base
  __shared__ int warp_sums[kPlanWarps][4];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int e0 = blockIdx.x * 32;
  int nt = *num_tokens;
  nt = nt < 0 ? 0 : (nt > rows ? rows : nt);
  const int n = nt * k, R = rows * k;
  // Warp w's range [w * span, (w + 1) * span), span a multiple of 32.
  const int span = (n + 32 * kPlanWarps - 1) / (32 * kPlanWarps) * 32;
  const int r0 = warp * span, r1 = min(n, r0 + span);
  for (int e = tid; e < E; e += kPlanThreads) cnt[e] = 0;
  wbase[warp][lane] = 0;
  __syncthreads();
  for (int a = tid; a < n; a += kPlanThreads) {
    const int e = ids[a];
    if (e >= 0 && e < E) atomicAdd(&cnt[e], 1);
  }
  for (int a = r0 + lane; a < r1; a += 32) {
    const int e = ids[a] - e0;
    if (e >= 0 && e < 32 && e0 + e < E) atomicAdd(&wbase[warp][e], 1);
  }
  __syncthreads();
  // E <= 1024 = kPlanThreads: one expert a thread.
  const int c = tid < E ? cnt[tid] : 0;
  const int v[4] = {c, (c + kSmallBM - 1) / kSmallBM, (c + kMediumBM - 1) / kMediumBM, (c + kLargeBM - 1) / kLargeBM};
  int ex[4], tot[4];
  block_exclusive_scan4(v, ex, tot, warp_sums);
  if (tid < E) off[tid] = ex[0];
  if (tid >= e0 && tid < e0 + 32 && tid < E) {
#pragma unroll
    for (int kind = 0; kind < kTileKinds; ++kind) {
      my_tiles[kind][tid - e0][0] = ex[kind + 1];
      my_tiles[kind][tid - e0][1] = v[kind + 1];
    }
  }
  if (blockIdx.x == 0) {
    if (tid < E) offsets[tid] = ex[0];
    if (tid == 0) offsets[E] = tot[0];
#pragma unroll
    for (int kind = 0; kind < kTileKinds; ++kind) {
      int* tp = tile_prefixes + kind * (E + 1);
      if (tid < E) tp[tid] = ex[kind + 1];
      if (tid == 0) tp[E] = tot[kind + 1];
    }
  }
  // Padding assignments (t >= *num_tokens) have no permuted row.
  for (int a = n + blockIdx.x * kPlanThreads + tid; a < R; a += gridDim.x * kPlanThreads) assignment_row[a] = -1;
  __syncthreads();
  // The expert of every m-tile of this block's experts (warp w: expert e0 + w), so the GEMMs
  // find a tile's expert with one load instead of a binary search over the prefixes.
  if (e0 + warp < E) {
    int* const te[kTileKinds] = {te_small, te_medium, te_large};
#pragma unroll
    for (int kind = 0; kind < kTileKinds; ++kind) {
      const int first = my_tiles[kind][warp][0], count = my_tiles[kind][warp][1];
      for (int t = lane; t < count; t += 32) te[kind][first + t] = e0 + warp;
    }
  }
  if (warp == 0 && e0 + lane < E) {
    int run = off[e0 + lane];
    for (int w = 0; w < kPlanWarps; ++w) {
      const int t = wbase[w][lane];
      wbase[w][lane] = run;
      run += t;
    }
  }
  __syncthreads();
  const unsigned lt = (1u << lane) - 1u;
  for (int a0 = r0; a0 < r1; a0 += 32) {
    const int a = a0 + lane;
    const int id = a < r1 ? ids[a] : -1;
    const int e = id - e0;
    const bool hit = a < r1 && e >= 0 && e < 32 && id < E;
    const unsigned m = __match_any_sync(0xffffffffu, hit ? e : -1);
    const int base = hit ? wbase[warp][e] : 0;
    __syncwarp();
    if (hit) {
      const int pos = base + __popc(m & lt);
      sorted_token[pos] = a / k;
      assignment_row[a] = pos;
      if ((m & lt) == 0) wbase[warp][e] = base + __popc(m);  // the lowest lane of the group
    }
    if (blockIdx.x == 0 && a < r1 && (id < 0 || id >= E)) assignment_row[a] = -1;  // invalid id: unrouted
    __syncwarp();
  }
}

// ---------------------------------------------------------------------------------------------
// Grouped GEMM. Block tile BM x BN x 64, warps WM x WN, each warp (BM/WM) x (BN/WN); smem rows
// of 64 bf16 (eight 16-byte chunks, XOR-swizzled by row). Every output element is accumulated
// by the same sequence of m16n8k16 mma over k16 steps 0, 16, 32, ... < K (steps entirely past
// K are skipped, a partial last step is zero-padded), with one fp32 accumulator, so the result
// is the same in both tile shapes.

constexpr int kBK = 64;

template <int BM, int BN, int WM, int WN, int STAGES>
struct gemm_cfg {
  static constexpr int threads = WM * WN * 32;
  static constexpr int TM = BM / WM, TN = BN / WN;
  static constexpr int MF = TM / 16, NF = TN / 8;
  static constexpr int a_iters = BM * 8 / threads, b_iters = BN * 8 / threads;
  static constexpr int stage_elems = (BM + BN) * kBK;
  static constexpr int smem_bytes = STAGES * stage_elems * 2;
  static_assert(TM % 16 == 0 && TN % 16 == 0, "warp tile");
  static_assert(a_iters >= 1 && BM * 8 % threads == 0 && BN * 8 % threads == 0, "load split");
};

__device__ inline int swz(int row, int chunk) { return row * kBK + ((chunk ^ (row & 7)) << 3); }

template <int BM, int BN, int WM, int WN, int STAGES>
__global__ void __launch_bounds__(WM* WN * 32)
    moe_gemm_kernel(const bf16* __restrict__ X, int ldx, int gather, const bf16* __restrict__ W, int N, int K,
                    bf16* __restrict__ Y, int ldy, int relu2, int E, const int* __restrict__ offsets,
                    const int* __restrict__ sorted_token, const int* __restrict__ tile_prefix,
                    const int* __restrict__ tile_expert) {
  using C = gemm_cfg<BM, BN, WM, WN, STAGES>;
  extern __shared__ __align__(128) unsigned char gemm_smem[];
  bf16* smem = reinterpret_cast<bf16*>(gemm_smem);
  pdl_wait();  // launched with launch_pdl
  const int mt = blockIdx.y;
  if (mt >= tile_prefix[E]) return;
  const int e = tile_expert[mt];
  const int row0 = offsets[e] + (mt - tile_prefix[e]) * BM;
  const int row_end = offsets[e + 1];
  const int n0 = blockIdx.x * BN;
  const bf16* We = W + static_cast<std::size_t>(e) * N * K;

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / WN, wn = warp % WN;

  // Per-thread load sources (fixed rows and chunk column for the whole K loop).
  const bf16* a_src[C::a_iters];
  bool a_ok[C::a_iters];
  int a_dst[C::a_iters];
#pragma unroll
  for (int it = 0; it < C::a_iters; ++it) {
    const int id = tid + it * C::threads, r = id >> 3, ch = id & 7;
    const int i = row0 + r;
    a_ok[it] = i < row_end;
    const int src_row = a_ok[it] ? (gather ? sorted_token[i] : i) : 0;
    a_src[it] = X + static_cast<std::size_t>(src_row) * ldx + ch * 8;
    a_dst[it] = swz(r, ch);
  }
  const bf16* b_src[C::b_iters];
  bool b_ok[C::b_iters];
  int b_dst[C::b_iters];
#pragma unroll
  for (int it = 0; it < C::b_iters; ++it) {
    const int id = tid + it * C::threads, r = id >> 3, ch = id & 7;
    b_ok[it] = n0 + r < N;
    b_src[it] = We + static_cast<std::size_t>(b_ok[it] ? n0 + r : 0) * K + ch * 8;
    b_dst[it] = BM * kBK + swz(r, ch);
  }
  const int chunk_k = (tid & 7) * 8;  // the k offset of this thread's chunks within a k tile

  const std::uint32_t sbase = detail::smem_addr(smem);
  const int ktiles = (K + kBK - 1) / kBK;
  auto load = [&](int kt, int slot) {
    const int k0 = kt * kBK;
    const bool kok = k0 + chunk_k < K;
    const std::uint32_t st = sbase + slot * C::stage_elems * 2;
#pragma unroll
    for (int it = 0; it < C::a_iters; ++it)
      detail::cp_async16(st + a_dst[it] * 2, a_src[it] + (kok ? k0 : 0), a_ok[it] && kok);
#pragma unroll
    for (int it = 0; it < C::b_iters; ++it)
      detail::cp_async16(st + b_dst[it] * 2, b_src[it] + (kok ? k0 : 0), b_ok[it] && kok);
  };

  float acc[C::MF][C::NF][4];
#pragma unroll
  for (int i = 0; i < C::MF; ++i)
#pragma unroll
    for (int j = 0; j < C::NF; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load(s, s);
    detail::cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    detail::cp_async_wait<STAGES - 2>();
    __syncthreads();
    const int pf = kt + STAGES - 1;
    if (pf < ktiles) load(pf, pf % STAGES);
    detail::cp_async_commit();
    const std::uint32_t st = sbase + (kt % STAGES) * C::stage_elems * 2;
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      if (kt * kBK + kk * 16 >= K) break;  // uniform: steps past K are skipped in every shape
      std::uint32_t af[C::MF][4];
#pragma unroll
      for (int mf = 0; mf < C::MF; ++mf) {
        const int r = wm * C::TM + mf * 16 + (lane & 15);
        detail::ldmatrix_x4(af[mf], st + swz(r, kk * 2 + (lane >> 4)) * 2);
      }
#pragma unroll
      for (int np = 0; np < C::NF / 2; ++np) {
        std::uint32_t bfr[4];
        const int r = wn * C::TN + np * 16 + (lane & 7) + ((lane >> 4) << 3);
        detail::ldmatrix_x4(bfr, st + (BM * kBK + swz(r, kk * 2 + ((lane >> 3) & 1))) * 2);
#pragma unroll
        for (int mf = 0; mf < C::MF; ++mf) {
          detail::mma_bf16(acc[mf][2 * np], af[mf], bfr[0], bfr[1]);
          detail::mma_bf16(acc[mf][2 * np + 1], af[mf], bfr[2], bfr[3]);
        }
      }
    }
  }
  detail::cp_async_wait<0>();

  // Epilogue: optional relu^2 in fp32, one bf16 rounding, rows of this expert only.
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int mf = 0; mf < C::MF; ++mf) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int i = row0 + wm * C::TM + mf * 16 + g + h * 8;
      if (i >= row_end) continue;
      bf16* yrow = Y + static_cast<std::size_t>(i) * ldy;
#pragma unroll
      for (int nf = 0; nf < C::NF; ++nf) {
        const int col = n0 + wn * C::TN + nf * 8 + 2 * q;
        if (col >= N) continue;
        float v0 = acc[mf][nf][2 * h], v1 = acc[mf][nf][2 * h + 1];
        if (relu2) {
          v0 = fmaxf(v0, 0.0f);
          v1 = fmaxf(v1, 0.0f);
          v0 *= v0;
          v1 *= v1;
        }
        *reinterpret_cast<std::uint32_t*>(yrow + col) = detail::pack_bf16x2(v0, v1);
      }
    }
  }
}


template <int BM, int BN, int WM, int WN, int STAGES>
void launch_gemm(const bf16* X, int ldx, bool gather, const bf16* W, int N, int K, bf16* Y, int ldy, bool relu2,
                 const moe_plan_view& plan, int kind, cudaStream_t s) {
  using C = gemm_cfg<BM, BN, WM, WN, STAGES>;
  auto kern = moe_gemm_kernel<BM, BN, WM, WN, STAGES>;
  PIECEWISE_CUDA_TRY_CTX(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::smem_bytes),
                         "moe_grouped_gemm: shared memory attribute");
  const std::size_t R = static_cast<std::size_t>(plan.rows) * plan.top_k;
  const std::size_t mtiles = moe_tile_bound(R, static_cast<std::size_t>(plan.num_experts), BM);
  if (mtiles == 0) return;
  const dim3 grid(static_cast<unsigned>(ceil_div(N, BN)), static_cast<unsigned>(mtiles));
  launch_pdl("moe_grouped_gemm", kern, grid, C::threads, C::smem_bytes, s, X, ldx, gather ? 1 : 0, W, N, K, Y, ldy,
             relu2 ? 1 : 0, plan.num_experts, plan.expert_offsets, plan.sorted_token, tile_prefix(plan, kind),
             plan.tile_expert[kind]);
}

// ---------------------------------------------------------------------------------------------
// Decode GEMV over the small-tile list: block (n-slice of kGemvWarps x kGemvRowsPerWarp weight
// rows, m-tile of up to 16 rows of one expert); each warp streams kGemvRowsAtOnce weight rows of
// the expert at a time and dots them with the tile's rows, 4 at a time (a second pass re-reads
// the weights from L2). Several weight rows a warp amortise the plan lookups at the start.

constexpr int kGemvWarps = 8;
constexpr int kGemvRowsAtOnce = 2;   // weight rows a warp streams together
constexpr int kGemvRowsPerWarp = 4;  // weight rows a warp computes in all
constexpr int kGemvPass = 4;         // token rows a pass
constexpr int kGemvUnroll = 4;       // 16-byte chunks of each weight row a lane has in flight
constexpr int kGemvBlockN = kGemvWarps * kGemvRowsPerWarp;

template <bool RELU2>
__global__ void __launch_bounds__(kGemvWarps * 32)
    moe_gemv_kernel(const bf16* __restrict__ X, int ldx, int gather, const bf16* __restrict__ W, int N, int K,
                    bf16* __restrict__ Y, int ldy, int E, const int* __restrict__ offsets,
                    const int* __restrict__ sorted_token, const int* __restrict__ tile_prefix,
                    const int* __restrict__ tile_expert) {
  pdl_wait();  // launched with launch_pdl
  const int mt = blockIdx.y;
  if (mt >= tile_prefix[E]) return;
  const int e = tile_expert[mt];
  const int row0 = offsets[e] + (mt - tile_prefix[e]) * kSmallBM;
  const int row_end = min(offsets[e + 1], row0 + kSmallBM);
  const int lane = threadIdx.x % 32;
  const int nbase = (blockIdx.x * kGemvWarps + threadIdx.x / 32) * kGemvRowsPerWarp;
  const int chunks = K / 8;
  const bf16* We = W + static_cast<std::size_t>(e) * N * K;
  for (int r0 = row0; r0 < row_end; r0 += kGemvPass) {
    const int nr = min(kGemvPass, row_end - r0);
    const uint4* xr[kGemvPass];
#pragma unroll
    for (int j = 0; j < kGemvPass; ++j) {
      const int i = r0 + (j < nr ? j : nr - 1);
      xr[j] = reinterpret_cast<const uint4*>(X + static_cast<std::size_t>(gather ? sorted_token[i] : i) * ldx);
    }
    for (int g = 0; g < kGemvRowsPerWarp; g += kGemvRowsAtOnce) {
      const uint4* wr[kGemvRowsAtOnce];
      bool live[kGemvRowsAtOnce];
#pragma unroll
      for (int q = 0; q < kGemvRowsAtOnce; ++q) {
        const int n = nbase + g + q;
        live[q] = n < N;
        wr[q] = reinterpret_cast<const uint4*>(We + static_cast<std::size_t>(live[q] ? n : 0) * K);
      }
      if (!live[0]) break;
      float acc[kGemvRowsAtOnce][kGemvPass];
#pragma unroll
      for (int q = 0; q < kGemvRowsAtOnce; ++q)
#pragma unroll
        for (int j = 0; j < kGemvPass; ++j) acc[q][j] = 0.0f;
      // Double-buffered: the next kGemvUnroll chunks of each row in flight while these are summed.
      uint4 wv[kGemvRowsAtOnce][kGemvUnroll];
#pragma unroll
      for (int q = 0; q < kGemvRowsAtOnce; ++q)
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
          const int c = lane + 32 * u;
          wv[q][u] = (live[q] && c < chunks) ? detail::ld_stream16(wr[q] + c) : make_uint4(0, 0, 0, 0);
        }
      for (int c0 = 0; c0 < chunks; c0 += 32 * kGemvUnroll) {
        uint4 nx[kGemvRowsAtOnce][kGemvUnroll];
#pragma unroll
        for (int q = 0; q < kGemvRowsAtOnce; ++q)
#pragma unroll
          for (int u = 0; u < kGemvUnroll; ++u) {
            const int c = c0 + 32 * kGemvUnroll + lane + 32 * u;
            nx[q][u] = (live[q] && c < chunks) ? detail::ld_stream16(wr[q] + c) : make_uint4(0, 0, 0, 0);
          }
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
          const int c = c0 + lane + 32 * u;
          if (c < chunks) {
#pragma unroll
            for (int j = 0; j < kGemvPass; ++j) {
              if (j < nr) {
                const uint4 xv = __ldg(xr[j] + c);
#pragma unroll
                for (int q = 0; q < kGemvRowsAtOnce; ++q) detail::fma8_bf16(acc[q][j], wv[q][u], xv);
              }
            }
          }
        }
#pragma unroll
        for (int q = 0; q < kGemvRowsAtOnce; ++q)
#pragma unroll
          for (int u = 0; u < kGemvUnroll; ++u) wv[q][u] = nx[q][u];
      }
#pragma unroll
      for (int q = 0; q < kGemvRowsAtOnce; ++q)
#pragma unroll
        for (int j = 0; j < kGemvPass; ++j)
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) acc[q][j] += __shfl_xor_sync(0xffffffffu, acc[q][j], o);
#pragma unroll
      for (int q = 0; q < kGemvRowsAtOnce; ++q)
#pragma unroll
        for (int j = 0; j < kGemvPass; ++j) {
          if (live[q] && j < nr && lane == q * kGemvPass + j) {
            float v = acc[q][j];
            if (RELU2) {
              v = fmaxf(v, 0.0f);
              v *= v;
            }
            Y[static_cast<std::size_t>(r0 + j) * ldy + nbase + g + q] = to_bf16(v);
          }
        }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Combine: one thread per (token row, 8 columns).

__global__ void moe_combine_kernel(const bf16* __restrict__ Y, int ldy, const int* __restrict__ arow,
                                   const float* __restrict__ wts, int k, int rows, bf16* __restrict__ out, int ldo,
                                   int W, int accumulate, const int* __restrict__ num_tokens) {
  pdl_wait();  // launched with launch_pdl
  const int chunks = W / 8;
  const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<long long>(rows) * chunks) return;
  const int t = static_cast<int>(idx / chunks), c = static_cast<int>(idx % chunks) * 8;
  int n = *num_tokens;
  n = n < 0 ? 0 : (n > rows ? rows : n);
  bf16* o = out + static_cast<std::size_t>(t) * ldo + c;
  if (t >= n) {
    if (!accumulate) *reinterpret_cast<uint4*>(o) = make_uint4(0, 0, 0, 0);
    return;
  }
  float s[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) s[i] = 0.0f;
  for (int j = 0; j < k; ++j) {
    const int r = arow[static_cast<std::size_t>(t) * k + j];
    if (r < 0) continue;
    const float w = wts[static_cast<std::size_t>(t) * k + j];
    const uint4 v = *reinterpret_cast<const uint4*>(Y + static_cast<std::size_t>(r) * ldy + c);
    const bf16* y = reinterpret_cast<const bf16*>(&v);
#pragma unroll
    for (int i = 0; i < 8; ++i) s[i] = fmaf(w, to_float(y[i]), s[i]);
  }
  if (accumulate) {
    const uint4 v = *reinterpret_cast<const uint4*>(o);
    const bf16* x = reinterpret_cast<const bf16*>(&v);
#pragma unroll
    for (int i = 0; i < 8; ++i) s[i] = to_float(x[i]) + s[i];
  }
  uint4 r;
  std::uint32_t* rp = reinterpret_cast<std::uint32_t*>(&r);
#pragma unroll
  for (int i = 0; i < 4; ++i) rp[i] = detail::pack_bf16x2(s[2 * i], s[2 * i + 1]);
  *reinterpret_cast<uint4*>(o) = r;
}

}  // namespace

std::size_t moe_plan_bytes(int rows, int num_experts, int top_k) {
  expects(rows >= 0 && num_experts >= 1 && num_experts <= kMoeMaxExperts && top_k >= 1 && top_k <= kMoeMaxTopK,
          strf("moe_plan_bytes: bad sizes (rows %d, E %d, k %d)", rows, num_experts, top_k));
  return moe_plan_bytes_unchecked(rows, num_experts, top_k);
}

moe_plan_view make_moe_plan_view(void* p, int rows, int num_experts, int top_k) {
  const std::size_t bytes = moe_plan_bytes(rows, num_experts, top_k);
  (void)bytes;
  expects(p != nullptr && (reinterpret_cast<std::uintptr_t>(p) & 255u) == 0,
          "make_moe_plan_view: the block must be non-null and 256-byte aligned");
  const std::size_t R = static_cast<std::size_t>(rows) * top_k, E = num_experts;
  auto* c = static_cast<unsigned char*>(p);
  moe_plan_view v;
  v.rows = rows;
  v.num_experts = num_experts;
  v.top_k = top_k;
  v.topk_ids = reinterpret_cast<int*>(c);
  c += align256(R * 4);
  v.topk_weights = reinterpret_cast<float*>(c);
  c += align256(R * 4);
  v.sorted_token = reinterpret_cast<int*>(c);
  c += align256(R * 4);
  v.assignment_row = reinterpret_cast<int*>(c);
  c += align256(R * 4);
  v.expert_offsets = reinterpret_cast<int*>(c);
  c += align256((E + 1) * 4);
  v.internal = c;
  v.internal_bytes = align256(kTileKinds * (E + 1) * 4);
  c += v.internal_bytes;
  for (int kind = 0; kind < kTileKinds; ++kind) {
    v.tile_expert[kind] = reinterpret_cast<int*>(c);
    c += align256(moe_tile_bound(R, E, kMoeTileRows[kind]) * 4);
  }
  return v;
}

void moe_route(const float* logits, int ld, const float* bias, const moe_route_params& p, const moe_plan_view& plan,
               const int* num_tokens, cudaStream_t s) {
  check_view(plan, "moe_route");
  const int E = p.num_experts, k = p.top_k;
  expects(E >= 1 && E <= kMoeMaxExperts, strf("moe_route: num_experts %d out of 1..%d", E, kMoeMaxExperts));
  expects(k >= 1 && k <= E && k <= kMoeMaxTopK, strf("moe_route: top_k %d out of 1..min(E %d, %d)", k, E, kMoeMaxTopK));
  expects(p.n_group >= 1 && E % p.n_group == 0 && p.topk_group >= 1 && p.topk_group <= p.n_group,
          strf("moe_route: bad grouping (E %d, n_group %d, topk_group %d)", E, p.n_group, p.topk_group));
  expects(p.n_group == 1 || E / p.n_group >= 2,
          strf("moe_route: n_group %d leaves fewer than 2 experts a group (E %d)", p.n_group, E));
  expects(k <= p.topk_group * (E / p.n_group),
          strf("moe_route: top_k %d above the %d experts of the kept groups", k, p.topk_group * (E / p.n_group)));
  expects(plan.num_experts == E && plan.top_k == k,
          strf("moe_route: plan made for E %d k %d, params say E %d k %d", plan.num_experts, plan.top_k, E, k));
  expects(ld >= E, strf("moe_route: ld %d < E %d", ld, E));
  expects(num_tokens != nullptr && (logits != nullptr || plan.rows == 0), "moe_route: null logits or num_tokens");
  if (plan.rows == 0) return;
  const int smem = kRouteWarps * (E + p.n_group) * static_cast<int>(sizeof(float));
  launch_pdl("moe_route", moe_route_kernel, dim3(ceil_div(plan.rows, kRouteWarps)), dim3(kRouteWarps * 32),
             static_cast<std::size_t>(smem), s, logits, ld, bias, p, plan.rows, plan.topk_ids, plan.topk_weights,
             num_tokens);
}

void moe_build_plan(const moe_plan_view& plan, const int* num_tokens, cudaStream_t s) {
  check_view(plan, "moe_build_plan");
  expects(num_tokens != nullptr, "moe_build_plan: null num_tokens");
  const int blocks = ceil_div(plan.num_experts, kPlanWarps);
  launch_pdl("moe_build_plan", moe_plan_kernel, dim3(blocks), dim3(kPlanThreads), 0, s, plan.topk_ids, plan.rows,
             plan.num_experts, plan.top_k, num_tokens, plan.expert_offsets, plan.sorted_token, plan.assignment_row,
             tile_prefix(plan, 0), plan.tile_expert[0], plan.tile_expert[1], plan.tile_expert[2]);
}

moe_gemm_path moe_resolve_path(const moe_plan_view& plan, moe_gemm_path path) {
  const long long R = static_cast<long long>(plan.rows) * plan.top_k, E = plan.num_experts;
  // From the host bounds: the mean rows an expert (when all rows are real).
  if (path == moe_gemm_path::automatic) {
    path = moe_gemv_auto() && R <= 2 * E ? moe_gemm_path::gemv
           : R < 24 * E      ? moe_gemm_path::small_m
           : R < 128 * E     ? moe_gemm_path::medium_m
                             : moe_gemm_path::large_m;
  }
  // grid.y limit (65535 m-tiles): a taller tile when the bound does not fit.
  const bool small_fits = (R + E * (kSmallBM - 1)) / kSmallBM <= 65535;
  if (path == moe_gemm_path::gemv && !small_fits) path = moe_gemm_path::medium_m;
  if (path == moe_gemm_path::small_m && !small_fits) path = moe_gemm_path::medium_m;
  if (path == moe_gemm_path::medium_m && (R + E * (kMediumBM - 1)) / kMediumBM > 65535) path = moe_gemm_path::large_m;
  return path;
}

void moe_grouped_gemm(const bf16* X, int ldx, bool gather, const bf16* W, int N, int K, bf16* Y, int ldy, bool relu2,
                      const moe_plan_view& plan, cudaStream_t s, moe_gemm_path path) {
  check_view(plan, "moe_grouped_gemm");
  expects(K >= 8 && N >= 8 && K % 8 == 0 && N % 8 == 0,
          strf("moe_grouped_gemm: K %d and N %d must be multiples of 8 (>= 8)", K, N));
  expects(ldx >= K && ldx % 8 == 0 && ldy >= N && ldy % 8 == 0,
          strf("moe_grouped_gemm: ldx %d / ldy %d must be multiples of 8, >= K %d / N %d", ldx, ldy, K, N));
  expects(X != nullptr && W != nullptr && Y != nullptr && aligned16(X) && aligned16(W) && aligned16(Y),
          "moe_grouped_gemm: X, W, Y must be non-null and 16-byte aligned");
  const long long R = static_cast<long long>(plan.rows) * plan.top_k;
  path = moe_resolve_path(plan, path);
  if (path == moe_gemm_path::gemv) {
    if (R == 0) return;
    const std::size_t mtiles =
        moe_tile_bound(static_cast<std::size_t>(R), static_cast<std::size_t>(plan.num_experts), kSmallBM);
    const dim3 grid(static_cast<unsigned>(ceil_div(N, kGemvBlockN)), static_cast<unsigned>(mtiles));
    auto kern = relu2 ? moe_gemv_kernel<true> : moe_gemv_kernel<false>;
    launch_pdl("moe_grouped_gemm (gemv)", kern, grid, dim3(kGemvWarps * 32), 0, s, X, ldx, gather ? 1 : 0, W, N, K, Y,
               ldy, plan.num_experts, plan.expert_offsets, plan.sorted_token, tile_prefix(plan, 0),
               plan.tile_expert[0]);
    return;
  }
  if (detail::moe_gemm_sm90_supported()) {  // every tile height on wgmma on this device
    detail::moe_gemm_sm90_args a;
    a.X = X;
    a.ldx = ldx;
    a.gather = gather;
    a.W = W;
    a.N = N;
    a.K = K;
    a.Y = Y;
    a.ldy = ldy;
    a.relu2 = relu2;
    a.E = plan.num_experts;
    a.R = R;
    a.offsets = plan.expert_offsets;
    a.sorted_token = plan.sorted_token;
    const int kind = path == moe_gemm_path::small_m ? 0 : path == moe_gemm_path::medium_m ? 1 : 2;
    a.tile_prefix = tile_prefix(plan, kind);
    a.tile_expert = plan.tile_expert[kind];
    detail::moe_gemm_sm90(a, kind == 0 ? kSmallBM : kind == 1 ? kMediumBM : kLargeBM, s);
    return;
  }
  switch (path) {
    case moe_gemm_path::small_m:
      launch_gemm<kSmallBM, 64, 1, 4, 8>(X, ldx, gather, W, N, K, Y, ldy, relu2, plan, 0, s);
      break;
    case moe_gemm_path::medium_m:
      launch_gemm<kMediumBM, 128, 2, 2, 4>(X, ldx, gather, W, N, K, Y, ldy, relu2, plan, 1, s);
      break;
    default:
      launch_gemm<kLargeBM, 128, 2, 4, 3>(X, ldx, gather, W, N, K, Y, ldy, relu2, plan, 2, s);
      break;
  }
}

void moe_combine(const bf16* Y, int ldy, const moe_plan_view& plan, bf16* out, int ldo, int W, bool accumulate,
                 const int* num_tokens, cudaStream_t s) {
  check_view(plan, "moe_combine");
  expects(W >= 8 && W % 8 == 0 && ldy >= W && ldy % 8 == 0 && ldo >= W && ldo % 8 == 0,
          strf("moe_combine: W %d, ldy %d, ldo %d must be multiples of 8 with ldy, ldo >= W", W, ldy, ldo));
  expects(Y != nullptr && out != nullptr && aligned16(Y) && aligned16(out) && num_tokens != nullptr,
          "moe_combine: Y, out must be non-null and 16-byte aligned, num_tokens non-null");
  const long long n = static_cast<long long>(plan.rows) * (W / 8);
  if (n == 0) return;
  launch_pdl("moe_combine", moe_combine_kernel, dim3(static_cast<unsigned>((n + 255) / 256)), dim3(256), 0, s, Y, ldy,
             plan.assignment_row, plan.topk_weights, plan.top_k, plan.rows, out, ldo, W, accumulate ? 1 : 0,
             num_tokens);
}

}  // namespace nemotron_h
