#include "toy_model.hpp"

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>

namespace toy {
namespace {

constexpr float kDecay = 0.9f;
constexpr float kMix = 1e-3f;

__global__ void copy_rows(const float* src, float* dst, int n_elems) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n_elems) dst[i] = src[i];
}
__global__ void mlp_kernel(float* h, const float* w, const float* b, int D, int n_elems) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n_elems) {
    int c = i % D;
    h[i] += 0.25f * tanhf(w[c] * h[i] + b[c]);
  }
}
__global__ void side_kernel(const float* x, float* side, int n_elems) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n_elems) side[i] = 0.5f * x[i];
}
__global__ void add_side(float* h, const float* side, int n_elems) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n_elems) h[i] += kMix * side[i];
}
// One block per row, blockDim.x == D (power of two <= 1024): mix_in = h * rsqrt(mean(h^2) + eps).
__global__ void norm_kernel(const float* h, float* mix_in, int D) {
  extern __shared__ float sh[];
  const int r = blockIdx.x, c = threadIdx.x;
  const float v = h[r * D + c];
  sh[c] = v * v;
  __syncthreads();
  for (int s = D / 2; s > 0; s >>= 1) {
    if (c < s) sh[c] += sh[c + s];
    __syncthreads();
  }
  mix_in[r * D + c] = v * rsqrtf(sh[0] / D + 1e-5f);
}
// Causal decayed scan over the real rows; one thread per column.
__global__ void scan_kernel(const float* mix_in, float* mix_out, int D, int real, const int* device_real) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= D) return;
  const int n = device_real != nullptr ? *device_real : real;
  float acc = 0.f;
  for (int r = 0; r < n; ++r) {
    acc = kDecay * acc + mix_in[r * D + c];
    mix_out[r * D + c] = acc;
  }
}
// Causal running mean over the real rows (count from device memory); one thread per column.
__global__ void mean_kernel(const float* mix_in, float* mix_out, int D, const int* device_real) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= D) return;
  const int n = *device_real;
  float acc = 0.f;
  for (int r = 0; r < n; ++r) {
    acc += mix_in[r * D + c];
    mix_out[r * D + c] = acc / static_cast<float>(r + 1);
  }
}
__global__ void colsum_kernel(const float* mix_out, float* colsum, int D, int rows) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= D) return;
  float s = 0.f;
  for (int r = 0; r < rows; ++r) s += mix_out[r * D + c];
  colsum[c] = s;
}
__global__ void post_kernel(float* h, const float* mix_out, const float* colsum, int D, int n_elems) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n_elems) h[i] += mix_out[i] + kMix * colsum[i % D];
}
__global__ void fill_nan(float* p, int n_elems) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n_elems) p[i] = __int_as_float(0x7fc00000);
}
void CUDART_CB host_noop(void*) {}

int blocks(int n) { return (n + 255) / 256; }

}  // namespace

model::model(const options& o)
    : opts_(o), layers_(static_cast<int>(o.pattern.size())),
      arena_(static_cast<std::size_t>(o.max_tokens) * o.hidden * sizeof(float) * 8 +
             static_cast<std::size_t>(o.pattern.size()) * 2 * o.hidden * sizeof(float) + 65536),
      table_(static_cast<int>(o.pattern.size())) {
  const std::size_t rows = static_cast<std::size_t>(o.max_tokens) * o.hidden;
  x_in_ = arena_.allocate<float>(rows, "x_in");
  h_ = arena_.allocate<float>(rows, "h");
  mix_in_ = arena_.allocate<float>(rows, "mix_in");
  mix_out_ = arena_.allocate<float>(rows, "mix_out");
  spare_mix_out_ = arena_.allocate<float>(rows, "mix_out (spare)");
  out_ = arena_.allocate<float>(rows, "out");
  side_ = arena_.allocate<float>(rows, "side");
  colsum_ = arena_.allocate<float>(static_cast<std::size_t>(o.hidden), "colsum");
  weights_ = arena_.allocate<float>(static_cast<std::size_t>(layers_) * 2 * o.hidden, "weights");
  PIECEWISE_CUDA_TRY(cudaMemset(arena_.data(), 0, arena_.used()));

  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  host_w_.resize(static_cast<std::size_t>(layers_) * 2 * o.hidden);
  for (auto& v : host_w_) v = u(rng);
  PIECEWISE_CUDA_TRY(cudaMemcpy(weights_, host_w_.data(), host_w_.size() * sizeof(float), cudaMemcpyHostToDevice));
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());  // see write_input()
  host_in_.assign(rows, 0.f);

  const std::size_t row_bytes = static_cast<std::size_t>(o.hidden) * sizeof(float);
  const piecewise::row_buffer mix_out_buf{"mix_out", mix_out_, row_bytes, 0, o.max_tokens, piecewise::element_type::f32};
  for (int l = 0; l < layers_; ++l) {
    const char c = o.pattern[static_cast<std::size_t>(l)];
    if (c == 'M') {
      table_.set_split(l, piecewise::split_point{
                              "mamba",
                              [this](const piecewise::split_args& a) {
                                if (throw_in_callback) throw std::runtime_error("injected callback failure");
                                const bool safe = opts_.mamba_capture_safe;
                                scan_kernel<<<blocks(opts_.hidden), 256, 0, a.stream>>>(
                                    mix_in_, mix_out_, opts_.hidden, a.real_tokens,
                                    safe ? a.device_real_tokens : nullptr);
                                PIECEWISE_CHECK_LAUNCH();
                              },
                              o.mamba_capture_safe,
                              {mix_out_buf}});
    } else if (c == '*') {
      table_.set_split(l, piecewise::split_point{
                              "attention",
                              [this](const piecewise::split_args& a) {
                                if (throw_in_callback) throw std::runtime_error("injected callback failure");
                                mean_kernel<<<blocks(opts_.hidden), 256, 0, a.stream>>>(
                                    mix_in_, mix_out_, opts_.hidden, a.device_real_tokens);
                                PIECEWISE_CHECK_LAUNCH();
                              },
                              true,
                              {mix_out_buf}});
    } else if (c != '-') {
      throw piecewise::config_error("toy model: unknown layer char");
    }
  }
  table_.declare_input(piecewise::row_buffer{"x_in", x_in_, row_bytes, 0, o.max_tokens, piecewise::element_type::f32});
  table_.declare_output(piecewise::row_buffer{"out", out_, row_bytes, 0, o.max_tokens, piecewise::element_type::f32});
}

void model::layer_mlp(int l, piecewise::forward_context& ctx) {
  const int D = opts_.hidden;
  const int n = ctx.padded_tokens() * D;
  const float* w = weights_ + static_cast<std::size_t>(l) * 2 * D;
  cudaStream_t s = ctx.stream();
  if (opts_.fork_join) {
    fork_.record(s);
    fork_.wait(side_stream_);
    side_kernel<<<blocks(n), 256, 0, side_stream_>>>(x_in_, side_, n);
    PIECEWISE_CHECK_LAUNCH();
    join_.record(side_stream_);
  }
  for (int k = 0; k < opts_.mlp_kernels; ++k) {
    mlp_kernel<<<blocks(n), 256, 0, s>>>(h_, w, w + D, D, n);
    PIECEWISE_CHECK_LAUNCH();
  }
  if (opts_.fork_join) {
    join_.wait(s);
    add_side<<<blocks(n), 256, 0, s>>>(h_, side_, n);
    PIECEWISE_CHECK_LAUNCH();
  }
}

void model::pre_mix(piecewise::forward_context& ctx) {
  norm_kernel<<<ctx.padded_tokens(), opts_.hidden, opts_.hidden * sizeof(float), ctx.stream()>>>(h_, mix_in_, opts_.hidden);
  PIECEWISE_CHECK_LAUNCH();
}

void model::post_mix(piecewise::forward_context& ctx) {
  const int D = opts_.hidden;
  colsum_kernel<<<blocks(D), 256, 0, ctx.stream()>>>(mix_out_, colsum_, D, ctx.padded_tokens());
  PIECEWISE_CHECK_LAUNCH();
  const int n = ctx.padded_tokens() * D;
  post_kernel<<<blocks(n), 256, 0, ctx.stream()>>>(h_, mix_out_, colsum_, D, n);
  PIECEWISE_CHECK_LAUNCH();
}

piecewise::forward_fn model::forward() {
  return [this](piecewise::forward_context& ctx) {
    if (ctx.padded_tokens() == throw_in_forward_at_padded) throw std::runtime_error("injected forward failure");
    cudaStream_t s = ctx.stream();
    if (sync_in_forward) PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
    if (host_node_in_forward) PIECEWISE_CUDA_TRY(cudaLaunchHostFunc(s, host_noop, nullptr));
    const int n = ctx.padded_tokens() * opts_.hidden;
    copy_rows<<<blocks(n), 256, 0, s>>>(x_in_, h_, n);
    PIECEWISE_CHECK_LAUNCH();
    if (during_forward) during_forward();
    if (ctx.padded_tokens() == bad_launch_at_padded) {
      copy_rows<<<blocks(n), 4096, 0, s>>>(x_in_, h_, n);  // 4096 threads a block: invalid
      PIECEWISE_CHECK_LAUNCH();
    }
    bool skipped = false;
    for (int l = 0; l < layers_; ++l) {
      const char c = opts_.pattern[static_cast<std::size_t>(l)];
      if (c == '-') {
        layer_mlp(l, ctx);
        continue;
      }
      pre_mix(ctx);
      if (!skipped && ctx.padded_tokens() == skip_split_at_padded) {
        skipped = true;
      } else {
        ctx.split(l);
      }
      post_mix(ctx);
    }
    copy_rows<<<blocks(n), 256, 0, s>>>(h_, out_, n);
    PIECEWISE_CHECK_LAUNCH();
  };
}

void model::write_input(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  const std::size_t cnt = static_cast<std::size_t>(n) * opts_.hidden;
  for (std::size_t i = 0; i < cnt; ++i) host_in_[i] = g(rng);
  PIECEWISE_CUDA_TRY(cudaMemcpy(x_in_, host_in_.data(), cnt * sizeof(float), cudaMemcpyHostToDevice));
  // A pageable cudaMemcpy to the device may return before its DMA lands; kernels on
  // non-blocking streams do not wait for it.
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
}

std::vector<float> model::read_output(int n, cudaStream_t s) {
  PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
  std::vector<float> v(static_cast<std::size_t>(n) * opts_.hidden);
  PIECEWISE_CUDA_TRY(cudaMemcpy(v.data(), out_, v.size() * sizeof(float), cudaMemcpyDeviceToHost));
  return v;
}

void model::poison_padding(int n) {
  const int D = opts_.hidden;
  const int cnt = (opts_.max_tokens - n) * D;
  if (cnt <= 0) return;
  for (float* p : {x_in_, h_, mix_in_, mix_out_}) fill_nan<<<blocks(cnt), 256>>>(p + static_cast<std::size_t>(n) * D, cnt);
  PIECEWISE_CHECK_LAUNCH();
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
}

void model::move_mix_out() {
  const std::size_t bytes = static_cast<std::size_t>(opts_.max_tokens) * opts_.hidden * sizeof(float);
  PIECEWISE_CUDA_TRY(cudaMemcpy(spare_mix_out_, mix_out_, bytes, cudaMemcpyDeviceToDevice));
  std::swap(mix_out_, spare_mix_out_);
  table_.rebind("mix_out", mix_out_);
}

std::vector<float> model::reference(int n) const {
  const int D = opts_.hidden;
  const std::size_t cnt = static_cast<std::size_t>(n) * D;
  std::vector<float> h(host_in_.begin(), host_in_.begin() + static_cast<std::ptrdiff_t>(cnt));
  std::vector<float> mix_in(cnt), mix_out(cnt), colsum(static_cast<std::size_t>(D));
  for (int l = 0; l < layers_; ++l) {
    const char c = opts_.pattern[static_cast<std::size_t>(l)];
    const float* w = host_w_.data() + static_cast<std::size_t>(l) * 2 * D;
    if (c == '-') {
      for (int k = 0; k < opts_.mlp_kernels; ++k)
        for (std::size_t i = 0; i < cnt; ++i) h[i] += 0.25f * std::tanh(w[i % D] * h[i] + w[D + i % D]);
      if (opts_.fork_join)
        for (std::size_t i = 0; i < cnt; ++i) h[i] += kMix * (0.5f * host_in_[i]);
      continue;
    }
    for (int r = 0; r < n; ++r) {
      double ss = 0;
      for (int j = 0; j < D; ++j) ss += static_cast<double>(h[r * D + j]) * h[r * D + j];
      const float rs = static_cast<float>(1.0 / std::sqrt(ss / D + 1e-5));
      for (int j = 0; j < D; ++j) mix_in[r * D + j] = h[r * D + j] * rs;
    }
    for (int j = 0; j < D; ++j) {
      float acc = 0;
      for (int r = 0; r < n; ++r) {
        if (c == 'M') {
          acc = kDecay * acc + mix_in[r * D + j];
          mix_out[r * D + j] = acc;
        } else {
          acc += mix_in[r * D + j];
          mix_out[r * D + j] = acc / static_cast<float>(r + 1);
        }
      }
      float s = 0;
      for (int r = 0; r < n; ++r) s += mix_out[r * D + j];  // padded rows are zero
      colsum[static_cast<std::size_t>(j)] = s;
    }
    for (std::size_t i = 0; i < cnt; ++i) h[i] += mix_out[i] + kMix * colsum[i % D];
  }
  return h;
}

}  // namespace toy
