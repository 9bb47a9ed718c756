#include "text/tokenizer_json.hpp"

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "model/json_depth.hpp"
#include "piecewise/error.hpp"
#include "text/regex.hpp"

namespace nemotron_h::text {

namespace {

using json = nlohmann::json;
constexpr int kMaxJsonDepth = 64;
// Unused ids tolerated beyond one per defined token (see check_ids).
constexpr std::uint64_t kSpareIds = 1024;

/// A short, printable rendering of a JSON value for messages (cut at 80 characters).
std::string show(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

struct reader {
  const std::string& source;

  [[noreturn]] void fail(const std::string& msg) const {
    throw piecewise::config_error(fmt::format("{}: {}", source, msg));
  }

  const json& member(const json& obj, const char* key, const std::string& where) const {
    auto it = obj.find(key);
    if (it == obj.end()) fail(fmt::format("missing field '{}{}'", where.empty() ? "" : where + ".", key));
    return *it;
  }

  static std::string path(const std::string& where, const char* key) {
    return where.empty() ? std::string(key) : where + "." + key;
  }

  bool opt_bool(const json& obj, const char* key, bool dflt, const std::string& where) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) fail(fmt::format("field '{}' must be true or false, got {}", path(where, key), show(*it)));
    return it->get<bool>();
  }

  std::string str(const json& obj, const char* key, const std::string& where) const {
    const json& v = member(obj, key, where);
    if (!v.is_string()) fail(fmt::format("field '{}' must be a string, got {}", path(where, key), show(v)));
    return v.get<std::string>();
  }

  std::uint32_t id(const json& v, const std::string& where) const {
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > std::numeric_limits<std::int32_t>::max()) {
      fail(fmt::format("field '{}' must be an id in [0, 2^31), got {}", where, show(v)));
    }
    return static_cast<std::uint32_t>(v.get<std::int64_t>());
  }

  const json& object(const json& v, const std::string& where) const {
    if (!v.is_object()) fail(fmt::format("field '{}' must be an object, got {}", where, show(v)));
    return v;
  }

  const json& array(const json& v, const std::string& where) const {
    if (!v.is_array()) fail(fmt::format("field '{}' must be an array, got {}", where, show(v)));
    return v;
  }

  std::string type_of(const json& obj, const std::string& where) const {
    object(obj, where);
    return str(obj, "type", where);
  }

  [[noreturn]] void unsupported(const std::string& where, const std::string& type) const {
    fail(fmt::format("{} type '{}' not supported", where, type));
  }

  // --- sections ---

  void added_tokens(const json& root, tokenizer_spec& spec) const {
    auto it = root.find("added_tokens");
    if (it == root.end() || it->is_null()) return;
    array(*it, "added_tokens");
    for (std::size_t i = 0; i < it->size(); ++i) {
      const std::string w = fmt::format("added_tokens[{}]", i);
      const json& t = object((*it)[i], w);
      added_token_spec a;
      a.id = id(member(t, "id", w), w + ".id");
      a.content = str(t, "content", w);
      if (a.content.empty()) fail(fmt::format("field '{}.content' is empty", w));
      a.single_word = opt_bool(t, "single_word", false, w);
      a.lstrip = opt_bool(t, "lstrip", false, w);
      a.rstrip = opt_bool(t, "rstrip", false, w);
      a.special = opt_bool(t, "special", false, w);
      a.normalized = opt_bool(t, "normalized", !a.special, w);
      spec.added_tokens.push_back(std::move(a));
    }
  }

  void normalizer(const json& root) const {
    auto it = root.find("normalizer");
    if (it == root.end() || it->is_null()) return;
    const std::string t = type_of(*it, "normalizer");
    if (t == "Sequence") {
      const json& list = array(member(*it, "normalizers", "normalizer"), "normalizer.normalizers");
      if (list.empty()) return;
      unsupported("normalizer.normalizers[0]", list[0].is_object() && list[0].contains("type") ? show(list[0]["type"]) : show(list[0]));
    }
    unsupported("normalizer", t);
  }

  split_behavior behavior(const json& step, const std::string& where) const {
    const std::string b = str(step, "behavior", where);
    if (b == "Removed") return split_behavior::removed;
    if (b == "Isolated") return split_behavior::isolated;
    if (b == "MergedWithPrevious") return split_behavior::merged_with_previous;
    if (b == "MergedWithNext") return split_behavior::merged_with_next;
    if (b == "Contiguous") return split_behavior::contiguous;
    fail(fmt::format("field '{}.behavior' = '{}' not supported (Removed, Isolated, MergedWithPrevious, "
                     "MergedWithNext or Contiguous)", where, b));
  }

  void pre_step(const json& step, const std::string& where, tokenizer_spec& spec) const {
    const std::string t = type_of(step, where);
    pre_tokenizer_step s;
    s.where = where;
    if (t == "Split") {
      s.type = pre_tokenizer_step::kind::split;
      const json& pat = object(member(step, "pattern", where), where + ".pattern");
      if (pat.size() != 1) fail(fmt::format("field '{}.pattern' must have one key (Regex or String), got {}", where, show(pat)));
      if (pat.contains("Regex")) s.regex = str(pat, "Regex", where + ".pattern");
      else if (pat.contains("String")) {
        const std::string lit = str(pat, "String", where + ".pattern");
        if (lit.empty()) fail(fmt::format("field '{}.pattern.String' is empty (not supported)", where));
        s.regex = regex::escape(lit);
      }
      else fail(fmt::format("field '{}.pattern' must be {{\"Regex\": ...}} or {{\"String\": ...}}, got {}", where, show(pat)));
      s.behavior = behavior(step, where);
      s.invert = opt_bool(step, "invert", false, where);
      const std::string what = fmt::format("{}: {}.pattern", source, where);
      (void)regex(regex::from_oniguruma(s.regex, what), what);  // compile errors surface here
    } else if (t == "ByteLevel") {
      s.type = pre_tokenizer_step::kind::byte_level;
      s.add_prefix_space = opt_bool(step, "add_prefix_space", true, where);
      s.use_regex = opt_bool(step, "use_regex", true, where);
      (void)opt_bool(step, "trim_offsets", true, where);  // offsets only: no effect on ids
    } else {
      unsupported(where, t);
    }
    spec.pre_tokenizer.push_back(std::move(s));
  }

  void pre_tokenizer(const json& root, tokenizer_spec& spec) const {
    const json& p = member(root, "pre_tokenizer", "");
    if (p.is_null()) fail("pre_tokenizer is null: only byte-level BPE (a ByteLevel pre-tokenizer) is supported");
    const std::string t = type_of(p, "pre_tokenizer");
    if (t == "Sequence") {
      const json& list = array(member(p, "pretokenizers", "pre_tokenizer"), "pre_tokenizer.pretokenizers");
      for (std::size_t i = 0; i < list.size(); ++i) pre_step(list[i], fmt::format("pre_tokenizer.pretokenizers[{}]", i), spec);
    } else {
      pre_step(p, "pre_tokenizer", spec);
    }
    for (std::size_t i = 0; i < spec.pre_tokenizer.size(); ++i) {
      const bool byte_level = spec.pre_tokenizer[i].type == pre_tokenizer_step::kind::byte_level;
      if (byte_level && i + 1 != spec.pre_tokenizer.size()) {
        fail(fmt::format("{}: a ByteLevel step must be the last pre-tokenizer step (steps after it are not supported)",
                         spec.pre_tokenizer[i].where));
      }
    }
    if (spec.pre_tokenizer.empty() || spec.pre_tokenizer.back().type != pre_tokenizer_step::kind::byte_level) {
      fail("pre_tokenizer has no ByteLevel step: only byte-level BPE is supported");
    }
  }

  void model(const json& root, tokenizer_spec& spec) const {
    const json& m = member(root, "model", "");
    const std::string t = type_of(m, "model");
    if (t != "BPE") unsupported("model", t);
    bpe_spec& b = spec.model;
    if (auto it = m.find("dropout"); it != m.end() && !it->is_null()) {
      if (!it->is_number() || it->get<double>() != 0.0) fail(fmt::format("field 'model.dropout' = {} not supported (only null)", show(*it)));
    }
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      auto it = m.find(k);
      if (it != m.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
        fail(fmt::format("field 'model.{}' = {} not supported (only null)", k, show(*it)));
      }
    }
    if (auto it = m.find("unk_token"); it != m.end() && !it->is_null()) b.unk_token = str(m, "unk_token", "model");
    b.fuse_unk = opt_bool(m, "fuse_unk", false, "model");
    b.byte_fallback = opt_bool(m, "byte_fallback", false, "model");
    b.ignore_merges = opt_bool(m, "ignore_merges", false, "model");

    const json& vocab = object(member(m, "vocab", "model"), "model.vocab");
    std::unordered_map<std::string_view, std::uint32_t> ids;  // views of the JSON's keys
    b.vocab.reserve(vocab.size());
    ids.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const json& val = it.value();
      const std::uint32_t v = val.is_number_unsigned() && val.get<std::uint64_t>() <= 0x7FFFFFFFu
                                  ? static_cast<std::uint32_t>(val.get<std::uint64_t>())
                                  : id(val, fmt::format("model.vocab[{}]", show(json(it.key()))));
      ids.emplace(it.key(), v);
      b.vocab.emplace_back(it.key(), v);
    }
    {  // duplicate ids: sort a copy, then name the tokens of the first one found
      std::vector<std::uint32_t> sorted;
      sorted.reserve(b.vocab.size());
      for (const auto& e : b.vocab) sorted.push_back(e.second);
      std::sort(sorted.begin(), sorted.end());
      const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
      if (dup != sorted.end()) {
        std::vector<std::string> names;
        for (const auto& e : b.vocab) {
          if (e.second == *dup) names.push_back(show(json(e.first)));
        }
        fail(fmt::format("model.vocab: id {} is used by more than one token ({} and {})", *dup, names[0], names[1]));
      }
    }
    if (b.unk_token && !ids.count(*b.unk_token)) {
      fail(fmt::format("field 'model.unk_token' = {} is not in model.vocab", show(json(*b.unk_token))));
    }
    const json& merges = array(member(m, "merges", "model"), "model.merges");
    b.merges.reserve(merges.size());
    std::string joined;  // reused: a + b
    for (std::size_t i = 0; i < merges.size(); ++i) {
      const json& e = merges[i];
      std::string_view a, bb;
      if (e.is_string()) {
        const std::string& s = e.get_ref<const std::string&>();
        const std::size_t sp = s.find(' ');
        if (sp == std::string::npos) fail(fmt::format("model.merges[{}] = {}: expected \"a b\" (two tokens and a space)", i, show(e)));
        a = std::string_view(s).substr(0, sp);
        bb = std::string_view(s).substr(sp + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        a = e[0].get_ref<const std::string&>();
        bb = e[1].get_ref<const std::string&>();
      } else {
        fail(fmt::format("model.merges[{}] = {}: expected \"a b\" or [\"a\", \"b\"]", i, show(e)));
      }
      for (std::string_view part : {a, bb}) {
        if (!ids.count(part)) fail(fmt::format("model.merges[{}] = {}: token {} is not in model.vocab", i, show(e), show(json(std::string(part)))));
      }
      joined.assign(a);
      joined += bb;
      if (!ids.count(joined)) {
        fail(fmt::format("model.merges[{}] = {}: the merged token {} is not in model.vocab", i, show(e), show(json(joined))));
      }
      b.merges.emplace_back(std::string(a), std::string(bb));
    }
  }

  void decoder(const json& root) const {
    const json& d = member(root, "decoder", "");
    if (d.is_null()) fail("decoder is null: only the ByteLevel decoder is supported");
    const std::string t = type_of(d, "decoder");
    if (t == "ByteLevel") return;
    if (t == "Sequence") {  // a Sequence holding exactly one ByteLevel is the same decoder
      const json& list = array(member(d, "decoders", "decoder"), "decoder.decoders");
      if (list.size() == 1 && type_of(list[0], "decoder.decoders[0]") == "ByteLevel") return;
      fail(fmt::format("decoder Sequence {} not supported (only ByteLevel)", show(list)));
    }
    unsupported("decoder", t);
  }

  void template_single(const json& p, const std::string& where, tokenizer_spec& spec) const {
    const json& single = array(member(p, "single", where), where + ".single");
    const json& specials = object(member(p, "special_tokens", where), where + ".special_tokens");
    bool seen_a = false;
    for (std::size_t i = 0; i < single.size(); ++i) {
      const std::string w = fmt::format("{}.single[{}]", where, i);
      const json& piece = object(single[i], w);
      if (piece.contains("Sequence")) {
        const std::string seq = str(object(piece["Sequence"], w + ".Sequence"), "id", w + ".Sequence");
        if (seq != "A" || seen_a) fail(fmt::format("{}: sequence '{}' not supported in the single template", w, seq));
        seen_a = true;
      } else if (piece.contains("SpecialToken")) {
        const std::string name = str(object(piece["SpecialToken"], w + ".SpecialToken"), "id", w + ".SpecialToken");
        auto it = specials.find(name);
        if (it == specials.end()) fail(fmt::format("{}: special token {} is not in {}.special_tokens", w, show(json(name)), where));
        const std::string sw = fmt::format("{}.special_tokens[{}]", where, show(json(name)));
        const json& ids = array(member(object(*it, sw), "ids", sw), sw + ".ids");
        for (const json& v : ids) (seen_a ? spec.post_processor.suffix : spec.post_processor.prefix).push_back(id(v, sw + ".ids"));
      } else {
        fail(fmt::format("{} = {}: expected Sequence or SpecialToken", w, show(piece)));
      }
    }
    if (!seen_a) fail(fmt::format("{}.single has no $A sequence", where));
  }

  void post_step(const json& p, const std::string& where, tokenizer_spec& spec, bool& have_template) const {
    const std::string t = type_of(p, where);
    if (t == "ByteLevel") return;  // offsets only
    if (t == "TemplateProcessing") {
      if (have_template) fail(fmt::format("{}: more than one TemplateProcessing", where));
      have_template = true;
      template_single(p, where, spec);
      return;
    }
    if (t == "Sequence") {
      const json& list = array(member(p, "processors", where), where + ".processors");
      for (std::size_t i = 0; i < list.size(); ++i) post_step(list[i], fmt::format("{}.processors[{}]", where, i), spec, have_template);
      return;
    }
    unsupported(where, t);
  }

  void post_processor(const json& root, tokenizer_spec& spec) const {
    auto it = root.find("post_processor");
    if (it == root.end() || it->is_null()) return;
    bool have_template = false;
    post_step(*it, "post_processor", spec, have_template);
  }

  void check_ids(const tokenizer_spec& spec) const {
    // Only the ids that added tokens and the template use are looked up in the vocabulary.
    std::unordered_map<std::uint32_t, const std::string*> by_id;
    for (const added_token_spec& a : spec.added_tokens) by_id.emplace(a.id, nullptr);
    for (std::uint32_t v : spec.post_processor.prefix) by_id.emplace(v, nullptr);
    for (std::uint32_t v : spec.post_processor.suffix) by_id.emplace(v, nullptr);
    for (const auto& [tok, v] : spec.model.vocab) {
      if (auto it = by_id.find(v); it != by_id.end()) it->second = &tok;
    }
    std::unordered_set<std::string> contents;
    for (std::size_t i = 0; i < spec.added_tokens.size(); ++i) {
      const added_token_spec& a = spec.added_tokens[i];
      if (!contents.insert(a.content).second) fail(fmt::format("added_tokens[{}]: content {} appears twice", i, show(json(a.content))));
      const std::string*& in_vocab = by_id[a.id];
      if (in_vocab != nullptr && *in_vocab != a.content) {
        fail(fmt::format("added_tokens[{}]: id {} is {} in model.vocab but {} here", i, a.id, show(json(*in_vocab)), show(json(a.content))));
      }
      if (in_vocab == nullptr) in_vocab = &a.content;
    }
    for (const auto* ids : {&spec.post_processor.prefix, &spec.post_processor.suffix}) {
      for (std::uint32_t v : *ids) {
        if (by_id[v] == nullptr) fail(fmt::format("post_processor: id {} is neither in model.vocab nor in added_tokens", v));
      }
    }
    // The tokenizer keeps one entry per id, so the id space has to be mostly used: a stray
    // id of 2^30 would otherwise cost gigabytes before the first token is encoded.
    std::uint64_t defined = spec.model.vocab.size(), top = 0;
    std::uint32_t top_id = 0;
    for (const auto& [tok, v] : spec.model.vocab) {
      if (v + 1ull > top) top = v + 1ull, top_id = v;
    }
    for (const added_token_spec& a : spec.added_tokens) {
      if (by_id[a.id] == &a.content) ++defined;  // not also in model.vocab
      if (a.id + 1ull > top) top = a.id + 1ull, top_id = a.id;
    }
    if (top > 2 * defined + kSpareIds) {
      fail(fmt::format("token ids run up to {} but only {} tokens are defined: more than half the id space would be unused "
                       "(at most 2 x tokens + {} ids are accepted)",
                       top_id, defined, kSpareIds));
    }
  }
};

}  // namespace

tokenizer_spec parse_tokenizer_json_text(std::string_view text, const std::string& source) {
  reader r{source};
  if (json_depth(text) > kMaxJsonDepth) r.fail(fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth));
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    r.fail(fmt::format("invalid JSON: {}", e.what()));
  }
  if (!root.is_object()) r.fail(fmt::format("expected a JSON object at the top, got {}", root.type_name()));
  for (const char* k : {"truncation", "padding"}) {
    auto it = root.find(k);
    if (it != root.end() && !it->is_null()) r.fail(fmt::format("field '{}' = {} not supported (only null)", k, show(*it)));
  }
  tokenizer_spec spec;
  spec.source = source;
  r.added_tokens(root, spec);
  r.normalizer(root);
  r.pre_tokenizer(root, spec);
  r.model(root, spec);
  r.decoder(root);
  r.post_processor(root, spec);
  r.check_ids(spec);
  return spec;
}

tokenizer_spec load_tokenizer_json(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw piecewise::config_error(fmt::format("{}: cannot read tokenizer.json: {}", path.string(), ec.message()));
  if (size > (1ull << 30)) throw piecewise::config_error(fmt::format("{}: {} bytes, larger than the 1 GiB limit", path.string(), size));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw piecewise::config_error(fmt::format("{}: cannot open tokenizer.json", path.string()));
  std::string text(size, '\0');
  f.read(text.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uint64_t>(f.gcount()) != size) throw piecewise::config_error(fmt::format("{}: short read", path.string()));
  return parse_tokenizer_json_text(text, path.string());
}

}  // namespace nemotron_h::text
