// Whole-model CPU forward (float64) built from the nemotron_h::ref building blocks.
#include "model/cpu_forward.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "model/layer_kinds.hpp"
#include "model/quant_formats.hpp"
#include "piecewise/error.hpp"
#include "reference/reference.hpp"

namespace nemotron_h {

ref::moe_routing moe_routing_of(const model_config& c) {
  ref::moe_routing r;
  r.num_experts = c.n_routed_experts;
  r.top_k = c.num_experts_per_tok;
  r.n_group = c.n_group;
  r.topk_group = c.topk_group;
  r.norm_topk_prob = c.norm_topk_prob;
  r.routed_scaling_factor = c.routed_scaling_factor;
  return r;
}

namespace {

/// The static activation scale the reference applies: FP8 weights with an input scale only.
float fp8_input_scale(const host_tensor& t) {
  return t.type() == dtype::fp8_e4m3 && t.scales && t.scales->input > 0 ? t.scales->input : 0.0f;
}

}  // namespace

ref::moe_layer_ref moe_layer_of(const model_config& c, const cpu_model::layer& L) {
  PIECEWISE_EXPECTS(L.kind == layer_kind::moe, "moe_layer_of: a {} layer is not an MoE layer", kind_info(L.kind).name);
  ref::moe_layer_ref w;
  w.gate = L.get("mixer.gate.weight").data();
  w.bias = L.get("mixer.gate.e_score_correction_bias").data();
  w.up = L.get("mixer.experts.up_proj").data();
  w.down = L.get("mixer.experts.down_proj").data();
  w.shared_up = L.get("mixer.shared_experts.up_proj.weight").data();
  w.shared_down = L.get("mixer.shared_experts.down_proj.weight").data();
  if (c.latent_moe()) {
    w.fc1_latent = L.get("mixer.fc1_latent_proj.weight").data();
    w.fc2_latent = L.get("mixer.fc2_latent_proj.weight").data();
  }
  w.F = c.moe_intermediate_size;
  w.Fs = c.moe_shared_expert_intermediate_size;
  w.W = c.moe_width();
  return w;
}

cpu_model::cpu_model(model_config config, const model_weights& w) : config_(std::move(config)) {
  config_.validate();
  w.check_shapes(config_);
  embeddings = w.embeddings().to_f64();
  norm_f = w.norm_f().to_f64();
  lm_head = w.lm_head().to_f64();
  lm_head_input_scale = fp8_input_scale(w.lm_head());
  layers.resize(w.layers.size());
  for (std::size_t i = 0; i < w.layers.size(); ++i) {
    layers[i].kind = w.layers[i].kind;
    for (const host_tensor& t : w.layers[i].tensors) {
      layers[i].tensors.push_back(t.to_f64());
      layers[i].input_scales.push_back(fp8_input_scale(t));
    }
  }
}

const std::vector<double>& cpu_model::layer::get(std::string_view suffix) const {
  const int i = layer_tensor_index(kind, suffix);
  PIECEWISE_EXPECTS(i >= 0 && static_cast<std::size_t>(i) < tensors.size(), "cpu_model: a {} layer has no tensor '{}'",
                    kind_info(kind).name, suffix);
  return tensors[static_cast<std::size_t>(i)];
}

cpu_session::cpu_session(const cpu_model& model) : model_(&model) { reset(); }

void cpu_session::reset() {
  const model_config& c = model_->config();
  const int L = c.num_layers();
  state_ = {};
  state_.conv.resize(L);
  state_.ssm.resize(L);
  state_.k.resize(L);
  state_.v.resize(L);
  for (int i = 0; i < L; ++i) {
    if (c.layers[i] == layer_kind::mamba) {
      state_.conv[i].assign(static_cast<std::size_t>(c.conv_kernel - 1) * c.conv_dim(), 0.0);
      state_.ssm[i].assign(static_cast<std::size_t>(c.mamba_num_heads) * c.mamba_head_dim * c.ssm_state_size, 0.0);
    }
  }
}

void cpu_session::linear(int li, std::string_view suffix, const double* x, double* y, int T, int K, int N) {
  const cpu_model& m = *model_;
  const std::vector<double>* w = &m.lm_head;
  float scale = m.lm_head_input_scale;
  if (li >= 0) {
    const cpu_model::layer& L = m.layers[static_cast<std::size_t>(li)];
    const int i = layer_tensor_index(L.kind, suffix);
    PIECEWISE_EXPECTS(i >= 0, "cpu_model: a {} layer has no tensor '{}'", kind_info(L.kind).name, suffix);
    w = &L.tensors[static_cast<std::size_t>(i)];
    scale = L.input_scales[static_cast<std::size_t>(i)];
  }
  const std::size_t n = static_cast<std::size_t>(T) * K;
  if (observer_) observer_(li, suffix, std::span<const double>(x, n));
  if (scale > 0) {
    std::vector<double> q(x, x + n);
    for (double& v : q) v = quant::fp8_fake_quant(v, scale);
    ref::linear(q.data(), w->data(), y, T, K, N);
  } else {
    ref::linear(x, w->data(), y, T, K, N);
  }
}

std::vector<double> cpu_session::decode(std::int32_t token) { return prefill(std::span<const std::int32_t>(&token, 1)); }

std::vector<double> cpu_session::prefill(std::span<const std::int32_t> tokens, std::vector<double>* all_logits) {
  const model_config& c = model_->config();
  const cpu_model& m = *model_;
  const int T = static_cast<int>(tokens.size());
  PIECEWISE_EXPECTS(T >= 1, "cpu_session::prefill: empty chunk (model {})", c.name);
  const int D = c.hidden_size, V = c.vocab_size;
  for (int t = 0; t < T; ++t) {
    PIECEWISE_EXPECTS(tokens[t] >= 0 && tokens[t] < V, "cpu_session::prefill: token id {} at position {} is outside [0, {})",
                      tokens[t], t, V);
  }
  const std::size_t TD = static_cast<std::size_t>(T) * D;

  std::vector<double> h(TD), x(TD), out(TD);
  for (int t = 0; t < T; ++t) {
    std::copy_n(m.embeddings.begin() + static_cast<std::ptrdiff_t>(tokens[t]) * D, D, h.begin() + std::ptrdiff_t(t) * D);
  }

  const int H = c.mamba_num_heads, P = c.mamba_head_dim, N = c.ssm_state_size, G = c.n_groups;
  const int dinner = c.d_inner(), conv = c.conv_dim(), inproj = c.in_proj_dim(), K = c.conv_kernel;
  const double dt_min = c.time_step_min, dt_max = c.time_step_limit_hi;

  for (int li = 0; li < c.num_layers(); ++li) {
    const cpu_model::layer& L = m.layers[li];
    ref::rmsnorm(h.data(), L.get("norm.weight").data(), x.data(), T, D, c.eps);
    switch (L.kind) {
      case layer_kind::mamba: {
        const auto& conv_w = L.get("mixer.conv1d.weight");
        const auto& conv_b = L.get("mixer.conv1d.bias");
        const auto& A_log = L.get("mixer.A_log");
        const auto& Dskip = L.get("mixer.D");
        const auto& dt_bias = L.get("mixer.dt_bias");
        const auto& gnorm = L.get("mixer.norm.weight");
        std::vector<double> A(A_log.size());  // A = -exp(A_log)
        for (std::size_t i = 0; i < A.size(); ++i) A[i] = -std::exp(A_log[i]);
        std::vector<double> zxbcdt(static_cast<std::size_t>(T) * inproj);
        linear(li, "mixer.in_proj.weight", x.data(), zxbcdt.data(), T, D, inproj);
        std::vector<double> z(static_cast<std::size_t>(T) * dinner), xbc(static_cast<std::size_t>(T) * conv),
            dt_raw(static_cast<std::size_t>(T) * H);
        for (int t = 0; t < T; ++t) {
          const double* row = zxbcdt.data() + static_cast<std::size_t>(t) * inproj;
          std::copy_n(row, dinner, z.begin() + std::ptrdiff_t(t) * dinner);
          std::copy_n(row + dinner, conv, xbc.begin() + std::ptrdiff_t(t) * conv);
          std::copy_n(row + dinner + conv, H, dt_raw.begin() + std::ptrdiff_t(t) * H);
        }
        std::vector<double> xbc_act(xbc.size());
        std::vector<double>& cs = state_.conv[li];
        ref::conv1d_silu(xbc.data(), conv_w.data(), conv_b.data(), cs.data(), xbc_act.data(), cs.data(), T, conv, K);
        std::vector<double> xs(static_cast<std::size_t>(T) * dinner), B(static_cast<std::size_t>(T) * G * N),
            C(static_cast<std::size_t>(T) * G * N);
        for (int t = 0; t < T; ++t) {
          const double* row = xbc_act.data() + static_cast<std::size_t>(t) * conv;
          std::copy_n(row, dinner, xs.begin() + std::ptrdiff_t(t) * dinner);
          std::copy_n(row + dinner, G * N, B.begin() + std::ptrdiff_t(t) * G * N);
          std::copy_n(row + dinner + G * N, G * N, C.begin() + std::ptrdiff_t(t) * G * N);
        }
        std::vector<double> dt(static_cast<std::size_t>(T) * H);
        ref::dt_softplus(dt_raw.data(), dt_bias.data(), dt.data(), T, H, dt_min, dt_max);
        std::vector<double> y(static_cast<std::size_t>(T) * dinner);
        ref::ssm_scan(xs.data(), dt.data(), A.data(), B.data(), C.data(), Dskip.data(), state_.ssm[li].data(), y.data(),
                      T, H, P, G, N);
        std::vector<double> g(y.size());
        ref::gated_rmsnorm(y.data(), z.data(), gnorm.data(), g.data(), T, dinner, G, c.eps);
        linear(li, "mixer.out_proj.weight", g.data(), out.data(), T, dinner, D);
        break;
      }
      case layer_kind::attention: {
        const int Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, hd = c.head_dim;
        const int qd = c.q_dim(), kvd = c.kv_dim();
        std::vector<double> q(static_cast<std::size_t>(T) * qd), k(static_cast<std::size_t>(T) * kvd),
            v(static_cast<std::size_t>(T) * kvd);
        linear(li, "mixer.q_proj.weight", x.data(), q.data(), T, D, qd);
        linear(li, "mixer.k_proj.weight", x.data(), k.data(), T, D, kvd);
        linear(li, "mixer.v_proj.weight", x.data(), v.data(), T, D, kvd);
        auto& kc = state_.k[li];
        auto& vc = state_.v[li];
        kc.insert(kc.end(), k.begin(), k.end());
        vc.insert(vc.end(), v.begin(), v.end());
        const int Tk = static_cast<int>(kc.size() / static_cast<std::size_t>(kvd));
        std::vector<double> a(static_cast<std::size_t>(T) * qd);
        ref::attention(q.data(), kc.data(), vc.data(), a.data(), T, Tk, Hq, Hkv, hd);
        linear(li, "mixer.o_proj.weight", a.data(), out.data(), T, qd, D);
        break;
      }
      case layer_kind::mlp: {
        const int F = c.intermediate_size;
        std::vector<double> u(static_cast<std::size_t>(T) * F);
        linear(li, "mixer.up_proj.weight", x.data(), u.data(), T, D, F);
        ref::relu2(u.data(), u.size());
        linear(li, "mixer.down_proj.weight", u.data(), out.data(), T, F, D);
        break;
      }
      case layer_kind::moe: {
        ref::moe_layer_ref w = moe_layer_of(c, L);
        // The shared expert and the latent projections through linear(): FP8 inputs
        // fake-quantized, calibration observing them, as for every other layer's weights.
        w.linear = [this, li](std::string_view suffix, const double* in, const double*, double* y, int rows, int K,
                              int N) { linear(li, suffix, in, y, rows, K, N); };
        ref::moe_forward(x.data(), T, D, w, moe_routing_of(c), out.data());
        break;
      }
    }
    for (std::size_t i = 0; i < TD; ++i) h[i] += out[i];
  }
  state_.length += T;

  // Final norm and lm_head: all positions when asked, else the last one only.
  const int first = all_logits ? 0 : T - 1;
  const int rows = T - first;
  std::vector<double> hn(static_cast<std::size_t>(rows) * D);
  ref::rmsnorm(h.data() + static_cast<std::size_t>(first) * D, m.norm_f.data(), hn.data(), rows, D, c.eps);
  std::vector<double> logits(static_cast<std::size_t>(rows) * V);
  linear(-1, "lm_head.weight", hn.data(), logits.data(), rows, D, V);
  std::vector<double> last(logits.end() - V, logits.end());
  if (all_logits) *all_logits = std::move(logits);
  return last;
}

cpu_forward_result cpu_forward(const cpu_model& model, std::span<const std::int32_t> tokens,
                               std::span<const int> seq_lens, bool all_positions) {
  std::size_t total = 0;
  for (std::size_t i = 0; i < seq_lens.size(); ++i) {
    PIECEWISE_EXPECTS(seq_lens[i] >= 1, "cpu_forward: sequence {} has length {} (must be >= 1)", i, seq_lens[i]);
    total += static_cast<std::size_t>(seq_lens[i]);
  }
  PIECEWISE_EXPECTS(total == tokens.size(), "cpu_forward: sequence lengths add up to {} but {} tokens were given",
                    total, tokens.size());
  cpu_forward_result r;
  std::size_t off = 0;
  for (int len : seq_lens) {
    cpu_session s(model);
    std::vector<double> all;
    r.last_logits.push_back(s.prefill(tokens.subspan(off, static_cast<std::size_t>(len)), all_positions ? &all : nullptr));
    if (all_positions) r.all_logits.push_back(std::move(all));
    off += static_cast<std::size_t>(len);
  }
  return r;
}

double rel_norm_error(std::span<const double> a, std::span<const double> b) {
  PIECEWISE_EXPECTS(a.size() == b.size(), "rel_norm_error: sizes differ ({} vs {})", a.size(), b.size());
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

int argmax(std::span<const double> v) {
  return v.empty() ? -1 : static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace nemotron_h
