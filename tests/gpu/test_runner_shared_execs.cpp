// Buckets sharing executables (runner_options::executables_per_segment > 0) on the 56-layer
// toy model: replays re-point the least recently used executable with cudaGraphExecUpdate and
// stay bit-identical to one executable per segment and to eager, in piecewise and full mode,
// under random bucket switches; resident buckets cost no switch; update() after a rebind.
#include <catch2/catch.hpp>

#include <random>

#include "toy_model.hpp"

using namespace piecewise;
using toy::bit_equal;
using toy::opts;

namespace {

runner_options shared(mode m, const char* name, int n) {
  runner_options o = opts(m, name);
  o.executables_per_segment = n;
  return o;
}

int executables(const graph_runner& r) {
  int n = 0;
  for (const auto& st : r.all_bucket_stats()) n += st.executables;
  return n;
}

int launched_segments(const graph_runner& r) {
  int n = 0;
  for (const auto& st : r.all_bucket_stats()) n += st.segments - st.empty_segments;
  return n;
}

}  // namespace

TEST_CASE("shared executables replay bit-identically to unshared ones under random bucket switches") {
  toy::options o;
  o.mamba_capture_safe = true;  // full mode too
  toy::model m(o);
  const auto buckets = capture_buckets::geometric(o.max_tokens, 8, 4);
  REQUIRE(buckets.count() >= 6);
  stream s;
  graph_runner eager(m.table(), buckets, m.forward(), opts(mode::eager, "eager"));
  for (mode md : {mode::piecewise, mode::full}) {
    INFO("mode " << to_string(md));
    graph_runner own(m.table(), buckets, m.forward(), opts(md, "own"));
    graph_runner one(m.table(), buckets, m.forward(), shared(md, "one", 1));
    graph_runner two(m.table(), buckets, m.forward(), shared(md, "two", 2));
    own.capture();
    one.capture();
    two.capture();
    // Every launched segment has its own executable unless shared; shared ones are far fewer
    // (the toy's graphs keep their topology across buckets).
    REQUIRE(executables(own) == launched_segments(own));
    const int per_bucket = launched_segments(own) / static_cast<int>(buckets.count());
    REQUIRE(executables(one) == per_bucket);
    REQUIRE(executables(two) == 2 * per_bucket);
    REQUIRE_NOTHROW(own.segment_execs(buckets.largest()));
    REQUIRE_THROWS_WITH(one.segment_execs(buckets.largest()), Catch::Contains("share executables"));

    std::mt19937 rng(7);
    for (int step = 0; step < 60; ++step) {
      const int n = static_cast<int>(rng() % static_cast<unsigned>(o.max_tokens)) + 1;
      m.write_input(n, static_cast<unsigned>(step) + 1);
      own.run(n, s);
      const auto ref = m.read_output(n, s);
      one.run(n, s);
      const auto a = m.read_output(n, s);
      two.run(n, s);
      const auto b = m.read_output(n, s);
      INFO("step " << step << ", n = " << n << ", bucket " << buckets.pick(n).size);
      REQUIRE(bit_equal(a, ref));
      REQUIRE(bit_equal(b, ref));
      if (step % 10 == 0) {
        eager.run(n, s);
        REQUIRE(bit_equal(m.read_output(n, s), ref));
      }
    }
    REQUIRE(own.stats().executable_switches == 0);
    REQUIRE(one.stats().executable_switches > 0);
    REQUIRE(two.stats().executable_switches > 0);

    // A resident bucket replays without a switch; with two slots, two buckets alternate freely.
    const int small = buckets.sizes().front(), large = buckets.sizes().back();
    for (graph_runner* r : {&one, &two}) {
      r->run(small, s);
      const auto after_first = r->stats().executable_switches;
      r->run(small, s);
      REQUIRE(r->stats().executable_switches == after_first);
    }
    two.run(large, s);
    const auto both_resident = two.stats().executable_switches;
    for (int rep = 0; rep < 3; ++rep) {
      two.run(small, s);
      two.run(large, s);
    }
    REQUIRE(two.stats().executable_switches == both_resident);
    const auto before_alternation = one.stats().executable_switches;
    one.run(large, s);
    one.run(small, s);
    REQUIRE(one.stats().executable_switches == before_alternation + 2 * static_cast<std::uint64_t>(per_bucket));
    m.write_input(small, 99);
    one.run(small, s);
    const auto x = m.read_output(small, s);
    eager.run(small, s);
    REQUIRE(bit_equal(x, m.read_output(small, s)));
    REQUIRE_THAT(one.report(), Catch::Contains("re-pointed at replay") && Catch::Contains("at most 1 per segment"));
    s.synchronize();
  }
}

TEST_CASE("shared executables are updated in place by update() after a rebind") {
  toy::model m(toy::options{});
  const capture_buckets b({16, 32, 64, 128});
  stream s;
  graph_runner eager(m.table(), b, m.forward(), opts(mode::eager, "eager"));
  graph_runner r(m.table(), b, m.forward(), shared(mode::piecewise, "shared-update", 2));
  r.capture();
  const int execs = executables(r);
  for (int n : {10, 100, 40, 20}) r.run(n, s);  // leaves the slots holding other buckets than at capture
  m.move_mix_out();
  REQUIRE_THROWS_WITH(r.run(40, s), Catch::Contains("changed after capture"));
  const update_report rep = r.update();
  INFO(rep.to_string());
  REQUIRE(rep.segments_reinstantiated == 0);
  REQUIRE(rep.segments_updated == execs);
  REQUIRE(executables(r) == execs);
  for (int n : {100, 3, 64, 33, 128, 17}) {
    m.write_input(n, static_cast<unsigned>(n));
    r.run(n, s);
    const auto a = m.read_output(n, s);
    eager.run(n, s);
    INFO("n = " << n);
    REQUIRE(bit_equal(a, m.read_output(n, s)));
  }
}

TEST_CASE("executables_per_segment must not be negative") {
  toy::model m(toy::options{});
  REQUIRE_THROWS_AS(graph_runner(m.table(), capture_buckets({16}), m.forward(), shared(mode::piecewise, "neg", -1)),
                    config_error);
}
