#include "runner/sampling_settings.hpp"

#include <fmt/format.h>

#include "piecewise/error.hpp"

namespace nemotron_h {

std::string sampling_settings::describe() const {
  if (!sampled()) return "greedy";
  std::string s = fmt::format("temperature {:g}", temperature);
  if (top_k > 0) s += fmt::format(", top-k {}", top_k);
  if (top_p < 1.0f) s += fmt::format(", top-p {:g}", top_p);
  if (min_p > 0.0f) s += fmt::format(", min-p {:g}", min_p);
  return s + fmt::format(", seed {}", seed);
}

void check_sampling(const sampling_settings& s, const std::string& where) {
  auto bad = [&](const char* field, const std::string& value, const char* range) {
    throw piecewise::config_error(fmt::format("{}: {} {} is out of range ({})", where, field, value, range));
  };
  if (!(s.temperature >= 0.0f && s.temperature <= 100.0f)) bad("temperature", fmt::format("{:g}", s.temperature), "0..100, 0 = greedy");
  if (s.top_k < 0 || s.top_k > (1 << 30)) bad("top_k", fmt::format("{}", s.top_k), "0 = off, or a count");
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) bad("top_p", fmt::format("{:g}", s.top_p), "(0, 1], 1 = off");
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) bad("min_p", fmt::format("{:g}", s.min_p), "[0, 1], 0 = off");
  if (s.max_tokens < 1 || s.max_tokens > (1 << 20)) bad("max_tokens", fmt::format("{}", s.max_tokens), "1..1048576");
}

}  // namespace nemotron_h
