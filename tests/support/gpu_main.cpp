// Catch2 main for GPU test executables.
//
// Without a usable CUDA device the executable prints why and exits with 77, which ctest
// (SKIP_RETURN_CODE 77) reports as skipped: GPU tests never pass vacuously. With
// PIECEWISE_REQUIRE_GPU=1 in the environment (tests/gpu_suite.sh sets it) a missing device
// is a failure instead. Listing test names (used by catch_discover_tests at build time)
// works without a GPU. A test spec that matches no test case fails (catch_session.hpp).
#define CATCH_CONFIG_RUNNER
#include "catch_session.hpp"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--list", 6) == 0 || std::strcmp(argv[i], "-l") == 0 ||
        std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--help") == 0) {
      listing = true;
    }
  }
  if (!listing) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
      const char* require = std::getenv("PIECEWISE_REQUIRE_GPU");
      std::string why = err != cudaSuccess
                            ? std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(err)
                            : std::string("no CUDA device found");
      // Without a driver at all the runtime also says "insufficient driver": tell them apart.
      if (err == cudaErrorInsufficientDriver) {
        if (void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) dlclose(h);
        else why = "no NVIDIA driver found (libcuda.so.1 cannot be loaded)";
      }
      if (require != nullptr && std::string(require) == "1") {
        std::fprintf(stderr, "FAILED: GPU required (PIECEWISE_REQUIRE_GPU=1) but %s\n", why.c_str());
        return 1;
      }
      std::printf("SKIPPED: this GPU test needs a CUDA device (%s)\n", why.c_str());
      return 77;
    }
  }
  return piecewise_test::run_catch_session(argc, argv);
}
