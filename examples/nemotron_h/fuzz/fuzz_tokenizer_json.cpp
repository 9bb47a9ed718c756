// libFuzzer target: the tokenizer.json reader (parse_tokenizer_json_text) and building a
// tokenizer from what it accepts.
//
// Every input must either parse or throw piecewise::config_error; any other exception escapes
// and aborts (a bug). What parses must build, encode a few strings (every id in range) and
// decode them without crashing.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "fuzz_check.hpp"
#include "piecewise/error.hpp"
#include "text/tokenizer.hpp"

using namespace nemotron_h::text;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  tokenizer_spec spec;
  try {
    spec = parse_tokenizer_json_text(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/tokenizer.json");
  } catch (const piecewise::config_error& e) {
    NH_FUZZ_CHECK(std::strlen(e.what()) > 0);
    return 0;
  }
  const tokenizer t(spec);  // a spec the reader accepted must build (a config_error here is a bug)
  for (const char* s : {"Hello world, the 12 3\r\n", "<s>x</s> é😀", "", "\xff\xc3"}) {
    for (bool special : {true, false}) {
      const auto ids = t.encode(s, {.add_special_tokens = special, .parse_special = special});
      for (std::uint32_t id : ids) NH_FUZZ_CHECK(id < t.vocab_size());
      (void)t.decode(ids, special);
    }
  }
  return 0;
}
