// GPU tests: KV-cache append, causal GQA prefill attention (packed sequences, cached
// prefixes, chunked prefill) and split-context decode attention against the float64
// reference, eagerly and replayed from captured graphs with new metadata.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "kernel_test_util.cuh"
#include "kernels/attention_decode.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/kv_cache.cuh"
#include "reference/reference.hpp"

using namespace nh_test;
namespace nh = nemotron_h;

namespace {

constexpr double kTol = 1e-2;  // bf16 q/k/v/out, fp32 softmax, bf16 P in the PV product
constexpr int kHD = 128;

// One attention layer's KV cache on the device plus a host mirror of the written rows.
struct kv_env {
  int Hq, Hkv, num_slots, max_context;
  dbuf<bf16> buf;
  nh::kv_cache_view cache;
  std::vector<std::vector<double>> hk, hv;  // [slot] -> [pos * row]
  kv_env(int hq, int hkv, int slots, int maxctx)
      : Hq(hq), Hkv(hkv), num_slots(slots), max_context(maxctx),
        buf(nh::kv_cache_layer_bytes(slots, maxctx, hkv, kHD) / sizeof(bf16)) {
    buf.poison();  // unwritten cache rows are NaN: reading them would fail the test
    cache = nh::make_kv_cache_view(buf.get(), slots, maxctx, hkv, kHD);
    hk.assign(slots, std::vector<double>(static_cast<std::size_t>(maxctx) * row()));
    hv = hk;
  }
  std::size_t row() const { return static_cast<std::size_t>(Hkv) * kHD; }
  // Writes random K/V for positions [0, ctx) of `slot`.
  void fill_prefix(int slot, int ctx, std::mt19937& gen) {
    if (ctx == 0) return;
    std::vector<double> k, v;
    auto hk_ = rand_bf16(ctx * row(), gen, 1.0, &k);
    auto hv_ = rand_bf16(ctx * row(), gen, 1.0, &v);
    PIECEWISE_CUDA_TRY(cudaMemcpy(cache.k + cache.offset(slot, 0, 0), hk_.data(),
                                  hk_.size() * sizeof(bf16), cudaMemcpyHostToDevice));
    PIECEWISE_CUDA_TRY(cudaMemcpy(cache.v + cache.offset(slot, 0, 0), hv_.data(),
                                  hv_.size() * sizeof(bf16), cudaMemcpyHostToDevice));
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());  // the DMAs may still be in flight (see dbuf::upload)
    std::copy(k.begin(), k.end(), hk[slot].begin());
    std::copy(v.begin(), v.end(), hv[slot].begin());
  }
};

// Projection outputs: either one fused qkv buffer (row stride (Hq+2Hkv)*hd) or separate.
struct qkv_io {
  bool fused;
  int Hq, Hkv, padded;
  dbuf<bf16> a, b, c, out;
  const bf16 *q = nullptr, *k = nullptr, *v = nullptr;
  int ldq = 0, ldkv = 0;
  qkv_io(bool f, int hq, int hkv, int pad) : fused(f), Hq(hq), Hkv(hkv), padded(pad) {
    const std::size_t qw = static_cast<std::size_t>(hq) * kHD, kw = static_cast<std::size_t>(hkv) * kHD;
    if (fused) {
      a = dbuf<bf16>(pad * (qw + 2 * kw));
      q = a.get();
      k = q + qw;
      v = k + kw;
      ldq = ldkv = static_cast<int>(qw + 2 * kw);
    } else {
      a = dbuf<bf16>(pad * qw);
      b = dbuf<bf16>(pad * kw);
      c = dbuf<bf16>(pad * kw);
      q = a.get();
      k = b.get();
      v = c.get();
      ldq = static_cast<int>(qw);
      ldkv = static_cast<int>(kw);
    }
    out = dbuf<bf16>(pad * qw);
  }
  // Random q/k/v for all padded rows; returns host doubles [padded][Hq*hd] and [padded][Hkv*hd].
  void randomize(std::mt19937& gen, std::vector<double>& hq, std::vector<double>& hk,
                 std::vector<double>& hv) {
    const std::size_t qw = static_cast<std::size_t>(Hq) * kHD, kw = static_cast<std::size_t>(Hkv) * kHD;
    hq.resize(padded * qw);
    hk.resize(padded * kw);
    hv.resize(padded * kw);
    if (fused) {
      std::vector<double> all;
      a.upload(rand_bf16(a.size(), gen, 1.0, &all));
      const std::size_t w = qw + 2 * kw;
      for (int t = 0; t < padded; ++t) {
        std::copy_n(all.begin() + t * w, qw, hq.begin() + t * qw);
        std::copy_n(all.begin() + t * w + qw, kw, hk.begin() + t * kw);
        std::copy_n(all.begin() + t * w + qw + kw, kw, hv.begin() + t * kw);
      }
    } else {
      a.upload(rand_bf16(a.size(), gen, 1.0, &hq));
      b.upload(rand_bf16(b.size(), gen, 1.0, &hk));
      c.upload(rand_bf16(c.size(), gen, 1.0, &hv));
    }
  }
};

struct step_result {
  double err;         // rel err of all compared rows vs the float64 reference
  bool pad_untouched;  // rows not compared are still poison
  bool cache_ok;       // new rows written to the right cache positions, bit exact
  std::vector<double> out;  // compared rows, in order
};

// Runs one attention step: writes metadata + prefixes + inputs, poisons the output, calls
// `launch`, then checks. decode: only the last token of each sequence is compared.
step_result run_step(kv_env& env, batch_buffers& bb, qkv_io& io, const std::vector<int>& lens,
                     const std::vector<int>& ctxs, const std::vector<int>& slots, bool decode,
                     bool fill_prefixes, std::mt19937& gen,
                     const std::function<void(cudaStream_t)>& launch, stream& st) {
  bb.update(lens, ctxs, slots);
  if (fill_prefixes)
    for (std::size_t s = 0; s < lens.size(); ++s) env.fill_prefix(slots[s], ctxs[s], gen);
  std::vector<double> hq, hk, hv;
  io.randomize(gen, hq, hk, hv);
  io.out.poison();
  launch(st.s);
  st.sync();
  const auto out = io.out.download();
  const int Hq = env.Hq, Hkv = env.Hkv;
  const std::size_t qw = static_cast<std::size_t>(Hq) * kHD, row = env.row();
  step_result r{0.0, true, true, {}};
  std::vector<double> want_all;
  std::vector<char> compared(io.padded, 0);
  for (std::size_t s = 0; s < lens.size(); ++s) {
    const int len = lens[s], ctx = ctxs[s], slot = slots[s], t0 = bb.h_cu[s];
    if (len == 0) continue;
    const int total = ctx + len;
    // Mirror: append the new rows.
    for (int i = 0; i < len; ++i) {
      std::copy_n(hk.begin() + (t0 + i) * row, row, env.hk[slot].begin() + (ctx + i) * row);
      std::copy_n(hv.begin() + (t0 + i) * row, row, env.hv[slot].begin() + (ctx + i) * row);
    }
    const int q_first = decode ? len - 1 : 0;
    const int Tq = len - q_first;
    std::vector<double> want(static_cast<std::size_t>(Tq) * qw);
    nh::ref::attention(hq.data() + (t0 + q_first) * qw, env.hk[slot].data(), env.hv[slot].data(),
                       want.data(), Tq, ctx + q_first + Tq, Hq, Hkv, kHD);
    (void)total;
    want_all.insert(want_all.end(), want.begin(), want.end());
    for (int i = q_first; i < len; ++i) {
      compared[t0 + i] = 1;
      for (std::size_t c = 0; c < qw; ++c) r.out.push_back(__bfloat162float(out[(t0 + i) * qw + c]));
    }
    // Cache rows of the new tokens, bit exact.
    std::vector<bf16> kc(len * row), vc(len * row);
    PIECEWISE_CUDA_TRY(cudaMemcpy(kc.data(), env.cache.k + env.cache.offset(slot, ctx, 0),
                                  kc.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    PIECEWISE_CUDA_TRY(cudaMemcpy(vc.data(), env.cache.v + env.cache.offset(slot, ctx, 0),
                                  vc.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    for (std::size_t i = 0; i < kc.size(); ++i) {
      r.cache_ok = r.cache_ok && __bfloat162float(kc[i]) == hk[t0 * row + i] &&
                   __bfloat162float(vc[i]) == hv[t0 * row + i];
    }
  }
  for (int t = 0; t < io.padded; ++t)
    if (!compared[t])
      for (std::size_t c = 0; c < qw; ++c) r.pad_untouched = r.pad_untouched && is_poison(out[t * qw + c]);
  r.err = rel_err(r.out, want_all);
  return r;
}

std::function<void(cudaStream_t)> prefill_launch(kv_env& env, batch_buffers& bb, qkv_io& io,
                                                 nh::prefill_options opt = {}) {
  return [&env, &bb, &io, opt](cudaStream_t s) {
    nh::attention_prefill(io.q, io.ldq, io.k, io.v, io.ldkv, env.cache, bb.view, env.Hq,
                          io.out.get(), env.Hq * kHD, s, opt);
  };
}

// The prefill kernels this device runs: the portable mma.sync kernel everywhere, plus the
// sm_90a wgmma kernel (ring depths, ping-pong, persistent grid) on compute capability 9.0.
struct prefill_variant {
  const char* name;
  nh::prefill_options opt;
};
bool device_is_cc90() {
  int dev = 0, major = 0, minor = 0;
  PIECEWISE_CUDA_TRY(cudaGetDevice(&dev));
  PIECEWISE_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  PIECEWISE_CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  return major == 9 && minor == 0;
}
std::vector<prefill_variant> prefill_variants() {
  std::vector<prefill_variant> v = {{"mma_sync", {nh::prefill_kernel::mma_sync, 0, -1, -1}}};
  if (device_is_cc90()) {
    const auto wg = nh::prefill_kernel::wgmma;
    v.push_back({"wgmma/2 stages", {wg, 2, 0, 0}});
    v.push_back({"wgmma/3 stages", {wg, 3, 0, 0}});
    v.push_back({"wgmma/3 stages/ping-pong", {wg, 3, 1, 0}});
    v.push_back({"wgmma/2 stages/persistent", {wg, 2, 0, 1}});
    v.push_back({"wgmma/3 stages/persistent", {wg, 3, 0, 1}});
    v.push_back({"wgmma/3 stages/ping-pong/persistent", {wg, 3, 1, 1}});
  } else {
    WARN("not a compute capability 9.0 device: the wgmma prefill kernel is not tested here");
  }
  // NH_TEST_PREFILL_VARIANT=<substring> keeps only the matching variants (e.g. to run one
  // under compute-sanitizer).
  if (const char* only = std::getenv("NH_TEST_PREFILL_VARIANT"); only != nullptr && *only != 0) {
    v.erase(std::remove_if(v.begin(), v.end(),
                           [&](const prefill_variant& x) { return std::strstr(x.name, only) == nullptr; }),
            v.end());
    WARN("prefill variants restricted to those matching '" << only << "': " << v.size());
  }
  return v;
}

}  // namespace

TEST_CASE("prefill attention: packed sequences with and without cached prefixes",
          "[dense][attention][prefill]") {
  struct pcase {
    int Hq, Hkv;
    std::vector<int> lens, ctxs, slots;
  };
  const std::vector<pcase> cases = {
      {4, 2, {1, 63, 64, 65, 300}, {0, 0, 0, 0, 0}, {0, 1, 2, 3, 4}},
      {4, 2, {1, 63, 64, 65, 300}, {5, 0, 64, 100, 1}, {4, 2, 0, 1, 3}},
      {8, 8, {130, 7}, {0, 200}, {1, 0}},
      {40, 8, {1, 65, 200}, {0, 37, 128}, {2, 0, 1}},  // Nemotron-H-Nano-9B-v2 heads
      // Several 128-key tiles (the wgmma K/V ring wraps), tile-edge lengths and prefixes.
      {8, 2, {1000, 129, 128, 127}, {0, 300, 0, 1}, {3, 0, 1, 2}},
      {16, 4, {513, 256}, {255, 640}, {1, 4}},
      // Nemotron-3 Nano-30B / Super heads (ratio 16) and Ultra's (ratio 32).
      {32, 2, {300, 1, 129}, {0, 77, 200}, {2, 0, 1}},
      {64, 2, {257, 64}, {130, 0}, {1, 3}},
      {10, 2, {190}, {66}, {4}},  // ratio 5 with few KV heads
  };
  for (const auto& var : prefill_variants())
  for (const auto& c : cases) {
    int T = 0, maxlen = 0, maxtot = 0;
    for (std::size_t i = 0; i < c.lens.size(); ++i) {
      T += c.lens[i];
      maxlen = std::max(maxlen, c.lens[i]);
      maxtot = std::max(maxtot, c.lens[i] + c.ctxs[i]);
    }
    CAPTURE(var.name, c.Hq, c.Hkv, c.lens, c.ctxs);
    std::mt19937 gen(1000 + T + c.Hq);
    kv_env env(c.Hq, c.Hkv, 5, maxtot + 3);
    batch_buffers bb(static_cast<int>(c.lens.size()) + 1, T + 5, maxlen);  // spare seq + padding
    qkv_io io(true, c.Hq, c.Hkv, T + 5);
    stream st;
    auto r = run_step(env, bb, io, c.lens, c.ctxs, c.slots, false, true, gen,
                      prefill_launch(env, bb, io, var.opt), st);
    CHECK(r.err < kTol);
    CHECK(r.pad_untouched);
    CHECK(r.cache_ok);
    WARN("prefill " << var.name << " Hq=" << c.Hq << " Hkv=" << c.Hkv << " rel err " << r.err);
  }
}

TEST_CASE("prefill over a cached prefix plus new tokens equals attention over the whole sequence",
          "[dense][attention][prefill]") {
  for (const auto& var : prefill_variants()) {
  CAPTURE(var.name);
  const nh::prefill_options opt = var.opt;
  const int Hq = 40, Hkv = 8, T = 300;
  std::mt19937 gen(77);
  kv_env env(Hq, Hkv, 2, T);
  stream st;
  // q/k/v of the whole sequence once.
  qkv_io whole(false, Hq, Hkv, T);
  std::vector<double> hq, hk, hv;
  whole.randomize(gen, hq, hk, hv);
  batch_buffers bb(1, T, T);
  bb.update({T}, {0}, {0});
  whole.out.poison();
  nh::attention_prefill(whole.q, whole.ldq, whole.k, whole.v, whole.ldkv, env.cache, bb.view, Hq,
                        whole.out.get(), Hq * kHD, st.s, opt);
  st.sync();
  const auto one_shot = to_double(whole.out.download());
  std::vector<double> want(one_shot.size());
  nh::ref::attention(hq.data(), hk.data(), hv.data(), want.data(), T, T, Hq, Hkv, kHD);
  CHECK(rel_err(one_shot, want) < kTol);
  // Same sequence in slot 1 in two chunks: [0, 117) then [117, 300) with context_lens = 117.
  std::vector<double> chunked;
  for (auto [start, len] : {std::pair{0, 117}, std::pair{117, 183}}) {
    batch_buffers b2(1, len, len);
    b2.update({len}, {start}, {1});
    const std::size_t qw = Hq * kHD;
    dbuf<bf16> out(len * qw);
    out.poison();
    nh::attention_prefill(whole.q + start * qw, whole.ldq, whole.k + start * Hkv * kHD, whole.v + start * Hkv * kHD,
                          whole.ldkv, env.cache, b2.view, Hq, out.get(), Hq * kHD, st.s, opt);
    st.sync();
    auto o = to_double(out.download());
    chunked.insert(chunked.end(), o.begin(), o.end());
  }
  const double vs_one_shot = rel_err(chunked, one_shot);
  const double vs_ref = rel_err(chunked, want);
  CHECK(vs_one_shot < kTol);
  CHECK(vs_ref < kTol);
  WARN("chunked prefill (" << var.name << ") vs one-shot " << vs_one_shot << ", vs reference "
                            << vs_ref);
  }
}

TEST_CASE("prefill attention replays from a captured graph with new metadata",
          "[dense][attention][prefill][graph]") {
  for (const auto& var : prefill_variants())
  for (const auto& heads : {std::pair{40, 8}, std::pair{32, 2}}) {  // ratios 5 and 16
  CAPTURE(var.name, heads.first, heads.second);
  const int Hq = heads.first, Hkv = heads.second, padded = 512, max_seqs = 4;
  std::mt19937 gen(91 + Hq);
  kv_env env(Hq, Hkv, 6, 1024);
  batch_buffers bb(max_seqs, padded, padded);
  qkv_io io(true, Hq, Hkv, padded);
  stream st;
  const captured graph(st.s, prefill_launch(env, bb, io, var.opt));
  auto replay = [&](cudaStream_t s) { graph.launch(s); };
  const std::vector<std::vector<int>> lens = {{300, 1, 64, 147}, {65}, {12, 400}};
  const std::vector<std::vector<int>> ctxs = {{0, 10, 0, 200}, {500}, {3, 0}};
  const std::vector<std::vector<int>> slots = {{0, 1, 2, 3}, {5}, {4, 0}};
  for (std::size_t i = 0; i < lens.size(); ++i) {
    CAPTURE(i);
    auto r = run_step(env, bb, io, lens[i], ctxs[i], slots[i], false, true, gen, replay, st);
    CHECK(r.err < kTol);
    CHECK(r.pad_untouched);
    CHECK(r.cache_ok);
  }
  }
}

TEST_CASE("prefill attention is deterministic: repeated and replayed runs are bit-identical",
          "[dense][attention][prefill][graph]") {
  for (const auto& var : prefill_variants()) {
    CAPTURE(var.name);
    const int Hq = 40, Hkv = 8;
    const std::vector<int> lens = {700, 1, 333}, ctxs = {0, 90, 129}, slots = {2, 0, 1};
    const int T = 1034, padded = T + 6;
    std::mt19937 gen(4242);
    kv_env env(Hq, Hkv, 3, 1024);
    batch_buffers bb(4, padded, 700);
    qkv_io io(true, Hq, Hkv, padded);
    stream st;
    bb.update(lens, ctxs, slots);
    for (std::size_t s = 0; s < lens.size(); ++s) env.fill_prefix(slots[s], ctxs[s], gen);
    std::vector<double> hq, hk, hv;
    io.randomize(gen, hq, hk, hv);
    const auto launch = prefill_launch(env, bb, io, var.opt);
    std::vector<std::vector<bf16>> outs;
    for (int rep = 0; rep < 3; ++rep) {  // the append rewrites the same rows: inputs unchanged
      io.out.poison();
      launch(st.s);
      st.sync();
      outs.push_back(io.out.download());
    }
    const captured graph(st.s, launch);
    io.out.poison();
    graph.launch(st.s);
    st.sync();
    outs.push_back(io.out.download());
    CHECK(!is_poison(outs[0][0]));
    CHECK(!is_poison(outs[0][static_cast<std::size_t>(T - 1) * Hq * kHD]));
    for (std::size_t i = 1; i < outs.size(); ++i) {
      CAPTURE(i);
      CHECK(std::memcmp(outs[i].data(), outs[0].data(), outs[0].size() * sizeof(bf16)) == 0);
    }
  }
}

TEST_CASE("prefill attention rejects bad options", "[dense][attention][prefill]") {
  kv_env env(4, 2, 1, 16);
  batch_buffers bb(1, 4, 4);
  dbuf<bf16> q(4 * 4 * kHD), out(4 * 4 * kHD);
  auto call = [&](nh::prefill_options o) {
    nh::attention_prefill(q.get(), 4 * kHD, q.get(), q.get(), 4 * kHD, env.cache, bb.view, 4,
                          out.get(), 4 * kHD, nullptr, o);
  };
  const auto any = nh::prefill_kernel::automatic;
  CHECK_THROWS_AS(call({any, 5, -1, -1}), piecewise::config_error);  // stages
  CHECK_THROWS_AS(call({any, 1, -1, -1}), piecewise::config_error);
  CHECK_THROWS_AS(call({any, 0, 2, -1}), piecewise::config_error);   // pingpong
  CHECK_THROWS_AS(call({any, 0, -1, -2}), piecewise::config_error);  // persistent
  if (!device_is_cc90())
    CHECK_THROWS_AS(call({nh::prefill_kernel::wgmma, 0, -1, -1}), piecewise::config_error);
}

// Decode workspace as the kernel's contract asks: counters (at the end) zero, the partials
// NaN-poisoned, so a partial the merge reads but no split wrote fails the test.
struct decode_ws {
  std::size_t bytes, counter_bytes;
  dbuf<char> buf;
  decode_ws(int max_seqs, int Hq, int Hkv, int max_context, const nh::attention_decode_tuning& tune = {})
      : bytes(nh::attention_decode_workspace_bytes(max_seqs, Hq, Hkv, kHD, max_context, tune)),
        counter_bytes(nh::attention_decode_counter_bytes(max_seqs, Hkv)),
        buf(bytes) {
    buf.poison();
    PIECEWISE_CUDA_TRY(cudaMemset(buf.get() + bytes - counter_bytes, 0, counter_bytes));
  }
  // Every call must leave the counters zero for the next one.
  bool counters_zero() const {
    std::vector<char> h(counter_bytes);
    PIECEWISE_CUDA_TRY(cudaMemcpy(h.data(), buf.get() + bytes - counter_bytes, counter_bytes, cudaMemcpyDeviceToHost));
    return std::all_of(h.begin(), h.end(), [](char c) { return c == 0; });
  }
};

std::function<void(cudaStream_t)> decode_launch(kv_env& env, batch_buffers& bb, qkv_io& io, decode_ws& ws,
                                                int max_context, nh::attention_decode_tuning tune = {}) {
  return [&env, &bb, &io, &ws, max_context, tune](cudaStream_t s) {
    nh::attention_decode(io.q, io.ldq, io.k, io.v, io.ldkv, env.cache, bb.view, env.Hq, io.out.get(),
                         env.Hq * kHD, ws.buf.get(), ws.bytes, max_context, s, tune);
  };
}

TEST_CASE("decode attention over contexts 1..5000 (GQA groups 5, 4, 8, 16, 24 and 32, several split counts)",
          "[dense][attention][decode]") {
  const std::vector<nh::attention_decode_tuning> tunings = {{0, 0}, {1, 2}, {3, 2}, {7, 4}, {128, 3}};
  // Groups above 16 take two blocks per KV head (24: two sub-groups of 12, 32: of 16).
  for (const auto& heads : {std::pair{40, 8}, std::pair{32, 8}, std::pair{16, 2}, std::pair{32, 2},
                            std::pair{48, 2}, std::pair{64, 2}}) {
    const int Hq = heads.first, Hkv = heads.second;  // not a structured binding: captured below
    for (const auto& tune : tunings) {
      // Every tuning at the 9B heads; automatic and one forced split count for the others.
      if (Hq != 40 && !(tune.splits == 0 || tune.splits == 3)) continue;
      CAPTURE(Hq, Hkv, tune.splits, tune.stages);
      // Contexts around tile (64) and split boundaries, mixed in one batch; the new token makes
      // context + 1 keys.
      const std::vector<int> ctxs = {0, 1, 63, 64, 127, 1000, 4999};
      const std::vector<int> slots = {3, 0, 6, 1, 2, 5, 4};
      // Two steps: contexts up to 4999 + 1 new token, then + 1 more -> 5001 positions.
      const int n = static_cast<int>(ctxs.size()), max_context = 5001;
      std::mt19937 gen(500 + Hq + 7 * Hkv + tune.splits);
      kv_env env(Hq, Hkv, 7, max_context);
      batch_buffers bb(n + 1, n + 2, 1);  // a spare sequence and a padding row
      qkv_io io(false, Hq, Hkv, n + 2);
      decode_ws ws(bb.view.max_seqs, Hq, Hkv, max_context, tune);
      stream st;
      const auto launch = decode_launch(env, bb, io, ws, max_context, tune);
      auto r = run_step(env, bb, io, std::vector<int>(n, 1), ctxs, slots, true, true, gen, launch, st);
      CHECK(r.err < kTol);
      CHECK(r.pad_untouched);
      CHECK(r.cache_ok);
      CHECK(ws.counters_zero());
      WARN("decode Hq=" << Hq << " Hkv=" << Hkv << " splits=" << tune.splits << " stages=" << tune.stages
                        << " rel err " << r.err);
      // The same inputs again (the append rewrites the same rows): bit-identical output.
      const auto first = io.out.download();
      io.out.poison();
      launch(st.s);
      st.sync();
      const auto again = io.out.download();
      CHECK(std::memcmp(first.data(), again.data(), first.size() * sizeof(bf16)) == 0);
      // A second step continues the same sequences (context + 1) without rewriting prefixes.
      std::vector<int> ctx2(ctxs);
      for (auto& c : ctx2) c += 1;
      auto r2 = run_step(env, bb, io, std::vector<int>(n, 1), ctx2, slots, true, false, gen, launch, st);
      CHECK(r2.err < kTol);
      CHECK(r2.cache_ok);
      CHECK(ws.counters_zero());
    }
  }
}

TEST_CASE("decode attention at 9B, Nano-30B and Ultra heads: batch 1 and 8 at long and short contexts",
          "[dense][attention][decode]") {
  // Batch 1 at long context takes the split-K path with many splits (the merge in the last
  // block); heads 40/8 (ratio 5), 32/2 (16) and 64/2 (32).
  for (const auto& heads : {std::pair{40, 8}, std::pair{32, 2}, std::pair{64, 2}})
  for (const auto& bc : {std::pair{1, 4096}, std::pair{1, 256}, std::pair{8, 1024}, std::pair{8, 4096}}) {
    const int Hq = heads.first, Hkv = heads.second;
    const int B = bc.first, C = bc.second;
    CAPTURE(Hq, Hkv, B, C);
    std::mt19937 gen(4000 + B + C);
    kv_env env(Hq, Hkv, B, C);
    batch_buffers bb(B, B, 1);
    qkv_io io(true, Hq, Hkv, B);
    decode_ws ws(B, Hq, Hkv, C);
    stream st;
    std::vector<int> ctxs(B), slots(B);
    for (int i = 0; i < B; ++i) {
      ctxs[i] = C - 1 - 37 * i;  // the longest fills the cache; the others end mid-tile
      slots[i] = B - 1 - i;
    }
    auto r = run_step(env, bb, io, std::vector<int>(B, 1), ctxs, slots, true, true, gen,
                      decode_launch(env, bb, io, ws, C), st);
    CHECK(r.err < kTol);
    CHECK(r.pad_untouched);
    CHECK(r.cache_ok);
    CHECK(ws.counters_zero());
  }
}

TEST_CASE("decode attention replays from captured graphs with new metadata",
          "[dense][attention][decode][graph]") {
  for (const auto& heads : {std::pair{40, 8}, std::pair{32, 2}, std::pair{64, 2}}) {
  const int Hq = heads.first, Hkv = heads.second, max_seqs = 8, max_context = 3000;
  CAPTURE(Hq, Hkv);
  std::mt19937 gen(606 + Hq);
  kv_env env(Hq, Hkv, 10, max_context);
  // Two buckets (8 and 1 sequences, as a runner captures them) share one workspace sized
  // for the larger: the bucket of 1 splits more, its partials must not touch the counters.
  batch_buffers bb8(max_seqs, max_seqs, 1), bb1(1, 1, 1);
  qkv_io io(true, Hq, Hkv, max_seqs);
  decode_ws ws(max_seqs, Hq, Hkv, max_context);
  stream st;
  const captured g8(st.s, decode_launch(env, bb8, io, ws, max_context));
  const captured g1(st.s, decode_launch(env, bb1, io, ws, max_context));
  const std::vector<std::vector<int>> ctxs = {{2999, 0, 17, 700, 129, 128, 5, 2048}, {50, 1300}, {2999}, {0}, {64}};
  const std::vector<std::vector<int>> slots = {{0, 1, 2, 3, 4, 5, 6, 7}, {9, 8}, {3}, {3}, {6}};
  const std::vector<int> bucket = {8, 8, 1, 8, 1};
  for (std::size_t i = 0; i < ctxs.size(); ++i) {
    CAPTURE(i);
    batch_buffers& bb = bucket[i] == 8 ? bb8 : bb1;
    const captured& g = bucket[i] == 8 ? g8 : g1;
    auto r = run_step(env, bb, io, std::vector<int>(ctxs[i].size(), 1), ctxs[i], slots[i], true, true, gen,
                      [&](cudaStream_t s) { g.launch(s); }, st);
    CHECK(r.err < kTol);
    CHECK(r.pad_untouched);
    CHECK(r.cache_ok);
    CHECK(ws.counters_zero());
  }
  }
}

TEST_CASE("attention entry points reject unsupported shapes", "[dense][attention]") {
  kv_env env(4, 2, 1, 16);
  nh::kv_cache_view bad = env.cache;
  bad.head_dim = 64;
  batch_buffers bb(1, 4, 4);
  dbuf<bf16> q(4 * 4 * kHD), out(4 * 4 * kHD);
  CHECK_THROWS_AS(nh::attention_prefill(q.get(), 4 * kHD, q.get(), q.get(), 4 * kHD, bad, bb.view, 4,
                                        out.get(), 4 * kHD, nullptr),
                  piecewise::config_error);
  CHECK_THROWS_AS(nh::attention_decode(q.get(), 4 * kHD, q.get(), q.get(), 2 * kHD, env.cache, bb.view,
                                       4, out.get(), 4 * kHD, nullptr, 0, 16, nullptr),
                  piecewise::config_error);
  // Decode: a group above 32, out-of-range tuning, a workspace too small.
  CHECK_THROWS_AS(nh::attention_decode_workspace_bytes(1, 66, 2, kHD, 16), piecewise::config_error);
  CHECK_NOTHROW(nh::attention_decode_workspace_bytes(1, 64, 2, kHD, 16));
  CHECK_THROWS_AS(nh::attention_decode_workspace_bytes(1, 4, 2, kHD, 16, {0, 5}), piecewise::config_error);
  CHECK_THROWS_AS(nh::attention_decode_workspace_bytes(1, 4, 2, kHD, 16, {129, 0}), piecewise::config_error);
  const std::size_t need = nh::attention_decode_workspace_bytes(1, 4, 2, kHD, 16);
  dbuf<char> ws(need);
  CHECK_THROWS_AS(nh::attention_decode(q.get(), 4 * kHD, q.get(), q.get(), 2 * kHD, env.cache, bb.view, 4,
                                       out.get(), 4 * kHD, ws.get(), need - 4, 16, nullptr),
                  piecewise::config_error);
}
