// Stop strings for streamed text: text goes in as it is decoded, and what comes out is safe to
// print: the text before the first occurrence of any stop string, holding back a tail that
// could still become one. Host only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nemotron_h::text {

class stop_matcher {
 public:
  /// Empty stop strings are ignored. Throws nothing.
  explicit stop_matcher(std::vector<std::string> stops);

  /// Appends `text`; returns what can be printed now. Once a stop string is found, returns the
  /// text before it and stopped() becomes true; later pushes return nothing.
  std::string push(std::string_view text);
  /// The held-back tail (nothing after a stop); the matcher is then empty.
  std::string flush();

  [[nodiscard]] bool stopped() const noexcept { return stopped_; }
  /// The stop string that matched (empty before a stop).
  [[nodiscard]] const std::string& matched() const noexcept { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::size_t longest_ = 0;
  std::string pending_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace nemotron_h::text
