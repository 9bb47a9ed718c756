// BPE merges by pair: (left id, right id) -> (rank, merged id), an open-addressing table with
// linear probing (one flat array, no node per entry). Built once, then read-only (thread-safe
// reads). Host only, internal to nh_text.
#pragma once

#include <cstdint>
#include <vector>

namespace nemotron_h::text::detail {

class merge_table {
 public:
  struct merge {
    std::uint32_t rank, merged;
  };

  /// Sizes the table for `n` merges.
  void reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < 2 * n + 2) cap <<= 1;
    entries_.assign(cap, entry{});
    mask_ = cap - 1;
    size_ = 0;
  }

  /// Sets the merge of (a, b), replacing an earlier one (a later rank for the same pair wins,
  /// as when HF collects its merges into a map).
  void set(std::uint32_t a, std::uint32_t b, merge m) {
    if (2 * (size_ + 1) > entries_.size()) grow();
    entry& e = slot(key(a, b));
    if (!e.used) ++size_;
    e = {key(a, b), m, true};
  }

  /// The merge of (a, b), or nullptr.
  [[nodiscard]] const merge* find(std::uint32_t a, std::uint32_t b) const {
    if (entries_.empty()) return nullptr;
    const std::uint64_t k = key(a, b);
    for (std::size_t i = mix(k) & mask_;; i = (i + 1) & mask_) {
      const entry& e = entries_[i];
      if (!e.used) return nullptr;
      if (e.k == k) return &e.m;
    }
  }

 private:
  struct entry {
    std::uint64_t k = 0;
    merge m{};
    bool used = false;
  };
  static constexpr std::uint64_t key(std::uint32_t a, std::uint32_t b) { return (std::uint64_t{a} << 32) | b; }
  static constexpr std::uint64_t mix(std::uint64_t k) {  // splitmix64 finalizer
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebull;
    return k ^ (k >> 31);
  }
  entry& slot(std::uint64_t k) {
    for (std::size_t i = mix(k) & mask_;; i = (i + 1) & mask_) {
      if (!entries_[i].used || entries_[i].k == k) return entries_[i];
    }
  }
  void grow() {
    std::vector<entry> old;
    old.swap(entries_);
    reserve(old.empty() ? 8 : old.size());
    for (const entry& e : old) {
      if (e.used) set(static_cast<std::uint32_t>(e.k >> 32), static_cast<std::uint32_t>(e.k), e.m);
    }
  }
  std::vector<entry> entries_;
  std::size_t mask_ = 0, size_ = 0;
};

}  // namespace nemotron_h::text::detail
