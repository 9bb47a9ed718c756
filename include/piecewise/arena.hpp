// piecewise/arena.hpp — a static device arena: one cudaMalloc, fixed addresses.
// Its memory is a device_buffer, so it is counted in live_handles().
//
// The library allocates no activation memory. A model sizes its buffers for the largest
// bucket, takes them from one arena, and every bucket's graphs reuse the same addresses.
// allocate() is a bump allocator (no per-buffer free); reset() forgets every allocation.
// Construction and allocate() are not capture-safe in the sense that they must not be
// called while a graph is captured from these buffers' users (construction calls
// cudaMalloc); allocate() itself launches nothing.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "piecewise/cuda_error.hpp"
#include "piecewise/handles.hpp"

namespace piecewise {

class device_arena {
 public:
  struct allocation {
    std::string name;
    std::size_t offset = 0;
    std::size_t bytes = 0;
  };

  /// Allocates `capacity` bytes of device memory at once. Throws config_error for a zero
  /// capacity or an alignment that is not a power of two, cuda_error if cudaMalloc fails
  /// (the message names the size).
  explicit device_arena(std::size_t capacity, std::size_t alignment = 256)
      : memory_(checked(capacity, alignment), "device_arena"), capacity_(capacity),
        alignment_(alignment) {}
  device_arena(device_arena&& o) noexcept
      : memory_(std::move(o.memory_)), capacity_(o.capacity_), alignment_(o.alignment_),
        used_(std::exchange(o.used_, 0)), allocations_(std::move(o.allocations_)) {}
  device_arena& operator=(device_arena&&) = delete;
  device_arena(const device_arena&) = delete;
  device_arena& operator=(const device_arena&) = delete;

  /// `count` elements of T, aligned; the name appears in errors and listings. Throws
  /// config_error naming the buffer, its size and what is left when the arena is full.
  template <typename T>
  [[nodiscard]] T* allocate(std::size_t count, std::string_view name) {
    return static_cast<T*>(allocate_bytes(count * sizeof(T), name));
  }

  [[nodiscard]] void* allocate_bytes(std::size_t bytes, std::string_view name) {
    const std::size_t offset = (used_ + alignment_ - 1) & ~(alignment_ - 1);
    PIECEWISE_EXPECTS(bytes <= capacity_ && offset <= capacity_ - bytes,
                      "device_arena: buffer '{}' needs {} bytes but only {} of {} are left", name,
                      bytes, offset <= capacity_ ? capacity_ - offset : 0, capacity_);
    used_ = offset + bytes;
    allocations_.push_back({std::string(name), offset, bytes});
    return static_cast<std::byte*>(memory_.data()) + offset;
  }

  /// Forgets every allocation (their pointers must no longer be used).
  void reset() noexcept {
    used_ = 0;
    allocations_.clear();
  }

  [[nodiscard]] void* data() const noexcept { return memory_.data(); }
  [[nodiscard]] std::size_t used() const noexcept { return used_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] const std::vector<allocation>& allocations() const noexcept { return allocations_; }

 private:
  static std::size_t checked(std::size_t capacity, std::size_t alignment) {
    PIECEWISE_EXPECTS(capacity > 0, "device_arena: capacity must be positive");
    PIECEWISE_EXPECTS(alignment > 0 && (alignment & (alignment - 1)) == 0,
                      "device_arena: alignment {} is not a power of two", alignment);
    return capacity;
  }

  device_buffer memory_;
  std::size_t capacity_;
  std::size_t alignment_;
  std::size_t used_ = 0;
  std::vector<allocation> allocations_;
};

}  // namespace piecewise
