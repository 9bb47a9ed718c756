// Nesting depth of JSON text, checked before parsing so a forged file cannot make the parser
// recurse without bound. Host only.
#pragma once

#include <algorithm>
#include <string_view>

namespace nemotron_h {

/// Deepest bracket nesting ('{' or '[') of `text`, ignoring brackets inside strings.
inline int json_depth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_str = false, esc = false;
  for (char c : text) {
    if (in_str) {
      if (esc) esc = false;
      else if (c == '\\') esc = true;
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') in_str = true;
    else if (c == '{' || c == '[') max_depth = std::max(max_depth, ++depth);
    else if (c == '}' || c == ']') --depth;
  }
  return max_depth;
}

}  // namespace nemotron_h
