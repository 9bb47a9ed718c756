// Token sampling (kernels/sampling.cuh). One thread-block cluster of kCluster blocks per row
// (sm_90+): each block keeps its slice of the row in shared memory as 16-bit order-preserving
// keys of the bf16 logits, and the cluster goes through these phases, separated by
// cluster.sync() and reduced through distributed shared memory:
//   1. the row maximum and its first index (the greedy id, the same as argmax_rows'); greedy
//      rows stop here;
//   2. (top-k or top-p on) a 256-bin histogram of the keys' high byte: counts, and masses
//      exp((l - max) / T) in fixed point (uint64, 2^-42 units). Integer sums do not depend on
//      the order of the additions, so every block of the cluster computes the same totals and
//      takes the same decisions, and the results are bit-reproducible;
//   3. a 256-bin histogram of the low byte inside the top-k boundary bin (exact k-th largest
//      value), then, when top-p's boundary lies in another bin, inside that one (exact top-p
//      threshold); min-p is a direct threshold, found by a binary search over the keys;
//   4. Gumbel-max over the kept set: argmax of (l - max) / T - log(-log(u_i)), u_i counter-based
//      (kernels/sampling_rng.hpp), first index on ties.
// Without clusters (devices before sm_90, V too large for the shared-memory slices, or
// NH_ARGMAX_NO_CLUSTER=1) one block per row runs the same phases re-reading global memory.
#include "kernels/sampling.cuh"

#include <cooperative_groups.h>

#include <cstdint>
#include <cstdlib>

#include "kernels/sampling_debug.cuh"
#include "kernels/sampling_rng.hpp"

namespace nemotron_h {
namespace {

namespace cg = cooperative_groups;

constexpr int kCluster = 8;
constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFiniteMin = 0x0080u;  // key of the most negative finite bf16
constexpr unsigned kPosInf = 0xFF80u;     // key of +inf
constexpr int kNoIndex = 0x7fffffff;
constexpr float kFix = 0x1p42f;  // fixed-point unit of the masses: a row sums to <= V * 2^42
constexpr int kMaxV = 1 << 22;   // so that V * 2^42 fits in 64 bits
// Shared-memory slice of one block of the cluster kernel, elements: V <= 131072 (static and
// dynamic shared memory within the default 48 KiB; at most 2^14 elements, see local_hist).
constexpr int kMaxClusterSlice = 16384;

// Order-preserving key of a bf16 (its bits): larger value <=> larger key; -0 is +0; NaN is 0,
// below every other key (-inf is 0x007F, the finite values are 0x0080 .. 0xFF7F).
__device__ __forceinline__ unsigned key_of(unsigned b) {
  if ((b & 0x7fffu) > 0x7f80u) return 0u;
  if (b == 0x8000u) b = 0u;
  return (b & 0x8000u) ? (~b & 0xffffu) : (b | 0x8000u);
}

__device__ __forceinline__ float value_of_key(unsigned k) {
  const unsigned bits = (k & 0x8000u) ? (k & 0x7fffu) : (~k & 0xffffu);
  return __uint_as_float(bits << 16);
}

__device__ __forceinline__ unsigned bits_of(bf16 v) { return __bfloat16_as_ushort(v); }

// Larger key, then smaller index: a total order, so the argmax does not depend on the split.
// On keys this is argmax_rows' rule (first index of the largest non-NaN value, all NaN -> 0).
__device__ __forceinline__ bool better_key(unsigned k, int i, unsigned bk, int bi) {
  return k > bk || (k == bk && i < bi);
}
__device__ __forceinline__ bool better_score(float v, int i, float bv, int bi) {
  return v > bv || (v == bv && i < bi);
}

struct hist {
  unsigned cnt[256];
  unsigned long long mass[256];
};

// A block's histogram while it is accumulated. Logits crowd into a few high-byte bins, and
// same-address shared atomics serialise (measured 150 us for one row with one 64-bit atomic an
// element): hist_add first combines the lanes of a warp that hit one bin, and the cluster
// kernel splits each added mass (a warp's sum, <= 2^47) into limbs of 15, 15 and 17 bits added
// with native 32-bit atomics: a block holds at most 2^14 elements, so the limb sums stay below
// 2^29 (low limbs) and 2^26 (the top one: the block's whole mass is < 2^56), and the recombined
// sums are exactly the 64-bit ones. The one-block-per-row kernel keeps 64-bit atomics.
template <bool kCl>
struct local_hist;

template <>
struct local_hist<true> {
  unsigned cnt[256];
  unsigned limb[3][256];
  __device__ void zero(int t) {
    cnt[t] = 0;
    limb[0][t] = limb[1][t] = limb[2][t] = 0;
  }
  __device__ void zero_mass(int t) { limb[0][t] = limb[1][t] = limb[2][t] = 0; }
  __device__ void add_mass(int b, unsigned long long m) {
    const unsigned l0 = static_cast<unsigned>(m & 0x7fffu), l1 = static_cast<unsigned>((m >> 15) & 0x7fffu),
                   l2 = static_cast<unsigned>(m >> 30);
    if (l0 != 0u) atomicAdd(&limb[0][b], l0);  // zero limbs (small masses) skip the atomic
    if (l1 != 0u) atomicAdd(&limb[1][b], l1);
    if (l2 != 0u) atomicAdd(&limb[2][b], l2);
  }
  __device__ unsigned long long mass(int b) const {
    return static_cast<unsigned long long>(limb[0][b]) + (static_cast<unsigned long long>(limb[1][b]) << 15) +
           (static_cast<unsigned long long>(limb[2][b]) << 30);
  }
};

template <>
struct local_hist<false> {
  unsigned cnt[256];
  unsigned long long m[256];
  __device__ void zero(int t) {
    cnt[t] = 0;
    m[t] = 0;
  }
  __device__ void zero_mass(int t) { m[t] = 0; }
  __device__ void add_mass(int b, unsigned long long v) {
    if (v != 0ull) atomicAdd(&m[b], v);
  }
  __device__ unsigned long long mass(int b) const { return m[b]; }
};

template <bool kCl>
struct shared_state {
  local_hist<kCl> local[2];  // this block's histograms (the other blocks of the cluster read them)
  hist total[2];             // the cluster's sums (computed by every block)
  unsigned pub_key;  // phase 1 result of this block (read by the cluster)
  int pub_idx;
  float pub_score;  // phase 4 result of this block (read by the cluster)
  int pub_best;
  int pub_count;
  unsigned red_k[kWarps];
  int red_i[kWarps];
  float red_s[kWarps];
  int red_c[kWarps];
  // Decisions (written by warp 0, read by the block after __syncthreads).
  unsigned mx_key;
  int mx_idx;
  int kbin, pbin;
  unsigned kabove, thr;
  unsigned long long pabove;
  double target;
};
static_assert(sizeof(shared_state<true>) + kMaxClusterSlice * sizeof(bf16) <= 48 * 1024,
              "the cluster kernel's shared memory exceeds the default 48 KiB");

// Cluster (kCl) or single-block (!kCl) helpers.
template <bool kCl>
__device__ __forceinline__ void group_sync() {
  if constexpr (kCl)
    cg::this_cluster().sync();
  else
    __syncthreads();
}

template <bool kCl, typename T>
__device__ __forceinline__ T* at_rank(T* p, unsigned rank) {
  if constexpr (kCl)
    return cg::this_cluster().map_shared_rank(p, rank);
  else
    return p;
}

template <bool kCl>
__device__ __forceinline__ unsigned my_rank() {
  if constexpr (kCl)
    return cg::this_cluster().block_rank();
  else
    return 0;
}

constexpr unsigned ranks(bool cl) { return cl ? kCluster : 1; }

// The block's elements: [lo, lo + n) of the row, from the shared-memory keys (kCl; padded
// with key 0 to a multiple of 8) or from global memory.
template <bool kCl>
struct slice_view {
  const bf16* row;
  const uint4* keys;
  int lo, n;
};

template <bool kCl, typename F>
__device__ __forceinline__ void for_each(const slice_view<kCl>& v, F&& f) {
  if constexpr (kCl) {
    const int groups = (v.n + 7) / 8;
    for (int g = threadIdx.x; g < groups; g += kThreads) {
      const uint4 q = v.keys[g];
      const unsigned w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int e = 0; e < 8; ++e) f((w[e >> 1] >> (16 * (e & 1))) & 0xffffu, v.lo + 8 * g + e);
    }
  } else {
    for (int i = threadIdx.x; i < v.n; i += kThreads) f(key_of(bits_of(v.row[v.lo + i])), v.lo + i);
  }
}

// for_each with every lane of a warp in every iteration (elements past the slice come as key
// 0, below every finite key), so `f` may use warp-synchronous intrinsics.
template <bool kCl, typename F>
__device__ __forceinline__ void for_each_converged(const slice_view<kCl>& v, F&& f) {
  if constexpr (kCl) {
    const int groups = (v.n + 7) / 8;
    const int iters = (groups + kThreads - 1) / kThreads;
    for (int it = 0; it < iters; ++it) {
      const int g = threadIdx.x + it * kThreads;
      const uint4 q = g < groups ? v.keys[g] : make_uint4(0u, 0u, 0u, 0u);
      const unsigned w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int e = 0; e < 8; ++e) f((w[e >> 1] >> (16 * (e & 1))) & 0xffffu, v.lo + 8 * g + e);
    }
  } else {
    const int iters = (v.n + kThreads - 1) / kThreads;
    for (int it = 0; it < iters; ++it) {
      const int i = threadIdx.x + it * kThreads;
      f(i < v.n ? key_of(bits_of(v.row[v.lo + i])) : 0u, v.lo + i);
    }
  }
}

// Adds an element to bin `bin` of `h` (count when do_cnt, fixed-point mass m when do_mass),
// for the lanes with `take`; called by all 32 lanes of the warp together. Lanes of one bin are
// combined first (match_any, then one atomic per bin and warp): logits crowd into a few
// high-byte bins, and same-address shared atomics serialise.
template <typename H>
__device__ __forceinline__ void hist_add(H& h, bool take, unsigned bin, bool do_cnt, bool do_mass,
                                         unsigned long long m) {
  const unsigned peers = __match_any_sync(0xffffffffu, take ? bin : 0xffffffffu);
  if (!take) return;
  const bool leader = (threadIdx.x & 31u) == static_cast<unsigned>(__ffs(peers) - 1);
  if (do_cnt && leader) atomicAdd(&h.cnt[bin], static_cast<unsigned>(__popc(peers)));
  if (!do_mass) return;
#if __CUDA_ARCH__ >= 800
  // m <= 2^42: two 21-bit halves, each summed over <= 32 lanes in 32 bits, exactly.
  const unsigned lo = __reduce_add_sync(peers, static_cast<unsigned>(m & 0x1fffffull));
  const unsigned hi = __reduce_add_sync(peers, static_cast<unsigned>(m >> 21));
  if (leader) h.add_mass(bin, static_cast<unsigned long long>(lo) + (static_cast<unsigned long long>(hi) << 21));
#else
  h.add_mass(bin, m);
#endif
}

// Phase 1 scan of [lo, lo + n): best key and first index; kCl also stores the keys in `sk`
// (padded with 0 to a multiple of 8). kVec: 16-byte loads (lo, n multiples of 8, row aligned).
constexpr int kUnroll = 4;
template <bool kCl, bool kVec>
__device__ __forceinline__ void load_scan(const bf16* row, int lo, int n, uint4* sk, unsigned& bk, int& bi) {
  if constexpr (kVec) {
    const uint4* rv = reinterpret_cast<const uint4*>(row + lo);
    const int nv = n / 8;
    for (int base = threadIdx.x; base < nv; base += kUnroll * kThreads) {
      uint4 raw[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kThreads;
        raw[u] = j < nv ? rv[j] : make_uint4(0u, 0u, 0u, 0u);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = base + u * kThreads;
        if (j >= nv) continue;
        const unsigned w[4] = {raw[u].x, raw[u].y, raw[u].z, raw[u].w};
        unsigned out[4];
#pragma unroll
        for (int h = 0; h < 4; ++h) {
          const unsigned k0 = key_of(w[h] & 0xffffu), k1 = key_of(w[h] >> 16);
          out[h] = k0 | (k1 << 16);
          const int i0 = lo + 8 * j + 2 * h;
          if (better_key(k0, i0, bk, bi)) {
            bk = k0;
            bi = i0;
          }
          if (better_key(k1, i0 + 1, bk, bi)) {
            bk = k1;
            bi = i0 + 1;
          }
        }
        if constexpr (kCl) sk[j] = make_uint4(out[0], out[1], out[2], out[3]);
      }
    }
  } else {
    unsigned short* s16 = reinterpret_cast<unsigned short*>(sk);
    const int n8 = kCl ? (n + 7) / 8 * 8 : n;
    for (int j = threadIdx.x; j < n8; j += kThreads) {
      const unsigned k = j < n ? key_of(bits_of(row[lo + j])) : 0u;
      if constexpr (kCl) s16[j] = static_cast<unsigned short>(k);
      if (j < n && better_key(k, lo + j, bk, bi)) {
        bk = k;
        bi = lo + j;
      }
    }
  }
}

// Block argmax of (key, index), result in every thread.
template <typename S>
__device__ __forceinline__ void block_best_key(unsigned& bk, int& bi, S& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned ok = __shfl_xor_sync(0xffffffffu, bk, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (better_key(ok, oi, bk, bi)) {
      bk = ok;
      bi = oi;
    }
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) {
    s.red_k[warp] = bk;
    s.red_i[warp] = bi;
  }
  __syncthreads();
  bk = 0;
  bi = kNoIndex;
  for (int w = 0; w < kWarps; ++w)
    if (better_key(s.red_k[w], s.red_i[w], bk, bi)) {
      bk = s.red_k[w];
      bi = s.red_i[w];
    }
  __syncthreads();  // red_* reusable
}

// Block argmax of (score, index) and sum of `count`, results in every thread.
template <typename S>
__device__ __forceinline__ void block_best_score(float& bs, int& bi, int& count, S& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float os = __shfl_xor_sync(0xffffffffu, bs, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    count += __shfl_xor_sync(0xffffffffu, count, o);
    if (better_score(os, oi, bs, bi)) {
      bs = os;
      bi = oi;
    }
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) {
    s.red_s[warp] = bs;
    s.red_i[warp] = bi;
    s.red_c[warp] = count;
  }
  __syncthreads();
  bs = -INFINITY;
  bi = kNoIndex;
  count = 0;
  for (int w = 0; w < kWarps; ++w) {
    count += s.red_c[w];
    if (better_score(s.red_s[w], s.red_i[w], bs, bi)) {
      bs = s.red_s[w];
      bi = s.red_i[w];
    }
  }
  __syncthreads();
}

// Sums histogram h of every block of the group into s.total[h] (every block does it).
template <bool kCl>
__device__ __forceinline__ void reduce_hist(shared_state<kCl>& s, int h) {
  group_sync<kCl>();  // every block's local[h] is complete
  for (int t = threadIdx.x; t < 256; t += kThreads) {
    unsigned c = 0;
    unsigned long long m = 0;
    for (unsigned k = 0; k < ranks(kCl); ++k) {
      const local_hist<kCl>* o = at_rank<kCl>(&s.local[h], k);
      c += o->cnt[t];
      m += o->mass(t);
    }
    s.total[h].cnt[t] = c;
    s.total[h].mass[t] = m;
  }
  __syncthreads();
}

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Warp 0 only. Scanning the bins from the top (255) down with running sum base + values, the
// first (largest) bin b at which pred(running sum including b) holds; *above = the running
// sum just before b. -1 when none.
template <typename Val, typename Pred>
__device__ __forceinline__ int find_top(Val val, unsigned long long base, Pred pred, unsigned long long* above) {
  const int lane = threadIdx.x & 31;
  unsigned long long loc[8], sum = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    loc[j] = val(255 - 8 * lane - j);
    sum += loc[j];
  }
  unsigned long long inc = sum;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long t = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += t;
  }
  unsigned long long cum = base + inc - sum;
  int found = -1;
  unsigned long long ab = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const unsigned long long before = cum;
    cum += loc[j];
    if (found < 0 && pred(cum)) {
      found = 255 - 8 * lane - j;
      ab = before;
    }
  }
  const unsigned m = __ballot_sync(0xffffffffu, found >= 0);
  if (m == 0u) return -1;
  const int src = __ffs(m) - 1;
  found = __shfl_sync(0xffffffffu, found, src);
  *above = __shfl_sync(0xffffffffu, ab, src);
  return found;
}

struct kernel_args {
  const bf16* logits;
  int V;
  int ld;  // row stride of logits (>= V)
  const int* num_seqs;
  const int* cu_seqlens;
  const int* context_lens;
  const int* slots;
  int max_seqs;
  const sampling_params* params;
  int* ids;
  int* history;
  int history_ld;
  const int* step;
  int* debug;
};

template <bool kCl, bool kVec>
__device__ __forceinline__ void sample_row(const kernel_args& a, int r, shared_state<kCl>& s, uint4* skeys) {
  const int tid = threadIdx.x, warp = tid >> 5;
  const unsigned rank = my_rank<kCl>();
  const bf16* row = a.logits + static_cast<std::size_t>(r) * a.ld;
  const int slice = kCl ? (a.V + 8 * kCluster - 1) / (8 * kCluster) * 8 : a.V;
  const int lo = min(a.V, static_cast<int>(rank) * slice);
  const slice_view<kCl> view{row, skeys, lo, min(a.V, lo + slice) - lo};
  for (int t = tid; t < 256; t += kThreads) {
    s.local[0].zero(t);
    s.local[1].zero(t);
  }

  // Phase 1: maximum and first index.
  unsigned bk = 0;
  int bi = kNoIndex;
  load_scan<kCl, kVec>(row, lo, view.n, skeys, bk, bi);
  block_best_key(bk, bi, s);
  if (tid == 0) {
    s.pub_key = bk;
    s.pub_idx = bi;
  }
  group_sync<kCl>();  // keys, zeroed histograms and every block's result are visible
  if (warp == 0) {
    const int lane = tid & 31;
    unsigned k = 0;
    int i = kNoIndex;
    if (lane < static_cast<int>(ranks(kCl))) {
      k = *at_rank<kCl>(&s.pub_key, lane);
      i = *at_rank<kCl>(&s.pub_idx, lane);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const unsigned ok = __shfl_xor_sync(0xffffffffu, k, o);
      const int oi = __shfl_xor_sync(0xffffffffu, i, o);
      if (better_key(ok, oi, k, i)) {
        k = ok;
        i = oi;
      }
    }
    if (lane == 0) {
      s.mx_key = k;
      s.mx_idx = i == kNoIndex ? 0 : i;
    }
  }
  __syncthreads();
  const unsigned mx = s.mx_key;
  const sampling_params p = a.params[a.slots[r]];
  const bool write = rank == 0 && tid == 0;
  if (!(p.temperature > 0.0f) || mx < kFiniteMin || mx >= kPosInf) {
    // Greedy (also a row whose maximum is not finite: all NaN, all -inf, or a +inf).
    if (write) {
      a.ids[r] = s.mx_idx;
      if (a.history != nullptr) a.history[static_cast<std::size_t>(*a.step) * a.history_ld + r] = s.mx_idx;
      if (a.debug != nullptr) {
        a.debug[2 * r] = -1;
        a.debug[2 * r + 1] = 0;
      }
    }
    group_sync<kCl>();  // the other blocks have read pub_* before this block exits
    return;
  }

  const float mxf = value_of_key(mx);
  const float invT = 1.0f / p.temperature;
  const bool topk = p.top_k > 0, topp = p.top_p < 1.0f, minp = p.min_p > 0.0f;
  const auto fx = [&](unsigned key) -> unsigned long long {
    return __float2ull_rz(expf((value_of_key(key) - mxf) * invT) * kFix);
  };
  unsigned thr = kFiniteMin;
  if (topk || topp) {
    // Phase 2: high-byte histogram of the finite keys.
    for_each_converged<kCl>(view, [&](unsigned key, int) {
      const bool take = key >= kFiniteMin;  // counts: only top-k reads them
      hist_add(s.local[0], take, key >> 8, topk, topp, take && topp ? fx(key) : 0ull);
    });
    reduce_hist<kCl>(s, 0);
    const hist& t0 = s.total[0];
    if (warp == 0) {
      const unsigned long long nfin = warp_sum([&] {
        unsigned long long c = 0;
        for (int b = tid; b < 256; b += 32) c += t0.cnt[b];
        return c;
      }());
      int kbin = -1;
      unsigned long long above = 0;
      const unsigned long long k = static_cast<unsigned long long>(topk ? p.top_k : 0);
      if (topk && k < nfin)
        kbin = find_top([&](int b) -> unsigned long long { return t0.cnt[b]; }, 0,
                        [&](unsigned long long c) { return c >= k; }, &above);
      if (tid == 0) {
        s.kbin = kbin;
        s.kabove = static_cast<unsigned>(above);
      }
    }
    __syncthreads();
    const int kbin = s.kbin;
    unsigned thr_k = kFiniteMin;
    if (kbin >= 0) {
      // Phase 3a: low-byte histogram of the top-k boundary bin.
      for_each_converged<kCl>(view, [&](unsigned key, int) {
        const bool take = key >= kFiniteMin && static_cast<int>(key >> 8) == kbin;
        hist_add(s.local[1], take, key & 255u, true, topp, take && topp ? fx(key) : 0ull);
      });
      reduce_hist<kCl>(s, 1);
      if (warp == 0) {
        unsigned long long dummy = 0;
        const unsigned long long k = static_cast<unsigned long long>(p.top_k);
        const int lb = find_top([&](int b) -> unsigned long long { return s.total[1].cnt[b]; }, s.kabove,
                                [&](unsigned long long c) { return c >= k; }, &dummy);
        if (tid == 0) s.thr = (static_cast<unsigned>(kbin) << 8) | static_cast<unsigned>(lb);
      }
      __syncthreads();
      thr_k = s.thr;
      __syncthreads();
    }
    unsigned thr_p = kFiniteMin;
    if (topp) {
      const unsigned lbk = thr_k & 255u;
      // Masses of the top-k survivors: the high bins above kbin, and the low bins >= lbk of kbin.
      const auto v0 = [&](int b) -> unsigned long long {
        return kbin < 0 || b > kbin ? s.total[0].mass[b] : 0ull;
      };
      const auto v1 = [&](int b) -> unsigned long long {
        return kbin >= 0 && b >= static_cast<int>(lbk) ? s.total[1].mass[b] : 0ull;
      };
      if (warp == 0) {
        unsigned long long m0 = 0, m1 = 0;
        for (int b = tid; b < 256; b += 32) {
          m0 += v0(b);
          m1 += v1(b);
        }
        m0 = warp_sum(m0);
        m1 = warp_sum(m1);
        const double target = static_cast<double>(p.top_p) * static_cast<double>(m0 + m1);
        // c > 0: with top_p <= 0 the boundary is the maximum's level, not an empty bin above it.
        const auto reach = [&](unsigned long long c) { return c > 0 && static_cast<double>(c) >= target; };
        unsigned long long above = 0;
        int pbin = find_top(v0, 0, reach, &above);
        if (pbin < 0) {  // the boundary is inside the top-k boundary bin
          const int lb = find_top(v1, m0, reach, &above);
          if (tid == 0) s.thr = (static_cast<unsigned>(kbin) << 8) | static_cast<unsigned>(lb);
        }
        if (tid == 0) {
          s.pbin = pbin;
          s.pabove = above;
          s.target = target;
        }
      }
      __syncthreads();
      const int pbin = s.pbin;
      if (pbin < 0) {
        thr_p = s.thr;
      } else {
        // Phase 3b: low-byte masses of the top-p boundary bin. Buffer 1 is untouched unless
        // phase 3a ran; then buffer 0 is free (every block has read it before phase 3a's sync).
        const int h = kbin >= 0 ? 0 : 1;
        if (h == 0) {
          for (int t = tid; t < 256; t += kThreads) s.local[0].zero_mass(t);
          __syncthreads();
        }
        for_each_converged<kCl>(view, [&](unsigned key, int) {
          const bool take = key >= kFiniteMin && static_cast<int>(key >> 8) == pbin;
          hist_add(s.local[h], take, key & 255u, false, true, take ? fx(key) : 0ull);
        });
        reduce_hist<kCl>(s, h);
        if (warp == 0) {
          unsigned long long dummy = 0;
          const double target = s.target;
          const int lb = find_top([&](int b) -> unsigned long long { return s.total[h].mass[b]; }, s.pabove,
                                  [&](unsigned long long c) { return c > 0 && static_cast<double>(c) >= target; },
                                  &dummy);
          if (tid == 0) s.thr = (static_cast<unsigned>(pbin) << 8) | static_cast<unsigned>(lb);
        }
        __syncthreads();
        thr_p = s.thr;
      }
    }
    thr = max(thr_k, thr_p);
  }
  if (minp) {
    __syncthreads();  // every thread has read s.thr above
    // The smallest key with (v - max) >= T ln(min_p) (min_p > 1 acts as 1: the maximum passes).
    if (tid == 0) {
      const double bound = static_cast<double>(p.temperature) * log(static_cast<double>(fminf(p.min_p, 1.0f)));
      const double m = static_cast<double>(mxf);
      unsigned lo_k = kFiniteMin, hi_k = mx;  // hi_k passes
      while (lo_k < hi_k) {
        const unsigned mid = (lo_k + hi_k) / 2;
        if (static_cast<double>(value_of_key(mid)) - m >= bound)
          hi_k = mid;
        else
          lo_k = mid + 1;
      }
      s.thr = max(thr, hi_k);
    }
    __syncthreads();
    thr = s.thr;
  }

  // Phase 4: Gumbel-max over the kept set.
  const int pos = a.context_lens[r] + (a.cu_seqlens[r + 1] - a.cu_seqlens[r]);
  const std::uint64_t stream = sampling_stream(p.seed, pos);
  float bs = -INFINITY;
  int best = kNoIndex, count = 0;
  for_each<kCl>(view, [&](unsigned key, int i) {
    if (key < thr) return;
    ++count;
    const float u = sampling_uniform(stream, static_cast<std::uint32_t>(i));
    const float sc = (value_of_key(key) - mxf) * invT - logf(-logf(u));
    if (better_score(sc, i, bs, best)) {
      bs = sc;
      best = i;
    }
  });
  block_best_score(bs, best, count, s);
  if (tid == 0) {
    s.pub_score = bs;
    s.pub_best = best;
    s.pub_count = count;
  }
  group_sync<kCl>();
  if (rank == 0 && warp == 0) {
    const int lane = tid & 31;
    float v = -INFINITY;
    int i = kNoIndex, c = 0;
    if (lane < static_cast<int>(ranks(kCl))) {
      v = *at_rank<kCl>(&s.pub_score, lane);
      i = *at_rank<kCl>(&s.pub_best, lane);
      c = *at_rank<kCl>(&s.pub_count, lane);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, o);
      const int oi = __shfl_xor_sync(0xffffffffu, i, o);
      c += __shfl_xor_sync(0xffffffffu, c, o);
      if (better_score(ov, oi, v, i)) {
        v = ov;
        i = oi;
      }
    }
    if (lane == 0) {
      const int id = i == kNoIndex ? s.mx_idx : i;  // the maximum is always kept
      a.ids[r] = id;
      if (a.history != nullptr) a.history[static_cast<std::size_t>(*a.step) * a.history_ld + r] = id;
      if (a.debug != nullptr) {
        a.debug[2 * r] = static_cast<int>(thr);
        a.debug[2 * r + 1] = c;
      }
    }
  }
  group_sync<kCl>();  // keep every block's shared memory alive until block 0 has read it
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads) sample_cluster_kernel(kernel_args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ shared_state<true> s;
  extern __shared__ uint4 skeys[];
  const int r = blockIdx.y;
  if (r >= a.max_seqs || r >= *a.num_seqs) return;  // uniform over the cluster (same row)
  sample_row<true, kVec>(a, r, s, skeys);
#endif
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads) sample_block_kernel(kernel_args a) {
  __shared__ shared_state<false> s;
  const int r = blockIdx.x;
  if (r >= a.max_seqs || r >= *a.num_seqs) return;
  sample_row<false, kVec>(a, r, s, nullptr);
}

// Whether the cluster kernel was compiled for this device (sm_90+ machine code from sm_90+
// PTX); NH_ARGMAX_NO_CLUSTER=1 selects the one-block-per-row kernel (as for argmax_rows; read
// at every call, for the tests).
bool cluster_available() {
  static const bool ok = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    cudaFuncAttributes at{};
    if (major < 9 || cudaFuncGetAttributes(&at, sample_cluster_kernel<true>) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return at.binaryVersion >= 90 && (at.ptxVersion == 0 || at.ptxVersion >= 90);
  }();
  const char* e = std::getenv("NH_ARGMAX_NO_CLUSTER");
  return ok && !(e != nullptr && e[0] != '\0' && e[0] != '0');
}

__global__ void bump_kernel(int* step) { ++*step; }

void launch(const bf16* logits, int V, const batch_view& batch, const sampling_params* params, int* ids, int* history,
            int history_ld, int* step, std::size_t workspace_bytes, int* debug, cudaStream_t s, int ld) {
  PIECEWISE_EXPECTS(V >= 1 && V <= kMaxV, "sample_rows: V = {} is outside [1, {}]", V, kMaxV);
  if (ld == 0) ld = V;
  PIECEWISE_EXPECTS(ld >= V, "sample_rows: row stride {} is below V = {}", ld, V);
  PIECEWISE_EXPECTS(batch.max_seqs >= 0 && batch.max_seqs <= 65535, "sample_rows: max_seqs = {}",
                    batch.max_seqs);
  const std::size_t need = sampling_workspace_bytes(batch.max_seqs, V);
  PIECEWISE_EXPECTS(workspace_bytes >= need, "sample_rows: workspace of {} bytes, {} needed", workspace_bytes,
                    need);
  const int rows = batch.max_seqs;
  if (rows > 0) {
    kernel_args a{logits,     V,     ld,    batch.num_seqs, batch.cu_seqlens, batch.context_lens, batch.slots, rows,
                  params,     ids,   history,        history_ld,       step,               debug};
    const bool vec = V % 8 == 0 && ld % 8 == 0 && (reinterpret_cast<std::uintptr_t>(logits) & 15u) == 0;
    const int slice = (V + 8 * kCluster - 1) / (8 * kCluster) * 8;
    if (cluster_available() && slice <= kMaxClusterSlice) {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(kCluster, rows);
      cfg.blockDim = dim3(kThreads);
      cfg.dynamicSmemBytes = static_cast<std::size_t>(slice) * sizeof(bf16);
      cfg.stream = s;
      cudaLaunchAttribute attr{};
      attr.id = cudaLaunchAttributeClusterDimension;
      attr.val.clusterDim.x = kCluster;
      attr.val.clusterDim.y = 1;
      attr.val.clusterDim.z = 1;
      cfg.attrs = &attr;
      cfg.numAttrs = 1;
      PIECEWISE_CUDA_TRY_CTX(vec ? cudaLaunchKernelEx(&cfg, sample_cluster_kernel<true>, a)
                                 : cudaLaunchKernelEx(&cfg, sample_cluster_kernel<false>, a),
                             "sample_rows (cluster launch)");
    } else if (vec) {
      sample_block_kernel<true><<<rows, kThreads, 0, s>>>(a);
    } else {
      sample_block_kernel<false><<<rows, kThreads, 0, s>>>(a);
    }
    NH_CHECK_LAUNCH("sample_rows");
  }
  if (step != nullptr) {
    bump_kernel<<<1, 1, 0, s>>>(step);
    NH_CHECK_LAUNCH("sample_rows (step)");
  }
}

}  // namespace

std::size_t sampling_workspace_bytes(int, int) noexcept { return 0; }

void sample_rows(const bf16* logits, int V, const batch_view& batch, const sampling_params* params, int* ids,
                 int* history, int history_ld, int* step, void*, std::size_t workspace_bytes, cudaStream_t s, int ld) {
  launch(logits, V, batch, params, ids, history, history_ld, step, workspace_bytes, nullptr, s, ld);
}

void sample_rows_debug(const bf16* logits, int V, const batch_view& batch, const sampling_params* params, int* ids,
                       int* history, int history_ld, int* step, void*, std::size_t workspace_bytes, int* debug,
                       cudaStream_t s) {
  launch(logits, V, batch, params, ids, history, history_ld, step, workspace_bytes, debug, s, 0);
}

}  // namespace nemotron_h
