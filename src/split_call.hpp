// Internal: calls a split callback with the context every failure message carries.
#pragma once

#include <exception>
#include <string>

#include <fmt/format.h>

#include "piecewise/error.hpp"
#include "piecewise/segment_table.hpp"

namespace piecewise::detail {

/// Calls `sp`'s callback; an exception from it is rethrown as piecewise::error naming the
/// runner, split point, layer, token counts and phase, with the original nested
/// (std::rethrow_if_nested reaches it).
inline void invoke_split(const std::string& runner, const split_point& sp, const split_args& a,
                         const char* phase) {
  try {
    sp.fn(a);
  } catch (const std::exception& e) {
    std::throw_with_nested(error(fmt::format(
        "graph_runner '{}': split point '{}' at layer {} failed during {} ({} real tokens, "
        "bucket {}): {}", runner, sp.name, a.layer, phase, a.real_tokens, a.padded_tokens, e.what())));
  }
}

}  // namespace piecewise::detail
