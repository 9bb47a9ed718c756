#include "runner/engine.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace nemotron_h {

engine::engine(const model_config& config, const model_weights& weights, const gpu_model_limits& limits)
    : model_(std::make_unique<gpu_model>(config, weights, limits)) {}

engine::engine(const model_config& config, const weight_source& source, const gpu_model_limits& limits)
    : model_(std::make_unique<gpu_model>(config, source, limits)) {}

mode_runners& engine::add_mode(piecewise::mode m, const std::vector<int>& prefill_buckets,
                               const piecewise::progress_fn& progress) {
  const auto& lim = model_->limits();
  mode_runners r;
  piecewise::runner_options po;
  po.requested = m;
  // No eager warm-up before each bucket's capture: what a first run would set up is done
  // here instead (the GEMM algorithm choices, prepare() below); kernels load lazily during
  // capture, which the driver supports (CUDA 12.3+). The warm-ups were 83% of the capture
  // time at Nano-9B-v2 shapes (H200, docs/benchmarks.md).
  po.warmup_runs = 0;
  po.name = fmt::format("prefill/{}", piecewise::to_string(m));
  piecewise::runner_options dopt = po;
  dopt.name = fmt::format("decode/{}", piecewise::to_string(m));
  auto pb = prefill_buckets.empty() ? piecewise::capture_buckets::default_prefill(lim.max_prefill_tokens)
                                    : piecewise::capture_buckets(prefill_buckets);
  PIECEWISE_EXPECTS(pb.largest() <= lim.max_prefill_tokens,
                    "prefill buckets go up to {} but max_prefill_tokens is {}", pb.largest(), lim.max_prefill_tokens);
  r.prefill = std::make_unique<piecewise::graph_runner>(model_->table(phase::prefill), std::move(pb),
                                                        model_->forward(phase::prefill), po);
  r.decode = std::make_unique<piecewise::graph_runner>(
      model_->table(phase::decode), piecewise::capture_buckets::default_decode(lim.max_decode_batch),
      model_->forward(phase::decode), dopt);
  if (m != piecewise::mode::eager) {
    for (int size : r.prefill->buckets().sizes()) model_->prepare(phase::prefill, size);
    for (int size : r.decode->buckets().sizes()) model_->prepare(phase::decode, size);
  }
  // Capture must not touch live sequences: no sequences in the metadata.
  model_->clear_batch(stream_);
  stream_.synchronize();
  r.prefill->capture(progress);
  r.decode->capture(progress);
  runners_.erase(m);
  return runners_.emplace(m, std::move(r)).first->second;
}

mode_runners& engine::runners(piecewise::mode m) {
  auto it = runners_.find(m);
  if (it == runners_.end())
    throw piecewise::error(fmt::format("engine: mode {} was not set up (add_mode)", piecewise::to_string(m)));
  return it->second;
}

workload_result engine::run(piecewise::mode m, const std::vector<std::vector<int>>& prompts, int gen) {
  mode_runners& r = runners(m);
  const auto& lim = model_->limits();
  const int n = static_cast<int>(prompts.size());
  PIECEWISE_EXPECTS(n >= 1 && n <= lim.num_slots && n <= lim.max_decode_batch,
                    "engine: {} prompts, but there are {} slots and the decode batch is at most {}", n, lim.num_slots,
                    lim.max_decode_batch);
  PIECEWISE_EXPECTS(gen >= 1 && gen - 1 <= lim.max_decode_steps, "engine: gen {} must be in 1..{}", gen,
                    lim.max_decode_steps + 1);
  for (int i = 0; i < n; ++i) {
    const auto len = static_cast<int>(prompts[static_cast<std::size_t>(i)].size());
    PIECEWISE_EXPECTS(len >= 1, "engine: prompt {} is empty", i);
    PIECEWISE_EXPECTS(len + gen <= lim.max_context, "engine: prompt {} ({} tokens) + {} generated exceeds max_context {}",
                      i, len, gen, lim.max_context);
  }
  workload_result res;
  res.mode = m;
  res.last_logits.resize(static_cast<std::size_t>(n));
  res.tokens.assign(static_cast<std::size_t>(n), {});
  const int chunk_cap = r.prefill->buckets().largest();
  const cudaStream_t s = stream_.get();
  piecewise::event e0(cudaEventDefault), e1(cudaEventDefault);

  // ---- prefill: prompts packed into chunks of at most chunk_cap tokens ----
  std::vector<int> first(static_cast<std::size_t>(n), 0);
  const auto V = static_cast<std::size_t>(model_->config().vocab_size);
  for (const prefill_chunk& c : pack_prefill_chunks(prompts, chunk_cap, lim.max_decode_batch)) {
    model_->set_prefill_batch(c.tokens, c.lens, c.slots, c.context, s);
    e0.record(s);
    r.prefill->run(static_cast<int>(c.tokens.size()), s);
    e1.record(s);
    e1.synchronize();
    res.prefill_ms += e1.elapsed_ms_since(e0);
    ++res.prefill_chunks;
    const int k = static_cast<int>(c.lens.size());
    const std::vector<float> logits = model_->read_logits(k, s);
    const std::vector<int> ids = model_->read_next_ids(k, s);
    for (int j = 0; j < k; ++j) {
      if (!c.last[static_cast<std::size_t>(j)]) continue;
      const auto i = static_cast<std::size_t>(c.slots[static_cast<std::size_t>(j)]);
      res.last_logits[i].assign(logits.begin() + static_cast<std::ptrdiff_t>(j * V),
                                logits.begin() + static_cast<std::ptrdiff_t>((j + 1) * V));
      first[i] = ids[static_cast<std::size_t>(j)];
    }
  }
  for (int i = 0; i < n; ++i) res.tokens[static_cast<std::size_t>(i)].push_back(first[static_cast<std::size_t>(i)]);

  // ---- decode: gen - 1 greedy steps, entirely on the GPU ----
  const int steps = gen - 1;
  if (steps > 0) {
    std::vector<int> slots(static_cast<std::size_t>(n)), context(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      slots[static_cast<std::size_t>(i)] = i;
      context[static_cast<std::size_t>(i)] = static_cast<int>(prompts[static_cast<std::size_t>(i)].size());
    }
    model_->set_decode_batch(first, slots, context, s);
    e0.record(s);
    for (int t = 0; t < steps; ++t) r.decode->run(n, s);
    e1.record(s);
    e1.synchronize();
    res.decode_steps = steps;
    res.decode_ms_per_step = e1.elapsed_ms_since(e0) / steps;
    const std::vector<int> hist = model_->read_history(steps, n, s);
    for (int t = 0; t < steps; ++t)
      for (int i = 0; i < n; ++i)
        res.tokens[static_cast<std::size_t>(i)].push_back(hist[static_cast<std::size_t>(t) * n + i]);
  }
  return res;
}

}  // namespace nemotron_h
