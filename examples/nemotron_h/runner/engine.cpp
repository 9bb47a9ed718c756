#include "runner/engine.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include <fmt/format.h>

namespace nemotron_h {

namespace {

/// Pinned host ints: the ids of in-flight decode steps land here.
class pinned_ints {
 public:
  explicit pinned_ints(std::size_t n) {
    PIECEWISE_CUDA_TRY_CTX(cudaHostAlloc(reinterpret_cast<void**>(&p_), std::max<std::size_t>(n, 1) * sizeof(int),
                                         cudaHostAllocDefault),
                           "generate: pinned id buffers");
  }
  ~pinned_ints() { cudaFreeHost(p_); }
  pinned_ints(const pinned_ints&) = delete;
  pinned_ints& operator=(const pinned_ints&) = delete;
  int* get() const noexcept { return p_; }

 private:
  int* p_ = nullptr;
};

sampling_params to_params(const sampling_settings& s) {
  sampling_params p;
  p.temperature = s.temperature;
  p.top_k = s.top_k;
  p.top_p = s.top_p;
  p.min_p = s.min_p;
  p.seed = s.seed;
  return p;
}

}  // namespace

const char* to_string(finish_reason r) noexcept {
  switch (r) {
    case finish_reason::stop_id: return "stop token";
    case finish_reason::max_tokens: return "max tokens";
    case finish_reason::callback: return "stop string";
  }
  return "?";
}

engine::engine(const model_config& config, const model_weights& weights, const gpu_model_limits& limits)
    : model_(std::make_unique<gpu_model>(config, weights, limits)) {}

engine::engine(const model_config& config, const weight_source& source, const gpu_model_limits& limits)
    : model_(std::make_unique<gpu_model>(config, source, limits)) {}

mode_runners& engine::add_mode(piecewise::mode m, const std::vector<int>& prefill_buckets,
                               const piecewise::progress_fn& progress, int executables_per_segment) {
  const auto& lim = model_->limits();
  mode_runners r;
  piecewise::runner_options po;
  po.requested = m;
  // No eager warm-up before each bucket's capture: what a first run would set up is done
  // here instead (the GEMM algorithm choices, prepare() below); kernels load lazily during
  // capture, which the driver supports (CUDA 12.3+). The warm-ups were 83% of the capture
  // time at Nano-9B-v2 shapes (H200, docs/benchmarks.md).
  po.warmup_runs = 0;
  po.executables_per_segment = executables_per_segment;
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

std::vector<generation_result> engine::generate(piecewise::mode m, const std::vector<generation_request>& reqs,
                                                const token_callback& on_token, const generation_options& opt) {
  mode_runners& r = runners(m);
  const auto& lim = model_->limits();
  const int n = static_cast<int>(reqs.size());
  PIECEWISE_EXPECTS(n >= 1 && n <= lim.num_slots && n <= lim.max_decode_batch,
                    "generate: {} requests, but there are {} slots and the decode batch is at most {}", n,
                    lim.num_slots, lim.max_decode_batch);
  PIECEWISE_EXPECTS(opt.lookahead >= 0 && opt.lookahead <= 64, "generate: lookahead {} is outside 0..64", opt.lookahead);
  std::set<int> slots_seen;
  for (int i = 0; i < n; ++i) {
    const generation_request& q = reqs[static_cast<std::size_t>(i)];
    const auto len = static_cast<int>(q.tokens.size());
    PIECEWISE_EXPECTS(len >= 1, "generate: request {} has no tokens", i);
    PIECEWISE_EXPECTS(q.slot >= 0 && q.slot < lim.num_slots && slots_seen.insert(q.slot).second,
                      "generate: request {} has slot {} (out of range 0..{} or used twice)", i, q.slot,
                      lim.num_slots - 1);
    PIECEWISE_EXPECTS(q.sampling.max_tokens >= 1 && q.sampling.max_tokens - 1 <= lim.max_decode_steps,
                      "generate: request {} asks for {} tokens (1..{})", i, q.sampling.max_tokens,
                      lim.max_decode_steps + 1);
    PIECEWISE_EXPECTS(q.context >= 0 && q.context + len + q.sampling.max_tokens <= lim.max_context,
                      "generate: request {}: {} cached + {} new + {} generated tokens exceed max_context {}", i,
                      q.context, len, q.sampling.max_tokens, lim.max_context);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto ms_now = [&] { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(); };
  const cudaStream_t s = stream_.get();
  for (const generation_request& q : reqs) model_->set_sampling(q.slot, to_params(q.sampling), s);

  std::vector<generation_result> out(static_cast<std::size_t>(n));
  std::vector<bool> done(static_cast<std::size_t>(n), false);
  // Hands token `tok` of sequence i to the caller; false when the sequence is finished.
  auto take = [&](int i, int tok) {
    const auto u = static_cast<std::size_t>(i);
    generation_result& g = out[u];
    const generation_request& q = reqs[u];
    g.tokens.push_back(tok);
    if (g.tokens.size() == 1) g.first_token_ms = ms_now();
    g.last_token_ms = ms_now();
    if (std::find(q.stop_ids.begin(), q.stop_ids.end(), tok) != q.stop_ids.end()) {
      g.finish = finish_reason::stop_id;
      done[u] = true;
    }
    if (on_token && !on_token(i, tok) && !done[u]) {
      g.finish = finish_reason::callback;
      done[u] = true;
    }
    if (!done[u] && static_cast<int>(g.tokens.size()) >= q.sampling.max_tokens) {
      g.finish = finish_reason::max_tokens;
      done[u] = true;
    }
    return !done[u];
  };

  // ---- prefill: every request's tokens, packed into chunks ----
  std::vector<std::vector<int>> prompts;
  for (const generation_request& q : reqs) prompts.push_back(q.tokens);
  for (const prefill_chunk& c : pack_prefill_chunks(prompts, r.prefill->buckets().largest(), lim.max_decode_batch)) {
    std::vector<int> slots, context;
    for (std::size_t j = 0; j < c.slots.size(); ++j) {
      const generation_request& q = reqs[static_cast<std::size_t>(c.slots[j])];
      slots.push_back(q.slot);
      context.push_back(q.context + c.context[j]);
    }
    model_->set_prefill_batch(c.tokens, c.lens, slots, context, s);
    r.prefill->run(static_cast<int>(c.tokens.size()), s);
    const std::vector<int> ids = model_->read_next_ids(static_cast<int>(c.lens.size()), s);
    for (std::size_t j = 0; j < c.lens.size(); ++j)
      if (c.last[j]) (void)take(c.slots[j], ids[j]);
  }
  for (int i = 0; i < n; ++i) {
    const auto u = static_cast<std::size_t>(i);
    out[u].state_tokens = reqs[u].context + static_cast<int>(reqs[u].tokens.size());
  }

  // ---- decode: one token a step for the unfinished sequences ----
  const int ring = opt.lookahead + 1;
  pinned_ints host_ids(static_cast<std::size_t>(ring) * static_cast<std::size_t>(n));
  std::vector<piecewise::event> ready;
  for (int k = 0; k < ring; ++k) ready.emplace_back(cudaEventDisableTiming);
  std::vector<int> active;  // batch row -> request
  auto rebuild = [&] {
    active.clear();
    std::vector<int> first, slots, context;
    for (int i = 0; i < n; ++i) {
      const auto u = static_cast<std::size_t>(i);
      if (done[u]) continue;
      active.push_back(i);
      first.push_back(out[u].tokens.back());
      slots.push_back(reqs[u].slot);
      context.push_back(out[u].state_tokens);
    }
    if (!active.empty()) model_->set_decode_batch(first, slots, context, s);
  };
  rebuild();
  int launched = 0, processed = 0;  // decode steps since the last rebuild
  // Steps still needed for the longest-running active sequence, beyond those launched.
  auto needed = [&] {
    int most = 0;
    for (int i : active) {
      const auto u = static_cast<std::size_t>(i);
      if (!done[u]) most = std::max(most, reqs[u].sampling.max_tokens - static_cast<int>(out[u].tokens.size()));
    }
    return most - (launched - processed);
  };
  auto process = [&]() {  // the oldest launched step: returns whether a sequence finished
    const int k = processed % ring;
    ready[static_cast<std::size_t>(k)].synchronize();
    const int* ids = host_ids.get() + static_cast<std::size_t>(k) * static_cast<std::size_t>(n);
    ++processed;
    bool finished = false;
    for (std::size_t row = 0; row < active.size(); ++row) {
      const int i = active[row];
      if (done[static_cast<std::size_t>(i)]) continue;
      finished = !take(i, ids[row]) || finished;
    }
    return finished;
  };
  while (!active.empty()) {
    while (launched - processed <= opt.lookahead && needed() > 0) {
      const int rows = static_cast<int>(active.size());
      r.decode->run(rows, s);
      for (int i : active) ++out[static_cast<std::size_t>(i)].state_tokens;  // each step feeds one token a row
      const int k = launched % ring;
      PIECEWISE_CUDA_TRY(cudaMemcpyAsync(host_ids.get() + static_cast<std::size_t>(k) * static_cast<std::size_t>(n),
                                         model_->batch_ids(), static_cast<std::size_t>(rows) * sizeof(int),
                                         cudaMemcpyDeviceToHost, s));
      ready[static_cast<std::size_t>(k)].record(s);
      ++launched;
    }
    if (processed == launched) break;  // nothing left to run (every sequence finished)
    if (process()) {
      // A sequence finished: read the steps already in flight, then continue with the rest.
      while (processed < launched) (void)process();
      rebuild();
      launched = processed = 0;
    }
  }
  stream_.synchronize();
  return out;
}

}  // namespace nemotron_h
