// A compiled PCRE2 regular expression (8-bit, PCRE2_UTF | PCRE2_UCP, JIT-compiled when the
// library supports it), used for the pre-tokenizer's split patterns. Host only.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nemotron_h::text {

/// Move-only owner of a compiled pattern. Matching is const and thread-safe: each call uses
/// its own match data.
class regex {
 public:
  /// Compiles `pattern` (UTF-8). Throws piecewise::config_error naming `what` (for example
  /// "tokenizer.json: pre_tokenizer.pretokenizers[0].pattern.Regex"), the offset and PCRE2's
  /// message when it does not compile.
  regex(std::string_view pattern, const std::string& what);
  ~regex();
  regex(regex&&) noexcept;
  regex& operator=(regex&&) noexcept;
  regex(const regex&) = delete;
  regex& operator=(const regex&) = delete;

  /// Appends every non-overlapping match in `subject` to `out` as (begin, end) byte offsets,
  /// left to right. An empty match advances by one character. `subject` must be valid UTF-8
  /// (checked: throws piecewise::config_error otherwise).
  void find_all(std::string_view subject, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

  /// Matches one at a time, left to right, without collecting them (as find_all, but in
  /// constant memory). The regex and the subject must outlive the cursor.
  class cursor {
   public:
    cursor(const regex& re, std::string_view subject);
    ~cursor();
    cursor(const cursor&) = delete;
    cursor& operator=(const cursor&) = delete;
    /// The next match as (begin, end) byte offsets; false when there is none.
    bool next(std::size_t& begin, std::size_t& end);

   private:
    const regex* re_;
    std::string_view subject_;
    void* match_data_;
    std::size_t pos_ = 0;
    bool checked_ = false;
    bool done_ = false;
  };

  /// True when the pattern matches somewhere in `subject` (valid UTF-8).
  [[nodiscard]] bool search(std::string_view subject) const;

  /// Whether the pattern was JIT-compiled.
  [[nodiscard]] bool jit() const noexcept { return jit_; }

  /// `pattern` (written for Oniguruma, which Hugging Face `tokenizers` uses) with the escapes
  /// whose Unicode meaning differs in PCRE2 rewritten to Oniguruma's: \s and \S become
  /// \p{White_Space} / \P{White_Space} (PCRE2's \s also takes U+180E), \w becomes
  /// [\p{L}\p{M}\p{Nd}\p{Pc}] and \W its complement (PCRE2's \w lacks marks and
  /// connectors). Throws piecewise::config_error naming `what` for \W inside a character
  /// class and for \b / \B (word boundaries), which have no exact PCRE2 equivalent here.
  static std::string from_oniguruma(std::string_view pattern, const std::string& what);

  /// An escaped form of `literal` that matches it verbatim.
  static std::string escape(std::string_view literal);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  bool jit_ = false;
};

}  // namespace nemotron_h::text
