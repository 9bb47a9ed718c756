// RMSNorm kernels (see norms.cuh).
#include "kernels/pdl.cuh"
#include "kernels/norms.cuh"
#include "kernels/fp8_device.cuh"

#include <cstdint>
#include <string>

namespace nemotron_h {

namespace {

constexpr int kNormThreads = 256;
constexpr int kRegThreads = 512;  // most threads per row of the register-resident kernels

__device__ inline float block_sum(float v, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // red may be reused by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.f;
  const int nw = blockDim.x >> 5;
  for (int i = 0; i < nw; ++i) s += red[i];
  return s;
}

union pack8 {
  uint4 u;
  bf16 h[8];
};
union pack4 {
  uint2 u;
  bf16 h[4];
};

// Where a norm's outputs go, each value already rounded to bf16: bf16 rows (stride ld
// elements), or the e4m3 quantization of those bf16 values with a static scale into byte rows
// (stride ld bytes), which is the bf16 kernel followed by quantize_fp8_rows bit for bit. A
// kernel calls bind() once at its start (the e4m3 writer reads the scale and takes its
// reciprocal there, off the path from the reduction to the stores) and stores through the result.
struct out_bf16 {
  bf16* p;
  int ld;
  __device__ out_bf16 bind() const { return *this; }
  __device__ void store8(int r, int col, const pack8& v) const {
    *reinterpret_cast<uint4*>(p + static_cast<std::size_t>(r) * ld + col) = v.u;
  }
  __device__ void store4(int r, int col, const pack4& v) const {
    *reinterpret_cast<uint2*>(p + static_cast<std::size_t>(r) * ld + col) = v.u;
  }
};
struct out_e4m3 {
  std::uint8_t* p;
  int ld;
  const float* scale;
  struct bound {
    std::uint8_t* p;
    int ld;
    e4m3_quantizer quant;
    __device__ void store8(int r, int col, const pack8& v) const {
      union {
        uint2 u;
        std::uint8_t b[8];
      } q;
#pragma unroll
      for (int j = 0; j < 8; ++j) q.b[j] = quant(to_float(v.h[j]));
      *reinterpret_cast<uint2*>(p + static_cast<std::size_t>(r) * ld + col) = q.u;
    }
    __device__ void store4(int r, int col, const pack4& v) const {
      union {
        unsigned u;
        std::uint8_t b[4];
      } q;
#pragma unroll
      for (int j = 0; j < 4; ++j) q.b[j] = quant(to_float(v.h[j]));
      *reinterpret_cast<unsigned*>(p + static_cast<std::size_t>(r) * ld + col) = q.u;
    }
  };
  __device__ bound bind() const { return bound{p, ld, e4m3_quantizer(__ldg(scale))}; }
};

// One block per row; two passes over the row (the second hits L1/L2).
template <typename Out>
__global__ void rmsnorm_kernel(const bf16* x, bf16* residual,
                               const bf16* __restrict__ w, Out y, int rows, int D, float eps,
                               const int* num_rows, bool fused) {
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();  // the GEMV after a norm streams its first weights meanwhile
  __shared__ float red[32];
  const int r = blockIdx.x;
  if (r >= rows || (num_rows != nullptr && r >= *num_rows)) return;
  const auto out_w = y.bind();
  const int nv = D / 8;
  const std::size_t base = static_cast<std::size_t>(r) * D;
  const uint4* xr = x != nullptr ? reinterpret_cast<const uint4*>(x + base) : nullptr;
  uint4* rr = fused ? reinterpret_cast<uint4*>(residual + base) : nullptr;
  float ss = 0.f;
  for (int i = threadIdx.x; i < nv; i += blockDim.x) {
    pack8 a;
    if (fused) {
      a.u = rr[i];
      if (xr != nullptr) {
        pack8 b;
        b.u = xr[i];
#pragma unroll
        for (int j = 0; j < 8; ++j) a.h[j] = to_bf16(to_float(a.h[j]) + to_float(b.h[j]));
        rr[i] = a.u;
      }
    } else {
      a.u = xr[i];
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float f = to_float(a.h[j]);
      ss += f * f;
    }
  }
  const float inv = rsqrtf(block_sum(ss, red) / static_cast<float>(D) + eps);
  const uint4* src = fused ? reinterpret_cast<const uint4*>(residual + base) : xr;
  const uint4* wr = reinterpret_cast<const uint4*>(w);
  for (int i = threadIdx.x; i < nv; i += blockDim.x) {
    pack8 a, b, o;
    a.u = src[i];
    b.u = wr[i];
#pragma unroll
    for (int j = 0; j < 8; ++j) o.h[j] = to_bf16(to_float(b.h[j]) * (to_float(a.h[j]) * inv));
    out_w.store8(r, i * 8, o);
  }
}

// Register-resident variant: one block per row, each thread owns VPT 16-byte pieces of the
// row (pieces tid, tid + blockDim, ...), loaded together with the weights before the
// reduction, so a row costs one round trip to memory instead of two passes; many threads per
// row when rows are few.
template <int VPT, typename Out>
__global__ void rmsnorm_reg_kernel(const bf16* x, bf16* residual, const bf16* __restrict__ w,
                                   Out y, int rows, int D, float eps, const int* num_rows,
                                   bool fused) {
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();  // the GEMV after a norm streams its first weights meanwhile
  __shared__ float red[32];
  const int r = blockIdx.x;
  if (r >= rows || (num_rows != nullptr && r >= *num_rows)) return;
  const auto out_w = y.bind();
  const int nv = D / 8;
  const std::size_t base = static_cast<std::size_t>(r) * D;
  const uint4* xr = x != nullptr ? reinterpret_cast<const uint4*>(x + base) : nullptr;
  uint4* rr = fused ? reinterpret_cast<uint4*>(residual + base) : nullptr;
  const uint4* wr = reinterpret_cast<const uint4*>(w);
  const bool add = fused && xr != nullptr;
  pack8 a[VPT], b[VPT], wv[VPT];
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < nv) {
      a[k].u = fused ? rr[i] : xr[i];
      if (add) b[k].u = xr[i];
      wv[k].u = wr[i];
    }
  }
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < nv) {
      if (add) {
#pragma unroll
        for (int j = 0; j < 8; ++j) a[k].h[j] = to_bf16(to_float(a[k].h[j]) + to_float(b[k].h[j]));
        rr[i] = a[k].u;
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float f = to_float(a[k].h[j]);
        ss += f * f;
      }
    }
  }
  const float inv = rsqrtf(block_sum(ss, red) / static_cast<float>(D) + eps);
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < nv) {
      pack8 o;
#pragma unroll
      for (int j = 0; j < 8; ++j) o.h[j] = to_bf16(to_float(wv[k].h[j]) * (to_float(a[k].h[j]) * inv));
      out_w.store8(r, i * 8, o);
    }
  }
}

__device__ inline void load4(const float* p, float* v) {
  const float4 f = *reinterpret_cast<const float4*>(p);
  v[0] = f.x;
  v[1] = f.y;
  v[2] = f.z;
  v[3] = f.w;
}
__device__ inline void load4(const bf16* p, float* v) {
  union {
    uint2 u;
    bf16 h[4];
  } t;
  t.u = *reinterpret_cast<const uint2*>(p);
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = to_float(t.h[j]);
}

// One block per (row, group); g is kept in shared memory between the two passes.
template <typename Y, typename Out>
__global__ void gated_rmsnorm_kernel(const Y* __restrict__ y, int ldy, const bf16* __restrict__ z,
                                     int ldz, const bf16* __restrict__ w, Out out, int rows, int gs,
                                     float eps, const int* num_rows) {
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();  // the GEMV after a norm streams its first weights meanwhile
  extern __shared__ float g_s[];
  __shared__ float red[32];
  const int r = blockIdx.x, grp = blockIdx.y;
  if (r >= rows || (num_rows != nullptr && r >= *num_rows)) return;
  const auto out_w = out.bind();
  const int c0 = grp * gs;
  const Y* yr = y + static_cast<std::size_t>(r) * ldy + c0;
  const bf16* zr = z + static_cast<std::size_t>(r) * ldz + c0;
  float ss = 0.f;
  for (int i = threadIdx.x * 4; i < gs; i += blockDim.x * 4) {
    float yv[4], zv[4];
    load4(yr + i, yv);
    load4(zr + i, zv);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float g = yv[j] * (zv[j] / (1.f + __expf(-zv[j])));
      g_s[i + j] = g;
      ss += g * g;
    }
  }
  const float inv = rsqrtf(block_sum(ss, red) / static_cast<float>(gs) + eps);
  for (int i = threadIdx.x * 4; i < gs; i += blockDim.x * 4) {
    float wv[4];
    load4(w + c0 + i, wv);
    pack4 o;
#pragma unroll
    for (int j = 0; j < 4; ++j) o.h[j] = to_bf16(wv[j] * (g_s[i + j] * inv));
    out_w.store4(r, c0 + i, o);
  }
}

// Register-resident variant: one block per (row, group); thread t owns the 4-channel pieces
// t, t + blockDim, ... of the group (VPT of them), whose y, z and w are all loaded before the
// reduction (one round trip to memory; g never goes to shared memory).
template <typename Y, int VPT, typename Out>
__global__ void gated_rmsnorm_reg_kernel(const Y* __restrict__ y, int ldy, const bf16* __restrict__ z,
                                         int ldz, const bf16* __restrict__ w, Out out, int rows, int gs,
                                         float eps, const int* num_rows) {
  pdl_wait();  // launched with launch_pdl: the previous kernel's writes first
  pdl_launch_dependents();  // the GEMV after a norm streams its first weights meanwhile
  __shared__ float red[32];
  const int r = blockIdx.x, grp = blockIdx.y;
  if (r >= rows || (num_rows != nullptr && r >= *num_rows)) return;
  const auto out_w = out.bind();
  const int c0 = grp * gs;
  const Y* yr = y + static_cast<std::size_t>(r) * ldy + c0;
  const bf16* zr = z + static_cast<std::size_t>(r) * ldz + c0;
  float g[VPT][4], wv[VPT][4];
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = (threadIdx.x + k * blockDim.x) * 4;
    if (i < gs) {
      float zv[4];
      load4(yr + i, g[k]);
      load4(zr + i, zv);
      load4(w + c0 + i, wv[k]);
#pragma unroll
      for (int j = 0; j < 4; ++j) g[k][j] = g[k][j] * (zv[j] / (1.f + __expf(-zv[j])));
    }
  }
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < VPT; ++k)
    if ((threadIdx.x + k * blockDim.x) * 4 < gs) {
#pragma unroll
      for (int j = 0; j < 4; ++j) ss += g[k][j] * g[k][j];
    }
  const float inv = rsqrtf(block_sum(ss, red) / static_cast<float>(gs) + eps);
#pragma unroll
  for (int k = 0; k < VPT; ++k) {
    const int i = (threadIdx.x + k * blockDim.x) * 4;
    if (i < gs) {
      pack4 o;
#pragma unroll
      for (int j = 0; j < 4; ++j) o.h[j] = to_bf16(wv[k][j] * (g[k][j] * inv));
      out_w.store4(r, c0 + i, o);
    }
  }
}

bool aligned(const void* p, int bytes) {
  return (reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(bytes)) == 0;
}

void require(bool cond, const std::string& msg) {
  if (!cond) throw piecewise::config_error(msg);
}
// `y_ok`: the output's own alignment / stride check, done by the caller's overload.
template <typename Out>
void launch_rmsnorm(const bf16* x, bf16* residual, const bf16* w, Out y, bool y_ok, int rows, int D,
                    float eps, cudaStream_t stream, const int* num_rows, bool fused,
                    const char* name) {
  const std::string shape = std::string(name) + " (rows=" + std::to_string(rows) +
                            ", D=" + std::to_string(D) + ")";
  require(rows >= 0 && D > 0 && D % 8 == 0, shape + ": D must be a positive multiple of 8");
  require(aligned(x, 16) && aligned(residual, 16) && aligned(w, 16) && y_ok,
          shape + ": pointers must be 16-byte aligned (an e4m3 output 8-byte aligned)");
  if (rows == 0) return;
  // Register-resident kernel: at most kRegVecs 16-byte pieces per thread, up to kRegThreads
  // threads a row; longer rows take the two-pass kernel.
  const int nv = D / 8;
  const int vpt = nv <= kRegThreads ? 1 : nv <= 2 * kRegThreads ? 2 : nv <= 4 * kRegThreads ? 4 : 0;
  if (vpt > 0) {
    const int threads = ceil_div(ceil_div(nv, vpt), 32) * 32;
    switch (vpt) {
      case 1: launch_pdl(name, rmsnorm_reg_kernel<1, Out>, rows, threads, 0, stream, x, residual, w, y, rows, D, eps, num_rows, fused); break;
      case 2: launch_pdl(name, rmsnorm_reg_kernel<2, Out>, rows, threads, 0, stream, x, residual, w, y, rows, D, eps, num_rows, fused); break;
      default: launch_pdl(name, rmsnorm_reg_kernel<4, Out>, rows, threads, 0, stream, x, residual, w, y, rows, D, eps, num_rows, fused); break;
    }
  } else {
    int threads = kNormThreads;
    while (threads > 32 && threads / 2 >= D / 8) threads /= 2;
    launch_pdl(name, rmsnorm_kernel<Out>, rows, threads, 0, stream, x, residual, w, y, rows, D, eps, num_rows, fused);
  }
  NH_CHECK_LAUNCH(shape);
}

template <typename Y, typename Out>
void launch_gated(const Y* y, int ldy, const bf16* z, int ldz, const bf16* w, Out out, bool out_ok,
                  int rows, int d_inner, int G, float eps, cudaStream_t stream, const int* num_rows,
                  const char* name) {
  const std::string shape = std::string(name) + " (rows=" + std::to_string(rows) +
                            ", d_inner=" + std::to_string(d_inner) + ", G=" + std::to_string(G) + ")";
  require(G > 0 && d_inner > 0 && d_inner % G == 0 && (d_inner / G) % 4 == 0,
          shape + ": d_inner / G must be a positive multiple of 4");
  require(ldy % 4 == 0 && ldz % 4 == 0 && out.ld % 4 == 0 && ldy >= d_inner && ldz >= d_inner &&
              out.ld >= d_inner,
          shape + ": row strides must be >= d_inner and multiples of 4");
  require(aligned(y, 4 * sizeof(Y)) && aligned(z, 8) && aligned(w, 8) && out_ok,
          shape + ": misaligned pointer");
  if (rows == 0) return;
  const int gs = d_inner / G;
  const int nv = gs / 4;
  const int vpt = nv <= kRegThreads ? 1 : nv <= 2 * kRegThreads ? 2 : nv <= 4 * kRegThreads ? 4 : 0;
  if (vpt > 0) {
    const int threads = ceil_div(ceil_div(nv, vpt), 32) * 32;
    const dim3 grid(rows, G);
    switch (vpt) {
      case 1:
        launch_pdl(name, gated_rmsnorm_reg_kernel<Y, 1, Out>, grid, threads, 0, stream, y, ldy, z, ldz, w, out, rows, gs, eps, num_rows);
        break;
      case 2:
        launch_pdl(name, gated_rmsnorm_reg_kernel<Y, 2, Out>, grid, threads, 0, stream, y, ldy, z, ldz, w, out, rows, gs, eps, num_rows);
        break;
      default:
        launch_pdl(name, gated_rmsnorm_reg_kernel<Y, 4, Out>, grid, threads, 0, stream, y, ldy, z, ldz, w, out, rows, gs, eps, num_rows);
        break;
    }
    NH_CHECK_LAUNCH(shape);
    return;
  }
  const std::size_t smem = static_cast<std::size_t>(gs) * sizeof(float);
  require(smem <= 48 * 1024, shape + ": group too large for shared memory");
  int threads = 256;
  while (threads > 32 && threads / 2 >= gs / 4) threads /= 2;
  launch_pdl(name, gated_rmsnorm_kernel<Y, Out>, dim3(rows, G), threads, smem, stream, y, ldy, z, ldz, w, out, rows,
             gs, eps, num_rows);
  NH_CHECK_LAUNCH(shape);
}

template <typename Y>
void launch_gated_fp8(const Y* y, int ldy, const bf16* z, int ldz, const bf16* w, const float* scale, std::uint8_t* q,
                      int ldq, int rows, int d_inner, int G, float eps, cudaStream_t stream, const int* num_rows) {
  require(scale != nullptr && q != nullptr, "gated_rmsnorm_fp8: the output and its scale must be given");
  launch_gated(y, ldy, z, ldz, w, out_e4m3{q, ldq, scale}, aligned(q, 4), rows, d_inner, G, eps, stream, num_rows,
               "gated_rmsnorm_fp8");
}

}  // namespace

void rmsnorm(const bf16* x, const bf16* w, bf16* y, int rows, int D, float eps,
             cudaStream_t stream, const int* num_rows) {
  launch_rmsnorm(x, nullptr, w, out_bf16{y, D}, aligned(y, 16), rows, D, eps, stream, num_rows, false, "rmsnorm");
}

void add_rmsnorm(const bf16* x, bf16* residual, const bf16* w, bf16* y, int rows, int D,
                 float eps, cudaStream_t stream, const int* num_rows) {
  launch_rmsnorm(x, residual, w, out_bf16{y, D}, aligned(y, 16), rows, D, eps, stream, num_rows, true,
                 "add_rmsnorm");
}

void rmsnorm_fp8(const bf16* x, const bf16* w, const float* scale, std::uint8_t* q, int rows, int D, float eps,
                 cudaStream_t stream, const int* num_rows) {
  require(scale != nullptr && q != nullptr, "rmsnorm_fp8: the output and its scale must be given");
  launch_rmsnorm(x, nullptr, w, out_e4m3{q, D, scale}, aligned(q, 8), rows, D, eps, stream, num_rows, false,
                 "rmsnorm_fp8");
}

void gated_rmsnorm(const float* y, int ldy, const bf16* z, int ldz, const bf16* w, bf16* out,
                   int ldo, int rows, int d_inner, int G, float eps, cudaStream_t stream,
                   const int* num_rows) {
  launch_gated(y, ldy, z, ldz, w, out_bf16{out, ldo}, aligned(out, 8), rows, d_inner, G, eps, stream, num_rows,
               "gated_rmsnorm");
}

void gated_rmsnorm(const bf16* y, int ldy, const bf16* z, int ldz, const bf16* w, bf16* out,
                   int ldo, int rows, int d_inner, int G, float eps, cudaStream_t stream,
                   const int* num_rows) {
  launch_gated(y, ldy, z, ldz, w, out_bf16{out, ldo}, aligned(out, 8), rows, d_inner, G, eps, stream, num_rows,
               "gated_rmsnorm");
}

void gated_rmsnorm_fp8(const float* y, int ldy, const bf16* z, int ldz, const bf16* w, const float* scale,
                       std::uint8_t* q, int ldq, int rows, int d_inner, int G, float eps, cudaStream_t stream,
                       const int* num_rows) {
  launch_gated_fp8(y, ldy, z, ldz, w, scale, q, ldq, rows, d_inner, G, eps, stream, num_rows);
}

void gated_rmsnorm_fp8(const bf16* y, int ldy, const bf16* z, int ldz, const bf16* w, const float* scale,
                       std::uint8_t* q, int ldq, int rows, int d_inner, int G, float eps, cudaStream_t stream,
                       const int* num_rows) {
  launch_gated_fp8(y, ldy, z, ldz, w, scale, q, ldq, rows, d_inner, G, eps, stream, num_rows);
}

}  // namespace nemotron_h
