// The fuzz seed corpus (fuzz/corpus/) through the three fuzzed parsers, so CI checks it even
// without clang / libFuzzer: every file either parses or throws piecewise::config_error (no other
// exception), files named valid_* / preset_* / fixture_config.json parse, every other file (a
// truncated or corrupted one) is rejected; and each file through the other two parsers too.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/npy.hpp"
#include "model/safetensors.hpp"
#include "model_test_util.hpp"

using namespace nemotron_h;
namespace fs = std::filesystem;

namespace {

std::vector<std::uint8_t> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// Runs one parser on the bytes: "" when it parses, the config_error message when it rejects,
/// "<other exception...>" for anything else (a bug).
std::string run(const std::string& target, const std::vector<std::uint8_t>& b) {
  const std::string r = nh_test::error_of([&] {
    if (target == "safetensors") (void)parse_safetensors_header(b.data(), b.size(), "corpus");
    else if (target == "config") (void)parse_config_json_text(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), "corpus");
    else (void)parse_npy(b.data(), b.size(), "corpus");
  });
  return r == "<no exception>" ? std::string() : r;
}

bool should_parse(const fs::path& p) {
  const std::string n = p.filename().string();
  return n.rfind("valid_", 0) == 0 || n.rfind("preset_", 0) == 0 || n == "fixture_config.json";
}

}  // namespace

TEST_CASE("fuzz corpus: every seed loads or gives a config_error", "[fuzz]") {
  const std::vector<std::string> targets = {"safetensors", "config", "npy"};
  for (const std::string& target : targets) {
    const auto files = nh_test::fuzz_corpus_files(target);
    CAPTURE(target);
    CHECK(files.size() >= 10);
    int accepted = 0, rejected = 0;
    for (const fs::path& f : files) {
      const auto b = read_bytes(f);
      CAPTURE(f.string());
      const std::string r = run(target, b);
      CHECK(r.rfind("<other", 0) != 0);
      if (should_parse(f)) {
        CHECK(r.empty());
        ++accepted;
      } else {
        CHECK(!r.empty());
        ++rejected;
      }
      // Every file through the other parsers too: a config_error or a load, nothing else.
      for (const std::string& other : targets) {
        if (other == target) continue;
        CAPTURE(other);
        CHECK(run(other, b).rfind("<other", 0) != 0);
      }
    }
    CHECK(accepted >= 1);
    CHECK(rejected >= 5);
  }
}
