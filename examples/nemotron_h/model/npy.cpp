// .npy reader / writer (float32 / float64, C order).
#include "model/npy.hpp"

#include <fmt/format.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <string>

#include "model/messages.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {

namespace {

std::string trim(std::string_view s) {
  std::size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\n')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\n')) --b;
  return std::string(s.substr(a, b - a));
}

/// The value text of key `key` in a Python dict literal (e.g. "'<f4'", "False", "(3, 4)").
std::string dict_value(const std::string& hdr, const std::string& key, std::string_view name) {
  const std::string k = "'" + key + "'";
  const std::size_t p = hdr.find(k);
  if (p == std::string::npos) fail(name, fmt::format("npy header has no '{}': {}", key, printable(hdr)));
  std::size_t q = hdr.find(':', p + k.size());
  if (q == std::string::npos) fail(name, fmt::format("npy header: malformed entry '{}'", key));
  ++q;
  std::size_t end = q;
  if (hdr.find('(', q) != std::string::npos && trim(hdr.substr(q, hdr.find('(', q) - q)).empty()) {
    end = hdr.find(')', q);
    if (end == std::string::npos) fail(name, "npy header: unterminated shape tuple");
    ++end;
  } else {
    end = hdr.find_first_of(",}", q);
    if (end == std::string::npos) end = hdr.size();
  }
  return trim(hdr.substr(q, end - q));
}

std::vector<std::uint8_t> header_bytes(const std::vector<std::int64_t>& shape) {
  std::string sh;  // "()", "(n,)", "(a, b, c)"
  for (std::size_t i = 0; i < shape.size(); ++i) sh += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) sh += ",";
  std::string d = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", sh);
  const std::size_t unpadded = 10 + d.size() + 1;
  d += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  // Magic, version 1.0, little-endian header length, then the dict: built as one string
  // and copied once.
  std::string h = "\x93NUMPY\x01";
  h += '\0';
  h += static_cast<char>(d.size() & 0xff);
  h += static_cast<char>(d.size() >> 8);
  h += d;
  return std::vector<std::uint8_t>(h.begin(), h.end());
}

}  // namespace

std::vector<std::uint8_t> make_npy(const std::vector<float>& data, const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) {
    PIECEWISE_EXPECTS(d >= 0, "write_npy: negative extent {}", d);
    n *= d;
  }
  PIECEWISE_EXPECTS(static_cast<std::size_t>(n) == data.size(), "write_npy: shape holds {} values, data has {}", n,
                    data.size());
  std::vector<std::uint8_t> out = header_bytes(shape);
  const std::size_t h = out.size();
  out.resize(h + 4 * data.size());
  for (std::size_t i = 0; i < data.size(); ++i) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(data[i]);
    for (int b = 0; b < 4; ++b) out[h + 4 * i + b] = static_cast<std::uint8_t>(u >> (8 * b));
  }
  return out;
}

void write_npy(const std::filesystem::path& path, const std::vector<float>& data,
               const std::vector<std::int64_t>& shape) {
  const auto bytes = make_npy(data, shape);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(path.string(), "cannot open for writing");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) fail(path.string(), "write failed");
}

void write_npy(const std::filesystem::path& path, const std::vector<double>& data,
               const std::vector<std::int64_t>& shape) {
  write_npy(path, std::vector<float>(data.begin(), data.end()), shape);
}

npy_array parse_npy(const std::uint8_t* data, std::size_t size, std::string_view name) {
  static const std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(data, magic, 6) != 0) fail(name, "not a .npy file (bad magic)");
  const int major = data[6];
  std::size_t hlen = 0, hstart = 0;
  if (major == 1) {
    hlen = data[8] | (std::size_t(data[9]) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) fail(name, "truncated .npy header");
    hlen = data[8] | (std::size_t(data[9]) << 8) | (std::size_t(data[10]) << 16) | (std::size_t(data[11]) << 24);
    hstart = 12;
  } else {
    fail(name, fmt::format("unsupported .npy version {}.{}", major, data[7]));
  }
  if (hlen > size - hstart) fail(name, fmt::format(".npy header length {} exceeds the file", hlen));
  const std::string hdr(reinterpret_cast<const char*>(data + hstart), hlen);
  const std::string descr = dict_value(hdr, "descr", name);
  const std::string fortran = dict_value(hdr, "fortran_order", name);
  const std::string shape_s = dict_value(hdr, "shape", name);
  std::size_t esz = 0;
  if (descr == "'<f4'" || descr == "'=f4'") esz = 4;
  else if (descr == "'<f8'" || descr == "'=f8'") esz = 8;
  else fail(name, fmt::format("unsupported .npy dtype {} (expected '<f4' or '<f8')", printable(descr)));
  if (fortran != "False") fail(name, fmt::format(".npy fortran_order {} is not supported", printable(fortran)));
  if (shape_s.size() < 2 || shape_s.front() != '(' || shape_s.back() != ')') {
    fail(name, fmt::format("malformed .npy shape {}", printable(shape_s)));
  }
  npy_array a;
  std::uint64_t n = 1;
  std::string body = shape_s.substr(1, shape_s.size() - 2);
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t comma = body.find(',', pos);
    if (comma == std::string::npos) comma = body.size();
    const std::string tok = trim(body.substr(pos, comma - pos));
    pos = comma + 1;
    if (tok.empty()) continue;
    if (tok.size() > 12 || tok.find_first_not_of("0123456789") != std::string::npos) {
      fail(name, fmt::format("malformed .npy shape {}", printable(shape_s)));
    }
    const std::int64_t d = std::stoll(tok);
    a.shape.push_back(d);
    if (d != 0 && n > (std::uint64_t(1) << 40) / static_cast<std::uint64_t>(d)) fail(name, ".npy shape too large");
    n *= static_cast<std::uint64_t>(d);
  }
  const std::size_t data_start = hstart + hlen;
  if ((size - data_start) != n * esz) {
    fail(name, fmt::format(".npy data is {} bytes, shape {} needs {}", size - data_start, printable(shape_s), n * esz));
  }
  a.data.resize(n);
  const std::uint8_t* p = data + data_start;
  for (std::size_t i = 0; i < n; ++i) {
    if (esz == 4) {
      std::uint32_t u = 0;
      for (int b = 3; b >= 0; --b) u = (u << 8) | p[4 * i + b];
      a.data[i] = std::bit_cast<float>(u);
    } else {
      std::uint64_t u = 0;
      for (int b = 7; b >= 0; --b) u = (u << 8) | p[8 * i + b];
      a.data[i] = std::bit_cast<double>(u);
    }
  }
  return a;
}

npy_array read_npy(const std::filesystem::path& path) {
  const std::string p = path.string();
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(p, fmt::format("cannot stat: {}", ec.message()));
  if (size > (std::uintmax_t(1) << 36)) fail(p, "file too large");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(p, "cannot open for reading");
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(size));
  f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(f.gcount()) != size) fail(p, "short read");
  return parse_npy(buf.data(), buf.size(), p);
}

}  // namespace nemotron_h
