// split_schedule: a forward must call the table's split points in order, each once.
#include <catch2/catch.hpp>

#include "piecewise/schedule.hpp"

using namespace piecewise;

namespace {
segment_table make_table() {
  segment_table t(10);
  for (int l : {2, 5, 7}) t.set_split(l, split_point{l == 5 ? "attention" : "mamba", [](const split_args&) {}, false, {}});
  return t;
}
}  // namespace

TEST_CASE("the right sequence passes and finish() accepts it") {
  const auto t = make_table();
  split_schedule s(t, "runner 'r'");
  REQUIRE(s.enter(2).name == "mamba");
  REQUIRE(s.enter(5).name == "attention");
  REQUIRE(s.enter(7).name == "mamba");
  REQUIRE(s.reached() == 3);
  REQUIRE_NOTHROW(s.finish());
}

TEST_CASE("a split at a null layer names the layer and what was expected") {
  const auto t = make_table();
  split_schedule s(t, "runner 'r'");
  REQUIRE_THROWS_WITH(s.enter(3), Catch::Contains("layer 3") && Catch::Contains("null") &&
                                      Catch::Contains("expected the split point at layer 2"));
  REQUIRE_THROWS_AS(s.enter(1), schedule_error);
}

TEST_CASE("out of order, repeated and out-of-range splits are errors") {
  const auto t = make_table();
  split_schedule s(t, "runner 'r'");
  REQUIRE_THROWS_WITH(s.enter(5), Catch::Contains("layer 5 ('attention') is out of order") &&
                                      Catch::Contains("layer 2"));
  s.enter(2);
  REQUIRE_THROWS_WITH(s.enter(2), Catch::Contains("out of order") && Catch::Contains("layer 5"));
  REQUIRE_THROWS_WITH(s.enter(10), Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(s.enter(-2), Catch::Contains("layer -2"));
  s.enter(5);
  s.enter(7);
  REQUIRE_THROWS_WITH(s.enter(7), Catch::Contains("no further split point"));
}

TEST_CASE("a split point never reached is reported by finish()") {
  const auto t = make_table();
  split_schedule s(t, "runner 'r'");
  s.enter(2);
  REQUIRE_THROWS_WITH(s.finish(), Catch::Contains("without reaching the split point at layer 5 ('attention')") &&
                                      Catch::Contains("1 of 3"));
  split_schedule none(t, "runner 'r'");
  REQUIRE_THROWS_WITH(none.finish(), Catch::Contains("layer 2"));
}

TEST_CASE("a table without split points accepts an empty schedule") {
  segment_table t(3);
  split_schedule s(t, "x");
  REQUIRE_NOTHROW(s.finish());
  REQUIRE_THROWS_WITH(s.enter(0), Catch::Contains("null"));
}
