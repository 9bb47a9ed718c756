// Causal GQA prefill attention with cached prefixes, and the KV-cache append (see
// attention_prefill.cuh, kv_cache.cuh). The portable mma.sync kernel lives here; on Hopper
// attention_prefill() dispatches to the sm_90a kernel in attention_prefill_sm90.cu.
#include "kernels/attention_prefill.cuh"

#include <cstdint>
#include <string>

#include "kernels/attention_prefill_sm90.cuh"
#include "kernels/tensor_core.cuh"

namespace nemotron_h {

namespace {

using detail::cp_async16;
using detail::smem_addr;

// ---- KV append ------------------------------------------------------------------------

// One block per packed token row; threads copy 16-byte chunks of the K and V rows.
__global__ void kv_append_kernel(kv_cache_view cache, const bf16* __restrict__ k,
                                 const bf16* __restrict__ v, int ldkv, batch_view batch) {
  const int t = blockIdx.x;
  const int n = *batch.num_seqs;
  const int s = detail::find_seq(batch.cu_seqlens, n, t);
  if (s < 0) return;
  const int pos = batch.context_lens[s] + (t - batch.cu_seqlens[s]);
  if (pos < 0 || pos >= cache.max_context) return;
  const int slot = batch.slots[s];
  const int chunks = static_cast<int>(cache.row_elems() / 8);
  const uint4* ks = reinterpret_cast<const uint4*>(k + static_cast<std::size_t>(t) * ldkv);
  const uint4* vs = reinterpret_cast<const uint4*>(v + static_cast<std::size_t>(t) * ldkv);
  uint4* kd = reinterpret_cast<uint4*>(cache.k + cache.offset(slot, pos, 0));
  uint4* vd = reinterpret_cast<uint4*>(cache.v + cache.offset(slot, pos, 0));
  for (int i = threadIdx.x; i < chunks; i += blockDim.x) {
    kd[i] = ks[i];
    vd[i] = vs[i];
  }
}

// ---- prefill --------------------------------------------------------------------------

constexpr int kHD = 128;  // head dim

// Tile shape. Each of the WARPS warps owns MT m16 row tiles (16*MT query rows) of the
// block's BM = 16*MT*WARPS query rows and walks the keys BN at a time. MT = 2 feeds every K/V
// fragment read from shared memory into two mma's (half the shared-memory traffic per flop
// of MT = 1), at the price of re-reading Q fragments from shared memory.
template <int MT_, int WARPS_, int BN_>
struct prefill_cfg {
  static constexpr int MT = MT_, WARPS = WARPS_, BN = BN_;
  static constexpr int THREADS = WARPS * 32;
  static constexpr int BM = 16 * MT * WARPS;
  static constexpr int QBytes = BM * kHD * 2;
  static constexpr int KVTileBytes = BN * kHD * 2;
  static constexpr int SmemBytes = QBytes + 4 * KVTileBytes;  // Q + 2 x K + 2 x V
};

// Swizzled byte offset of 16-byte chunk c (0..15) of row r in a [rows][128] bf16 tile: the
// chunk index is XORed with r % 8 so ldmatrix's 8-row phases hit 8 distinct bank groups.
__device__ inline std::uint32_t tile_off(int r, int c) {
  return static_cast<std::uint32_t>(r * (kHD * 2) + ((c ^ (r & 7)) << 4));
}

struct prefill_params {
  const bf16* q;
  int ldq;
  kv_cache_view cache;
  batch_view batch;
  int num_q_heads;
  int group;  // Hq / Hkv
  bf16* out;
  int ldo;
  float scale_log2;  // log2(e) / sqrt(hd)
};

// Loads a [ROWS][128] tile (row i valid when i < valid_rows, else zero-filled).
template <int ROWS, int THREADS>
__device__ inline void load_tile(std::uint32_t dst, const bf16* src, std::size_t stride,
                                 int valid_rows) {
  static_assert((ROWS * 16) % THREADS == 0, "tile rows must cover all threads");
#pragma unroll
  for (int i = 0; i < (ROWS * 16) / THREADS; ++i) {
    const int idx = threadIdx.x + i * THREADS;
    const int r = idx >> 4, c = idx & 15;
    const bool ok = r < valid_rows;
    const bf16* p = src + (ok ? static_cast<std::size_t>(r) * stride : 0) + c * 8;
    cp_async16(dst + tile_off(r, c), p, ok);
  }
}

// grid (query head, query tile, sequence). The heads are the fastest grid dimension and the
// tiles run in reverse, so the longest (latest) query tiles of all heads start first and the
// Hq/Hkv heads sharing a KV head read the same K/V rows at about the same time (L2 hits).
// MT == 1 keeps the warp's Q fragments in registers; MT == 2 re-reads them from shared
// memory (register budget). Scores stay unscaled; the scale is folded into the exp2 FFMA.
template <class C>
__global__ void __launch_bounds__(C::THREADS) attention_prefill_kernel(const prefill_params p) {
  constexpr int MT = C::MT, BN = C::BN, BM = C::BM, THREADS = C::THREADS;
  extern __shared__ __align__(128) unsigned char smem[];
  const int s = blockIdx.z;
  if (s >= *p.batch.num_seqs) return;
  const int seq_start = p.batch.cu_seqlens[s];
  const int len = p.batch.cu_seqlens[s + 1] - seq_start;
  const int tile = gridDim.y - 1 - blockIdx.y;  // long (late) tiles first
  const int q0 = tile * BM;
  if (q0 >= len) return;
  const int h = blockIdx.x;
  const int kh = h / p.group;
  const int ctx = p.batch.context_lens[s];
  const int slot = p.batch.slots[s];
  const int total = ctx + len;
  const int last_key = min(ctx + q0 + BM - 1, total - 1);
  const int n_tiles = last_key / BN + 1;

  const std::uint32_t q_s = smem_addr(smem);
  const std::uint32_t k_s = q_s + C::QBytes;              // two buffers
  const std::uint32_t v_s = k_s + 2 * C::KVTileBytes;     // two buffers
  const std::size_t kv_stride = p.cache.row_elems();
  const bf16* k_base = p.cache.k + p.cache.offset(slot, 0, kh);
  const bf16* v_base = p.cache.v + p.cache.offset(slot, 0, kh);

  load_tile<BM, THREADS>(q_s, p.q + static_cast<std::size_t>(seq_start + q0) * p.ldq + h * kHD,
                         p.ldq, len - q0);
  load_tile<BN, THREADS>(k_s, k_base, kv_stride, total);
  load_tile<BN, THREADS>(v_s, v_base, kv_stride, total);
  detail::cp_async_commit();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, tq = lane & 3;
  constexpr int QREG = MT == 1 ? kHD / 16 : 1;
  std::uint32_t qf[QREG][4];
  float o[MT][kHD / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int n = 0; n < kHD / 8; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;
  float m_run[MT][2], l_run[MT][2];  // running max (scaled, log2 domain) and row sum
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    m_run[mt][0] = m_run[mt][1] = -INFINITY;
    l_run[mt][0] = l_run[mt][1] = 0.f;
  }
  const float scale = p.scale_log2;
  const int wrow0 = q0 + warp * 16 * MT;  // first sequence-local query row of this warp
  const int wq_first = ctx + wrow0;       // its key position; the warp's last is + 16*MT - 1
  const bool warp_live = wrow0 < len;     // warps of padding rows only help load

  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j & 1;
    if (j + 1 < n_tiles) {
      const int kb = (j + 1) * BN;
      load_tile<BN, THREADS>(k_s + (buf ^ 1) * C::KVTileBytes,
                             k_base + static_cast<std::size_t>(kb) * kv_stride, kv_stride,
                             total - kb);
      load_tile<BN, THREADS>(v_s + (buf ^ 1) * C::KVTileBytes,
                             v_base + static_cast<std::size_t>(kb) * kv_stride, kv_stride,
                             total - kb);
    }
    detail::cp_async_commit();
    detail::cp_async_wait<1>();
    __syncthreads();
    if constexpr (MT == 1) {
      if (j == 0) {
#pragma unroll
        for (int kk = 0; kk < QREG; ++kk) {
          detail::ldmatrix_x4(qf[kk],
                              q_s + tile_off(warp * 16 + (lane & 15), kk * 2 + (lane >> 4)));
        }
      }
    }
    const int kb = j * BN;
    // Skip tiles whose keys all lie after every query row of this warp (causal), and warps
    // that hold only padding rows. Warp-uniform; the barriers stay outside.
    if (warp_live && kb <= wq_first + 16 * MT - 1) {
      // S = Q K^T for this warp's 16*MT rows and the tile's BN keys.
      float sc[MT][BN / 8][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int n = 0; n < BN / 8; ++n) sc[mt][n][0] = sc[mt][n][1] = sc[mt][n][2] = sc[mt][n][3] = 0.f;
      const std::uint32_t kt = k_s + buf * C::KVTileBytes;
#pragma unroll
      for (int kk = 0; kk < kHD / 16; ++kk) {
        std::uint32_t qa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          if constexpr (MT == 1) {
#pragma unroll
            for (int i = 0; i < 4; ++i) qa[mt][i] = qf[kk][i];
          } else {
            detail::ldmatrix_x4(qa[mt], q_s + tile_off((warp * MT + mt) * 16 + (lane & 15),
                                                       kk * 2 + (lane >> 4)));
          }
        }
#pragma unroll
        for (int np = 0; np < BN / 16; ++np) {
          std::uint32_t b[4];
          detail::ldmatrix_x4(b, kt + tile_off(np * 16 + (lane & 7) + ((lane >> 4) << 3),
                                               kk * 2 + ((lane >> 3) & 1)));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            detail::mma_bf16(sc[mt][2 * np], qa[mt], b[0], b[1]);
            detail::mma_bf16(sc[mt][2 * np + 1], qa[mt], b[2], b[3]);
          }
        }
      }
      // Causal mask (only tiles that cross this warp's diagonal), online softmax in the
      // log2 domain: p = 2^(s * scale - m), m the running max of s * scale.
      const bool need_mask = kb + BN - 1 > wq_first;
      std::uint32_t pa[MT][BN / 16][4];  // P as bf16 A fragments for the PV mma
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const int qpos0 = wq_first + mt * 16 + g, qpos1 = qpos0 + 8;
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int n = 0; n < BN / 8; ++n) {
          if (need_mask) {
            const int key = kb + n * 8 + 2 * tq;
            if (key > qpos0) sc[mt][n][0] = -INFINITY;
            if (key + 1 > qpos0) sc[mt][n][1] = -INFINITY;
            if (key > qpos1) sc[mt][n][2] = -INFINITY;
            if (key + 1 > qpos1) sc[mt][n][3] = -INFINITY;
          }
          mx0 = fmaxf(mx0, fmaxf(sc[mt][n][0], sc[mt][n][1]));
          mx1 = fmaxf(mx1, fmaxf(sc[mt][n][2], sc[mt][n][3]));
        }
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
          mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
          mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
        }
        const float mn0 = fmaxf(m_run[mt][0], mx0 * scale);
        const float mn1 = fmaxf(m_run[mt][1], mx1 * scale);
        const float mu0 = mn0 == -INFINITY ? 0.f : mn0, mu1 = mn1 == -INFINITY ? 0.f : mn1;
        const float alpha0 = detail::fast_exp2(m_run[mt][0] - mu0);
        const float alpha1 = detail::fast_exp2(m_run[mt][1] - mu1);
        m_run[mt][0] = mn0;
        m_run[mt][1] = mn1;
        float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
        for (int n = 0; n < BN / 8; ++n) {
          const float e0 = detail::fast_exp2(fmaf(sc[mt][n][0], scale, -mu0));
          const float e1 = detail::fast_exp2(fmaf(sc[mt][n][1], scale, -mu0));
          const float e2 = detail::fast_exp2(fmaf(sc[mt][n][2], scale, -mu1));
          const float e3 = detail::fast_exp2(fmaf(sc[mt][n][3], scale, -mu1));
          rs0 += e0 + e1;
          rs1 += e2 + e3;
          pa[mt][n >> 1][(n & 1) * 2 + 0] = detail::pack_bf16x2(e0, e1);
          pa[mt][n >> 1][(n & 1) * 2 + 1] = detail::pack_bf16x2(e2, e3);
        }
        l_run[mt][0] = l_run[mt][0] * alpha0 + rs0;
        l_run[mt][1] = l_run[mt][1] * alpha1 + rs1;
#pragma unroll
        for (int n = 0; n < kHD / 8; ++n) {
          o[mt][n][0] *= alpha0;
          o[mt][n][1] *= alpha0;
          o[mt][n][2] *= alpha1;
          o[mt][n][3] *= alpha1;
        }
      }
      // O += P V.
      const std::uint32_t vt = v_s + buf * C::KVTileBytes;
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
        for (int dp = 0; dp < kHD / 16; ++dp) {
          std::uint32_t b[4];
          detail::ldmatrix_x4_trans(b, vt + tile_off(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3),
                                                     dp * 2 + (lane >> 4)));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            detail::mma_bf16(o[mt][2 * dp], pa[mt][kk], b[0], b[1]);
            detail::mma_bf16(o[mt][2 * dp + 1], pa[mt][kk], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // the next iteration's loads overwrite this buffer
  }
  detail::cp_async_wait<0>();

#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      l_run[mt][0] += __shfl_xor_sync(0xffffffffu, l_run[mt][0], off);
      l_run[mt][1] += __shfl_xor_sync(0xffffffffu, l_run[mt][1], off);
    }
    const float inv0 = 1.f / l_run[mt][0], inv1 = 1.f / l_run[mt][1];
    const int row0 = wrow0 + mt * 16 + g;
    bf16* out0 = p.out + static_cast<std::size_t>(seq_start + row0) * p.ldo + h * kHD + 2 * tq;
    bf16* out1 = out0 + static_cast<std::size_t>(8) * p.ldo;
    const bool ok0 = row0 < len, ok1 = row0 + 8 < len;
#pragma unroll
    for (int n = 0; n < kHD / 8; ++n) {
      if (ok0) {
        *reinterpret_cast<std::uint32_t*>(out0 + n * 8) =
            detail::pack_bf16x2(o[mt][n][0] * inv0, o[mt][n][1] * inv0);
      }
      if (ok1) {
        *reinterpret_cast<std::uint32_t*>(out1 + n * 8) =
            detail::pack_bf16x2(o[mt][n][2] * inv1, o[mt][n][3] * inv1);
      }
    }
  }
}

template <class C>
void launch_prefill(const prefill_params& p, const batch_view& batch, int num_q_heads,
                    cudaStream_t stream, const std::string& shape) {
  static bool attr_set = false;  // one-time, not a stream operation (fine during capture)
  if (!attr_set) {
    PIECEWISE_CUDA_TRY_CTX(cudaFuncSetAttribute(attention_prefill_kernel<C>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                C::SmemBytes),
                           shape);
    attr_set = true;
  }
  const dim3 grid(num_q_heads, ceil_div(batch.max_seqlen, C::BM), batch.max_seqs);
  attention_prefill_kernel<C><<<grid, C::THREADS, C::SmemBytes, stream>>>(p);
  NH_CHECK_LAUNCH(shape);
}

// The shipped tile shape: 64 query rows (4 warps x 16 rows, Q fragments in registers) x 64
// keys. Measured on H100 at 1 x 4096 tokens, 9B heads (docs/kernels_dense.md): 617 us, against
// 626 us for 128 rows with MT = 2 (255 registers, 84 bytes spilled), 646 us for 128 rows with
// 8 warps (one block per SM by registers), 604-710 us for 32-key tiles (faster only at 4096).
using prefill_default_cfg = prefill_cfg<1, 4, 64>;

bool aligned16(const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; }

void require(bool cond, const std::string& what) {
  if (!cond) throw piecewise::config_error(what);
}

}  // namespace

void kv_cache_append(const kv_cache_view& cache, const bf16* k, const bf16* v, int ldkv,
                     const batch_view& batch, cudaStream_t stream) {
  const std::string shape = "kv_cache_append (padded_tokens=" + std::to_string(batch.padded_tokens) +
                            ", Hkv=" + std::to_string(cache.num_kv_heads) +
                            ", head_dim=" + std::to_string(cache.head_dim) + ")";
  require(cache.head_dim % 8 == 0 && ldkv % 8 == 0 &&
              ldkv >= cache.num_kv_heads * cache.head_dim,
          shape + ": head_dim and ldkv must be multiples of 8, ldkv >= Hkv*head_dim");
  require(aligned16(k) && aligned16(v) && aligned16(cache.k) && aligned16(cache.v),
          shape + ": pointers must be 16-byte aligned");
  if (batch.padded_tokens <= 0) return;
  const int chunks = static_cast<int>(cache.row_elems() / 8);
  const int threads = chunks >= 128 ? 128 : ((chunks + 31) / 32) * 32;
  kv_append_kernel<<<batch.padded_tokens, threads, 0, stream>>>(cache, k, v, ldkv, batch);
  NH_CHECK_LAUNCH(shape);
}

void attention_prefill(const bf16* q, int ldq, const bf16* k, const bf16* v, int ldkv,
                       const kv_cache_view& cache, const batch_view& batch, int num_q_heads,
                       bf16* out, int ldo, cudaStream_t stream, const prefill_options& opt) {
  const std::string shape =
      "attention_prefill (padded_tokens=" + std::to_string(batch.padded_tokens) +
      ", max_seqs=" + std::to_string(batch.max_seqs) + ", max_seqlen=" + std::to_string(batch.max_seqlen) +
      ", Hq=" + std::to_string(num_q_heads) + ", Hkv=" + std::to_string(cache.num_kv_heads) +
      ", head_dim=" + std::to_string(cache.head_dim) + ")";
  require(cache.head_dim == kHD, shape + ": only head_dim 128 is implemented");
  require(cache.num_kv_heads > 0 && num_q_heads % cache.num_kv_heads == 0,
          shape + ": Hq must be a multiple of Hkv");
  require(ldq % 8 == 0 && ldo % 8 == 0 && ldq >= num_q_heads * kHD && ldo >= num_q_heads * kHD,
          shape + ": ldq/ldo must be multiples of 8 and >= Hq*head_dim");
  require(aligned16(q) && aligned16(out), shape + ": q and out must be 16-byte aligned");
  require(opt.stages == 0 || (opt.stages >= detail::kPrefillSm90MinStages &&
                               opt.stages <= detail::kPrefillSm90MaxStages),
          shape + ": stages must be 0 (default), 2 or 3");
  require(opt.pingpong >= -1 && opt.pingpong <= 1 && opt.persistent >= -1 && opt.persistent <= 1,
          shape + ": pingpong and persistent must be -1 (default), 0 or 1");
  const bool sm90 = opt.kernel != prefill_kernel::mma_sync && detail::prefill_sm90_supported();
  require(sm90 || opt.kernel != prefill_kernel::wgmma,
          shape + ": the wgmma kernel needs a compute capability 9.0 device");
  kv_cache_append(cache, k, v, ldkv, batch, stream);
  if (batch.max_seqs <= 0 || batch.max_seqlen <= 0) return;
  if (sm90) {
    detail::prefill_sm90_args a;
    a.q = q;
    a.ldq = ldq;
    a.cache = cache;
    a.batch = batch;
    a.num_q_heads = num_q_heads;
    a.out = out;
    a.ldo = ldo;
    detail::attention_prefill_sm90(
        a, opt.stages == 0 ? detail::kPrefillSm90DefaultStages : opt.stages,
        opt.pingpong < 0 ? detail::kPrefillSm90DefaultPingpong : opt.pingpong == 1,
        opt.persistent < 0 ? detail::kPrefillSm90DefaultPersistent : opt.persistent == 1, stream,
        shape);
    return;
  }
  prefill_params p{};
  p.q = q;
  p.ldq = ldq;
  p.cache = cache;
  p.batch = batch;
  p.num_q_heads = num_q_heads;
  p.group = num_q_heads / cache.num_kv_heads;
  p.out = out;
  p.ldo = ldo;
  p.scale_log2 = 1.4426950408889634f / sqrtf(static_cast<float>(kHD));
  launch_prefill<prefill_default_cfg>(p, batch, num_q_heads, stream, shape);
}

}  // namespace nemotron_h
