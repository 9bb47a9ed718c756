// Finds out whether a CUDA GPU is usable and, when it is not, says what was found: no NVIDIA
// driver (libcuda cannot be loaded), a driver older than this build's CUDA runtime (with both
// versions), a driver that sees no device, or another CUDA error.
//
// Host code that calls the CUDA runtime (cudaGetDeviceCount, cudaDriverGetVersion, ...); it
// allocates nothing on a device. Not capture-safe (not meant to run during a capture).
#pragma once

#include <string>

namespace nemotron_h {

/// What probe_gpu found.
struct gpu_probe_result {
  bool usable = false;     ///< device 0 can be used
  std::string device;      ///< its name (usable only)
  std::string problem;     ///< why no GPU is usable: one sentence with the versions where known
};

/// Probes the CUDA driver and device 0. Never throws.
gpu_probe_result probe_gpu() noexcept;

/// The CUDA runtime version this build was compiled with, as "13.0".
std::string cuda_build_version();

}  // namespace nemotron_h
