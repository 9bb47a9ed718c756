#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/regex.hpp"

#include <pcre2.h>

#include <cctype>

#include "piecewise/error.hpp"

namespace nemotron_h::text {

struct regex::impl {
  pcre2_code* code = nullptr;
  pcre2_match_context* context = nullptr;  // no match limit, a larger JIT stack (see below)
  ~impl() {
    pcre2_match_context_free(context);
    pcre2_code_free(code);
  }
};

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof(buf));
  return n < 0 ? "unknown PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buf));
}

/// One JIT stack per thread, up to 64 MiB (memory is taken as it is used), for every pattern:
/// the default 32 KiB can run out on long runs of text that backtrack.
pcre2_jit_stack* thread_jit_stack(void*) {
  struct holder {
    pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
    ~holder() { pcre2_jit_stack_free(stack); }
  };
  thread_local holder h;
  return h.stack;
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
  // The split patterns backtrack over whole runs of white space or letters (a linear cost per
  // match), so PCRE2's default limit of 10 million steps fails on a few MB of spaces: lift it.
  impl_->context = pcre2_match_context_create(nullptr);
  if (impl_->context == nullptr) throw std::bad_alloc();
  pcre2_set_match_limit(impl_->context, 0xFFFFFFFFu);
  if (jit_) pcre2_jit_stack_assign(impl_->context, thread_jit_stack, nullptr);
}

regex::~regex() = default;
regex::regex(regex&&) noexcept = default;
regex& regex::operator=(regex&&) noexcept = default;

regex::cursor::cursor(const regex& re, std::string_view subject)
    : re_(&re), subject_(subject), match_data_(pcre2_match_data_create_from_pattern(re.impl_->code, nullptr)) {
  if (match_data_ == nullptr) throw std::bad_alloc();
}

regex::cursor::~cursor() { pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_)); }

bool regex::cursor::next(std::size_t& begin, std::size_t& end) {
  if (done_ || pos_ > subject_.size()) return false;
  auto* md = static_cast<pcre2_match_data*>(match_data_);
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject_.data());
  const std::uint32_t opts = checked_ ? PCRE2_NO_UTF_CHECK : 0;  // the first match checks the UTF-8
  pcre2_match_context* ctx = re_->impl_->context;
  const int rc = re_->jit_ ? pcre2_jit_match(re_->impl_->code, s, subject_.size(), pos_, opts, md, ctx)
                           : pcre2_match(re_->impl_->code, s, subject_.size(), pos_, opts, md, ctx);
  if (rc == PCRE2_ERROR_NOMATCH) {
    done_ = true;
    return false;
  }
  if (rc < 0) {
    throw piecewise::config_error(fmt::format("regex match failed at byte {}: {}", pos_, pcre2_message(rc)));
  }
  checked_ = true;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  begin = ov[0];
  end = ov[1];
  if (end < begin) {  // \K tricks: not meaningful for a split pattern
    done_ = true;
    return false;
  }
  if (end > begin) {
    pos_ = end;
  } else {  // empty match: step over one character
    pos_ = end + 1;
    while (pos_ < subject_.size() && (static_cast<unsigned char>(subject_[pos_]) & 0xC0) == 0x80) ++pos_;
  }
  return true;
}

void regex::find_all(std::string_view subject, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  cursor c(*this, subject);
  for (std::size_t b, e; c.next(b, e);) out.emplace_back(b, e);
}

bool regex::search(std::string_view subject) const {
  std::unique_ptr<pcre2_match_data, match_data_deleter> md(pcre2_match_data_create_from_pattern(impl_->code, nullptr));
  if (!md) throw std::bad_alloc();
  const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0,
                             md.get(), impl_->context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) throw piecewise::config_error(fmt::format("regex match failed: {}", pcre2_message(rc)));
  return true;
}

std::string regex::from_oniguruma(std::string_view pattern, const std::string& what) {
  std::string out;
  out.reserve(pattern.size() + 32);
  bool in_class = false;
  std::size_t class_start = 0;  // index in `pattern` just after '[' or "[^"
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      switch (e) {
        case 's': out += "\\p{White_Space}"; break;
        case 'S': out += "\\P{White_Space}"; break;
        case 'w': out += in_class ? "\\p{L}\\p{M}\\p{Nd}\\p{Pc}" : "[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]"; break;
        case 'W':
          if (in_class) {
            throw piecewise::config_error(fmt::format("{}: \\W inside a character class (offset {}) is not supported", what, i - 1));
          }
          out += "[^\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
          break;
        case 'b':
        case 'B':
          if (!in_class) {
            throw piecewise::config_error(fmt::format("{}: \\{} (word boundary, offset {}) is not supported", what, e, i - 1));
          }
          [[fallthrough]];
        default:
          out += '\\';
          out += e;
          if (e == 'Q') {  // \Q...\E: copied verbatim
            const std::size_t end = pattern.find("\\E", i + 1);
            const std::size_t stop = end == std::string_view::npos ? pattern.size() : end + 2;
            out.append(pattern.substr(i + 1, stop - i - 1));
            i = stop - 1;
          }
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_start = i + 1;
      if (class_start < pattern.size() && pattern[class_start] == '^') ++class_start;
    } else if (in_class && c == ']' && i != class_start) {
      in_class = false;
    }
    out += c;
  }
  return out;
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
