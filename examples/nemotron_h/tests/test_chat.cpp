// The chat formats (text/chat_format.hpp) against hand-written expected texts, the incremental
// turns against whole-conversation renders (text and ids), the detection of a checkpoint's
// format and eos ids, and the stop-string matcher (text/stop_strings.hpp).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "model_test_util.hpp"
#include "text/chat_format.hpp"
#include "text/stop_strings.hpp"
#include "text/tokenizer.hpp"
#include "tokenizer_test_util.hpp"

using namespace nemotron_h::text;
namespace fs = std::filesystem;
using ids = std::vector<std::uint32_t>;

namespace {

fs::path data_dir() { return fs::path(NH_TEST_DATA_DIR); }
const tokenizer& tiny_chat() {  // tests/data/tiny/tokenizer.json: Nano-v2 layout, 384 ids
  static const tokenizer t = tokenizer::from_file(data_dir() / "tiny" / "tokenizer.json");
  return t;
}
const tokenizer& golden() {  // the family layout with both <SPECIAL_n> and ChatML tokens
  static const tokenizer t = tokenizer::from_file(data_dir() / "tokenizer" / "golden" / "tokenizer.json");
  return t;
}
ids cat(ids a, const ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("nh_chat_test_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

}  // namespace

TEST_CASE("chat: the nemotron-h format's texts", "[chat]") {
  const chat_format f(chat_style::nemotron_h, tiny_chat());
  CHECK(f.end_of_turn() == 12);
  CHECK(f.first_turn(std::nullopt, "Hi", false) ==
        "<SPECIAL_10>System\n/no_think\n<SPECIAL_11>User\nHi\n<SPECIAL_11>Assistant\n<think></think>");
  CHECK(f.first_turn(std::string("Be brief."), "Hi", true) ==
        "<SPECIAL_10>System\nBe brief.\n/think\n<SPECIAL_11>User\nHi\n<SPECIAL_11>Assistant\n<think>\n");
  CHECK(f.next_turn("More", false, true) == "\n<SPECIAL_11>User\nMore\n<SPECIAL_11>Assistant\n<think></think>");
  CHECK(f.next_turn("More", false, false) ==
        "<SPECIAL_12>\n<SPECIAL_11>User\nMore\n<SPECIAL_11>Assistant\n<think></think>");
}

TEST_CASE("chat: the chatml format's texts", "[chat]") {
  const chat_format f(chat_style::chatml, golden());
  CHECK(f.end_of_turn() == *golden().token_to_id("<|im_end|>"));
  CHECK(f.first_turn(std::nullopt, "Hi", false) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think></think>");
  CHECK(f.first_turn(std::string("S"), "Hi", true) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n");
  CHECK(f.next_turn("Q", true, true) == "\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n");
}

TEST_CASE("chat: turn by turn equals the whole conversation, in text and in ids", "[chat]") {
  for (chat_style st : {chat_style::nemotron_h, chat_style::chatml}) {
    const tokenizer& tok = st == chat_style::chatml ? golden() : tiny_chat();
    const chat_format f(st, tok);
    INFO(to_string(st));
    const std::vector<std::pair<std::string, std::string>> conv = {
        {"system", "You are terse."}, {"user", "Hello there"}, {"assistant", " Hi! How can I help?"},
        {"user", "Tell me about the sea.\n"}, {"assistant", "It is  big\nand blue"}, {"user", "thanks"}};
    const std::string whole = f.render(conv, false);
    // A session: the first turn, then each answer as the model writes it (ending with the
    // end-of-turn token) and the next turn after it.
    std::string text = f.first_turn(conv[0].second, conv[1].second, false);
    ids seq = tok.encode(text);
    for (std::size_t i = 2; i + 1 < conv.size(); i += 2) {
      text += conv[i].second;
      seq = cat(seq, tok.encode(conv[i].second));
      seq.push_back(f.end_of_turn());
      const std::string next = f.next_turn(conv[i + 1].second, false, /*answer_closed=*/true);
      text += tok.id_to_token(f.end_of_turn()) + next;
      seq = cat(seq, tok.encode(next));
    }
    CHECK(text == whole);
    CHECK(seq == tok.encode(whole));
    CHECK(tok.decode(seq) == whole);
  }
}

TEST_CASE("chat: render rejects malformed conversations", "[chat]") {
  const chat_format f(chat_style::chatml, golden());
  CHECK_THAT(nh_test::error_of([&] { (void)f.render({{"bot", "x"}}, false); }),
             Catch::Contains("role 'bot'"));
  CHECK_THAT(nh_test::error_of([&] { (void)f.render({{"user", "a"}, {"system", "b"}}, false); }),
             Catch::Contains("message 1 is a system turn"));
  CHECK_THAT(nh_test::error_of([&] { (void)f.render({{"system", "s"}}, false); }), Catch::Contains("no user turn"));
  CHECK_THAT(nh_test::error_of([&] { (void)f.render({{"user", "a"}, {"assistant", "b"}}, false); }),
             Catch::Contains("must end with a user turn"));
  // A format whose tokens the tokenizer lacks: named.
  const tokenizer tiny = tokenizer::from_file(data_dir() / "tokenizer" / "tiny.json");
  CHECK_THAT(nh_test::error_of([&] { (void)chat_format(chat_style::chatml, tiny); }),
             Catch::Contains("tiny.json") && Catch::Contains("needs the token <|im_end|>"));
  CHECK_THAT(nh_test::error_of([&] { (void)parse_chat_style("llama"); }), Catch::Contains("'llama' is not known"));
}

TEST_CASE("chat: a checkpoint's tokenizer, chat format and eos ids", "[chat]") {
  const text_assets tiny = find_text_assets(data_dir() / "tiny", {});
  CHECK(tiny.tokenizer_file == data_dir() / "tiny" / "tokenizer.json");
  REQUIRE(tiny.chat);
  CHECK(*tiny.chat == chat_style::nemotron_h);
  CHECK_THAT(tiny.chat_reason, Catch::Contains("tokenizer_config.json"));
  CHECK(tiny.eos_ids == ids{2});  // config.json's eos_token_id
  CHECK(resolve_chat_style("auto", tiny, tiny_chat()) == chat_style::nemotron_h);
  CHECK(resolve_chat_style("chatml", tiny, tiny_chat()) == chat_style::chatml);  // forced (the ctor checks tokens)

  // Detection from the special tokens alone, and eos lists from generation_config.json.
  const fs::path d = scratch("assets");
  fs::copy_file(data_dir() / "tokenizer" / "golden" / "tokenizer.json", d / "tokenizer.json");
  write(d / "generation_config.json", R"({"eos_token_id": [2, 17]})");
  write(d / "config.json", R"({"eos_token_id": 5})");
  const text_assets g = find_text_assets(d, {});
  CHECK(!g.chat);
  CHECK(g.eos_ids == ids{2, 17});  // generation_config.json first
  CHECK(resolve_chat_style("auto", g, golden()) == chat_style::chatml);
  const tokenizer plain = tokenizer::from_file(data_dir() / "tokenizer" / "tiny.json");
  CHECK_THAT(nh_test::error_of([&] { (void)resolve_chat_style("auto", g, plain); }),
             Catch::Contains("no chat format found") && Catch::Contains("--chat-format"));

  // Bad files: named, with the field.
  write(d / "generation_config.json", R"({"eos_token_id": "x"})");
  CHECK_THAT(nh_test::error_of([&] { (void)find_text_assets(d, {}); }),
             Catch::Contains("generation_config.json: eos_token_id holds \"x\""));
  write(d / "generation_config.json", "{}");
  write(d / "tokenizer_config.json", R"({"chat_template": "{{ messages }}"})");
  CHECK_THAT(nh_test::error_of([&] { (void)find_text_assets(d, {}); }),
             Catch::Contains("tokenizer_config.json: chat_template is of no known format"));
  write(d / "tokenizer_config.json", R"({"chat_template": [{"name": "default", "template": "<|im_start|>"}]})");
  CHECK(*find_text_assets(d, {}).chat == chat_style::chatml);
  write(d / "tokenizer_config.json", R"({"chat_template": )");
  CHECK_THAT(nh_test::error_of([&] { (void)find_text_assets(d, {}); }),
             Catch::Contains("tokenizer_config.json: invalid JSON"));
  fs::remove(d / "tokenizer.json");
  CHECK_THAT(nh_test::error_of([&] { (void)find_text_assets(d, {}); }),
             Catch::Contains("no tokenizer there") && Catch::Contains("--tokenizer"));
  CHECK_THAT(nh_test::error_of([&] { (void)find_text_assets({}, {}); }), Catch::Contains("presets have none"));
  fs::remove_all(d);
}

TEST_CASE("stop strings: found across pushes, text before them printed, partial matches held back", "[chat]") {
  stop_matcher m({"</end>", "STOP", ""});
  CHECK(m.push("Hello </") == "Hello ");  // "</" could start "</end>"
  CHECK(m.push("en") == "");
  CHECK(m.push("x wor") == "</enx wor");
  CHECK(m.push("ld ST") == "ld ");
  CHECK(!m.stopped());
  CHECK(m.push("OP and more") == "");
  CHECK(m.stopped());
  CHECK(m.matched() == "STOP");
  CHECK(m.push("later") == "");
  CHECK(m.flush() == "");

  stop_matcher none({});
  CHECK(none.push("abc") == "abc");
  stop_matcher tail({"xyz"});
  CHECK(tail.push("abcxy") == "abc");
  CHECK(tail.flush() == "xy");  // the end of the stream: the held-back tail is text

  // The earliest occurrence wins, whatever the order of the list.
  stop_matcher two({"bb", "ab"});
  CHECK(two.push("xabb") == "x");
  CHECK(two.matched() == "ab");
}

TEST_CASE("stop strings: random streams equal the text cut at the first stop", "[chat]") {
  std::mt19937 rng(7);
  const std::vector<std::string> stops = {"ab", "bca", "cc"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int len = static_cast<int>(rng() % 30);
    for (int i = 0; i < len; ++i) text += static_cast<char>('a' + rng() % 4);
    std::size_t cut = std::string::npos;
    for (const auto& s : stops) cut = std::min(cut, text.find(s));
    const std::string expect = cut == std::string::npos ? text : text.substr(0, cut);
    stop_matcher m(stops);
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t n = 1 + rng() % 4;
      out += m.push(std::string_view(text).substr(i, n));
      i += n;
    }
    out += m.flush();
    INFO(text);
    CHECK(out == expect);
    CHECK(m.stopped() == (cut != std::string::npos));
  }
}
