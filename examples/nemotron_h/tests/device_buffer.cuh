// An owning device buffer for the NemotronH GPU tests (move-only).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "piecewise/cuda_error.hpp"

namespace nh_test {

template <typename T>
class dbuf {
 public:
  dbuf() = default;
  /// n elements (one is allocated for n == 0, so get() is never null).
  explicit dbuf(std::size_t n) : n_(n) { PIECEWISE_CUDA_TRY(cudaMalloc(&p_, (n ? n : 1) * sizeof(T))); }
  dbuf(const dbuf&) = delete;
  dbuf& operator=(const dbuf&) = delete;
  dbuf(dbuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  dbuf& operator=(dbuf&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~dbuf() {
    if (p_ != nullptr) cudaFree(p_);
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }
  void upload(const std::vector<T>& h) {
    PIECEWISE_CUDA_TRY(cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    // A pageable cudaMemcpy to the device may return before its DMA lands, and the tests'
    // kernels run on non-blocking streams, which do not wait for it.
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    PIECEWISE_CUDA_TRY(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  /// All bytes 0xFF: NaN for bf16 and fp32. Synchronous (ordered before any later stream work).
  void poison() {
    PIECEWISE_CUDA_TRY(cudaMemset(p_, 0xFF, (n_ ? n_ : 1) * sizeof(T)));
    PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace nh_test
