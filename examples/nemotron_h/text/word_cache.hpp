// The BPE word cache: word bytes -> ids, an open-addressing table over two flat arenas (one
// allocation per arena growth instead of one per word). Fixed capacity; inserts stop when it
// is full (as HF's cache does). Not thread-safe by itself: the tokenizer locks around it.
// Host only, internal to nh_text.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <string_view>
#include <vector>

namespace nemotron_h::text::detail {

class word_cache {
 public:
  static constexpr std::size_t kSlots = std::size_t{1} << 19;  // a power of two
  static constexpr std::size_t kMaxEntries = kSlots / 2;       // load factor at most 1/2
  static constexpr std::size_t kMaxWord = 128;                 // longer words are not cached

  word_cache() = default;  // the table is allocated by the first insert

  /// Appends the cached ids of `word` to `out` and returns true, or returns false.
  bool find(std::string_view word, std::vector<std::uint32_t>& out) const {
    if (slots_.empty()) return false;
    const std::uint64_t h = hash(word);
    for (std::size_t i = h & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
      const slot& s = slots_[i];
      if (s.hash == 0) return false;
      if (s.hash == h && s.key_len == word.size() && std::memcmp(keys_.data() + s.key_off, word.data(), word.size()) == 0) {
        out.insert(out.end(), ids_.begin() + s.ids_off, ids_.begin() + s.ids_off + s.n_ids);
        return true;
      }
    }
  }

  /// Remembers `ids` for `word` (when there is room and the word is short enough).
  void insert(std::string_view word, const std::uint32_t* ids, std::size_t n) {
    if (size_ >= kMaxEntries || word.size() > kMaxWord || n > 0xFFFF) return;
    if (slots_.empty()) slots_.resize(kSlots);
    const std::uint64_t h = hash(word);
    std::size_t i = h & (kSlots - 1);
    while (slots_[i].hash != 0) {
      const slot& s = slots_[i];
      if (s.hash == h && s.key_len == word.size() && std::memcmp(keys_.data() + s.key_off, word.data(), word.size()) == 0) return;
      i = (i + 1) & (kSlots - 1);
    }
    slots_[i] = {h, static_cast<std::uint32_t>(keys_.size()), static_cast<std::uint32_t>(ids_.size()),
                 static_cast<std::uint16_t>(word.size()), static_cast<std::uint16_t>(n)};
    keys_.insert(keys_.end(), word.begin(), word.end());
    ids_.insert(ids_.end(), ids, ids + n);
    ++size_;
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  struct slot {
    std::uint64_t hash;  // 0 = empty
    std::uint32_t key_off, ids_off;
    std::uint16_t key_len, n_ids;
  };
  static std::uint64_t hash(std::string_view w) {
    const std::uint64_t h = std::hash<std::string_view>{}(w);
    return h == 0 ? 1 : h;
  }
  std::vector<slot> slots_;
  std::vector<char> keys_;
  std::vector<std::uint32_t> ids_;
  std::size_t size_ = 0;
};

}  // namespace nemotron_h::text::detail
