// Mamba2 recurrent SSM update (see mamba_decode.cuh).
#include <algorithm>
#include <string>

#include "kernels/pdl.cuh"
#include "kernels/mamba_decode.cuh"

namespace nemotron_h {
namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerIter = 4;  // state rows a warp keeps in flight
// Blocks per multiprocessor the split heuristic aims for (enough loads in flight to cover
// the memory latency when the batch is small).
constexpr int kTargetBlocksPerSM = 4;

__device__ __forceinline__ float softplus(float v) { return v > 20.f ? v : log1pf(__expf(v)); }

template <int NPL>
__device__ __forceinline__ void load_f(const float* p, float (&r)[NPL]) {
  if constexpr (NPL % 4 == 0) {
#pragma unroll
    for (int i = 0; i < NPL; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + i);
      r[i] = v.x; r[i + 1] = v.y; r[i + 2] = v.z; r[i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < NPL; i += 2) {
      const float2 v = *reinterpret_cast<const float2*>(p + i);
      r[i] = v.x; r[i + 1] = v.y;
    }
  }
}

// State stores are marked evict-first in L2 (st.global.cs): nothing reads them before the next
// step, and their write-back to HBM then happens sooner, mostly under the small kernels that
// follow rather than inside the next weight stream (9B decode batch 1: 1.1% faster a step).
template <int NPL>
__device__ __forceinline__ void store_f(float* p, const float (&r)[NPL]) {
  if constexpr (NPL % 4 == 0) {
#pragma unroll
    for (int i = 0; i < NPL; i += 4) __stcs(reinterpret_cast<float4*>(p + i), make_float4(r[i], r[i + 1], r[i + 2], r[i + 3]));
  } else {
#pragma unroll
    for (int i = 0; i < NPL; i += 2) __stcs(reinterpret_cast<float2*>(p + i), make_float2(r[i], r[i + 1]));
  }
}

template <int NPL>
__device__ __forceinline__ void load_bf(const bf16* p, float (&r)[NPL]) {
#pragma unroll
  for (int i = 0; i < NPL; i += 2) {
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p + i));
    r[i] = f.x; r[i + 1] = f.y;
  }
}

// Loads state rows [p0, p0 + kRowsPerIter) of a head (zeros past p_end, or for every row when
// S_head is null: a sequence without state).
template <int NPL>
__device__ __forceinline__ void load_rows(const float* S_head, int p0, int p_end, int lane,
                                          float (&st)[kRowsPerIter][NPL]) {
  constexpr int N = 32 * NPL;
#pragma unroll
  for (int r = 0; r < kRowsPerIter; ++r) {
    if (S_head != nullptr && p0 + r < p_end) {
      load_f<NPL>(S_head + static_cast<long long>(p0 + r) * N + lane * NPL, st[r]);
    } else {
#pragma unroll
      for (int i = 0; i < NPL; ++i) st[r][i] = 0.f;
    }
  }
}

// grid (H * splits, max_seqs), kWarps warps; N = 32 * NPL; lane owns state columns
// [lane*NPL, +NPL). Split `sp` of head h owns state rows [sp * rows_per_split, +rows_per_split)
// (rows_per_split a multiple of kWarps * kRowsPerIter); warp w takes kRowsPerIter rows at a
// time, all their loads in flight together. The arithmetic per state element and per output
// row does not depend on the split, so every split count gives the same bits.
// EARLY: the batch metadata, the head's parameters and the warp's first state rows are loaded
// before pdl_wait() (the caller's promise that the previous kernel writes none of them), so
// their round trips overlap the previous kernel's tail; otherwise everything is loaded after it.
// Every block reaches pdl_wait() before it exits (an early exit would let the next kernel start
// before this one's predecessor has finished).
template <int NPL, bool EARLY>
__global__ void __launch_bounds__(kWarps * 32)
    mamba_decode_kernel(const bf16* __restrict__ xbc, const bf16* __restrict__ dt_raw, int ld_dt,
                        const float* __restrict__ A_log, const float* __restrict__ Dv,
                        const float* __restrict__ dt_bias, float* __restrict__ ssm_state,
                        bf16* __restrict__ y, batch_view b, int H, int P, int G, int splits,
                        int rows_per_split, float dt_min, float dt_max) {
  if constexpr (!EARLY) pdl_wait();  // the previous kernel's writes first
  constexpr int N = 32 * NPL;
  const int h = blockIdx.x / splits;
  const int sp = blockIdx.x - h * splits;
  const int s = blockIdx.y;
  const int p_begin = sp * rows_per_split;
  const int p_end = min(P, p_begin + rows_per_split);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  // Independent loads (one round trip); entries past num_seqs may be unwritten and are used
  // only once s < num_seqs is known.
  const int num_seqs = *b.num_seqs;
  const int start = b.cu_seqlens[s];
  const int end = b.cu_seqlens[s + 1];
  const int slot = b.slots[s];
  const bool has_state = b.context_lens[s] > 0;
  const float A = -__expf(A_log[h]);
  const float Dh = Dv[h], bias = dt_bias[h];
  const bool live = s < num_seqs && p_begin < P && end > start;
  float* S_head = live ? ssm_state + (static_cast<long long>(slot) * H + h) * P * N : nullptr;
  const int p_first = p_begin + warp * kRowsPerIter;
  float st[kRowsPerIter][NPL];
  if constexpr (EARLY) {
    load_rows<NPL>(has_state ? S_head : nullptr, p_first, p_end, lane, st);
    pdl_wait();  // now the previous kernel's outputs (xbc, dt_raw) are visible
  }
  if (!live) return;
  const int conv_dim = H * P + 2 * G * N;
  const int g = h / (H / G);

  for (int p0 = p_first; p0 < p_end; p0 += kWarps * kRowsPerIter) {
    if (!EARLY || p0 != p_first) load_rows<NPL>(has_state ? S_head : nullptr, p0, p_end, lane, st);
    for (int t = start; t < end; ++t) {
      const bf16* row = xbc + static_cast<long long>(t) * conv_dim;
      float Bv[NPL], Cv[NPL];
      load_bf<NPL>(row + H * P + g * N + lane * NPL, Bv);
      load_bf<NPL>(row + H * P + G * N + g * N + lane * NPL, Cv);
      float xr[kRowsPerIter];
#pragma unroll
      for (int r = 0; r < kRowsPerIter; ++r) xr[r] = p0 + r < p_end ? to_float(row[h * P + p0 + r]) : 0.f;
      float dt = softplus(to_float(dt_raw[static_cast<long long>(t) * ld_dt + h]) + bias);
      dt = fminf(fmaxf(dt, dt_min), dt_max);
      const float dA = __expf(dt * A);
#pragma unroll
      for (int r = 0; r < kRowsPerIter; ++r) {
        const int p = p0 + r;
        if (p >= p_end) break;
        const float xv = xr[r];
        const float dx = dt * xv;
        float acc = 0.f;
#pragma unroll
        for (int i = 0; i < NPL; ++i) {
          st[r][i] = fmaf(st[r][i], dA, dx * Bv[i]);
          acc = fmaf(st[r][i], Cv[i], acc);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) y[static_cast<long long>(t) * H * P + h * P + p] = to_bf16(acc + Dh * xv);
      }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerIter; ++r)
      if (p0 + r < p_end) store_f<NPL>(S_head + static_cast<long long>(p0 + r) * N + lane * NPL, st[r]);
  }
}

}  // namespace

void mamba_decode(const bf16* xbc, const bf16* dt_raw, int ld_dt, const float* A_log,
                  const float* D, const float* dt_bias, float* ssm_state, bf16* y,
                  const batch_view& batch, const mamba_dims& d, float dt_min, float dt_max,
                  cudaStream_t stream, bool load_state_early) {
  PIECEWISE_EXPECTS(d.N == 64 || d.N == 128 || d.N == 256,
                    "mamba_decode: state size N={} unsupported (64, 128 or 256)", d.N);
  PIECEWISE_EXPECTS(d.H > 0 && d.P > 0 && d.G > 0 && d.H % d.G == 0,
                    "mamba_decode: bad dims H={} P={} G={}", d.H, d.P, d.G);
  PIECEWISE_EXPECTS(batch.num_seqs && batch.cu_seqlens && batch.slots && batch.context_lens,
                    "mamba_decode: batch_view has null device pointers");
  if (batch.max_seqs == 0) return;
  // Split each head's P state rows over several blocks when the batch is small: at batch 1,
  // H blocks of one head each would leave most of the chip idle and few loads in flight.
  constexpr int kRowsPerBlockIter = kWarps * kRowsPerIter;
  const int max_splits = ceil_div(d.P, kRowsPerBlockIter);
  const long long want = static_cast<long long>(kTargetBlocksPerSM) * multiprocessors();
  const long long heads = static_cast<long long>(d.H) * batch.max_seqs;
  int splits = static_cast<int>(std::min<long long>(max_splits, std::max<long long>(1, ceil_div(want, heads))));
  const int rows_per_split = ceil_div(ceil_div(d.P, splits), kRowsPerBlockIter) * kRowsPerBlockIter;
  splits = ceil_div(d.P, rows_per_split);
  const dim3 grid(d.H * splits, batch.max_seqs);
  // One instantiation per state size and load order.
  const auto kernel = [&] {
    switch (d.N) {
      case 64: return load_state_early ? mamba_decode_kernel<2, true> : mamba_decode_kernel<2, false>;
      case 128: return load_state_early ? mamba_decode_kernel<4, true> : mamba_decode_kernel<4, false>;
      default: return load_state_early ? mamba_decode_kernel<8, true> : mamba_decode_kernel<8, false>;
    }
  }();
  launch_pdl("mamba_decode_kernel", kernel, grid, kWarps * 32, 0, stream, xbc, dt_raw, ld_dt, A_log, D, dt_bias,
             ssm_state, y, batch, d.H, d.P, d.G, splits, rows_per_split, dt_min, dt_max);
  NH_CHECK_LAUNCH("mamba_decode_kernel H=" + std::to_string(d.H) + " P=" + std::to_string(d.P) +
                  " N=" + std::to_string(d.N));
}

}  // namespace nemotron_h
