#include "runner/gpu_model.hpp"

#include "kernels/nvfp4_layout.hpp"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "kernels/activations.cuh"
#include "kernels/attention_decode.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/conv1d.cuh"
#include "kernels/embedding.cuh"
#include "kernels/mamba_decode.cuh"
#include "kernels/moe.cuh"
#include "kernels/norms.cuh"
#include "kernels/ssd_scan.cuh"
#include "piecewise/element_type.hpp"
#include "runner/model_kernels.cuh"

namespace nemotron_h {

gpu_model::gpu_model(const model_config& config, const model_weights& weights, const gpu_model_limits& limits)
    : gpu_model(config, weight_source::from_host(weights), limits) {}

gpu_model::gpu_model(const model_config& config, const weight_source& source, const gpu_model_limits& limits)
    : cfg_(config), lim_(limits) {
  cfg_.validate();
  if (source.how == weight_source::kind::host && source.host != nullptr) source.host->check_shapes(cfg_);
  check_limits(lim_);
  const int D = cfg_.hidden_size;
  PIECEWISE_EXPECTS(D % 8 == 0, "{}: hidden_size {} must be a multiple of 8 for the GPU kernels", cfg_.name, D);
  PIECEWISE_EXPECTS(cfg_.conv_kernel == 4, "{}: conv_kernel {} is not supported on the GPU (only 4)", cfg_.name,
                    cfg_.conv_kernel);
  PIECEWISE_EXPECTS(cfg_.count(layer_kind::attention) == 0 || cfg_.head_dim == 128,
                    "{}: head_dim {} is not supported by the GPU attention kernels (only 128)", cfg_.name,
                    cfg_.head_dim);
  md_ = mamba_dims{cfg_.mamba_num_heads, cfg_.mamba_head_dim, cfg_.ssm_state_size, cfg_.n_groups, cfg_.conv_kernel};
  // The widest output of a layer's first projection (in_proj, q|k|v, up_proj): proj_ holds it.
  // Output widths that are not multiples of 8 (in_proj with a Mamba head count that is not,
  // the vocabulary) are padded inside the model: device_weights gives those matrices zero rows
  // up to the next multiple of 8, and their outputs keep that row stride.
  in_proj_ld_ = (cfg_.in_proj_dim() + 7) / 8 * 8;
  vocab_ld_ = (cfg_.vocab_size + 7) / 8 * 8;
  const bool moe = cfg_.count(layer_kind::moe) > 0;
  if (moe) {
    // The grouped GEMMs and the combine need 8-aligned widths (16-byte rows).
    for (const auto& [v, field] : {std::pair{cfg_.moe_intermediate_size, "moe_intermediate_size"},
                                   std::pair{cfg_.moe_shared_expert_intermediate_size, "moe_shared_expert_intermediate_size"},
                                   std::pair{cfg_.moe_width(), cfg_.latent_moe() ? "moe_latent_size" : "hidden_size"}})
      PIECEWISE_EXPECTS(v % 8 == 0, "{}: {} {} is not a multiple of 8 (needed by the GPU MoE kernels)", cfg_.name, field,
                        v);
    PIECEWISE_EXPECTS(cfg_.n_routed_experts <= kMoeMaxExperts && cfg_.num_experts_per_tok <= kMoeMaxTopK,
                      "{}: {} experts, top {}: the GPU MoE kernels take at most {} experts and top {}", cfg_.name,
                      cfg_.n_routed_experts, cfg_.num_experts_per_tok, kMoeMaxExperts, kMoeMaxTopK);
  }
  proj_width_ = std::max({in_proj_ld_, cfg_.q_dim() + 2 * cfg_.kv_dim(), cfg_.intermediate_size,
                          moe ? cfg_.moe_shared_expert_intermediate_size : 0});
  // Row widths of the Mamba / attention split outputs (at least 8 so a model without such
  // layers still has valid buffers).
  y_cols_ = static_cast<std::size_t>(std::max(cfg_.d_inner(), 8));
  attn_cols_ = static_cast<std::size_t>(std::max(cfg_.q_dim(), 8));
  max_rows_ = max_rows(lim_);
  max_seqs_ = max_sequences(lim_);
  if (const char* e = std::getenv("NH_FP8_FUSE"); e != nullptr && e[0] == '0') fuse_fp8_ = false;

  // Weights first: their dtype checks come before any device memory is taken.
  weights_ = std::make_unique<device_weights>(cfg_, source);
  gemm_ = std::make_unique<gemm_engine>();
  // FP8 weights: the e4m3 copy of their inputs, for the most rows any GEMM sees (the layers'
  // tokens, lm_head's sequences); taken once here, never during a forward or a capture.
  if (const int k = weights_->widest_fp8_input(); k > 0) gemm_->reserve_fp8_input(std::max(max_rows_, max_seqs_), k);
  // NVFP4 weights: one dequantized bf16 copy for the GEMMs above the NVFP4 GEMV's rows.
  if (const std::size_t n = weights_->largest_nvfp4_weight(); n > 0 && std::max(max_rows_, max_seqs_) > kNvfp4GemvMaxRows)
    gemm_->reserve_nvfp4_scratch(n);

  // Activations, state, workspaces and metadata: one plan, sized once, fixed addresses for
  // every bucket.
  const auto T = static_cast<std::size_t>(max_rows_), S = static_cast<std::size_t>(max_seqs_);
  const auto Du = static_cast<std::size_t>(D);
  buffer_plan plan;
  batch_ = std::make_unique<batch_metadata>(plan, lim_, cfg_.vocab_size);
  plan.add("hidden", T * Du, h_);
  plan.add("normed", T * Du, xn_);
  plan.add("projection", T * static_cast<std::size_t>(proj_width_), proj_);
  plan.add("conv_out", T * static_cast<std::size_t>(std::max(cfg_.conv_dim(), 8)), conv_out_);
  plan.add("ssm_y", T * y_cols_, y_);
  plan.add("gated", T * y_cols_, g_);
  plan.add("attn_out", T * attn_cols_, attn_out_);
  plan.add("last_hidden", S * Du, last_h_);
  plan.add("last_normed", S * Du, last_n_);
  plan.add("logits", S * static_cast<std::size_t>(vocab_ld_), logits_);
  plan.add("next_ids", S, next_ids_);
  plan.add("history", static_cast<std::size_t>(lim_.max_decode_steps) * S, history_);
  if (lim_.sampling) {
    // Zeroed below: every slot starts greedy (temperature 0).
    plan.add("sampling_params", S, sampling_);
    sample_ws_bytes_ = sampling_workspace_bytes(max_seqs_, cfg_.vocab_size);
    plan.add_bytes("sampling_workspace", sample_ws_bytes_, [this](void* p) { sample_ws_ = p; });
  }
  ssd_ws_bytes_ = cfg_.count(layer_kind::mamba)
                      ? ssd_scan_workspace_bytes(lim_.max_prefill_tokens, std::min(max_seqs_, lim_.max_prefill_tokens), md_)
                      : 0;
  dec_ws_bytes_ = cfg_.count(layer_kind::attention)
                      ? attention_decode_workspace_bytes(lim_.max_decode_batch, cfg_.num_attention_heads,
                                                         cfg_.num_key_value_heads, cfg_.head_dim, lim_.max_context)
                      : 0;
  plan.add_bytes("ssd_workspace", ssd_ws_bytes_, [this](void* p) { ssd_ws_ = p; });
  // Zeroed with the other buffers below: attention_decode needs its split counters zero once.
  plan.add_bytes("decode_attention_workspace", dec_ws_bytes_, [this](void* p) { dec_ws_ = p; });
  if (moe) {
    const int E = cfg_.n_routed_experts, k = cfg_.num_experts_per_tok;
    const auto Tk = T * static_cast<std::size_t>(k);
    router_ld_ = (E + 7) / 8 * 8;
    plan.add("moe_router_logits", T * static_cast<std::size_t>(router_ld_), router_logits_);
    plan.add_bytes("moe_plan", moe_plan_bytes(max_rows_, E, k),
                   [this, E, k](void* p) { moe_plan_ = make_moe_plan_view(p, max_rows_, E, k); });
    plan.add("moe_up", Tk * static_cast<std::size_t>(cfg_.moe_intermediate_size), moe_up_);
    plan.add("moe_down", Tk * static_cast<std::size_t>(cfg_.moe_width()), moe_down_);
    if (cfg_.latent_moe()) plan.add("moe_latent", T * static_cast<std::size_t>(cfg_.moe_latent_size), moe_latent_);
  }
  layers_.resize(static_cast<std::size_t>(cfg_.num_layers()));
  for (int l = 0; l < cfg_.num_layers(); ++l) bind_layer(l, plan);

  buffers_ = plan.allocate();
  PIECEWISE_CUDA_TRY(cudaMemset(buffers_->data(), 0, buffers_->used()));
  // The memset runs on the legacy stream; finish it before any non-blocking stream starts.
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  build_tables();
}

void gpu_model::bind_layer(int l, buffer_plan& plan) {
  layer_dev& L = layers_[static_cast<std::size_t>(l)];
  const device_weights::layer& w = weights_->at(l);
  L.kind = w.kind;
  L.norm = bf16_data(w.get("norm.weight"));
  switch (L.kind) {
    case layer_kind::mamba:
      L.in_proj = w.get("mixer.in_proj.weight");
      L.conv_w = bf16_data(w.get("mixer.conv1d.weight"));
      L.conv_b = bf16_data(w.get("mixer.conv1d.bias"));
      L.A_log = f32_data(w.get("mixer.A_log"));
      L.D = f32_data(w.get("mixer.D"));
      L.dt_bias = f32_data(w.get("mixer.dt_bias"));
      L.gnorm = bf16_data(w.get("mixer.norm.weight"));
      L.out_proj = w.get("mixer.out_proj.weight");
      plan.add_bytes(fmt::format("layer {} mamba state", l), mamba_layer_state_bytes(md_, lim_.num_slots),
                     [this, &L](void* p) { L.state = make_mamba_layer_state(p, md_, lim_.num_slots); });
      L.split = {{"mamba (conv + SSD scan)", "mamba (decode update)"}, &gpu_model::mamba_split, "ssm_y", &y_,
                 y_cols_ * sizeof(bf16)};
      break;
    case layer_kind::attention:
      L.qkv = w.get("mixer.qkv_proj.weight");
      L.o_proj = w.get("mixer.o_proj.weight");
      plan.add_bytes(fmt::format("layer {} kv cache", l),
                     kv_cache_layer_bytes(lim_.num_slots, lim_.max_context, cfg_.num_key_value_heads, cfg_.head_dim),
                     [this, &L](void* p) {
                       L.cache = make_kv_cache_view(p, lim_.num_slots, lim_.max_context, cfg_.num_key_value_heads,
                                                    cfg_.head_dim);
                     });
      L.split = {{"attention (prefill)", "attention (decode)"}, &gpu_model::attention_split, "attn_out",
                 &attn_out_, attn_cols_ * sizeof(bf16)};
      break;
    case layer_kind::mlp:
      L.up = w.get("mixer.up_proj.weight");
      L.down = w.get("mixer.down_proj.weight");
      // relu2_fp8 writes up_proj's output rows as down_proj's e4m3 input rows (forward()).
      PIECEWISE_EXPECTS(L.down.type != dtype::fp8_e4m3 || L.down.cols == L.up.rows,
                        "layer {}: FP8 down_proj reads {} features but up_proj writes {} rows", l, L.down.cols,
                        L.up.rows);
      break;  // no split point: captured whole
    case layer_kind::moe:
      L.gate = w.get("mixer.gate.weight");
      L.gate_bias = f32_data(w.get("mixer.gate.e_score_correction_bias"));
      L.experts_up = bf16_data(w.get("mixer.experts.up_proj"));
      L.experts_down = bf16_data(w.get("mixer.experts.down_proj"));
      L.shared_up = w.get("mixer.shared_experts.up_proj.weight");
      L.shared_down = w.get("mixer.shared_experts.down_proj.weight");
      if (cfg_.latent_moe()) {
        L.fc1_latent = w.get("mixer.fc1_latent_proj.weight");
        L.fc2_latent = w.get("mixer.fc2_latent_proj.weight");
      }
      break;  // no split point: captured whole
  }
}

void gpu_model::build_tables() {
  for (phase p : {phase::prefill, phase::decode}) {
    auto t = std::make_unique<piecewise::segment_table>(cfg_.num_layers());
    for (int l = 0; l < cfg_.num_layers(); ++l) {
      const split_decl& sp = layers_[static_cast<std::size_t>(l)].split;
      if (sp.run == nullptr) continue;  // null placeholder: captured whole
      const auto run = sp.run;
      t->set_split(l, piecewise::split_point{
                          sp.name[p == phase::prefill ? 0 : 1],
                          [this, run, l, p](const piecewise::split_args& a) { (this->*run)(l, a, p); },
                          true,
                          {piecewise::row_buffer{sp.output, *sp.buffer, sp.row_bytes, 0, max_rows_,
                                                 piecewise::element_type::bf16}}});
    }
    t->declare_input(
        piecewise::row_buffer{"ids", batch_->ids(), sizeof(int), 0, max_rows_, piecewise::element_type::i32});
    t->declare_output(piecewise::row_buffer{"logits", logits_, static_cast<std::size_t>(vocab_ld_) * sizeof(bf16),
                                            0, max_seqs_, piecewise::element_type::bf16});
    (p == phase::prefill ? prefill_table_ : decode_table_) = std::move(t);
  }
}

void gpu_model::mamba_split(int l, const piecewise::split_args& a, phase p) {
  const layer_dev& L = layers_[static_cast<std::size_t>(l)];
  const batch_view b = batch_->view(a.padded_tokens, p);
  const int W = in_proj_ld_;  // the row stride of proj_ (padded in_proj width)
  const bf16* xbc = proj_ + md_.xbc_offset();
  const bf16* dt = proj_ + md_.dt_offset();
  const auto dt_min = static_cast<float>(cfg_.time_step_limit_lo);
  const auto dt_max = static_cast<float>(cfg_.time_step_limit_hi);
  if (p == phase::prefill) {
    conv1d_prefill(xbc, W, L.conv_w, L.conv_b, L.state.conv, conv_out_, b, md_.conv_dim(), md_.K, a.stream);
    ssd_scan(conv_out_, dt, W, L.A_log, L.D, L.dt_bias, L.state.ssm, y_, ssd_ws_, ssd_ws_bytes_, b, md_, dt_min, dt_max,
             a.stream);
  } else {
    // Each kernel before these writes none of the states, weights or metadata they load early:
    // in_proj writes proj_, the conv update conv_out_ and the conv state.
    conv1d_decode(xbc, W, L.conv_w, L.conv_b, L.state.conv, conv_out_, b, md_.conv_dim(), md_.K, a.stream,
                  /*load_state_early=*/true);
    mamba_decode(conv_out_, dt, W, L.A_log, L.D, L.dt_bias, L.state.ssm, y_, b, md_, dt_min, dt_max, a.stream,
                 /*load_state_early=*/true);
  }
}

void gpu_model::attention_split(int l, const piecewise::split_args& a, phase p) {
  const layer_dev& L = layers_[static_cast<std::size_t>(l)];
  const batch_view b = batch_->view(a.padded_tokens, p);
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

void gpu_model::moe_layer(const layer_dev& L, const batch_view& b, cudaStream_t s) {
  const int T = b.padded_tokens;
  gemm_engine& gm = *gemm_;
  moe_route_params rp;
  rp.num_experts = cfg_.n_routed_experts;
  rp.top_k = cfg_.num_experts_per_tok;
  rp.n_group = cfg_.n_group;
  rp.topk_group = cfg_.topk_group;
  rp.renormalize = cfg_.norm_topk_prob;
  rp.scaling = static_cast<float>(cfg_.routed_scaling_factor);
  // Router in fp32 from the full normed state; the routing and its plan for the real rows.
  gm.linear_f32_out(xn_, L.gate, router_logits_, router_ld_, T, s);
  // The plan made for max_rows_, its grids bounded by this call's rows.
  moe_plan_view plan = moe_plan_;
  plan.rows = T;
  moe_route(router_logits_, router_ld_, L.gate_bias, rp, plan, b.num_tokens, s);
  moe_build_plan(plan, b.num_tokens, s);
  // The routed experts, at the latent width when the model has one.
  const int F = cfg_.moe_intermediate_size, W = cfg_.moe_width(), D = cfg_.hidden_size;
  const bf16* x = xn_;
  if (cfg_.latent_moe()) {
    gm.linear(xn_, L.fc1_latent, moe_latent_, T, s);
    x = moe_latent_;
  }
  moe_grouped_gemm(x, W, /*gather=*/true, L.experts_up, F, W, moe_up_, F, /*relu2=*/true, plan, s);
  moe_grouped_gemm(moe_up_, F, /*gather=*/false, L.experts_down, W, F, moe_down_, W, /*relu2=*/false, plan, s);
  // The shared expert (unscaled) into the residual, then the weighted routed sum.
  gm.linear_relu2(xn_, L.shared_up, proj_, T, s);
  gm.linear(proj_, L.shared_down, h_, T, s, /*accumulate=*/true);
  if (cfg_.latent_moe()) {
    // The latent rows are free again: the combine writes the latent sum there (padding rows
    // zeroed), and fc2 maps it back into the residual.
    moe_combine(moe_down_, W, plan, moe_latent_, W, W, /*accumulate=*/false, b.num_tokens, s);
    gm.linear(moe_latent_, L.fc2_latent, h_, T, s, /*accumulate=*/true);
  } else {
    moe_combine(moe_down_, W, plan, h_, D, D, /*accumulate=*/true, b.num_tokens, s);
  }
}

void gpu_model::pre_norm(const layer_dev& L, const weight& W, int T, cudaStream_t s) {
  const int D = cfg_.hidden_size;
  const auto eps = static_cast<float>(cfg_.eps);
  if (fused(W)) {
    rmsnorm_fp8(h_, L.norm, W.input_scale, gemm_->fp8_input(W, T), T, D, eps, s);
  } else {
    rmsnorm(h_, L.norm, xn_, T, D, eps, s);
  }
}

void gpu_model::project(const bf16* x, const weight& W, bf16* y, int T, cudaStream_t s, bool accumulate) {
  if (fused(W)) {
    gemm_->linear_fp8_input(W, y, T, s, accumulate);
  } else {
    gemm_->linear(x, W, y, T, s, accumulate);
  }
}

void gpu_model::prepare(phase p, int padded) {
  // Every linear weight of a layer is applied to all `padded` rows; lm_head to one row a sequence.
  for (const layer_dev& L : layers_) {
    for (const weight* w : {&L.in_proj, &L.out_proj, &L.qkv, &L.o_proj, &L.up, &L.down, &L.shared_up, &L.shared_down,
                            &L.fc1_latent, &L.fc2_latent})
      if (w->data != nullptr) gemm_->prepare(*w, padded);  // the bf16 or the FP8 plan, by the weight's dtype
    if (L.gate.data != nullptr) gemm_->prepare_f32_out(padded, L.gate.cols, L.gate.rows, router_ld_);
  }
  const weight& lm = weights_->lm_head();
  gemm_->prepare(lm, batch_->view(padded, p).max_seqs);
}

piecewise::forward_fn gpu_model::forward(phase p) {
  return [this, p](piecewise::forward_context& ctx) {
    const int T = ctx.padded_tokens();
    const cudaStream_t s = ctx.stream();
    const int D = cfg_.hidden_size;
    const auto eps = static_cast<float>(cfg_.eps);
    gemm_engine& gm = *gemm_;
    embedding(batch_->ids(), bf16_data(weights_->embeddings()), h_, T, D, cfg_.vocab_size, s);
    const int di = cfg_.d_inner();
    for (int l = 0; l < cfg_.num_layers(); ++l) {
      const layer_dev& L = layers_[static_cast<std::size_t>(l)];
      switch (L.kind) {
        case layer_kind::mamba:
          pre_norm(L, L.in_proj, T, s);
          project(xn_, L.in_proj, proj_, T, s);
          ctx.split(l);
          if (fused(L.out_proj)) {
            gated_rmsnorm_fp8(y_, di, proj_, in_proj_ld_, L.gnorm, L.out_proj.input_scale,
                              gm.fp8_input(L.out_proj, T), di, T, di, cfg_.n_groups, eps, s);
          } else {
            gated_rmsnorm(y_, di, proj_, in_proj_ld_, L.gnorm, g_, di, T, di, cfg_.n_groups, eps, s);
          }
          project(g_, L.out_proj, h_, T, s, /*accumulate=*/true);
          break;
        case layer_kind::attention:
          pre_norm(L, L.qkv, T, s);
          project(xn_, L.qkv, proj_, T, s);
          ctx.split(l);
          gm.linear(attn_out_, L.o_proj, h_, T, s, /*accumulate=*/true);
          break;
        case layer_kind::mlp:
          pre_norm(L, L.up, T, s);
          if (L.up.type != dtype::fp8_e4m3) {  // bf16: the GEMV fuses relu² into its epilogue at one row
            gm.linear_relu2(xn_, L.up, proj_, T, s);
            gm.linear(proj_, L.down, h_, T, s, /*accumulate=*/true);
            break;
          }
          // FP8 up_proj: the GEMM, then relu² (as linear_relu2 does for FP8), straight into
          // down_proj's e4m3 input when that is FP8 too (its K % 16 == 0, so up_proj's rows
          // are unpadded and proj_'s rows are exactly down_proj's input rows).
          project(xn_, L.up, proj_, T, s);
          if (fused(L.down)) {
            relu2_fp8(proj_, static_cast<std::size_t>(T) * L.up.rows, L.down.input_scale, gm.fp8_input(L.down, T), s);
          } else {
            relu2_inplace(proj_, static_cast<std::size_t>(T) * L.up.rows, s);
          }
          project(proj_, L.down, h_, T, s, /*accumulate=*/true);
          break;
        case layer_kind::moe:
          rmsnorm(h_, L.norm, xn_, T, D, eps, s);  // the router and the experts read the bf16 state
          moe_layer(L, batch_->view(T, p), s);
          break;
      }
    }
    const batch_view b = batch_->view(T, p);
    gather_last_rows(h_, last_h_, b, D, s);
    rmsnorm(last_h_, bf16_data(weights_->norm_f()), last_n_, b.max_seqs, D, eps, s);
    gm.linear(last_n_, weights_->lm_head(), logits_, b.max_seqs, s);
    // Decode stays on the GPU: the picked id becomes the next step's input id, the history
    // records it, and every sequence's context grows by one.
    int* out = p == phase::prefill ? next_ids_ : batch_->ids();
    int* hist = p == phase::prefill ? nullptr : history_;
    int* step = p == phase::prefill ? nullptr : batch_->step();
    if (lim_.sampling) {
      sample_rows(logits_, cfg_.vocab_size, b, sampling_, out, hist, max_seqs_, step, sample_ws_, sample_ws_bytes_, s,
                  vocab_ld_);
    } else {
      argmax_rows(logits_, cfg_.vocab_size, out, b.max_seqs, batch_->num_seqs(), hist, max_seqs_, step, s, vocab_ld_);
    }
    if (p == phase::decode) advance_context(batch_->context_lens(), batch_->num_seqs(), b.max_seqs, s);
  };
}

void gpu_model::set_sampling(int slot, const sampling_params& params, cudaStream_t s) {
  PIECEWISE_EXPECTS(slot >= 0 && slot < lim_.num_slots, "set_sampling: slot {} is outside 0..{}", slot,
                    lim_.num_slots - 1);
  if (!lim_.sampling) {
    PIECEWISE_EXPECTS(params.temperature <= 0.0f,
                      "set_sampling: slot {} asks for temperature {}, but the model was built greedy-only "
                      "(gpu_model_limits::sampling is false)",
                      slot, params.temperature);
    return;  // greedy is all the argmax forward does
  }
  // Pageable source: the driver stages it before returning.
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(sampling_ + slot, &params, sizeof(params), cudaMemcpyHostToDevice, s));
}

std::vector<float> gpu_model::read_logits(int n, cudaStream_t s) const {
  const auto V = static_cast<std::size_t>(cfg_.vocab_size), ld = static_cast<std::size_t>(vocab_ld_);
  std::vector<bf16_bits> raw(static_cast<std::size_t>(n) * ld);
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(raw.data(), logits_, raw.size() * sizeof(bf16), cudaMemcpyDeviceToHost, s));
  PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
  std::vector<float> out(static_cast<std::size_t>(n) * V);  // the padded columns dropped
  for (std::size_t r = 0; r < static_cast<std::size_t>(n); ++r)
    for (std::size_t j = 0; j < V; ++j) out[r * V + j] = piecewise::bf16_bits_to_float(raw[r * ld + j]);
  return out;
}

std::vector<int> gpu_model::read_next_ids(int n, cudaStream_t s) const {
  std::vector<int> v(static_cast<std::size_t>(n));
  PIECEWISE_CUDA_TRY(cudaMemcpyAsync(v.data(), next_ids_, v.size() * sizeof(int), cudaMemcpyDeviceToHost, s));
  PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
  return v;
}

std::vector<int> gpu_model::read_expert_counts(cudaStream_t s) const {
  if (moe_plan_.expert_offsets == nullptr) return {};
  std::vector<int> off(static_cast<std::size_t>(cfg_.n_routed_experts) + 1);
  PIECEWISE_CUDA_TRY(
      cudaMemcpyAsync(off.data(), moe_plan_.expert_offsets, off.size() * sizeof(int), cudaMemcpyDeviceToHost, s));
  PIECEWISE_CUDA_TRY(cudaStreamSynchronize(s));
  std::vector<int> counts(static_cast<std::size_t>(cfg_.n_routed_experts));
  for (std::size_t e = 0; e < counts.size(); ++e) counts[e] = off[e + 1] - off[e];
  return counts;
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
