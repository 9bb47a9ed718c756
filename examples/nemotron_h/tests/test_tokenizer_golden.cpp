// Golden encodings from Hugging Face `tokenizers`: tests/data/tokenizer/golden/tokenizer.json
// and golden.jsonl, made on the GPU machine by tests/data/tokenizer/make_golden.py. Every
// line's ids (without and with special tokens, and with special tokens parsed as text when
// recorded) and decode results must match exactly. Fails, saying how to make the files, while
// they are missing.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "text/stream_decoder.hpp"
#include "text/tokenizer.hpp"
#include "tokenizer_test_util.hpp"

using namespace nemotron_h::text;
using json = nlohmann::json;

namespace {

std::string from_hex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

std::vector<std::uint32_t> ids_of(const json& j) { return j.get<std::vector<std::uint32_t>>(); }

}  // namespace

TEST_CASE("tokenizer: golden encodings from Hugging Face tokenizers", "[tokenizer][golden]") {
  const auto dir = nh_test::tokenizer_data_dir() / "golden";
  const auto tok_path = dir / "tokenizer.json", golden_path = dir / "golden.jsonl";
  if (!std::filesystem::exists(tok_path) || !std::filesystem::exists(golden_path)) {
    FAIL("missing " << tok_path.string() << " or " << golden_path.string()
                    << ": make them on a machine with Python and Hugging Face `tokenizers` (the GPU machine):\n"
                       "  python3 examples/nemotron_h/tests/data/tokenizer/make_golden.py "
                       "examples/nemotron_h/tests/data/tokenizer/golden\n"
                       "then commit both files.");
  }
  const tokenizer t = tokenizer::from_file(tok_path);
  std::istringstream lines(nh_test::read_text(golden_path));
  std::string line;
  int n = 0, encodes = 0, decodes = 0, nospecial = 0;
  while (std::getline(lines, line)) {
    ++n;
    if (line.empty()) continue;
    const json g = json::parse(line);
    CAPTURE(n, line);
    if (g.contains("meta")) continue;
    if (g.contains("decode_ids")) {
      const auto v = ids_of(g["decode_ids"]);
      CHECK(t.decode(v) == g["decode"].get<std::string>());
      CHECK(t.decode(v, true) == g["decode_skip"].get<std::string>());
      CHECK(nh_test::stream_decode(t, v) == g["decode"].get<std::string>());
      ++decodes;
      continue;
    }
    const std::string text = g.contains("hex") ? from_hex(g["hex"].get<std::string>()) : g["text"].get<std::string>();
    const auto ids = ids_of(g["ids"]);
    CHECK(t.encode(text) == ids);
    if (g.contains("ids_special")) CHECK(t.encode(text, {.add_special_tokens = true}) == ids_of(g["ids_special"]));
    if (g.contains("ids_nospecial")) {
      CHECK(t.encode(text, {.add_special_tokens = false, .parse_special = false}) == ids_of(g["ids_nospecial"]));
      ++nospecial;
    }
    // Absent "decode" means decode gives the text back; absent "decode_skip", the same as decode.
    const std::string decoded = g.contains("decode") ? g["decode"].get<std::string>() : text;
    CHECK(t.decode(ids) == decoded);
    CHECK(t.decode(ids, true) == (g.contains("decode_skip") ? g["decode_skip"].get<std::string>() : decoded));
    ++encodes;
  }
  CHECK(encodes >= 2000);
  CHECK(decodes >= 100);
  INFO("lines " << n << ", encodes " << encodes << ", decodes " << decodes << ", parse_special=false " << nospecial);
  SUCCEED();
}
