#include "text/stop_strings.hpp"

#include <algorithm>
#include <utility>

namespace nemotron_h::text {

stop_matcher::stop_matcher(std::vector<std::string> stops) {
  for (std::string& s : stops) {
    if (s.empty()) continue;
    longest_ = std::max(longest_, s.size());
    stops_.push_back(std::move(s));
  }
}

std::string stop_matcher::push(std::string_view text) {
  if (stopped_) return {};
  pending_.append(text);
  if (stops_.empty()) return std::exchange(pending_, {});
  // The earliest match wins; among matches at the same place, the longest.
  std::size_t at = std::string::npos;
  for (const std::string& s : stops_) {
    const std::size_t p = pending_.find(s);
    if (p != std::string::npos && (p < at || (p == at && s.size() > matched_.size()))) {
      at = p;
      matched_ = s;
    }
  }
  if (at != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, at);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  std::size_t keep = 0;
  const std::size_t max_keep = std::min(pending_.size(), longest_ - 1);
  for (std::size_t k = max_keep; k > 0 && keep == 0; --k) {
    const std::string_view tail(pending_.data() + pending_.size() - k, k);
    for (const std::string& s : stops_)
      if (s.size() > k && std::string_view(s).substr(0, k) == tail) {
        keep = k;
        break;
      }
  }
  std::string out = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string stop_matcher::flush() {
  if (stopped_) return {};
  return std::exchange(pending_, {});
}

}  // namespace nemotron_h::text
