#include "piecewise/padding.hpp"

#include <algorithm>
#include <cstdint>

namespace piecewise {
namespace {

// Grid-stride over the padded region in units of T (uint4 when everything is 16-byte
// aligned, else bytes). Row r, unit u lives at base + r * pitch_units + u.
template <typename T>
__global__ void zero_rows_kernel(T* base, std::size_t pitch_units, std::size_t row_units,
                                 const int* device_real, int padded) {
  const int real = *device_real;
  if (real >= padded) return;
  const int first = real < 0 ? 0 : real;
  const std::size_t total = static_cast<std::size_t>(padded - first) * row_units;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t r = first + i / row_units;
    const std::size_t u = i % row_units;
    base[r * pitch_units + u] = T{};
  }
}

__global__ void set_int_kernel(int* dst, int value) { *dst = value; }

}  // namespace

void zero_padded_rows(const row_buffer& b, const int* device_real, int padded, cudaStream_t s) {
  PIECEWISE_EXPECTS(padded <= b.rows,
                    "zero_padded_rows: buffer '{}' has {} rows but the padded count is {}", b.name,
                    b.rows, padded);
  if (padded <= 0) return;
  const std::size_t pitch = b.stride();
  const bool vec = (reinterpret_cast<std::uintptr_t>(b.data) % 16 == 0) && pitch % 16 == 0 &&
                   b.row_bytes % 16 == 0;
  const std::size_t unit = vec ? 16 : 1;
  const std::size_t row_units = b.row_bytes / unit;
  const std::size_t upper = static_cast<std::size_t>(padded) * row_units;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<std::size_t>((upper + threads - 1) / threads, 1024));
  if (vec) {
    zero_rows_kernel<uint4><<<blocks, threads, 0, s>>>(static_cast<uint4*>(b.data), pitch / unit,
                                                       row_units, device_real, padded);
  } else {
    zero_rows_kernel<unsigned char><<<blocks, threads, 0, s>>>(
        static_cast<unsigned char*>(b.data), pitch, row_units, device_real, padded);
  }
  PIECEWISE_CUDA_TRY_CTX(cudaGetLastError(), fmt::format("zero_padded_rows('{}')", b.name));
}

void set_device_int(int* dst, int value, cudaStream_t s) {
  set_int_kernel<<<1, 1, 0, s>>>(dst, value);
  PIECEWISE_CUDA_TRY_CTX(cudaGetLastError(), "set_device_int");
}

}  // namespace piecewise
