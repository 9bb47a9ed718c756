// A buffer plan: every device buffer of one arena is stated once (name, size, who receives
// its address); the plan gives the arena's exact size and, once allocated, hands out the
// addresses. Nothing is sized twice and no slack is added by hand.
//
// Building a plan is host-only; allocate() calls cudaMalloc (through piecewise::device_arena,
// so live_handles() counts it) and is not capture-safe.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "piecewise/arena.hpp"

namespace nemotron_h {

class buffer_plan {
 public:
  /// `alignment`: every buffer starts at a multiple of it (the arena's alignment).
  explicit buffer_plan(std::size_t alignment = 256) : alignment_(alignment) {}

  /// Adds a buffer of `bytes` named `name`; `bind` receives its address in allocate(). A
  /// buffer of 0 bytes takes no memory and `bind` is never called (its pointer stays null).
  void add_bytes(std::string name, std::size_t bytes, std::function<void(void*)> bind) {
    if (bytes == 0) return;
    entries_.push_back({std::move(name), bytes, std::move(bind)});
  }
  /// Adds `count` elements of T whose address goes to `dst` (which must outlive allocate()).
  template <typename T>
  void add(std::string name, std::size_t count, T*& dst) {
    add_bytes(std::move(name), count * sizeof(T), [&dst](void* p) { dst = static_cast<T*>(p); });
  }

  /// The arena size that holds every buffer: the sum of the sizes, each rounded up to the
  /// alignment.
  [[nodiscard]] std::size_t bytes() const noexcept {
    std::size_t total = 0;
    for (const auto& e : entries_) total += aligned(e.bytes);
    return total;
  }

  /// Allocates one arena of exactly bytes() and gives every buffer its address, in the order
  /// they were added. Throws piecewise::config_error for an empty plan, piecewise::cuda_error
  /// naming the size when cudaMalloc fails.
  [[nodiscard]] std::unique_ptr<piecewise::device_arena> allocate() const {
    auto arena = std::make_unique<piecewise::device_arena>(bytes(), alignment_);
    for (const auto& e : entries_) e.bind(arena->allocate_bytes(e.bytes, e.name));
    return arena;
  }

 private:
  struct entry {
    std::string name;
    std::size_t bytes;
    std::function<void(void*)> bind;
  };
  [[nodiscard]] std::size_t aligned(std::size_t b) const noexcept { return (b + alignment_ - 1) / alignment_ * alignment_; }

  std::size_t alignment_;
  std::vector<entry> entries_;
};

}  // namespace nemotron_h
