#include "piecewise/cuda_error.hpp"

namespace piecewise::detail {

void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line,
                      const std::string& context) {
  // Clear the (non-sticky) last error so later calls on this thread start clean.
  (void)cudaGetLastError();
  std::string msg = fmt::format("CUDA call `{}` failed at {}:{}: {} ({})", call, file, line,
                                cudaGetErrorName(code), cudaGetErrorString(code));
  if (!context.empty()) msg += fmt::format(" [{}]", context);
  throw cuda_error(code, msg);
}

}  // namespace piecewise::detail
