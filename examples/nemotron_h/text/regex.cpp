#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/regex.hpp"

#include <pcre2.h>

#include <cctype>

#include "piecewise/error.hpp"

namespace nemotron_h::text {

struct regex::impl {
  pcre2_code* code = nullptr;
  ~impl() { pcre2_code_free(code); }
};

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof(buf));
  return n < 0 ? "unknown PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buf));
}

struct match_data_deleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

regex::regex(std::string_view pattern, const std::string& what) : impl_(std::make_unique<impl>()) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (impl_->code == nullptr) {
    throw piecewise::config_error(
        fmt::format("{}: the regular expression does not compile (PCRE2, at offset {}): {}", what, offset,
                    pcre2_message(err)));
  }
  jit_ = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

regex::~regex() = default;
regex::regex(regex&&) noexcept = default;
regex& regex::operator=(regex&&) noexcept = default;

void regex::find_all(std::string_view subject, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  std::unique_ptr<pcre2_match_data, match_data_deleter> md(pcre2_match_data_create_from_pattern(impl_->code, nullptr));
  if (!md) throw std::bad_alloc();
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  std::size_t pos = 0;
  std::uint32_t opts = 0;  // the first match checks the subject's UTF-8; later ones need not
  while (pos <= subject.size()) {
    const int rc = jit_ ? pcre2_jit_match(impl_->code, s, subject.size(), pos, opts, md.get(), nullptr)
                        : pcre2_match(impl_->code, s, subject.size(), pos, opts, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc < 0) {
      throw piecewise::config_error(fmt::format("regex match failed at byte {}: {}", pos, pcre2_message(rc)));
    }
    opts = PCRE2_NO_UTF_CHECK;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    const std::size_t b = ov[0], e = ov[1];
    if (e < b) return;  // \K tricks: not meaningful for a split pattern
    out.emplace_back(b, e);
    if (e > b) {
      pos = e;
    } else {  // empty match: step over one character
      pos = e + 1;
      while (pos < subject.size() && (static_cast<unsigned char>(subject[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
}

bool regex::search(std::string_view subject) const {
  std::unique_ptr<pcre2_match_data, match_data_deleter> md(pcre2_match_data_create_from_pattern(impl_->code, nullptr));
  if (!md) throw std::bad_alloc();
  const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0,
                             md.get(), nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw piecewise::config_error(fmt::format("regex match failed: {}", pcre2_message(rc)));
  return true;
}

std::string regex::escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace nemotron_h::text
