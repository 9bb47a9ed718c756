#include "text/stream_decoder.hpp"

#include "text/utf8.hpp"

namespace nemotron_h::text {

std::string stream_decoder::push(std::uint32_t id) {
  tok_->append_bytes(id, pending_, skip_special_);
  std::string out;
  const std::size_t held = append_utf8_lossy(out, pending_, /*hold_tail=*/true);
  pending_.erase(0, pending_.size() - held);
  return out;
}

std::string stream_decoder::flush() {
  std::string out;
  append_utf8_lossy(out, pending_);
  pending_.clear();
  return out;
}

}  // namespace nemotron_h::text
