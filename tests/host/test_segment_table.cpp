// segment_table: construction, every error case, the listing, declarations and rebinding.
#include <catch2/catch.hpp>

#include "piecewise/segment_table.hpp"

using namespace piecewise;

namespace {
split_point sp(std::string name, bool safe = false) {
  return split_point{std::move(name), [](const split_args&) {}, safe, {}};
}
int dummy[64];
}  // namespace

TEST_CASE("a new table has one null entry per layer") {
  segment_table t(56);
  REQUIRE(t.num_layers() == 56);
  REQUIRE(t.num_splits() == 0);
  REQUIRE(t.num_segments() == 1);
  for (int i = 0; i < 56; ++i) REQUIRE(t.at(i) == nullptr);
  REQUIRE_THROWS_WITH(segment_table(0), Catch::Contains("positive"));
  REQUIRE_THROWS_AS(segment_table(-1), config_error);
}

TEST_CASE("set_split: range, duplicates, missing callback, bad buffers") {
  segment_table t(10);
  REQUIRE_THROWS_WITH(t.set_split(10, sp("m")), Catch::Contains("layer 10 is out of range") &&
                                                    Catch::Contains("10 layers, 0..9"));
  REQUIRE_THROWS_WITH(t.set_split(-1, sp("m")), Catch::Contains("layer -1"));
  REQUIRE_THROWS_WITH(t.at(12), Catch::Contains("layer 12"));
  t.set_split(3, sp("mamba"));
  REQUIRE_THROWS_WITH(t.set_split(3, sp("attention")),
                      Catch::Contains("layer 3 is already a split point ('mamba')"));
  REQUIRE_THROWS_WITH(t.set_split(4, split_point{"nofn", nullptr, false, {}}),
                      Catch::Contains("'nofn' at layer 4 has no callback"));
  split_point bad = sp("attention");
  bad.zero_outputs.push_back(row_buffer{"attn_out", nullptr, 128, 0, 8});
  REQUIRE_THROWS_WITH(t.set_split(5, bad), Catch::Contains("'attn_out'") && Catch::Contains("null"));
  bad.zero_outputs[0] = row_buffer{"attn_out", dummy, 128, 64, 8};
  REQUIRE_THROWS_WITH(t.set_split(5, bad), Catch::Contains("pitch 64 smaller than its row size 128"));
  bad.zero_outputs[0] = row_buffer{"attn_out", dummy, 0, 0, 8};
  REQUIRE_THROWS_WITH(t.set_split(5, bad), Catch::Contains("both must be positive"));
  // Failed calls changed nothing.
  REQUIRE(t.split_layers() == std::vector<int>{3});
  REQUIRE(t.at(5) == nullptr);
}

TEST_CASE("split layers, unsafe layers and segments") {
  segment_table t(8);
  t.set_split(6, sp("attention", true));
  t.set_split(1, sp("mamba", false));
  t.set_split(2, sp("mamba", false));
  REQUIRE(t.split_layers() == std::vector<int>{1, 2, 6});
  REQUIRE(t.unsafe_layers() == std::vector<int>{1, 2});
  REQUIRE(t.num_segments() == 4);
  REQUIRE(t.at(6)->capture_safe);
  REQUIRE(t.at(6)->name == "attention");
}

TEST_CASE("the table prints as a layer -> segment/split listing") {
  segment_table t(6);
  t.set_split(1, sp("mamba"));
  t.set_split(4, sp("attention", true));
  const std::string s = t.to_string();
  REQUIRE_THAT(s, Catch::Contains("6 layers, 2 split points, 3 segments"));
  REQUIRE_THAT(s, Catch::Contains("layer    0        -> segment 0 (captured whole)"));
  REQUIRE_THAT(s, Catch::Contains("layer    1        -> split 'mamba' (eager only) between segments 0 and 1"));
  REQUIRE_THAT(s, Catch::Contains("layers    2..3    -> segment 1 (captured whole)"));
  REQUIRE_THAT(s, Catch::Contains("split 'attention' (capture-safe) between segments 1 and 2"));
  REQUIRE_THAT(s, Catch::Contains("layer    5        -> segment 2"));
}

TEST_CASE("declarations, addresses, rebind and the version counter") {
  segment_table t(4);
  const auto v0 = t.version();
  t.declare_input(row_buffer{"ids", dummy, 4, 0, 16});
  t.declare_output(row_buffer{"logits", dummy + 8, 64, 0, 16, element_type::f32});
  t.track_buffer("kv", dummy + 16);
  REQUIRE(t.version() > v0);
  REQUIRE(t.addresses().size() == 3);
  const auto v1 = t.version();
  t.rebind("kv", dummy + 32);
  REQUIRE(t.version() == v1 + 1);
  REQUIRE(t.addresses()[2].second == dummy + 32);
  t.rebind("logits", dummy + 40);
  REQUIRE(t.outputs()[0].data == dummy + 40);
  REQUIRE_THROWS_WITH(t.rebind("nope", dummy), Catch::Contains("no declared buffer is called 'nope'"));
  REQUIRE_THROWS_WITH(t.rebind("kv", nullptr), Catch::Contains("null"));
  REQUIRE_THROWS_WITH(t.declare_input(row_buffer{"x", nullptr, 4, 0, 1}), Catch::Contains("'x'"));
  REQUIRE_THROWS_WITH(t.track_buffer("y", nullptr), Catch::Contains("'y'"));
}
