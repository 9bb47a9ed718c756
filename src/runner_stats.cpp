// One-line summaries of update() and validation results.
#include "piecewise/runner_stats.hpp"

#include <fmt/format.h>

namespace piecewise {

std::string update_report::to_string() const {
  return fmt::format("update: {} buckets, {} segment graphs updated in place, {} re-instantiated ({:.1f} ms)",
                     buckets, segments_updated, segments_reinstantiated, ms);
}

std::string validation_report::to_string() const {
  if (bitwise_equal) return fmt::format("replay == eager, bit for bit ({} bytes)", bytes_compared);
  return fmt::format("replay != eager: {} of {} bytes differ, max |diff| {:.3g}; first: {}", mismatched_bytes,
                     bytes_compared, max_abs_diff, first_mismatch);
}

}  // namespace piecewise
