#include "text/chat_format.hpp"


#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/read_file.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h::text {

namespace {

struct markers {
  const char* system;     // opens the system turn
  const char* user;       // opens a user turn
  const char* assistant;  // opens an assistant turn
  const char* end;        // ends a turn (the end-of-turn token's content)
  const char* close;      // what follows the end-of-turn token
};

// nemotron-h: the end of a system or user turn is a newline, the end of an assistant turn
// the end-of-turn token and a newline. chatml: every turn ends with <|im_end|>\n.
constexpr markers kNemotronH{"<SPECIAL_10>System\n", "<SPECIAL_11>User\n", "<SPECIAL_11>Assistant\n", "<SPECIAL_12>",
                             "\n"};
constexpr markers kChatml{"<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>", "\n"};

const markers& markers_of(chat_style s) { return s == chat_style::chatml ? kChatml : kNemotronH; }

// The end of a non-assistant turn.
std::string turn_end(chat_style s) {
  return s == chat_style::chatml ? std::string(kChatml.end) + kChatml.close : std::string("\n");
}

nlohmann::json read_json(const std::filesystem::path& p) {
  const std::string text = read_small_file(p, 64u << 20, "a JSON");  // tokenizer_config.json may hold long templates
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw piecewise::config_error(fmt::format("{}: invalid JSON ({})", p.string(), e.what()));
  }
}

// eos_token_id: an id or a list of ids.
std::vector<std::uint32_t> eos_of(const nlohmann::json& j, const std::filesystem::path& file) {
  std::vector<std::uint32_t> out;
  const auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return out;
  auto one = [&](const nlohmann::json& v) {
    if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() > 0xffffffffLL)
      throw piecewise::config_error(
          fmt::format("{}: eos_token_id holds {}, which is not a token id", file.string(), v.dump()));
    out.push_back(static_cast<std::uint32_t>(v.get<long long>()));
  };
  if (it->is_array()) {
    for (const auto& v : *it) one(v);
  } else {
    one(*it);
  }
  return out;
}

std::optional<chat_style> style_of_template(const std::string& t) {
  if (t.find("<|im_start|>") != std::string::npos) return chat_style::chatml;
  if (t.find("<SPECIAL_11>") != std::string::npos) return chat_style::nemotron_h;
  return std::nullopt;
}

bool has_special(const tokenizer& tok, std::string_view content) {
  const auto id = tok.token_to_id(content);
  return id && tok.is_special(*id);
}

}  // namespace

std::string_view to_string(chat_style s) noexcept { return s == chat_style::chatml ? "chatml" : "nemotron-h"; }

chat_style parse_chat_style(std::string_view name) {
  if (name == "nemotron-h") return chat_style::nemotron_h;
  if (name == "chatml") return chat_style::chatml;
  throw piecewise::config_error(fmt::format("chat format '{}' is not known: use nemotron-h or chatml", name));
}

chat_format::chat_format(chat_style style, const tokenizer& tok) : style_(style) {
  const markers& m = markers_of(style);
  const std::vector<std::string> needed =
      style == chat_style::chatml ? std::vector<std::string>{"<|im_start|>", "<|im_end|>"}
                                  : std::vector<std::string>{"<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>"};
  for (const std::string& t : needed) {
    if (!tok.token_to_id(t))
      throw piecewise::config_error(fmt::format("{}: the {} chat format needs the token {}, which the tokenizer lacks",
                                                tok.source(), to_string(style), t));
  }
  end_of_turn_ = *tok.token_to_id(m.end);
}

std::string chat_format::assistant_open(bool thinking) const {
  return std::string(markers_of(style_).assistant) + (thinking ? "<think>\n" : "<think></think>");
}

std::string chat_format::first_turn(const std::optional<std::string>& system, std::string_view user,
                                    bool thinking) const {
  const markers& m = markers_of(style_);
  std::string s;
  if (style_ == chat_style::nemotron_h) {
    // The thinking switch lives in the system turn, so there always is one.
    const std::string sys = system.value_or("");
    s += m.system + sys + (sys.empty() ? "" : "\n") + (thinking ? "/think" : "/no_think") + turn_end(style_);
  } else if (system) {
    s += m.system + *system + turn_end(style_);
  }
  s += m.user + std::string(user) + turn_end(style_);
  return s + assistant_open(thinking);
}

std::string chat_format::next_turn(std::string_view user, bool thinking, bool answer_closed) const {
  const markers& m = markers_of(style_);
  std::string s = answer_closed ? std::string(m.close) : std::string(m.end) + m.close;
  s += m.user + std::string(user) + turn_end(style_);
  return s + assistant_open(thinking);
}

std::string chat_format::render(const std::vector<std::pair<std::string, std::string>>& messages,
                                bool thinking) const {
  std::optional<std::string> system;
  std::size_t i = 0;
  if (!messages.empty() && messages[0].first == "system") {
    system = messages[0].second;
    i = 1;
  }
  std::string s;
  bool first = true, after_answer = false;
  for (; i < messages.size(); ++i) {
    const auto& [role, text] = messages[i];
    if (role == "user") {
      s += first ? first_turn(system, text, thinking) : next_turn(text, thinking, /*answer_closed=*/false);
      first = false;
      after_answer = false;
    } else if (role == "assistant") {
      if (first || after_answer)
        throw piecewise::config_error(fmt::format("chat: message {} is an assistant turn that follows no user turn", i));
      s += text;  // appended to the opened assistant turn; next_turn closes it
      after_answer = true;
    } else if (role == "system") {
      throw piecewise::config_error(fmt::format("chat: message {} is a system turn; only the first may be", i));
    } else {
      throw piecewise::config_error(
          fmt::format("chat: message {} has role '{}' (system, user or assistant)", i, role));
    }
  }
  if (first) throw piecewise::config_error("chat: the conversation has no user turn");
  if (after_answer) throw piecewise::config_error("chat: the conversation must end with a user turn");
  return s;
}

text_assets find_text_assets(const std::filesystem::path& dir, const std::filesystem::path& tokenizer_file) {
  namespace fs = std::filesystem;
  text_assets a;
  std::error_code ec;
  a.tokenizer_file = !tokenizer_file.empty() ? tokenizer_file : dir.empty() ? fs::path() : dir / "tokenizer.json";
  if (a.tokenizer_file.empty())
    throw piecewise::config_error("text needs a tokenizer: presets have none, give one with --tokenizer FILE");
  if (!fs::is_regular_file(a.tokenizer_file, ec))
    throw piecewise::config_error(
        fmt::format("{}: no tokenizer there{}", a.tokenizer_file.string(),
                    tokenizer_file.empty() ? " (the checkpoint has no tokenizer.json; give one with --tokenizer FILE)" : ""));
  a.chat_reason = "from the tokenizer's special tokens";
  if (dir.empty()) return a;
  const fs::path tc = dir / "tokenizer_config.json";
  if (fs::is_regular_file(tc, ec)) {
    const nlohmann::json j = read_json(tc);
    const auto it = j.find("chat_template");
    if (it != j.end() && !it->is_null()) {
      std::string t;
      if (it->is_string()) {
        t = it->get<std::string>();
      } else if (it->is_array()) {  // [{"name": "default", "template": "..."}, ...]
        for (const auto& e : *it)
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
            t = e["template"].get<std::string>();
      }
      if (t.empty())
        throw piecewise::config_error(fmt::format("{}: chat_template is neither a string nor a list holding a "
                                                  "\"default\" template",
                                                  tc.string()));
      a.chat = style_of_template(t);
      if (!a.chat)
        throw piecewise::config_error(fmt::format("{}: chat_template is of no known format (neither <|im_start|> "
                                                  "nor <SPECIAL_11> turns); choose one with --chat-format",
                                                  tc.string()));
      a.chat_reason = fmt::format("from the chat_template of {}", tc.string());
    }
  }
  for (const char* name : {"generation_config.json", "config.json"}) {
    const fs::path p = dir / name;
    if (!fs::is_regular_file(p, ec)) continue;
    a.eos_ids = eos_of(read_json(p), p);
    if (!a.eos_ids.empty()) break;
  }
  return a;
}

chat_style resolve_chat_style(std::string_view requested, const text_assets& assets, const tokenizer& tok) {
  if (requested != "auto") return parse_chat_style(requested);
  if (assets.chat) return *assets.chat;
  if (has_special(tok, "<|im_start|>") && has_special(tok, "<|im_end|>")) return chat_style::chatml;
  if (has_special(tok, "<SPECIAL_11>") && has_special(tok, "<SPECIAL_12>")) return chat_style::nemotron_h;
  throw piecewise::config_error(fmt::format(
      "{}: no chat format found (no chat_template, and neither <|im_start|>/<|im_end|> nor "
      "<SPECIAL_11>/<SPECIAL_12> special tokens); choose one with --chat-format nemotron-h|chatml",
      tok.source()));
}

}  // namespace nemotron_h::text
