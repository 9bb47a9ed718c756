// GPU tests of token sampling (kernels/sampling.cuh) against the float64 reference
// (reference/sampling_ref.hpp): the kept set of every row exactly (threshold and size, through
// the test-only sample_rows_debug), the drawn id against the reference draw with the same
// counter-based uniforms, greedy rows against argmax_rows bit for bit, the empirical
// distribution over many positions against the float64 probabilities, draws independent of the
// batch composition, both kernels (cluster and one block per row, NH_ARGMAX_NO_CLUSTER=1),
// replay from a captured graph with new logits, parameters and positions, history and step.
// The "[.][bench]" case (not run by default) times sample_rows against argmax_rows in a graph.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernel_test_util.cuh"
#include "kernels/sampling.cuh"
#include "kernels/sampling_debug.cuh"
#include "reference/sampling_ref.hpp"
#include "runner/model_kernels.cuh"

using namespace nh_test;
namespace nh = nemotron_h;
namespace ref = nemotron_h::ref;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct env_guard {
  explicit env_guard(bool no_cluster) {
    if (no_cluster) setenv("NH_ARGMAX_NO_CLUSTER", "1", 1);
  }
  ~env_guard() { unsetenv("NH_ARGMAX_NO_CLUSTER"); }
  env_guard(const env_guard&) = delete;
  env_guard& operator=(const env_guard&) = delete;
};

nh::sampling_params sp(float T, int k = 0, float p = 1.0f, float m = 0.0f, std::uint64_t seed = 1) {
  nh::sampling_params s;
  s.temperature = T;
  s.top_k = k;
  s.top_p = p;
  s.min_p = m;
  s.seed = seed;
  return s;
}

ref::sampling_options to_ref(const nh::sampling_params& p) {
  ref::sampling_options o;
  o.temperature = p.temperature;
  o.top_k = p.top_k;
  o.top_p = p.top_p;
  o.min_p = p.min_p;
  return o;
}

// Every filter alone and combined, the degenerate settings, greedy (T = 0 and T < 0).
std::vector<nh::sampling_params> configs(int V) {
  return {sp(0.0f),        sp(-1.0f),         sp(1.0f),           sp(0.7f),
          sp(1.0f, 1),     sp(0.8f, 50),      sp(1.0f, V + 5),    sp(1.0f, 0, 1e-6f),
          sp(1.5f, 0, 1.0f), sp(1.0f, 0, 0.9f), sp(1.0f, 0, 1, 0.99f), sp(0.5f, 0, 1, 0.1f),
          sp(0.7f, 50, 0.9f), sp(1.2f, 20, 0.5f, 0.05f), sp(1.0f, 0, 0.0f), sp(2.0f, 3),
          sp(1.0f, 0, 1, 1.0f), sp(0.9f, V, 0.97f, 0.001f), sp(3.0f, 7, 0.6f)};
}

// One row of logits of `kind`: 0 normal, 1 normal with planted ties at the top and at a
// second level, 2 normal with NaN and -inf sprinkled in, 3 all NaN, 4 all -inf, 5 with +inf,
// 6 normal with a much larger maximum (one dominant token), 7 few distinct values (many ties).
void fill_row(float* l, int V, int kind, std::mt19937& gen) {
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::uniform_int_distribution<int> pos(0, V - 1), lev(-6, 6);
  for (int i = 0; i < V; ++i) l[i] = d(gen);
  switch (kind) {
    case 1: {
      const float top = 9.0f, second = 7.5f;
      for (int j = 0; j < 4; ++j) l[pos(gen)] = top;
      for (int j = 0; j < std::min(V, 40); ++j) l[pos(gen)] = second;
      break;
    }
    case 2:
      for (int i = 0; i < V; ++i) {
        const int u = static_cast<int>(gen() % 10);
        if (u == 0) l[i] = kNaN;
        if (u == 1) l[i] = -kInf;
      }
      break;
    case 3:
      for (int i = 0; i < V; ++i) l[i] = kNaN;
      break;
    case 4:
      for (int i = 0; i < V; ++i) l[i] = -kInf;
      break;
    case 5:
      l[pos(gen)] = kInf;
      break;
    case 6:
      l[pos(gen)] = 30.0f;
      break;
    case 7:
      for (int i = 0; i < V; ++i) l[i] = 0.5f * static_cast<float>(lev(gen));
      break;
    default:
      break;
  }
}

// bf16 logits of `rows` rows and the same values as float.
struct logits_host {
  std::vector<bf16> b;
  std::vector<float> f;
  void make(int rows, int V, const std::vector<int>& kinds, std::mt19937& gen) {
    f.assign(static_cast<std::size_t>(rows) * V, 0.0f);
    b.resize(f.size());
    for (int r = 0; r < rows; ++r) fill_row(f.data() + static_cast<std::size_t>(r) * V, V, kinds[r], gen);
    for (std::size_t i = 0; i < f.size(); ++i) {
      b[i] = __float2bfloat16(f[i]);
      f[i] = __bfloat162float(b[i]);
    }
  }
  const float* row(int r, int V) const { return f.data() + static_cast<std::size_t>(r) * V; }
};

// Device side of one test batch: logits (at an element offset, to test unaligned rows),
// metadata, parameters per slot, outputs.
struct rig {
  int max_seqs, V, offset, slots;
  batch_buffers bb;
  dbuf<bf16> logits;
  dbuf<nh::sampling_params> params;
  dbuf<int> ids, ids_argmax, debug, hist, step;
  int ld;
  rig(int max_seqs_, int V_, int offset_, int slots_, int steps = 4)
      : max_seqs(max_seqs_), V(V_), offset(offset_), slots(slots_), bb(max_seqs_, 4 * max_seqs_ + 64, 64),
        logits(static_cast<std::size_t>(max_seqs_) * V_ + offset_), params(slots_), ids(max_seqs_),
        ids_argmax(max_seqs_), debug(2 * static_cast<std::size_t>(max_seqs_)),
        hist(static_cast<std::size_t>(max_seqs_ + 3) * steps), step(1), ld(max_seqs_ + 3) {}
  bf16* rows() const { return logits.get() + offset; }
  void upload_logits(const std::vector<bf16>& h) {
    PIECEWISE_CUDA_TRY(cudaMemcpy(rows(), h.data(), h.size() * sizeof(bf16), cudaMemcpyHostToDevice));
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  }
  void sample(cudaStream_t s, bool with_history = true) {
    nh::sample_rows_debug(rows(), V, bb.view, params.get(), ids.get(), with_history ? hist.get() : nullptr, ld,
                          with_history ? step.get() : nullptr, nullptr, 0, debug.get(), s);
  }
};

int host_argmax(const float* l, int V) {
  int best = -1;
  for (int i = 0; i < V; ++i)
    if (!std::isnan(l[i]) && (best < 0 || l[i] > l[best])) best = i;
  return best < 0 ? 0 : best;
}

struct row_check {
  int wrong_kept = 0, wrong_count = 0, outside = 0, wrong_draw = 0, wrong_greedy = 0, compared_draws = 0,
      skipped_margin = 0, sampled = 0;
};

// Checks row r of the rig's last launch against the reference.
void check_row(const float* l, int V, const nh::sampling_params& p, std::int64_t pos, int id, int thr_key, int count,
               int argmax_id, row_check& c) {
  const auto f = ref::sampling_filter(l, V, to_ref(p));
  if (f.greedy) {
    if (id != f.greedy_id || id != argmax_id || thr_key != -1 || count != 0) ++c.wrong_greedy;
    return;
  }
  ++c.sampled;
  if (!std::binary_search(f.kept.begin(), f.kept.end(), id)) ++c.outside;
  if (f.top_p_margin < 1e-5) {
    ++c.skipped_margin;  // a cumulative mass within 1e-5 of top_p: the fixed-point masses may decide otherwise
  } else {
    const float thr = thr_key >= 0 ? nh::sampling_threshold_value(thr_key) : kNaN;
    int n = 0;
    for (int i = 0; i < V; ++i) n += std::isfinite(l[i]) && l[i] >= thr;
    if (!(thr <= f.threshold && n == static_cast<int>(f.kept.size()))) ++c.wrong_kept;
    if (count != static_cast<int>(f.kept.size())) ++c.wrong_count;
  }
  double margin = 0;
  const int want = ref::sampling_draw(l, V, to_ref(p), p.seed, pos, &margin);
  if (margin > 1e-3) {
    ++c.compared_draws;
    if (id != want) ++c.wrong_draw;
  }
}

struct case_desc {
  int V, max_seqs, real, offset;
};

// Rows get every config and every logits kind over the two batches; slots are a permutation
// (parameters are read through batch.slots); positions vary.
std::vector<int> run_case(const case_desc& cd, bool cluster) {
  CAPTURE(cd.V, cd.max_seqs, cd.real, cd.offset, cluster);
  const env_guard g(!cluster);
  const auto cfg = configs(cd.V);
  const int nslots = cd.max_seqs + 5;
  rig R(cd.max_seqs, cd.V, cd.offset, nslots);
  stream st;
  std::vector<int> all_ids;
  for (int shift = 0; shift < 2; ++shift) {
    CAPTURE(shift);
    std::mt19937 gen(100 + cd.V * 3 + cd.max_seqs + shift * 17);
    std::vector<int> kinds(cd.max_seqs);
    for (int r = 0; r < cd.max_seqs; ++r) kinds[r] = (r * 3 + shift * 5) % 8;
    logits_host L;
    L.make(cd.max_seqs, cd.V, kinds, gen);
    R.upload_logits(L.b);
    std::vector<int> slot(nslots);
    std::iota(slot.begin(), slot.end(), 0);
    std::shuffle(slot.begin(), slot.end(), gen);
    std::vector<nh::sampling_params> prm(nslots);
    std::vector<int> lens(cd.real), ctx(cd.real), sl(cd.real);
    for (int r = 0; r < cd.real; ++r) {
      sl[r] = slot[r];
      prm[sl[r]] = cfg[(r + shift * 7) % cfg.size()];
      prm[sl[r]].seed = 1000 + static_cast<std::uint64_t>(sl[r]) * 7919u;
      lens[r] = 1 + static_cast<int>(gen() % 3);
      ctx[r] = static_cast<int>(gen() % 5000);
    }
    R.params.upload(prm);
    R.bb.update(lens, ctx, sl);
    R.ids.poison();
    R.debug.poison();
    R.hist.poison();
    R.step.upload({1});
    R.sample(st.s);
    nh::argmax_rows(R.rows(), cd.V, R.ids_argmax.get(), cd.max_seqs, R.bb.view.num_seqs, nullptr, 0, nullptr, st.s);
    st.sync();
    const auto ids = R.ids.download();
    const auto am = R.ids_argmax.download();
    const auto dbg = R.debug.download();
    const auto h = R.hist.download();
    row_check c;
    int touched = 0, hist_wrong = 0;
    for (int r = 0; r < cd.max_seqs; ++r) {
      if (r >= cd.real) {
        if (ids[r] != -1 || dbg[2 * r] != -1 || dbg[2 * r + 1] != -1) ++touched;
        continue;
      }
      check_row(L.row(r, cd.V), cd.V, prm[sl[r]], ctx[r] + lens[r], ids[r], dbg[2 * r], dbg[2 * r + 1], am[r], c);
      if (am[r] != host_argmax(L.row(r, cd.V), cd.V)) ++c.wrong_greedy;
      if (h[R.ld + r] != ids[r]) ++hist_wrong;
    }
    for (int i = 0; i < static_cast<int>(h.size()); ++i)
      if ((i < R.ld || i >= R.ld + cd.real) && h[i] != -1) ++touched;
    CHECK(c.wrong_kept == 0);
    CHECK(c.wrong_count == 0);
    CHECK(c.outside == 0);
    CHECK(c.wrong_draw == 0);
    CHECK(c.wrong_greedy == 0);
    CHECK(touched == 0);
    CHECK(hist_wrong == 0);
    CHECK(R.step.download()[0] == 2);
    CHECK(c.skipped_margin <= 1);
    CHECK(c.sampled > 0);
    CHECK(c.compared_draws * 2 >= c.sampled);  // most draws are compared to the reference draw
    // No history and no step: the same ids.
    const auto first = ids;
    R.ids.poison();
    R.sample(st.s, false);
    st.sync();
    CHECK(R.ids.download() == first);
    CHECK(R.step.download()[0] == 2);
    all_ids.insert(all_ids.end(), first.begin(), first.end());
  }
  return all_ids;
}

}  // namespace

TEST_CASE("sample_rows: kept sets, draws and greedy rows match the reference (cluster and fallback)",
          "[sampling]") {
  for (const case_desc& cd : {case_desc{131072, 21, 19, 0}, case_desc{384, 24, 21, 0}, case_desc{7, 9, 8, 0},
                              case_desc{1, 5, 4, 0}, case_desc{1003, 19, 19, 0}, case_desc{4096, 20, 17, 1},
                              case_desc{50001, 8, 7, 3}, case_desc{200000, 4, 3, 0}}) {
    const auto a = run_case(cd, true);
    const auto b = run_case(cd, false);
    CHECK(a == b);  // integer masses and identical float scores: the same ids on both paths
  }
}

TEST_CASE("sample_rows: greedy rows equal argmax_rows at the 9B vocabulary", "[sampling]") {
  for (bool cluster : {true, false}) {
    const env_guard g(!cluster);
    const int rows = 64, V = 131072;
    rig R(rows, V, 0, rows);
    std::mt19937 gen(5);
    std::vector<int> kinds(rows);
    for (int r = 0; r < rows; ++r) kinds[r] = r % 8;
    logits_host L;
    L.make(rows, V, kinds, gen);
    // Ties of the maximum at the cluster's slice edges (slices of 16384).
    for (int r = 8; r < 16; ++r)
      for (int k = 1; k < 8; ++k) {
        const std::size_t i = static_cast<std::size_t>(r) * V + k * 16384 - (r & 1);
        L.b[i] = __float2bfloat16(60.f);
        L.f[i] = 60.f;  // the host argmax reads the float copy
      }
    R.upload_logits(L.b);
    std::vector<nh::sampling_params> prm(rows, sp(0.0f));
    for (int r = 0; r < rows; r += 3) prm[r] = sp(-2.0f);
    R.params.upload(prm);
    std::vector<int> lens(rows - 1, 1), ctx(rows - 1, 0), sl(rows - 1);
    std::iota(sl.begin(), sl.end(), 0);
    R.bb.update(lens, ctx, sl);
    R.ids.poison();
    R.ids_argmax.poison();
    stream st;
    R.sample(st.s, false);
    nh::argmax_rows(R.rows(), V, R.ids_argmax.get(), rows, R.bb.view.num_seqs, nullptr, 0, nullptr, st.s);
    st.sync();
    CHECK(R.ids.download() == R.ids_argmax.download());
    const auto ids = R.ids.download();
    int wrong = 0;
    for (int r = 0; r < rows - 1; ++r) wrong += ids[r] != host_argmax(L.row(r, V), V);
    CHECK(wrong == 0);
    CHECK(ids[rows - 1] == -1);
  }
}

TEST_CASE("sample_rows: the empirical distribution matches the float64 probabilities", "[sampling]") {
  struct dist_case {
    int V;
    nh::sampling_params p, wrong;  // wrong: a nearby setting the check must tell apart
  };
  const std::vector<dist_case> cases{
      {384, sp(0.7f), sp(0.85f)},
      {384, sp(1.0f, 20), sp(1.0f, 30)},
      {384, sp(0.8f, 0, 0.7f), sp(0.8f, 0, 0.8f)},
      {384, sp(1.2f, 0, 1, 0.2f), sp(1.2f, 0, 1, 0.1f)},
      {384, sp(0.7f, 50, 0.9f), sp(0.7f, 10, 0.9f)},
      {131072, sp(0.7f, 50, 0.9f), sp(1.0f, 50, 0.9f)},
      {131072, sp(1.0f, 0, 1, 0.05f), sp(1.0f, 0, 1, 0.08f)},
  };
  for (bool cluster : {true, false}) {
    const env_guard g(!cluster);
    for (const auto& dc : cases) {
      const int rows = 1024, V = dc.V, launches = 32;
      CAPTURE(cluster, V, dc.p.temperature, dc.p.top_k, dc.p.top_p, dc.p.min_p);
      std::mt19937 gen(900 + V);
      std::vector<float> one(V);
      // Logits scaled so that a few dozen tokens carry the mass.
      std::normal_distribution<float> d(0.0f, V > 1000 ? 3.0f : 2.0f);
      for (float& x : one) x = __bfloat162float(__float2bfloat16(d(gen)));
      std::vector<bf16> b(static_cast<std::size_t>(rows) * V);
      for (int r = 0; r < rows; ++r)
        for (int i = 0; i < V; ++i) b[static_cast<std::size_t>(r) * V + i] = __float2bfloat16(one[i]);
      rig R(rows, V, 0, rows);
      R.upload_logits(b);
      std::vector<nh::sampling_params> prm(rows, dc.p);
      for (auto& x : prm) x.seed = 77;
      R.params.upload(prm);
      std::vector<int> lens(rows, 1), ctx(rows), sl(rows);
      std::iota(sl.begin(), sl.end(), 0);
      std::vector<int> hits(V, 0);
      stream st;
      for (int k = 0; k < launches; ++k) {
        for (int r = 0; r < rows; ++r) ctx[r] = k * rows + r;  // every sample at its own position
        R.bb.update(lens, ctx, sl);
        R.sample(st.s, false);
        st.sync();
        for (int id : R.ids.download()) ++hits.at(id);
      }
      const double N = static_cast<double>(rows) * launches;
      const auto f = ref::sampling_filter(one.data(), V, to_ref(dc.p));
      const auto fw = ref::sampling_filter(one.data(), V, to_ref(dc.wrong));
      std::vector<double> p(V, 0.0), pw(V, 0.0);
      for (std::size_t j = 0; j < f.kept.size(); ++j) p[f.kept[j]] = f.prob[j];
      for (std::size_t j = 0; j < fw.kept.size(); ++j) pw[fw.kept[j]] = fw.prob[j];
      double tv = 0, tv_wrong = 0, bound = 0;
      int outside = 0;
      for (int i = 0; i < V; ++i) {
        tv += std::abs(hits[i] / N - p[i]);
        tv_wrong += std::abs(pw[i] - p[i]);
        bound += std::sqrt(p[i] * (1 - p[i]) / N);  // >= E|p^_i - p_i|
        if (hits[i] > 0 && p[i] == 0.0) ++outside;
      }
      tv *= 0.5;
      tv_wrong *= 0.5;
      bound *= 0.5;  // >= E[TV]
      CAPTURE(f.kept.size(), tv, bound, tv_wrong);
      CHECK(outside == 0);
      CHECK(tv < 1.5 * bound);
      CHECK(tv_wrong > 4.0 * bound);  // the wrong setting would have failed the check
    }
  }
}

TEST_CASE("sample_rows: the same seed and position give the same id whatever the batch", "[sampling]") {
  for (int V : {131072, 4099}) {
    CAPTURE(V);
    const int nseq = 12;
    std::mt19937 gen(31 + V);
    std::vector<std::vector<float>> seq_logits(nseq, std::vector<float>(V));
    for (auto& l : seq_logits) {
      fill_row(l.data(), V, 0, gen);
      for (float& x : l) x = __bfloat162float(__float2bfloat16(x));
    }
    const auto cfg = configs(V);
    std::vector<nh::sampling_params> seq_params(nseq);
    std::vector<int> seq_pos(nseq);
    for (int q = 0; q < nseq; ++q) {
      seq_params[q] = cfg[(q + 2) % cfg.size()];
      seq_params[q].seed = 5000 + q;
      seq_pos[q] = 100 + 37 * q;
    }
    // Each composition: the order of the sequences in the batch, the batch size, and the
    // slot each sequence occupies.
    std::vector<int> want(nseq, -2);
    for (int comp = 0; comp < 4; ++comp) {
      CAPTURE(comp);
      const env_guard g(comp == 3);
      std::vector<int> order(nseq);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), gen);
      const int n = comp == 0 ? nseq : nseq - comp;  // a subset
      const int max_seqs = n + 3 * comp;
      rig R(max_seqs, V, 0, max_seqs + 4);
      std::vector<bf16> b(static_cast<std::size_t>(max_seqs) * V, __float2bfloat16(0.f));
      std::vector<nh::sampling_params> prm(max_seqs + 4, sp(1.0f));
      std::vector<int> lens(n), ctx(n), sl(n);
      for (int r = 0; r < n; ++r) {
        const int q = order[r];
        for (int i = 0; i < V; ++i) b[static_cast<std::size_t>(r) * V + i] = __float2bfloat16(seq_logits[q][i]);
        sl[r] = (r * 7 + comp) % (max_seqs + 4);  // distinct: gcd(7, max_seqs + 4) = 1
        prm[sl[r]] = seq_params[q];
        lens[r] = 1 + (q + comp) % 3;  // a prefill chunk or a decode token, same position
        ctx[r] = seq_pos[q] - lens[r];
      }
      R.upload_logits(b);
      R.params.upload(prm);
      R.bb.update(lens, ctx, sl);
      stream st;
      R.sample(st.s, false);
      st.sync();
      const auto ids = R.ids.download();
      int differ = 0;
      for (int r = 0; r < n; ++r) {
        const int q = order[r];
        if (want[q] == -2) want[q] = ids[r];
        if (ids[r] != want[q]) ++differ;
      }
      CHECK(differ == 0);
    }
  }
}

TEST_CASE("sample_rows replays from a captured graph with new logits, parameters and positions",
          "[sampling][graph]") {
  const int rows = 8, V = 131072;
  rig R(rows, V, 0, rows + 2, 4);
  stream st;
  R.bb.update({1}, {0}, {0});
  R.params.upload(std::vector<nh::sampling_params>(rows + 2, sp(1.0f)));
  const captured graph(st.s, [&](cudaStream_t s) { R.sample(s); });
  R.hist.poison();
  R.step.upload({0});
  std::mt19937 gen(4242);
  const auto cfg = configs(V);
  std::vector<std::vector<int>> want_hist;
  int k = 0;
  for (int real : {8, 3, 6}) {
    CAPTURE(real);
    std::vector<int> kinds(rows);
    for (int r = 0; r < rows; ++r) kinds[r] = static_cast<int>(gen() % 8);
    logits_host L;
    L.make(rows, V, kinds, gen);
    R.upload_logits(L.b);
    std::vector<nh::sampling_params> prm(rows + 2);
    std::vector<int> lens(real), ctx(real), sl(real);
    for (int r = 0; r < real; ++r) {
      sl[r] = (r + 3 * k) % (rows + 2);
      prm[sl[r]] = cfg[gen() % cfg.size()];
      prm[sl[r]].seed = gen();
      lens[r] = 1 + static_cast<int>(gen() % 4);
      ctx[r] = static_cast<int>(gen() % 100000);
    }
    R.params.upload(prm);
    R.bb.update(lens, ctx, sl);
    R.ids.poison();
    R.debug.poison();
    graph.replay();
    const auto ids = R.ids.download();
    const auto dbg = R.debug.download();
    row_check c;
    std::vector<int> want(real);
    int untouched_wrong = 0;
    for (int r = 0; r < rows; ++r) {
      if (r >= real) {
        untouched_wrong += ids[r] != -1;
        continue;
      }
      check_row(L.row(r, V), V, prm[sl[r]], ctx[r] + lens[r], ids[r], dbg[2 * r], dbg[2 * r + 1],
                host_argmax(L.row(r, V), V), c);
      want[r] = ids[r];
    }
    CHECK(c.wrong_kept == 0);
    CHECK(c.wrong_count == 0);
    CHECK(c.outside == 0);
    CHECK(c.wrong_draw == 0);
    CHECK(c.wrong_greedy == 0);
    CHECK(untouched_wrong == 0);
    want_hist.push_back(want);
    ++k;
    CHECK(R.step.download()[0] == k);
  }
  const auto h = R.hist.download();
  int hist_wrong = 0;
  for (int s = 0; s < 4; ++s)
    for (int r = 0; r < R.ld; ++r) {
      const int want = s < k && r < static_cast<int>(want_hist[s].size()) ? want_hist[s][r] : -1;
      hist_wrong += h[static_cast<std::size_t>(s) * R.ld + r] != want;
    }
  CHECK(hist_wrong == 0);
}

TEST_CASE("sample_rows rejects a bad vocabulary size", "[sampling]") {
  rig R(2, 8, 0, 2);
  stream st;
  CHECK_THROWS_AS(nh::sample_rows(R.rows(), 0, R.bb.view, R.params.get(), R.ids.get(), nullptr, 0, nullptr, nullptr,
                                  0, st.s),
                  piecewise::config_error);
  CHECK_THROWS_AS(nh::sample_rows(R.rows(), (1 << 22) + 1, R.bb.view, R.params.get(), R.ids.get(), nullptr, 0,
                                  nullptr, nullptr, 0, st.s),
                  piecewise::config_error);
  CHECK(nh::sampling_workspace_bytes(1024, 131072) == 0);
}

TEST_CASE("sample_rows timing against argmax_rows in a captured graph", "[.][bench]") {
  const int V = 131072, reps = 200;
  for (int rows : {1, 8, 64}) {
    rig R(rows, V, 0, rows);
    std::mt19937 gen(3);
    logits_host L;
    L.make(rows, V, std::vector<int>(rows, 0), gen);
    R.upload_logits(L.b);
    std::vector<int> lens(rows, 1), ctx(rows, 10), sl(rows);
    std::iota(sl.begin(), sl.end(), 0);
    R.bb.update(lens, ctx, sl);
    stream st;
    cudaEvent_t e0, e1;
    PIECEWISE_CUDA_TRY(cudaEventCreate(&e0));
    PIECEWISE_CUDA_TRY(cudaEventCreate(&e1));
    const auto time_graph = [&](const captured& g) {
      for (int i = 0; i < 10; ++i) g.launch(st.s);
      PIECEWISE_CUDA_TRY(cudaEventRecord(e0, st.s));
      for (int i = 0; i < reps; ++i) g.launch(st.s);
      PIECEWISE_CUDA_TRY(cudaEventRecord(e1, st.s));
      PIECEWISE_CUDA_TRY(cudaEventSynchronize(e1));
      float ms = 0;
      PIECEWISE_CUDA_TRY(cudaEventElapsedTime(&ms, e0, e1));
      return 1000.0 * ms / reps;
    };
    const captured ga(st.s, [&](cudaStream_t s) {
      nh::argmax_rows(R.rows(), V, R.ids_argmax.get(), rows, R.bb.view.num_seqs, nullptr, 0, R.step.get(), s);
    });
    const captured gs(st.s, [&](cudaStream_t s) {
      nh::sample_rows(R.rows(), V, R.bb.view, R.params.get(), R.ids.get(), nullptr, 0, R.step.get(), nullptr,
                      0, s);
    });
    for (int mode = 0; mode < 3; ++mode) {
      R.params.upload(std::vector<nh::sampling_params>(
          rows, mode == 0 ? sp(0.0f) : mode == 1 ? sp(0.7f, 50, 0.9f) : sp(0.7f, 0, 0.9f)));
      const char* what = mode == 0 ? "greedy" : mode == 1 ? "T0.7 top-k50 top-p0.9" : "T0.7 top-p0.9";
      R.step.upload({0});
      const double ta = time_graph(ga);
      R.step.upload({0});
      const double ts = time_graph(gs);
      std::printf("V=%d rows=%d %-22s argmax_rows %7.2f us  sample_rows %7.2f us\n", V, rows, what, ta, ts);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
  }
  std::fflush(stdout);
}
