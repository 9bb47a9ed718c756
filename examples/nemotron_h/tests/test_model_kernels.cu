// GPU tests of the runner's small kernels (runner/model_kernels.cuh): the greedy argmax
// against a host reference (first index on ties, NaN never wins, all-NaN row -> 0) for the
// 9B vocabulary and odd widths, several rows with a device row count, the history/step
// bookkeeping, both kernels (cluster and one block per row) and replay from a captured graph.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "kernel_test_util.cuh"
#include "runner/model_kernels.cuh"

using namespace nh_test;
namespace nh = nemotron_h;

namespace {

// First index of the largest non-NaN value; 0 when every value is NaN.
int host_argmax(const std::vector<bf16>& l, std::size_t off, int V) {
  int best = -1;
  float bv = 0.f;
  for (int i = 0; i < V; ++i) {
    const float v = __bfloat162float(l[off + i]);
    if (std::isnan(v)) continue;
    if (best < 0 || v > bv) {
      best = i;
      bv = v;
    }
  }
  return best < 0 ? 0 : best;
}

// Random logits with planted ties of the row maximum (at slice edges of the cluster kernel
// and near the row's end), NaNs above the maximum, an all-NaN row and an all -inf row.
std::vector<bf16> make_logits(int rows, int V, std::mt19937& gen) {
  auto l = rand_bf16(static_cast<std::size_t>(rows) * V, gen, 2.0, nullptr);
  std::uniform_int_distribution<int> pos(0, V - 1);
  const bf16 top = __float2bfloat16(40.f);
  const bf16 nan = __float2bfloat16(std::numeric_limits<float>::quiet_NaN());
  const bf16 ninf = __float2bfloat16(-std::numeric_limits<float>::infinity());
  for (int r = 0; r < rows; ++r) {
    const std::size_t off = static_cast<std::size_t>(r) * V;
    switch (r % 5) {
      case 0:  // ties: a late one, then an earlier one (the earlier must win)
        l[off + V - 1] = top;
        l[off + pos(gen) / 2] = top;
        l[off + pos(gen)] = nan;
        break;
      case 1: {  // ties exactly at the 8-slice edges of the cluster kernel and the row end
        const int slice = (V + 63) / 64 * 8;
        for (int k = 7; k >= 1; --k)
          if (k * slice < V) l[off + k * slice] = top;
        if (slice - 1 < V) l[off + slice - 1] = top;
        break;
      }
      case 2:  // only the last element is the maximum
        l[off + V - 1] = top;
        break;
      case 3:  // all NaN -> 0 (row 3), all -inf -> 0 (row 8)
        for (int i = 0; i < V; ++i) l[off + i] = r == 3 ? nan : ninf;
        break;
      default:  // plain random (bf16 ties of the max happen on their own at large V)
        break;
    }
  }
  return l;
}

struct argmax_case {
  int rows, V, offset;  // offset: elements before the logits (0 keeps 16-byte alignment)
};

void check_argmax(const argmax_case& c, bool cluster) {
  CAPTURE(c.rows, c.V, c.offset, cluster);
  std::mt19937 gen(1000 + c.rows * 7 + c.V + c.offset);
  const auto l = make_logits(c.rows, c.V, gen);
  dbuf<bf16> dl(l.size() + c.offset);
  PIECEWISE_CUDA_TRY(cudaMemcpy(dl.get() + c.offset, l.data(), l.size() * sizeof(bf16), cudaMemcpyHostToDevice));
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());  // the DMA may still be in flight (see dbuf::upload)
  const int ld = c.rows + 3, steps = 4;
  dbuf<int> ids(c.rows), nrows(1), hist(static_cast<std::size_t>(ld) * steps), step(1);
  stream st;
  for (int real : {c.rows, (c.rows + 1) / 2}) {
    CAPTURE(real);
    ids.poison();
    hist.poison();
    nrows.upload({real});
    step.upload({2});
    nh::argmax_rows(dl.get() + c.offset, c.V, ids.get(), c.rows, nrows.get(), hist.get(), ld, step.get(), st.s);
    st.sync();
    const auto got = ids.download();
    const auto h = hist.download();
    int wrong = 0, hist_wrong = 0, touched = 0;
    for (int r = 0; r < c.rows; ++r) {
      if (r < real) {
        const int want = host_argmax(l, static_cast<std::size_t>(r) * c.V, c.V);
        if (got[r] != want) ++wrong;
        if (h[2 * ld + r] != want) ++hist_wrong;
      } else if (got[r] != -1) {
        ++touched;  // rows >= num_rows are left alone
      }
    }
    for (int i = 0; i < ld * steps; ++i)
      if ((i < 2 * ld || i >= 2 * ld + real) && h[i] != -1) ++touched;
    CHECK(wrong == 0);
    CHECK(hist_wrong == 0);
    CHECK(touched == 0);
    CHECK(step.download()[0] == 3);
    // No history, no step: only ids.
    ids.poison();
    nh::argmax_rows(dl.get() + c.offset, c.V, ids.get(), c.rows, nrows.get(), nullptr, 0, nullptr, st.s);
    st.sync();
    CHECK(ids.download() == got);
  }
}

struct env_guard {
  explicit env_guard(bool no_cluster) {
    if (no_cluster) setenv("NH_ARGMAX_NO_CLUSTER", "1", 1);
  }
  ~env_guard() { unsetenv("NH_ARGMAX_NO_CLUSTER"); }
  env_guard(const env_guard&) = delete;
  env_guard& operator=(const env_guard&) = delete;
};

}  // namespace

TEST_CASE("argmax_rows matches the host argmax (ties, NaN, row counts, history)", "[runner][argmax]") {
  for (bool cluster : {true, false}) {
    const env_guard g(!cluster);
    for (const argmax_case& c : {argmax_case{1, 131072, 0}, argmax_case{10, 131072, 0}, argmax_case{9, 512, 0},
                                 argmax_case{6, 1003, 0}, argmax_case{5, 4096, 1}, argmax_case{3, 7, 0},
                                 argmax_case{4, 200000, 0}})
      check_argmax(c, cluster);
  }
}

TEST_CASE("argmax_rows replays from a captured graph with new logits, rows and steps", "[runner][argmax][graph]") {
  const int rows = 8, V = 131072, ld = rows;
  std::mt19937 gen(77);
  dbuf<bf16> dl(static_cast<std::size_t>(rows) * V);
  dbuf<int> ids(rows), nrows(1), hist(ld * 4), step(1);
  stream st;
  const captured graph(st.s, [&](cudaStream_t s) {
    nh::argmax_rows(dl.get(), V, ids.get(), rows, nrows.get(), hist.get(), ld, step.get(), s);
  });
  hist.poison();
  step.upload({0});
  std::vector<std::vector<int>> want_hist;
  int k = 0;
  for (int real : {8, 1, 5}) {
    CAPTURE(real);
    const auto l = make_logits(rows, V, gen);
    dl.upload(l);
    nrows.upload({real});
    ids.poison();
    graph.replay();
    const auto got = ids.download();
    std::vector<int> want(real);
    for (int r = 0; r < real; ++r) want[r] = host_argmax(l, static_cast<std::size_t>(r) * V, V);
    int wrong = 0;
    for (int r = 0; r < rows; ++r)
      if (r < real ? got[r] != want[r] : got[r] != -1) ++wrong;
    CHECK(wrong == 0);
    want_hist.push_back(want);
    ++k;
    CHECK(step.download()[0] == k);
  }
  const auto h = hist.download();
  int hist_wrong = 0;
  for (int s = 0; s < k; ++s)
    for (int r = 0; r < rows; ++r) {
      const int want = r < static_cast<int>(want_hist[s].size()) ? want_hist[s][r] : -1;
      if (h[s * ld + r] != want) ++hist_wrong;
    }
  CHECK(hist_wrong == 0);
}
