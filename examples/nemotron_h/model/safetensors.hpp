// Safetensors reading (single files and sharded checkpoints) and writing, host only.
//
// Format: 8-byte little-endian header length n, n bytes of JSON mapping tensor names to
// {dtype, shape, data_offsets: [begin, end]} (offsets relative to the byte after the header),
// an optional "__metadata__" object of strings, then the raw little-endian data.
//
// Every size and offset read from a file is checked against the file's length before it is
// used, and nothing is allocated from an unchecked size. Errors are piecewise::config_error
// naming the file (and the tensor where there is one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nemotron_h {

/// Element types the reader understands: the floating-point ones convert to bf16 or fp32 on
/// read (F8_E4M3 exactly); U8 (NVFP4's packed e2m1 pairs) is read raw only.
enum class st_dtype : std::uint8_t { bf16, f16, f32, f64, f8_e4m3, u8 };

/// "BF16", "F16", "F32", "F64", "F8_E4M3", "U8".
const char* st_dtype_name(st_dtype t) noexcept;
/// Bytes per element: 2, 2, 4, 8, 1, 1.
std::size_t st_dtype_size(st_dtype t) noexcept;

/// One tensor entry of a header. Offsets are relative to the start of the data section.
struct st_tensor_info {
  std::string name;
  st_dtype dtype = st_dtype::bf16;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  [[nodiscard]] std::int64_t numel() const noexcept;
  [[nodiscard]] std::uint64_t nbytes() const noexcept { return end - begin; }
};

/// A parsed, fully validated header.
struct st_header {
  std::vector<st_tensor_info> tensors;  ///< sorted by name
  std::map<std::string, std::string> metadata;
  std::uint64_t data_offset = 0;  ///< absolute file offset of the data section (8 + n)
  std::uint64_t data_size = 0;    ///< bytes of the data section
  /// The entry called `name`, or nullptr.
  [[nodiscard]] const st_tensor_info* find(std::string_view name) const noexcept;
};

/// Largest header accepted (as the reference implementation: 100 MB).
inline constexpr std::uint64_t kMaxSafetensorsHeader = 100'000'000;

/// Parses and validates the header of a safetensors file held entirely in `data[0, size)`.
/// `name` names the file in messages. Pure (no I/O): the fuzz entry point.
/// Throws piecewise::config_error for: fewer than 8 bytes, a header length larger than the
/// cap or than the bytes that follow, invalid or non-object JSON, entries that are not
/// objects, unknown or unsupported dtypes, shapes that are not arrays of non-negative
/// integers, data_offsets that are not two integers, end < begin, end beyond the data,
/// shape product x element size != end - begin, overlapping tensors, non-string metadata.
st_header parse_safetensors_header(const std::uint8_t* data, std::size_t size, std::string_view name);

/// Parses the JSON header text when the data section that follows has `data_size` bytes
/// (used for files, where only the header is read). Same checks and errors as above;
/// `data_offset` is set to 8 + header_json.size().
st_header parse_safetensors_header_json(std::string_view header_json, std::uint64_t data_size,
                                        std::string_view name);

/// One safetensors file on disk: the header is read and checked on construction, tensor data
/// on demand. Not thread-safe per object (reads share one stream).
class safetensors_file {
 public:
  /// Opens `path` and validates its header against the file's length.
  /// Throws piecewise::config_error naming the file.
  explicit safetensors_file(std::filesystem::path path);
  ~safetensors_file();
  safetensors_file(safetensors_file&&) noexcept;
  safetensors_file& operator=(safetensors_file&&) noexcept;
  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] const st_header& header() const noexcept { return header_; }
  [[nodiscard]] const st_tensor_info* find(std::string_view name) const noexcept { return header_.find(name); }

  /// Raw bytes of a tensor (in its file dtype). Throws on a short read (file changed).
  [[nodiscard]] std::vector<std::uint8_t> read_raw(const st_tensor_info& t) const;
  /// The tensor converted to bf16 (as uint16 bit patterns; F32/F64 rounded to nearest even).
  /// Throws piecewise::config_error naming the file and tensor for U8 (not numbers).
  [[nodiscard]] std::vector<std::uint16_t> read_bf16(const st_tensor_info& t) const;
  /// The same into `out` (t.numel() values).
  void read_bf16(const st_tensor_info& t, std::uint16_t* out) const;
  /// The tensor converted to fp32 (exact for BF16/F16/F32; F64 rounded).
  [[nodiscard]] std::vector<float> read_f32(const st_tensor_info& t) const;
  /// The same into `out` (t.numel() values).
  void read_f32(const st_tensor_info& t, float* out) const;

 private:
  void expect_numbers(const st_tensor_info& t, const char* as) const;

  std::filesystem::path path_;
  st_header header_;
  struct stream;
  std::unique_ptr<stream> stream_;
};

/// A checkpoint: a directory with model.safetensors or a sharded model.safetensors.index.json
/// (or the path of a single .safetensors file). Tensor names map to their shard.
class checkpoint {
 public:
  /// Opens the checkpoint. Prefers model.safetensors.index.json when both exist.
  /// Throws piecewise::config_error for: no checkpoint file in the directory, an invalid
  /// index (not an object, no weight_map, non-string entries, shard names with a path), a
  /// missing shard file, a tensor listed in the index but absent from its shard, a tensor in
  /// a shard that the index does not list, and every header error of safetensors_file.
  explicit checkpoint(const std::filesystem::path& path);

  /// Where the checkpoint was found (the index file or the single file), for messages.
  [[nodiscard]] const std::filesystem::path& source() const noexcept { return source_; }
  /// Every tensor name, sorted.
  [[nodiscard]] std::vector<std::string> names() const;
  /// The file holding `name` and its entry, or {nullptr, nullptr}.
  [[nodiscard]] std::pair<const safetensors_file*, const st_tensor_info*> find(std::string_view name) const;
  [[nodiscard]] std::size_t num_shards() const noexcept { return files_.size(); }

 private:
  std::filesystem::path source_;
  std::vector<std::unique_ptr<safetensors_file>> files_;
  std::map<std::string, std::pair<const safetensors_file*, const st_tensor_info*>, std::less<>> index_;
};

// ---- writing ------------------------------------------------------------------------------

/// A tensor to write: raw little-endian bytes in `dtype` (size must match the shape).
struct st_write_tensor {
  std::string name;
  st_dtype dtype = st_dtype::bf16;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

/// The start of a safetensors file for tensors stored back to back in the given order: the
/// 8-byte header length and the JSON header (padded to a multiple of 8 bytes). Sets each
/// entry's begin/end from its shape and dtype. Throws piecewise::config_error for a negative
/// extent. For writers that stream the data after it (save_checkpoint, model/weights.hpp).
std::vector<std::uint8_t> safetensors_header(std::vector<st_tensor_info>& tensors,
                                             const std::map<std::string, std::string>& metadata = {});
/// Serialises tensors (in the given order) into the bytes of a safetensors file.
/// Throws piecewise::config_error when a tensor's byte count does not match its shape.
std::vector<std::uint8_t> make_safetensors(const std::vector<st_write_tensor>& tensors,
                                           const std::map<std::string, std::string>& metadata = {});
/// Writes make_safetensors(...) to `path`. Throws piecewise::config_error on I/O failure.
void write_safetensors(const std::filesystem::path& path, const std::vector<st_write_tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Helpers to build st_write_tensor from host values (converted to `dtype`).
st_write_tensor make_tensor_from_floats(std::string name, std::vector<std::int64_t> shape,
                                        const std::vector<float>& values, st_dtype dtype);
st_write_tensor make_tensor_from_bf16(std::string name, std::vector<std::int64_t> shape,
                                      const std::vector<std::uint16_t>& values);

}  // namespace nemotron_h
