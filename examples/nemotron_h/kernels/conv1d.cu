// Causal depthwise conv1d + SiLU kernels (see conv1d.cuh).
#include <cstdint>
#include <string>

#include "kernels/pdl.cuh"
#include "kernels/conv1d.cuh"

namespace nemotron_h {
namespace {

constexpr int kVec = 8;          // channels per thread (one 16-byte load)
constexpr int kThreads = 128;    // threads per block along channels
constexpr int kTokensShort = 4;  // tokens per prefill thread for short batches
constexpr int kTokensLong = 8;   // ... and for long ones (fewer re-read window rows)

struct vec8 {
  float v[kVec];
};

__device__ __forceinline__ vec8 load8(const bf16* p) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
  vec8 r;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    r.v[2 * i] = f.x;
    r.v[2 * i + 1] = f.y;
  }
  return r;
}

__device__ __forceinline__ vec8 unpack8(const uint4& raw) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
  vec8 r;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    r.v[2 * i] = f.x;
    r.v[2 * i + 1] = f.y;
  }
  return r;
}

__device__ __forceinline__ void store8(bf16* p, const vec8& a) {
  uint4 raw;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(a.v[2 * i], a.v[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = raw;
}

__device__ __forceinline__ vec8 zero8() {
  vec8 r;
#pragma unroll
  for (int i = 0; i < kVec; ++i) r.v[i] = 0.f;
  return r;
}

__device__ __forceinline__ float silu(float v) { return v / (1.f + __expf(-v)); }

// The conv input at packed time j of a sequence starting at `start`: the token row, or the
// slot's state row (K-1) + (j - start) for j < start, or zero for a fresh sequence.
template <int K>
__device__ __forceinline__ vec8 conv_input(const bf16* xbc, int ld, const bf16* state_slot,
                                           int C, int c0, int start, int j) {
  if (j >= start) return load8(xbc + static_cast<long long>(j) * ld + c0);
  if (state_slot == nullptr) return zero8();
  return load8(state_slot + static_cast<long long>(K - 1 + (j - start)) * C + c0);
}

// Weights and biases of 8 channels, kept as bf16 (half the registers of fp32) and widened
// exactly to fp32 where used.
template <int K>
struct conv_weights {
  alignas(16) bf16 w[kVec * K];  // w[i * K + k]: channel c0 + i, tap k (the [C][K] layout)
  alignas(16) bf16 b[kVec];
  // Channels c0 .. c0+7 (K * 8 contiguous bf16) and their biases; 16-byte loads when both
  // tensors are 16-byte aligned (c0 is a multiple of 8).
  __device__ __forceinline__ void load(const bf16* weight, const bf16* bias, int c0) {
    const bool vec = ((reinterpret_cast<std::uintptr_t>(weight) | reinterpret_cast<std::uintptr_t>(bias)) & 15u) == 0;
    if (vec && (K * kVec) % 8 == 0) {
#pragma unroll
      for (int q = 0; q < K * kVec / 8; ++q)
        reinterpret_cast<uint4*>(w)[q] = reinterpret_cast<const uint4*>(weight + c0 * K)[q];
      *reinterpret_cast<uint4*>(b) = *reinterpret_cast<const uint4*>(bias + c0);
      return;
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
#pragma unroll
      for (int k = 0; k < K; ++k) w[i * K + k] = weight[(c0 + i) * K + k];
      b[i] = bias[c0 + i];
    }
  }
  // window[0..K-2] = inputs at t-K+1 .. t-1, cur = input at t.
  __device__ __forceinline__ vec8 apply(const vec8 (&window)[K - 1], const vec8& cur) const {
    vec8 r;
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      float acc = to_float(b[i]);
#pragma unroll
      for (int k = 0; k < K - 1; ++k) acc = fmaf(to_float(w[i * K + k]), window[k].v[i], acc);
      acc = fmaf(to_float(w[i * K + K - 1]), cur.v[i], acc);
      r.v[i] = silu(acc);
    }
    return r;
  }
};

// Largest s in [0, ns) with cu[s] <= t (t < cu[ns]).
__device__ __forceinline__ int find_seq(const int* cu, int ns, int t) {
  int lo = 0, hi = ns - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (cu[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// Prefill tile: thread = 8 channels x TPT consecutive tokens [t0, t0 + TPT). When the tile
// lies inside one sequence (the common case), all TPT + K - 1 input rows it needs are loaded
// at once (tokens, else the slot's state rows, else zeros) and then convolved; a tile that
// crosses a sequence boundary walks its tokens one by one. Same arithmetic either way.
// grid (ceil(C / (8 * blockDim.x)), ceil(padded_tokens / TPT)).
template <int K, int TPT>
__global__ void __launch_bounds__(kThreads)
    conv_prefill_kernel(const bf16* __restrict__ xbc, int ld, const bf16* __restrict__ weight,
                        const bf16* __restrict__ bias, const bf16* __restrict__ conv_state,
                        bf16* __restrict__ out, batch_view b, int C) {
  const int c0 = (blockIdx.x * blockDim.x + threadIdx.x) * kVec;
  if (c0 >= C) return;
  const int nt = *b.num_tokens;
  const int t0 = blockIdx.y * TPT;
  if (t0 >= nt) return;
  const int ns = *b.num_seqs;
  const int t_end = min(t0 + TPT, nt);
  const long long slot_elems = static_cast<long long>(K - 1) * C;

  conv_weights<K> cw;
  cw.load(weight, bias, c0);

  int s = find_seq(b.cu_seqlens, ns, t0);
  int start = b.cu_seqlens[s], end = b.cu_seqlens[s + 1];
  if (t_end <= end) {
    // One sequence: inputs at t0-K+1 .. t_end-1.
    const bf16* st = nullptr;
    if (t0 - (K - 1) < start && b.context_lens[s] > 0) st = conv_state + b.slots[s] * slot_elems;
    uint4 in[TPT + K - 1];
#pragma unroll
    for (int i = 0; i < TPT + K - 1; ++i) {
      const int j = t0 - (K - 1) + i;
      in[i] = make_uint4(0, 0, 0, 0);
      if (j < t_end) {
        if (j >= start) in[i] = *reinterpret_cast<const uint4*>(xbc + static_cast<long long>(j) * ld + c0);
        else if (st != nullptr)
          in[i] = *reinterpret_cast<const uint4*>(st + static_cast<long long>(K - 1 + (j - start)) * C + c0);
      }
    }
#pragma unroll
    for (int tt = 0; tt < TPT; ++tt) {
      if (t0 + tt < t_end) {
        vec8 window[K - 1];
#pragma unroll
        for (int k = 0; k < K - 1; ++k) window[k] = unpack8(in[tt + k]);
        store8(out + static_cast<long long>(t0 + tt) * C + c0, cw.apply(window, unpack8(in[tt + K - 1])));
      }
    }
    return;
  }

  // The tile crosses a sequence boundary: token by token, re-entering at each new sequence.
  const bf16* st = nullptr;
  vec8 window[K - 1];
  auto enter_seq = [&](int t) {
    start = b.cu_seqlens[s];
    end = b.cu_seqlens[s + 1];
    st = b.context_lens[s] > 0 ? conv_state + b.slots[s] * slot_elems : nullptr;
#pragma unroll
    for (int k = 0; k < K - 1; ++k)
      window[k] = conv_input<K>(xbc, ld, st, C, c0, start, t - (K - 1) + k);
  };
  enter_seq(t0);
  for (int t = t0; t < t_end; ++t) {
    if (t >= end) {
      while (t >= b.cu_seqlens[s + 1]) ++s;  // skips sequences with no new tokens
      enter_seq(t);
    }
    const vec8 cur = load8(xbc + static_cast<long long>(t) * ld + c0);
    store8(out + static_cast<long long>(t) * C + c0, cw.apply(window, cur));
#pragma unroll
    for (int k = 0; k < K - 2; ++k) window[k] = window[k + 1];
    window[K - 2] = cur;
  }
}

// New conv state of each sequence: the last K-1 rows of [old state ; new tokens].
template <int K>
__global__ void __launch_bounds__(kThreads)
    conv_state_update_kernel(const bf16* __restrict__ xbc, int ld, bf16* conv_state,
                             batch_view b, int C) {
  const int c0 = (blockIdx.x * blockDim.x + threadIdx.x) * kVec;
  const int s = blockIdx.y;
  if (c0 >= C || s >= *b.num_seqs) return;
  const int start = b.cu_seqlens[s];
  const int T = b.cu_seqlens[s + 1] - start;
  const int slot = b.slots[s];
  const bool has_state = b.context_lens[s] > 0;
  if (T == 0) return;
  bf16* st = conv_state + slot * static_cast<long long>(K - 1) * C;
  const bf16* st_in = has_state ? st : nullptr;
  vec8 rows[K - 1];
#pragma unroll
  for (int i = 0; i < K - 1; ++i) rows[i] = conv_input<K>(xbc, ld, st_in, C, c0, start, start + T - (K - 1) + i);
#pragma unroll
  for (int i = 0; i < K - 1; ++i) store8(st + static_cast<long long>(i) * C + c0, rows[i]);
}

// EARLY: the weights, the batch metadata and the slot's conv state are loaded before
// pdl_wait() (the caller's promise that the previous kernel writes none of them). Either way the
// kernel lets the next one start once it has waited (pdl_launch_dependents), so that the Mamba
// update after it loads its state while this one runs. Every block reaches pdl_wait().
template <int K, bool EARLY>
__global__ void __launch_bounds__(kThreads)
    conv_decode_kernel(const bf16* __restrict__ xbc, int ld, const bf16* __restrict__ weight,
                       const bf16* __restrict__ bias, bf16* conv_state, bf16* __restrict__ out,
                       batch_view b, int C) {
  if constexpr (!EARLY) pdl_wait();  // the previous kernel's writes first
  const int c0 = (blockIdx.x * blockDim.x + threadIdx.x) * kVec;
  const int s = blockIdx.y;
  // Independent loads (one round trip): the weights, and the metadata (entries past num_seqs
  // may be unwritten; they are used only once s < num_seqs is known).
  conv_weights<K> cw;
  if (c0 < C) cw.load(weight, bias, c0);
  const int num_seqs = *b.num_seqs;
  const int start = b.cu_seqlens[s];
  const int end = b.cu_seqlens[s + 1];
  const int slot = b.slots[s];
  const bool has_state = b.context_lens[s] > 0;
  const bool live = c0 < C && s < num_seqs && end > start;
  bf16* st = live ? conv_state + slot * static_cast<long long>(K - 1) * C : nullptr;
  vec8 window[K - 1];
#pragma unroll
  for (int k = 0; k < K - 1; ++k)
    window[k] = st != nullptr && has_state ? load8(st + static_cast<long long>(k) * C + c0) : zero8();
  if constexpr (EARLY) pdl_wait();  // now the previous kernel's output (xbc) is visible
  pdl_launch_dependents();
  if (!live) return;
  for (int t = start; t < end; ++t) {
    const vec8 cur = load8(xbc + static_cast<long long>(t) * ld + c0);
    store8(out + static_cast<long long>(t) * C + c0, cw.apply(window, cur));
#pragma unroll
    for (int k = 0; k < K - 2; ++k) window[k] = window[k + 1];
    window[K - 2] = cur;
  }
#pragma unroll
  for (int k = 0; k < K - 1; ++k) store8(st + static_cast<long long>(k) * C + c0, window[k]);
}

// Threads per block along channels (128, 64 or 32): the widest that still gives `target`
// blocks for `vecs` 8-channel vectors times `rows` grid rows.
int block_threads(int vecs, long long rows, int target) {
  int t = kThreads;
  while (t > 32 && static_cast<long long>(ceil_div(vecs, t)) * rows < target) t /= 2;
  return t;
}

void check_conv_args(const char* fn, const bf16* xbc, int ld, const bf16* conv_state,
                     const bf16* out, const batch_view& b, int C, int K) {
  auto misaligned = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) != 0; };
  PIECEWISE_EXPECTS(K == 4, "{}: conv kernel width K={} unsupported (only K=4)", fn, K);
  PIECEWISE_EXPECTS(C > 0 && C % kVec == 0 && ld % kVec == 0 && ld >= C,
                    "{}: conv_dim={} and ld_xbc={} must be positive multiples of 8 (ld >= conv_dim)",
                    fn, C, ld);
  PIECEWISE_EXPECTS(!misaligned(xbc) && !misaligned(conv_state) && !misaligned(out),
                    "{}: xbc, conv_state and out must be 16-byte aligned", fn);
  PIECEWISE_EXPECTS(b.num_seqs && b.num_tokens && b.cu_seqlens && b.slots && b.context_lens,
                    "{}: batch_view has null device pointers", fn);
  PIECEWISE_EXPECTS(b.padded_tokens >= 0 && b.max_seqs >= 0, "{}: negative batch bounds", fn);
}

}  // namespace

void conv1d_prefill(const bf16* xbc, int ld_xbc, const bf16* weight, const bf16* bias,
                    bf16* conv_state, bf16* out, const batch_view& batch, int conv_dim, int K,
                    cudaStream_t stream) {
  check_conv_args("conv1d_prefill", xbc, ld_xbc, conv_state, out, batch, conv_dim, K);
  if (batch.padded_tokens == 0 || batch.max_seqs == 0) return;
  const int vecs = conv_dim / kVec;
  const int target = 2 * multiprocessors();
  // Short batches: few tokens per thread and narrow blocks, so the grid still covers the chip.
  const bool is_short = static_cast<long long>(ceil_div(vecs, kThreads)) * ceil_div(batch.padded_tokens, kTokensLong) < target;
  const int tpt = is_short ? kTokensShort : kTokensLong;
  const int tiles = ceil_div(batch.padded_tokens, tpt);
  const int threads = block_threads(vecs, tiles, target);
  const dim3 grid(ceil_div(vecs, threads), tiles);
  if (is_short)
    conv_prefill_kernel<4, kTokensShort><<<grid, threads, 0, stream>>>(xbc, ld_xbc, weight, bias, conv_state,
                                                                       out, batch, conv_dim);
  else
    conv_prefill_kernel<4, kTokensLong><<<grid, threads, 0, stream>>>(xbc, ld_xbc, weight, bias, conv_state,
                                                                      out, batch, conv_dim);
  NH_CHECK_LAUNCH("conv_prefill_kernel conv_dim=" + std::to_string(conv_dim));
  const int st_threads = block_threads(vecs, batch.max_seqs, target);
  conv_state_update_kernel<4><<<dim3(ceil_div(vecs, st_threads), batch.max_seqs), st_threads, 0, stream>>>(
      xbc, ld_xbc, conv_state, batch, conv_dim);
  NH_CHECK_LAUNCH("conv_state_update_kernel conv_dim=" + std::to_string(conv_dim));
}

void conv1d_decode(const bf16* xbc, int ld_xbc, const bf16* weight, const bf16* bias,
                   bf16* conv_state, bf16* out, const batch_view& batch, int conv_dim, int K,
                   cudaStream_t stream, bool load_state_early) {
  check_conv_args("conv1d_decode", xbc, ld_xbc, conv_state, out, batch, conv_dim, K);
  if (batch.max_seqs == 0) return;
  const int vecs = conv_dim / kVec;
  const int threads = block_threads(vecs, batch.max_seqs, 2 * multiprocessors());
  const dim3 grid(ceil_div(vecs, threads), batch.max_seqs);
  launch_pdl("conv_decode_kernel", load_state_early ? conv_decode_kernel<4, true> : conv_decode_kernel<4, false>, grid, threads, 0, stream, xbc, ld_xbc, weight, bias,
             conv_state, out, batch, conv_dim);
}

}  // namespace nemotron_h
