// Split-context GQA decode attention, one launch (see attention_decode.cuh).
//
// Block (kv head, split, sequence), 4 warps. The block streams its run of whole 64-key tiles
// of K and V through a cp.async ring of STAGES tiles; each warp owns 16 keys of a tile and
// keeps its own online softmax over the block's keys. Scores and P V use mma.sync m16n8k16
// with the group's query heads as the 16 rows (rows >= Hq/Hkv are zero and never stored).
// A group of more than 16 query heads (Hq/Hkv up to 32) is cut into ceil(G/16) nearly equal
// sub-groups, one block each (grid x = Hkv * sub-groups); those blocks are adjacent, so the
// second read of the K/V rows mostly hits L2.
// The new tokens' keys come straight from the k/v inputs; the block whose run contains them
// also writes them into the cache. With one split the block writes the output; otherwise it
// writes an fp32 partial (O, max, sum) and bumps the (sequence, KV head) counter; the block
// that sees the count complete merges the partials in split order and resets the counter.
#include "kernels/attention_decode.cuh"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/tensor_core.cuh"

namespace nemotron_h {

namespace {

constexpr int kHD = 128;
constexpr int kTile = kDecodeTileKeys;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxGroup = 16;  // query heads per block (one m16 tile)
constexpr int kMaxSub = (kDecodeMaxGroup + kMaxGroup - 1) / kMaxGroup;  // blocks per KV head
constexpr int kMaxSplits = kDecodeMaxSplits;
constexpr int kTileBytes = kTile * kHD * 2;  // one of K or V: 16 KiB
constexpr int kQBytes = 16 * kHD * 2;        // 16 query-head rows
constexpr int kDefaultStages = 3;

constexpr int smem_bytes(int stages) { return kQBytes + stages * 2 * kTileBytes; }
// The merges reuse the ring: [kWarps][kMaxGroup][kHD] floats of O, then (max, sum) pairs.
static_assert(kWarps * kMaxGroup * kHD * 4 + kWarps * kMaxGroup * 2 * 4 <= 2 * 2 * kTileBytes,
              "merge scratch must fit in a 2-stage ring");

struct decode_params {
  const bf16* q;
  int ldq;
  const bf16* k;  // new tokens' K rows, stride ldkv
  const bf16* v;
  int ldkv;
  kv_cache_view cache;
  batch_view batch;
  int group;   // Hq / Hkv
  int nsub;    // blocks per KV head: ceil(group / 16)
  int gsub;    // query heads per block: ceil(group / nsub) (the last block may have fewer)
  int splits;  // most splits per (sequence, KV head)
  float scale_log2;
  bf16* out;
  int ldo;
  int* counters_end;  // one past the last counter; (s, kh, sub)'s is counters_end[-1 - ((s * Hkv + kh) * nsub + sub)]
  float* ml;      // [max_seqs][Hkv][splits][group][2]
  float* o_part;  // [max_seqs][Hkv][splits][group][kHD]
};

// Swizzled byte offset of 16-byte chunk c (0..15) of row r in a [rows][128] bf16 tile.
__device__ inline std::uint32_t tile_off(int r, int c) {
  return static_cast<std::uint32_t>(r * (kHD * 2) + ((c ^ (r & 7)) << 4));
}

// Issues the cp.async copies of K and V rows [pos0, pos0 + kTile) of head kh; rows at or
// past key_end are zero-filled, rows at or past ctx come from the new tokens' k/v rows.
__device__ inline void load_tile(const decode_params& p, std::uint32_t k_dst, std::uint32_t v_dst,
                                 int pos0, int key_end, int ctx, int slot, int t0, int kh) {
  const int c = threadIdx.x & 15;
#pragma unroll
  for (int i = 0; i < kTile * 16 / kThreads; ++i) {
    const int r = (threadIdx.x >> 4) + i * (kThreads / 16);
    const int pos = pos0 + r;
    const bool ok = pos < key_end;
    const bf16* ks = p.cache.k;
    const bf16* vs = p.cache.k;
    if (ok && pos < ctx) {
      const std::size_t off = p.cache.offset(slot, pos, kh);
      ks = p.cache.k + off;
      vs = p.cache.v + off;
    } else if (ok) {
      const std::size_t row = static_cast<std::size_t>(t0 + pos - ctx) * p.ldkv + kh * kHD;
      ks = p.k + row;
      vs = p.v + row;
    }
    detail::cp_async16(k_dst + tile_off(r, c), ks + (ok ? c * 8 : 0), ok);
    detail::cp_async16(v_dst + tile_off(r, c), vs + (ok ? c * 8 : 0), ok);
  }
}

// Merges the kWarps partial softmax states in shared memory (red: [kWarps][kMaxGroup][kHD]
// unnormalized O, wml: [kWarps][kMaxGroup] (max, sum), log2 domain; a warp that saw no key
// has max -inf and weighs 0) in warp order, calling emit(h, d, O, M, L) once per element
// h < G, d < kHD. Call after a barrier that publishes red and wml.
template <typename Emit>
__device__ inline void merge_warps(const float* red, const float* wml, int G, Emit&& emit) {
  for (int idx = threadIdx.x; idx < G * kHD; idx += kThreads) {
    const int h = idx / kHD, d = idx % kHD;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, wml[(w * kMaxGroup + h) * 2]);
    float L = 0.f, O = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float a = detail::fast_exp2(wml[(w * kMaxGroup + h) * 2] - M);
      L += a * wml[(w * kMaxGroup + h) * 2 + 1];
      O += a * red[(w * kMaxGroup + h) * kHD + d];
    }
    emit(h, d, O, M, L);
  }
}

// SUB: the group has more than 16 query heads and is cut into p.nsub blocks per KV head;
// without it (every group of at most 16) the block index is the KV head, as before.
template <int STAGES, bool SUB>
__global__ void __launch_bounds__(kThreads) attention_decode_kernel(const decode_params p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int nsub = SUB ? p.nsub : 1;
  const int kh = SUB ? blockIdx.x / nsub : blockIdx.x, sub = SUB ? blockIdx.x - kh * nsub : 0;
  const int split = blockIdx.y, s = blockIdx.z;
  // All metadata loads issued together (s < max_seqs keeps them in bounds), then the checks:
  // one memory latency instead of a chain of them.
  const int n_seqs = *p.batch.num_seqs;
  const int t0 = p.batch.cu_seqlens[s];
  const int end = p.batch.cu_seqlens[s + 1];
  const int ctx = p.batch.context_lens[s];
  const int slot = p.batch.slots[s];
  const int len = end - t0;
  if (s >= n_seqs || len < 1) return;
  const int total = ctx + len;  // keys visible to the last token
  const int ntiles = (total + kTile - 1) / kTile;
  const int tps = (ntiles + min(p.splits, ntiles) - 1) / min(p.splits, ntiles);  // tiles / split
  const int nsplit = (ntiles + tps - 1) / tps;
  if (split >= nsplit) return;
  const int key0 = split * tps * kTile;
  const int key_end = min(total, key0 + tps * kTile);
  const int my_tiles = (key_end - key0 + kTile - 1) / kTile;
  const int h0 = SUB ? sub * p.gsub : 0;                   // first query head of the block in the group
  const int G = SUB ? min(p.gsub, p.group - h0) : p.group;  // query heads of this block (<= 16)
  const int Hkv = p.cache.num_kv_heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  unsigned char* ring = smem + kQBytes;
  const std::uint32_t q_a = detail::smem_addr(smem), ring_a = detail::smem_addr(ring);
  auto k_stage = [&](int st) { return ring_a + st * 2 * kTileBytes; };
  auto v_stage = [&](int st) { return ring_a + st * 2 * kTileBytes + kTileBytes; };

  // Query rows of the group's heads (rows >= G zero-filled), in the first cp.async group.
  {
    const bf16* qrow = p.q + static_cast<std::size_t>(end - 1) * p.ldq + (static_cast<std::size_t>(kh) * p.group + h0) * kHD;
#pragma unroll
    for (int i = 0; i < 16 * 16 / kThreads; ++i) {
      const int idx = threadIdx.x + i * kThreads;
      const int r = idx >> 4, c = idx & 15;
      const bool ok = r < G;
      detail::cp_async16(q_a + tile_off(r, c), qrow + (ok ? r * kHD + c * 8 : 0), ok);
    }
  }
#pragma unroll
  for (int j = 0; j < STAGES - 1; ++j) {
    if (j < my_tiles) load_tile(p, k_stage(j), v_stage(j), key0 + j * kTile, key_end, ctx, slot, t0, kh);
    detail::cp_async_commit();
  }

  // Fused KV append: the new rows in this block's run go into the cache (read from k/v above,
  // never from the cache, so no ordering with the loads is needed). Sub-group 0 only.
  if (sub == 0) {
    const int first = max(key0, ctx);
    const int rows = max(0, min(key_end, p.cache.max_context) - first);
    for (int idx = threadIdx.x; idx < rows * 16; idx += kThreads) {
      const int pos = first + (idx >> 4), c = idx & 15;
      const std::size_t src = static_cast<std::size_t>(t0 + pos - ctx) * p.ldkv + kh * kHD + c * 8;
      const std::size_t dst = p.cache.offset(slot, pos, kh) + c * 8;
      *reinterpret_cast<uint4*>(p.cache.k + dst) = *reinterpret_cast<const uint4*>(p.k + src);
      *reinterpret_cast<uint4*>(p.cache.v + dst) = *reinterpret_cast<const uint4*>(p.v + src);
    }
  }

  const int g = lane >> 2, t = lane & 3;
  std::uint32_t qa[kHD / 16][4];
  float o[kHD / 8][4];
#pragma unroll
  for (int n = 0; n < kHD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.f, l_hi = 0.f;

  for (int j = 0; j < my_tiles; ++j) {
    detail::cp_async_wait<STAGES - 2>();
    __syncthreads();  // tile j landed for everyone; tile j-1's stage is free
    {
      const int jn = j + STAGES - 1;
      if (jn < my_tiles)
        load_tile(p, k_stage(jn % STAGES), v_stage(jn % STAGES), key0 + jn * kTile, key_end, ctx, slot, t0, kh);
      detail::cp_async_commit();
    }
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < kHD / 16; ++kk)
        detail::ldmatrix_x4(qa[kk], q_a + tile_off((lane & 7) + (((lane >> 3) & 1) << 3), 2 * kk + (lane >> 4)));
    }
    const std::uint32_t kb = k_stage(j % STAGES), vb = v_stage(j % STAGES);
    // S[head][key] for this warp's 16 keys (two n8 tiles).
    float sc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int kk = 0; kk < kHD / 16; ++kk) {
      std::uint32_t b[4];
      detail::ldmatrix_x4(b, kb + tile_off(16 * warp + (lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1)));
      detail::mma_bf16(sc[0], qa[kk], b[0], b[1]);
      detail::mma_bf16(sc[1], qa[kk], b[2], b[3]);
    }
    // Online softmax (log2 domain); rows g (lo) and g + 8 (hi).
    const int kpos = key0 + j * kTile + 16 * warp + 2 * t;
    float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool ok = kpos + 8 * n + e < key_end;
        sc[n][e] = ok ? sc[n][e] * p.scale_log2 : -INFINITY;
        sc[n][2 + e] = ok ? sc[n][2 + e] * p.scale_log2 : -INFINITY;
        mx_lo = fmaxf(mx_lo, sc[n][e]);
        mx_hi = fmaxf(mx_hi, sc[n][2 + e]);
      }
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, off));
      mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, off));
    }
    const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
    const float base_lo = mn_lo == -INFINITY ? 0.f : mn_lo, base_hi = mn_hi == -INFINITY ? 0.f : mn_hi;
    const float a_lo = detail::fast_exp2(m_lo - base_lo), a_hi = detail::fast_exp2(m_hi - base_hi);
    m_lo = mn_lo;
    m_hi = mn_hi;
    float ps_lo = 0.f, ps_hi = 0.f;
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        sc[n][e] = detail::fast_exp2(sc[n][e] - base_lo);
        sc[n][2 + e] = detail::fast_exp2(sc[n][2 + e] - base_hi);
        ps_lo += sc[n][e];
        ps_hi += sc[n][2 + e];
      }
    }
    l_lo = l_lo * a_lo + ps_lo;
    l_hi = l_hi * a_hi + ps_hi;
#pragma unroll
    for (int n = 0; n < kHD / 8; ++n) {
      o[n][0] *= a_lo;
      o[n][1] *= a_lo;
      o[n][2] *= a_hi;
      o[n][3] *= a_hi;
    }
    // O += P V: P (16 heads x 16 keys) straight from the score fragments.
    const std::uint32_t pa[4] = {detail::pack_bf16x2(sc[0][0], sc[0][1]), detail::pack_bf16x2(sc[0][2], sc[0][3]),
                                 detail::pack_bf16x2(sc[1][0], sc[1][1]), detail::pack_bf16x2(sc[1][2], sc[1][3])};
#pragma unroll
    for (int dp = 0; dp < kHD / 16; ++dp) {
      std::uint32_t b[4];
      detail::ldmatrix_x4_trans(b, vb + tile_off(16 * warp + (lane & 7) + (((lane >> 3) & 1) << 3), 2 * dp + (lane >> 4)));
      detail::mma_bf16(o[2 * dp], pa, b[0], b[1]);
      detail::mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
    }
  }
  detail::cp_async_wait<0>();
  __syncthreads();  // the ring is free for the merges

  // Merge the 4 warps (fixed order) into the block's (O, M, L) per head.
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, off);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, off);
  }
  float* red = reinterpret_cast<float*>(ring);  // [kWarps][kMaxGroup][kHD]
  float* wml = red + kWarps * kMaxGroup * kHD;   // [kWarps][kMaxGroup][2]
#pragma unroll
  for (int n = 0; n < kHD / 8; ++n) {
    if (g < G) *reinterpret_cast<float2*>(red + (warp * kMaxGroup + g) * kHD + 8 * n + 2 * t) = make_float2(o[n][0], o[n][1]);
    if (g + 8 < G)
      *reinterpret_cast<float2*>(red + (warp * kMaxGroup + g + 8) * kHD + 8 * n + 2 * t) = make_float2(o[n][2], o[n][3]);
  }
  if (t == 0) {
    wml[(warp * kMaxGroup + g) * 2] = m_lo;
    wml[(warp * kMaxGroup + g) * 2 + 1] = l_lo;
    wml[(warp * kMaxGroup + g + 8) * 2] = m_hi;
    wml[(warp * kMaxGroup + g + 8) * 2 + 1] = l_hi;
  }
  __syncthreads();
  const std::size_t pair = static_cast<std::size_t>(s) * Hkv + kh;
  // Partial of split i, head h of this block: (part0 + i) * group + h0 + h.
  const std::size_t part0 = pair * p.splits;
  bf16* out_row = p.out + static_cast<std::size_t>(end - 1) * p.ldo + (static_cast<std::size_t>(kh) * p.group + h0) * kHD;
  merge_warps(red, wml, G, [&](int h, int d, float O, float M, float L) {
    if (nsplit == 1) {
      out_row[h * kHD + d] = to_bf16(O / L);
    } else {
      const std::size_t pi = (part0 + split) * p.group + h0 + h;
      p.o_part[pi * kHD + d] = O;
      if (d == 0) {
        p.ml[2 * pi] = M;
        p.ml[2 * pi + 1] = L;
      }
    }
  });
  if (nsplit == 1) return;

  // Count this split in; the last one merges all splits of (s, kh) in a fixed order.
  __shared__ int last;
  __syncthreads();  // the block's partial stores precede thread 0's release below
  if (threadIdx.x == 0) {
    int* counter = p.counters_end - 1 - (pair * nsub + sub);
    __threadfence();
    const int prev = atomicAdd(counter, 1);
    last = prev == nsplit - 1;
    if (last) *counter = 0;  // ready for the next launch
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  // Warp w merges splits w, w + 4, ... online (max, sum and O loads of a split are independent,
  // two splits in flight); lane owns dims [4 lane, 4 lane + 4) of every head. Then the 4 warps
  // are merged as in the block above.
  float4 acc[kMaxGroup];
  float mr[kMaxGroup], lr[kMaxGroup];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    acc[h] = make_float4(0.f, 0.f, 0.f, 0.f);
    mr[h] = -INFINITY;
    lr[h] = 0.f;
  }
#pragma unroll 2
  for (int i = warp; i < nsplit; i += kWarps) {
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h < G) {
        const std::size_t pi = (part0 + i) * p.group + h0 + h;
        const float2 ml = __ldcg(reinterpret_cast<const float2*>(p.ml) + pi);
        const float4 x = __ldcg(reinterpret_cast<const float4*>(p.o_part + pi * kHD) + lane);
        const float mn = fmaxf(mr[h], ml.x);
        const float a = detail::fast_exp2(mr[h] - mn), b = detail::fast_exp2(ml.x - mn);
        acc[h].x = acc[h].x * a + x.x * b;
        acc[h].y = acc[h].y * a + x.y * b;
        acc[h].z = acc[h].z * a + x.z * b;
        acc[h].w = acc[h].w * a + x.w * b;
        lr[h] = lr[h] * a + ml.y * b;
        mr[h] = mn;
      }
    }
  }
  __syncthreads();  // done with red / wml of the block merge
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    if (h < G) {
      *reinterpret_cast<float4*>(red + (warp * kMaxGroup + h) * kHD + 4 * lane) = acc[h];
      if (lane == 0) {
        wml[(warp * kMaxGroup + h) * 2] = mr[h];
        wml[(warp * kMaxGroup + h) * 2 + 1] = lr[h];
      }
    }
  }
  __syncthreads();
  merge_warps(red, wml, G, [&](int h, int d, float O, float, float L) { out_row[h * kHD + d] = to_bf16(O / L); });
}

using kernel_fn = void (*)(decode_params);

kernel_fn kernel_for(int stages, bool sub) {
  switch (stages) {
    case 2: return sub ? attention_decode_kernel<2, true> : attention_decode_kernel<2, false>;
    case 3: return sub ? attention_decode_kernel<3, true> : attention_decode_kernel<3, false>;
    default: return sub ? attention_decode_kernel<4, true> : attention_decode_kernel<4, false>;
  }
}

// Resident blocks per SM of each pipeline depth (index = stages) of the kernel without (sub =
// false) or with query sub-groups; sets the dynamic shared memory limits once. Host only; not
// a stream operation (fine during capture).
int blocks_per_sm(int stages, bool sub) {
  static const std::array<std::array<int, 5>, 2> table = [] {
    std::array<std::array<int, 5>, 2> r{};
    for (int v = 0; v < 2; ++v)
      for (int st = 2; st <= 4; ++st) {
        const kernel_fn fn = kernel_for(st, v == 1);
        int n = 0;
        if (cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes(st)) != cudaSuccess ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, kThreads, smem_bytes(st)) != cudaSuccess) {
          (void)cudaGetLastError();
          n = std::max(1, (227 * 1024) / (smem_bytes(st) + 1024));  // no device: a shared-memory bound
        }
        r[static_cast<std::size_t>(v)][static_cast<std::size_t>(st)] = std::max(1, n);
      }
    return r;
  }();
  return table[sub ? 1 : 0][static_cast<std::size_t>(stages)];
}

void require(bool cond, const char* what, const std::string& shape) {
  if (!cond) throw piecewise::config_error(shape + ": " + what);
}

std::size_t round256(std::size_t b) { return (b + 255) / 256 * 256; }

bool aligned16(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; }

int stages_of(const attention_decode_tuning& tune) { return tune.stages == 0 ? kDefaultStages : tune.stages; }

// Blocks per KV head for a group of g query heads.
int subgroups(int g) { return std::max(1, ceil_div(g, kMaxGroup)); }

// Splits per (sequence, KV head) for these host bounds.
int splits_for(int max_seqs, int num_q_heads, int num_kv_heads, int max_context, const attention_decode_tuning& tune) {
  const int tiles = ceil_div(max_context, kTile);
  if (tune.splits > 0) return std::min({tune.splits, tiles, kMaxSplits});
  // Automatic: at most 2 sqrt(tiles) splits. The sweep in BM_attention_decode (H200,
  // docs/bench/h200/nh_dense_bench_decode_57a142c.log) found the best batch-1 counts at
  // 4, 8 and 16 splits for 4, 16 and 64 tiles: longer runs per block beat more blocks there.
  const int pmax = std::clamp(static_cast<int>(std::lround(2.0 * std::sqrt(static_cast<double>(tiles)))), 1,
                              std::min(tiles, kMaxSplits));
  const int nsub = subgroups(num_q_heads / num_kv_heads);
  const int slots = blocks_per_sm(stages_of(tune), nsub > 1) * multiprocessors();
  const int pairs = std::max(1, max_seqs * num_kv_heads * nsub);
  const int p0 = std::clamp(slots / pairs, 1, pmax);
  // Smallest count from p0 whose last wave of blocks is at least 90% full.
  for (int sp = p0; sp <= std::min(pmax, 4 * p0); ++sp) {
    const long long blocks = static_cast<long long>(pairs) * sp;
    const long long waves = (blocks + slots - 1) / slots;
    if (blocks * 10 >= waves * slots * 9) return sp;
  }
  return p0;
}

struct ws_layout {
  std::size_t ml, o_part, total;
};

// Workspace of one batch bound: (when it splits) the (max, sum) pairs and the partial O from
// the start, the counters at the end (counted from the end, so batches of every size agree
// on where each counter lives and no batch's partials reach another's counters).
ws_layout layout_for(int max_seqs, int num_q_heads, int num_kv_heads, int max_context,
                     const attention_decode_tuning& tune) {
  ws_layout w{};
  const int sp = splits_for(max_seqs, num_q_heads, num_kv_heads, max_context, tune);
  const std::size_t n = sp > 1 ? static_cast<std::size_t>(max_seqs) * sp * num_q_heads : 0;
  w.ml = round256(n * 2 * sizeof(float));
  w.o_part = round256(n * kHD * sizeof(float));
  w.total = w.ml + w.o_part + attention_decode_counter_bytes(max_seqs, num_kv_heads);
  return w;
}

std::string describe(int max_seqs, int num_q_heads, int num_kv_heads, int head_dim, int max_context,
                     const attention_decode_tuning& tune) {
  return "attention_decode (max_seqs=" + std::to_string(max_seqs) + ", max_context=" + std::to_string(max_context) +
         ", Hq=" + std::to_string(num_q_heads) + ", Hkv=" + std::to_string(num_kv_heads) +
         ", head_dim=" + std::to_string(head_dim) + ", splits=" + std::to_string(tune.splits) +
         ", stages=" + std::to_string(tune.stages) + ")";
}

void check_sizes(int max_seqs, int num_q_heads, int num_kv_heads, int head_dim, int max_context,
                 const attention_decode_tuning& tune) {
  const bool ok_shape = head_dim == kHD && num_kv_heads > 0 && num_q_heads > 0 &&
                        num_q_heads % num_kv_heads == 0 && num_q_heads / num_kv_heads <= kDecodeMaxGroup;
  const bool ok_bounds = max_seqs >= 0 && max_seqs <= 65535 && max_context > 0;
  const bool ok_tune = tune.splits >= 0 && tune.splits <= kMaxSplits &&
                       (tune.stages == 0 || (tune.stages >= 2 && tune.stages <= 4));
  if (ok_shape && ok_bounds && ok_tune) return;
  const std::string shape = describe(max_seqs, num_q_heads, num_kv_heads, head_dim, max_context, tune);
  require(ok_shape, "head_dim must be 128, Hq a multiple of Hkv and Hq/Hkv <= 32", shape);
  require(ok_bounds, "max_seqs must be in [0, 65535] and max_context positive", shape);
  require(ok_tune, "tuning: splits in [0, 128], stages 0 or 2..4", shape);
}

}  // namespace

std::size_t attention_decode_counter_bytes(int max_seqs, int num_kv_heads) {
  return (static_cast<std::size_t>(std::max(max_seqs, 0)) * std::max(num_kv_heads, 0) * kMaxSub * sizeof(int) + 255) /
         256 * 256;
}

std::size_t attention_decode_workspace_bytes(int max_seqs, int num_q_heads, int num_kv_heads, int head_dim,
                                             int max_context, const attention_decode_tuning& tune) {
  check_sizes(max_seqs, num_q_heads, num_kv_heads, head_dim, max_context, tune);
  // Smaller batches split more: take the largest need over every max_seqs up to the bound.
  std::size_t partials = 0;
  for (int m = 1; m <= max_seqs; ++m) {
    const ws_layout w = layout_for(m, num_q_heads, num_kv_heads, max_context, tune);
    partials = std::max(partials, w.ml + w.o_part);
  }
  return partials + attention_decode_counter_bytes(max_seqs, num_kv_heads);
}

void attention_decode(const bf16* q, int ldq, const bf16* k, const bf16* v, int ldkv,
                      const kv_cache_view& cache, const batch_view& batch, int num_q_heads,
                      bf16* out, int ldo, void* workspace, std::size_t workspace_bytes,
                      int max_context, cudaStream_t stream, const attention_decode_tuning& tune) {
  const int Hkv = cache.num_kv_heads;
  check_sizes(batch.max_seqs, num_q_heads, Hkv, cache.head_dim, max_context, tune);
  const ws_layout w = layout_for(batch.max_seqs, num_q_heads, Hkv, max_context, tune);
  const bool ok_ld = ldq % 8 == 0 && ldo % 8 == 0 && ldkv % 8 == 0 && ldq >= num_q_heads * kHD &&
                     ldo >= num_q_heads * kHD && ldkv >= Hkv * kHD;
  const bool ok_ptr = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(out) &&
                      aligned16(cache.k) && aligned16(cache.v);
  const bool ok_ctx = max_context <= cache.max_context;
  const bool ok_ws = workspace != nullptr && workspace_bytes >= w.total &&
                     reinterpret_cast<std::uintptr_t>(workspace) % 256 == 0;
  if (!(ok_ld && ok_ptr && ok_ctx && ok_ws)) {
    const std::string shape = describe(batch.max_seqs, num_q_heads, Hkv, cache.head_dim, max_context, tune);
    require(ok_ld, "ldq/ldo/ldkv must be multiples of 8 and cover the heads", shape);
    require(ok_ptr, "q, k, v, out and the cache must be 16-byte aligned", shape);
    require(ok_ctx, "max_context must not exceed cache.max_context", shape);
    require(ok_ws, ("workspace must be 256-byte aligned and hold " + std::to_string(w.total) + " bytes (got " +
                    std::to_string(workspace_bytes) + ")").c_str(),
            shape);
  }
  if (batch.max_seqs <= 0) return;
  const int stages = stages_of(tune);
  (void)blocks_per_sm(stages, false);  // sets the shared-memory limits (of both kernels)
  decode_params p{};
  p.q = q;
  p.ldq = ldq;
  p.k = k;
  p.v = v;
  p.ldkv = ldkv;
  p.cache = cache;
  p.batch = batch;
  p.group = num_q_heads / Hkv;
  p.nsub = subgroups(p.group);
  p.gsub = ceil_div(p.group, p.nsub);
  p.splits = splits_for(batch.max_seqs, num_q_heads, Hkv, max_context, tune);
  p.scale_log2 = 1.4426950408889634f / sqrtf(static_cast<float>(kHD));
  p.out = out;
  p.ldo = ldo;
  char* base = static_cast<char*>(workspace);
  p.counters_end = reinterpret_cast<int*>(base) + workspace_bytes / sizeof(int);
  p.ml = reinterpret_cast<float*>(base);
  p.o_part = reinterpret_cast<float*>(base + w.ml);
  kernel_for(stages, p.nsub > 1)<<<dim3(Hkv * p.nsub, p.splits, batch.max_seqs), kThreads, smem_bytes(stages), stream>>>(p);
  PIECEWISE_CUDA_TRY_CTX(cudaGetLastError(), "attention_decode");
}

}  // namespace nemotron_h
