// libFuzzer target: the safetensors header / offset parser (parse_safetensors_header).
//
// Every input must either parse or throw piecewise::config_error; any other exception escapes
// and aborts (a bug). On success the documented guarantees are checked and every tensor's bytes
// are read from the input buffer and converted, so an offset outside the buffer is an
// AddressSanitizer report rather than a silent pass.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_check.hpp"
#include "model/safetensors.hpp"
#include "piecewise/element_type.hpp"
#include "piecewise/error.hpp"

using namespace nemotron_h;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  st_header h;
  try {
    h = parse_safetensors_header(data, size, "fuzz.safetensors");
  } catch (const piecewise::config_error& e) {
    NH_FUZZ_CHECK(std::strlen(e.what()) > 0);
    return 0;
  }
  NH_FUZZ_CHECK(h.data_offset >= 8 && h.data_offset <= size);
  NH_FUZZ_CHECK(h.data_offset + h.data_size == size);
  const st_tensor_info* prev = nullptr;
  double sum = 0;
  for (const st_tensor_info& t : h.tensors) {
    NH_FUZZ_CHECK(prev == nullptr || prev->name < t.name);  // sorted, no duplicates
    prev = &t;
    NH_FUZZ_CHECK(h.find(t.name) == &t);
    NH_FUZZ_CHECK(t.begin <= t.end && t.end <= h.data_size);
    NH_FUZZ_CHECK(t.shape.size() <= 8);
    NH_FUZZ_CHECK(t.numel() >= 0);
    NH_FUZZ_CHECK(static_cast<std::uint64_t>(t.numel()) * st_dtype_size(t.dtype) == t.nbytes());
    // Touch the tensor's bytes in place (first and last element at most 64 elements each way).
    const std::uint8_t* p = data + h.data_offset + t.begin;
    const std::size_t esz = st_dtype_size(t.dtype);
    const std::size_t n = static_cast<std::size_t>(t.numel());
    for (std::size_t i = 0; i < n; i = (i < 64 || i + 64 >= n) ? i + 1 : n - 64) {
      const std::uint8_t* e = p + i * esz;
      switch (t.dtype) {
        case st_dtype::bf16: sum += piecewise::bf16_bits_to_float(static_cast<std::uint16_t>(e[0] | (e[1] << 8))); break;
        case st_dtype::f16: sum += piecewise::half_bits_to_float(static_cast<std::uint16_t>(e[0] | (e[1] << 8))); break;
        case st_dtype::f32: {
          float f;
          std::memcpy(&f, e, 4);
          sum += f;
          break;
        }
        case st_dtype::f64: {
          double d;
          std::memcpy(&d, e, 8);
          sum += d;
          break;
        }
        case st_dtype::f8_e4m3:
        case st_dtype::u8: sum += e[0]; break;
      }
    }
  }
  // Tensors must not overlap (non-empty ranges).
  for (std::size_t i = 0; i < h.tensors.size() && i < 256; ++i) {
    for (std::size_t k = i + 1; k < h.tensors.size() && k < 256; ++k) {
      const auto& a = h.tensors[i];
      const auto& b = h.tensors[k];
      if (a.nbytes() == 0 || b.nbytes() == 0) continue;
      NH_FUZZ_CHECK(a.end <= b.begin || b.end <= a.begin);
    }
  }
  volatile double sink = sum;
  (void)sink;
  return 0;
}
