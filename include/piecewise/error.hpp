// piecewise/error.hpp — the library's exception types and checking macros.
//
// Every error the library raises derives from piecewise::error (a std::runtime_error).
// Messages are formatted with fmt and name what went wrong: the CUDA call and its
// file:line, the bucket, the segment and the layer where they apply.
// Nothing here launches GPU work; all of it may be used while a stream is being captured.
#pragma once

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace piecewise {

/// Base class of every exception thrown by piecewise.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
};

/// A CUDA runtime call failed. `code()` is the CUDA error; the message names the call,
/// file:line, and the error's name and description.
class cuda_error : public error {
 public:
  cuda_error(cudaError_t code, const std::string& what) : error(what), code_(code) {}
  [[nodiscard]] cudaError_t code() const noexcept { return code_; }

 private:
  cudaError_t code_;
};

/// Invalid argument or configuration (bad bucket list, out-of-range layer, bad buffer...).
class config_error : public error {
 public:
  using error::error;
};

/// The forward did not call its split points as the segment table says (a split at a null
/// layer, a split point never reached, a different order, a different sequence per bucket).
class schedule_error : public error {
 public:
  using error::error;
};

/// Capturing a bucket failed. The message names the bucket and the segment; the runner
/// keeps its previous graphs (if any) and can capture again.
class capture_error : public error {
 public:
  capture_error(int bucket, int segment, const std::string& what)
      : error(what), bucket_(bucket), segment_(segment) {}
  [[nodiscard]] int bucket() const noexcept { return bucket_; }
  [[nodiscard]] int segment() const noexcept { return segment_; }

 private:
  int bucket_;
  int segment_;
};

/// A token count has no capture bucket and the overflow policy says the caller must chunk.
class bucket_overflow : public error {
 public:
  bucket_overflow(long long n, int largest, const std::string& what)
      : error(what), n_(n), largest_(largest) {}
  [[nodiscard]] long long requested() const noexcept { return n_; }
  [[nodiscard]] int largest() const noexcept { return largest_; }

 private:
  long long n_;
  int largest_;
};

namespace detail {
/// Formats and throws a cuda_error for `code` returned by `call` at file:line, after
/// clearing the sticky last-error state so the process stays usable.
[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line,
                                   const std::string& context = {});
}  // namespace detail

}  // namespace piecewise

/// Evaluates a CUDA runtime call; throws piecewise::cuda_error naming the call, file:line and
/// error if it does not return cudaSuccess.
#define PIECEWISE_CUDA_TRY(call)                                                      \
  do {                                                                                \
    cudaError_t piecewise_status_ = (call);                                           \
    if (piecewise_status_ != cudaSuccess) {                                           \
      ::piecewise::detail::throw_cuda_error(piecewise_status_, #call, __FILE__, __LINE__); \
    }                                                                                 \
  } while (0)

/// Like PIECEWISE_CUDA_TRY, with extra context (for example "bucket 512, segment 3").
#define PIECEWISE_CUDA_TRY_CTX(call, ctx)                                             \
  do {                                                                                \
    cudaError_t piecewise_status_ = (call);                                           \
    if (piecewise_status_ != cudaSuccess) {                                           \
      ::piecewise::detail::throw_cuda_error(piecewise_status_, #call, __FILE__, __LINE__, (ctx)); \
    }                                                                                 \
  } while (0)

/// Checks the last kernel launch (cudaGetLastError) and throws like PIECEWISE_CUDA_TRY.
#define PIECEWISE_CHECK_LAUNCH() PIECEWISE_CUDA_TRY(cudaGetLastError())

/// Throws piecewise::config_error with an fmt-formatted message when `cond` is false.
#define PIECEWISE_EXPECTS(cond, ...)                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      throw ::piecewise::config_error(::fmt::format(__VA_ARGS__));       \
    }                                                                    \
  } while (0)
