// Incremental decoding for streaming output: ids in, text out, never half a UTF-8 character.
// Host only.
#pragma once

#include <cstdint>
#include <string>

#include "text/tokenizer.hpp"

namespace nemotron_h::text {

/// Turns ids into text one at a time. The concatenation of every push() result and the final
/// flush() equals tokenizer::decode of all the ids (same skip_special_tokens): bytes that
/// start a UTF-8 character whose end has not arrived yet are held back; bytes that can never
/// become valid are written at once as U+FFFD, one per maximal invalid subpart, as HF's
/// ByteLevel decoder's lossy conversion does. Keeps a reference to the tokenizer, which must
/// outlive it. Not thread-safe (one decoder per sequence).
class stream_decoder {
 public:
  explicit stream_decoder(const tokenizer& tok, bool skip_special_tokens = false)
      : tok_(&tok), skip_special_(skip_special_tokens) {}

  /// The complete characters that `id` finishes (possibly empty). Never throws for an id
  /// without a token: it adds nothing, as decode skips it.
  std::string push(std::uint32_t id);

  /// The held-back bytes of an unfinished character, as one U+FFFD (empty when none); the
  /// decoder is then empty and can be reused for another stream.
  std::string flush();

  /// How many bytes are held back (0 to 3).
  [[nodiscard]] std::size_t pending() const noexcept { return pending_.size(); }

 private:
  const tokenizer* tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace nemotron_h::text
