// Host-side batch checks and prefill chunk packing (see batching.hpp).
#include "runner/batching.hpp"

#include <algorithm>
#include <set>

#include "piecewise/error.hpp"

namespace nemotron_h {

int max_rows(const gpu_model_limits& lim) noexcept { return std::max(lim.max_prefill_tokens, lim.max_decode_batch); }

int max_sequences(const gpu_model_limits& lim) noexcept { return std::max(lim.num_slots, lim.max_decode_batch); }

void check_limits(const gpu_model_limits& lim) {
  PIECEWISE_EXPECTS(lim.max_prefill_tokens > 0 && lim.max_decode_batch > 0 && lim.num_slots > 0 &&
                        lim.max_context > 0 && lim.max_decode_steps > 0,
                    "gpu_model: every limit must be positive (prefill tokens {}, decode batch {}, slots {}, "
                    "context {}, decode steps {})",
                    lim.max_prefill_tokens, lim.max_decode_batch, lim.num_slots, lim.max_context,
                    lim.max_decode_steps);
}

std::vector<int> check_prefill_batch(const std::vector<int>& tokens, const std::vector<int>& lens,
                                     const std::vector<int>& slots, const std::vector<int>& context,
                                     const gpu_model_limits& lim, int vocab) {
  const int n = static_cast<int>(lens.size());
  const int max_seqs = max_sequences(lim);
  PIECEWISE_EXPECTS(n > 0 && n <= max_seqs, "prefill batch: {} sequences (1..{} allowed)", n, max_seqs);
  PIECEWISE_EXPECTS(slots.size() == lens.size() && context.size() == lens.size(),
                    "prefill batch: {} lengths but {} slots and {} contexts", n, slots.size(), context.size());
  std::vector<int> cu(static_cast<std::size_t>(n) + 1, 0);
  std::set<int> seen;
  for (int i = 0; i < n; ++i) {
    const auto u = static_cast<std::size_t>(i);
    PIECEWISE_EXPECTS(lens[u] >= 1, "prefill batch: sequence {} has {} tokens", i, lens[u]);
    PIECEWISE_EXPECTS(slots[u] >= 0 && slots[u] < lim.num_slots, "prefill batch: sequence {} uses slot {} (0..{})", i,
                      slots[u], lim.num_slots - 1);
    PIECEWISE_EXPECTS(seen.insert(slots[u]).second, "prefill batch: slot {} is used twice", slots[u]);
    PIECEWISE_EXPECTS(context[u] >= 0 && context[u] + lens[u] <= lim.max_context,
                      "prefill batch: sequence {} would reach {} positions, more than max_context {}", i,
                      context[u] + lens[u], lim.max_context);
    cu[u + 1] = cu[u] + lens[u];
  }
  PIECEWISE_EXPECTS(cu.back() == static_cast<int>(tokens.size()),
                    "prefill batch: lengths add up to {} but {} tokens given", cu.back(), tokens.size());
  PIECEWISE_EXPECTS(cu.back() <= lim.max_prefill_tokens, "prefill batch: {} tokens exceed max_prefill_tokens {}",
                    cu.back(), lim.max_prefill_tokens);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    PIECEWISE_EXPECTS(tokens[i] >= 0 && tokens[i] < vocab, "prefill batch: token {} has id {} (vocab {})", i,
                      tokens[i], vocab);
  }
  return cu;
}

void check_decode_batch(const std::vector<int>& first_ids, const std::vector<int>& slots,
                        const std::vector<int>& context, const gpu_model_limits& lim, int vocab) {
  const int n = static_cast<int>(first_ids.size());
  PIECEWISE_EXPECTS(n > 0 && n <= lim.max_decode_batch, "decode batch: {} sequences (1..{} allowed)", n,
                    lim.max_decode_batch);
  PIECEWISE_EXPECTS(slots.size() == first_ids.size() && context.size() == first_ids.size(),
                    "decode batch: {} ids but {} slots and {} contexts", n, slots.size(), context.size());
  std::set<int> seen;
  for (int i = 0; i < n; ++i) {
    const auto u = static_cast<std::size_t>(i);
    PIECEWISE_EXPECTS(slots[u] >= 0 && slots[u] < lim.num_slots && seen.insert(slots[u]).second,
                      "decode batch: sequence {} has slot {} (out of range 0..{} or used twice)", i, slots[u],
                      lim.num_slots - 1);
    PIECEWISE_EXPECTS(context[u] >= 1 && context[u] < lim.max_context,
                      "decode batch: sequence {} has context {} (1..{} allowed)", i, context[u], lim.max_context - 1);
    PIECEWISE_EXPECTS(first_ids[u] >= 0 && first_ids[u] < vocab, "decode batch: sequence {} starts with id {}", i,
                      first_ids[u]);
  }
}

std::vector<prefill_chunk> pack_prefill_chunks(const std::vector<std::vector<int>>& prompts, int max_tokens,
                                               int max_seqs) {
  PIECEWISE_EXPECTS(!prompts.empty(), "prefill chunks: no prompts");
  PIECEWISE_EXPECTS(max_tokens >= 1 && max_seqs >= 1,
                    "prefill chunks: at most {} tokens and {} sequences a chunk (both must be >= 1)", max_tokens,
                    max_seqs);
  const int n = static_cast<int>(prompts.size());
  for (int i = 0; i < n; ++i) {
    PIECEWISE_EXPECTS(!prompts[static_cast<std::size_t>(i)].empty(), "prefill chunks: prompt {} is empty", i);
  }
  std::vector<prefill_chunk> chunks;
  std::vector<int> done(static_cast<std::size_t>(n), 0);  // tokens of each prompt already packed
  auto finished = [&](int i) {
    return done[static_cast<std::size_t>(i)] == static_cast<int>(prompts[static_cast<std::size_t>(i)].size());
  };
  int next = 0;  // first prompt not finished
  while (next < n) {
    prefill_chunk c;
    int room = max_tokens;
    for (int i = next; i < n && room > 0 && static_cast<int>(c.lens.size()) < max_seqs; ++i) {
      const auto u = static_cast<std::size_t>(i);
      const auto& p = prompts[u];
      const int left = static_cast<int>(p.size()) - done[u];
      if (left == 0) continue;
      const int take = std::min(left, room);
      c.tokens.insert(c.tokens.end(), p.begin() + done[u], p.begin() + done[u] + take);
      c.lens.push_back(take);
      c.slots.push_back(i);
      c.context.push_back(done[u]);
      done[u] += take;
      c.last.push_back(finished(i));
      room -= take;
    }
    chunks.push_back(std::move(c));
    while (next < n && finished(next)) ++next;
  }
  return chunks;
}

}  // namespace nemotron_h
