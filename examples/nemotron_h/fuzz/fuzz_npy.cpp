// libFuzzer target: the .npy parser (parse_npy).
//
// Every input must either parse or throw piecewise::config_error; any other exception escapes
// and aborts (a bug). On success the shape must account for exactly the data read.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_check.hpp"
#include "model/npy.hpp"
#include "piecewise/error.hpp"

using namespace nemotron_h;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  npy_array a;
  try {
    a = parse_npy(data, size, "fuzz.npy");
  } catch (const piecewise::config_error& e) {
    NH_FUZZ_CHECK(std::strlen(e.what()) > 0);
    return 0;
  }
  std::uint64_t n = 1;
  for (std::int64_t d : a.shape) {
    NH_FUZZ_CHECK(d >= 0);
    n *= static_cast<std::uint64_t>(d);
  }
  NH_FUZZ_CHECK(n == a.data.size());
  NH_FUZZ_CHECK(a.data.size() * 4 <= size);  // every value came from at least 4 input bytes
  return 0;
}
