// RAII handles (moves, live counts, graph update) and the static device arena.
#include <catch2/catch.hpp>

#include <vector>

#include "piecewise/piecewise.hpp"

using namespace piecewise;

namespace {
__attribute__((unused)) void noop() {}
}

TEST_CASE("handles are move-only owners and are counted") {
  const handle_counts h0 = live_handles();
  {
    stream a;
    stream b = std::move(a);
    REQUIRE(a.get() == nullptr);
    REQUIRE(b.get() != nullptr);
    event e1;
    event e2(std::move(e1));
    REQUIRE(live_handles().streams == h0.streams + 1);
    REQUIRE(live_handles().events == h0.events + 1);
    e2.record(b);
    e2.wait(b);
    b.synchronize();
  }
  REQUIRE(live_handles().streams == h0.streams);
  REQUIRE(live_handles().events == h0.events);
}

TEST_CASE("device_buffer owns and counts device memory, and device_arena holds one") {
  const handle_counts h0 = live_handles();
  {
    device_buffer a(1000, "a");
    REQUIRE(a.data() != nullptr);
    REQUIRE(a.bytes() == 1000);
    REQUIRE(live_handles().device_buffers == h0.device_buffers + 1);
    REQUIRE(live_handles().device_bytes == h0.device_bytes + 1000);
    device_buffer b = std::move(a);
    REQUIRE(a.data() == nullptr);
    REQUIRE(a.bytes() == 0);
    REQUIRE(live_handles().device_bytes == h0.device_bytes + 1000);
    device_arena arena(4096);
    REQUIRE(live_handles().device_buffers == h0.device_buffers + 2);
    REQUIRE(live_handles().device_bytes == h0.device_bytes + 1000 + 4096);
    b.free();
    REQUIRE(live_handles().device_bytes == h0.device_bytes + 4096);
    device_buffer c(64);
    void* raw = c.release();
    REQUIRE(live_handles().device_bytes == h0.device_bytes + 4096);
    REQUIRE(cudaFree(raw) == cudaSuccess);
  }
  REQUIRE(live_handles() == h0);
  REQUIRE_THROWS_WITH(device_buffer(0, "empty"), Catch::Contains("empty: cannot allocate 0 bytes"));
  REQUIRE_THROWS_WITH(device_buffer(std::size_t{1} << 60, "huge"),
                      Catch::Contains("huge of 1152921504606846976 bytes") && Catch::Contains("cudaMalloc"));
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(live_handles() == h0);
}

TEST_CASE("graph and graph_exec: capture a memset, instantiate, launch, update") {
  device_arena arena(1 << 20);
  int* buf = arena.allocate<int>(1024, "buf");
  int* buf2 = arena.allocate<int>(1024, "buf2");
  stream s;
  auto capture_memset = [&](int* p, int value) {
    PIECEWISE_CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    PIECEWISE_CUDA_TRY(cudaMemsetAsync(p, value, 1024 * sizeof(int), s));
    cudaGraph_t g = nullptr;
    PIECEWISE_CUDA_TRY(cudaStreamEndCapture(s, &g));
    return graph::from_native_handle(g);
  };
  const handle_counts h0 = live_handles();
  graph g1 = capture_memset(buf, 1);
  REQUIRE(inspect_graph(g1.get()).memset == 1);
  graph_exec ex = graph_exec::instantiate(g1, s);
  REQUIRE(live_handles().graphs == h0.graphs + 1);
  REQUIRE(live_handles().graph_execs == h0.graph_execs + 1);
  ex.launch(s);
  graph g2 = capture_memset(buf2, 2);
  REQUIRE(ex.update(g2));
  ex.launch(s);
  s.synchronize();
  std::vector<int> host(1024);
  PIECEWISE_CUDA_TRY(cudaMemcpy(host.data(), buf2, 4096, cudaMemcpyDeviceToHost));
  REQUIRE(host[0] == 0x02020202);
  REQUIRE(host[1023] == 0x02020202);
  graph_exec moved = std::move(ex);
  REQUIRE_FALSE(static_cast<bool>(ex));
  moved.reset();
  g1.reset();
  g2.reset();
  REQUIRE(live_handles().graphs == h0.graphs);
  REQUIRE(live_handles().graph_execs == h0.graph_execs);
}

TEST_CASE("device_arena: fixed aligned addresses, a clear error when full") {
  device_arena a(4096, 256);
  float* x = a.allocate<float>(10, "x");
  float* y = a.allocate<float>(10, "y");
  REQUIRE(reinterpret_cast<std::uintptr_t>(x) % 256 == 0);
  REQUIRE(reinterpret_cast<std::uintptr_t>(y) - reinterpret_cast<std::uintptr_t>(x) == 256);
  REQUIRE(a.allocations().size() == 2);
  REQUIRE_THROWS_WITH(a.allocate<float>(2000, "big"),
                      Catch::Contains("'big' needs 8000 bytes but only 3584 of 4096 are left"));
  REQUIRE(a.allocations().size() == 2);  // the failed call changed nothing
  REQUIRE_NOTHROW(a.allocate<float>(896, "fits"));
  REQUIRE_THROWS_AS(device_arena(0), config_error);
  REQUIRE_THROWS_WITH(device_arena(1024, 3), Catch::Contains("power of two"));
}

TEST_CASE("zero_padded_rows zeroes exactly rows from real to padded, pitched or not") {
  device_arena a(1 << 16);
  int* real = a.allocate<int>(1, "real");
  unsigned char* buf = a.allocate<unsigned char>(64 * 40, "rows");
  stream s;
  for (std::size_t pitch : {std::size_t{0}, std::size_t{40}}) {
    for (std::size_t row_bytes : {std::size_t{32}, std::size_t{27}}) {
      const row_buffer b{"rows", buf, row_bytes, pitch, 64};
      PIECEWISE_CUDA_TRY(cudaMemsetAsync(buf, 0xAB, 64 * 40, s));
      set_device_int(real, 10, s);
      zero_padded_rows(b, real, 20, s);
      s.synchronize();
      std::vector<unsigned char> h(64 * 40);
      PIECEWISE_CUDA_TRY(cudaMemcpy(h.data(), buf, h.size(), cudaMemcpyDeviceToHost));
      const std::size_t stride = pitch ? pitch : row_bytes;
      for (std::size_t i = 0; i < h.size(); ++i) {
        const std::size_t r = i / stride, c = i % stride;
        const bool zeroed = r >= 10 && r < 20 && c < row_bytes;
        INFO("pitch " << pitch << " row_bytes " << row_bytes << " byte " << i);
        REQUIRE(h[i] == (zeroed ? 0 : 0xAB));
      }
    }
  }
  REQUIRE_THROWS_WITH(zero_padded_rows(row_buffer{"rows", buf, 32, 0, 64}, real, 65, s),
                      Catch::Contains("'rows' has 64 rows but the padded count is 65"));
}
