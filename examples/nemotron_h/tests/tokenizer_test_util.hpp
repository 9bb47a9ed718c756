// Helpers shared by the tokenizer tests: the hand-made tokenizer file, seeded random strings
// of the categories the golden file covers, and a byte-level string helper.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "text/stream_decoder.hpp"
#include "text/utf8.hpp"

namespace nh_test {

inline std::filesystem::path tokenizer_data_dir() { return std::filesystem::path(NH_TEST_DATA_DIR) / "tokenizer"; }

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// The text a stream_decoder gives for `ids` (every push, then the flush); false in `all_valid`
/// when a push returned something that is not valid UTF-8.
inline std::string stream_decode(const nemotron_h::text::tokenizer& t, const std::vector<std::uint32_t>& ids,
                                 bool skip_special = false, bool* all_valid = nullptr) {
  nemotron_h::text::stream_decoder sd(t, skip_special);
  std::string out;
  for (std::uint32_t id : ids) {
    const std::string piece = sd.push(id);
    if (all_valid != nullptr && !nemotron_h::text::is_valid_utf8(piece)) *all_valid = false;
    out += piece;
  }
  return out + sd.flush();
}

/// Seeded random text: prose, code, numbers, whitespace runs, CRLF, CJK, emoji, combining
/// marks, random code points and the given special tokens inside text.
class text_gen {
 public:
  explicit text_gen(std::uint64_t seed, std::vector<std::string> specials = {}) : rng_(seed), specials_(std::move(specials)) {}

  std::string next() {
    std::string s;
    const int parts = pick(1, 8);
    for (int i = 0; i < parts; ++i) part(s);
    return s;
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  void cp(std::string& s, char32_t c) { nemotron_h::text::append_utf8(s, c); }

  void part(std::string& s) {
    static const char* words[] = {"the", "The", "hello", "world", "HTTPServer", "don't", "naïve", "x", "I'm",
                                  "tokenizer", "CamelCase", "snake_case", "e.g.", "über", "ÉCOLE"};
    static const char* code[] = {"int main() {\n  return 0;\n}\n", "for (i = 0; i < n; ++i) a[i] += b[i];",
                                 "def f(x):\n\treturn x**2  # sq\n", "<div class=\"a\">&amp;</div>", "a/b/c//d",
                                 "std::vector<int> v{1, 2, 3};", "if x != y: print('ok')\r\n"};
    switch (pick(0, 10)) {
      case 0:
      case 1:
        for (int n = pick(1, 6); n > 0; --n) {
          s += words[pick(0, 14)];
          s += pick(0, 4) == 0 ? ", " : " ";
        }
        break;
      case 2: s += code[pick(0, 6)]; break;
      case 3:
        for (int n = pick(1, 12); n > 0; --n) s += static_cast<char>('0' + pick(0, 9));
        if (pick(0, 1)) s += ".5e-3";
        break;
      case 4: {
        static const char* ws[] = {" ", "  ", "\t", "\n", "\r\n", "\n\n", "   \n", " \r\n ", "\u00a0", "\u3000"};
        for (int n = pick(1, 5); n > 0; --n) s += ws[pick(0, 9)];
        break;
      }
      case 5:
        for (int n = pick(1, 6); n > 0; --n) cp(s, static_cast<char32_t>(pick(0x4E00, 0x9FFF)));  // CJK
        if (pick(0, 1)) s += "、日本語のテキスト。";
        break;
      case 6: {
        static const char* emoji[] = {"😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🚀", "✨"};
        for (int n = pick(1, 4); n > 0; --n) s += emoji[pick(0, 6)];
        break;
      }
      case 7:  // combining marks
        s += "e";
        for (int n = pick(1, 3); n > 0; --n) cp(s, static_cast<char32_t>(pick(0x0300, 0x036F)));
        s += pick(0, 1) ? "\u0915\u094D\u0937" : "\u05E9\u05C1\u05B8";
        break;
      case 8: {  // random scalar values
        for (int n = pick(1, 6); n > 0; --n) {
          char32_t c;
          do c = static_cast<char32_t>(pick(1, 0x10FFFF)); while (c >= 0xD800 && c <= 0xDFFF);
          cp(s, c);
        }
        break;
      }
      case 9:
        if (!specials_.empty()) s += specials_[static_cast<std::size_t>(pick(0, static_cast<int>(specials_.size()) - 1))];
        break;
      default:
        for (int n = pick(1, 10); n > 0; --n) s += static_cast<char>(pick(0x20, 0x7E));
        break;
    }
  }

  std::mt19937_64 rng_;
  std::vector<std::string> specials_;
};

}  // namespace nh_test
