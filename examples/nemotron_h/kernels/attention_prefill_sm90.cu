// Causal GQA prefill attention for Hopper (sm_90a), FlashAttention-3 style (see
// attention_prefill_sm90.cuh). Built for sm_90a only (kernels/dense.cmake).
//
// Work items (query head, 128-row query tile, sequence), longest tiles first; one block per
// item, or (persistent) one block per SM walking several items, its producer loading the next
// item's Q and K/V while the consumers finish the current one. 3 warpgroups per block:
//  - warpgroup 0 (producer, 40 registers): one thread issues TMA loads of the Q tile and of
//    the 128-key K/V tiles of the slot's cache rows into a STAGES-deep shared-memory ring,
//    full/empty mbarriers per stage;
//  - warpgroups 1 and 2 (consumers, up to 232 registers): 64 query rows each. S = Q K^T with wgmma
//    (Q and K from shared memory, K-major), online softmax in fp32 registers (exp2, scale
//    folded into the FFMA), O += P V with wgmma (P from registers as the A operand, V from
//    shared memory MN-major). The PV product of tile j-1 is issued together with QK^T of
//    tile j and runs while tile j's softmax does (FA3's intra-warpgroup overlap).
// Causal masking only on tiles that cross the warpgroup's diagonal. Keys past the sequence's
// last position (the tile overhangs it; those cache rows may hold anything, NaN included) are
// masked in S, and their V rows are zeroed in shared memory before the last PV product.
#include "kernels/attention_prefill_sm90.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "kernels/hopper.cuh"
#include "kernels/tensor_core.cuh"

namespace nemotron_h::detail {

namespace {

using namespace hopper;

constexpr int kHD = 128, kBM = 128, kBN = 128, kThreads = 384;
constexpr int kQBytes = kBM * kHD * 2;    // 32 KB: two 64-column halves
constexpr int kHalfQ = kBM * 128;         // one half: 128 rows x 128 bytes
constexpr int kKVBytes = kBN * kHD * 2;   // one K or V tile
constexpr int kHalfKV = kBN * 128;
constexpr int kConsumerWarps = 8;

template <int STAGES>
struct sm90_layout {
  static constexpr int kStageBytes = 2 * kKVBytes;  // K then V
  static constexpr int kBarOff = kQBytes + STAGES * kStageBytes;
  static constexpr int kBytes = kBarOff + (2 + 2 * STAGES) * 8 + 1024;  // + 1024-B alignment slack
};

struct sm90_params {
  batch_view batch;
  int num_q_heads;
  int max_seqs;    // batch.max_seqs
  int q_tiles;     // ceil(batch.max_seqlen / 128)
  int work_items;  // num_q_heads * max_seqs * q_tiles
  int max_context;
  int group;  // Hq / Hkv
  bf16* out;
  int ldo;
  float scale_log2;  // log2(e) / sqrt(hd)
};

__device__ inline void st_shared_zero16(std::uint32_t addr) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(addr), "r"(0) : "memory");
}

// One unit of work: (query head, 128-row query tile, sequence).
struct work_tile {
  int seq_start, len, q0, h, ctx, slot, total, n_tiles;
};

// Work item v of the virtual grid Hq x max_seqs x ceil(max_seqlen / 128): the head varies
// fastest (heads sharing a KV head read the same K/V rows at about the same time), then the
// sequence, then the query tile, last (longest) tiles first. False when v is surplus (a
// sequence or tile past this step's real ones).
__device__ inline bool decode_work(const sm90_params& p, int v, work_tile& w) {
  w.h = v % p.num_q_heads;
  const int r = v / p.num_q_heads;
  const int s = r % p.max_seqs;
  const int y = r / p.max_seqs;
  if (s >= *p.batch.num_seqs) return false;
  w.seq_start = p.batch.cu_seqlens[s];
  w.len = p.batch.cu_seqlens[s + 1] - w.seq_start;
  w.q0 = (p.q_tiles - 1 - y) * kBM;
  if (w.q0 >= w.len) return false;
  w.ctx = p.batch.context_lens[s];
  w.slot = p.batch.slots[s];
  w.total = w.ctx + w.len;
  const int last_key = min(w.ctx + w.q0 + kBM - 1, w.total - 1);
  w.n_tiles = last_key / kBN + 1;
  return true;
}

// Work item of this block in round k: blocks take items k * gridDim.x + blockIdx.x, in
// reverse block order on odd rounds (serpentine), so a persistent block that got one of the
// longest tiles in round k gets one of the shortest of its neighbours in round k + 1. With
// one block per work item (gridDim.x == the virtual grid) this is simply blockIdx.x.
__device__ inline int work_index(int k) {
  const int b = (k & 1) ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
  return k * gridDim.x + b;
}

template <int STAGES, bool PINGPONG>
__global__ void __launch_bounds__(kThreads, 1)
    prefill_sm90_kernel(const __grid_constant__ CUtensorMap tm_q,
                        const __grid_constant__ CUtensorMap tm_k,
                        const __grid_constant__ CUtensorMap tm_v, const sm90_params p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using L = sm90_layout<STAGES>;
  extern __shared__ unsigned char smem_raw[];
  const std::uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const std::uint32_t q_s = base;
  const std::uint32_t kv_s = base + kQBytes;  // stage st: K at kv_s + st * kStageBytes, V after it
  const std::uint32_t q_full = base + L::kBarOff, q_empty = q_full + 8;
  const std::uint32_t full0 = q_empty + 8, empty0 = full0 + 8 * STAGES;
  const int rounds = ceil_div(p.work_items, gridDim.x);

  if (threadIdx.x == 0) {
    mbar_init(q_full, 1);
    mbar_init(q_empty, kConsumerWarps);
#pragma unroll
    for (int st = 0; st < STAGES; ++st) {
      mbar_init(full0 + 8 * st, 1);
      mbar_init(empty0 + 8 * st, kConsumerWarps);
    }
    mbar_fence_init();
  }
  __syncthreads();

  // Barrier phases run on across this block's work items: `it` counts the K/V tiles loaded
  // (stage it % STAGES, use it / STAGES), `wq` the work items (Q buffer uses).
  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    // ---- producer ----
    setmaxnreg_dec<40>();
    if (threadIdx.x == 0) {
      tma_prefetch_desc(&tm_k);
      tma_prefetch_desc(&tm_v);
      int it = 0, wq = 0;
      for (int k = 0; k < rounds; ++k) {
        const int v = work_index(k);
        work_tile w;
        if (v >= p.work_items || !decode_work(p, v, w)) continue;
        if (wq > 0) mbar_wait(q_empty, (wq - 1) & 1);  // the consumers' last QK^T of the last item
        mbar_arrive_expect_tx(q_full, kQBytes);
        tma_load_2d(q_s, &tm_q, q_full, w.h * kHD, w.seq_start + w.q0);
        tma_load_2d(q_s + kHalfQ, &tm_q, q_full, w.h * kHD + 64, w.seq_start + w.q0);
        ++wq;
        const int row0 = w.slot * p.max_context, col = (w.h / p.group) * kHD;
        for (int j = 0; j < w.n_tiles; ++j, ++it) {
          const int st = it % STAGES, u = it / STAGES;
          if (u > 0) mbar_wait(empty0 + 8 * st, (u - 1) & 1);
          const std::uint32_t kd = kv_s + st * L::kStageBytes, vd = kd + kKVBytes;
          const std::uint32_t bar = full0 + 8 * st;
          mbar_arrive_expect_tx(bar, 2 * kKVBytes);
          const int row = row0 + j * kBN;
          tma_load_2d(kd, &tm_k, bar, col, row);
          tma_load_2d(kd + kHalfKV, &tm_k, bar, col + 64, row);
          tma_load_2d(vd, &tm_v, bar, col, row);
          tma_load_2d(vd + kHalfKV, &tm_v, bar, col + 64, row);
        }
      }
    }
    return;
  }

  // ---- consumers ----
  setmaxnreg_inc<232>();
  const int c = wg - 1;
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = 64 * c + 16 * warp + g;  // tile-local query row of sc[4j + 0/1]; +8 for 2/3
  const float scale = p.scale_log2;
  const std::uint32_t qa = q_s + c * 64 * 128;
  auto release = [&](std::uint32_t bar) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
  };

  int it = 0, wq = 0;
  for (int k = 0; k < rounds; ++k) {
    const int v = work_index(k);
    work_tile w;
    if (v >= p.work_items || !decode_work(p, v, w)) continue;
    const int qpos0 = w.ctx + w.q0 + row0, qpos1 = qpos0 + 8;
    const int wg_first = w.ctx + w.q0 + 64 * c;  // smallest key position this warpgroup's rows see
    const int n_tiles = w.n_tiles;

    float o[64], sc[64];
    std::uint32_t pf[kBN / 16][4];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

    auto issue_qk = [&](int st) {
      const std::uint32_t kt = kv_s + st * L::kStageBytes;
#pragma unroll
      for (int kk = 0; kk < kHD / 16; ++kk) {
        const std::uint32_t off = (kk >> 2) * kHalfQ + (kk & 3) * 32;
        const std::uint32_t koff = (kk >> 2) * kHalfKV + (kk & 3) * 32;
        wgmma_m64n128k16_ss(sc, smem_desc_sw128(qa + off, 16, 1024),
                            smem_desc_sw128(kt + koff, 16, 1024), kk > 0);
      }
    };
    auto issue_pv = [&](int st) {
      const std::uint32_t vt = kv_s + st * L::kStageBytes + kKVBytes;
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk)
        wgmma_m64n128k16_rs_tb(o, pf[kk], smem_desc_sw128(vt + kk * 16 * 128, kHalfKV, 1024));
    };
    // Masks S of the tile at key kb, updates the running max and leaves p = 2^(s*scale - m)
    // in sc; returns the rescale factors of the old O / l and this tile's partial row sums.
    auto softmax = [&](int kb, float& alpha0, float& alpha1, float& rs0, float& rs1) {
      if (kb + kBN - 1 > wg_first) {
#pragma unroll
        for (int j = 0; j < kBN / 8; ++j) {
          const int key = kb + 8 * j + 2 * t;
          if (key > qpos0) sc[4 * j + 0] = -INFINITY;
          if (key + 1 > qpos0) sc[4 * j + 1] = -INFINITY;
          if (key > qpos1) sc[4 * j + 2] = -INFINITY;
          if (key + 1 > qpos1) sc[4 * j + 3] = -INFINITY;
        }
      }
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        mx0 = fmaxf(mx0, fmaxf(sc[4 * j + 0], sc[4 * j + 1]));
        mx1 = fmaxf(mx1, fmaxf(sc[4 * j + 2], sc[4 * j + 3]));
      }
#pragma unroll
      for (int off = 1; off <= 2; off <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
      }
      const float mn0 = fmaxf(m0, mx0 * scale), mn1 = fmaxf(m1, mx1 * scale);
      const float mu0 = mn0 == -INFINITY ? 0.f : mn0, mu1 = mn1 == -INFINITY ? 0.f : mn1;
      alpha0 = fast_exp2(m0 - mu0);
      alpha1 = fast_exp2(m1 - mu1);
      m0 = mn0;
      m1 = mn1;
      rs0 = 0.f;
      rs1 = 0.f;
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        sc[4 * j + 0] = fast_exp2(fmaf(sc[4 * j + 0], scale, -mu0));
        sc[4 * j + 1] = fast_exp2(fmaf(sc[4 * j + 1], scale, -mu0));
        sc[4 * j + 2] = fast_exp2(fmaf(sc[4 * j + 2], scale, -mu1));
        sc[4 * j + 3] = fast_exp2(fmaf(sc[4 * j + 3], scale, -mu1));
        rs0 += sc[4 * j + 0] + sc[4 * j + 1];
        rs1 += sc[4 * j + 2] + sc[4 * j + 3];
      }
    };
    auto rescale_and_pack = [&](float alpha0, float alpha1, float rs0, float rs1) {
      l0 = l0 * alpha0 + rs0;
      l1 = l1 * alpha1 + rs1;
#pragma unroll
      for (int j = 0; j < kHD / 8; ++j) {
        o[4 * j + 0] *= alpha0;
        o[4 * j + 1] *= alpha0;
        o[4 * j + 2] *= alpha1;
        o[4 * j + 3] *= alpha1;
      }
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        pf[kk][0] = pack_bf16x2(sc[8 * kk + 0], sc[8 * kk + 1]);
        pf[kk][1] = pack_bf16x2(sc[8 * kk + 2], sc[8 * kk + 3]);
        pf[kk][2] = pack_bf16x2(sc[8 * kk + 4], sc[8 * kk + 5]);
        pf[kk][3] = pack_bf16x2(sc[8 * kk + 6], sc[8 * kk + 7]);
      }
    };

    mbar_wait(q_full, wq & 1);
    float a0, a1, r0, r1;
    mbar_wait(full0 + 8 * (it % STAGES), (it / STAGES) & 1);
    wgmma_fence();
    issue_qk(it % STAGES);
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(sc);
    softmax(0, a0, a1, r0, r1);
    rescale_and_pack(a0, a1, r0, r1);
    // Ping-pong (PINGPONG): the two consumer warpgroups take turns issuing their MMAs (named
    // barriers 3 and 4, 256 threads: one warpgroup syncs, the other arrives), so one
    // warpgroup's softmax runs while the other's MMAs occupy the tensor cores. Consumer 1
    // opens the first turn for consumer 0 and skips the arrival of its last iteration, so
    // every barrier phase of a work item gets exactly 128 syncing and 128 arriving threads.
    if constexpr (PINGPONG) {
      if (c == 1 && n_tiles > 1) named_barrier_arrive(3, 256);
    }
    for (int j = 1; j < n_tiles; ++j) {
      const int cur = it + j;
      const int st = cur % STAGES, prev = (cur - 1) % STAGES;
      mbar_wait(full0 + 8 * st, (cur / STAGES) & 1);
      if constexpr (PINGPONG) named_barrier_sync(3 + c, 256);
      wgmma_fence();
      issue_qk(st);
      wgmma_commit();
      issue_pv(prev);
      wgmma_commit();
      if constexpr (PINGPONG) {
        if (c == 0 || j + 1 < n_tiles) named_barrier_arrive(4 - c, 256);
      }
      wgmma_wait<1>();  // S of tile j
      fence_operands(sc);
      softmax(j * kBN, a0, a1, r0, r1);
      wgmma_wait<0>();  // O += P V of tile j-1
      fence_operands(o);
      fence_operands(pf);
      release(empty0 + 8 * prev);  // tile j-1's K/V are no longer read
      rescale_and_pack(a0, a1, r0, r1);
    }
    release(q_empty);  // every QK^T of this item has completed: the producer may load the next Q
    const int last = (it + n_tiles - 1) % STAGES, kb_last = (n_tiles - 1) * kBN;
    if (kb_last + kBN > w.total) {
      // Zero the V rows past the sequence's end (P is 0 there, but 0 * NaN is not 0). Both
      // consumer warpgroups write the same zeros; each waits only for its own writes. The
      // proxy fence also orders these writes before the stage's next TMA load.
      const std::uint32_t vt = kv_s + last * L::kStageBytes + kKVBytes;
      const int zr = w.total - kb_last;  // first row to zero, >= 1
      for (int i = threadIdx.x % 128; i < (kBN - zr) * 16; i += 128) {
        const int r = zr + i / 16, ch = i % 16;
        st_shared_zero16(vt + (ch >> 3) * kHalfKV + r * 128 + (ch & 7) * 16);
      }
      fence_proxy_async();
      named_barrier_sync(1 + c, 128);
    }
    wgmma_fence();
    issue_pv(last);
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(o);
    fence_operands(pf);
    release(empty0 + 8 * last);
    it += n_tiles;
    ++wq;

#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      l0 += __shfl_xor_sync(0xffffffffu, l0, off);
      l1 += __shfl_xor_sync(0xffffffffu, l1, off);
    }
    const float inv0 = 1.f / l0, inv1 = 1.f / l1;
    const int lrow0 = w.q0 + row0;  // sequence-local row
    bf16* out0 = p.out + static_cast<std::size_t>(w.seq_start + lrow0) * p.ldo + w.h * kHD + 2 * t;
    bf16* out1 = out0 + static_cast<std::size_t>(8) * p.ldo;
    const bool ok0 = lrow0 < w.len, ok1 = lrow0 + 8 < w.len;
#pragma unroll
    for (int j = 0; j < kHD / 8; ++j) {
      if (ok0)
        *reinterpret_cast<std::uint32_t*>(out0 + 8 * j) =
            pack_bf16x2(o[4 * j + 0] * inv0, o[4 * j + 1] * inv0);
      if (ok1)
        *reinterpret_cast<std::uint32_t*>(out1 + 8 * j) =
            pack_bf16x2(o[4 * j + 2] * inv1, o[4 * j + 3] * inv1);
    }
  }
#else
  __trap();  // built for a target without wgmma: the host never launches this
#endif
}

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    const cudaError_t e =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || f == nullptr) {
      (void)cudaGetLastError();
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// 2-D bf16 tensor map over [rows][cols] with a row stride in bytes; 64-column x box_rows boxes,
// 128-byte swizzle (the wgmma layout), zero fill outside.
CUtensorMap make_map(const void* base, std::uint64_t cols, std::uint64_t rows,
                     std::uint64_t row_stride_bytes, std::uint32_t box_rows,
                     const std::string& what) {
  const auto fn = encode_fn();
  if (fn == nullptr)
    throw piecewise::config_error(what + ": the driver has no cuTensorMapEncodeTiled");
  CUtensorMap m{};
  const cuuint64_t dims[2] = {cols, rows};
  const cuuint64_t strides[1] = {row_stride_bytes};
  const cuuint32_t box[2] = {64, box_rows};
  const cuuint32_t estr[2] = {1, 1};
  const CUresult r = fn(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(base), dims,
                        strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                        CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw piecewise::config_error(what + ": cuTensorMapEncodeTiled failed (error " +
                                  std::to_string(static_cast<int>(r)) + ")");
  return m;
}

// make_map with a small per-thread cache (the model calls prefill with the same few buffers
// every step; encoding costs host time inside the launch sequence).
CUtensorMap cached_map(const void* base, std::uint64_t cols, std::uint64_t rows,
                       std::uint64_t row_stride_bytes, std::uint32_t box_rows,
                       const std::string& what) {
  struct entry {
    const void* base = nullptr;
    std::uint64_t cols = 0, rows = 0, stride = 0;
    std::uint32_t box = 0;
    CUtensorMap map{};
  };
  constexpr int kEntries = 16;
  thread_local entry cache[kEntries];
  thread_local int next = 0;
  for (const entry& e : cache)
    if (e.base == base && e.base != nullptr && e.cols == cols && e.rows == rows &&
        e.stride == row_stride_bytes && e.box == box_rows)
      return e.map;
  entry& e = cache[next];
  e.map = make_map(base, cols, rows, row_stride_bytes, box_rows, what);
  e.base = base;
  e.cols = cols;
  e.rows = rows;
  e.stride = row_stride_bytes;
  e.box = box_rows;
  next = (next + 1) % kEntries;
  return e.map;
}

template <int STAGES, bool PINGPONG>
void launch(const CUtensorMap& tq, const CUtensorMap& tk, const CUtensorMap& tv,
            const sm90_params& p, int blocks, cudaStream_t stream, const std::string& shape) {
  using L = sm90_layout<STAGES>;
  static std::once_flag attr;  // one-time, not a stream operation (fine during capture)
  std::call_once(attr, [&] {
    PIECEWISE_CUDA_TRY_CTX(cudaFuncSetAttribute(prefill_sm90_kernel<STAGES, PINGPONG>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                L::kBytes),
                           shape);
  });
  prefill_sm90_kernel<STAGES, PINGPONG><<<blocks, kThreads, L::kBytes, stream>>>(tq, tk, tv, p);
  NH_CHECK_LAUNCH(shape);
}

}  // namespace

bool prefill_sm90_supported() {
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
    cached[dev] = ok && major == 9 && minor == 0 && encode_fn() != nullptr ? 1 : 2;
  }
  return cached[dev] == 1;
}

void attention_prefill_sm90(const prefill_sm90_args& a, int stages, bool pingpong,
                            bool persistent, cudaStream_t stream, const std::string& shape) {
  if (stages < kPrefillSm90MinStages || stages > kPrefillSm90MaxStages)
    throw piecewise::config_error(shape + ": sm90 prefill stages must be 2 or 3, got " +
                                  std::to_string(stages));
  if (a.batch.max_seqs <= 0 || a.batch.max_seqlen <= 0 || a.batch.padded_tokens <= 0) return;
  const kv_cache_view& kc = a.cache;
  const std::uint64_t kv_rows = static_cast<std::uint64_t>(kc.num_slots) * kc.max_context;
  const std::uint64_t kv_cols = kc.row_elems();
  const CUtensorMap tq = cached_map(a.q, static_cast<std::uint64_t>(a.num_q_heads) * kHD,
                                  a.batch.padded_tokens, static_cast<std::uint64_t>(a.ldq) * 2,
                                  kBM, shape);
  const CUtensorMap tk = cached_map(kc.k, kv_cols, kv_rows, kv_cols * 2, kBN, shape);
  const CUtensorMap tv = cached_map(kc.v, kv_cols, kv_rows, kv_cols * 2, kBN, shape);
  sm90_params p{};
  p.batch = a.batch;
  p.num_q_heads = a.num_q_heads;
  p.max_seqs = a.batch.max_seqs;
  p.q_tiles = ceil_div(a.batch.max_seqlen, kBM);
  const long long items = static_cast<long long>(a.num_q_heads) * p.max_seqs * p.q_tiles;
  if (items > (1ll << 30))
    throw piecewise::config_error(shape + ": too many query tiles for one launch");
  p.work_items = static_cast<int>(items);
  // One block per SM holds (shared memory, registers); a persistent grid has exactly one per
  // SM, each walking its share of the work items.
  const int blocks = persistent ? std::min(p.work_items, multiprocessors()) : p.work_items;
  p.max_context = kc.max_context;
  p.group = a.num_q_heads / kc.num_kv_heads;
  p.out = a.out;
  p.ldo = a.ldo;
  p.scale_log2 = 1.4426950408889634f / sqrtf(static_cast<float>(kHD));
  if (stages == 2)
    pingpong ? launch<2, true>(tq, tk, tv, p, blocks, stream, shape)
             : launch<2, false>(tq, tk, tv, p, blocks, stream, shape);
  else
    pingpong ? launch<3, true>(tq, tk, tv, p, blocks, stream, shape)
             : launch<3, false>(tq, tk, tv, p, blocks, stream, shape);
}

}  // namespace nemotron_h::detail
