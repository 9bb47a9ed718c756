// A toy model with a NemotronH-like layer pattern, for the runner's GPU tests and benches.
//
// Hidden state h: [rows, D] float. Per layer:
//   '-' (null entry, captured whole): `mlp_kernels` launches of h += 0.25 * tanh(w_l * h + b_l)
//   'M' (split point "mamba", eager-only unless mamba_capture_safe): mix_in = h * rs(h);
//        split: causal scan over the REAL rows, mix_out[r] = 0.9 * mix_out[r-1] + mix_in[r];
//        then h += mix_out + 1e-3 * colsum(mix_out over ALL padded rows)
//   '*' (split point "attention", capture-safe): as 'M' with a causal running mean over the
//        real rows, the real count read from device memory.
// The colsum reads every padded row: garbage left in the padding of mix_out would reach
// every real row. The library's zeroing of declared split outputs prevents that.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "piecewise/piecewise.hpp"

namespace toy {

struct options {
  std::string pattern = "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-";  // 9B: 56 layers
  int hidden = 64;
  int max_tokens = 512;
  int mlp_kernels = 1;             ///< kernels per '-' layer
  bool mamba_capture_safe = false; ///< the 'M' scan reads the real count from device memory
  bool fork_join = false;          ///< '-' layers fork one kernel to a side stream and join it
};

class model {
 public:
  explicit model(const options& o);
  model(const model&) = delete;
  model& operator=(const model&) = delete;

  piecewise::segment_table& table() noexcept { return table_; }
  piecewise::forward_fn forward();
  const options& opts() const noexcept { return opts_; }

  /// Fresh random input rows [0, n) (seeded), written synchronously.
  void write_input(int n, unsigned seed);
  /// Output rows [0, n), synchronizing `s`.
  std::vector<float> read_output(int n, cudaStream_t s);
  /// Fills rows [n, max_tokens) of the input, h, mix_in and mix_out with NaN.
  void poison_padding(int n);
  /// Moves mix_out to a new address (copying its content) and rebinds it in the table.
  void move_mix_out();
  /// CPU reference (float) of the forward for the current input, rows [0, n).
  std::vector<float> reference(int n) const;

  float* mix_out() const noexcept { return mix_out_; }
  // Test hooks.
  int throw_in_forward_at_padded = -1;  ///< the forward throws when padded_tokens == this
  int skip_split_at_padded = -1;        ///< the forward skips its first split when padded == this
  bool throw_in_callback = false;       ///< split callbacks throw
  bool sync_in_forward = false;         ///< the forward synchronizes its stream (illegal in capture)
  bool host_node_in_forward = false;    ///< the forward launches a host function
  int bad_launch_at_padded = -1;        ///< a kernel launch with an invalid grid when padded == this
  std::function<void()> during_forward; ///< called in the middle of every forward (e.g. inside capture)

 private:
  void layer_mlp(int l, piecewise::forward_context& ctx);
  void pre_mix(piecewise::forward_context& ctx);
  void post_mix(piecewise::forward_context& ctx);

  options opts_;
  int layers_;
  piecewise::device_arena arena_;
  piecewise::segment_table table_;
  float *x_in_, *h_, *mix_in_, *mix_out_, *colsum_, *out_, *side_, *weights_;
  float* spare_mix_out_;
  std::vector<float> host_in_;
  std::vector<float> host_w_;
  piecewise::stream side_stream_;
  piecewise::event fork_, join_;
};

/// True when a and b hold the same floats, bit for bit.
inline bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// ||a - ref|| / ||ref||, summed in double.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

/// Runner options with the requested mode and the runner's name.
inline piecewise::runner_options opts(piecewise::mode m, const char* name) {
  piecewise::runner_options o;
  o.requested = m;
  o.name = name;
  return o;
}

}  // namespace toy
