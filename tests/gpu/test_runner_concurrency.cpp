// A segment that forks work to a second stream and joins it; two runners capturing at the
// same time from two threads (thread-local capture mode).
#include <catch2/catch.hpp>

#include <exception>
#include <thread>

#include "toy_model.hpp"

using namespace piecewise;
using toy::bit_equal;
using toy::opts;
using toy::rel_err;

TEST_CASE("segments that fork to a side stream and join it capture and replay correctly") {
  toy::options o;
  o.fork_join = true;
  o.mamba_capture_safe = true;
  toy::model m(o);
  const auto b = capture_buckets::geometric(128, 8, 4);
  stream s;
  graph_runner eager(m.table(), b, m.forward(), opts(mode::eager, "eager"));
  graph_runner pw(m.table(), b, m.forward(), opts(mode::piecewise, "pw"));
  graph_runner full(m.table(), b, m.forward(), opts(mode::full, "full"));
  pw.capture();
  full.capture();
  REQUIRE(pw.stats_for(128).nodes.kernel > 0);
  for (int n : {5, 64, 127}) {
    m.write_input(n, 50 + n);
    eager.run(n, s);
    const auto ref = m.read_output(n, s);
    REQUIRE(rel_err(ref, m.reference(n)) < 1e-5);
    pw.run(n, s);
    REQUIRE(bit_equal(m.read_output(n, s), ref));
    full.run(n, s);
    REQUIRE(bit_equal(m.read_output(n, s), ref));
  }
}

TEST_CASE("two runners capture concurrently from two threads") {
  toy::options o;
  o.mamba_capture_safe = true;
  toy::model m1(o), m2(o);
  const auto b = capture_buckets::geometric(256, 8, 4);
  graph_runner r1(m1.table(), b, m1.forward(), opts(mode::piecewise, "t1"));
  graph_runner r2(m2.table(), b, m2.forward(), opts(mode::full, "t2"));
  std::exception_ptr e1, e2;
  std::thread t1([&] {
    try { r1.capture(); } catch (...) { e1 = std::current_exception(); }
  });
  std::thread t2([&] {
    try { r2.capture(); } catch (...) { e2 = std::current_exception(); }
  });
  t1.join();
  t2.join();
  if (e1) std::rethrow_exception(e1);
  if (e2) std::rethrow_exception(e2);
  stream s;
  for (auto* pair : {&m1, &m2}) pair->write_input(100, 77);
  r1.run(100, s);
  r2.run(100, s);
  const auto a = m1.read_output(100, s);
  const auto c = m2.read_output(100, s);
  REQUIRE(bit_equal(a, c));
  REQUIRE(rel_err(a, m1.reference(100)) < 1e-5);
}
