#include "runner/gpu_model.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "kernels/activations.cuh"
#include "kernels/attention_decode.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/conv1d.cuh"
#include "kernels/embedding.cuh"
#include "kernels/mamba_decode.cuh"
#include "kernels/norms.cuh"
#include "kernels/ssd_scan.cuh"
#include "runner/model_kernels.cuh"

namespace nemotron_h {
namespace {

constexpr std::size_t kAlign = 256;
std::size_t aligned(std::size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

/// Uploads the tensors `parts` back to back (rows stacked) into one allocation.
template <typename T>
T* upload(piecewise::device_arena& arena, std::initializer_list<const host_tensor*> parts, const std::string& name) {
  std::size_t bytes = 0;
  for (const host_tensor* t : parts) bytes += t->data_bytes();
  auto* p = static_cast<std::uint8_t*>(arena.allocate_bytes(bytes, name));
  std::size_t off = 0;
  for (const host_tensor* t : parts) {
    PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(p + off, t->data(), t->data_bytes(), cudaMemcpyHostToDevice),
                           fmt::format("uploading {}", t->name()));
    off += t->data_bytes();
  }
  return reinterpret_cast<T*>(p);
}
template <typename T>
T* upload(piecewise::device_arena& arena, const host_tensor& t, const std::string& name) {
  return upload<T>(arena, {&t}, name);
}

}  // namespace

gpu_model::gpu_model(const model_config& config, const model_weights& weights, const gpu_model_limits& limits)
    : cfg_(config), lim_(limits) {
  cfg_.validate();
  weights.check_shapes(cfg_);
  PIECEWISE_EXPECTS(lim_.max_prefill_tokens > 0 && lim_.max_decode_batch > 0 && lim_.num_slots > 0 &&
                        lim_.max_context > 0 && lim_.max_decode_steps > 0,
                    "gpu_model: every limit must be positive (prefill tokens {}, decode batch {}, slots {}, "
                    "context {}, decode steps {})",
                    lim_.max_prefill_tokens, lim_.max_decode_batch, lim_.num_slots, lim_.max_context,
                    lim_.max_decode_steps);
  const int D = cfg_.hidden_size;
  PIECEWISE_EXPECTS(D % 8 == 0, "{}: hidden_size {} must be a multiple of 8 for the GPU kernels", cfg_.name, D);
  PIECEWISE_EXPECTS(cfg_.conv_kernel == 4, "{}: conv_kernel {} is not supported on the GPU (only 4)", cfg_.name,
                    cfg_.conv_kernel);
  PIECEWISE_EXPECTS(cfg_.count(layer_kind::attention) == 0 || cfg_.head_dim == 128,
                    "{}: head_dim {} is not supported by the GPU attention kernels (only 128)", cfg_.name,
                    cfg_.head_dim);
  PIECEWISE_EXPECTS(cfg_.in_proj_dim() % 8 == 0,
                    "{}: the Mamba in_proj width {} must be a multiple of 8 (mamba_num_heads {} % 8)", cfg_.name,
                    cfg_.in_proj_dim(), cfg_.mamba_num_heads);
  md_ = mamba_dims{cfg_.mamba_num_heads, cfg_.mamba_head_dim, cfg_.ssm_state_size, cfg_.n_groups, cfg_.conv_kernel};
  proj_width_ = std::max({cfg_.in_proj_dim(), cfg_.q_dim() + 2 * cfg_.kv_dim(), cfg_.intermediate_size});
  max_rows_ = std::max(lim_.max_prefill_tokens, lim_.max_decode_batch);
  max_seqs_ = std::max(lim_.num_slots, lim_.max_decode_batch);

  gemm_ = std::make_unique<gemm_engine>();
  weights_arena_ = std::make_unique<piecewise::device_arena>(aligned(weights.bytes()) + 1024 * kAlign * (cfg_.num_layers() + 8));
  upload_weights(weights);
  weight_bytes_ = weights_arena_->used();

  // Activations, state and metadata: sized once, fixed addresses for every bucket.
  const std::size_t T = static_cast<std::size_t>(max_rows_), S = static_cast<std::size_t>(max_seqs_);
  ssd_ws_bytes_ = cfg_.count(layer_kind::mamba) ? ssd_scan_workspace_bytes(lim_.max_prefill_tokens, std::min(max_seqs_, lim_.max_prefill_tokens), md_) : 0;
  dec_ws_bytes_ = cfg_.count(layer_kind::attention)
                      ? attention_decode_workspace_bytes(lim_.max_decode_batch, cfg_.num_attention_heads, cfg_.head_dim,
                                                         lim_.max_context)
                      : 0;
  std::size_t bytes = 0;
  auto add = [&](std::size_t b) { bytes += aligned(b); };
  add(T * 4);                                            // ids
  for (int i = 0; i < 2; ++i) add(T * D * 2);            // h, xn
  add(T * proj_width_ * 2);                              // proj
  add(T * static_cast<std::size_t>(std::max(cfg_.conv_dim(), 8)) * 2);  // conv_out
  for (int i = 0; i < 2; ++i) add(T * static_cast<std::size_t>(std::max(cfg_.d_inner(), 8)) * 2);  // y, g
  add(T * static_cast<std::size_t>(std::max(cfg_.q_dim(), 8)) * 2);  // attn_out
  for (int i = 0; i < 2; ++i) add(S * D * 2);            // last_h, last_n
  add(S * cfg_.vocab_size * 2);                          // logits
  add(S * 4);                                            // next ids
  add(static_cast<std::size_t>(lim_.max_decode_steps) * S * 4 + 4);  // history + step
  add(ssd_ws_bytes_);
  add(dec_ws_bytes_);
  add(8 + (S + 1) * 4 + 2 * S * 4 + 4 * kAlign);         // metadata
  for (layer_kind k : cfg_.layers) {
    if (k == layer_kind::mamba) add(mamba_layer_state_bytes(md_, lim_.num_slots));
    if (k == layer_kind::attention)
      add(kv_cache_layer_bytes(lim_.num_slots, lim_.max_context, cfg_.num_key_value_heads, cfg_.head_dim));
  }
  buffers_arena_ = std::make_unique<piecewise::device_arena>(bytes + 64 * kAlign);
  auto& a = *buffers_arena_;
  ids_ = a.allocate<int>(T, "ids");
  h_ = a.allocate<bf16>(T * D, "hidden");
  xn_ = a.allocate<bf16>(T * D, "normed");
  proj_ = a.allocate<bf16>(T * proj_width_, "projection");
  conv_out_ = a.allocate<bf16>(T * std::max(cfg_.conv_dim(), 8), "conv_out");
  y_ = a.allocate<bf16>(T * std::max(cfg_.d_inner(), 8), "ssm_y");
  g_ = a.allocate<bf16>(T * std::max(cfg_.d_inner(), 8), "gated");
  attn_out_ = a.allocate<bf16>(T * std::max(cfg_.q_dim(), 8), "attn_out");
  last_h_ = a.allocate<bf16>(S * D, "last_hidden");
  last_n_ = a.allocate<bf16>(S * D, "last_normed");
  logits_ = a.allocate<bf16>(S * cfg_.vocab_size, "logits");
  next_ids_ = a.allocate<int>(S, "next_ids");
  history_ = a.allocate<int>(static_cast<std::size_t>(lim_.max_decode_steps) * S, "history");
  step_ = a.allocate<int>(1, "step");
  if (ssd_ws_bytes_) ssd_ws_ = a.allocate_bytes(ssd_ws_bytes_, "ssd_workspace");
  if (dec_ws_bytes_) dec_ws_ = a.allocate_bytes(dec_ws_bytes_, "decode_attention_workspace");
  num_seqs_ = a.allocate<int>(1, "num_seqs");
  num_tokens_ = a.allocate<int>(1, "num_tokens");
  cu_seqlens_ = a.allocate<int>(S + 1, "cu_seqlens");
  slots_ = a.allocate<int>(S, "slots");
  context_lens_ = a.allocate<int>(S, "context_lens");
  for (int l = 0; l < cfg_.num_layers(); ++l) {
    layer_dev& L = layers_[static_cast<std::size_t>(l)];
    if (L.kind == layer_kind::mamba)
      L.state = make_mamba_layer_state(a.allocate_bytes(mamba_layer_state_bytes(md_, lim_.num_slots),
                                                        fmt::format("layer {} mamba state", l)),
                                       md_, lim_.num_slots);
    if (L.kind == layer_kind::attention)
      L.cache = make_kv_cache_view(
          a.allocate_bytes(kv_cache_layer_bytes(lim_.num_slots, lim_.max_context, cfg_.num_key_value_heads, cfg_.head_dim),
                           fmt::format("layer {} kv cache", l)),
          lim_.num_slots, lim_.max_context, cfg_.num_key_value_heads, cfg_.head_dim);
  }
  PIECEWISE_CUDA_TRY(cudaMemset(a.data(), 0, a.used()));
  // The memset runs on the legacy stream; finish it before any non-blocking stream starts.
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  build_tables();
}

void gpu_model::upload_weights(const model_weights& w) {
  auto& a = *weights_arena_;
  embeddings_ = upload<bf16>(a, w.embeddings(), "embeddings");
  norm_f_ = upload<bf16>(a, w.norm_f(), "norm_f");
  lm_head_ = upload<bf16>(a, w.lm_head(), "lm_head");
  layers_.resize(static_cast<std::size_t>(cfg_.num_layers()));
  for (int l = 0; l < cfg_.num_layers(); ++l) {
    const layer_weights& src = w.layers[static_cast<std::size_t>(l)];
    layer_dev& L = layers_[static_cast<std::size_t>(l)];
    const std::string p = fmt::format("layers.{}.", l);
    L.kind = cfg_.layers[static_cast<std::size_t>(l)];
    L.norm = upload<bf16>(a, src.get("norm.weight"), p + "norm");
    switch (L.kind) {
      case layer_kind::mamba:
        L.in_proj = upload<bf16>(a, src.get("mixer.in_proj.weight"), p + "in_proj");
        L.conv_w = upload<bf16>(a, src.get("mixer.conv1d.weight"), p + "conv1d.weight");
        L.conv_b = upload<bf16>(a, src.get("mixer.conv1d.bias"), p + "conv1d.bias");
        L.A_log = upload<float>(a, src.get("mixer.A_log"), p + "A_log");
        L.D = upload<float>(a, src.get("mixer.D"), p + "D");
        L.dt_bias = upload<float>(a, src.get("mixer.dt_bias"), p + "dt_bias");
        L.gnorm = upload<bf16>(a, src.get("mixer.norm.weight"), p + "mixer.norm");
        L.out_proj = upload<bf16>(a, src.get("mixer.out_proj.weight"), p + "out_proj");
        break;
      case layer_kind::attention:
        L.qkv = upload<bf16>(a, {&src.get("mixer.q_proj.weight"), &src.get("mixer.k_proj.weight"),
                                 &src.get("mixer.v_proj.weight")}, p + "qkv_proj");
        L.o_proj = upload<bf16>(a, src.get("mixer.o_proj.weight"), p + "o_proj");
        break;
      case layer_kind::mlp:
        L.up = upload<bf16>(a, src.get("mixer.up_proj.weight"), p + "up_proj");
        L.down = upload<bf16>(a, src.get("mixer.down_proj.weight"), p + "down_proj");
        break;
    }
  }
}

std::size_t gpu_model::buffer_bytes() const noexcept { return buffers_arena_->used(); }

void gpu_model::build_tables() {
  const std::size_t row_y = static_cast<std::size_t>(std::max(cfg_.d_inner(), 8)) * sizeof(bf16);
  const std::size_t row_attn = static_cast<std::size_t>(std::max(cfg_.q_dim(), 8)) * sizeof(bf16);
  for (phase p : {phase::prefill, phase::decode}) {
    auto t = std::make_unique<piecewise::segment_table>(cfg_.num_layers());
    for (int l = 0; l < cfg_.num_layers(); ++l) {
      switch (cfg_.layers[static_cast<std::size_t>(l)]) {
        case layer_kind::mamba:
          t->set_split(l, piecewise::split_point{
                              p == phase::prefill ? "mamba (conv + SSD scan)" : "mamba (decode update)",
                              [this, l, p](const piecewise::split_args& a) { mamba_split(l, a, p); },
                              true,
                              {piecewise::row_buffer{"ssm_y", y_, row_y, 0, max_rows_, piecewise::element_type::bf16}}});
          break;
        case layer_kind::attention:
          t->set_split(l, piecewise::split_point{
                              p == phase::prefill ? "attention (prefill)" : "attention (decode)",
                              [this, l, p](const piecewise::split_args& a) { attention_split(l, a, p); },
                              true,
                              {piecewise::row_buffer{"attn_out", attn_out_, row_attn, 0, max_rows_,
                                                     piecewise::element_type::bf16}}});
          break;
        case layer_kind::mlp:
          break;  // null placeholder: captured whole
      }
    }
    t->declare_input(piecewise::row_buffer{"ids", ids_, sizeof(int), 0, max_rows_, piecewise::element_type::i32});
    t->declare_output(piecewise::row_buffer{"logits", logits_, static_cast<std::size_t>(cfg_.vocab_size) * sizeof(bf16), 0,
                                            max_seqs_, piecewise::element_type::bf16});
    (p == phase::prefill ? prefill_table_ : decode_table_) = std::move(t);
  }
}

batch_view gpu_model::batch_for(int padded, phase p) const {
  batch_view b;
  b.num_seqs = num_seqs_;
  b.num_tokens = num_tokens_;
  b.cu_seqlens = cu_seqlens_;
  b.slots = slots_;
  b.context_lens = context_lens_;
  b.padded_tokens = padded;
  if (p == phase::prefill) {
    b.max_seqs = std::min(max_seqs_, padded);
    b.max_seqlen = padded;
  } else {
    b.max_seqs = padded;
    b.max_seqlen = 1;
  }
  return b;
}

void gpu_model::mamba_split(int l, const piecewise::split_args& a, phase p) {
  const layer_dev& L = layers_[static_cast<std::size_t>(l)];
  const batch_view b = batch_for(a.padded_tokens, p);
  const int W = cfg_.in_proj_dim();
  const bf16* xbc = proj_ + md_.xbc_offset();
  const bf16* dt = proj_ + md_.dt_offset();
  const auto dt_min = static_cast<float>(cfg_.time_step_limit_lo);
  const auto dt_max = static_cast<float>(cfg_.time_step_limit_hi);
  if (p == phase::prefill) {
    conv1d_prefill(xbc, W, L.conv_w, L.conv_b, L.state.conv, conv_out_, b, md_.conv_dim(), md_.K, a.stream);
    ssd_scan(conv_out_, dt, W, L.A_log, L.D, L.dt_bias, L.state.ssm, y_, ssd_ws_, ssd_ws_bytes_, b, md_, dt_min, dt_max,
             a.stream);
  } else {
    conv1d_decode(xbc, W, L.conv_w, L.conv_b, L.state.conv, conv_out_, b, md_.conv_dim(), md_.K, a.stream);
    mamba_decode(conv_out_, dt, W, L.A_log, L.D, L.dt_bias, L.state.ssm, y_, b, md_, dt_min, dt_max, a.stream);
  }
}

void gpu_model::attention_split(int l, const piecewise::split_args& a, phase p) {
  const layer_dev& L = layers_[static_cast<std::size_t>(l)];
  const batch_view b = batch_for(a.padded_tokens, p);
  const int W = cfg_.q_dim() + 2 * cfg_.kv_dim();
  const bf16* q = proj_;
  const bf16* k = proj_ + cfg_.q_dim();
  const bf16* v = k + cfg_.kv_dim();
  if (p == phase::prefill) {
    attention_prefill(q, W, k, v, W, L.cache, b, cfg_.num_attention_heads, attn_out_, cfg_.q_dim(), a.stream);
  } else {
    attention_decode(q, W, k, v, W, L.cache, b, cfg_.num_attention_heads, attn_out_, cfg_.q_dim(), dec_ws_,
                     dec_ws_bytes_, lim_.max_context, a.stream);
  }
}

piecewise::forward_fn gpu_model::forward(phase p) {
  return [this, p](piecewise::forward_context& ctx) {
    const int T = ctx.padded_tokens();
    const cudaStream_t s = ctx.stream();
    const int D = cfg_.hidden_size;
    const auto eps = static_cast<float>(cfg_.eps);
    gemm_engine& gm = *gemm_;
    embedding(ids_, embeddings_, h_, T, D, cfg_.vocab_size, s);
    for (int l = 0; l < cfg_.num_layers(); ++l) {
      const layer_dev& L = layers_[static_cast<std::size_t>(l)];
      rmsnorm(h_, L.norm, xn_, T, D, eps, s);
      switch (L.kind) {
        case layer_kind::mamba:
          gm.linear(xn_, L.in_proj, proj_, T, D, cfg_.in_proj_dim(), s);
          ctx.split(l);
          gated_rmsnorm(y_, cfg_.d_inner(), proj_, cfg_.in_proj_dim(), L.gnorm, g_, cfg_.d_inner(), T, cfg_.d_inner(),
                        cfg_.n_groups, eps, s);
          gm.linear(g_, L.out_proj, h_, T, cfg_.d_inner(), D, s, /*accumulate=*/true);
          break;
        case layer_kind::attention:
          gm.linear(xn_, L.qkv, proj_, T, D, cfg_.q_dim() + 2 * cfg_.kv_dim(), s);
          ctx.split(l);
          gm.linear(attn_out_, L.o_proj, h_, T, cfg_.q_dim(), D, s, /*accumulate=*/true);
          break;
        case layer_kind::mlp:
          gm.linear(xn_, L.up, proj_, T, D, cfg_.intermediate_size, s);
          relu2_inplace(proj_, static_cast<std::size_t>(T) * cfg_.intermediate_size, s);
          gm.linear(proj_, L.down, h_, T, cfg_.intermediate_size, D, s, /*accumulate=*/true);
          break;
      }
    }
    const batch_view b = batch_for(T, p);
    gather_last_rows(h_, last_h_, b, D, s);
    rmsnorm(last_h_, norm_f_, last_n_, b.max_seqs, D, eps, s);
    gm.linear(last_n_, lm_head_, logits_, b.max_seqs, D, cfg_.vocab_size, s);
    if (p == phase::prefill) {
      argmax_rows(logits_, cfg_.vocab_size, next_ids_, b.max_seqs, num_seqs_, nullptr, 0, nullptr, s);
    } else {
      // Greedy decode stays on the GPU: the argmax becomes the next step's input ids, the
      // history records it, and every sequence's context grows by one.
      argmax_rows(logits_, cfg_.vocab_size, ids_, b.max_seqs, num_seqs_, history_, max_seqs_, step_, s);
      advance_context(context_lens_, num_seqs_, b.max_seqs, s);
    }
  };
}

void gpu_model::set_prefill_batch(const std::vector<int>& tokens, const std::vector<int>& lens,
                                  const std::vector<int>& slots, const std::vector<int>& context, cudaStream_t s) {
  const int n = static_cast<int>(lens.size());
  PIECEWISE_EXPECTS(n > 0 && n <= max_seqs_, "prefill batch: {} sequences (1..{} allowed)", n, max_seqs_);
  PIECEWISE_EXPECTS(slots.size() == lens.size() && context.size() == lens.size(),
                    "prefill batch: {} lengths but {} slots and {} contexts", n, slots.size(), context.size());
  std::vector<int> cu(static_cast<std::size_t>(n) + 1, 0);
  std::set<int> seen;
  for (int i = 0; i < n; ++i) {
    const auto u = static_cast<std::size_t>(i);
    PIECEWISE_EXPECTS(lens[u] >= 1, "prefill batch: sequence {} has {} tokens", i, lens[u]);
    PIECEWISE_EXPECTS(slots[u] >= 0 && slots[u] < lim_.num_slots, "prefill batch: sequence {} uses slot {} (0..{})", i,
                      slots[u], lim_.num_slots - 1);
    PIECEWISE_EXPECTS(seen.insert(slots[u]).second, "prefill batch: slot {} is used twice", slots[u]);
    PIECEWISE_EXPECTS(context[u] >= 0 && context[u] + lens[u] <= lim_.max_context,
                      "prefill batch: sequence {} would reach {} positions, more than max_context {}", i,
                      context[u] + lens[u], lim_.max_context);
    cu[u + 1] = cu[u] + lens[u];
  }
  PIECEWISE_EXPECTS(cu.back() == static_cast<int>(tokens.size()), "prefill batch: lengths add up to {} but {} tokens given",
                    cu.back(), tokens.size());
  PIECEWISE_EXPECTS(cu.back() <= lim_.max_prefill_tokens, "prefill batch: {} tokens exceed max_prefill_tokens {}",
                    cu.back(), lim_.max_prefill_tokens);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    PIECEWISE_EXPECTS(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, "prefill batch: token {} has id {} (vocab {})", i,
                      tokens[i], cfg_.vocab_size);
  // Pageable sources: the driver stages them before returning, so the vectors may die now.
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(ids_, tokens.data(), tokens.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  const int meta[2] = {n, cu.back()};
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(num_seqs_, &meta[0], sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(num_tokens_, &meta[1], sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(cu_seqlens_, cu.data(), cu.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(slots_, slots.data(), slots.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(context_lens_, context.data(), context.size() * sizeof(int), cudaMemcpyHostToDevice, s));
}

void gpu_model::set_decode_batch(const std::vector<int>& first_ids, const std::vector<int>& slots,
                                 const std::vector<int>& context, cudaStream_t s) {
  const int n = static_cast<int>(first_ids.size());
  PIECEWISE_EXPECTS(n > 0 && n <= lim_.max_decode_batch, "decode batch: {} sequences (1..{} allowed)", n,
                    lim_.max_decode_batch);
  PIECEWISE_EXPECTS(slots.size() == first_ids.size() && context.size() == first_ids.size(),
                    "decode batch: {} ids but {} slots and {} contexts", n, slots.size(), context.size());
  std::vector<int> cu(static_cast<std::size_t>(n) + 1);
  std::iota(cu.begin(), cu.end(), 0);
  std::set<int> seen;
  for (int i = 0; i < n; ++i) {
    const auto u = static_cast<std::size_t>(i);
    PIECEWISE_EXPECTS(slots[u] >= 0 && slots[u] < lim_.num_slots && seen.insert(slots[u]).second,
                      "decode batch: sequence {} has slot {} (out of range 0..{} or used twice)", i, slots[u],
                      lim_.num_slots - 1);
    PIECEWISE_EXPECTS(context[u] >= 1 && context[u] < lim_.max_context,
                      "decode batch: sequence {} has context {} (1..{} allowed)", i, context[u], lim_.max_context - 1);
    PIECEWISE_EXPECTS(first_ids[u] >= 0 && first_ids[u] < cfg_.vocab_size, "decode batch: sequence {} starts with id {}",
                      i, first_ids[u]);
  }
  const int zero = 0;
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(ids_, first_ids.data(), first_ids.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(num_seqs_, &n, sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(num_tokens_, &n, sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(cu_seqlens_, cu.data(), cu.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(slots_, slots.data(), slots.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(context_lens_, context.data(), context.size() * sizeof(int), cudaMemcpyHostToDevice, s));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(step_, &zero, sizeof(int), cudaMemcpyHostToDevice, s));
}

void gpu_model::clear_batch(cudaStream_t s) {
  PIECEWISE_CUDA_TRY(cudaMemsetAsync(num_seqs_, 0, sizeof(int), s));
  PIECEWISE_CUDA_TRY(cudaMemsetAsync(num_tokens_, 0, sizeof(int), s));
  PIECEWISE_CUDA_TRY(cudaMemsetAsync(cu_seqlens_, 0, (static_cast<std::size_t>(max_seqs_) + 1) * sizeof(int), s));
  PIECEWISE_CUDA_TRY(cudaMemsetAsync(step_, 0, sizeof(int), s));
}

std::vector<float> gpu_model::read_logits(int n, cudaStream_t s) const {
  std::vector<bf16_bits> raw(static_cast<std::size_t>(n) * cfg_.vocab_size);
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(raw.data(), logits_, raw.size() * sizeof(bf16), cudaMemcpyDeviceToHost, s));
  PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
  std::vector<float> out(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) out[i] = piecewise::bf16_bits_to_float(raw[i]);
  return out;
}

std::vector<int> gpu_model::read_next_ids(int n, cudaStream_t s) const {
  std::vector<int> v(static_cast<std::size_t>(n));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(v.data(), next_ids_, v.size() * sizeof(int), cudaMemcpyDeviceToHost, s));
  PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
  return v;
}

std::vector<int> gpu_model::read_history(int steps, int n, cudaStream_t s) const {
  PIECEWISE_EXPECTS(steps <= lim_.max_decode_steps, "read_history: {} steps, the history holds {}", steps,
                    lim_.max_decode_steps);
  std::vector<int> all(static_cast<std::size_t>(steps) * max_seqs_);
  if (!all.empty())
    PIECEWISE_CUDA_TRY(cudaMemcpyAsync(all.data(), history_, all.size() * sizeof(int), cudaMemcpyDeviceToHost, s));
  PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
  std::vector<int> out;
  out.reserve(static_cast<std::size_t>(steps) * n);
  for (int t = 0; t < steps; ++t)
    for (int i = 0; i < n; ++i) out.push_back(all[static_cast<std::size_t>(t) * max_seqs_ + i]);
  return out;
}

}  // namespace nemotron_h
