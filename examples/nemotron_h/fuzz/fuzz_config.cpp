// libFuzzer target: the config.json reader (parse_config_json_text).
//
// Every input must either parse into a valid configuration or throw piecewise::config_error;
// any other exception escapes and aborts (a bug). On success the derived quantities and the
// list of expected checkpoint tensors are computed (they must not overflow or throw).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "fuzz_check.hpp"
#include "model/config.hpp"
#include "model/weights.hpp"
#include "piecewise/error.hpp"

using namespace nemotron_h;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  model_config c;
  try {
    c = parse_config_json_text(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
  } catch (const piecewise::config_error& e) {
    NH_FUZZ_CHECK(std::strlen(e.what()) > 0);
    return 0;
  }
  c.validate();  // what parse returned must be valid (throws config_error -> escapes as a bug below)
  NH_FUZZ_CHECK(c.num_layers() >= 1);
  NH_FUZZ_CHECK(c.pattern.size() == c.layers.size());
  NH_FUZZ_CHECK(c.d_inner() > 0 && c.conv_dim() > 0 && c.in_proj_dim() > 0 && c.q_dim() > 0 && c.kv_dim() > 0);
  NH_FUZZ_CHECK(c.num_parameters() > 0);
  NH_FUZZ_CHECK(!c.summary().empty());
  int per_kind = 0;
  for (const layer_kind_info& k : layer_kinds()) per_kind += c.count(k.kind);
  NH_FUZZ_CHECK(per_kind == c.num_layers());
  NH_FUZZ_CHECK(c.index_in_kind(c.num_layers() - 1) >= 0);
  std::int64_t params = 0;
  for (const expected_tensor& e : expected_tensors(c)) {
    std::int64_t n = 1;
    for (std::int64_t d : e.shape) {
      NH_FUZZ_CHECK(d > 0);
      n *= d;
    }
    params += n;
  }
  NH_FUZZ_CHECK(params > 0);
  NH_FUZZ_CHECK(params >= c.num_parameters());  // a tied lm_head is listed but counted once
  return 0;
}
