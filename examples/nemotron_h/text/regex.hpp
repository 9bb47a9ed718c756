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

  /// True when the pattern matches somewhere in `subject` (valid UTF-8).
  [[nodiscard]] bool search(std::string_view subject) const;

  /// Whether the pattern was JIT-compiled.
  [[nodiscard]] bool jit() const noexcept { return jit_; }

  /// An escaped form of `literal` that matches it verbatim.
  static std::string escape(std::string_view literal);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  bool jit_ = false;
};

}  // namespace nemotron_h::text
