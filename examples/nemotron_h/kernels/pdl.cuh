// Programmatic dependent launch (Hopper and later): a kernel launched with launch_pdl may be
// scheduled while the kernel before it on the stream drains, so the launch gap between two
// kernels is hidden. Such a kernel must call pdl_wait() before it touches memory that the
// previous kernel writes (it returns once that kernel has completed and its writes are
// visible). The next kernel may start once this one's blocks have all exited or triggered, so
// "each kernel waited for the one before" is what makes everything older visible to it: a
// grid none of whose blocks waits breaks that chain (our kernels call it in every block, before
// any early exit). Loads of data that no kernel still
// running can write (weights; a state that only an earlier kernel wrote) may come first. Both
// work inside stream capture (the graph gets a programmatic edge). NH_PDL=0 in the environment
// launches normally (read once), for A/B measurements.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <utility>

#include "piecewise/cuda_error.hpp"

namespace nemotron_h {

/// Waits for the previous kernel of the stream when this one was launched with launch_pdl
/// (a no-op otherwise, and before sm_90).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// Lets the next kernel of the stream (when launched with launch_pdl) start now rather than when
/// this one's blocks exit: it begins its part before pdl_wait() (loads of data that this kernel
/// and the ones before it do not write) while this one still runs. Its pdl_wait() still
/// returns only after this whole kernel has finished. Call it after this kernel's own
/// pdl_wait(), so that everything before this kernel has finished when the next one starts.
/// A no-op without a dependent launch and before sm_90.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/// Whether launch_pdl sets the attribute: a device of compute capability 9.0 or later and
/// NH_PDL not "0". Host only.
inline bool pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("NH_PDL");
    if (e != nullptr && e[0] == '0') return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return on;
}

/// Launches `kernel<<<grid, block, smem, s>>>(args...)` with programmatic stream serialization
/// (when pdl_enabled()). The kernel must begin with pdl_wait(). Throws piecewise::cuda_error
/// naming `what`. Capture-safe.
template <typename... Params, typename... Args>
void launch_pdl(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t s,
                Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  PIECEWISE_CUDA_TRY_CTX(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...), what);
}

}  // namespace nemotron_h
