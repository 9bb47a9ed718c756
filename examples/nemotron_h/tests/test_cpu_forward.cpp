// Whole-model CPU forward: transformers fixture, chunked prefill, decode, packed batches,
// and the .npy reader / writer.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "model/cpu_forward.hpp"
#include "model/npy.hpp"
#include "model/random_tokens.hpp"
#include "model/safetensors.hpp"
#include "model_test_util.hpp"

using namespace nemotron_h;
using Catch::Matchers::Contains;
using nh_test::error_of;

namespace {

std::vector<std::int32_t> read_ids(const std::filesystem::path& p) {
  std::ifstream f(p);
  const auto j = nlohmann::json::parse(f);
  return j.get<std::vector<std::int32_t>>();
}

std::vector<std::int32_t> random_tokens(int n, int V, std::uint64_t seed) {
  return random_token_ids(n, V, seed);
}

std::span<const double> row(const std::vector<double>& all, int t, int V) {
  return std::span<const double>(all).subspan(static_cast<std::size_t>(t) * V, static_cast<std::size_t>(V));
}

/// A small model with every layer kind, 2 chunks of SSD state, randomised vectors.
const cpu_model& small_model() {
  static const cpu_model m = [] {
    model_config c = preset("tiny");
    c.name = "tiny-test";
    return cpu_model(c, synthetic_weights(c, 42, {.randomize_vectors = true}));
  }();
  return m;
}

}  // namespace

TEST_CASE("cpu_forward: reproduces transformers' logits on the tiny fixture", "[cpu_forward]") {
  const auto dir = nh_test::data_dir() / "tiny";
  const model_config c = parse_config_json(dir / "config.json");
  const model_weights w = load_weights(dir, c);
  const std::vector<std::int32_t> ids = read_ids(dir / "prompt_ids.json");
  const npy_array ref = read_npy(dir / "logits.npy");
  const int T = static_cast<int>(ids.size());
  const int V = c.vocab_size;
  REQUIRE(T == 40);
  REQUIRE(ref.shape == std::vector<std::int64_t>{T, V});

  const cpu_model m(c, w);
  cpu_session s(m);
  std::vector<double> all;
  const std::vector<double> last = s.prefill(ids, &all);
  REQUIRE(all.size() == ref.data.size());
  // transformers ran in float32 on the bf16-rounded weights (its float32 vs float64 logits
  // differ by 5.2e-7, see tests/data/tiny/README.md); this forward is float64.
  const double err = rel_norm_error(all, ref.data);
  INFO("relative norm error vs transformers: " << err);
  CHECK(err < 1e-5);
  double worst = 0;
  for (int t = 0; t < T; ++t) {
    worst = std::max(worst, rel_norm_error(row(all, t, V), row(ref.data, t, V)));
    CHECK(argmax(row(all, t, V)) == argmax(row(ref.data, t, V)));
  }
  INFO("worst position: " << worst);
  CHECK(worst < 1e-5);
  CHECK(rel_norm_error(last, std::vector<double>(ref.data.end() - V, ref.data.end())) < 1e-5);

  // The comparison is sensitive: plausible layout / math slips in any layer kind move the
  // logits by far more than the tolerance.
  const std::vector<std::pair<const char*, void (*)(model_weights&)>> bugs = {
      {"Mamba gated-norm groups swapped (layer 2)",
       [](model_weights& x) {
         host_tensor& t = x.layers[2].get("mixer.norm.weight");
         std::uint16_t* n = t.bf16();
         std::rotate(n, n + t.numel() / 2, n + t.numel());
       }},
      {"Mamba D of one head dropped (layer 0)", [](model_weights& x) { x.layers[0].get("mixer.D").f32()[5] = 0.0f; }},
      {"Mamba dt_bias read one head off (layer 4)",
       [](model_weights& x) {
         host_tensor& t = x.layers[4].get("mixer.dt_bias");
         std::rotate(t.f32(), t.f32() + 1, t.f32() + t.numel());
       }},
      {"conv bias dropped (layer 0)",
       [](model_weights& x) {
         host_tensor& t = x.layers[0].get("mixer.conv1d.bias");
         std::fill(t.bf16(), t.bf16() + t.numel(), std::uint16_t{0});
       }},
      {"attention KV heads swapped (layer 1)",
       [](model_weights& x) {
         host_tensor& t = x.layers[1].get("mixer.k_proj.weight");
         std::uint16_t* k = t.bf16();
         std::rotate(k, k + t.numel() / 2, k + t.numel());
       }},
      {"MLP down_proj row swap (layer 3)",
       [](model_weights& x) {
         std::uint16_t* d = x.layers[3].get("mixer.down_proj.weight").bf16();
         std::swap_ranges(d, d + 256, d + 256);
       }},
  };
  for (const auto& [what, bug] : bugs) {
    model_weights wb = w;
    bug(wb);
    const cpu_model mb(c, wb);
    cpu_session sb(mb);
    std::vector<double> allb;
    (void)sb.prefill(ids, &allb);
    const double e = rel_norm_error(allb, ref.data);
    INFO(what << ": " << e);
    CHECK(e > 10 * 1e-5);
  }
}

TEST_CASE("cpu_forward: chunked prefill equals one-shot prefill", "[cpu_forward]") {
  const cpu_model& m = small_model();
  const int V = m.config().vocab_size;
  const auto ids = random_tokens(45, V, 9);
  cpu_session one(m);
  std::vector<double> all;
  (void)one.prefill(ids, &all);
  for (const std::vector<int>& chunks : {std::vector<int>{5, 16, 16, 8}, std::vector<int>{1, 1, 43}, std::vector<int>{44, 1}}) {
    cpu_session s(m);
    int pos = 0;
    std::vector<double> got;
    for (int n : chunks) {
      std::vector<double> part;
      (void)s.prefill(std::span(ids).subspan(static_cast<std::size_t>(pos), static_cast<std::size_t>(n)), &part);
      got.insert(got.end(), part.begin(), part.end());
      pos += n;
    }
    CHECK(s.length() == 45);
    const double err = rel_norm_error(got, all);
    INFO("chunks " << chunks.size() << ": " << err);
    CHECK(err < 1e-12);
  }
}

TEST_CASE("cpu_forward: decode steps equal the prefill of the longer prompt", "[cpu_forward]") {
  const cpu_model& m = small_model();
  const int V = m.config().vocab_size;
  const auto ids = random_tokens(30, V, 77);
  cpu_session full(m);
  std::vector<double> all;
  (void)full.prefill(ids, &all);
  cpu_session s(m);
  std::vector<double> last = s.prefill(std::span(ids).first(18));
  CHECK(rel_norm_error(last, row(all, 17, V)) < 1e-12);
  for (int t = 18; t < 30; ++t) {
    last = s.decode(ids[static_cast<std::size_t>(t)]);
    CAPTURE(t);
    CHECK(rel_norm_error(last, row(all, t, V)) < 1e-12);
  }
  // Greedy continuation is well defined and reset() forgets the state.
  s.reset();
  CHECK(s.length() == 0);
  CHECK(rel_norm_error(s.prefill(ids), row(all, 29, V)) < 1e-12);
  // The state matters: decoding the same token twice gives different logits.
  cpu_session a(m);
  const auto l1 = a.decode(ids[0]);
  const auto l2 = a.decode(ids[0]);
  CHECK(rel_norm_error(l1, l2) > 1e-3);
}

TEST_CASE("cpu_forward: packed batches equal separate sequences", "[cpu_forward]") {
  const cpu_model& m = small_model();
  const int V = m.config().vocab_size;
  const std::vector<int> lens = {7, 1, 20};
  const auto ids = random_tokens(28, V, 5);
  const cpu_forward_result r = cpu_forward(m, ids, lens, true);
  REQUIRE(r.last_logits.size() == 3);
  REQUIRE(r.all_logits.size() == 3);
  int off = 0;
  for (std::size_t i = 0; i < lens.size(); ++i) {
    cpu_session s(m);
    const auto last = s.prefill(std::span(ids).subspan(static_cast<std::size_t>(off), static_cast<std::size_t>(lens[i])));
    CHECK(last == r.last_logits[i]);
    CHECK(r.all_logits[i].size() == static_cast<std::size_t>(lens[i]) * V);
    off += lens[i];
  }
  CHECK(cpu_forward(m, ids, lens, false).all_logits.empty());
  CHECK_THAT(error_of([&] { (void)cpu_forward(m, ids, std::vector<int>{7, 1}); }),
             Contains("add up to 8 but 28 tokens"));
  CHECK_THAT(error_of([&] { (void)cpu_forward(m, ids, std::vector<int>{28, 0}); }), Contains("length 0"));
  std::vector<std::int32_t> bad = {1, 2, V};
  CHECK_THAT(error_of([&] { (void)cpu_forward(m, bad, std::vector<int>{3}); }),
             Contains(std::to_string(V)) && Contains("position 2"));
  cpu_session s(m);
  CHECK_THAT(error_of([&] { (void)s.prefill({}); }), Contains("empty chunk"));
  CHECK_THAT(error_of([&] { (void)s.decode(-1); }), Contains("token id -1"));
}

TEST_CASE("npy: write / read round trip and errors", "[npy]") {
  nh_test::temp_dir td("npy");
  const std::vector<float> v = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  for (const auto& shape : {std::vector<std::int64_t>{6}, std::vector<std::int64_t>{2, 3},
                            std::vector<std::int64_t>{1, 2, 3}}) {
    write_npy(td.path / "a.npy", v, shape);
    const npy_array a = read_npy(td.path / "a.npy");
    CHECK(a.shape == shape);
    REQUIRE(a.data.size() == v.size());
    for (std::size_t i = 0; i < v.size(); ++i) CHECK(a.data[i] == static_cast<double>(v[i]));
    const auto bytes = make_npy(v, shape);
    const std::size_t hdr = 10 + (bytes[8] | (bytes[9] << 8));
    CHECK(hdr % 64 == 0);
  }
  const auto scalar = make_npy({4.0f}, {});
  CHECK(parse_npy(scalar.data(), scalar.size(), "s").shape.empty());
  CHECK_THAT(error_of([&] { write_npy(td.path / "b.npy", v, {4}); }), Contains("shape holds 4 values, data has 6"));

  auto bytes = make_npy(v, {2, 3});
  auto perr = [](std::vector<std::uint8_t> b) { return error_of([&] { (void)parse_npy(b.data(), b.size(), "x.npy"); }); };
  auto b1 = bytes;
  b1[1] = 'X';
  CHECK_THAT(perr(b1), Contains("x.npy") && Contains("bad magic"));
  auto b2 = bytes;
  b2.pop_back();
  CHECK_THAT(perr(b2), Contains("data is 23 bytes"));
  auto b3 = bytes;
  const std::string s(b3.begin(), b3.end());
  const std::size_t p = s.find("<f4");
  b3[p + 1] = 'i';
  CHECK_THAT(perr(b3), Contains("unsupported .npy dtype '<i4'"));
  auto b4 = bytes;
  const std::size_t q = s.find("False");
  std::memcpy(b4.data() + q, "True ", 5);
  CHECK_THAT(perr(b4), Contains("fortran_order"));
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const std::string e = error_of([&] { (void)parse_npy(bytes.data(), n, "t"); });
    CHECK(e.rfind("<other", 0) != 0);
    CHECK(e != "<no exception>");
  }
}
