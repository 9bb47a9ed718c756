// GPU tests of the MoE kernels (kernels/moe.cuh): routing against ref::moe_route on the same
// fp32 logits (ids exactly, weights to 2e-6), planted exact ties (lower index wins), padding
// rows; the plan against a host stable counting sort; the grouped GEMM against float64 of the
// bf16 operands (gather or not, relu^2 or not, tiny and Nano-30B shapes, both tile shapes,
// rows past expert_offsets[E] untouched); the combine; the bit-identity contract (rows bound,
// unrelated extra rows, small-M vs large-M path); graph replay with new logits and token
// counts; the whole chain route -> plan -> up -> down -> combine against float64.
// The "[.][bench]" case (not run by default) times the chain at Nano-30B shapes in graphs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "bench/hash_fill.cuh"
#include "kernel_test_util.cuh"
#include "kernels/gemm.cuh"
#include "kernels/moe.cuh"
#include "reference/reference.hpp"

using namespace nh_test;
namespace nh = nemotron_h;
namespace ref = nemotron_h::ref;

namespace {

std::uint16_t bits(bf16 v) {
  std::uint16_t b;
  std::memcpy(&b, &v, 2);
  return b;
}

struct plan_rig {
  dbuf<unsigned char> mem;
  nh::moe_plan_view v;
  dbuf<int> ntok{1};
  plan_rig(int rows, int E, int k) : mem(nh::moe_plan_bytes(rows, E, k)) {
    v = nh::make_moe_plan_view(mem.get(), rows, E, k);
    mem.poison();
  }
  void set_tokens(int n) { ntok.upload({n}); }
  template <typename T>
  std::vector<T> get(const T* p, std::size_t n) const {
    std::vector<T> h(n);
    PIECEWISE_CUDA_TRY(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  std::size_t R() const { return static_cast<std::size_t>(v.rows) * v.top_k; }
  std::vector<int> ids() const { return get(v.topk_ids, R()); }
  std::vector<float> weights() const { return get(v.topk_weights, R()); }
  std::vector<int> offsets() const { return get(v.expert_offsets, static_cast<std::size_t>(v.num_experts) + 1); }
  std::vector<int> sorted() const { return get(v.sorted_token, R()); }
  std::vector<int> arow() const { return get(v.assignment_row, R()); }
  void upload_ids(const std::vector<int>& ids) {
    PIECEWISE_CUDA_TRY(cudaMemcpy(v.topk_ids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  }
  void upload_weights(const std::vector<float>& w) {
    PIECEWISE_CUDA_TRY(cudaMemcpy(v.topk_weights, w.data(), w.size() * 4, cudaMemcpyHostToDevice));
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  }
};

nh::moe_route_params rp(int E, int k, int ng = 1, int tg = 1, bool renorm = true, float scaling = 1.0f) {
  nh::moe_route_params p;
  p.num_experts = E;
  p.top_k = k;
  p.n_group = ng;
  p.topk_group = tg;
  p.renormalize = renorm;
  p.scaling = scaling;
  return p;
}

ref::moe_routing to_ref(const nh::moe_route_params& p) {
  ref::moe_routing r;
  r.num_experts = p.num_experts;
  r.top_k = p.top_k;
  r.n_group = p.n_group;
  r.topk_group = p.topk_group;
  r.norm_topk_prob = p.renormalize;
  r.routed_scaling_factor = p.scaling;
  return r;
}

// True when the row's biased scores (and group scores) are either exactly equal or at least
// `gap` apart, so the fp32 kernel and the float64 reference must choose the same experts.
bool well_separated(const float* l, const float* bias, const nh::moe_route_params& p, double gap = 2e-6) {
  const int E = p.num_experts;
  std::vector<double> b(E);
  for (int e = 0; e < E; ++e) b[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(l[e]))) + (bias ? bias[e] : 0.0);
  auto ok = [&](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    for (std::size_t i = 1; i < v.size(); ++i) {
      const double d = v[i] - v[i - 1];
      if (d != 0.0 && d < gap) return false;
    }
    return true;
  };
  if (!ok(b)) return false;
  if (p.n_group > 1) {
    const int per = E / p.n_group;
    std::vector<double> gs(p.n_group);
    for (int g = 0; g < p.n_group; ++g) {
      std::vector<double> v(b.begin() + g * per, b.begin() + (g + 1) * per);
      std::sort(v.rbegin(), v.rend());
      gs[g] = v[0] + v[1];
    }
    if (!ok(gs)) return false;
  }
  return true;
}

// Random fp32 logits [rows, ld] whose first `n` rows are well separated; bias [E] or empty.
void random_logits(std::vector<float>& L, int rows, int ld, int n, const std::vector<float>& bias,
                   const nh::moe_route_params& p, std::mt19937& gen, double sd = 2.0) {
  std::normal_distribution<float> d(0.0f, static_cast<float>(sd));
  L.assign(static_cast<std::size_t>(rows) * ld, 0.0f);
  for (int t = 0; t < rows; ++t) {
    float* l = L.data() + static_cast<std::size_t>(t) * ld;
    for (int tries = 0;; ++tries) {
      for (int e = 0; e < ld; ++e) l[e] = d(gen);
      if (t >= n || well_separated(l, bias.empty() ? nullptr : bias.data(), p)) break;
      REQUIRE(tries < 1000);
    }
  }
}

struct route_result {
  std::vector<int> ids;
  std::vector<double> w;
};

route_result ref_route(const std::vector<float>& L, int ld, int n, const std::vector<float>& bias,
                       const nh::moe_route_params& p) {
  const int E = p.num_experts, k = p.top_k;
  route_result r;
  r.ids.resize(static_cast<std::size_t>(n) * k);
  r.w.resize(static_cast<std::size_t>(n) * k);
  std::vector<double> l(E), b(bias.begin(), bias.end());
  const ref::moe_routing rr = to_ref(p);
  for (int t = 0; t < n; ++t) {
    for (int e = 0; e < E; ++e) l[e] = L[static_cast<std::size_t>(t) * ld + e];
    ref::moe_route(l.data(), bias.empty() ? nullptr : b.data(), rr, r.ids.data() + static_cast<std::size_t>(t) * k,
                   r.w.data() + static_cast<std::size_t>(t) * k);
  }
  return r;
}

// Runs moe_route on L and checks it against the reference for rows < n, padding after.
void check_route(plan_rig& P, const std::vector<float>& L, int ld, int n, const std::vector<float>& bias,
                 const nh::moe_route_params& p, const stream& st) {
  dbuf<float> dl(L.size()), db(std::max<std::size_t>(bias.size(), 1));
  dl.upload(L);
  if (!bias.empty()) db.upload(bias);
  P.set_tokens(n);
  P.mem.poison();
  nh::moe_route(dl.get(), ld, bias.empty() ? nullptr : db.get(), p, P.v, P.ntok.get(), st.s);
  st.sync();
  const auto ids = P.ids();
  const auto w = P.weights();
  const route_result r = ref_route(L, ld, n, bias, p);
  const int k = p.top_k;
  int bad_ids = 0, bad_w = 0;
  for (int t = 0; t < P.v.rows; ++t) {
    for (int j = 0; j < k; ++j) {
      const std::size_t a = static_cast<std::size_t>(t) * k + j;
      if (t < n) {
        if (ids[a] != r.ids[a]) ++bad_ids;
        if (!(std::fabs(w[a] - r.w[a]) <= 2e-6 * std::fabs(r.w[a]) + 1e-12)) ++bad_w;
      } else {
        if (ids[a] != -1) ++bad_ids;
        if (w[a] != 0.0f) ++bad_w;
      }
    }
  }
  INFO("E " << p.num_experts << " k " << k << " groups " << p.n_group << "/" << p.topk_group << " renorm "
            << p.renormalize << " rows " << P.v.rows << " n " << n);
  CHECK(bad_ids == 0);
  CHECK(bad_w == 0);
}

struct host_plan {
  std::vector<int> offsets, sorted, arow;
};

host_plan host_sort(const std::vector<int>& ids, int rows, int E, int k, int n) {
  host_plan h;
  h.offsets.assign(E + 1, 0);
  h.arow.assign(static_cast<std::size_t>(rows) * k, -1);
  std::vector<int> cnt(E, 0);
  for (int a = 0; a < n * k; ++a) ++cnt[ids[a]];
  for (int e = 0; e < E; ++e) h.offsets[e + 1] = h.offsets[e] + cnt[e];
  h.sorted.assign(h.offsets[E], -1);
  std::vector<int> pos(h.offsets.begin(), h.offsets.end() - 1);
  for (int a = 0; a < n * k; ++a) {
    const int p = pos[ids[a]]++;
    h.sorted[p] = a / k;
    h.arow[a] = p;
  }
  return h;
}

// Random distinct expert ids per token (ids[t * k + j]) for t < n, -1 after; experts drawn
// from [0, span) (span < E leaves experts without rows).
std::vector<int> random_ids(int rows, int E, int k, int n, std::mt19937& gen, int span = 0) {
  if (span <= 0) span = E;
  std::vector<int> ids(static_cast<std::size_t>(rows) * k, -1), perm(span);
  std::iota(perm.begin(), perm.end(), 0);
  for (int t = 0; t < n; ++t) {
    std::shuffle(perm.begin(), perm.end(), gen);
    std::copy_n(perm.begin(), k, ids.begin() + static_cast<std::ptrdiff_t>(t) * k);
  }
  (void)E;
  return ids;
}

void check_plan(plan_rig& P, const std::vector<int>& ids, int n, const stream& st) {
  P.mem.poison();
  P.upload_ids(ids);
  P.set_tokens(n);
  nh::moe_build_plan(P.v, P.ntok.get(), st.s);
  st.sync();
  const int E = P.v.num_experts, k = P.v.top_k;
  const host_plan h = host_sort(ids, P.v.rows, E, k, n);
  const auto off = P.offsets();
  INFO("rows " << P.v.rows << " E " << E << " k " << k << " n " << n);
  REQUIRE(off == h.offsets);
  auto s = P.sorted();
  s.resize(static_cast<std::size_t>(h.offsets[E]));
  CHECK(s == h.sorted);
  CHECK(P.arow() == h.arow);
  // Per tile height, the expert of every m-tile: expert e's ceil(count / bm) tiles in turn.
  for (int kind = 0; kind < nh::kMoeTileKinds; ++kind) {
    const int bm = nh::kMoeTileRows[kind];
    std::vector<int> want;
    for (int e = 0; e < E; ++e)
      for (int t = 0; t < (h.offsets[e + 1] - h.offsets[e] + bm - 1) / bm; ++t) want.push_back(e);
    INFO("tile height " << bm);
    CHECK(want.size() <= nh::moe_tile_bound(P.R(), static_cast<std::size_t>(E), bm));
    CHECK(P.get(P.v.tile_expert[kind], want.size()) == want);
  }
}

// Float64 of the grouped GEMM from the bf16 operands: rows i < off[E].
std::vector<double> ref_gemm(const std::vector<bf16>& X, int ldx, bool gather, const std::vector<bf16>& W, int N,
                             int K, bool relu2, const std::vector<int>& off, const std::vector<int>& sorted) {
  const int E = static_cast<int>(off.size()) - 1;
  std::vector<double> Y(static_cast<std::size_t>(off[E]) * N);
  std::vector<double> a(K);
  for (int e = 0; e < E; ++e) {
    for (int i = off[e]; i < off[e + 1]; ++i) {
      const std::size_t src = gather ? static_cast<std::size_t>(sorted[i]) : static_cast<std::size_t>(i);
      for (int kk = 0; kk < K; ++kk) a[kk] = __bfloat162float(X[src * ldx + kk]);
      for (int nn = 0; nn < N; ++nn) {
        const bf16* w = W.data() + (static_cast<std::size_t>(e) * N + nn) * K;
        double s = 0.0;
        for (int kk = 0; kk < K; ++kk) s += a[kk] * static_cast<double>(__bfloat162float(w[kk]));
        if (relu2) s = s > 0 ? s * s : 0.0;
        Y[static_cast<std::size_t>(i) * N + nn] = s;
      }
    }
  }
  return Y;
}

// Per-element check of bf16 results against float64: |y - r| <= 1e-2 |r| + 1e-2 rms(r).
int count_bad(const std::vector<bf16>& Y, int ldy, const std::vector<double>& R, int rows, int N) {
  double ss = 0.0;
  for (double v : R) ss += v * v;
  const double rms = R.empty() ? 0.0 : std::sqrt(ss / R.size());
  int bad = 0;
  for (int i = 0; i < rows; ++i) {
    for (int n = 0; n < N; ++n) {
      const double y = __bfloat162float(Y[static_cast<std::size_t>(i) * ldy + n]);
      const double r = R[static_cast<std::size_t>(i) * N + n];
      if (!(std::fabs(y - r) <= 1e-2 * std::fabs(r) + 1e-2 * rms)) ++bad;
    }
  }
  return bad;
}

struct gemm_case {
  int rows, n, E, k, K, N;
  bool gather, relu2;
  int span = 0;      // experts drawn from [0, span)
  int pad_ld = 0;    // extra columns of ldx / ldy
};

void run_gemm_case(const gemm_case& c, std::mt19937& gen, const stream& st) {
  plan_rig P(c.rows, c.E, c.k);
  const auto ids = random_ids(c.rows, c.E, c.k, c.n, gen, c.span);
  P.upload_ids(ids);
  P.set_tokens(c.n);
  nh::moe_build_plan(P.v, P.ntok.get(), st.s);
  st.sync();
  const auto off = P.offsets();
  const auto sorted = P.sorted();
  const int R = c.rows * c.k;
  const int ldx = c.K + c.pad_ld, ldy = c.N + c.pad_ld;
  const int xrows = c.gather ? c.rows : R;
  const auto X = rand_bf16(static_cast<std::size_t>(xrows) * ldx, gen, 1.0, nullptr);
  const auto W = rand_bf16(static_cast<std::size_t>(c.E) * c.N * c.K, gen, 1.0 / std::sqrt(c.K), nullptr);
  dbuf<bf16> dx(X.size()), dw(W.size());
  dx.upload(X);
  dw.upload(W);
  const auto Rf = ref_gemm(X, ldx, c.gather, W, c.N, c.K, c.relu2, off, sorted);
  std::vector<bf16> first;
  for (auto path : {nh::moe_gemm_path::small_m, nh::moe_gemm_path::medium_m, nh::moe_gemm_path::large_m,
                    nh::moe_gemm_path::automatic, nh::moe_gemm_path::gemv}) {
    dbuf<bf16> dy(static_cast<std::size_t>(R) * ldy);
    dy.poison();
    nh::moe_grouped_gemm(dx.get(), ldx, c.gather, dw.get(), c.N, c.K, dy.get(), ldy, c.relu2, P.v, st.s, path);
    st.sync();
    const auto Y = dy.download();
    INFO("rows " << c.rows << " n " << c.n << " E " << c.E << " k " << c.k << " K " << c.K << " N " << c.N
                 << " gather " << c.gather << " relu2 " << c.relu2 << " path " << static_cast<int>(path));
    CHECK(count_bad(Y, ldy, Rf, off[c.E], c.N) == 0);
    // Rows past expert_offsets[E] and the padding columns are untouched.
    int touched = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(R); ++i) {
      for (int col = 0; col < ldy; ++col) {
        const bool mine = static_cast<int>(i) < off[c.E] && col < c.N;
        if (!mine && !is_poison(Y[i * ldy + col])) ++touched;
      }
    }
    CHECK(touched == 0);
    if (nh::moe_resolve_path(P.v, path) == nh::moe_gemm_path::gemv) {
      // The GEMV's own bits: deterministic (a second run is identical).
      dbuf<bf16> d2(Y.size());
      d2.poison();
      nh::moe_grouped_gemm(dx.get(), ldx, c.gather, dw.get(), c.N, c.K, d2.get(), ldy, c.relu2, P.v, st.s, path);
      st.sync();
      CHECK(std::memcmp(d2.download().data(), Y.data(), Y.size() * 2) == 0);
    } else if (first.empty()) {
      first = Y;
    } else {
      CHECK(std::memcmp(first.data(), Y.data(), Y.size() * 2) == 0);  // tensor-core paths: same bits
    }
  }
}

// The routed MoE chain on the GPU: route -> plan -> up (gather, relu2) -> down -> combine.
struct chain {
  int rows, E, k, D, F;
  plan_rig P;
  dbuf<float> logits, bias;
  dbuf<bf16> x, up, down, u, y, out;
  nh::moe_route_params p;
  chain(int rows_, int E_, int k_, int D_, int F_, const nh::moe_route_params& p_)
      : rows(rows_), E(E_), k(k_), D(D_), F(F_), P(rows_, E_, k_),
        logits(static_cast<std::size_t>(rows_) * E_), bias(E_),
        x(static_cast<std::size_t>(rows_) * D_), up(static_cast<std::size_t>(E_) * F_ * D_),
        down(static_cast<std::size_t>(E_) * D_ * F_), u(static_cast<std::size_t>(rows_) * k_ * F_),
        y(static_cast<std::size_t>(rows_) * k_ * D_), out(static_cast<std::size_t>(rows_) * D_), p(p_) {}
  void run(cudaStream_t s, nh::moe_gemm_path path = nh::moe_gemm_path::automatic, bool accumulate = false) {
    nh::moe_route(logits.get(), E, bias.get(), p, P.v, P.ntok.get(), s);
    nh::moe_build_plan(P.v, P.ntok.get(), s);
    nh::moe_grouped_gemm(x.get(), D, true, up.get(), F, D, u.get(), F, true, P.v, s, path);
    nh::moe_grouped_gemm(u.get(), F, false, down.get(), D, F, y.get(), D, false, P.v, s, path);
    nh::moe_combine(y.get(), D, P.v, out.get(), D, D, accumulate, P.ntok.get(), s);
  }
};

__global__ void hash_fill_bf16(bf16* p, std::size_t n, unsigned seed, float scale) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    p[i] = __float2bfloat16(scale * nh::hash_uniform(i, seed));
  }
}

void hash_fill(dbuf<bf16>& b, unsigned seed, float scale) {
  hash_fill_bf16<<<1024, 256>>>(b.get(), b.size(), seed, scale);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
}

}  // namespace

TEST_CASE("moe_route matches ref::moe_route on the same fp32 logits", "[moe]") {
  stream st;
  std::mt19937 gen(11);
  struct cfg {
    int rows, n;
    nh::moe_route_params p;
    bool bias;
    int ld_pad;
  };
  const std::vector<cfg> cfgs = {
      {37, 37, rp(8, 2), false, 0},           {64, 50, rp(16, 16), true, 3},
      {33, 20, rp(64, 4, 8, 4), true, 0},     {40, 40, rp(64, 6, 8, 3, false, 2.5f), true, 1},
      {70, 64, rp(128, 6), true, 0},          {70, 64, rp(128, 6, 1, 1, false, 1.0f), true, 0},
      {24, 24, rp(512, 22), true, 0},         {24, 17, rp(512, 22, 16, 8, true, 2.5f), true, 0},
      {9, 9, rp(1024, 32, 32, 4), true, 0},   {5, 5, rp(256, 8, 256 / 2, 7), false, 0},
      {1, 1, rp(128, 6), true, 0},            {130, 0, rp(32, 4), true, 0}};
  for (const cfg& c : cfgs) {
    plan_rig P(c.rows, c.p.num_experts, c.p.top_k);
    std::vector<float> bias;
    if (c.bias) {
      std::normal_distribution<float> d(0.0f, 0.3f);
      bias.resize(c.p.num_experts);
      for (auto& b : bias) b = d(gen);
    }
    const int ld = c.p.num_experts + c.ld_pad * 8;
    std::vector<float> L;
    random_logits(L, c.rows, ld, c.n, bias, c.p, gen);
    check_route(P, L, ld, c.n, bias, c.p, st);
  }
}

TEST_CASE("moe_route breaks exact ties by the lower expert index", "[moe]") {
  stream st;
  std::mt19937 gen(12);
  for (const auto& p : {rp(16, 4), rp(64, 6), rp(64, 6, 8, 2), rp(512, 22), rp(512, 22, 8, 3)}) {
    const int E = p.num_experts, rows = 6;
    std::vector<float> L(static_cast<std::size_t>(rows) * E), bias(E, 0.0f);
    std::uniform_int_distribution<int> pick(0, E - 1);
    for (int t = 0; t < rows; ++t) {
      float* l = L.data() + static_cast<std::size_t>(t) * E;
      switch (t) {
        case 0:  // all equal: experts 0..k-1
          for (int e = 0; e < E; ++e) l[e] = 0.25f;
          break;
        case 1:  // few levels, many ties at every level
          for (int e = 0; e < E; ++e) l[e] = 0.5f * static_cast<float>(e % 3);
          break;
        case 2:  // descending blocks of four equal values in [-3, 3], reversed index order
          for (int e = 0; e < E; ++e) l[e] = -3.0f + static_cast<float>((E - 1 - e) / 4) * (24.0f / E);
          break;
        default: {  // well separated random values with planted equal pairs at the top
          std::normal_distribution<float> d(0.0f, 1.0f);
          for (int tries = 0;; ++tries) {
            for (int e = 0; e < E; ++e) l[e] = d(gen);
            for (int r = 0; r < 3; ++r) {
              const int a = pick(gen), b = pick(gen);
              l[a] = l[b] = 3.5f + 0.25f * r;
            }
            if (well_separated(l, bias.data(), p)) break;
            REQUIRE(tries < 1000);
          }
        }
      }
    }
    plan_rig P(rows, E, p.top_k);
    for (int t = 0; t < rows; ++t) REQUIRE(well_separated(L.data() + static_cast<std::size_t>(t) * E, bias.data(), p));
    check_route(P, L, E, rows, bias, p, st);
    // All-equal row: the first k experts, equal weights.
    const auto ids = P.ids();
    for (int j = 0; j < p.top_k; ++j) CHECK(ids[j] == j);
  }
}

TEST_CASE("moe_build_plan equals a host stable counting sort", "[moe]") {
  stream st;
  std::mt19937 gen(21);
  {
    plan_rig P(256, 128, 6);
    check_plan(P, random_ids(256, 128, 6, 200, gen), 200, st);
    check_plan(P, random_ids(256, 128, 6, 256, gen), 256, st);
    check_plan(P, random_ids(256, 128, 6, 1, gen), 1, st);
    check_plan(P, random_ids(256, 128, 6, 0, gen), 0, st);
    check_plan(P, random_ids(256, 128, 6, 77, gen, 9), 77, st);  // 119 experts get no row
  }
  {
    plan_rig P(1, 128, 6);
    check_plan(P, random_ids(1, 128, 6, 1, gen), 1, st);
  }
  {
    plan_rig P(8192, 512, 22);
    check_plan(P, random_ids(8192, 512, 22, 8192, gen), 8192, st);
    check_plan(P, random_ids(8192, 512, 22, 5000, gen, 30), 5000, st);
  }
  {
    plan_rig P(4096, 1024, 8);
    check_plan(P, random_ids(4096, 1024, 8, 4000, gen), 4000, st);
  }
  {
    plan_rig P(300, 64, 1);  // every row on one expert
    std::vector<int> ids(300, 5);
    check_plan(P, ids, 300, st);
    check_plan(P, ids, 123, st);
  }
}

TEST_CASE("moe_grouped_gemm matches float64 of the bf16 operands", "[moe]") {
  stream st;
  std::mt19937 gen(31);
  const std::vector<gemm_case> cases = {
      {16, 16, 8, 2, 32, 64, true, true},         {16, 11, 8, 2, 32, 64, false, false},
      {40, 40, 8, 2, 32, 64, true, false, 0, 8},  {40, 33, 8, 2, 32, 64, false, true, 0, 16},
      {64, 64, 4, 1, 32, 64, true, true, 1},      {300, 300, 4, 2, 40, 72, true, true},  // K tail, tiles across experts
      {200, 150, 16, 3, 136, 200, false, false},  {1, 1, 128, 6, 64, 64, true, true},
      {150, 140, 8, 2, 2688, 1856, true, true},   {150, 140, 8, 2, 1856, 2688, false, false},  // Nano-30B
      {300, 300, 8, 2, 256, 128, true, true, 0, 8},
      {1, 1, 128, 6, 2688, 1856, true, true},     {8, 7, 128, 6, 1856, 2688, false, false}};  // Nano-30B decode
  for (const gemm_case& c : cases) run_gemm_case(c, gen, st);
}

TEST_CASE("moe_combine sums the weighted expert rows in fp32", "[moe]") {
  stream st;
  std::mt19937 gen(41);
  for (int accumulate = 0; accumulate < 2; ++accumulate) {
    const int rows = 50, n = 37, E = 16, k = 4, Wd = 136, ldy = 144, ldo = 152;
    plan_rig P(rows, E, k);
    const auto ids = random_ids(rows, E, k, n, gen);
    P.upload_ids(ids);
    P.set_tokens(n);
    nh::moe_build_plan(P.v, P.ntok.get(), st.s);
    std::uniform_real_distribution<float> uw(0.0f, 1.0f);
    std::vector<float> w(static_cast<std::size_t>(rows) * k, 0.0f);
    for (int a = 0; a < n * k; ++a) w[a] = uw(gen);
    P.upload_weights(w);
    st.sync();
    const auto arow = P.arow();
    const auto Y = rand_bf16(static_cast<std::size_t>(rows) * k * ldy, gen, 1.0, nullptr);
    const auto O = rand_bf16(static_cast<std::size_t>(rows) * ldo, gen, 1.0, nullptr);
    dbuf<bf16> dy(Y.size()), dout(O.size());
    dy.upload(Y);
    dout.upload(O);
    nh::moe_combine(dy.get(), ldy, P.v, dout.get(), ldo, Wd, accumulate != 0, P.ntok.get(), st.s);
    st.sync();
    const auto got = dout.download();
    int bad = 0, padding_bad = 0;
    for (int t = 0; t < rows; ++t) {
      for (int c = 0; c < ldo; ++c) {
        const std::size_t i = static_cast<std::size_t>(t) * ldo + c;
        if (c >= Wd) {
          if (bits(got[i]) != bits(O[i])) ++padding_bad;
          continue;
        }
        if (t >= n) {
          const float want = accumulate ? __bfloat162float(O[i]) : 0.0f;
          if (bits(got[i]) != bits(__float2bfloat16(want))) ++padding_bad;
          continue;
        }
        double s = accumulate ? __bfloat162float(O[i]) : 0.0;
        for (int j = 0; j < k; ++j) {
          s += static_cast<double>(w[t * k + j]) * __bfloat162float(Y[static_cast<std::size_t>(arow[t * k + j]) * ldy + c]);
        }
        if (!(std::fabs(__bfloat162float(got[i]) - s) <= 4e-3 * std::fabs(s) + 1e-5)) ++bad;
      }
    }
    INFO("accumulate " << accumulate);
    CHECK(bad == 0);
    CHECK(padding_bad == 0);
  }
}

TEST_CASE("moe chain: a token's bits do not depend on the rows bound, other rows or the GEMM path", "[moe]") {
  stream st;
  std::mt19937 gen(51);
  const int E = 32, k = 4, D = 256, F = 192, T = 24;
  const auto p = rp(E, k);
  std::vector<float> bias(E), L0;
  std::normal_distribution<float> d(0.0f, 0.3f);
  for (auto& b : bias) b = d(gen);
  random_logits(L0, T, E, T, bias, p, gen);
  const auto X0 = rand_bf16(static_cast<std::size_t>(T) * D, gen, 1.0, nullptr);
  const auto Wu = rand_bf16(static_cast<std::size_t>(E) * F * D, gen, 1.0 / 16, nullptr);
  const auto Wd = rand_bf16(static_cast<std::size_t>(E) * D * F, gen, 1.0 / 14, nullptr);
  // Configurations: (rows bound, real tokens); the first T real tokens are the same tokens,
  // extra real tokens are unrelated random ones.
  struct cfg {
    int rows, n;
    nh::moe_gemm_path path;
  };
  const std::vector<cfg> cfgs = {{T, T, nh::moe_gemm_path::automatic},
                                 {T, T, nh::moe_gemm_path::large_m},
                                 {256, T, nh::moe_gemm_path::automatic},
                                 {256, 200, nh::moe_gemm_path::automatic},
                                 {256, 200, nh::moe_gemm_path::small_m},
                                 {256, 200, nh::moe_gemm_path::medium_m},
                                 {1024, 1000, nh::moe_gemm_path::automatic}};
  std::vector<bf16> first;
  for (const cfg& c : cfgs) {
    chain C(c.rows, E, k, D, F, p);
    std::vector<float> L;
    random_logits(L, c.rows, E, c.n, bias, p, gen);
    std::copy(L0.begin(), L0.end(), L.begin());
    auto X = rand_bf16(static_cast<std::size_t>(c.rows) * D, gen, 1.0, nullptr);
    std::copy(X0.begin(), X0.end(), X.begin());
    C.logits.upload(L);
    C.bias.upload(bias);
    C.x.upload(X);
    C.up.upload(Wu);
    C.down.upload(Wd);
    C.P.set_tokens(c.n);
    C.out.poison();
    C.run(st.s, c.path);
    st.sync();
    auto out = C.out.download();
    out.resize(static_cast<std::size_t>(T) * D);
    INFO("rows " << c.rows << " n " << c.n << " path " << static_cast<int>(c.path));
    if (first.empty()) {
      first = out;
    } else {
      CHECK(std::memcmp(first.data(), out.data(), out.size() * 2) == 0);
    }
  }
}

TEST_CASE("moe chain replays from a captured graph with new logits and token counts", "[moe]") {
  stream st;
  std::mt19937 gen(61);
  const int rows = 96, E = 64, k = 6, D = 128, F = 64;
  const auto p = rp(E, k, 8, 4, true, 2.0f);
  chain C(rows, E, k, D, F, p);
  std::vector<float> bias(E);
  std::normal_distribution<float> d(0.0f, 0.3f);
  for (auto& b : bias) b = d(gen);
  C.bias.upload(bias);
  C.up.upload(rand_bf16(static_cast<std::size_t>(E) * F * D, gen, 1.0 / 11, nullptr));
  C.down.upload(rand_bf16(static_cast<std::size_t>(E) * D * F, gen, 1.0 / 8, nullptr));
  C.P.set_tokens(rows);
  for (auto path : {nh::moe_gemm_path::automatic, nh::moe_gemm_path::gemv}) {
  const captured g(st.s, [&](cudaStream_t s) { C.run(s, path); });
  for (int n : {96, 1, 40, 0, 77}) {
    std::vector<float> L;
    random_logits(L, rows, E, n, bias, p, gen);
    C.logits.upload(L);
    C.x.upload(rand_bf16(static_cast<std::size_t>(rows) * D, gen, 1.0, nullptr));
    C.P.set_tokens(n);
    C.out.poison();
    g.replay();
    const auto gout = C.out.download();
    const auto gids = C.P.ids();
    const auto goff = C.P.offsets();
    const auto gu = C.u.download();
    C.out.poison();
    C.run(st.s, path);
    st.sync();
    const auto eout = C.out.download();
    INFO("num_tokens " << n << " path " << static_cast<int>(path));
    CHECK(gids == C.P.ids());
    CHECK(goff == C.P.offsets());
    CHECK(std::memcmp(gout.data(), eout.data(), eout.size() * 2) == 0);
    const auto eu = C.u.download();
    CHECK(std::memcmp(gu.data(), eu.data(), static_cast<std::size_t>(goff[E]) * F * 2) == 0);
    // Padding rows are zeroed (accumulate off).
    int nz = 0;
    for (std::size_t i = static_cast<std::size_t>(n) * D; i < eout.size(); ++i) nz += bits(eout[i]) != 0;
    CHECK(nz == 0);
  }
  }
}

TEST_CASE("moe chain route -> plan -> up -> down -> combine matches float64", "[moe]") {
  stream st;
  std::mt19937 gen(71);
  struct cfg {
    int rows, n, E, k, D, F;
    nh::moe_route_params p;
  };
  // The last two at decode sizes (rows * k <= 2 E, where the decode GEMV would apply).
  for (const cfg& c : {cfg{16, 16, 8, 2, 32, 64, rp(8, 2)}, cfg{80, 70, 128, 6, 256, 192, rp(128, 6, 1, 1, true, 2.5f)},
                       cfg{40, 40, 64, 8, 64, 128, rp(64, 8, 8, 4, false, 1.0f)},
                       cfg{4, 3, 128, 6, 256, 192, rp(128, 6, 1, 1, true, 2.5f)}, cfg{8, 8, 16, 2, 64, 32, rp(16, 2)}}) {
    chain C(c.rows, c.E, c.k, c.D, c.F, c.p);
    INFO("path " << static_cast<int>(nh::moe_resolve_path(C.P.v)));
    std::vector<float> bias(c.E), L;
    std::normal_distribution<float> d(0.0f, 0.3f);
    for (auto& b : bias) b = d(gen);
    random_logits(L, c.rows, c.E, c.n, bias, c.p, gen);
    const auto X = rand_bf16(static_cast<std::size_t>(c.rows) * c.D, gen, 1.0, nullptr);
    const auto Wu = rand_bf16(static_cast<std::size_t>(c.E) * c.F * c.D, gen, 1.0 / std::sqrt(c.D), nullptr);
    const auto Wd = rand_bf16(static_cast<std::size_t>(c.E) * c.D * c.F, gen, 1.0 / std::sqrt(c.F), nullptr);
    C.logits.upload(L);
    C.bias.upload(bias);
    C.x.upload(X);
    C.up.upload(Wu);
    C.down.upload(Wd);
    C.P.set_tokens(c.n);
    C.out.poison();
    C.run(st.s);
    st.sync();
    const auto out = C.out.download();
    // Float64 chain from the same bf16 operands and the reference routing.
    const route_result r = ref_route(L, c.E, c.n, bias, c.p);
    std::vector<double> want(static_cast<std::size_t>(c.n) * c.D, 0.0), got(want.size()), u(c.F);
    for (int t = 0; t < c.n; ++t) {
      for (int j = 0; j < c.k; ++j) {
        const int e = r.ids[t * c.k + j];
        for (int f = 0; f < c.F; ++f) {
          double s = 0.0;
          for (int i = 0; i < c.D; ++i)
            s += static_cast<double>(__bfloat162float(X[static_cast<std::size_t>(t) * c.D + i])) *
                 __bfloat162float(Wu[(static_cast<std::size_t>(e) * c.F + f) * c.D + i]);
          u[f] = s > 0 ? s * s : 0.0;
        }
        for (int o = 0; o < c.D; ++o) {
          double s = 0.0;
          for (int f = 0; f < c.F; ++f) s += u[f] * __bfloat162float(Wd[(static_cast<std::size_t>(e) * c.D + o) * c.F + f]);
          want[static_cast<std::size_t>(t) * c.D + o] += r.w[t * c.k + j] * s;
        }
      }
    }
    for (std::size_t i = 0; i < got.size(); ++i) got[i] = __bfloat162float(out[i]);
    // bf16 rounding of the intermediate u, of y and of out: ~3 roundings of 2^-9 relative,
    // averaged over F terms: a relative norm error well under 1e-2.
    const double err = rel_err(got, want);
    INFO("E " << c.E << " k " << c.k << " D " << c.D << " F " << c.F << " rel err " << err);
    CHECK(err < 1e-2);
    int nz = 0;
    for (std::size_t i = static_cast<std::size_t>(c.n) * c.D; i < out.size(); ++i) nz += bits(out[i]) != 0;
    CHECK(nz == 0);
  }
}

TEST_CASE("moe kernels reject bad arguments with config_error", "[moe]") {
  stream st;
  plan_rig P(8, 16, 4);
  dbuf<float> L(8 * 16);
  dbuf<bf16> x(8 * 64), w(16 * 64 * 64), y(32 * 64);
  CHECK_THROWS_AS(nh::moe_route(L.get(), 16, nullptr, rp(16, 5), P.v, P.ntok.get(), st.s), piecewise::config_error);
  CHECK_THROWS_AS(nh::moe_route(L.get(), 8, nullptr, rp(16, 4), P.v, P.ntok.get(), st.s), piecewise::config_error);
  CHECK_THROWS_AS(nh::moe_route(L.get(), 16, nullptr, rp(16, 4, 3, 1), P.v, P.ntok.get(), st.s),
                  piecewise::config_error);
  CHECK_THROWS_AS(nh::moe_route(L.get(), 16, nullptr, rp(16, 5, 4, 1), P.v, P.ntok.get(), st.s),
                  piecewise::config_error);  // k 5 > the 4 experts of the one kept group
  CHECK_THROWS_AS(nh::moe_route(L.get(), 16, nullptr, rp(16, 4, 16, 4), P.v, P.ntok.get(), st.s),
                  piecewise::config_error);  // one expert a group
  CHECK_THROWS_AS(nh::moe_grouped_gemm(x.get(), 64, true, w.get(), 64, 60, y.get(), 64, true, P.v, st.s),
                  piecewise::config_error);
  CHECK_THROWS_AS(nh::moe_grouped_gemm(x.get(), 32, true, w.get(), 64, 64, y.get(), 64, true, P.v, st.s),
                  piecewise::config_error);
  CHECK_THROWS_AS(nh::moe_combine(y.get(), 64, P.v, x.get(), 64, 12, false, P.ntok.get(), st.s),
                  piecewise::config_error);
  CHECK_THROWS_AS(nh::moe_plan_bytes(8, 2000, 4), piecewise::config_error);
}

TEST_CASE("moe kernels timing at Nano-30B shapes in captured graphs", "[.][bench]") {
  // Each graph holds `inner` copies of the work (back to back, as in a model step), so the
  // per-copy time excludes most of the graph launch overhead.
  const int E = 128, k = 6, D = 2688, F = 1856, reps = 10, inner = 10;
  std::mt19937 gen(5);
  stream st;
  nh::gemm_engine eng;
  cudaEvent_t e0, e1;
  PIECEWISE_CUDA_TRY(cudaEventCreate(&e0));
  PIECEWISE_CUDA_TRY(cudaEventCreate(&e1));
  const auto time_graph = [&](const captured& g) {
    for (int i = 0; i < 3; ++i) g.launch(st.s);
    PIECEWISE_CUDA_TRY(cudaEventRecord(e0, st.s));
    for (int i = 0; i < reps; ++i) g.launch(st.s);
    PIECEWISE_CUDA_TRY(cudaEventRecord(e1, st.s));
    PIECEWISE_CUDA_TRY(cudaEventSynchronize(e1));
    float ms = 0;
    PIECEWISE_CUDA_TRY(cudaEventElapsedTime(&ms, e0, e1));
    return 1000.0 * ms / (reps * inner);
  };
  const auto capture = [&](const std::function<void(cudaStream_t)>& fn) {
    return std::make_unique<captured>(st.s, [&](cudaStream_t s) {
      for (int i = 0; i < inner; ++i) fn(s);
    });
  };
  const auto p = rp(E, k);
  const int maxT = 4096;
  chain C(maxT, E, k, D, F, p);
  hash_fill(C.up, 1, 0.03f);
  hash_fill(C.down, 2, 0.03f);
  hash_fill(C.x, 3, 1.0f);
  hash_fill(C.y, 4, 1.0f);
  std::vector<float> bias(E, 0.0f), L(static_cast<std::size_t>(maxT) * E);
  std::normal_distribution<float> d(0.0f, 2.0f);
  for (auto& v : L) v = d(gen);
  C.logits.upload(L);
  C.bias.upload(bias);
  std::printf("MoE at Nano-30B shapes (E %d, k %d, D %d, F %d), random routing, graphs of %d copies, mean of %d replays\n",
              E, k, D, F, inner, reps);
  for (int T : {1, 8, 64, 256, 4096}) {
    plan_rig P(T, E, k);
    P.set_tokens(T);
    const auto run_route = [&](cudaStream_t s) {
      nh::moe_route(C.logits.get(), E, C.bias.get(), p, P.v, P.ntok.get(), s);
      nh::moe_build_plan(P.v, P.ntok.get(), s);
    };
    run_route(st.s);
    st.sync();
    const auto ids = P.ids();
    std::set<int> distinct(ids.begin(), ids.end());
    const double wbytes = static_cast<double>(distinct.size()) * F * D * 2;
    const double flops = 2.0 * T * k * static_cast<double>(F) * D;
    const auto g_route = capture(run_route);
    const auto g_comb = capture([&](cudaStream_t s) {
      nh::moe_combine(C.y.get(), D, P.v, C.out.get(), D, D, false, P.ntok.get(), s);
    });
    // The same FLOPs as one dense GEMM [T * k, D] x [D, F] (C.y has T * k rows of width D).
    eng.prepare(T * k, D, F);
    const auto g_dense = capture([&](cudaStream_t s) { eng.linear(C.y.get(), C.up.get(), C.u.get(), T * k, D, F, s); });
    const double t_route = time_graph(*g_route), t_comb = time_graph(*g_comb), t_dense = time_graph(*g_dense);
    std::printf("T=%5d  experts read %3zu  route+plan %7.2f us  combine %7.2f us  cuBLASLt dense [%d x %d x %d] %8.2f us "
                "%6.1f TFLOP/s\n",
                T, distinct.size() - (distinct.count(-1) ? 1 : 0), t_route, t_comb, T * k, D, F, t_dense,
                flops / t_dense * 1e-6);
    for (auto path : {nh::moe_gemm_path::automatic, nh::moe_gemm_path::small_m, nh::moe_gemm_path::medium_m,
                      nh::moe_gemm_path::large_m, nh::moe_gemm_path::gemv}) {
      const auto g_up = capture([&](cudaStream_t s) {
        nh::moe_grouped_gemm(C.x.get(), D, true, C.up.get(), F, D, C.u.get(), F, true, P.v, s, path);
      });
      const auto g_down = capture([&](cudaStream_t s) {
        nh::moe_grouped_gemm(C.u.get(), F, false, C.down.get(), D, F, C.y.get(), D, false, P.v, s, path);
      });
      const double t_up = time_graph(*g_up), t_down = time_graph(*g_down);
      static const char* names[] = {"auto", "small", "medium", "large", "gemv"};
      std::printf("   %-6s up %8.2f us (%6.1f TFLOP/s %6.0f GB/s)  down %8.2f us (%6.1f TFLOP/s %6.0f GB/s)\n",
                  names[static_cast<int>(path)], t_up, flops / t_up * 1e-6, wbytes / t_up * 1e-3, t_down,
                  flops / t_down * 1e-6, wbytes / t_down * 1e-3);
    }
  }
  std::fflush(stdout);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}
