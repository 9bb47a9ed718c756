// Mamba2 SSD chunked scan (see ssd_scan.cuh).
#include <mma.h>

#include <cstdint>
#include <string>

#include "kernels/ssd_scan.cuh"

namespace nemotron_h {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int L = ssd_chunk;
constexpr int kPad = 8;  // bf16 row padding in shared memory (keeps 16-byte rows, fewer conflicts)

using frag_acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
template <typename Layout>
using frag_a = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, Layout>;
template <typename Layout>
using frag_b = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, Layout>;

__device__ __forceinline__ float softplus(float v) { return v > 20.f ? v : log1pf(__expf(v)); }

struct ws_layout {
  float* dt;     // [chunks][H][L]
  float* acs;    // [chunks][H][L]
  bf16* states;  // [chunks][H][P][N]
};

__host__ __device__ inline std::size_t align256(std::size_t b) { return (b + 255) / 256 * 256; }

__host__ __device__ inline ws_layout carve(void* ws, int chunks, int H) {
  ws_layout w;
  const std::size_t vec = align256(static_cast<std::size_t>(chunks) * H * L * sizeof(float));
  w.dt = static_cast<float*>(ws);
  w.acs = reinterpret_cast<float*>(static_cast<char*>(ws) + vec);
  w.states = reinterpret_cast<bf16*>(static_cast<char*>(ws) + 2 * vec);
  return w;
}

__device__ __forceinline__ int warp_inclusive_scan(int v, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  return v;
}

// Called by one full warp: finds the sequence s and its chunk c of global chunk g (chunks
// numbered sequence by sequence). Returns false when g is beyond the batch's chunks.
__device__ bool locate_chunk(const int* cu, int ns, int g, int lane, int& s_out, int& c_out) {
  int base = 0;
  for (int s0 = 0; s0 < ns; s0 += 32) {
    const int si = s0 + lane;
    const int n = si < ns ? (cu[si + 1] - cu[si] + L - 1) / L : 0;
    const int incl = warp_inclusive_scan(n, lane);
    const int excl = base + incl - n;
    const unsigned hit = __ballot_sync(0xffffffffu, si < ns && g >= excl && g < excl + n);
    if (hit) {
      const int src = __ffs(hit) - 1;
      s_out = __shfl_sync(0xffffffffu, si, src);
      c_out = g - __shfl_sync(0xffffffffu, excl, src);
      return true;
    }
    base += __shfl_sync(0xffffffffu, incl, 31);
  }
  return false;
}

// Called by one full warp: global index of sequence s's first chunk.
__device__ int first_chunk_of(const int* cu, int s, int lane) {
  int base = 0;
  for (int s0 = 0; s0 < s; s0 += 32) {
    const int si = s0 + lane;
    int n = si < s ? (cu[si + 1] - cu[si] + L - 1) / L : 0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) n += __shfl_xor_sync(0xffffffffu, n, o);
    base += n;
  }
  return base;
}

// ---- 1. dt and chunk cumsum -----------------------------------------------------------
// grid (max_chunks, H), L threads.
__global__ void __launch_bounds__(L)
    ssd_chunk_prep(const bf16* __restrict__ dt_raw, int ld_dt, const float* __restrict__ A_log,
                   const float* __restrict__ dt_bias, ws_layout ws, batch_view b, int H,
                   float dt_min, float dt_max) {
  __shared__ int sh_loc[3];
  __shared__ float sh_warp[L / 32];
  const int g = blockIdx.x, h = blockIdx.y;
  const int l = threadIdx.x, lane = l & 31, warp = l >> 5;
  if (warp == 0) {
    int s = 0, c = 0;
    const bool ok = locate_chunk(b.cu_seqlens, *b.num_seqs, g, lane, s, c);
    if (lane == 0) {
      sh_loc[0] = ok;
      sh_loc[1] = ok ? b.cu_seqlens[s] + c * L : 0;
      sh_loc[2] = ok ? min(L, b.cu_seqlens[s + 1] - b.cu_seqlens[s] - c * L) : 0;
    }
  }
  __syncthreads();
  if (!sh_loc[0]) return;
  const int t0 = sh_loc[1], len = sh_loc[2];
  float dt = 0.f;
  if (l < len) {
    dt = softplus(to_float(dt_raw[static_cast<long long>(t0 + l) * ld_dt + h]) + dt_bias[h]);
    dt = fminf(fmaxf(dt, dt_min), dt_max);
  }
  const float A = -__expf(A_log[h]);
  float v = dt * A;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  if (lane == 31) sh_warp[warp] = v;
  __syncthreads();
  for (int w = 0; w < warp; ++w) v += sh_warp[w];
  const std::size_t o = (static_cast<std::size_t>(g) * H + h) * L + l;
  ws.dt[o] = dt;
  ws.acs[o] = v;
}

// ---- 2. chunk states + state passing ---------------------------------------------------
// grid (P/16, H, max_seqs), N/16 warps; warp w owns state columns [16w, 16w+16) of the
// block's 16 state rows.
__global__ void ssd_chunk_state(const bf16* __restrict__ xbc, ws_layout ws,
                                float* __restrict__ ssm_state, batch_view b, int H, int P,
                                int N, int G) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int ldx = 16 + kPad;
  const int ldb = N + kPad;
  bf16* Xs = reinterpret_cast<bf16*>(smem);                      // [L][ldx], x*dt*decay
  bf16* Bs = Xs + L * ldx;                                       // [L][ldb]
  float* stage = reinterpret_cast<float*>(Bs + L * ldb);         // [warps][16*16]
  float* sh_dt = stage + (N / 16) * 256;                         // [L]
  float* sh_acs = sh_dt + L;                                     // [L]
  __shared__ int sh_info[3];

  const int p0 = blockIdx.x * 16, h = blockIdx.y, s = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nthreads = blockDim.x;
  if (s >= *b.num_seqs) return;
  const int start = b.cu_seqlens[s];
  const int T = b.cu_seqlens[s + 1] - start;
  if (T == 0) return;
  if (warp == 0) {
    const int base = first_chunk_of(b.cu_seqlens, s, lane);
    if (lane == 0) sh_info[0] = base;
  }
  const int conv_dim = H * P + 2 * G * N;
  const int grp = h / (H / G);
  const int n0 = warp * 16;
  float* slot_state = ssm_state + (static_cast<long long>(b.slots[s]) * H + h) * P * N;

  frag_acc acc;
  if (b.context_lens[s] > 0) {
    wmma::load_matrix_sync(acc, slot_state + static_cast<long long>(p0) * N + n0, N,
                           wmma::mem_row_major);
  } else {
    wmma::fill_fragment(acc, 0.f);
  }
  __syncthreads();
  const int base = sh_info[0];
  const int nch = (T + L - 1) / L;
  float* my_stage = stage + warp * 256;

  for (int c = 0; c < nch; ++c) {
    const int g = base + c;
    const int t0 = start + c * L;
    const int len = min(L, T - c * L);
    // Entering state H_c -> workspace (bf16).
    wmma::store_matrix_sync(my_stage, acc, 16, wmma::mem_row_major);
    __syncwarp();
    {
      const int r = lane >> 1, c8 = (lane & 1) * 8;
      bf16* dst = ws.states + ((static_cast<std::size_t>(g) * H + h) * P + p0 + r) * N + n0 + c8;
      uint4 raw;
      __nv_bfloat162* hv = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
      for (int i = 0; i < 4; ++i)
        hv[i] = __floats2bfloat162_rn(my_stage[r * 16 + c8 + 2 * i], my_stage[r * 16 + c8 + 2 * i + 1]);
      *reinterpret_cast<uint4*>(dst) = raw;
    }
    // dt and cumsum of this chunk.
    const std::size_t wo = (static_cast<std::size_t>(g) * H + h) * L;
    for (int i = tid; i < L; i += nthreads) {
      sh_dt[i] = ws.dt[wo + i];
      sh_acs[i] = ws.acs[wo + i];
    }
    __syncthreads();
    const float acs_last = sh_acs[L - 1];
    // Xs[l][j] = x[t0+l][h*P + p0 + j] * dt_l * exp(acs_last - acs_l); zero past len.
    for (int i = tid; i < L * 2; i += nthreads) {
      const int l = i >> 1, j8 = (i & 1) * 8;
      uint4 raw = make_uint4(0, 0, 0, 0);
      if (l < len) {
        raw = *reinterpret_cast<const uint4*>(xbc + static_cast<long long>(t0 + l) * conv_dim +
                                              h * P + p0 + j8);
        const float sc = sh_dt[l] * __expf(acs_last - sh_acs[l]);
        __nv_bfloat162* hv = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          float2 f = __bfloat1622float2(hv[k]);
          hv[k] = __floats2bfloat162_rn(f.x * sc, f.y * sc);
        }
      }
      *reinterpret_cast<uint4*>(Xs + l * ldx + j8) = raw;
    }
    // Bs[l][n] = B[t0+l][grp][n]; zero past len.
    const int vpr = N / 8;
    for (int i = tid; i < L * vpr; i += nthreads) {
      const int l = i / vpr, n8 = (i % vpr) * 8;
      uint4 raw = make_uint4(0, 0, 0, 0);
      if (l < len)
        raw = *reinterpret_cast<const uint4*>(xbc + static_cast<long long>(t0 + l) * conv_dim +
                                              H * P + grp * N + n8);
      *reinterpret_cast<uint4*>(Bs + l * ldb + n8) = raw;
    }
    __syncthreads();
    const float decay = __expf(acs_last);
#pragma unroll
    for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= decay;
#pragma unroll
    for (int k = 0; k < L / 16; ++k) {
      frag_a<wmma::col_major> a;
      frag_b<wmma::row_major> bb;
      wmma::load_matrix_sync(a, Xs + k * 16 * ldx, ldx);
      wmma::load_matrix_sync(bb, Bs + k * 16 * ldb + n0, ldb);
      wmma::mma_sync(acc, a, bb, acc);
    }
    __syncthreads();
  }
  wmma::store_matrix_sync(slot_state + static_cast<long long>(p0) * N + n0, acc, N,
                          wmma::mem_row_major);
}

// ---- 3. chunk outputs ------------------------------------------------------------------
// One block per (chunk, group, HB heads of that group): C B^T is computed once and shared
// by the block's heads (it does not depend on the head); per head only the decay mask, X,
// the entering state and the output change.
constexpr int kMaxHeadsPerBlock = 4;
constexpr int kTriTiles = (L / 16) * (L / 16 + 1) / 2;  // lower-triangle 16x16 tiles of C B^T

struct out_smem {
  int ldc, ldm, ldx;
  std::size_t c_off, b_off, cb_off, m_off, x_off, h_off, stage_off, dt_off, bytes;
};

__host__ __device__ inline out_smem out_smem_layout(int P, int N) {
  out_smem o;
  o.ldc = N + kPad;
  o.ldm = L + kPad;
  o.ldx = P + kPad;
  auto r = [](std::size_t v) { return (v + 127) / 128 * 128; };
  o.c_off = 0;                                              // C   bf16 [L][ldc]
  o.b_off = r(o.c_off + sizeof(bf16) * L * o.ldc);          // B, then C*exp(acs_h) per head
  o.cb_off = r(o.b_off + sizeof(bf16) * L * o.ldc);         // C B^T fp32, packed tiles
  o.m_off = r(o.cb_off + sizeof(float) * kTriTiles * 256);  // M   bf16 [L][ldm]
  o.x_off = r(o.m_off + sizeof(bf16) * L * o.ldm);          // X   bf16 [L][ldx]
  o.h_off = r(o.x_off + sizeof(bf16) * L * o.ldx);          // H_c bf16 [P][ldc]
  o.stage_off = r(o.h_off + sizeof(bf16) * P * o.ldc);      // per-warp fp32 16x16
  o.dt_off = r(o.stage_off + sizeof(float) * (L / 16) * 256);
  o.bytes = r(o.dt_off + sizeof(float) * 2 * kMaxHeadsPerBlock * L);
  return o;
}

__device__ __forceinline__ void tri_tile(int idx, int& i, int& j) {
  i = 0;
  while ((i + 1) * (i + 2) / 2 <= idx) ++i;
  j = idx - i * (i + 1) / 2;
}

// grid (max_chunks, G * (H/G) / HB), L/16 = 8 warps; warp w owns output rows [16w, 16w+16).
template <int NP>  // P = 16 * NP
__global__ void __launch_bounds__(L / 16 * 32)
    ssd_chunk_output(const bf16* __restrict__ xbc, const float* __restrict__ Dv, ws_layout ws,
                     bf16* __restrict__ y, batch_view b, int H, int N, int G, int HB) {
  constexpr int P = 16 * NP;
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ int sh_loc[3];
  const out_smem lay = out_smem_layout(P, N);
  bf16* Cs = reinterpret_cast<bf16*>(smem + lay.c_off);
  bf16* Bs = reinterpret_cast<bf16*>(smem + lay.b_off);
  bf16* Csh = Bs;  // after C B^T: C rows scaled by exp(acs_l) of the current head
  float* CB = reinterpret_cast<float*>(smem + lay.cb_off);
  bf16* Ms = reinterpret_cast<bf16*>(smem + lay.m_off);
  bf16* Xs = reinterpret_cast<bf16*>(smem + lay.x_off);
  bf16* Hs = reinterpret_cast<bf16*>(smem + lay.h_off);
  float* stage = reinterpret_cast<float*>(smem + lay.stage_off);
  float* sh_dt = reinterpret_cast<float*>(smem + lay.dt_off);  // [HB][L]
  float* sh_acs = sh_dt + kMaxHeadsPerBlock * L;                // [HB][L]

  const int g = blockIdx.x;
  const int hpg = H / G;
  const int grp = blockIdx.y / (hpg / HB);
  const int h0 = grp * hpg + (blockIdx.y % (hpg / HB)) * HB;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  constexpr int nthreads = L / 16 * 32;
  if (warp == 0) {
    int s = 0, c = 0;
    const bool ok = locate_chunk(b.cu_seqlens, *b.num_seqs, g, lane, s, c);
    if (lane == 0) {
      sh_loc[0] = ok;
      sh_loc[1] = ok ? b.cu_seqlens[s] + c * L : 0;
      sh_loc[2] = ok ? min(L, b.cu_seqlens[s + 1] - b.cu_seqlens[s] - c * L) : 0;
    }
  }
  __syncthreads();
  if (!sh_loc[0]) return;
  const int t0 = sh_loc[1], len = sh_loc[2];
  const int conv_dim = H * P + 2 * G * N;
  const int ldc = lay.ldc, ldm = lay.ldm, ldx = lay.ldx;
  const int vn = N / 8;
  constexpr int vp = P / 8;

  // dt / cumsum of the block's heads, C and B of the group (zero past len).
  for (int i = tid; i < HB * L; i += nthreads) {
    const std::size_t wo = (static_cast<std::size_t>(g) * H + h0) * L + i;
    sh_dt[i] = ws.dt[wo];
    sh_acs[i] = ws.acs[wo];
  }
  for (int i = tid; i < L * vn; i += nthreads) {
    const int l = i / vn, n8 = (i % vn) * 8;
    uint4 bv = make_uint4(0, 0, 0, 0), cv = bv;
    if (l < len) {
      const bf16* row = xbc + static_cast<long long>(t0 + l) * conv_dim + H * P + grp * N + n8;
      bv = *reinterpret_cast<const uint4*>(row);
      cv = *reinterpret_cast<const uint4*>(row + G * N);
    }
    *reinterpret_cast<uint4*>(Bs + l * ldc + n8) = bv;
    *reinterpret_cast<uint4*>(Cs + l * ldc + n8) = cv;
  }
  __syncthreads();
  // C B^T on the lower-triangle tiles, fp32, tile-packed.
  for (int idx = warp; idx < kTriTiles; idx += L / 16) {
    int i, j;
    tri_tile(idx, i, j);
    frag_acc cb;
    wmma::fill_fragment(cb, 0.f);
    for (int k = 0; k < N / 16; ++k) {
      frag_a<wmma::row_major> a;
      frag_b<wmma::col_major> bb;
      wmma::load_matrix_sync(a, Cs + i * 16 * ldc + k * 16, ldc);
      wmma::load_matrix_sync(bb, Bs + j * 16 * ldc + k * 16, ldc);
      wmma::mma_sync(cb, a, bb, cb);
    }
    wmma::store_matrix_sync(CB + idx * 256, cb, 16, wmma::mem_row_major);
  }
  __syncthreads();

  float* my_stage = stage + warp * 256;
  for (int hh = 0; hh < HB; ++hh) {
    const int h = h0 + hh;
    const float* dts = sh_dt + hh * L;
    const float* acs = sh_acs + hh * L;
    // X of this head, its entering state, C scaled by exp(acs_l).
    for (int i = tid; i < L * vp; i += nthreads) {
      const int l = i / vp, p8 = (i % vp) * 8;
      uint4 xv = make_uint4(0, 0, 0, 0);
      if (l < len) xv = *reinterpret_cast<const uint4*>(xbc + static_cast<long long>(t0 + l) * conv_dim + h * P + p8);
      *reinterpret_cast<uint4*>(Xs + l * ldx + p8) = xv;
    }
    const bf16* Hg = ws.states + (static_cast<std::size_t>(g) * H + h) * P * N;
    for (int i = tid; i < P * vn; i += nthreads) {
      const int p = i / vn, n8 = (i % vn) * 8;
      *reinterpret_cast<uint4*>(Hs + p * ldc + n8) =
          *reinterpret_cast<const uint4*>(Hg + static_cast<std::size_t>(p) * N + n8);
    }
    for (int i = tid; i < L * vn; i += nthreads) {
      const int l = i / vn, n8 = (i % vn) * 8;
      uint4 raw = *reinterpret_cast<const uint4*>(Cs + l * ldc + n8);
      const float sc = __expf(acs[l]);
      __nv_bfloat162* hv = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float2 f = __bfloat1622float2(hv[k]);
        hv[k] = __floats2bfloat162_rn(f.x * sc, f.y * sc);
      }
      *reinterpret_cast<uint4*>(Csh + l * ldc + n8) = raw;
    }
    // M = C B^T o exp(acs_l - acs_s) o dt_s, s <= l.
    for (int e = tid; e < kTriTiles * 256; e += nthreads) {
      const int idx = e >> 8, r = (e >> 4) & 15, cc = e & 15;
      int i, j;
      tri_tile(idx, i, j);
      const int l = i * 16 + r, s = j * 16 + cc;
      const float v = s <= l ? CB[e] * __expf(acs[l] - acs[s]) * dts[s] : 0.f;
      Ms[l * ldm + s] = to_bf16(v);
    }
    __syncthreads();
    frag_acc yacc[NP];
#pragma unroll
    for (int j = 0; j < NP; ++j) wmma::fill_fragment(yacc[j], 0.f);
    for (int k = 0; k <= warp; ++k) {
      frag_a<wmma::row_major> a;
      wmma::load_matrix_sync(a, Ms + warp * 16 * ldm + k * 16, ldm);
#pragma unroll
      for (int j = 0; j < NP; ++j) {
        frag_b<wmma::row_major> bb;
        wmma::load_matrix_sync(bb, Xs + k * 16 * ldx + j * 16, ldx);
        wmma::mma_sync(yacc[j], a, bb, yacc[j]);
      }
    }
    for (int k = 0; k < N / 16; ++k) {
      frag_a<wmma::row_major> a;
      wmma::load_matrix_sync(a, Csh + warp * 16 * ldc + k * 16, ldc);
#pragma unroll
      for (int j = 0; j < NP; ++j) {
        frag_b<wmma::col_major> bb;
        wmma::load_matrix_sync(bb, Hs + j * 16 * ldc + k * 16, ldc);
        wmma::mma_sync(yacc[j], a, bb, yacc[j]);
      }
    }
    // Epilogue per 16x16 tile: y = Y + D x, bf16, 8 elements (16 B) per lane.
    const float Dh = Dv[h];
    const int r = lane >> 1, c8 = (lane & 1) * 8;
    const int l = warp * 16 + r;
#pragma unroll
    for (int j = 0; j < NP; ++j) {
      wmma::store_matrix_sync(my_stage, yacc[j], 16, wmma::mem_row_major);
      __syncwarp();
      if (l < len) {
        const uint4 xr = *reinterpret_cast<const uint4*>(Xs + l * ldx + j * 16 + c8);
        const __nv_bfloat162* xv = reinterpret_cast<const __nv_bfloat162*>(&xr);
        uint4 out;
        __nv_bfloat162* ov = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const float2 xf = __bfloat1622float2(xv[k]);
          ov[k] = __floats2bfloat162_rn(my_stage[r * 16 + c8 + 2 * k] + Dh * xf.x,
                                        my_stage[r * 16 + c8 + 2 * k + 1] + Dh * xf.y);
        }
        *reinterpret_cast<uint4*>(y + static_cast<long long>(t0 + l) * H * P + h * P + j * 16 + c8) = out;
      }
      __syncwarp();
    }
    __syncthreads();  // before the next head overwrites X, H, Csh, M
  }
}

int heads_per_block(const mamba_dims& d) {
  const int hpg = d.H / d.G;
  return hpg % 4 == 0 ? 4 : (hpg % 2 == 0 ? 2 : 1);
}

template <int NP>
void launch_output(const bf16* xbc, const float* D, const ws_layout& ws, bf16* y,
                   const batch_view& b, int chunks, const mamba_dims& d, cudaStream_t stream) {
  const out_smem lay = out_smem_layout(16 * NP, d.N);
  PIECEWISE_CUDA_TRY(cudaFuncSetAttribute(ssd_chunk_output<NP>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(lay.bytes)));
  const int hb = heads_per_block(d);
  ssd_chunk_output<NP><<<dim3(chunks, d.H / hb), L / 16 * 32, lay.bytes, stream>>>(
      xbc, D, ws, y, b, d.H, d.N, d.G, hb);
}

std::size_t state_smem_bytes(int N) {
  return sizeof(bf16) * L * (16 + kPad) + sizeof(bf16) * L * (N + kPad) +
         sizeof(float) * (N / 16) * 256 + sizeof(float) * 2 * L;
}

}  // namespace

int ssd_max_chunks(int padded_tokens, int max_seqs) {
  const long long bound = ceil_div(padded_tokens, L) + static_cast<long long>(max_seqs);
  return static_cast<int>(bound < padded_tokens ? bound : padded_tokens);
}

std::size_t ssd_scan_workspace_bytes(int padded_tokens, int max_seqs, const mamba_dims& d) {
  const std::size_t chunks = static_cast<std::size_t>(ssd_max_chunks(padded_tokens, max_seqs));
  return 2 * align256(chunks * d.H * L * sizeof(float)) +
         align256(chunks * d.H * d.P * d.N * sizeof(bf16));
}

void ssd_scan(const bf16* xbc, const bf16* dt_raw, int ld_dt, const float* A_log, const float* D,
              const float* dt_bias, float* ssm_state, bf16* y, void* workspace,
              std::size_t workspace_bytes, const batch_view& batch, const mamba_dims& d,
              float dt_min, float dt_max, cudaStream_t stream) {
  const std::string shape = "H=" + std::to_string(d.H) + " P=" + std::to_string(d.P) +
                            " N=" + std::to_string(d.N) + " G=" + std::to_string(d.G);
  PIECEWISE_EXPECTS(d.P == 32 || d.P == 64 || d.P == 80,
                    "ssd_scan: head dim P={} unsupported (32, 64 or 80) [{}]", d.P, shape);
  PIECEWISE_EXPECTS(d.N >= 16 && d.N <= 128 && d.N % 16 == 0,
                    "ssd_scan: state size N={} unsupported (multiple of 16, <= 128) [{}]", d.N, shape);
  PIECEWISE_EXPECTS(d.H > 0 && d.G > 0 && d.H % d.G == 0, "ssd_scan: bad H/G [{}]", shape);
  PIECEWISE_EXPECTS(xbc && dt_raw && A_log && D && dt_bias && ssm_state && y && workspace,
                    "ssd_scan: null pointer argument [{}]", shape);
  PIECEWISE_EXPECTS((reinterpret_cast<std::uintptr_t>(xbc) & 15u) == 0 &&
                        (reinterpret_cast<std::uintptr_t>(ssm_state) & 31u) == 0 &&
                        (reinterpret_cast<std::uintptr_t>(workspace) & 255u) == 0 &&
                        (reinterpret_cast<std::uintptr_t>(y) & 15u) == 0,
                    "ssd_scan: misaligned xbc (16 B), ssm_state (32 B), workspace (256 B) or y (16 B) [{}]",
                    shape);
  PIECEWISE_EXPECTS(batch.num_seqs && batch.num_tokens && batch.cu_seqlens && batch.slots &&
                        batch.context_lens,
                    "ssd_scan: batch_view has null device pointers");
  const std::size_t need = ssd_scan_workspace_bytes(batch.padded_tokens, batch.max_seqs, d);
  PIECEWISE_EXPECTS(workspace_bytes >= need,
                    "ssd_scan: workspace of {} bytes < {} needed (padded_tokens={}, max_seqs={}) [{}]",
                    workspace_bytes, need, batch.padded_tokens, batch.max_seqs, shape);
  if (batch.padded_tokens == 0 || batch.max_seqs == 0) return;
  const int chunks = ssd_max_chunks(batch.padded_tokens, batch.max_seqs);
  const ws_layout ws = carve(workspace, chunks, d.H);

  ssd_chunk_prep<<<dim3(chunks, d.H), L, 0, stream>>>(dt_raw, ld_dt, A_log, dt_bias, ws, batch,
                                                      d.H, dt_min, dt_max);
  NH_CHECK_LAUNCH("ssd_chunk_prep " + shape);

  const std::size_t st_smem = state_smem_bytes(d.N);
  PIECEWISE_CUDA_TRY(cudaFuncSetAttribute(ssd_chunk_state,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(st_smem)));
  ssd_chunk_state<<<dim3(d.P / 16, d.H, batch.max_seqs), d.N / 16 * 32, st_smem, stream>>>(
      xbc, ws, ssm_state, batch, d.H, d.P, d.N, d.G);
  NH_CHECK_LAUNCH("ssd_chunk_state " + shape);

  switch (d.P) {
    case 32: launch_output<2>(xbc, D, ws, y, batch, chunks, d, stream); break;
    case 64: launch_output<4>(xbc, D, ws, y, batch, chunks, d, stream); break;
    default: launch_output<5>(xbc, D, ws, y, batch, chunks, d, stream); break;
  }
  NH_CHECK_LAUNCH("ssd_chunk_output " + shape);
}

}  // namespace nemotron_h
