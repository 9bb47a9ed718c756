// Reading a Hugging Face tokenizer.json into a plain description (tokenizer_spec) of what the
// file states: added tokens, normalizer, pre-tokenizer steps, the BPE model, the decoder and
// the post-processor. Only what byte-level BPE tokenizers (the NemotronH family: a Sequence of
// a regex Split and ByteLevel, a ByteLevel decoder) use is accepted; anything else is an error
// naming the field and its value, never a silent difference. Host only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nemotron_h::text {

/// One entry of "added_tokens".
struct added_token_spec {
  std::uint32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

/// A Split pre-tokenizer's "behavior".
enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

/// One pre-tokenizer step, applied in order. A ByteLevel step is always the last one.
struct pre_tokenizer_step {
  enum class kind { split, byte_level } type = kind::split;
  // split:
  std::string regex;  ///< PCRE2 source (a "String" pattern is escaped into one)
  split_behavior behavior = split_behavior::isolated;
  bool invert = false;
  // byte_level:
  bool add_prefix_space = false;
  bool use_regex = true;
  std::string where;  ///< JSON path of the step, for messages ("pre_tokenizer.pretokenizers[0]")
};

/// The "model" section (type BPE).
struct bpe_spec {
  std::vector<std::pair<std::string, std::uint32_t>> vocab;   ///< token -> id, file order
  std::vector<std::pair<std::string, std::string>> merges;    ///< by rank (index)
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

/// TemplateProcessing's "single" template, as ids around the sequence ($A).
struct post_processor_spec {
  std::vector<std::uint32_t> prefix;  ///< ids added before the text's ids
  std::vector<std::uint32_t> suffix;  ///< ids added after
};

/// Everything the encoder and decoder need, as the file states it.
struct tokenizer_spec {
  std::vector<added_token_spec> added_tokens;
  std::vector<pre_tokenizer_step> pre_tokenizer;  ///< ends with a byte_level step
  bpe_spec model;
  post_processor_spec post_processor;  ///< empty when the file has none (or only ByteLevel)
  std::string source;                  ///< file name, for messages
};

/// Parses tokenizer.json text. `source` names it in messages. Throws piecewise::config_error
/// for invalid JSON, a missing or mistyped field, an unsupported component (the message names
/// the field and its value), a merge whose parts or result are not in the vocabulary, a
/// duplicate id, an id space mostly unused (ids above 2 x the tokens defined + 1024: the
/// tokenizer keeps one entry per id), and nesting deeper than 64 levels.
tokenizer_spec parse_tokenizer_json_text(std::string_view text, const std::string& source);

/// Reads and parses `path` (at most 1 GiB). Throws piecewise::config_error when it cannot be
/// read or does not parse.
tokenizer_spec load_tokenizer_json(const std::filesystem::path& path);

}  // namespace nemotron_h::text
