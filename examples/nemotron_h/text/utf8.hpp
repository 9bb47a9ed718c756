// UTF-8 helpers of the tokenizer: the well-formed sequence table (Unicode 15, table 3-7), the
// lossy conversion Rust's String::from_utf8_lossy does (which Hugging Face's ByteLevel decoder
// uses), and code point encoding. Header only, host only, no allocation beyond the result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nemotron_h::text {

/// What the bytes at a position hold.
enum class utf8_status {
  valid,       ///< a complete well-formed sequence of `length` bytes
  incomplete,  ///< the input ends inside a sequence whose `length` bytes so far are a valid prefix
  invalid,     ///< the `length` bytes (at least 1) are a maximal invalid subpart: one U+FFFD
};

struct utf8_sequence {
  utf8_status status;
  int length;
  char32_t code_point;  ///< set when status is valid
};

/// Classifies the sequence starting at `p` (n > 0 bytes available). Follows Unicode's "maximal
/// subpart" rule, as Rust's from_utf8_lossy does: E2 82 41 is an invalid subpart of 2 bytes
/// (E2 82) and then 'A'; F0 80 is an invalid F0 and then an invalid 80; C0, C1, F5..FF and a
/// lone continuation byte are each one invalid byte.
inline utf8_sequence classify_utf8(const unsigned char* p, std::size_t n) {
  const unsigned char b0 = p[0];
  if (b0 < 0x80) return {utf8_status::valid, 1, b0};
  int need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  char32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) { need = 1; cp = b0 & 0x1F; }
  else if (b0 == 0xE0) { need = 2; lo = 0xA0; cp = 0; }
  else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) { need = 2; cp = b0 & 0x0F; }
  else if (b0 == 0xED) { need = 2; hi = 0x9F; cp = 0x0D; }
  else if (b0 == 0xF0) { need = 3; lo = 0x90; cp = 0; }
  else if (b0 >= 0xF1 && b0 <= 0xF3) { need = 3; cp = b0 & 0x07; }
  else if (b0 == 0xF4) { need = 3; hi = 0x8F; cp = 4; }
  else return {utf8_status::invalid, 1, 0};
  for (int i = 1; i <= need; ++i) {
    if (static_cast<std::size_t>(i) >= n) return {utf8_status::incomplete, i, 0};
    const unsigned char b = p[i];
    const unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) return {utf8_status::invalid, i, 0};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {utf8_status::valid, need + 1, cp};
}

/// Appends the UTF-8 encoding of `cp` (must be a Unicode scalar value) to `out`.
inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// The replacement character U+FFFD in UTF-8.
inline constexpr std::string_view utf8_replacement = "\xEF\xBF\xBD";

/// True when `s` is entirely well-formed UTF-8.
inline bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  while (i < s.size()) {
    if (p[i] < 0x80) { ++i; continue; }
    const utf8_sequence q = classify_utf8(p + i, s.size() - i);
    if (q.status != utf8_status::valid) return false;
    i += static_cast<std::size_t>(q.length);
  }
  return true;
}

/// Appends `s` to `out` with every maximal invalid subpart (and an incomplete sequence at the
/// end) replaced by one U+FFFD, exactly as Rust's String::from_utf8_lossy. When `hold_tail`
/// is true an incomplete sequence at the end is not converted: its length is returned so the
/// caller can keep those bytes for later (streaming); otherwise 0 is returned.
inline std::size_t append_utf8_lossy(std::string& out, std::string_view s, bool hold_tail = false) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0, run = 0;  // [run, i) is valid and not yet copied
  while (i < s.size()) {
    if (p[i] < 0x80) { ++i; continue; }
    const utf8_sequence q = classify_utf8(p + i, s.size() - i);
    if (q.status == utf8_status::valid) { i += static_cast<std::size_t>(q.length); continue; }
    out.append(s.data() + run, i - run);
    if (q.status == utf8_status::incomplete && hold_tail) return s.size() - i;
    out += utf8_replacement;
    i += static_cast<std::size_t>(q.length);
    run = i;
  }
  out.append(s.data() + run, i - run);
  return 0;
}

}  // namespace nemotron_h::text
