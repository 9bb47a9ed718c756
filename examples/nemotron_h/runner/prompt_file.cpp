#include "runner/prompt_file.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/messages.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {

namespace {

std::string strip_cr(std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

template <class T>
T number(const nlohmann::json& v, const std::string& where, const char* key) {
  const bool ok = std::is_integral_v<T> ? v.is_number_integer() : v.is_number();
  if (!ok)
    throw piecewise::config_error(fmt::format("{}: \"{}\" must be {}, not {}", where, key,
                                              std::is_integral_v<T> ? "an integer" : "a number", printable(v.dump())));
  if constexpr (std::is_integral_v<T>) {
    const auto x = v.get<long long>();
    if (x < static_cast<long long>(std::numeric_limits<T>::min()) || x > static_cast<long long>(std::numeric_limits<T>::max()))
      throw piecewise::config_error(fmt::format("{}: \"{}\" {} is out of range", where, key, x));
    return static_cast<T>(x);
  } else {
    return static_cast<T>(v.get<double>());
  }
}

text_prompt from_json(const std::string& line, const std::string& where, const sampling_settings& defaults) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw piecewise::config_error(fmt::format("{}: invalid JSON ({})", where, e.what()));
  }
  if (!j.is_object()) throw piecewise::config_error(fmt::format("{}: a JSONL line must be an object", where));
  text_prompt p;
  p.where = where;
  p.sampling = defaults;
  bool have_prompt = false;
  for (const auto& [key, v] : j.items()) {
    if (key == "prompt") {
      if (!v.is_string()) throw piecewise::config_error(fmt::format("{}: \"prompt\" must be a string", where));
      p.text = v.get<std::string>();
      have_prompt = true;
    } else if (key == "max_tokens") {
      p.sampling.max_tokens = number<int>(v, where, "max_tokens");
    } else if (key == "temperature") {
      p.sampling.temperature = number<float>(v, where, "temperature");
    } else if (key == "top_k") {
      p.sampling.top_k = number<int>(v, where, "top_k");
    } else if (key == "top_p") {
      p.sampling.top_p = number<float>(v, where, "top_p");
    } else if (key == "min_p") {
      p.sampling.min_p = number<float>(v, where, "min_p");
    } else if (key == "seed") {
      if (!v.is_number_unsigned())
        throw piecewise::config_error(fmt::format("{}: \"seed\" must be a non-negative integer", where));
      p.sampling.seed = v.get<std::uint64_t>();
      p.own_seed = true;
    } else if (key == "stop") {
      p.sampling.stop.clear();
      if (v.is_string()) {
        p.sampling.stop.push_back(v.get<std::string>());
      } else if (v.is_array()) {
        for (const auto& s : v) {
          if (!s.is_string()) throw piecewise::config_error(fmt::format("{}: \"stop\" must hold strings", where));
          p.sampling.stop.push_back(s.get<std::string>());
        }
      } else {
        throw piecewise::config_error(fmt::format("{}: \"stop\" must be a string or a list of strings", where));
      }
    } else {
      throw piecewise::config_error(fmt::format(
          "{}: unknown key \"{}\" (prompt, max_tokens, temperature, top_k, top_p, min_p, seed, stop)", where,
          printable(key)));
    }
  }
  if (!have_prompt) throw piecewise::config_error(fmt::format("{}: no \"prompt\"", where));
  check_sampling(p.sampling, where);
  return p;
}

}  // namespace

std::vector<text_prompt> read_prompt_file(const std::filesystem::path& path, const sampling_settings& defaults) {
  std::ifstream f(path, std::ios::binary);
  std::error_code ec;
  if (!f || std::filesystem::is_directory(path, ec))
    throw piecewise::config_error(fmt::format("--prompt-file '{}': cannot be read", path.string()));
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) lines.push_back(strip_cr(std::move(line)));
  bool jsonl = path.extension() == ".jsonl";
  for (const std::string& l : lines) {
    if (blank(l)) continue;
    jsonl = jsonl || l.find_first_not_of(" \t") != std::string::npos && l[l.find_first_not_of(" \t")] == '{';
    break;
  }
  std::vector<text_prompt> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (blank(lines[i])) continue;
    const std::string where = fmt::format("{}:{}", path.string(), i + 1);
    if (jsonl) {
      out.push_back(from_json(lines[i], where, defaults));
    } else {
      out.push_back({lines[i], defaults, where, false});
    }
  }
  if (out.empty()) throw piecewise::config_error(fmt::format("--prompt-file '{}' holds no prompt", path.string()));
  return out;
}

}  // namespace nemotron_h
