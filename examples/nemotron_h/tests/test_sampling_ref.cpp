// CPU checks of the float64 sampling reference (reference/sampling_ref.cpp): hand-computed
// kept sets for every filter, the filter order (top-p on the renormalised top-k survivors),
// NaN/inf handling, an independent token-by-token formulation on random rows with ties, and
// the draw's distribution over positions. Runs in CI (no GPU).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "reference/sampling_ref.hpp"

namespace ref = nemotron_h::ref;

namespace {

using ids = std::vector<int>;

ref::sampling_options opts(float T, int k = 0, float p = 1.0f, float m = 0.0f) {
  ref::sampling_options o;
  o.temperature = T;
  o.top_k = k;
  o.top_p = p;
  o.min_p = m;
  return o;
}

ids kept(const std::vector<float>& l, const ref::sampling_options& o) {
  return ref::sampling_filter(l.data(), static_cast<int>(l.size()), o).kept;
}

// Token by token, in the style of Hugging Face's warpers: sort the tokens (value descending,
// id ascending), cut each filter after a position, then extend the cut to the tokens tied with
// the last one kept.
ids naive_kept(const std::vector<float>& l, const ref::sampling_options& o) {
  std::vector<int> order;
  for (int i = 0; i < static_cast<int>(l.size()); ++i)
    if (std::isfinite(l[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  const double mx = l[order[0]];
  std::size_t n = order.size();
  const auto extend = [&](std::size_t cut) {  // keep [0, cut) plus ties of order[cut - 1]
    while (cut < order.size() && l[order[cut]] == l[order[cut - 1]]) ++cut;
    return cut;
  };
  if (o.top_k > 0 && static_cast<std::size_t>(o.top_k) < n) n = extend(o.top_k);
  if (o.top_p < 1.0f) {
    double Z = 0;
    for (std::size_t j = 0; j < n; ++j) Z += std::exp((l[order[j]] - mx) / o.temperature);
    double c = 0;
    std::size_t cut = 0;
    while (cut < n) {
      // whole tie groups at once: the mass of the level, then the check
      const std::size_t end = extend(cut + 1);
      for (std::size_t j = cut; j < end; ++j) c += std::exp((l[order[j]] - mx) / o.temperature);
      cut = end;
      if (c >= static_cast<double>(o.top_p) * Z) break;
    }
    n = std::min(n, cut);
  }
  if (o.min_p > 0.0f) {
    std::size_t cut = 0;
    const double lnm = std::log(static_cast<double>(std::min(o.min_p, 1.0f)));
    while (cut < n && static_cast<double>(l[order[cut]]) - mx >= static_cast<double>(o.temperature) * lnm) ++cut;
    n = std::min(n, cut);
  }
  ids r(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n));
  std::sort(r.begin(), r.end());
  return r;
}

}  // namespace

TEST_CASE("sampling_filter: hand-computed kept sets", "[sampling][reference]") {
  const std::vector<float> l{1, 2, 3, 3, 0};  // e = e^-2, e^-1, 1, 1, e^-3 at T = 1
  CHECK(kept(l, opts(1)) == ids{0, 1, 2, 3, 4});
  CHECK(kept(l, opts(1, 1)) == ids{2, 3});  // ties with the k-th value are kept
  CHECK(kept(l, opts(1, 2)) == ids{2, 3});
  CHECK(kept(l, opts(1, 3)) == ids{1, 2, 3});
  CHECK(kept(l, opts(1, 5)) == ids{0, 1, 2, 3, 4});
  CHECK(kept(l, opts(1, 100)) == ids{0, 1, 2, 3, 4});
  // Cumulative masses of the levels 3, 2, 1, 0: 0.7834, 0.9275, 0.9805, 1.
  CHECK(kept(l, opts(1, 0, 0.5f)) == ids{2, 3});
  CHECK(kept(l, opts(1, 0, 0.8f)) == ids{1, 2, 3});
  CHECK(kept(l, opts(1, 0, 0.95f)) == ids{0, 1, 2, 3});
  CHECK(kept(l, opts(1, 0, 0.99f)) == ids{0, 1, 2, 3, 4});
  CHECK(kept(l, opts(1, 0, 1e-6f)) == ids{2, 3});
  CHECK(kept(l, opts(1, 0, 0.0f)) == ids{2, 3});
  // Temperature matters for top-p: at T = 2 the level masses are 0.6255, 0.8152, ...
  CHECK(kept(l, opts(2, 0, 0.7f)) == ids{1, 2, 3});
  CHECK(kept(l, opts(1, 0, 0.7f)) == ids{2, 3});
  // top-p on the renormalised top-k survivors {1, 2, 3}: level 3 holds 0.8446 of them.
  CHECK(kept(l, opts(1, 3, 0.8f)) == ids{2, 3});
  // min-p: p >= min_p * p_max <=> exp(l - max) >= min_p.
  CHECK(kept(l, opts(1, 0, 1, 0.3f)) == ids{1, 2, 3});
  CHECK(kept(l, opts(1, 0, 1, 0.5f)) == ids{2, 3});
  CHECK(kept(l, opts(1, 0, 1, 0.1f)) == ids{0, 1, 2, 3});
  CHECK(kept(l, opts(1, 0, 1, 1.0f)) == ids{2, 3});
  CHECK(kept(l, opts(1, 0, 1, 5.0f)) == ids{2, 3});
  CHECK(kept(l, opts(2, 0, 1, 0.3f)) == ids{0, 1, 2, 3});  // exp(-2/2) = 0.37 >= 0.3
  const auto f = ref::sampling_filter(l.data(), 5, opts(1, 3));
  REQUIRE(f.prob.size() == 3);
  const double z = std::exp(-1.0) + 2.0;
  CHECK(f.prob[0] == Approx(std::exp(-1.0) / z));
  CHECK(f.prob[1] == Approx(1.0 / z));
  CHECK(f.threshold == 2.0f);
}

TEST_CASE("sampling_filter: greedy rows, NaN and infinities", "[sampling][reference]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> l{nan, -inf, 1, nan, 1};
  auto f = ref::sampling_filter(l.data(), 5, opts(1));
  CHECK_FALSE(f.greedy);
  CHECK(f.kept == ids{2, 4});
  CHECK(f.greedy_id == 2);
  f = ref::sampling_filter(l.data(), 5, opts(0));
  CHECK(f.greedy);
  CHECK(f.greedy_id == 2);
  CHECK(f.kept.empty());
  l = {nan, nan, nan};
  f = ref::sampling_filter(l.data(), 3, opts(1));
  CHECK(f.greedy);
  CHECK(f.greedy_id == 0);
  l = {nan, -inf, -inf};
  f = ref::sampling_filter(l.data(), 3, opts(1));
  CHECK(f.greedy);
  CHECK(f.greedy_id == 1);
  l = {1, inf, 2, inf};
  f = ref::sampling_filter(l.data(), 4, opts(1));
  CHECK(f.greedy);
  CHECK(f.greedy_id == 1);
  CHECK(ref::sampling_draw(l.data(), 4, opts(1), 5, 9) == 1);
  l = {-0.0f, 0.0f, -1};  // -0 == +0: a tie, first index
  f = ref::sampling_filter(l.data(), 3, opts(-1));
  CHECK(f.greedy_id == 0);
  CHECK(kept(l, opts(1, 1)) == ids{0, 1});
}

TEST_CASE("sampling_filter agrees with a token-by-token formulation on random rows with ties",
          "[sampling][reference]") {
  std::mt19937 gen(42);
  std::uniform_int_distribution<int> level(-12, 12), vsize(1, 60), kdist(0, 70);
  std::uniform_real_distribution<float> pdist(0.0f, 1.2f), mdist(-0.2f, 1.0f), tdist(0.05f, 3.0f);
  int checked = 0;
  for (int it = 0; it < 3000; ++it) {
    const int V = vsize(gen);
    std::vector<float> l(V);
    for (float& x : l) x = 0.25f * static_cast<float>(level(gen));  // few distinct values: many ties
    const auto o = opts(tdist(gen), kdist(gen) - 10, pdist(gen), mdist(gen));
    const auto f = ref::sampling_filter(l.data(), V, o);
    if (f.top_p_margin < 1e-9) continue;  // a mass level on top_p itself: rounding decides
    CAPTURE(it, V, o.temperature, o.top_k, o.top_p, o.min_p);
    REQUIRE(f.kept == naive_kept(l, o));
    const double s = std::accumulate(f.prob.begin(), f.prob.end(), 0.0);
    REQUIRE(s == Approx(1.0));
    ++checked;
  }
  CHECK(checked > 2900);
}

TEST_CASE("sampling_draw follows the kept-set probabilities over positions", "[sampling][reference]") {
  std::mt19937 gen(7);
  std::normal_distribution<float> d(0.0f, 1.5f);
  for (const auto& o : {opts(0.7f), opts(1.0f, 5), opts(1.3f, 0, 0.8f), opts(1.0f, 10, 0.9f, 0.05f)}) {
    std::vector<float> l(40);
    for (float& x : l) x = d(gen);
    const auto f = ref::sampling_filter(l.data(), 40, o);
    const int N = 40000;
    std::vector<int> hits(40, 0);
    for (int pos = 0; pos < N; ++pos) {
      double margin = 0;
      const int id = ref::sampling_draw(l.data(), 40, o, 1234, pos, &margin);
      REQUIRE(std::binary_search(f.kept.begin(), f.kept.end(), id));
      REQUIRE(margin >= 0.0);
      ++hits[id];
    }
    // Total variation against the probabilities; E|p^ - p| <= sqrt(p (1 - p) / N) per token.
    double tv = 0, bound = 0;
    for (std::size_t j = 0; j < f.kept.size(); ++j) {
      tv += std::abs(hits[f.kept[j]] / double(N) - f.prob[j]);
      bound += std::sqrt(f.prob[j] * (1 - f.prob[j]) / N);
    }
    CAPTURE(o.temperature, o.top_k, o.top_p, o.min_p, f.kept.size());
    CHECK(0.5 * tv < 2.0 * 0.5 * bound);
    // The same seed and position give the same draw; another seed another sequence of draws.
    int same = 0;
    for (int pos = 0; pos < 200; ++pos)
      same += ref::sampling_draw(l.data(), 40, o, 1234, pos) == ref::sampling_draw(l.data(), 40, o, 99, pos);
    CHECK(same < 200);
  }
}
