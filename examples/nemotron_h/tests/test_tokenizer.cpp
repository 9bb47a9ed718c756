// The tokenizer against hand-derived encodings of a hand-made tokenizer.json (tests/data/
// tokenizer/tiny.json, written by make_tiny.py there), the reader's errors, the BPE against a
// naive reference, round trips over generated text, and the streaming decoder.
#include <catch2/catch.hpp>

#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "model_test_util.hpp"
#include "text/stream_decoder.hpp"
#include "text/tokenizer.hpp"
#include "text/utf8.hpp"
#include "tokenizer_test_util.hpp"

using namespace nemotron_h::text;
using ids = std::vector<std::uint32_t>;
using json = nlohmann::json;

namespace {

json tiny_json() { return json::parse(nh_test::read_text(nh_test::tokenizer_data_dir() / "tiny.json")); }
tokenizer make(const json& j) { return tokenizer(parse_tokenizer_json_text(j.dump(), "test.json")); }
const tokenizer& tiny() {
  static const tokenizer t = tokenizer::from_file(nh_test::tokenizer_data_dir() / "tiny.json");
  return t;
}
std::uint32_t byte_id(unsigned char b) { return 3u + b; }  // tiny.json's layout
std::string error_of_json(const json& j) {
  return nh_test::error_of([&] { (void)tokenizer(parse_tokenizer_json_text(j.dump(), "test.json")); });
}

}  // namespace

TEST_CASE("tokenizer: hand-derived encodings of tiny.json", "[tokenizer]") {
  const tokenizer& t = tiny();
  CHECK(t.vocab_size() == 268);
  // h-e (rank 1) before l-l (rank 3); "e ll" and "h ell" then never apply.
  CHECK(t.encode("hello") == ids{260, 262, byte_id('o')});
  // Ġ-t (0), h-e (1), then Ġt-he (2).
  CHECK(t.encode(" the") == ids{261});
  CHECK(t.encode("the") == ids{byte_id('t'), 260});
  // "Hello" and " world" are two pieces; l-l then e-ll.
  CHECK(t.encode("Hello world") == ids{byte_id('H'), 263, byte_id('o'), byte_id(' '), byte_id('w'), byte_id('o'),
                                       byte_id('r'), byte_id('l'), byte_id('d')});
  // Single digits; the lone space before a digit is its own piece.
  CHECK(t.encode("12 3") == ids{byte_id('1'), byte_id('2'), byte_id(' '), byte_id('3')});
  CHECK(t.encode("a\r\nb") == ids{byte_id('a'), byte_id('\r'), byte_id('\n'), byte_id('b')});
  CHECK(t.encode("") == ids{});
  // Two bytes of é.
  CHECK(t.encode("é") == ids{byte_id(0xC3), byte_id(0xA9)});
  // Added tokens in text.
  CHECK(t.encode("<|im_start|>the") == ids{266, byte_id('t'), 260});
  CHECK(t.encode("x<think> the</s>") == ids{byte_id('x'), 267, 261, 2});
  // parse_special off: the special token is text, the non-special one is still found.
  const ids as_text = {byte_id('<'), byte_id('|'), byte_id('i'), byte_id('m'), byte_id('_'), byte_id('s'),
                       byte_id('t'), byte_id('a'), byte_id('r'), byte_id('t'), byte_id('|'), byte_id('>')};
  CHECK(t.encode("<|im_start|>", {.add_special_tokens = false, .parse_special = false}) == as_text);
  CHECK(t.encode("<think>", {.add_special_tokens = false, .parse_special = false}) == ids{267});
  // The "<s> $A" template.
  CHECK(t.encode(" the", {.add_special_tokens = true}) == ids{1, 261});
  CHECK(t.encode("", {.add_special_tokens = true}) == ids{1});
  // Invalid UTF-8 becomes U+FFFD (EF BF BD) first, one per maximal invalid subpart.
  CHECK(t.encode("a\xFF") == ids{byte_id('a'), byte_id(0xEF), byte_id(0xBF), byte_id(0xBD)});
}

TEST_CASE("tokenizer: lookups and decode", "[tokenizer]") {
  const tokenizer& t = tiny();
  CHECK(t.token_to_id("<s>") == 1u);
  CHECK(t.token_to_id("Ġthe") == 261u);
  CHECK(!t.token_to_id("nope"));
  CHECK(t.id_to_token(265) == "hello");
  CHECK(t.is_special(266));
  CHECK(!t.is_special(267));
  CHECK(!t.is_special(261));
  CHECK(nh_test::error_of([&] { (void)t.id_to_token(9999); }).find("id 9999 has no token") != std::string::npos);
  CHECK(t.decode(ids{1, 261, 266, 267}) == "<s> the<|im_start|><think>");
  CHECK(t.decode(ids{1, 261, 266, 267}, true) == " the<think>");
  CHECK(t.decode(ids{byte_id(0xC3), byte_id(0xA9)}) == "é");
  CHECK(t.decode(ids{byte_id(0xC3)}) == "\xEF\xBF\xBD");
  CHECK(t.decode(ids{byte_id(0xE2), byte_id(0x82), byte_id('A')}) == "\xEF\xBF\xBD" "A");
  CHECK(t.decode(ids{byte_id(0xF0), byte_id(0x80)}) == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(t.decode(ids{261, 100000, 261}) == " the the");  // an id with no token is skipped, as HF does
}

TEST_CASE("utf8: lossy conversion follows the maximal-subpart rule", "[tokenizer]") {
  auto lossy = [](std::string_view s) {
    std::string o;
    append_utf8_lossy(o, s);
    return o;
  };
  const std::string R = "\xEF\xBF\xBD";
  CHECK(lossy("abc") == "abc");
  CHECK(lossy("\xC0\xAF") == R + R);          // overlong lead
  CHECK(lossy("\xED\xA0\x80") == R + R + R);  // surrogate: ED then A0 is out of range
  CHECK(lossy("\xF4\x90\x80\x80") == R + R + R + R);
  CHECK(lossy("\xF0\x9F\x98") == R);          // truncated 4-byte sequence
  CHECK(lossy("\xF0\x9F\x98\x80") == "😀");
  CHECK(lossy("\xE2\x82\xAC\x80") == "€" + R);
  std::string held;
  CHECK(append_utf8_lossy(held, "a\xF0\x9F", true) == 2);
  CHECK(held == "a");
  CHECK(is_valid_utf8("é😀"));
  CHECK(!is_valid_utf8("\xC3"));
}

TEST_CASE("tokenizer: stream_decoder holds partial characters back", "[tokenizer]") {
  const tokenizer& t = tiny();
  stream_decoder d(t);
  CHECK(d.push(byte_id(0xF0)).empty());
  CHECK(d.push(byte_id(0x9F)).empty());
  CHECK(d.push(byte_id(0x98)).empty());
  CHECK(d.pending() == 3);
  CHECK(d.push(byte_id(0x80)) == "😀");
  CHECK(d.push(261) == " the");
  CHECK(d.push(byte_id(0xFF)) == "\xEF\xBF\xBD");  // can never be valid: written at once
  CHECK(d.push(byte_id(0xC3)).empty());
  CHECK(d.push(byte_id('x')) == "\xEF\xBF\xBD" "x");
  CHECK(d.push(byte_id(0xE2)).empty());
  CHECK(d.flush() == "\xEF\xBF\xBD");
  CHECK(d.flush().empty());
  stream_decoder s(t, true);
  CHECK(s.push(266).empty());
  CHECK(s.push(267) == "<think>");

  // Any id sequence: the pushes and the flush add up to decode.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    ids v(static_cast<std::size_t>(rng() % 12));
    for (auto& x : v) x = rng() % 4 == 0 ? byte_id(static_cast<unsigned char>(0x80 + rng() % 0x80)) : rng() % 268;
    bool valid = true;
    CHECK(nh_test::stream_decode(t, v, trial % 2 == 1, &valid) == t.decode(v, trial % 2 == 1));
    CHECK(valid);
  }
}

TEST_CASE("tokenizer: round trip over generated text", "[tokenizer]") {
  const tokenizer& t = tiny();
  nh_test::text_gen gen(42, {"<s>", "</s>", "<|im_start|>", "<think>", "<unk>"});
  for (int i = 0; i < 4000; ++i) {
    const std::string s = gen.next();
    CAPTURE(i, s);
    REQUIRE(t.decode(t.encode(s)) == s);
    REQUIRE(t.decode(t.encode(s, {.add_special_tokens = false, .parse_special = false})) == s);
  }
  // Invalid UTF-8: decode(encode(b)) is b's lossy conversion.
  std::mt19937 rng(3);
  for (int i = 0; i < 2000; ++i) {
    std::string b(rng() % 16, '\0');
    for (char& c : b) c = static_cast<char>(rng() % 3 == 0 ? 0x80 + rng() % 0x80 : rng() % 256);
    std::string expect;
    append_utf8_lossy(expect, b);
    REQUIRE(t.decode(t.encode(b)) == expect);
  }
}

namespace {

/// Naive BPE: repeatedly merge the leftmost lowest-rank pair.
std::vector<std::string> naive_bpe(const std::string& word, const std::map<std::pair<std::string, std::string>, int>& rank) {
  std::vector<std::string> s;
  for (char c : word) s.emplace_back(1, c);
  for (;;) {
    int best = -1;
    std::size_t at = 0;
    for (std::size_t i = 0; i + 1 < s.size(); ++i) {
      auto it = rank.find({s[i], s[i + 1]});
      if (it != rank.end() && (best < 0 || it->second < best)) best = it->second, at = i;
    }
    if (best < 0) return s;
    s[at] += s[at + 1];
    s.erase(s.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
}

}  // namespace

TEST_CASE("tokenizer: BPE agrees with a naive reference on random merges", "[tokenizer]") {
  std::mt19937 rng(11);
  for (int round = 0; round < 20; ++round) {
    json j = tiny_json();
    json& vocab = j["model"]["vocab"];
    std::vector<std::string> toks = {"a", "b", "c", "d"};
    std::map<std::pair<std::string, std::string>, int> rank;
    json merges = json::array();
    std::uint32_t next = 268;
    while (merges.size() < 60) {
      const std::string& x = toks[rng() % toks.size()];
      const std::string& y = toks[rng() % toks.size()];
      if (rank.count({x, y}) || x.size() + y.size() > 12) continue;
      rank[{x, y}] = static_cast<int>(merges.size());
      merges.push_back(json::array({x, y}));  // the [a, b] form
      if (!vocab.contains(x + y)) {
        vocab[x + y] = next++;
        toks.push_back(x + y);
      }
    }
    j["model"]["merges"] = merges;
    j["added_tokens"] = json::array();
    j["post_processor"] = nullptr;
    const tokenizer t = make(j);
    for (int w = 0; w < 300; ++w) {
      std::string word(1 + rng() % 40, 'a');
      for (char& c : word) c = static_cast<char>('a' + rng() % 4);
      ids expect;
      for (const std::string& p : naive_bpe(word, rank)) expect.push_back(vocab[p].get<std::uint32_t>());
      CAPTURE(round, word);
      REQUIRE(t.encode(word) == expect);
    }
  }
}

TEST_CASE("tokenizer: added-token flags and split behaviors and ByteLevel options", "[tokenizer]") {
  SECTION("lstrip and rstrip take the spaces around the token") {
    json j = tiny_json();
    j["added_tokens"][4]["lstrip"] = true;
    j["added_tokens"][4]["rstrip"] = true;
    const tokenizer t = make(j);
    CHECK(t.encode("x  <think>  y") == ids{byte_id('x'), 267, byte_id('y')});
  }
  SECTION("single_word needs non-word characters around the token") {
    json j = tiny_json();
    j["added_tokens"][4]["single_word"] = true;
    const tokenizer t = make(j);
    CHECK(t.encode("a <think> b") == ids{byte_id('a'), byte_id(' '), 267, byte_id(' '), byte_id('b')});
    CHECK(t.encode("a<think>").size() == 8);  // not a single word: "a" + "<" + "think" + ">" as text
  }
  SECTION("Split Removed drops the matches") {
    json j = tiny_json();
    j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Removed"}, {"invert", false}};
    CHECK(make(j).encode("he he") == ids{260, 260});
  }
  SECTION("Split MergedWithPrevious keeps the delimiter on the left piece") {
    json j = tiny_json();
    j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Split"}, {"pattern", {{"String", "e"}}}, {"behavior", "MergedWithPrevious"}, {"invert", false}};
    // "hehe" -> "he", "he"
    CHECK(make(j).encode("hehe") == ids{260, 260});
    j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithNext";  // "h", "eh", "e"
    CHECK(make(j).encode("hehe") == ids{byte_id('h'), byte_id('e'), byte_id('h'), byte_id('e')});
    j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Isolated";  // h e h e, no merge across
    CHECK(make(j).encode("hehe") == ids{byte_id('h'), byte_id('e'), byte_id('h'), byte_id('e')});
    j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Contiguous";
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"String", "l"}};  // "he", "ll", "o"
    CHECK(make(j).encode("hello") == ids{260, 262, byte_id('o')});
    j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true;  // the matches are "he" and "o" now: same pieces
    CHECK(make(j).encode("hello") == ids{260, 262, byte_id('o')});
  }
  SECTION("ByteLevel add_prefix_space and use_regex") {
    json j = tiny_json();
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    const tokenizer t = make(j);
    CHECK(t.encode("the the") == ids{261, 261});
  }
  SECTION("ignore_merges takes a whole word that is in the vocabulary") {
    json j = tiny_json();
    j["model"]["vocab"]["hel"] = 268;
    j["model"]["ignore_merges"] = true;
    CHECK(make(j).encode("hel") == ids{268});
    j["model"]["ignore_merges"] = false;
    CHECK(make(j).encode("hel") == ids{260, byte_id('l')});
  }
  SECTION("byte_fallback and unk for bytes missing from the vocabulary") {
    json j = tiny_json();
    j["model"]["vocab"].erase("q");
    CHECK(make(j).encode("q") == ids{0});  // unk
    j["model"]["fuse_unk"] = true;
    CHECK(make(j).encode("qq") == ids{0});
    j["model"]["vocab"]["<0x71>"] = 268;
    j["model"]["byte_fallback"] = true;
    CHECK(make(j).encode("q") == ids{268});
  }
}

TEST_CASE("tokenizer.json: unsupported or broken fields give clear errors", "[tokenizer]") {
  auto expect = [](const json& j, const std::string& needle) {
    const std::string e = error_of_json(j);
    CAPTURE(e);
    CHECK(e.find(needle) != std::string::npos);
  };
  json j = tiny_json();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
  expect(j, "pre_tokenizer type 'Metaspace' not supported");
  j = tiny_json();
  j["normalizer"] = {{"type", "NFC"}};
  expect(j, "normalizer type 'NFC' not supported");
  j = tiny_json();
  j["decoder"] = {{"type", "WordPiece"}};
  expect(j, "decoder type 'WordPiece' not supported");
  j = tiny_json();
  j["model"]["type"] = "Unigram";
  expect(j, "model type 'Unigram' not supported");
  j = tiny_json();
  j["model"]["merges"].push_back("zz q");
  expect(j, "model.merges[7] = \"zz q\": token \"zz\" is not in model.vocab");
  j = tiny_json();
  j["model"]["merges"].push_back("q q");
  expect(j, "the merged token \"qq\" is not in model.vocab");
  j = tiny_json();
  j["model"]["merges"].push_back("qq");
  expect(j, "expected \"a b\"");
  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  expect(j, "pre_tokenizer.pretokenizers[0].pattern: the regular expression does not compile");
  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  expect(j, "'pre_tokenizer.pretokenizers[0].behavior' = 'Sideways' not supported");
  j = tiny_json();
  std::swap(j["pre_tokenizer"]["pretokenizers"][0], j["pre_tokenizer"]["pretokenizers"][1]);
  expect(j, "a ByteLevel step must be the last");
  j = tiny_json();
  j["pre_tokenizer"]["pretokenizers"].erase(1);
  expect(j, "no ByteLevel step");
  j = tiny_json();
  j["model"]["vocab"]["dup"] = 5;
  expect(j, "model.vocab: id 5 is used by more than one token (");
  j = tiny_json();
  j["added_tokens"][3]["id"] = 261;
  expect(j, "added_tokens[3]: id 261 is \"Ġthe\" in model.vocab but \"<|im_start|>\" here");
  j = tiny_json();
  j["model"]["vocab"]["far"] = 1 << 30;
  expect(j, "token ids run up to 1073741824 but only ");
  j = tiny_json();
  j["added_tokens"][0]["id"] = 100000;
  expect(j, "token ids run up to 100000 but only ");
  j = tiny_json();
  j["model"]["vocab"]["near"] = 1200;  // a few holes are fine
  CHECK(error_of_json(j) == "<no exception>");
  j = tiny_json();
  j["added_tokens"][0]["special"] = "yes";
  expect(j, "field 'added_tokens[0].special' must be true or false");
  j = tiny_json();
  j["model"]["dropout"] = 0.1;
  expect(j, "'model.dropout' = 0.1 not supported");
  j = tiny_json();
  j["truncation"] = {{"max_length", 8}};
  expect(j, "field 'truncation'");
  j = tiny_json();
  j["model"].erase("vocab");
  expect(j, "missing field 'model.vocab'");
  j = tiny_json();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  expect(j, "post_processor type 'RobertaProcessing' not supported");
  CHECK(nh_test::error_of([] { (void)parse_tokenizer_json_text("{\"a\": [1,", "t.json"); }).find("t.json: invalid JSON") == 0);
  CHECK(nh_test::error_of([] { (void)parse_tokenizer_json_text(std::string(100, '[') + std::string(100, ']'), "t.json"); })
            .find("nested deeper") != std::string::npos);
  CHECK(nh_test::error_of([] { (void)tokenizer::from_file("/nonexistent/tokenizer.json"); }).find("/nonexistent/tokenizer.json: cannot read") == 0);
}

TEST_CASE("regex: the Oniguruma meanings of s and w escapes in PCRE2", "[tokenizer]") {
  auto count = [](std::string_view pattern, std::string_view subject) {
    const regex r(regex::from_oniguruma(pattern, "test"), "test");
    std::vector<std::pair<std::size_t, std::size_t>> m;
    r.find_all(subject, m);
    return m.size();
  };
  CHECK(regex::from_oniguruma("[^\\s\\p{L}]\\s+(?!\\S)\\\\s", "t") == "[^\\p{White_Space}\\p{L}]\\p{White_Space}+(?!\\P{White_Space})\\\\s");
  CHECK(count("\\s", "\u3000\u00a0\u2028\u0085 \t") == 6);
  CHECK(count("\\s", "\u180e\u200b") == 0);  // not White_Space (PCRE2's own \s takes U+180E)
  CHECK(count("\\w+", "e\u0301_x") == 1);     // marks and connectors are word characters
  CHECK(count("[\\w]", "a\u0301") == 2);
  CHECK(count("\\W", "a b") == 1);
  CHECK(count("\\Q\\s\\E", "\\s") == 1);
  CHECK(nh_test::error_of([] { (void)regex::from_oniguruma("[\\W]", "p"); }).find("p: \\W inside a character class") == 0);
  CHECK(nh_test::error_of([] { (void)regex::from_oniguruma("\\bx", "p"); }).find("word boundary") != std::string::npos);
  CHECK(nh_test::error_of([] { (void)regex("(", "p"); }).find("p: the regular expression does not compile (PCRE2, at offset 1)") == 0);
}

TEST_CASE("tokenizer: long runs of white space and letters encode (no PCRE2 match limit)", "[tokenizer]") {
  const tokenizer& t = tiny();
  // 11 MB of spaces: the split pattern backtracks over the whole run, past PCRE2's default
  // limit of 10 million steps.
  const std::string spaces(11'000'000, ' ');
  for (const std::string& s : {spaces, spaces + "x", std::string(3'000'000, '\n') + spaces.substr(0, 3'000'000) + "A"}) {
    const auto v = t.encode(s);
    CHECK(v.size() == s.size());  // tiny.json has no merge for these bytes
    CHECK(t.decode(v) == s);
  }
}
