// libFuzzer target: the encoder on arbitrary bytes, with the hand-made tokenizer of the tests
// (tests/data/tokenizer/tiny.json, which holds every byte).
//
// encode must never throw or crash; decode(encode(b)) must be b when b is valid UTF-8 and b's
// lossy conversion otherwise, with special tokens parsed or not; the stream decoder must give
// the same text, in complete characters only.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "text/stream_decoder.hpp"
#include "text/tokenizer.hpp"
#include "text/utf8.hpp"

#ifndef NH_TINY_TOKENIZER
#error "build with -DNH_TINY_TOKENIZER=\"path/to/tiny.json\""
#endif

using namespace nemotron_h::text;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const tokenizer t = tokenizer::from_file(NH_TINY_TOKENIZER);
  const std::string_view b(reinterpret_cast<const char*>(data), size);
  std::string expect;
  append_utf8_lossy(expect, b);
  NH_FUZZ_CHECK(!is_valid_utf8(b) || expect == b);
  for (bool special : {true, false}) {
    const auto ids = t.encode(b, {.add_special_tokens = false, .parse_special = special});
    for (std::uint32_t id : ids) NH_FUZZ_CHECK(id < t.vocab_size());
    NH_FUZZ_CHECK(t.decode(ids) == expect);
    stream_decoder sd(t);
    std::string streamed;
    for (std::uint32_t id : ids) {
      const std::string piece = sd.push(id);
      NH_FUZZ_CHECK(is_valid_utf8(piece));
      streamed += piece;
    }
    streamed += sd.flush();
    NH_FUZZ_CHECK(streamed == expect);
  }
  return 0;
}
