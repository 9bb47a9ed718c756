// Minimal .npy (NumPy format 1.0 / 2.0 / 3.0) writer and reader for float arrays, host only.
// Used for --logits-out and for reading the transformers fixture's logits.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

namespace nemotron_h {

/// A float64 array read from a .npy file (C order).
struct npy_array {
  std::vector<std::int64_t> shape;
  std::vector<double> data;
};

/// Writes `data` (C order, `shape` of any rank, product must equal data.size()) as '<f4'.
/// Throws piecewise::config_error on a size mismatch or an I/O error.
void write_npy(const std::filesystem::path& path, const std::vector<float>& data,
               const std::vector<std::int64_t>& shape);
/// Same, from float64 values (stored as float32).
void write_npy(const std::filesystem::path& path, const std::vector<double>& data,
               const std::vector<std::int64_t>& shape);

/// Serialises to bytes instead of a file (same format as write_npy).
std::vector<std::uint8_t> make_npy(const std::vector<float>& data, const std::vector<std::int64_t>& shape);

/// Reads a '<f4' or '<f8' C-order .npy file (also '|'/'=' byte order markers on little-endian).
/// Throws piecewise::config_error naming the file for: bad magic, unsupported version, a
/// header that is not a dict with descr/fortran_order/shape, unsupported dtype, Fortran
/// order, or a data size that does not match the shape.
npy_array read_npy(const std::filesystem::path& path);
/// Parses .npy bytes; `name` names the source in messages.
npy_array parse_npy(const std::uint8_t* data, std::size_t size, std::string_view name);

}  // namespace nemotron_h
