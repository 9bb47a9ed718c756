// The runner's modes on the 56-layer toy model: eager, piecewise and full agree bit for bit
// for every bucket and for counts at, just below and just above each bucket edge; eager
// agrees with a CPU reference; padding never leaks; fallbacks, validation, DOT and stats.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "toy_model.hpp"

using namespace piecewise;
using toy::bit_equal;
using toy::opts;
using toy::rel_err;

namespace {

std::vector<int> edge_counts(const capture_buckets& b) {
  std::set<int> ns;
  for (int s : b.sizes())
    for (int n : {s - 1, s, s + 1})
      if (n >= 1 && n <= b.largest()) ns.insert(n);
  return {ns.begin(), ns.end()};
}

}  // namespace

TEST_CASE("eager, piecewise and full are bit-identical at every bucket edge, and eager matches the CPU") {
  toy::options o;
  o.mamba_capture_safe = true;  // lets the same model run in full mode too
  toy::model m(o);
  const auto buckets = capture_buckets::geometric(o.max_tokens, 8, 4);
  stream s;
  graph_runner eager(m.table(), buckets, m.forward(), opts(mode::eager, "eager"));
  graph_runner pw(m.table(), buckets, m.forward(), opts(mode::piecewise, "piecewise"));
  graph_runner full(m.table(), buckets, m.forward(), opts(mode::full, "full"));
  graph_runner autom(m.table(), buckets, m.forward(), opts(mode::automatic, "auto"));
  REQUIRE(autom.active_mode() == mode::full);
  REQUIRE_THAT(autom.mode_reason(), Catch::Contains("all 31 split points are capture-safe"));
  pw.capture();
  full.capture();
  REQUIRE(pw.all_bucket_stats().front().segments == 32);
  REQUIRE(full.all_bucket_stats().front().segments == 1);

  unsigned seed = 1;
  for (int n : edge_counts(buckets)) {
    m.write_input(n, seed++);
    eager.run(n, s);
    const auto ref = m.read_output(n, s);
    pw.run(n, s);
    const auto a = m.read_output(n, s);
    full.run(n, s);
    const auto b = m.read_output(n, s);
    INFO("n = " << n << ", bucket " << buckets.pick(n).size);
    REQUIRE(bit_equal(a, ref));
    REQUIRE(bit_equal(b, ref));
    if (n % 7 == 0 || n == 1 || n == o.max_tokens) REQUIRE(rel_err(ref, m.reference(n)) < 1e-5);
  }
  REQUIRE(pw.stats().graph_replays == edge_counts(buckets).size());
  REQUIRE(pw.stats().eager_fallbacks == 0);
  for (const auto& st : pw.all_bucket_stats()) REQUIRE(st.replays >= 1);
}

TEST_CASE("auto picks piecewise when a split point is not capture-safe, and full is refused") {
  toy::model m(toy::options{});
  const auto buckets = capture_buckets::geometric(64, 8, 4);
  graph_runner autom(m.table(), buckets, m.forward(), opts(mode::automatic, "auto"));
  REQUIRE(autom.active_mode() == mode::piecewise);
  REQUIRE_THAT(autom.mode_reason(), Catch::Contains("layers 0 ('mamba')"));
  REQUIRE_THROWS_WITH(graph_runner(m.table(), buckets, m.forward(), opts(mode::full, "full")),
                      Catch::Contains("full mode needs every split point to be capture-safe") &&
                          Catch::Contains("2 ('mamba')"));
  stream s;
  autom.capture();
  m.write_input(37, 7);
  autom.run(37, s);
  const auto a = m.read_output(37, s);
  REQUIRE(rel_err(a, m.reference(37)) < 1e-5);
}

TEST_CASE("poison: NaN in every padded row before replay leaves real rows exact") {
  toy::options o;
  o.mamba_capture_safe = true;
  toy::model m(o);
  const auto buckets = capture_buckets::geometric(o.max_tokens, 8, 4);
  stream s;
  graph_runner eager(m.table(), buckets, m.forward(), opts(mode::eager, "eager"));
  graph_runner pw(m.table(), buckets, m.forward(), opts(mode::piecewise, "piecewise"));
  graph_runner full(m.table(), buckets, m.forward(), opts(mode::full, "full"));
  pw.capture();
  full.capture();
  for (int n : {1, 9, 100, 129, 500}) {
    m.write_input(n, 100 + n);
    eager.run(n, s);
    const auto ref = m.read_output(n, s);
    for (graph_runner* r : {&pw, &full}) {
      m.poison_padding(n);
      r->run(n, s);
      const auto a = m.read_output(n, s);
      INFO(r->name() << " n = " << n);
      for (float v : a) REQUIRE(std::isfinite(v));
      REQUIRE(bit_equal(a, ref));
    }
  }
}

TEST_CASE("above the largest bucket: eager fallback is counted and correct, and policy chunk throws") {
  toy::model m(toy::options{});
  stream s;
  graph_runner pw(m.table(), capture_buckets({8, 16, 32}), m.forward(), opts(mode::piecewise, "pw"));
  pw.capture();
  m.write_input(100, 3);
  pw.run(100, s);
  REQUIRE(pw.stats().eager_fallbacks == 1);
  REQUIRE(rel_err(m.read_output(100, s), m.reference(100)) < 1e-5);
  REQUIRE_THAT(pw.report(), Catch::Contains("1 fallbacks"));

  graph_runner chunked(m.table(), capture_buckets({8, 16, 32}, overflow_policy::chunk), m.forward(),
                       opts(mode::piecewise, "chunked"));
  chunked.capture();
  REQUIRE_THROWS_AS(chunked.run(33, s), bucket_overflow);
  REQUIRE_THROWS_AS(chunked.run(0, s), config_error);
  REQUIRE_THROWS_AS(chunked.run(-4, s), config_error);
  REQUIRE_THROWS_AS(chunked.run_eager(33, s), bucket_overflow);  // the same policy for eager runs
  chunked.run(32, s);  // still usable
  REQUIRE(chunked.stats().graph_replays == 1);
  REQUIRE(chunked.stats().forwards == 1);

  // An eager-mode runner above the largest bucket runs unpadded and is not a fallback.
  graph_runner eager(m.table(), capture_buckets({8, 16, 32}), m.forward(), opts(mode::eager, "eager"));
  eager.run(40, s);
  eager.run(20, s);
  REQUIRE(eager.stats().eager_fallbacks == 0);
  REQUIRE(eager.stats().eager_runs == 2);
  REQUIRE(eager.stats().padded_tokens == 40u + 32u);  // 40 unpadded, 20 padded to its bucket
}

TEST_CASE("validation against eager, DOT export, statistics and the report") {
  toy::model m(toy::options{});
  const auto buckets = capture_buckets::geometric(128, 8, 4);
  stream s;
  runner_options ro = opts(mode::piecewise, "toy/prefill");  // '/' must not reach file names
  ro.validate = true;
  int progress_calls = 0;
  graph_runner pw(m.table(), buckets, m.forward(), ro);
  pw.capture([&](const capture_progress& p) {
    REQUIRE(p.index == progress_calls);
    REQUIRE(p.count == static_cast<int>(buckets.count()));
    REQUIRE(p.segments == 32);
    REQUIRE(p.free_bytes > 0);
    if (progress_calls == 0) REQUIRE(p.bucket == 128);  // largest first
    ++progress_calls;
  });
  REQUIRE(progress_calls == static_cast<int>(buckets.count()));
  m.write_input(77, 5);
  const auto rep = pw.validate_against_eager(77, s, {});
  INFO(rep.to_string());
  REQUIRE(rep.bitwise_equal);
  REQUIRE(rep.bytes_compared == 77u * 64u * 4u);

  const auto& st = pw.stats_for(80);
  REQUIRE(st.segments == 32);
  REQUIRE(st.empty_segments == 0);  // adjacent splits ("MM") still have norm/residual work between
  REQUIRE(st.nodes.kernel > 56);
  REQUIRE(st.nodes.host == 0);
  REQUIRE(st.nodes.mem_alloc == 0);
  REQUIRE(st.warmup_ms > 0);  // one warm-up run by default
  REQUIRE(st.capture_ms > 0);
  REQUIRE(st.instantiate_ms > 0);
  REQUIRE_THROWS_WITH(pw.stats_for(81), Catch::Contains("bucket 81 has not been captured"));

  const auto dir = std::filesystem::temp_directory_path() / "piecewise_dot_test";
  std::filesystem::create_directories(dir);
  const auto files = pw.export_dot(80, dir.string());
  REQUIRE(files.size() == 32);
  REQUIRE_THAT(files[0], Catch::EndsWith("toy_prefill_bucket80_segment0.dot"));
  std::ifstream f(files[1]);
  std::stringstream text;
  text << f.rdbuf();
  REQUIRE_THAT(text.str(), Catch::Contains("digraph"));
  REQUIRE_THAT(pw.report(), Catch::Contains("mode piecewise") && Catch::Contains("captured 12 buckets") &&
                                 Catch::Contains("ms warm-up"));
}

TEST_CASE("host nodes are reported as diagnostics") {
  toy::model m(toy::options{});
  m.host_node_in_forward = true;
  std::vector<std::string> logged;
  runner_options ro = opts(mode::piecewise, "hosty");
  ro.log = [&](log_level l, const std::string& msg) {
    if (l == log_level::warning) logged.push_back(msg);
  };
  graph_runner pw(m.table(), capture_buckets({16}), m.forward(), ro);
  pw.capture();
  REQUIRE(pw.stats_for(16).nodes.host == 1);
  REQUIRE_FALSE(logged.empty());
  bool found = false;
  for (const auto& d : pw.diagnostics()) found = found || d.find("host-callback") != std::string::npos;
  REQUIRE(found);
}
