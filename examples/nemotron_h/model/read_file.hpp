// Reading a small text file (config.json, hf_quant_config.json, tokenizer_config.json, ...)
// whole, with every failure a piecewise::config_error naming the file. Host only,
// header-only, so the tokenizer library can use it without linking the model library.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "piecewise/error.hpp"

namespace nemotron_h {

/// The bytes of `path`. Throws piecewise::config_error "<path>: <problem>" when the file is not
/// found, is a directory ("expected <what> file"), cannot be stat'ed or opened, holds more than
/// `max_bytes` ("<n> bytes is too large for <what>"), or is read short.
inline std::string read_small_file(const std::filesystem::path& path, std::uintmax_t max_bytes, std::string_view what) {
  std::error_code ec;
  const std::string p = path.string();
  auto fail = [&](const std::string& msg) { throw piecewise::config_error(fmt::format("{}: {}", p, msg)); };
  if (!std::filesystem::exists(path, ec)) fail("file not found");
  if (std::filesystem::is_directory(path, ec)) fail(fmt::format("is a directory, expected {} file", what));
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(fmt::format("cannot stat: {}", ec.message()));
  if (size > max_bytes) fail(fmt::format("{} bytes is too large for {}", size, what));
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open for reading");
  std::string text(static_cast<std::size_t>(size), '\0');
  f.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(f.gcount()) != size) fail("short read");
  return text;
}

}  // namespace nemotron_h
