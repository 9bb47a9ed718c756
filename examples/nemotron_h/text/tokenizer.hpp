// A byte-level BPE tokenizer built from a Hugging Face tokenizer.json (see tokenizer_json.hpp
// for what is accepted): encode text to ids and decode ids to text, with the same results as
// Hugging Face `tokenizers` (Tokenizer.encode / Tokenizer.decode). Host only.
//
// Encoding: added tokens are found in the raw text first (leftmost-longest, honouring
// lstrip / rstrip / single_word; non-normalized ones on the raw text, then normalized ones in
// the rest), the remaining pieces go through the pre-tokenizer steps (regex Split with its
// behavior, then ByteLevel) and BPE (merges by rank with a priority queue, a word cache).
// Text that is not valid UTF-8 is first converted as Python's bytes.decode("utf-8",
// errors="replace") (each maximal invalid subpart becomes U+FFFD), so encode(b) equals HF's
// encode(b.decode("utf-8", "replace")).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/merge_table.hpp"
#include "text/regex.hpp"
#include "text/tokenizer_json.hpp"

namespace nemotron_h::text {

namespace detail {
/// Hash of std::string keys that also takes std::string_view (no temporary string per lookup).
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using string_map = std::unordered_map<std::string, V, string_hash, std::equal_to<>>;
}  // namespace detail

/// Options of tokenizer::encode.
struct encode_options {
  /// Add the post-processor's template ids (for example `<s>` before the text), as HF's
  /// encode(s, add_special_tokens=True). Nothing is added when the file has no template.
  bool add_special_tokens = false;
  /// Recognize special added tokens (special: true) written in the text. When false they are
  /// tokenized as ordinary text (HF's encode_special_tokens = True); non-special added tokens
  /// are still recognized.
  bool parse_special = true;
};

class tokenizer {
 public:
  /// Builds the tokenizer from a parsed file. Throws piecewise::config_error when a split
  /// pattern does not compile.
  explicit tokenizer(const tokenizer_spec& spec);

  /// Reads, parses and builds from tokenizer.json. Throws piecewise::config_error.
  static tokenizer from_file(const std::filesystem::path& path);

  tokenizer(tokenizer&&) noexcept;
  tokenizer& operator=(tokenizer&&) noexcept;
  ~tokenizer();

  /// The ids of `text` (any bytes; see the file comment for invalid UTF-8). Thread-safe.
  [[nodiscard]] std::vector<std::uint32_t> encode(std::string_view text, const encode_options& opt = {}) const;

  /// The text of `ids`, as HF's decode: the tokens' bytes through the ByteLevel decoder, then
  /// a lossy UTF-8 conversion (invalid sequences become U+FFFD). Ids with no token are
  /// skipped (as HF does); special added tokens are skipped when `skip_special_tokens`.
  [[nodiscard]] std::string decode(std::span<const std::uint32_t> ids, bool skip_special_tokens = false) const;

  /// Appends the raw bytes the ByteLevel decoder gives for `id` (nothing for an id with no
  /// token, or a special token when `skip_special_tokens`). The building block of decode and
  /// stream_decoder.
  void append_bytes(std::uint32_t id, std::string& out, bool skip_special_tokens = false) const;

  /// The id of a token (an added token's content or a vocabulary entry as written in the
  /// file, for example "<s>" or "Ġthe"), if any.
  [[nodiscard]] std::optional<std::uint32_t> token_to_id(std::string_view token) const;
  /// The token string of `id` as written in the file; throws piecewise::config_error when
  /// `id` has no token.
  [[nodiscard]] const std::string& id_to_token(std::uint32_t id) const;
  /// Whether `id` is an added token marked special.
  [[nodiscard]] bool is_special(std::uint32_t id) const;
  /// One more than the largest id (vocabulary or added token).
  [[nodiscard]] std::uint32_t vocab_size() const noexcept { return static_cast<std::uint32_t>(tokens_.size()); }
  /// The file the tokenizer came from (for messages).
  [[nodiscard]] const std::string& source() const noexcept { return source_; }

 private:
  struct trie;
  struct split_step {
    regex re;
    split_behavior behavior;
    bool invert;
  };
  struct cache;

  void encode_segment(std::string_view s, std::vector<std::uint32_t>& out) const;
  void run_steps(std::string_view s, std::size_t step, std::vector<std::uint32_t>& out) const;
  void byte_level(std::string_view s, std::vector<std::uint32_t>& out) const;
  void bpe(std::string_view word, std::vector<std::uint32_t>& out) const;
  void bpe_uncached(std::string_view word, std::vector<std::uint32_t>& out) const;
  template <class OnText, class OnToken>
  void split_added(std::string_view s, const trie& t, bool parse_special, OnText&& on_text, OnToken&& on_token) const;

  std::string source_;
  std::vector<std::string> tokens_;      // id -> token as written (empty when none)
  std::vector<std::uint8_t> present_;    // id has a token
  std::vector<std::uint8_t> special_;    // id is a special added token
  std::vector<std::string> bytes_;       // id -> decoded bytes
  detail::string_map<std::uint32_t> token_ids_;
  std::vector<added_token_spec> added_;
  std::unique_ptr<trie> raw_trie_, normalized_trie_;
  std::unique_ptr<regex> word_char_, space_char_;  // for single_word, lstrip and rstrip

  std::vector<split_step> splits_;
  bool add_prefix_space_ = false;
  std::unique_ptr<regex> byte_level_regex_;  // ByteLevel use_regex

  std::array<std::vector<std::uint32_t>, 256> initial_;  // byte -> its first symbols
  detail::merge_table merges_;  // (left, right) -> (rank, merged)
  detail::string_map<std::uint32_t> word_ids_;  // raw bytes -> id (ignore_merges)
  bool ignore_merges_ = false;
  std::optional<std::uint32_t> unk_;
  bool fuse_unk_ = false;
  std::vector<std::uint32_t> prefix_, suffix_;
  std::unique_ptr<cache> cache_;
};

/// The GPT-2 byte -> character table of byte-level BPE: the code point byte `b` is written
/// as in the vocabulary ('!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves,
/// the other bytes for U+0100.. in order; the space is U+0120 'Ġ').
char32_t byte_to_char(std::uint8_t b) noexcept;
/// The inverse of byte_to_char: the byte, or -1 for a character outside the table.
int char_to_byte(char32_t c) noexcept;

}  // namespace nemotron_h::text
