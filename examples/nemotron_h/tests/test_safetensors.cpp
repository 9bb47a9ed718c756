// Safetensors header parsing (every corruption), conversions, writer round trips, shards.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

#include "model/safetensors.hpp"
#include "piecewise/element_type.hpp"
#include "model/random_tokens.hpp"
#include "model_test_util.hpp"

using namespace nemotron_h;
using Catch::Matchers::Contains;
using nh_test::error_of;

namespace {

std::vector<st_write_tensor> sample_tensors() {
  std::vector<float> a(6), b(4), c(3), d(2);
  for (int i = 0; i < 6; ++i) a[i] = 0.5f * static_cast<float>(i) - 1.25f;
  for (int i = 0; i < 4; ++i) b[i] = 1.0f / static_cast<float>(i + 3);
  for (int i = 0; i < 3; ++i) c[i] = -3.0f + static_cast<float>(i) * 0.001f;
  d = {65504.0f, -6.103515625e-05f};
  return {make_tensor_from_floats("w.bf16", {2, 3}, a, st_dtype::bf16),
          make_tensor_from_floats("w.f32", {4}, b, st_dtype::f32),
          make_tensor_from_floats("w.f64", {3, 1}, c, st_dtype::f64),
          make_tensor_from_floats("w.f16", {2}, d, st_dtype::f16)};
}

/// A hand-made file: 8-byte length + header text + data bytes.
std::vector<std::uint8_t> raw_file(const std::string& header, std::size_t data_bytes) {
  std::vector<std::uint8_t> out(8 + header.size() + data_bytes, 0);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

std::string parse_err(const std::string& header, std::size_t data_bytes) {
  const auto f = raw_file(header, data_bytes);
  return error_of([&] { (void)parse_safetensors_header(f.data(), f.size(), "m.safetensors"); });
}

void write_bytes(const std::filesystem::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST_CASE("safetensors: bf16 and half conversions", "[safetensors]") {
  // Every bf16 pattern survives float and back.
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const float f = piecewise::bf16_bits_to_float(static_cast<std::uint16_t>(b));
    if (std::isnan(f)) {
      CHECK(std::isnan(piecewise::bf16_bits_to_float(piecewise::float_to_bf16_bits(f))));
      continue;
    }
    REQUIRE(piecewise::float_to_bf16_bits(f) == b);
  }
  // Round to nearest even.
  CHECK(piecewise::float_to_bf16_bits(1.0f) == 0x3f80);
  CHECK(piecewise::float_to_bf16_bits(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie -> even
  CHECK(piecewise::float_to_bf16_bits(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie -> even (up)
  CHECK(piecewise::float_to_bf16_bits(std::bit_cast<float>(0x3f808001u)) == 0x3f81);
  CHECK(piecewise::float_to_bf16_bits(std::bit_cast<float>(0x7f7fffffu)) == 0x7f80);  // max float -> inf
  // Every half pattern survives float and back, with subnormals.
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = piecewise::half_bits_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    REQUIRE(piecewise::float_to_half_bits(f) == h);
  }
  CHECK(piecewise::half_bits_to_float(0x3c00) == 1.0f);
  CHECK(piecewise::half_bits_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(piecewise::half_bits_to_float(0x7bff) == 65504.0f);
  CHECK(piecewise::float_to_half_bits(65519.0f) == 0x7bff);
  CHECK(piecewise::float_to_half_bits(65520.0f) == 0x7c00);
  CHECK(piecewise::float_to_half_bits(std::ldexp(1.0f, -25)) == 0x0000);                  // tie -> even (0)
  CHECK(piecewise::float_to_half_bits(std::ldexp(1.5f, -24)) == 0x0002);                  // tie -> even (2)
  CHECK(piecewise::float_to_half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);           // tie -> even
  CHECK(piecewise::float_to_half_bits(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);
}

TEST_CASE("safetensors: writer and parser round trip", "[safetensors]") {
  const auto tensors = sample_tensors();
  const auto bytes = make_safetensors(tensors, {{"format", "pt"}});
  REQUIRE((bytes[0] | (bytes[1] << 8)) % 8 == 0);  // header padded to 8 bytes
  const st_header h = parse_safetensors_header(bytes.data(), bytes.size(), "mem");
  REQUIRE(h.tensors.size() == 4);
  CHECK(h.metadata.at("format") == "pt");
  const st_tensor_info* a = h.find("w.bf16");
  REQUIRE(a != nullptr);
  CHECK(a->dtype == st_dtype::bf16);
  CHECK(a->shape == std::vector<std::int64_t>{2, 3});
  CHECK(a->nbytes() == 12);
  CHECK(h.find("w.f64")->shape == std::vector<std::int64_t>{3, 1});
  CHECK(h.find("nope") == nullptr);
  CHECK(h.data_offset + h.data_size == bytes.size());

  nh_test::temp_dir td("st");
  const auto path = td.path / "model.safetensors";
  write_safetensors(path, tensors, {{"format", "pt"}});
  const safetensors_file f(path);
  for (const auto& t : tensors) {
    const st_tensor_info* info = f.find(t.name);
    REQUIRE(info != nullptr);
    const auto raw = f.read_raw(*info);
    CHECK(raw == t.bytes);
  }
  // Conversions on read.
  const auto b = f.read_f32(*f.find("w.f32"));
  CHECK(b == std::vector<float>{1.0f / 3, 1.0f / 4, 1.0f / 5, 1.0f / 6});
  const auto bb = f.read_bf16(*f.find("w.f32"));
  for (int i = 0; i < 4; ++i) CHECK(bb[i] == piecewise::float_to_bf16_bits(1.0f / static_cast<float>(i + 3)));
  const auto c = f.read_bf16(*f.find("w.f64"));
  for (int i = 0; i < 3; ++i) CHECK(c[i] == piecewise::float_to_bf16_bits(-3.0f + static_cast<float>(i) * 0.001f));
  const auto d = f.read_f32(*f.find("w.f16"));
  CHECK(d == std::vector<float>{65504.0f, -6.103515625e-05f});
  const auto a16 = f.read_bf16(*f.find("w.bf16"));
  CHECK(piecewise::bf16_bits_to_float(a16[5]) == 1.25f);
}

TEST_CASE("safetensors: F64 -> bf16 is correctly rounded (no double rounding)", "[safetensors]") {
  // 1 + 2^-8 + 2^-30: rounds to float 1 + 2^-8 (a bf16 tie), but as a double it is just
  // above the tie, so the correct bf16 is 1 + 2^-7.
  const double v = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  st_write_tensor t{"x", st_dtype::f64, {1}, std::vector<std::uint8_t>(8)};
  const auto u = std::bit_cast<std::uint64_t>(v);
  for (int i = 0; i < 8; ++i) t.bytes[i] = static_cast<std::uint8_t>(u >> (8 * i));
  nh_test::temp_dir td("f64");
  write_safetensors(td.path / "a.safetensors", {t});
  const safetensors_file f(td.path / "a.safetensors");
  CHECK(f.read_bf16(*f.find("x"))[0] == 0x3f81);
}

TEST_CASE("safetensors: corrupt headers give errors naming the file and tensor", "[safetensors]") {
  const auto name = [](const std::vector<std::uint8_t>& f) {
    return error_of([&] { (void)parse_safetensors_header(f.data(), f.size(), "m.safetensors"); });
  };
  CHECK_THAT(name({1, 2, 3}), Contains("m.safetensors") && Contains("shorter than the 8-byte"));
  {
    auto f = raw_file("{}", 0);
    f[0] = 200;  // header length 200 > the 2 bytes there
    CHECK_THAT(name(f), Contains("m.safetensors") && Contains("header length 200 exceeds"));
    std::fill(f.begin(), f.begin() + 8, 0xff);
    CHECK_THAT(name(f), Contains("exceeds the 100000000 byte limit"));
  }
  CHECK_THAT(parse_err("{\"a\": ", 0), Contains("m.safetensors") && Contains("not valid JSON"));
  CHECK_THAT(parse_err("[1, 2]", 0), Contains("must be a JSON object"));
  CHECK_THAT(parse_err("", 0), Contains("not valid JSON"));
  CHECK_THAT(parse_err(std::string(5000, '['), 0), Contains("nested deeper"));
  CHECK_THAT(parse_err(R"({"t": 5})", 0), Contains("tensor 't'") && Contains("must be an object"));
  CHECK_THAT(parse_err(R"({"t": {"shape": [1], "data_offsets": [0, 2]}})", 2), Contains("tensor 't'") && Contains("missing 'dtype'"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 2]}})", 2),
             Contains("tensor 't'") && Contains("unknown dtype \"Q7\""));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})", 4),
             Contains("tensor 't'") && Contains("unsupported dtype I32"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": 3, "shape": [1], "data_offsets": [0, 2]}})", 2), Contains("'dtype' must be a string"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "data_offsets": [0, 2]}})", 2), Contains("missing 'shape'"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": 1, "data_offsets": [0, 2]}})", 2), Contains("'shape' must be an array"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [-1], "data_offsets": [0, 2]}})", 2),
             Contains("non-negative integers"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [1.5], "data_offsets": [0, 2]}})", 2),
             Contains("non-negative integers"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [1099511627777], "data_offsets": [0, 2]}})", 2),
             Contains("absurd"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "F64", "shape": [1048576, 1048576, 1048576], "data_offsets": [0, 2]}})", 2),
             Contains("too many elements"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 2]}})", 2),
             Contains("rank 9"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [1]}})", 2), Contains("missing 'data_offsets'"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [1], "data_offsets": [0]}})", 2),
             Contains("'data_offsets' must be an array of two integers"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [1], "data_offsets": [0, -2]}})", 2),
             Contains("non-negative integers"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [1], "data_offsets": [4, 2]}})", 4),
             Contains("tensor 't'") && Contains("end < begin"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}})", 6),
             Contains("tensor 't'") && Contains("run past the end of the data (6 bytes)"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 18446744073709551615]}})", 8),
             Contains("run past the end"));
  CHECK_THAT(parse_err(R"({"t": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 8]}})", 8),
             Contains("tensor 't'") && Contains("[3] x BF16 (6 bytes) does not match data_offsets [0, 8] (8 bytes)"));
  CHECK_THAT(parse_err(R"({"a": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]},
                           "b": {"dtype": "BF16", "shape": [2], "data_offsets": [6, 10]}})", 10),
             Contains("'a' [0, 8] and 'b' [6, 10] overlap"));
  CHECK_THAT(parse_err(R"({"__metadata__": {"format": 1}})", 0), Contains("'__metadata__' entry 'format' must be a string"));
  CHECK_THAT(parse_err(R"({"__metadata__": [1]})", 0), Contains("'__metadata__' must be an object"));
  // Valid edge cases: empty header object, zero-size tensor, scalar.
  CHECK(parse_err("{}", 0) == "<no exception>");
  CHECK(parse_err(R"({"e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]},
                      "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}})", 4) == "<no exception>");
}

TEST_CASE("safetensors: mutated files load or fail cleanly (mini fuzz)", "[safetensors]") {
  const auto good = make_safetensors(sample_tensors(), {{"format", "pt"}});
  // Every truncation.
  for (std::size_t n = 0; n < good.size(); ++n) {
    const std::string e = error_of([&] { (void)parse_safetensors_header(good.data(), n, "trunc"); });
    REQUIRE(e.rfind("<other", 0) != 0);
    if (n < good.size() - 1 && n >= 8) {
      // Removing data bytes must be detected (the last tensor runs past the end).
      CHECK(e != "<no exception>");
    }
  }
  // Random byte mutations.
  std::uint64_t s = 12345;
  auto next = [&] { return lcg_next(s); };
  int ok = 0, rejected = 0;
  for (int it = 0; it < 3000; ++it) {
    auto f = good;
    const int flips = 1 + static_cast<int>(next() % 4);
    for (int k = 0; k < flips; ++k) f[next() % f.size()] = static_cast<std::uint8_t>(next());
    const std::string e = error_of([&] { (void)parse_safetensors_header(f.data(), f.size(), "fuzz"); });
    REQUIRE(e.rfind("<other", 0) != 0);
    (e == "<no exception>" ? ok : rejected)++;
  }
  CHECK(rejected > 0);
}

TEST_CASE("safetensors: truncated file on disk names the file", "[safetensors]") {
  nh_test::temp_dir td("trunc");
  auto bytes = make_safetensors(sample_tensors());
  bytes.resize(bytes.size() - 3);
  write_bytes(td.path / "model.safetensors", bytes);
  const std::string e = error_of([&] { safetensors_file f(td.path / "model.safetensors"); });
  CHECK_THAT(e, Contains((td.path / "model.safetensors").string()) && Contains("tensor 'w.f16'") &&
                    Contains("truncated file?"));
  CHECK_THAT(error_of([&] { safetensors_file f(td.path / "nope.safetensors"); }), Contains("file not found"));
  write_bytes(td.path / "short.safetensors", {1, 0, 0});
  CHECK_THAT(error_of([&] { safetensors_file f(td.path / "short.safetensors"); }),
             Contains("short.safetensors") && Contains("shorter than the 8-byte"));
}

TEST_CASE("safetensors: sharded checkpoints through the index", "[safetensors]") {
  nh_test::temp_dir td("shard");
  auto t = sample_tensors();
  write_safetensors(td.path / "model-00001-of-00002.safetensors", {t[0], t[1]});
  write_safetensors(td.path / "model-00002-of-00002.safetensors", {t[2], t[3]});
  nlohmann::json idx = {{"metadata", {{"total_size", 42}}},
                        {"weight_map",
                         {{"w.bf16", "model-00001-of-00002.safetensors"},
                          {"w.f32", "model-00001-of-00002.safetensors"},
                          {"w.f64", "model-00002-of-00002.safetensors"},
                          {"w.f16", "model-00002-of-00002.safetensors"}}}};
  const auto ip = td.path / "model.safetensors.index.json";
  auto write_index = [&](const nlohmann::json& j) {
    std::ofstream f(ip, std::ios::trunc);
    f << j.dump();
  };
  write_index(idx);
  {
    const checkpoint ck(td.path);
    CHECK(ck.num_shards() == 2);
    CHECK(ck.names() == std::vector<std::string>{"w.bf16", "w.f16", "w.f32", "w.f64"});
    auto [file, info] = ck.find("w.f64");
    REQUIRE(file != nullptr);
    CHECK(file->path().filename() == "model-00002-of-00002.safetensors");
    CHECK(file->read_raw(*info) == t[2].bytes);
    CHECK(ck.find("zzz").first == nullptr);
  }
  // A tensor listed for a shard that does not hold it.
  auto j = idx;
  j["weight_map"]["w.f64"] = "model-00001-of-00002.safetensors";
  write_index(j);
  CHECK_THAT(error_of([&] { checkpoint ck(td.path); }),
             Contains("model.safetensors.index.json") && Contains("tensor 'w.f64' is listed for shard") &&
                 Contains("absent"));
  // A tensor in a shard that the index does not list.
  j = idx;
  j["weight_map"].erase("w.f16");
  write_index(j);
  CHECK_THAT(error_of([&] { checkpoint ck(td.path); }),
             Contains("model-00002-of-00002.safetensors") && Contains("tensor 'w.f16' is not listed in the index"));
  // Missing shard file.
  j = idx;
  j["weight_map"]["w.f16"] = "model-00003-of-00002.safetensors";
  write_index(j);
  CHECK_THAT(error_of([&] { checkpoint ck(td.path); }),
             Contains("shard file 'model-00003-of-00002.safetensors'") && Contains("not found"));
  // Path traversal and malformed indexes.
  j = idx;
  j["weight_map"]["w.f16"] = "../model-00002-of-00002.safetensors";
  write_index(j);
  CHECK_THAT(error_of([&] { checkpoint ck(td.path); }), Contains("must be a plain file name"));
  write_index(nlohmann::json{{"metadata", {}}});
  CHECK_THAT(error_of([&] { checkpoint ck(td.path); }), Contains("missing field 'weight_map'"));
  write_index(nlohmann::json{{"weight_map", {{"w.f16", 3}}}});
  CHECK_THAT(error_of([&] { checkpoint ck(td.path); }), Contains("'w.f16' must be a string"));
  {
    std::ofstream f(ip, std::ios::trunc);
    f << "{not json";
  }
  CHECK_THAT(error_of([&] { checkpoint ck(td.path); }), Contains("index is not valid JSON"));
  // An empty directory.
  nh_test::temp_dir empty("empty");
  CHECK_THAT(error_of([&] { checkpoint ck(empty.path); }),
             Contains(empty.path.string()) && Contains("no model.safetensors or model.safetensors.index.json"));
}
