// Causal GQA prefill attention with cached prefixes, and the KV-cache append (see
// attention_prefill.cuh, kv_cache.cuh).
#include "kernels/attention_prefill.cuh"

#include <cstdint>
#include <string>

#include "kernels/attention_common.cuh"

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

constexpr int kHD = 128;       // head dim
constexpr int kBN = 64;        // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kKVTileBytes = kBN * kHD * 2;  // 16 KiB

// Query rows per block: each warp owns MT m16 tiles, so every K/V fragment it loads from
// shared memory feeds MT mma's.
template <int MT>
struct prefill_cfg {
  static constexpr int BM = 16 * MT * kWarps;
  static constexpr int QBytes = BM * kHD * 2;
  static constexpr int SmemBytes = QBytes + 4 * kKVTileBytes;  // Q + 2 x K + 2 x V
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

// Loads `rows` rows of a [rows][128] tile (row i valid when i < valid_rows, else zero-filled).
template <int ROWS>
__device__ inline void load_tile(std::uint32_t dst, const bf16* src, std::size_t stride,
                                 int valid_rows) {
#pragma unroll
  for (int i = 0; i < (ROWS * 16) / kThreads; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    const int r = idx >> 4, c = idx & 15;
    const bool ok = r < valid_rows;
    const bf16* p = src + (ok ? static_cast<std::size_t>(r) * stride : 0) + c * 8;
    cp_async16(dst + tile_off(r, c), p, ok);
  }
}

// grid (query tile, query head, sequence). MT == 1 keeps the warp's Q fragments in
// registers; MT == 2 re-reads them from shared memory (register budget).
template <int MT>
__global__ void __launch_bounds__(kThreads)
    attention_prefill_kernel(const prefill_params p) {
  using cfg = prefill_cfg<MT>;
  constexpr int BM = cfg::BM;
  extern __shared__ __align__(128) unsigned char smem[];
  const int s = blockIdx.z;
  if (s >= *p.batch.num_seqs) return;
  const int seq_start = p.batch.cu_seqlens[s];
  const int len = p.batch.cu_seqlens[s + 1] - seq_start;
  const int tile = gridDim.x - 1 - blockIdx.x;  // long (late) tiles first
  const int q0 = tile * BM;
  if (q0 >= len) return;
  const int h = blockIdx.y;
  const int kh = h / p.group;
  const int ctx = p.batch.context_lens[s];
  const int slot = p.batch.slots[s];
  const int total = ctx + len;
  const int last_key = min(ctx + q0 + BM - 1, total - 1);
  const int n_tiles = last_key / kBN + 1;

  const std::uint32_t q_s = smem_addr(smem);
  const std::uint32_t k_s = q_s + cfg::QBytes;               // two buffers
  const std::uint32_t v_s = k_s + 2 * kKVTileBytes;          // two buffers
  const std::size_t kv_stride = p.cache.row_elems();
  const bf16* k_base = p.cache.k + p.cache.offset(slot, 0, kh);
  const bf16* v_base = p.cache.v + p.cache.offset(slot, 0, kh);

  load_tile<BM>(q_s, p.q + static_cast<std::size_t>(seq_start + q0) * p.ldq + h * kHD, p.ldq,
                len - q0);
  load_tile<kBN>(k_s, k_base, kv_stride, total);
  load_tile<kBN>(v_s, v_base, kv_stride, total);
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
  float m_run[MT][2], l_run[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    m_run[mt][0] = m_run[mt][1] = -INFINITY;
    l_run[mt][0] = l_run[mt][1] = 0.f;
  }
  const int wrow0 = q0 + warp * 16 * MT;  // first sequence-local query row of this warp

  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j & 1;
    if (j + 1 < n_tiles) {
      const int kb = (j + 1) * kBN;
      load_tile<kBN>(k_s + (buf ^ 1) * kKVTileBytes,
                     k_base + static_cast<std::size_t>(kb) * kv_stride, kv_stride, total - kb);
      load_tile<kBN>(v_s + (buf ^ 1) * kKVTileBytes,
                     v_base + static_cast<std::size_t>(kb) * kv_stride, kv_stride, total - kb);
    }
    detail::cp_async_commit();
    detail::cp_async_wait<1>();
    __syncthreads();
    if (MT == 1 && j == 0) {
#pragma unroll
      for (int kk = 0; kk < QREG; ++kk) {
        detail::ldmatrix_x4(qf[kk], q_s + tile_off(warp * 16 + (lane & 15), kk * 2 + (lane >> 4)));
      }
    }
    // S = Q K^T for this warp's 16*MT rows and the tile's 64 keys.
    float sc[MT][kBN / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) sc[mt][n][0] = sc[mt][n][1] = sc[mt][n][2] = sc[mt][n][3] = 0.f;
    const std::uint32_t kt = k_s + buf * kKVTileBytes;
#pragma unroll
    for (int kk = 0; kk < kHD / 16; ++kk) {
      std::uint32_t qa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (MT == 1) {
#pragma unroll
          for (int i = 0; i < 4; ++i) qa[mt][i] = qf[MT == 1 ? kk : 0][i];
        } else {
          detail::ldmatrix_x4(qa[mt], q_s + tile_off((warp * MT + mt) * 16 + (lane & 15),
                                                     kk * 2 + (lane >> 4)));
        }
      }
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {
        std::uint32_t b[4];
        detail::ldmatrix_x4(
            b, kt + tile_off(np * 16 + (lane & 7) + ((lane >> 4) << 3), kk * 2 + ((lane >> 3) & 1)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          detail::mma_bf16(sc[mt][2 * np], qa[mt], b[0], b[1]);
          detail::mma_bf16(sc[mt][2 * np + 1], qa[mt], b[2], b[3]);
        }
      }
    }
    // Scale (log2 domain), causal + length mask, online softmax.
    const int kb = j * kBN;
    const bool need_mask = (kb + kBN - 1 > ctx + wrow0) || (kb + kBN > total);
    float alpha[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const int qpos0 = ctx + wrow0 + mt * 16 + g, qpos1 = qpos0 + 8;
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = sc[mt][n][e] * p.scale_log2;
          if (need_mask) {
            const int key = kb + n * 8 + 2 * tq + (e & 1);
            const int qp = e < 2 ? qpos0 : qpos1;
            if (key > qp || key >= total) x = -INFINITY;
          }
          sc[mt][n][e] = x;
        }
        mx0 = fmaxf(mx0, fmaxf(sc[mt][n][0], sc[mt][n][1]));
        mx1 = fmaxf(mx1, fmaxf(sc[mt][n][2], sc[mt][n][3]));
      }
#pragma unroll
      for (int off = 1; off <= 2; off <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
      }
      const float mn0 = fmaxf(m_run[mt][0], mx0), mn1 = fmaxf(m_run[mt][1], mx1);
      const float mu0 = mn0 == -INFINITY ? 0.f : mn0, mu1 = mn1 == -INFINITY ? 0.f : mn1;
      alpha[mt][0] = exp2f(m_run[mt][0] - mu0);
      alpha[mt][1] = exp2f(m_run[mt][1] - mu1);
      m_run[mt][0] = mn0;
      m_run[mt][1] = mn1;
      float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
      for (int n = 0; n < kBN / 8; ++n) {
        sc[mt][n][0] = exp2f(sc[mt][n][0] - mu0);
        sc[mt][n][1] = exp2f(sc[mt][n][1] - mu0);
        sc[mt][n][2] = exp2f(sc[mt][n][2] - mu1);
        sc[mt][n][3] = exp2f(sc[mt][n][3] - mu1);
        rs0 += sc[mt][n][0] + sc[mt][n][1];
        rs1 += sc[mt][n][2] + sc[mt][n][3];
      }
      l_run[mt][0] = l_run[mt][0] * alpha[mt][0] + rs0;
      l_run[mt][1] = l_run[mt][1] * alpha[mt][1] + rs1;
#pragma unroll
      for (int n = 0; n < kHD / 8; ++n) {
        o[mt][n][0] *= alpha[mt][0];
        o[mt][n][1] *= alpha[mt][0];
        o[mt][n][2] *= alpha[mt][1];
        o[mt][n][3] *= alpha[mt][1];
      }
    }
    // O += P V.
    const std::uint32_t vt = v_s + buf * kKVTileBytes;
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      std::uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        a[mt][0] = detail::pack_bf16x2(sc[mt][2 * kk][0], sc[mt][2 * kk][1]);
        a[mt][1] = detail::pack_bf16x2(sc[mt][2 * kk][2], sc[mt][2 * kk][3]);
        a[mt][2] = detail::pack_bf16x2(sc[mt][2 * kk + 1][0], sc[mt][2 * kk + 1][1]);
        a[mt][3] = detail::pack_bf16x2(sc[mt][2 * kk + 1][2], sc[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < kHD / 16; ++dp) {
        std::uint32_t b[4];
        detail::ldmatrix_x4_trans(
            b, vt + tile_off(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), dp * 2 + (lane >> 4)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          detail::mma_bf16(o[mt][2 * dp], a[mt], b[0], b[1]);
          detail::mma_bf16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
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

template <int MT>
void launch_prefill(const prefill_params& p, const batch_view& batch, int num_q_heads,
                    cudaStream_t stream, const std::string& shape) {
  using cfg = prefill_cfg<MT>;
  static bool attr_set = false;  // one-time, not a stream operation (fine during capture)
  if (!attr_set) {
    PIECEWISE_CUDA_TRY_CTX(cudaFuncSetAttribute(attention_prefill_kernel<MT>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                cfg::SmemBytes),
                           shape);
    attr_set = true;
  }
  const dim3 grid(ceil_div(batch.max_seqlen, cfg::BM), num_q_heads, batch.max_seqs);
  attention_prefill_kernel<MT><<<grid, kThreads, cfg::SmemBytes, stream>>>(p);
  NH_CHECK_LAUNCH(shape);
}

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
                       bf16* out, int ldo, cudaStream_t stream) {
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
  kv_cache_append(cache, k, v, ldkv, batch, stream);
  if (batch.max_seqs <= 0 || batch.max_seqlen <= 0) return;
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
  // 64 query rows per block (MT = 1). MT = 2 (128 rows, Q re-read from shared memory) is
  // slower on H100 (802 vs 686 us at 4096 tokens, 9B heads): 255 registers with spills.
  launch_prefill<1>(p, batch, num_q_heads, stream, shape);
}

}  // namespace nemotron_h
