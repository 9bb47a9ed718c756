// Helpers for the model's error messages: every reader (config.json, safetensors, .npy) and
// the weights name the origin, quote untrusted text escaped and print shapes the same way.
// Host only (no CUDA headers); nothing here touches the GPU.
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "piecewise/error.hpp"

namespace nemotron_h {

/// At most `max` bytes of `s` with every byte outside printable ASCII written as \xNN, and
/// "..." when `s` was cut: safe to put untrusted file contents into a message.
inline std::string printable(std::string_view s, std::size_t max = 96) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c >= 32 && c < 127) out += static_cast<char>(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > max) out += "...";
  return out;
}

/// Throws piecewise::config_error "<origin>: <msg>" (origin: a file path, a preset name).
[[noreturn]] inline void fail(std::string_view origin, const std::string& msg) {
  throw piecewise::config_error(fmt::format("{}: {}", origin, msg));
}

/// A shape as "[a, b, c]".
inline std::string shape_str(const std::vector<std::int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

}  // namespace nemotron_h
