// Safetensors reader / writer with bounds checks on everything read from a file.
#include "model/safetensors.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "model/json_depth.hpp"
#include "model/messages.hpp"
#include "model/quant_formats.hpp"
#include "piecewise/element_type.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {

namespace {

using json = nlohmann::json;

constexpr int kMaxRank = 8;
constexpr std::int64_t kMaxDimExtent = std::int64_t(1) << 40;
constexpr int kMaxJsonDepth = 16;

[[noreturn]] void fail_tensor(std::string_view file, std::string_view tensor, const std::string& msg) {
  throw piecewise::config_error(fmt::format("{}: tensor '{}': {}", file, tensor, msg));
}

json parse_json_checked(std::string_view text, std::string_view file, const char* what) {
  if (json_depth(text) > kMaxJsonDepth) fail(file, fmt::format("{} is nested deeper than {} levels", what, kMaxJsonDepth));
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(file, fmt::format("{} is not valid JSON: {}", what, e.what()));
  }
  return j;
}

bool parse_dtype(const std::string& s, st_dtype& out) {
  if (s == "BF16") out = st_dtype::bf16;
  else if (s == "F16") out = st_dtype::f16;
  else if (s == "F32") out = st_dtype::f32;
  else if (s == "F64") out = st_dtype::f64;
  else if (s == "F8_E4M3") out = st_dtype::f8_e4m3;
  else if (s == "U8") out = st_dtype::u8;
  else return false;
  return true;
}

bool known_unsupported_dtype(const std::string& s) {
  static const std::set<std::string> known = {"BOOL", "I8", "I16", "U16", "I32", "U32", "I64", "U64",
                                              "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
                                              "C64"};
  return known.count(s) != 0;
}

std::uint64_t get_u64(const json& v, bool& ok) {
  ok = false;
  if (v.is_number_unsigned()) {
    ok = true;
    return v.get<std::uint64_t>();
  }
  if (v.is_number_integer()) {
    const auto x = v.get<std::int64_t>();
    if (x >= 0) {
      ok = true;
      return static_cast<std::uint64_t>(x);
    }
  }
  return 0;
}

std::uint32_t f2u(float f) { return std::bit_cast<std::uint32_t>(f); }
float u2f(std::uint32_t u) { return std::bit_cast<float>(u); }
/// The little-endian 16-bit word at p.
std::uint16_t le16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }

using piecewise::bf16_bits_to_float;
using piecewise::float_to_bf16_bits;
using piecewise::float_to_half_bits;
using piecewise::half_bits_to_float;

}  // namespace

// ---- dtype helpers ------------------------------------------------------------------------

const char* st_dtype_name(st_dtype t) noexcept {
  switch (t) {
    case st_dtype::bf16: return "BF16";
    case st_dtype::f16: return "F16";
    case st_dtype::f32: return "F32";
    case st_dtype::f64: return "F64";
    case st_dtype::f8_e4m3: return "F8_E4M3";
    case st_dtype::u8: return "U8";
  }
  return "?";
}

std::size_t st_dtype_size(st_dtype t) noexcept {
  switch (t) {
    case st_dtype::bf16:
    case st_dtype::f16: return 2;
    case st_dtype::f32: return 4;
    case st_dtype::f64: return 8;
    case st_dtype::f8_e4m3:
    case st_dtype::u8: return 1;
  }
  return 0;
}

std::int64_t st_tensor_info::numel() const noexcept {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const st_tensor_info* st_header::find(std::string_view name) const noexcept {
  auto it = std::lower_bound(tensors.begin(), tensors.end(), name,
                             [](const st_tensor_info& t, std::string_view n) { return t.name < n; });
  return (it != tensors.end() && it->name == name) ? &*it : nullptr;
}

// ---- header parsing -----------------------------------------------------------------------

st_header parse_safetensors_header_json(std::string_view header_json, std::uint64_t data_size,
                                        std::string_view name) {
  if (header_json.size() > kMaxSafetensorsHeader) {
    fail(name, fmt::format("header of {} bytes exceeds the {} byte limit", header_json.size(), kMaxSafetensorsHeader));
  }
  const json j = parse_json_checked(header_json, name, "safetensors header");
  if (!j.is_object()) fail(name, fmt::format("safetensors header must be a JSON object, got {}", j.type_name()));

  st_header h;
  h.data_offset = 8 + static_cast<std::uint64_t>(header_json.size());
  h.data_size = data_size;
  h.tensors.reserve(j.size());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) fail(name, fmt::format("'__metadata__' must be an object, got {}", v.type_name()));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          fail(name, fmt::format("'__metadata__' entry '{}' must be a string, got {}", printable(m.key()),
                                 m.value().type_name()));
        }
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tname = printable(key);
    if (!v.is_object()) fail_tensor(name, tname, fmt::format("entry must be an object, got {}", v.type_name()));
    st_tensor_info t;
    t.name = key;

    auto dt = v.find("dtype");
    if (dt == v.end()) fail_tensor(name, tname, "missing 'dtype'");
    if (!dt->is_string()) fail_tensor(name, tname, fmt::format("'dtype' must be a string, got {}", dt->type_name()));
    const std::string ds = dt->get<std::string>();
    if (!parse_dtype(ds, t.dtype)) {
      if (known_unsupported_dtype(ds)) {
        fail_tensor(name, tname, fmt::format("unsupported dtype {} (supported: BF16, F16, F32, F64, F8_E4M3, U8)", ds));
      }
      fail_tensor(name, tname, fmt::format("unknown dtype \"{}\"", printable(ds, 32)));
    }

    auto sh = v.find("shape");
    if (sh == v.end()) fail_tensor(name, tname, "missing 'shape'");
    if (!sh->is_array()) fail_tensor(name, tname, fmt::format("'shape' must be an array, got {}", sh->type_name()));
    if (sh->size() > kMaxRank) fail_tensor(name, tname, fmt::format("rank {} exceeds {}", sh->size(), kMaxRank));
    // numel and byte count with overflow checks: every extent <= 2^40, running product <= 2^56.
    std::uint64_t numel = 1;
    for (const json& d : *sh) {
      bool ok = false;
      const std::uint64_t e = get_u64(d, ok);
      if (!ok) {
        fail_tensor(name, tname,
                    fmt::format("shape entries must be non-negative integers, got {}", printable(d.dump(), 64)));
      }
      if (e > static_cast<std::uint64_t>(kMaxDimExtent)) {
        fail_tensor(name, tname, fmt::format("shape extent {} is absurd", e));
      }
      t.shape.push_back(static_cast<std::int64_t>(e));
      if (e != 0 && numel > (std::uint64_t(1) << 56) / e) {
        fail_tensor(name, tname, fmt::format("shape {} has too many elements", sh->dump()));
      }
      numel *= e;
    }

    auto off = v.find("data_offsets");
    if (off == v.end()) fail_tensor(name, tname, "missing 'data_offsets'");
    if (!off->is_array() || off->size() != 2) {
      fail_tensor(name, tname, fmt::format("'data_offsets' must be an array of two integers, got {}",
                                           printable(off->dump(), 64)));
    }
    bool ok0 = false, ok1 = false;
    t.begin = get_u64((*off)[0], ok0);
    t.end = get_u64((*off)[1], ok1);
    if (!ok0 || !ok1) {
      fail_tensor(name, tname,
                  fmt::format("'data_offsets' must be non-negative integers, got {}", printable(off->dump(), 64)));
    }
    if (t.end < t.begin) fail_tensor(name, tname, fmt::format("data_offsets [{}, {}]: end < begin", t.begin, t.end));
    if (t.end > data_size) {
      fail_tensor(name, tname,
                  fmt::format("data_offsets [{}, {}] run past the end of the data ({} bytes): truncated file?",
                              t.begin, t.end, data_size));
    }
    const std::uint64_t want = numel * st_dtype_size(t.dtype);
    if (want != t.end - t.begin) {
      fail_tensor(name, tname,
                  fmt::format("shape {} x {} ({} bytes) does not match data_offsets [{}, {}] ({} bytes)",
                              shape_str(t.shape), ds, want, t.begin, t.end, t.end - t.begin));
    }
    h.tensors.push_back(std::move(t));
  }

  // Overlap check over the byte ranges (empty tensors never overlap).
  std::vector<const st_tensor_info*> by_off;
  by_off.reserve(h.tensors.size());
  for (const auto& t : h.tensors) {
    if (t.end > t.begin) by_off.push_back(&t);
  }
  std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_off.size(); ++i) {
    if (by_off[i]->begin < by_off[i - 1]->end) {
      fail(name, fmt::format("tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", printable(by_off[i - 1]->name),
                             by_off[i - 1]->begin, by_off[i - 1]->end, printable(by_off[i]->name), by_off[i]->begin,
                             by_off[i]->end));
    }
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return h;
}

st_header parse_safetensors_header(const std::uint8_t* data, std::size_t size, std::string_view name) {
  if (data == nullptr && size != 0) fail(name, "null buffer");
  if (size < 8) fail(name, fmt::format("truncated: {} bytes, shorter than the 8-byte header length", size));
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > kMaxSafetensorsHeader) {
    fail(name, fmt::format("header length {} exceeds the {} byte limit (corrupt file?)", n, kMaxSafetensorsHeader));
  }
  if (n > size - 8) {
    fail(name, fmt::format("header length {} exceeds the {} bytes that follow it: truncated or corrupt", n, size - 8));
  }
  const std::string_view text(reinterpret_cast<const char*>(data + 8), static_cast<std::size_t>(n));
  return parse_safetensors_header_json(text, size - 8 - n, name);
}

// ---- file reading -------------------------------------------------------------------------

struct safetensors_file::stream {
  std::ifstream f;
};

safetensors_file::~safetensors_file() = default;
safetensors_file::safetensors_file(safetensors_file&&) noexcept = default;
safetensors_file& safetensors_file::operator=(safetensors_file&&) noexcept = default;

safetensors_file::safetensors_file(std::filesystem::path path) : path_(std::move(path)) {
  const std::string p = path_.string();
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) fail(p, "file not found");
  if (!std::filesystem::is_regular_file(path_, ec)) fail(p, "not a regular file");
  const std::uint64_t size = std::filesystem::file_size(path_, ec);
  if (ec) fail(p, fmt::format("cannot stat: {}", ec.message()));
  stream_ = std::make_unique<stream>();
  stream_->f.open(path_, std::ios::binary);
  if (!stream_->f) fail(p, "cannot open for reading");
  if (size < 8) fail(p, fmt::format("truncated: {} bytes, shorter than the 8-byte header length", size));
  std::uint8_t len[8];
  stream_->f.read(reinterpret_cast<char*>(len), 8);
  if (stream_->f.gcount() != 8) fail(p, "short read of the header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n > kMaxSafetensorsHeader) {
    fail(p, fmt::format("header length {} exceeds the {} byte limit (corrupt file?)", n, kMaxSafetensorsHeader));
  }
  if (n > size - 8) {
    fail(p, fmt::format("header length {} exceeds the {} bytes that follow it: truncated or corrupt", n, size - 8));
  }
  std::string text(static_cast<std::size_t>(n), '\0');
  stream_->f.read(text.data(), static_cast<std::streamsize>(n));
  if (static_cast<std::uint64_t>(stream_->f.gcount()) != n) fail(p, "short read of the header");
  header_ = parse_safetensors_header_json(text, size - 8 - n, p);
}

std::vector<std::uint8_t> safetensors_file::read_raw(const st_tensor_info& t) const {
  const std::string p = path_.string();
  // `t` comes from this file's validated header: end <= data_size <= file size.
  if (t.end < t.begin || t.end > header_.data_size) fail_tensor(p, t.name, "offsets outside the data section");
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(t.nbytes()));
  stream_->f.clear();
  stream_->f.seekg(static_cast<std::streamoff>(header_.data_offset + t.begin));
  if (!buf.empty()) stream_->f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
  if (!stream_->f || static_cast<std::uint64_t>(stream_->f.gcount()) != (buf.empty() ? 0 : buf.size())) {
    if (!buf.empty()) fail_tensor(p, t.name, "short read (file changed or truncated while reading)");
  }
  return buf;
}

void safetensors_file::expect_numbers(const st_tensor_info& t, const char* as) const {
  if (t.dtype == st_dtype::u8) {
    fail_tensor(path_.string(), t.name, fmt::format("U8 (packed data) cannot be read as {} numbers", as));
  }
}

std::vector<std::uint16_t> safetensors_file::read_bf16(const st_tensor_info& t) const {
  std::vector<std::uint16_t> out(static_cast<std::size_t>(t.numel()));
  read_bf16(t, out.data());
  return out;
}

void safetensors_file::read_bf16(const st_tensor_info& t, std::uint16_t* out) const {
  expect_numbers(t, "bf16");
  const std::vector<std::uint8_t> raw = read_raw(t);
  const std::size_t n = static_cast<std::size_t>(t.numel());
  const std::uint8_t* r = raw.data();
  for (std::size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case st_dtype::bf16: out[i] = le16(r + 2 * i); break;
      case st_dtype::f16: out[i] = float_to_bf16_bits(half_bits_to_float(le16(r + 2 * i))); break;
      case st_dtype::f32: {
        std::uint32_t u = 0;
        for (int b = 3; b >= 0; --b) u = (u << 8) | r[4 * i + b];
        out[i] = float_to_bf16_bits(u2f(u));
        break;
      }
      case st_dtype::f64: {
        std::uint64_t u = 0;
        for (int b = 7; b >= 0; --b) u = (u << 8) | r[8 * i + b];
        // double -> float -> bf16 could round twice; round to odd on the way to float so
        // the final bf16 rounding is the correctly rounded result.
        const double d = std::bit_cast<double>(u);
        float f = static_cast<float>(d);
        if (std::isfinite(f) && static_cast<double>(f) != d) {
          if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
          f = u2f(f2u(f) | 1u);
        }
        out[i] = float_to_bf16_bits(f);
        break;
      }
      case st_dtype::f8_e4m3: out[i] = float_to_bf16_bits(quant::e4m3_to_float(r[i])); break;  // exact
      case st_dtype::u8: break;  // refused above
    }
  }
}

std::vector<float> safetensors_file::read_f32(const st_tensor_info& t) const {
  std::vector<float> out(static_cast<std::size_t>(t.numel()));
  read_f32(t, out.data());
  return out;
}

void safetensors_file::read_f32(const st_tensor_info& t, float* out) const {
  expect_numbers(t, "fp32");
  const std::vector<std::uint8_t> raw = read_raw(t);
  const std::size_t n = static_cast<std::size_t>(t.numel());
  const std::uint8_t* r = raw.data();
  for (std::size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case st_dtype::bf16: out[i] = bf16_bits_to_float(le16(r + 2 * i)); break;
      case st_dtype::f16: out[i] = half_bits_to_float(le16(r + 2 * i)); break;
      case st_dtype::f32: {
        std::uint32_t u = 0;
        for (int b = 3; b >= 0; --b) u = (u << 8) | r[4 * i + b];
        out[i] = u2f(u);
        break;
      }
      case st_dtype::f64: {
        std::uint64_t u = 0;
        for (int b = 7; b >= 0; --b) u = (u << 8) | r[8 * i + b];
        out[i] = static_cast<float>(std::bit_cast<double>(u));
        break;
      }
      case st_dtype::f8_e4m3: out[i] = quant::e4m3_to_float(r[i]); break;
      case st_dtype::u8: break;  // refused above
    }
  }
}

// ---- checkpoints --------------------------------------------------------------------------

checkpoint::checkpoint(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::path index_path, single_path;
  if (std::filesystem::is_directory(path, ec)) {
    const auto idx = path / "model.safetensors.index.json";
    const auto one = path / "model.safetensors";
    if (std::filesystem::exists(idx, ec)) index_path = idx;
    else if (std::filesystem::exists(one, ec)) single_path = one;
    else fail(path.string(), "no model.safetensors or model.safetensors.index.json in this directory");
  } else if (std::filesystem::exists(path, ec)) {
    if (path.extension() == ".json") index_path = path;
    else single_path = path;
  } else {
    fail(path.string(), "checkpoint not found");
  }

  if (!single_path.empty()) {
    source_ = single_path;
    files_.push_back(std::make_unique<safetensors_file>(single_path));
    for (const auto& t : files_.back()->header().tensors) index_[t.name] = {files_.back().get(), &t};
    return;
  }

  source_ = index_path;
  const std::string ip = index_path.string();
  const auto size = std::filesystem::file_size(index_path, ec);
  if (ec) fail(ip, fmt::format("cannot stat: {}", ec.message()));
  if (size > kMaxSafetensorsHeader) fail(ip, fmt::format("index of {} bytes is too large", size));
  std::ifstream f(index_path, std::ios::binary);
  if (!f) fail(ip, "cannot open for reading");
  std::string text(static_cast<std::size_t>(size), '\0');
  f.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(f.gcount()) != size) fail(ip, "short read");
  const json j = parse_json_checked(text, ip, "index");
  if (!j.is_object()) fail(ip, fmt::format("index must be a JSON object, got {}", j.type_name()));
  auto wm = j.find("weight_map");
  if (wm == j.end()) fail(ip, "missing field 'weight_map'");
  if (!wm->is_object()) fail(ip, fmt::format("field 'weight_map' must be an object, got {}", wm->type_name()));
  if (wm->empty()) fail(ip, "field 'weight_map' is empty");

  const std::filesystem::path dir = index_path.parent_path();
  std::map<std::string, safetensors_file*> shards;
  std::map<std::string, std::string> listed;  // tensor -> shard
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) {
      fail(ip, fmt::format("weight_map entry '{}' must be a string (shard file), got {}", printable(it.key()),
                           it.value().type_name()));
    }
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
        shard.find('\\') != std::string::npos || shard.find('\0') != std::string::npos) {
      fail(ip, fmt::format("weight_map entry '{}': shard \"{}\" must be a plain file name in the same directory",
                           printable(it.key()), printable(shard)));
    }
    listed[it.key()] = shard;
    if (!shards.count(shard)) {
      const auto sp = dir / shard;
      if (!std::filesystem::exists(sp, ec)) {
        fail(ip, fmt::format("shard file '{}' (holding tensor '{}') not found in {}", printable(shard),
                             printable(it.key()), dir.string()));
      }
      files_.push_back(std::make_unique<safetensors_file>(sp));
      shards[shard] = files_.back().get();
    }
  }
  for (const auto& [tensor, shard] : listed) {
    const safetensors_file* file = shards.at(shard);
    const st_tensor_info* t = file->find(tensor);
    if (!t) {
      fail(ip, fmt::format("tensor '{}' is listed for shard '{}' but absent from {}", printable(tensor),
                           printable(shard), file->path().string()));
    }
    index_[tensor] = {file, t};
  }
  for (const auto& [shard, file] : shards) {
    for (const auto& t : file->header().tensors) {
      auto it = listed.find(t.name);
      if (it == listed.end()) {
        fail(file->path().string(), fmt::format("tensor '{}' is not listed in the index {}", printable(t.name), ip));
      }
    }
  }
}

std::vector<std::string> checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [k, v] : index_) out.push_back(k);
  return out;
}

std::pair<const safetensors_file*, const st_tensor_info*> checkpoint::find(std::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return {nullptr, nullptr};
  return it->second;
}

// ---- writing ------------------------------------------------------------------------------

std::vector<std::uint8_t> safetensors_header(std::vector<st_tensor_info>& tensors,
                                             const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = m;
  }
  std::uint64_t off = 0;
  for (auto& t : tensors) {
    std::uint64_t n = st_dtype_size(t.dtype);
    for (auto d : t.shape) {
      PIECEWISE_EXPECTS(d >= 0, "make_safetensors: tensor '{}' has a negative extent", t.name);
      n *= static_cast<std::uint64_t>(d);
    }
    t.begin = off;
    t.end = off + n;
    h[t.name] = {{"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
    off += n;
  }
  std::string text = h.dump();
  while ((8 + text.size()) % 8 != 0) text += ' ';
  std::vector<std::uint8_t> out(8 + text.size());
  const std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  return out;
}

std::vector<std::uint8_t> make_safetensors(const std::vector<st_write_tensor>& tensors,
                                           const std::map<std::string, std::string>& metadata) {
  std::vector<st_tensor_info> infos;
  for (const auto& t : tensors) infos.push_back({t.name, t.dtype, t.shape, 0, 0});
  std::vector<std::uint8_t> out = safetensors_header(infos, metadata);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const st_write_tensor& t = tensors[i];
    PIECEWISE_EXPECTS(infos[i].nbytes() == t.bytes.size(), "make_safetensors: tensor '{}' shape {} {} needs {} bytes, got {}",
                      t.name, shape_str(t.shape), st_dtype_name(t.dtype), infos[i].nbytes(), t.bytes.size());
  }
  for (const auto& t : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<st_write_tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const auto bytes = make_safetensors(tensors, metadata);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(path.string(), "cannot open for writing");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) fail(path.string(), "write failed");
}

st_write_tensor make_tensor_from_floats(std::string name, std::vector<std::int64_t> shape,
                                        const std::vector<float>& values, st_dtype dtype) {
  st_write_tensor t{std::move(name), dtype, std::move(shape), {}};
  t.bytes.resize(values.size() * st_dtype_size(dtype));
  std::uint8_t* o = t.bytes.data();
  for (std::size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case st_dtype::bf16:
      case st_dtype::f16: {
        const std::uint16_t b = dtype == st_dtype::bf16 ? float_to_bf16_bits(values[i]) : float_to_half_bits(values[i]);
        o[2 * i] = static_cast<std::uint8_t>(b);
        o[2 * i + 1] = static_cast<std::uint8_t>(b >> 8);
        break;
      }
      case st_dtype::f32: {
        const std::uint32_t u = f2u(values[i]);
        for (int b = 0; b < 4; ++b) o[4 * i + b] = static_cast<std::uint8_t>(u >> (8 * b));
        break;
      }
      case st_dtype::f64: {
        const std::uint64_t u = std::bit_cast<std::uint64_t>(static_cast<double>(values[i]));
        for (int b = 0; b < 8; ++b) o[8 * i + b] = static_cast<std::uint8_t>(u >> (8 * b));
        break;
      }
      case st_dtype::f8_e4m3: o[i] = quant::float_to_e4m3(values[i]); break;
      case st_dtype::u8:
        throw piecewise::config_error(fmt::format("make_tensor_from_floats: tensor '{}': U8 is not a number format", t.name));
    }
  }
  return t;
}

st_write_tensor make_tensor_from_bf16(std::string name, std::vector<std::int64_t> shape,
                                      const std::vector<std::uint16_t>& values) {
  st_write_tensor t{std::move(name), st_dtype::bf16, std::move(shape), {}};
  t.bytes.resize(values.size() * 2);
  for (std::size_t i = 0; i < values.size(); ++i) {
    t.bytes[2 * i] = static_cast<std::uint8_t>(values[i]);
    t.bytes[2 * i + 1] = static_cast<std::uint8_t>(values[i] >> 8);
  }
  return t;
}

}  // namespace nemotron_h
