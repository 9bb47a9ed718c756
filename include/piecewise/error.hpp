// piecewise/error.hpp — the library's exception types and the argument-check macro.
//
// Every error the library raises derives from piecewise::error (a std::runtime_error).
// Messages are formatted with fmt and name what went wrong: the bucket, the segment and the
// layer where they apply. This header is host-only (no CUDA headers), so host tools such as
// checkpoint readers and fuzzers can use it; CUDA failures (cuda_error, PIECEWISE_CUDA_TRY)
// live in piecewise/cuda_error.hpp. Nothing here launches GPU work; all of it may be used
// while a stream is being captured.
#pragma once

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

}  // namespace piecewise

/// Throws piecewise::config_error with an fmt-formatted message when `cond` is false.
#define PIECEWISE_EXPECTS(cond, ...)                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      throw ::piecewise::config_error(::fmt::format(__VA_ARGS__));       \
    }                                                                    \
  } while (0)
