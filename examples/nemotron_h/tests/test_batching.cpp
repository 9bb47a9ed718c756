// The runner's host-side batch planning: packing prompts into prefill chunks, and the checks
// of prefill / decode batches against the model's limits. No GPU.
#include <catch2/catch.hpp>

#include <numeric>
#include <vector>

#include "model/random_tokens.hpp"
#include "model_test_util.hpp"
#include "runner/batching.hpp"

using namespace nemotron_h;
using Catch::Matchers::Contains;
using nh_test::error_of;

namespace {

std::vector<std::vector<int>> prompts_of(const std::vector<int>& lens) {
  std::vector<std::vector<int>> p;
  int id = 0;
  for (int len : lens) {
    p.emplace_back(static_cast<std::size_t>(len));
    for (int& t : p.back()) t = id++;  // every token distinct: where it lands is visible
  }
  return p;
}

/// Checks the invariants every packing must keep and returns the chunks' token counts.
std::vector<int> check_packing(const std::vector<std::vector<int>>& prompts, int max_tokens, int max_seqs) {
  const std::vector<prefill_chunk> chunks = pack_prefill_chunks(prompts, max_tokens, max_seqs);
  std::vector<std::vector<int>> seen(prompts.size());
  std::vector<int> sizes;
  for (const prefill_chunk& c : chunks) {
    REQUIRE(!c.lens.empty());
    REQUIRE(c.lens.size() == c.slots.size());
    REQUIRE(c.lens.size() == c.context.size());
    REQUIRE(c.lens.size() == c.last.size());
    REQUIRE(static_cast<int>(c.lens.size()) <= max_seqs);
    REQUIRE(std::accumulate(c.lens.begin(), c.lens.end(), 0) == static_cast<int>(c.tokens.size()));
    REQUIRE(static_cast<int>(c.tokens.size()) <= max_tokens);
    std::size_t off = 0;
    for (std::size_t j = 0; j < c.lens.size(); ++j) {
      auto& s = seen[static_cast<std::size_t>(c.slots[j])];
      REQUIRE(c.context[j] == static_cast<int>(s.size()));  // continues where the last chunk stopped
      s.insert(s.end(), c.tokens.begin() + static_cast<std::ptrdiff_t>(off),
               c.tokens.begin() + static_cast<std::ptrdiff_t>(off) + c.lens[j]);
      off += static_cast<std::size_t>(c.lens[j]);
      REQUIRE(c.last[j] == (s.size() == prompts[static_cast<std::size_t>(c.slots[j])].size()));
      if (j > 0) REQUIRE(c.slots[j] > c.slots[j - 1]);  // prompt order
    }
    sizes.push_back(static_cast<int>(c.tokens.size()));
  }
  REQUIRE(seen == prompts);  // every token exactly once, in order
  return sizes;
}

}  // namespace

TEST_CASE("prefill chunks: one long prompt is split into full chunks and a rest", "[batching]") {
  const auto p = prompts_of({300});
  CHECK(check_packing(p, 128, 8) == std::vector<int>{128, 128, 44});
  const auto chunks = pack_prefill_chunks(p, 128, 8);
  CHECK(chunks[1].context == std::vector<int>{128});
  CHECK(chunks[2].context == std::vector<int>{256});
  CHECK(chunks[0].last == std::vector<bool>{false});
  CHECK(chunks[2].last == std::vector<bool>{true});
  CHECK(check_packing(prompts_of({1}), 1, 1) == std::vector<int>{1});
}

TEST_CASE("prefill chunks: many short prompts share chunks up to the token and sequence limits", "[batching]") {
  CHECK(check_packing(prompts_of(std::vector<int>(10, 5)), 128, 64) == std::vector<int>{50});
  CHECK(check_packing(prompts_of(std::vector<int>(10, 5)), 128, 4) == std::vector<int>{20, 20, 10});
  // The sequence limit holds even with room left: one sequence a chunk.
  CHECK(check_packing(prompts_of({3, 4, 5}), 128, 1) == std::vector<int>{3, 4, 5});
  // A prompt that does not fit is split; its rest opens the next chunk.
  CHECK(check_packing(prompts_of({100, 50}), 128, 8) == std::vector<int>{128, 22});
  const auto chunks = pack_prefill_chunks(prompts_of({100, 50}), 128, 8);
  CHECK(chunks[0].lens == std::vector<int>{100, 28});
  CHECK(chunks[0].last == std::vector<bool>{true, false});
  CHECK(chunks[1].slots == std::vector<int>{1});
  CHECK(chunks[1].context == std::vector<int>{28});
}

TEST_CASE("prefill chunks: exact fits end a chunk without an empty remainder", "[batching]") {
  CHECK(check_packing(prompts_of({128}), 128, 8) == std::vector<int>{128});
  CHECK(check_packing(prompts_of({64, 64}), 128, 8) == std::vector<int>{128});
  CHECK(check_packing(prompts_of({64, 64, 1}), 128, 8) == std::vector<int>{128, 1});
  CHECK(check_packing(prompts_of({256}), 128, 8) == std::vector<int>{128, 128});
  CHECK(check_packing(prompts_of({2, 2}), 4, 2) == std::vector<int>{4});
  // The engine's bucket-edge workloads.
  CHECK(check_packing(prompts_of({127}), 128, 8) == std::vector<int>{127});
  CHECK(check_packing(prompts_of({129}), 128, 8) == std::vector<int>{128, 1});
  CHECK(check_packing(prompts_of({300, 5}), 128, 8) == std::vector<int>{128, 128, 49});
}

TEST_CASE("prefill chunks: random workloads keep every invariant", "[batching]") {
  std::uint64_t x = 17;
  for (int round = 0; round < 300; ++round) {
    std::vector<int> lens(1 + lcg_next(x) % 12);
    for (int& l : lens) l = 1 + static_cast<int>(lcg_next(x) % 700);
    const int max_tokens = 1 + static_cast<int>(lcg_next(x) % 300);
    const int max_seqs = 1 + static_cast<int>(lcg_next(x) % 10);
    CAPTURE(round, max_tokens, max_seqs);
    (void)check_packing(prompts_of(lens), max_tokens, max_seqs);
  }
}

TEST_CASE("prefill chunks: bad input is refused", "[batching]") {
  CHECK_THAT(error_of([] { (void)pack_prefill_chunks({}, 8, 8); }), Contains("no prompts"));
  CHECK_THAT(error_of([] { (void)pack_prefill_chunks({{1, 2}, {}}, 8, 8); }), Contains("prompt 1 is empty"));
  CHECK_THAT(error_of([] { (void)pack_prefill_chunks({{1}}, 0, 8); }), Contains("must be >= 1"));
  CHECK_THAT(error_of([] { (void)pack_prefill_chunks({{1}}, 8, 0); }), Contains("must be >= 1"));
}

TEST_CASE("batch checks: prefill and decode batches are checked against the limits", "[batching]") {
  gpu_model_limits lim;
  lim.max_prefill_tokens = 8;
  lim.max_decode_batch = 2;
  lim.num_slots = 3;
  lim.max_context = 10;
  CHECK(max_rows(lim) == 8);
  CHECK(max_sequences(lim) == 3);
  CHECK(check_prefill_batch({1, 2, 3, 4}, {3, 1}, {2, 0}, {0, 5}, lim, 16) == std::vector<int>{0, 3, 4});
  auto prefill = [&](std::vector<int> t, std::vector<int> l, std::vector<int> s, std::vector<int> c) {
    return error_of([&] { (void)check_prefill_batch(t, l, s, c, lim, 16); });
  };
  CHECK_THAT(prefill({}, {}, {}, {}), Contains("prefill batch: 0 sequences (1..3 allowed)"));
  CHECK_THAT(prefill({1}, {1}, {0, 1}, {0}), Contains("1 lengths but 2 slots and 1 contexts"));
  CHECK_THAT(prefill({1}, {0}, {0}, {0}), Contains("sequence 0 has 0 tokens"));
  CHECK_THAT(prefill({1}, {1}, {3}, {0}), Contains("sequence 0 uses slot 3 (0..2)"));
  CHECK_THAT(prefill({1, 2}, {1, 1}, {1, 1}, {0, 0}), Contains("slot 1 is used twice"));
  CHECK_THAT(prefill({1, 2}, {2}, {0}, {9}), Contains("would reach 11 positions, more than max_context 10"));
  CHECK_THAT(prefill({1, 2}, {1}, {0}, {0}), Contains("lengths add up to 1 but 2 tokens given"));
  CHECK_THAT(prefill(std::vector<int>(9, 1), {5, 4}, {0, 1}, {0, 0}), Contains("9 tokens exceed max_prefill_tokens 8"));
  CHECK_THAT(prefill({1, 16}, {2}, {0}, {0}), Contains("token 1 has id 16 (vocab 16)"));

  CHECK_NOTHROW(check_decode_batch({1, 2}, {0, 2}, {1, 9}, lim, 16));
  auto decode = [&](std::vector<int> ids, std::vector<int> s, std::vector<int> c) {
    return error_of([&] { check_decode_batch(ids, s, c, lim, 16); });
  };
  CHECK_THAT(decode({1, 2, 3}, {0, 1, 2}, {1, 1, 1}), Contains("decode batch: 3 sequences (1..2 allowed)"));
  CHECK_THAT(decode({1}, {0}, {}), Contains("1 ids but 1 slots and 0 contexts"));
  CHECK_THAT(decode({1, 2}, {1, 1}, {1, 1}), Contains("sequence 1 has slot 1 (out of range 0..2 or used twice)"));
  CHECK_THAT(decode({1}, {0}, {10}), Contains("sequence 0 has context 10 (1..9 allowed)"));
  CHECK_THAT(decode({-1}, {0}, {1}), Contains("sequence 0 starts with id -1"));

  lim.num_slots = 0;
  CHECK_THAT(error_of([&] { check_limits(lim); }), Contains("every limit must be positive") && Contains("slots 0"));
}
