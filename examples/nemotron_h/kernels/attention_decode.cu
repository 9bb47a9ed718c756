// Split-context GQA decode attention (see attention_decode.cuh).
#include "kernels/attention_decode.cuh"

#include <cstdint>
#include <string>

#include "kernels/tensor_core.cuh"

namespace nemotron_h {

namespace {

constexpr int kHD = 128;
constexpr int kChunk = kDecodeSplitKeys;  // keys per block
constexpr int kThreads = 256;
constexpr int kMaxGroup = 8;
constexpr int kQStride = 12;  // floats per 8-dim chunk of q in smem (8 + 4 pad: no conflicts)
constexpr int kTileBytes = kChunk * kHD * 2;  // 32 KiB
constexpr int kSmemBytes = 2 * kTileBytes + kMaxGroup * 16 * kQStride * 4 + kMaxGroup * kChunk * 4;

struct decode_params {
  const bf16* q;
  int ldq;
  kv_cache_view cache;
  batch_view batch;
  int group;
  int num_q_heads;
  int max_splits;
  float scale;
  float* o_part;  // [max_seqs][max_splits][Hq][kHD]
  float* ml;      // [max_seqs][max_splits][Hq][2]
};

// grid (kv head, split, seq): the Hkv blocks of one split read complementary 256-byte
// pieces of the same cache rows back to back (DRAM locality). Stages its 128 keys of K and V in shared memory with cp.async
// (all loads in flight at once), computes the scores of the group's query heads, a local
// softmax, and P V; writes the unnormalized partial output with its (max, sum).
__global__ void __launch_bounds__(kThreads) attention_decode_split_kernel(const decode_params p) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int s = blockIdx.z;
  if (s >= *p.batch.num_seqs) return;
  const int end = p.batch.cu_seqlens[s + 1];
  const int len = end - p.batch.cu_seqlens[s];
  if (len < 1) return;
  const int ctx = p.batch.context_lens[s];
  const int total = ctx + len;  // keys visible to the last token
  const int k0 = blockIdx.y * kChunk;
  if (k0 >= total) return;
  const int nk = min(kChunk, total - k0);
  const int kh = blockIdx.x;
  const int slot = p.batch.slots[s];
  const int G = p.group;

  unsigned char* k_sm = smem;
  unsigned char* v_sm = smem + kTileBytes;
  float* q_sm = reinterpret_cast<float*>(smem + 2 * kTileBytes);
  float* s_sm = q_sm + kMaxGroup * 16 * kQStride;

  const std::size_t stride = p.cache.row_elems();
  const bf16* kg = p.cache.k + p.cache.offset(slot, k0, kh);
  const bf16* vg = p.cache.v + p.cache.offset(slot, k0, kh);
  const std::uint32_t k_a = detail::smem_addr(k_sm), v_a = detail::smem_addr(v_sm);
#pragma unroll
  for (int i = 0; i < kChunk * 16 / kThreads; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    const int r = idx >> 4, c = idx & 15;
    const bool ok = r < nk;
    detail::cp_async16(k_a + idx * 16, kg + (ok ? r * stride : 0) + c * 8, ok);
  }
  detail::cp_async_commit();
#pragma unroll
  for (int i = 0; i < kChunk * 16 / kThreads; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    const int r = idx >> 4, c = idx & 15;
    const bool ok = r < nk;
    detail::cp_async16(v_a + idx * 16, vg + (ok ? r * stride : 0) + c * 8, ok);
  }
  detail::cp_async_commit();

  // q of the group's heads -> fp32 smem, pre-scaled.
  const bf16* qrow = p.q + static_cast<std::size_t>(end - 1) * p.ldq + kh * G * kHD;
  for (int i = threadIdx.x; i < G * kHD; i += kThreads) {
    const int h = i / kHD, d = i % kHD;
    q_sm[(h * 16 + (d >> 3)) * kQStride + (d & 7)] = to_float(qrow[i]) * p.scale;
  }
  detail::cp_async_wait<1>();
  __syncthreads();

  // Scores: 8 lanes per key (lane e holds dims [8e, 8e+8) and [64+8e, 64+8e+8)).
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int e = lane & 7;
  for (int kb = 0; kb < kChunk; kb += 32) {
    const int key = kb + warp * 4 + (lane >> 3);
    float kv[16];
    {
      const uint4* kr = reinterpret_cast<const uint4*>(k_sm + key * kHD * 2);
      union {
        uint4 u;
        bf16 h[8];
      } a, b;
      a.u = kr[e];
      b.u = kr[e + 8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        kv[j] = to_float(a.h[j]);
        kv[8 + j] = to_float(b.h[j]);
      }
    }
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h < G) {
        const float* q0 = q_sm + (h * 16 + e) * kQStride;
        const float* q1 = q_sm + (h * 16 + e + 8) * kQStride;
        const float4 qa = *reinterpret_cast<const float4*>(q0);
        const float4 qb = *reinterpret_cast<const float4*>(q0 + 4);
        const float4 qc = *reinterpret_cast<const float4*>(q1);
        const float4 qd = *reinterpret_cast<const float4*>(q1 + 4);
        float d = qa.x * kv[0] + qa.y * kv[1] + qa.z * kv[2] + qa.w * kv[3] + qb.x * kv[4] +
                  qb.y * kv[5] + qb.z * kv[6] + qb.w * kv[7] + qc.x * kv[8] + qc.y * kv[9] +
                  qc.z * kv[10] + qc.w * kv[11] + qd.x * kv[12] + qd.y * kv[13] + qd.z * kv[14] +
                  qd.w * kv[15];
        d += __shfl_xor_sync(0xffffffffu, d, 1);
        d += __shfl_xor_sync(0xffffffffu, d, 2);
        d += __shfl_xor_sync(0xffffffffu, d, 4);
        if (e == 0) s_sm[h * kChunk + key] = key < nk ? d : -INFINITY;
      }
    }
  }
  __syncthreads();

  // Local softmax: warp h handles query head h.
  const int split = blockIdx.y;
  if (warp < G) {
    float* sr = s_sm + warp * kChunk;
    float mx = -INFINITY;
    for (int i = lane; i < kChunk; i += 32) mx = fmaxf(mx, sr[i]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    float sum = 0.f;
    for (int i = lane; i < kChunk; i += 32) {
      const float pv = __expf(sr[i] - mx);  // exp(-inf) = 0 for masked keys
      sr[i] = pv;
      sum += pv;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) {
      const std::size_t idx =
          (static_cast<std::size_t>(s) * p.max_splits + split) * p.num_q_heads + kh * G + warp;
      p.ml[2 * idx] = mx;
      p.ml[2 * idx + 1] = sum;
    }
  }
  detail::cp_async_wait<0>();
  __syncthreads();

  // P V: warp w handles keys [16w, 16w + 16) four at a time; lane owns dims [4*lane, +4).
  float acc[kMaxGroup][4];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) acc[h][0] = acc[h][1] = acc[h][2] = acc[h][3] = 0.f;
  constexpr int kKeysPerWarp = kChunk / (kThreads / 32);
  const int kw0 = warp * kKeysPerWarp;
  if (kw0 < nk) {
#pragma unroll
    for (int k4 = 0; k4 < kKeysPerWarp; k4 += 4) {
      float vf[4][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        union {
          uint2 u;
          bf16 h[4];
        } t;
        t.u = reinterpret_cast<const uint2*>(v_sm + (kw0 + k4 + kk) * kHD * 2)[lane];
#pragma unroll
        for (int j = 0; j < 4; ++j) vf[kk][j] = to_float(t.h[j]);
      }
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        if (h < G) {
          const float4 pv = *reinterpret_cast<const float4*>(s_sm + h * kChunk + kw0 + k4);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            acc[h][j] += pv.x * vf[0][j] + pv.y * vf[1][j] + pv.z * vf[2][j] + pv.w * vf[3][j];
          }
        }
      }
    }
  }
  __syncthreads();  // everyone is done with the K tile (reused for the reduction)
  float* red = reinterpret_cast<float*>(k_sm);  // [warp][kMaxGroup][kHD] = 32 KiB
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    if (h < G) {
      *reinterpret_cast<float4*>(red + (warp * kMaxGroup + h) * kHD + 4 * lane) =
          make_float4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * kHD; i += kThreads) {
    const int h = i / kHD, d = i % kHD;
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) v += red[(w * kMaxGroup + h) * kHD + d];
    const std::size_t idx =
        (static_cast<std::size_t>(s) * p.max_splits + split) * p.num_q_heads + kh * G + h;
    p.o_part[idx * kHD + d] = v;
  }
}

// grid (Hq, seq), kHD threads: merges the splits of one (sequence, query head).
__global__ void attention_decode_combine_kernel(const decode_params p, bf16* out, int ldo) {
  const int s = blockIdx.y, h = blockIdx.x;
  if (s >= *p.batch.num_seqs) return;
  const int end = p.batch.cu_seqlens[s + 1];
  const int len = end - p.batch.cu_seqlens[s];
  if (len < 1) return;
  const int total = p.batch.context_lens[s] + len;
  const int nsplit = min((total + kChunk - 1) / kChunk, p.max_splits);
  const std::size_t base = static_cast<std::size_t>(s) * p.max_splits;
  float M = -INFINITY;
  for (int i = 0; i < nsplit; ++i) M = fmaxf(M, p.ml[2 * ((base + i) * p.num_q_heads + h)]);
  float L = 0.f, acc = 0.f;
  const int d = threadIdx.x;
  for (int i = 0; i < nsplit; ++i) {
    const std::size_t idx = (base + i) * p.num_q_heads + h;
    const float w = __expf(p.ml[2 * idx] - M);
    L += w * p.ml[2 * idx + 1];
    acc += w * p.o_part[idx * kHD + d];
  }
  out[static_cast<std::size_t>(end - 1) * ldo + h * kHD + d] = to_bf16(acc / L);
}

void require(bool cond, const std::string& what) {
  if (!cond) throw piecewise::config_error(what);
}

std::size_t round256(std::size_t b) { return (b + 255) / 256 * 256; }

}  // namespace

std::size_t attention_decode_workspace_bytes(int max_seqs, int num_q_heads, int head_dim,
                                             int max_context) {
  const std::size_t splits = static_cast<std::size_t>(ceil_div(max_context, kChunk));
  const std::size_t n = static_cast<std::size_t>(max_seqs) * splits * num_q_heads;
  return round256(n * head_dim * sizeof(float)) + round256(n * 2 * sizeof(float));
}

void attention_decode(const bf16* q, int ldq, const bf16* k, const bf16* v, int ldkv,
                      const kv_cache_view& cache, const batch_view& batch, int num_q_heads,
                      bf16* out, int ldo, void* workspace, std::size_t workspace_bytes,
                      int max_context, cudaStream_t stream) {
  const std::string shape =
      "attention_decode (max_seqs=" + std::to_string(batch.max_seqs) +
      ", max_context=" + std::to_string(max_context) + ", Hq=" + std::to_string(num_q_heads) +
      ", Hkv=" + std::to_string(cache.num_kv_heads) + ", head_dim=" + std::to_string(cache.head_dim) + ")";
  require(cache.head_dim == kHD, shape + ": only head_dim 128 is implemented");
  require(cache.num_kv_heads > 0 && num_q_heads % cache.num_kv_heads == 0 &&
              num_q_heads / cache.num_kv_heads <= kMaxGroup,
          shape + ": Hq must be a multiple of Hkv with Hq/Hkv <= 8");
  require(ldq % 8 == 0 && ldo % 8 == 0 && ldq >= num_q_heads * kHD && ldo >= num_q_heads * kHD,
          shape + ": ldq/ldo must be multiples of 8 and >= Hq*head_dim");
  require(max_context > 0 && max_context <= cache.max_context,
          shape + ": max_context must be in [1, cache.max_context]");
  const std::size_t need =
      attention_decode_workspace_bytes(batch.max_seqs, num_q_heads, kHD, max_context);
  require(workspace != nullptr && workspace_bytes >= need &&
              reinterpret_cast<std::uintptr_t>(workspace) % 256 == 0,
          shape + ": workspace must be 256-byte aligned and hold " + std::to_string(need) +
              " bytes (got " + std::to_string(workspace_bytes) + ")");
  kv_cache_append(cache, k, v, ldkv, batch, stream);
  if (batch.max_seqs <= 0) return;
  static bool attr_set = false;  // one-time, not a stream operation (fine during capture)
  if (!attr_set) {
    PIECEWISE_CUDA_TRY_CTX(cudaFuncSetAttribute(attention_decode_split_kernel,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                kSmemBytes),
                           shape);
    attr_set = true;
  }
  decode_params p{};
  p.q = q;
  p.ldq = ldq;
  p.cache = cache;
  p.batch = batch;
  p.group = num_q_heads / cache.num_kv_heads;
  p.num_q_heads = num_q_heads;
  p.max_splits = ceil_div(max_context, kChunk);
  p.scale = 1.f / sqrtf(static_cast<float>(kHD));
  const std::size_t n = static_cast<std::size_t>(batch.max_seqs) * p.max_splits * num_q_heads;
  p.o_part = static_cast<float*>(workspace);
  p.ml = reinterpret_cast<float*>(static_cast<char*>(workspace) + round256(n * kHD * sizeof(float)));
  attention_decode_split_kernel<<<dim3(cache.num_kv_heads, p.max_splits, batch.max_seqs), kThreads,
                                  kSmemBytes, stream>>>(p);
  NH_CHECK_LAUNCH(shape);
  attention_decode_combine_kernel<<<dim3(num_q_heads, batch.max_seqs), kHD, 0, stream>>>(p, out, ldo);
  NH_CHECK_LAUNCH(shape + " combine");
}

}  // namespace nemotron_h
