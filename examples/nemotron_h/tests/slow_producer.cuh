// A stand-in for the kernel just before one that loads its state early under programmatic
// dependent launch (kernels/pdl.cuh): it lets the next kernel start at once, spins, and only
// then writes that kernel's inputs. A consumer that read them before its pdl_wait() would see
// the stale (poisoned) contents.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/pdl.cuh"

namespace nh_test {

/// One copy of `bytes` bytes (a multiple of 16, 16-byte aligned ends).
struct copy_region {
  const void* src = nullptr;
  void* dst = nullptr;
  std::size_t bytes = 0;
};

// Internal linkage: each test file that includes this gets its own kernel.
namespace {

__global__ void slow_copy_kernel(copy_region a, copy_region b, unsigned long long spin_ns) {
  nemotron_h::pdl_wait();
  nemotron_h::pdl_launch_dependents();
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < spin_ns);
  for (const copy_region& r : {a, b}) {
    const auto* s = static_cast<const uint4*>(r.src);
    auto* d = static_cast<uint4*>(r.dst);
    for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < r.bytes / 16; i += gridDim.x * blockDim.x)
      d[i] = s[i];
  }
}

/// Launches (programmatic dependent launch) the copies a and b after a spin of spin_ns
/// nanoseconds, with the next kernel on `s` allowed to start at its beginning. Capture-safe.
void slow_copy(copy_region a, copy_region b, unsigned long long spin_ns, cudaStream_t s) {
  nemotron_h::launch_pdl("slow_copy_kernel", slow_copy_kernel, dim3(8), dim3(256), 0, s, a, b, spin_ns);
}

}  // namespace
}  // namespace nh_test
