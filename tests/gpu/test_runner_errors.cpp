// Failures: a throwing callback during replay, a throwing forward during capture of the third
// bucket, an illegal call inside capture, a schedule that differs per bucket, a moved buffer.
// After each the runner and its stream are usable and no graph or event handle leaks.
#include <catch2/catch.hpp>

#include <atomic>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

#include "toy_model.hpp"

using namespace piecewise;
using toy::bit_equal;

namespace {
runner_options opts(mode m, const char* name) {  // toy::opts with the runner's log silenced
  runner_options o = toy::opts(m, name);
  o.log = [](log_level, const std::string&) {};
  return o;
}
std::vector<float> eager_output(toy::model& m, const capture_buckets& b, int n, cudaStream_t s) {
  graph_runner e(m.table(), b, m.forward(), opts(mode::eager, "eager"));
  e.run(n, s);
  return m.read_output(n, s);
}
bool same_counts(const handle_counts& a, const handle_counts& b) {
  return a.graphs == b.graphs && a.graph_execs == b.graph_execs && a.events == b.events && a.streams == b.streams;
}
}  // namespace

TEST_CASE("a callback that throws during replay leaves the runner usable") {
  toy::model m(toy::options{});
  const capture_buckets b({16, 32, 64});
  stream s;
  graph_runner pw(m.table(), b, m.forward(), opts(mode::piecewise, "pw"));
  pw.capture();
  m.write_input(20, 1);
  const auto ref = eager_output(m, b, 20, s);
  m.throw_in_callback = true;
  try {
    pw.run(20, s);
    FAIL("expected the callback's exception");
  } catch (const piecewise::error& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("split point 'mamba' at layer 0 failed during a piecewise replay") &&
                               Catch::Contains("(20 real tokens, bucket 32)") &&
                               Catch::Contains("injected callback failure"));
    bool nested_original = false;
    try {
      std::rethrow_if_nested(e);
    } catch (const std::runtime_error& inner) {
      nested_original = std::string(inner.what()) == "injected callback failure";
    }
    REQUIRE(nested_original);
  }
  {  // the same context when the callback fails in an eager run
    graph_runner eg(m.table(), b, m.forward(), opts(mode::eager, "eg"));
    REQUIRE_THROWS_WITH(eg.run(20, s),
                        Catch::Contains("split point 'mamba' at layer 0 failed during an eager forward") &&
                            Catch::Contains("injected callback failure"));
  }
  m.throw_in_callback = false;
  s.synchronize();
  pw.run(20, s);
  REQUIRE(bit_equal(m.read_output(20, s), ref));
}

TEST_CASE("the forward throwing while the third bucket is captured: clean failure, then recapture") {
  toy::model m(toy::options{});
  const capture_buckets b({8, 16, 32, 64, 128});
  stream s;
  const handle_counts before = live_handles();
  graph_runner pw(m.table(), b, m.forward(), opts(mode::piecewise, "pw"));
  m.throw_in_forward_at_padded = 32;  // largest first: 128, 64, then 32
  m.write_input(30, 2);
  // Warm-up runs are eager and would throw first; skip them to hit the capture itself.
  try {
    pw.capture();
    FAIL("capture should have thrown");
  } catch (const capture_error& e) {
    REQUIRE(e.bucket() == 32);
    REQUIRE_THAT(e.what(), Catch::Contains("bucket 32") && Catch::Contains("injected forward failure"));
  }
  REQUIRE_FALSE(pw.captured());
  REQUIRE(same_counts(live_handles(), [&] { auto h = before; h.streams += 1; return h; }()));
  REQUIRE_THROWS_WITH(pw.run(30, s), Catch::Contains("needs capture() before run()"));

  // Now the capture itself (no warm-up) fails in bucket 32's first segment.
  runner_options ro = opts(mode::piecewise, "pw2");
  ro.warmup_runs = 0;
  graph_runner pw2(m.table(), b, m.forward(), ro);
  REQUIRE_THROWS_WITH(pw2.capture(), Catch::Contains("capturing bucket 32 failed in segment 0"));
  cudaStreamCaptureStatus st{};
  REQUIRE(cudaStreamIsCapturing(s, &st) == cudaSuccess);
  REQUIRE(cudaGetLastError() == cudaSuccess);

  m.throw_in_forward_at_padded = -1;
  pw.capture();
  pw2.capture();
  const auto ref = eager_output(m, b, 30, s);
  pw.run(30, s);
  REQUIRE(bit_equal(m.read_output(30, s), ref));
  pw2.run(30, s);
  REQUIRE(bit_equal(m.read_output(30, s), ref));
}

TEST_CASE("a failed re-capture keeps the previous graphs") {
  toy::model m(toy::options{});
  const capture_buckets b({16, 32});
  stream s;
  runner_options ro = opts(mode::piecewise, "keep");
  ro.warmup_runs = 0;
  graph_runner pw(m.table(), b, m.forward(), ro);
  pw.capture();
  const handle_counts captured = live_handles();
  m.throw_in_forward_at_padded = 16;
  REQUIRE_THROWS_AS(pw.capture(), capture_error);
  REQUIRE(same_counts(live_handles(), captured));
  m.throw_in_forward_at_padded = -1;
  m.write_input(10, 9);
  pw.run(10, s);
  REQUIRE(bit_equal(m.read_output(10, s), eager_output(m, b, 10, s)));
}

TEST_CASE("an illegal synchronizing call inside capture invalidates it cleanly") {
  toy::model m(toy::options{});
  const capture_buckets b({16, 32});
  stream s;
  runner_options ro = opts(mode::piecewise, "sync");
  ro.warmup_runs = 0;
  graph_runner pw(m.table(), b, m.forward(), ro);
  m.sync_in_forward = true;
  try {
    pw.capture();
    FAIL("expected a capture error");
  } catch (const capture_error& e) {
    REQUIRE(e.bucket() == 32);
    REQUIRE_THAT(e.what(), Catch::Contains("cudaStreamSynchronize"));
  }
  m.sync_in_forward = false;
  pw.capture();
  m.write_input(25, 4);
  pw.run(25, s);
  REQUIRE(bit_equal(m.read_output(25, s), eager_output(m, b, 25, s)));
}

TEST_CASE("a forward whose split sequence differs for one bucket is rejected, naming bucket and layer") {
  toy::model m(toy::options{});
  const capture_buckets b({16, 32, 64});
  runner_options ro = opts(mode::piecewise, "sched");
  ro.warmup_runs = 0;
  graph_runner pw(m.table(), b, m.forward(), ro);
  m.skip_split_at_padded = 32;
  try {
    pw.capture();
    FAIL("expected a capture error");
  } catch (const capture_error& e) {
    REQUIRE(e.bucket() == 32);
    REQUIRE_THAT(e.what(), Catch::Contains("split at layer 2 ('mamba') is out of order; expected the split point at layer 0"));
  }
  m.skip_split_at_padded = -1;
  REQUIRE_NOTHROW(pw.capture());
}

TEST_CASE("a moved buffer: replay is refused until update(), which updates in place") {
  toy::options o;
  o.mamba_capture_safe = true;
  for (mode md : {mode::piecewise, mode::full}) {
    toy::model m(o);
    const capture_buckets b({16, 32, 64});
    stream s;
    runner_options ro = opts(md, "moved");
    ro.validate = true;
    graph_runner r(m.table(), b, m.forward(), ro);
    r.capture();
    m.move_mix_out();
    m.write_input(40, 11);
    REQUIRE_THROWS_WITH(r.run(40, s), Catch::Contains("changed after capture") && Catch::Contains("update()"));
    const std::vector<bucket_stats> before = r.all_bucket_stats();
    int progress_calls = 0;
    const update_report rep = r.update([&](const capture_progress& p) {
      REQUIRE(p.index == progress_calls);
      REQUIRE(p.count == 3);
      if (progress_calls == 0) REQUIRE(p.bucket == 64);  // largest first, as capture()
      ++progress_calls;
    });
    INFO(rep.to_string());
    REQUIRE(progress_calls == 3);
    REQUIRE(rep.buckets == 3);
    REQUIRE(rep.segments_updated > 0);
    REQUIRE(rep.segments_reinstantiated == 0);
    REQUIRE(rep.ms > 0);
    // update() gathers the same statistics as capture(): same graphs, every one updated in place.
    const std::vector<bucket_stats> after = r.all_bucket_stats();
    REQUIRE(after.size() == before.size());
    int updated = 0;
    for (std::size_t i = 0; i < after.size(); ++i) {
      REQUIRE(after[i].size == before[i].size);
      REQUIRE(after[i].segments == before[i].segments);
      REQUIRE(after[i].nodes.total == before[i].nodes.total);
      REQUIRE(after[i].nodes.kernel == before[i].nodes.kernel);
      REQUIRE(after[i].capture_ms > 0);
      REQUIRE(after[i].instantiate_ms > 0);
      REQUIRE(after[i].updated_in_place == after[i].segments - after[i].empty_segments);
      REQUIRE(before[i].updated_in_place == 0);
      REQUIRE(after[i].replays == before[i].replays);
      updated += after[i].updated_in_place;
    }
    REQUIRE(updated == rep.segments_updated);
    r.run(40, s);
    REQUIRE(bit_equal(m.read_output(40, s), eager_output(m, b, 40, s)));
    REQUIRE(r.stats_for(64).replays == 1);
  }
}

TEST_CASE("update() reports the same diagnostics as capture(), and a failed update keeps the old graphs") {
  toy::model m(toy::options{});
  m.host_node_in_forward = true;
  const capture_buckets b({16, 32});
  stream s;
  std::vector<std::string> logged;
  runner_options ro = opts(mode::piecewise, "diag");
  ro.log = [&](log_level l, const std::string& msg) {
    if (l == log_level::warning) logged.push_back(msg);
  };
  graph_runner r(m.table(), b, m.forward(), ro);
  r.capture();
  const std::vector<std::string> captured_diags = r.diagnostics();
  REQUIRE(captured_diags.size() == 2);  // one host node per bucket
  logged.clear();
  m.move_mix_out();
  (void)r.update();
  REQUIRE(r.diagnostics() == captured_diags);
  REQUIRE(logged.size() == 2);
  REQUIRE(r.stats_for(16).nodes.host == 1);

  // A capture that fails during update(): the executables are untouched and still replay.
  m.host_node_in_forward = false;
  m.move_mix_out();
  m.throw_in_forward_at_padded = 16;
  REQUIRE_THROWS_AS(r.update(), capture_error);
  m.throw_in_forward_at_padded = -1;
  REQUIRE(r.captured());
  REQUIRE_THROWS_WITH(r.run(20, s), Catch::Contains("update()"));  // the table still moved
  (void)r.update();
  m.write_input(20, 3);
  r.run(20, s);
  REQUIRE(bit_equal(m.read_output(20, s), eager_output(m, b, 20, s)));
}

TEST_CASE("a CUDA error inside a segment ends the capture cleanly and names the CUDA call") {
  toy::model m(toy::options{});
  const capture_buckets b({16, 32, 64});
  stream s;
  runner_options ro = opts(mode::piecewise, "cudaerr");
  ro.warmup_runs = 0;
  graph_runner pw(m.table(), b, m.forward(), ro);
  const handle_counts before = live_handles();
  m.bad_launch_at_padded = 32;
  try {
    pw.capture();
    FAIL("expected a capture error");
  } catch (const capture_error& e) {
    REQUIRE(e.bucket() == 32);
    // An oversized block is reported as cudaErrorInvalidValue or InvalidConfiguration.
    REQUIRE_THAT(e.what(), Catch::Contains("cudaGetLastError") && Catch::Contains("toy_model.cu") &&
                               Catch::Contains("cudaErrorInvalid"));
  }
  REQUIRE(same_counts(live_handles(), before));
  REQUIRE(cudaGetLastError() == cudaSuccess);
  m.bad_launch_at_padded = -1;
  pw.capture();
  m.write_input(33, 8);
  pw.run(33, s);
  REQUIRE(bit_equal(m.read_output(33, s), eager_output(m, b, 33, s)));
}

TEST_CASE("another thread's unsafe calls during a capture do not invalidate it (thread-local mode)") {
  toy::model m(toy::options{});
  const capture_buckets b({16, 32, 64});
  stream s;
  runner_options ro = opts(mode::piecewise, "threads");
  ro.warmup_runs = 0;
  graph_runner pw(m.table(), b, m.forward(), ro);
  std::atomic<int> calls{0};
  m.during_forward = [&] {
    // cudaMalloc / cudaFree are unsafe during a global-mode capture; from another thread
    // they must not disturb this thread-local capture.
    std::thread other([&] {
      void* p = nullptr;
      if (cudaMalloc(&p, 1 << 20) == cudaSuccess && cudaFree(p) == cudaSuccess) ++calls;
    });
    other.join();
  };
  REQUIRE_NOTHROW(pw.capture());
  REQUIRE(calls.load() == 3);
  m.during_forward = nullptr;
  m.write_input(50, 12);
  pw.run(50, s);
  REQUIRE(bit_equal(m.read_output(50, s), eager_output(m, b, 50, s)));
}
