#include "runner/gpu_probe.hpp"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdlib>

#include <fmt/format.h>

namespace nemotron_h {

namespace {

std::string version_string(int v) { return fmt::format("{}.{}", v / 1000, (v % 1000) / 10); }

/// Empty when libcuda.so.1 (the driver's user-space library) can be loaded, else dlerror().
std::string libcuda_load_error() {
  void* h = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* e = ::dlerror();
    return e != nullptr ? e : "dlopen failed";
  }
  ::dlclose(h);
  return {};
}

}  // namespace

std::string cuda_build_version() { return version_string(CUDART_VERSION); }

gpu_probe_result probe_gpu() noexcept {
  gpu_probe_result r;
  try {
    const std::string built = cuda_build_version();
    if (const std::string e = libcuda_load_error(); !e.empty()) {
      r.problem = fmt::format("no NVIDIA driver found: libcuda.so.1 cannot be loaded ({})", e);
      return r;
    }
    int driver = 0;
    const cudaError_t dv = cudaDriverGetVersion(&driver);
    const std::string driver_text = dv == cudaSuccess && driver > 0 ? version_string(driver) : std::string("unknown");
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaErrorInsufficientDriver) {
      r.problem = fmt::format(
          "the NVIDIA driver is too old: it supports CUDA {}, this build needs CUDA {} (update the driver)",
          driver_text, built);
    } else if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0)) {
      const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
      r.problem = fmt::format("the NVIDIA driver (CUDA {}) is loaded but sees no CUDA device{}", driver_text,
                              visible != nullptr ? fmt::format(" (CUDA_VISIBLE_DEVICES='{}')", visible) : "");
    } else if (err != cudaSuccess) {
      r.problem = fmt::format("cudaGetDeviceCount failed: {} ({}); driver CUDA {}, runtime CUDA {}",
                              cudaGetErrorString(err), cudaGetErrorName(err), driver_text, built);
    } else {
      cudaDeviceProp prop{};
      const cudaError_t pe = cudaGetDeviceProperties(&prop, 0);
      if (pe != cudaSuccess) {
        r.problem = fmt::format("device 0 cannot be queried: {}", cudaGetErrorString(pe));
      } else {
        r.usable = true;
        r.device = prop.name;
      }
    }
    if (!r.usable) (void)cudaGetLastError();  // clear the error for whoever asks next
  } catch (...) {
    r.usable = false;
    r.problem = "probing the GPU failed (out of host memory)";
  }
  return r;
}

}  // namespace nemotron_h
