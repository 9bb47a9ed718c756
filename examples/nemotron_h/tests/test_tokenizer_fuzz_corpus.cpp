// The tokenizer fuzz seed corpus (fuzz/corpus/tokenizer_json, fuzz/corpus/tokenizer_encode)
// replayed in CI without clang / libFuzzer: tokenizer_json files named valid_* parse and build,
// every other one gives a piecewise::config_error (no other exception); every
// tokenizer_encode file round-trips through the hand-made tokenizer as fuzz_tokenizer_encode
// checks.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "model_test_util.hpp"
#include "text/stream_decoder.hpp"
#include "text/tokenizer.hpp"
#include "text/utf8.hpp"
#include "tokenizer_test_util.hpp"

using namespace nemotron_h::text;
namespace fs = std::filesystem;

TEST_CASE("fuzz corpus: tokenizer.json seeds load or give a config_error", "[fuzz][tokenizer]") {
  const auto files = nh_test::fuzz_corpus_files("tokenizer_json");
  CHECK(files.size() >= 10);
  int accepted = 0, rejected = 0;
  for (const fs::path& f : files) {
    CAPTURE(f.string());
    const std::string text = nh_test::read_text(f);
    const std::string r = nh_test::error_of([&] {
      const tokenizer t(parse_tokenizer_json_text(text, f.filename().string()));
      (void)t.decode(t.encode("Hello world <s> 12"));
    });
    CHECK(r.rfind("<other", 0) != 0);
    if (f.filename().string().rfind("valid_", 0) == 0) {
      CHECK(r == "<no exception>");
      ++accepted;
    } else {
      CHECK(r != "<no exception>");
      ++rejected;
    }
  }
  CHECK(accepted >= 1);
  CHECK(rejected >= 5);
}

TEST_CASE("fuzz corpus: encoder seeds round-trip", "[fuzz][tokenizer]") {
  const tokenizer t = tokenizer::from_file(nh_test::tokenizer_data_dir() / "tiny.json");
  const auto files = nh_test::fuzz_corpus_files("tokenizer_encode");
  CHECK(files.size() >= 10);
  for (const fs::path& f : files) {
    CAPTURE(f.string());
    const std::string b = nh_test::read_text(f);
    std::string expect;
    append_utf8_lossy(expect, b);
    for (bool special : {true, false}) {
      const auto ids = t.encode(b, {.add_special_tokens = false, .parse_special = special});
      CHECK(t.decode(ids) == expect);
      CHECK(nh_test::stream_decode(t, ids) == expect);
    }
  }
}
