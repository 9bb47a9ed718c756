#include "text/tokenizer.hpp"

#include <algorithm>
#include <queue>

#include "piecewise/error.hpp"
#include "text/utf8.hpp"
#include "text/word_cache.hpp"

namespace nemotron_h::text {

// ---------------------------------------------------------------- byte-level table

namespace {

struct byte_table {
  std::array<char32_t, 256> to_char{};
  std::array<std::int16_t, 324> to_byte{};
  byte_table() {
    to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool self = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = self ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      to_byte[to_char[b]] = static_cast<std::int16_t>(b);
    }
  }
};
const byte_table& table() {
  static const byte_table t;
  return t;
}

/// Every character of `tok` mapped back to its byte; nullopt when one is outside the table.
std::optional<std::string> byte_level_bytes(const std::string& tok) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(tok.data());
  for (std::size_t i = 0; i < tok.size();) {
    const utf8_sequence q = classify_utf8(p + i, tok.size() - i);
    const int b = q.status == utf8_status::valid ? char_to_byte(q.code_point) : -1;
    if (b < 0) return std::nullopt;
    out += static_cast<char>(b);
    i += static_cast<std::size_t>(q.length);
  }
  return out;
}

/// The bytes a token stands for under the ByteLevel decoder: its characters mapped back to
/// bytes, or (when one character is outside the table) the token's own UTF-8 bytes.
std::string token_bytes(const std::string& tok) { return byte_level_bytes(tok).value_or(tok); }

std::string byte_level_string(std::uint8_t b) {
  std::string s;
  append_utf8(s, byte_to_char(b));
  return s;
}

/// First code point of `s` (valid UTF-8, non-empty) and its length.
std::string_view first_char(std::string_view s) {
  const utf8_sequence q = classify_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size());
  return s.substr(0, static_cast<std::size_t>(std::max(q.length, 1)));
}
/// Last code point of `s` (valid UTF-8, non-empty).
std::string_view last_char(std::string_view s) {
  std::size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return s.substr(i);
}

}  // namespace

char32_t byte_to_char(std::uint8_t b) noexcept { return table().to_char[b]; }
int char_to_byte(char32_t c) noexcept { return c < table().to_byte.size() ? table().to_byte[c] : -1; }

// ---------------------------------------------------------------- added-token trie

/// A byte trie over added-token contents, for leftmost-longest matching.
struct tokenizer::trie {
  std::unordered_map<std::uint64_t, std::int32_t> edges;  // (node << 8 | byte) -> child
  std::vector<std::int32_t> token;                         // node -> index in added_, or -1
  std::array<bool, 256> first{};
  trie() : token(1, -1) {}
  void insert(std::string_view s, std::int32_t index) {
    std::int32_t node = 0;
    first[static_cast<unsigned char>(s[0])] = true;
    for (unsigned char c : s) {
      const std::uint64_t k = (std::uint64_t(node) << 8) | c;
      auto it = edges.find(k);
      if (it == edges.end()) {
        it = edges.emplace(k, static_cast<std::int32_t>(token.size())).first;
        token.push_back(-1);
      }
      node = it->second;
    }
    token[node] = index;
  }
  /// Longest token starting at s[pos]: (index, length) or (-1, 0).
  std::pair<std::int32_t, std::size_t> longest(std::string_view s, std::size_t pos) const {
    std::pair<std::int32_t, std::size_t> best{-1, 0};
    std::int32_t node = 0;
    for (std::size_t i = pos; i < s.size(); ++i) {
      auto it = edges.find((std::uint64_t(node) << 8) | static_cast<unsigned char>(s[i]));
      if (it == edges.end()) break;
      node = it->second;
      if (token[node] >= 0) best = {token[node], i + 1 - pos};
    }
    return best;
  }
  bool empty() const { return token.size() == 1; }
};

// ---------------------------------------------------------------- word cache

struct tokenizer::cache {
  std::mutex mu;
  detail::word_cache words;
};

// ---------------------------------------------------------------- construction

tokenizer::tokenizer(const tokenizer_spec& spec)
    : source_(spec.source), raw_trie_(std::make_unique<trie>()), normalized_trie_(std::make_unique<trie>()),
      cache_(std::make_unique<cache>()) {
  std::uint32_t size = 0;
  for (const auto& [tok, id] : spec.model.vocab) size = std::max(size, id + 1);
  for (const auto& a : spec.added_tokens) size = std::max(size, a.id + 1);
  tokens_.resize(size);
  present_.assign(size, 0);
  special_.assign(size, 0);
  bytes_.resize(size);
  token_ids_.reserve(spec.model.vocab.size() + spec.added_tokens.size());
  for (const auto& [tok, id] : spec.model.vocab) {
    tokens_[id] = tok;
    present_[id] = 1;
    token_ids_[tok] = id;
  }
  added_ = spec.added_tokens;
  for (std::size_t i = 0; i < added_.size(); ++i) {
    const added_token_spec& a = added_[i];
    tokens_[a.id] = a.content;
    present_[a.id] = 1;
    special_[a.id] = a.special ? 1 : 0;
    token_ids_[a.content] = a.id;
    (a.normalized ? *normalized_trie_ : *raw_trie_).insert(a.content, static_cast<std::int32_t>(i));
  }
  for (std::uint32_t id = 0; id < size; ++id) {
    if (present_[id]) bytes_[id] = token_bytes(tokens_[id]);
  }
  word_char_ = std::make_unique<regex>("^[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]$", "word character class");
  space_char_ = std::make_unique<regex>("^\\p{White_Space}$", "white space class");

  for (const pre_tokenizer_step& s : spec.pre_tokenizer) {
    if (s.type == pre_tokenizer_step::kind::split) {
      const std::string what = fmt::format("{}: {}.pattern", source_, s.where);
      splits_.push_back({regex(regex::from_oniguruma(s.regex, what), what), s.behavior, s.invert});
    } else {
      add_prefix_space_ = s.add_prefix_space;
      if (s.use_regex) {
        // The GPT-2 pattern HF's ByteLevel pre-tokenizer uses when use_regex is true.
        byte_level_regex_ = std::make_unique<regex>(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", "ByteLevel regex");
      }
    }
  }

  // BPE: vocabulary ids of the byte-level strings, merges by rank.
  const bpe_spec& m = spec.model;
  std::unordered_map<std::string_view, std::uint32_t> vocab;  // views of spec's strings
  vocab.reserve(m.vocab.size());
  for (const auto& [tok, id] : m.vocab) vocab.emplace(tok, id);
  if (m.unk_token) unk_ = vocab.at(*m.unk_token);
  fuse_unk_ = m.fuse_unk;
  ignore_merges_ = m.ignore_merges;
  for (int b = 0; b < 256; ++b) {
    const std::string c = byte_level_string(static_cast<std::uint8_t>(b));
    std::vector<std::uint32_t>& init = initial_[b];
    if (auto it = vocab.find(c); it != vocab.end()) {
      init.push_back(it->second);
      continue;
    }
    if (m.byte_fallback) {  // HF falls back on the UTF-8 bytes of the (byte-level) character
      for (unsigned char u : c) {
        auto it = vocab.find(fmt::format("<0x{:02X}>", u));
        if (it == vocab.end()) {
          init.clear();
          break;
        }
        init.push_back(it->second);
      }
      if (!init.empty()) continue;
    }
    if (unk_) init.push_back(*unk_);  // else the byte is dropped, as HF does
  }
  merges_.reserve(m.merges.size());
  for (std::size_t r = 0; r < m.merges.size(); ++r) {
    const auto& [a, b] = m.merges[r];
    merges_.set(vocab.at(a), vocab.at(b), {static_cast<std::uint32_t>(r), vocab.at(std::string(a) + b)});
  }
  if (ignore_merges_) {
    for (const auto& [tok, id] : m.vocab) {
      if (auto raw = byte_level_bytes(tok)) word_ids_.emplace(std::move(*raw), id);
    }
  }
  prefix_ = spec.post_processor.prefix;
  suffix_ = spec.post_processor.suffix;
}

tokenizer tokenizer::from_file(const std::filesystem::path& path) { return tokenizer(load_tokenizer_json(path)); }

tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

// ---------------------------------------------------------------- lookups

std::optional<std::uint32_t> tokenizer::token_to_id(std::string_view token) const {
  auto it = token_ids_.find(token);
  if (it == token_ids_.end()) return std::nullopt;
  return it->second;
}

const std::string& tokenizer::id_to_token(std::uint32_t id) const {
  if (id >= tokens_.size() || !present_[id]) {
    throw piecewise::config_error(fmt::format("{}: id {} has no token (vocabulary size {})", source_, id, tokens_.size()));
  }
  return tokens_[id];
}

bool tokenizer::is_special(std::uint32_t id) const { return id < special_.size() && special_[id]; }

// ---------------------------------------------------------------- encode

template <class OnText, class OnToken>
void tokenizer::split_added(std::string_view s, const trie& t, bool parse_special, OnText&& on_text,
                            OnToken&& on_token) const {
  if (t.empty()) {
    if (!s.empty()) on_text(s);
    return;
  }
  auto is_word = [&](std::string_view c) { return word_char_->search(c); };
  auto is_space = [&](std::string_view c) { return space_char_->search(c); };
  std::size_t start_offset = 0, pos = 0;
  while (pos < s.size()) {
    if (!t.first[static_cast<unsigned char>(s[pos])]) {
      ++pos;
      continue;
    }
    const auto [index, len] = t.longest(s, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    std::size_t start = pos, stop = pos + len;
    pos = stop;  // matches never overlap, whether used or not
    const added_token_spec& a = added_[static_cast<std::size_t>(index)];
    if (a.special && !parse_special) continue;
    if (a.single_word) {
      const bool start_ok = start == 0 || !is_word(last_char(s.substr(0, start)));
      const bool stop_ok = stop == s.size() || !is_word(first_char(s.substr(stop)));
      if (!start_ok || !stop_ok) continue;
    }
    if (a.lstrip) {
      std::size_t b = start;
      while (b > 0) {
        const std::string_view c = last_char(s.substr(0, b));
        if (!is_space(c)) break;
        b -= c.size();
      }
      start = std::max(b, start_offset);
    }
    if (a.rstrip) {
      while (stop < s.size()) {
        const std::string_view c = first_char(s.substr(stop));
        if (!is_space(c)) break;
        stop += c.size();
      }
      // The next match is still looked for from the token's own end, as HF's matcher does.
    }
    if (start_offset < start) on_text(s.substr(start_offset, start - start_offset));
    on_token(a.id);
    start_offset = stop;
  }
  if (start_offset < s.size()) on_text(s.substr(start_offset));
}

std::vector<std::uint32_t> tokenizer::encode(std::string_view text, const encode_options& opt) const {
  std::string cleaned;
  if (!is_valid_utf8(text)) {
    append_utf8_lossy(cleaned, text);
    text = cleaned;
  }
  std::vector<std::uint32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (opt.add_special_tokens) out.insert(out.end(), prefix_.begin(), prefix_.end());
  auto token = [&](std::uint32_t id) { out.push_back(id); };
  split_added(text, *raw_trie_, opt.parse_special,
              [&](std::string_view piece) {
                split_added(piece, *normalized_trie_, opt.parse_special,
                            [&](std::string_view rest) { encode_segment(rest, out); }, token);
              },
              token);
  if (opt.add_special_tokens) out.insert(out.end(), suffix_.begin(), suffix_.end());
  return out;
}

void tokenizer::encode_segment(std::string_view s, std::vector<std::uint32_t>& out) const { run_steps(s, 0, out); }

namespace {

/// A piece of a Split step's input: a match of its pattern or the text between two matches.
struct piece {
  std::size_t b, e;
  bool match;
};

/// Folds the pieces of a Split step as its behavior says (HF's SplitDelimiterBehavior), one at
/// a time, handing each finished piece to `emit`.
struct piece_folder {
  split_behavior behavior;
  bool have = false, prev_match = false;
  piece pending{};

  template <class Emit>
  void push(const piece& p, Emit&& emit) {
    switch (behavior) {
      case split_behavior::isolated: emit(p); return;
      case split_behavior::removed:
        if (!p.match) emit(p);
        return;
      case split_behavior::merged_with_previous:  // a match joins the non-match before it
        if (p.match && !prev_match && have) pending.e = p.e;
        else replace(p, emit);
        break;
      case split_behavior::contiguous:  // runs of matches (and of non-matches) join
        if (p.match == prev_match && have) pending.e = p.e;
        else replace(p, emit);
        break;
      case split_behavior::merged_with_next:  // a match joins the non-match after it
        if (have && pending.match && !p.match) pending = {pending.b, p.e, false};
        else replace(p, emit);
        break;
    }
    prev_match = p.match;
  }
  template <class Emit>
  void replace(const piece& p, Emit&& emit) {
    if (have) emit(pending);
    pending = p;
    have = true;
  }
  template <class Emit>
  void finish(Emit&& emit) {
    if (have) emit(pending);
    have = false;
  }
};

}  // namespace

void tokenizer::run_steps(std::string_view s, std::size_t step, std::vector<std::uint32_t>& out) const {
  if (step == splits_.size()) {
    byte_level(s, out);
    return;
  }
  const split_step& sp = splits_[step];
  piece_folder fold{sp.behavior};
  auto emit = [&](const piece& p) {
    if (p.e > p.b) run_steps(s.substr(p.b, p.e - p.b), step + 1, out);
  };
  // (begin, end, is_match) pieces covering s, as HF's Pattern::find_matches.
  regex::cursor c(sp.re, s);
  std::size_t prev = 0;
  for (std::size_t b, e; c.next(b, e);) {
    if (prev != b) fold.push({prev, b, sp.invert}, emit);
    fold.push({b, e, !sp.invert}, emit);
    prev = e;
  }
  if (prev != s.size()) fold.push({prev, s.size(), sp.invert}, emit);
  fold.finish(emit);
}

void tokenizer::byte_level(std::string_view s, std::vector<std::uint32_t>& out) const {
  std::string prefixed;
  if (add_prefix_space_ && s.front() != ' ') {
    prefixed.reserve(s.size() + 1);
    prefixed += ' ';
    prefixed += s;
    s = prefixed;
  }
  if (!byte_level_regex_) {
    bpe(s, out);
    return;
  }
  regex::cursor c(*byte_level_regex_, s);
  std::size_t prev = 0;
  for (std::size_t b, e; c.next(b, e);) {  // Isolated: the gaps are pieces too
    if (prev != b) bpe(s.substr(prev, b - prev), out);
    if (e > b) bpe(s.substr(b, e - b), out);
    prev = e;
  }
  if (prev != s.size()) bpe(s.substr(prev), out);
}

void tokenizer::bpe(std::string_view word, std::vector<std::uint32_t>& out) const {
  if (word.size() == 1) {  // one byte: no merge applies (digits, punctuation, spaces are often alone)
    const auto& init = initial_[static_cast<unsigned char>(word[0])];
    out.insert(out.end(), init.begin(), init.end());
    return;
  }
  if (ignore_merges_) {
    if (auto it = word_ids_.find(word); it != word_ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > detail::word_cache::kMaxWord) {
    bpe_uncached(word, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (cache_->words.find(word, out)) return;
  }
  const std::size_t before = out.size();
  bpe_uncached(word, out);
  std::lock_guard<std::mutex> lock(cache_->mu);
  cache_->words.insert(word, out.data() + before, out.size() - before);
}

void tokenizer::bpe_uncached(std::string_view word, std::vector<std::uint32_t>& out) const {
  struct symbol {
    std::uint32_t id;
    std::int32_t prev, next;
    bool alive;
  };
  std::vector<symbol> sym;
  sym.reserve(word.size());
  for (unsigned char c : word) {
    for (std::uint32_t id : initial_[c]) {
      if (fuse_unk_ && unk_ && id == *unk_ && !sym.empty() && sym.back().id == *unk_) continue;
      const auto i = static_cast<std::int32_t>(sym.size());
      sym.push_back({id, i - 1, i + 1, true});
    }
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  struct cand {
    std::uint32_t rank;
    std::int32_t pos;
    bool operator<(const cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }  // min-heap
  };
  std::vector<cand> heap;
  heap.reserve(sym.size());
  auto consider = [&](std::int32_t i) {
    const std::int32_t j = sym[static_cast<std::size_t>(i)].next;
    if (j < 0) return;
    if (const auto* m = merges_.find(sym[static_cast<std::size_t>(i)].id, sym[static_cast<std::size_t>(j)].id)) {
      heap.push_back({m->rank, i});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (std::int32_t i = 0; i + 1 < static_cast<std::int32_t>(sym.size()); ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const cand c = heap.back();
    heap.pop_back();
    symbol& a = sym[static_cast<std::size_t>(c.pos)];
    if (!a.alive || a.next < 0) continue;
    symbol& b = sym[static_cast<std::size_t>(a.next)];
    const auto* m = merges_.find(a.id, b.id);
    if (m == nullptr || m->rank != c.rank) continue;  // stale
    a.id = m->merged;
    b.alive = false;
    a.next = b.next;
    if (a.next >= 0) sym[static_cast<std::size_t>(a.next)].prev = c.pos;
    if (a.prev >= 0) consider(a.prev);
    consider(c.pos);
  }
  for (std::int32_t i = 0; i >= 0; i = sym[static_cast<std::size_t>(i)].next) out.push_back(sym[static_cast<std::size_t>(i)].id);
}

// ---------------------------------------------------------------- decode

void tokenizer::append_bytes(std::uint32_t id, std::string& out, bool skip_special_tokens) const {
  if (id >= tokens_.size() || !present_[id]) return;
  if (skip_special_tokens && special_[id]) return;
  out += bytes_[id];
}

std::string tokenizer::decode(std::span<const std::uint32_t> ids, bool skip_special_tokens) const {
  std::string raw;
  for (std::uint32_t id : ids) append_bytes(id, raw, skip_special_tokens);
  if (is_valid_utf8(raw)) return raw;
  std::string out;
  append_utf8_lossy(out, raw);
  return out;
}

}  // namespace nemotron_h::text
