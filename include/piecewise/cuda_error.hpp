// piecewise/cuda_error.hpp — CUDA failures: cuda_error and the checking macros.
//
// PIECEWISE_CUDA_TRY(call) throws cuda_error naming the call, file:line, and the error's name
// and description, after clearing the sticky last-error state so the process stays usable.
// Nothing here launches GPU work; all of it may be used while a stream is being captured.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "piecewise/error.hpp"

namespace piecewise {

/// A CUDA runtime call failed. `code()` is the CUDA error; the message names the call,
/// file:line, and the error's name and description.
class cuda_error : public error {
 public:
  cuda_error(cudaError_t code, const std::string& what) : error(what), code_(code) {}
  [[nodiscard]] cudaError_t code() const noexcept { return code_; }

 private:
  cudaError_t code_;
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
