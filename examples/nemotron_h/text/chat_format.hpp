// The chat formats of the NemotronH family, and the text files of a checkpoint a chat needs.
//
//  - nemotron-h (Nemotron-H, Nano-v2): `<SPECIAL_10>System\n{system}\n`, `<SPECIAL_11>User\n{text}\n`,
//    `<SPECIAL_11>Assistant\n{text}<SPECIAL_12>\n`; reasoning is asked for with `/think` (or
//    turned off with `/no_think`) in the system turn, and the assistant turn opens with
//    `<think>\n` (thinking) or `<think></think>` (not).
//  - chatml (Nemotron 3): `<|im_start|>{role}\n{text}<|im_end|>\n`; the assistant turn opens
//    with `<think>\n` or, thinking off, `<think></think>`.
//
// A conversation is rendered once and then extended turn by turn (chat_format::next_turn), so a
// multi-turn session feeds the model only the new text while the sequence's state (KV cache,
// conv and SSM state) keeps the rest. The special tokens are split off before BPE (see
// tokenizer.hpp), so encoding the pieces one by one gives the same ids as encoding the whole.
// Host only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer.hpp"

namespace nemotron_h::text {

enum class chat_style { nemotron_h, chatml };

/// "nemotron-h" or "chatml".
std::string_view to_string(chat_style s) noexcept;
/// The style named `name` ("nemotron-h", "chatml"); throws piecewise::config_error otherwise.
chat_style parse_chat_style(std::string_view name);

/// A chat format bound to a tokenizer: the texts of the turns and the ids that end a turn.
class chat_format {
 public:
  /// Checks that `tok` has the format's special tokens (the turn markers and the end of turn).
  /// Throws piecewise::config_error naming the tokenizer file and the missing token.
  chat_format(chat_style style, const tokenizer& tok);

  [[nodiscard]] chat_style style() const noexcept { return style_; }
  /// The id of the end-of-turn token (`<SPECIAL_12>` or `<|im_end|>`).
  [[nodiscard]] std::uint32_t end_of_turn() const noexcept { return end_of_turn_; }

  /// The first text of a session: the system turn (when `system` is set, or always for
  /// nemotron-h, which carries the thinking switch there), the user turn and the opening of
  /// the assistant turn.
  [[nodiscard]] std::string first_turn(const std::optional<std::string>& system, std::string_view user,
                                       bool thinking) const;
  /// The text after the model's answer: the end of its turn (unless the answer already ended
  /// with the end-of-turn token: `answer_closed`), the next user turn and the opening of the
  /// next assistant turn.
  [[nodiscard]] std::string next_turn(std::string_view user, bool thinking, bool answer_closed) const;
  /// A whole conversation (role "system", "user" or "assistant" per message, in order) ending
  /// with the opening of an assistant turn: the reference the incremental texts are tested
  /// against. Throws piecewise::config_error for an unknown role or a system message that is
  /// not first.
  [[nodiscard]] std::string render(const std::vector<std::pair<std::string, std::string>>& messages,
                                   bool thinking) const;

 private:
  std::string assistant_open(bool thinking) const;
  chat_style style_;
  std::uint32_t end_of_turn_ = 0;
};

/// What a checkpoint directory says about text: its tokenizer and chat format.
struct text_assets {
  std::filesystem::path tokenizer_file;      ///< tokenizer.json
  std::optional<chat_style> chat;            ///< from tokenizer_config.json's chat_template, or the special tokens
  std::string chat_reason;                   ///< where `chat` came from (or why there is none), for the report
  std::vector<std::uint32_t> eos_ids;        ///< generation_config.json / config.json eos_token_id (int or list)
};

/// Finds the tokenizer and the chat format of a checkpoint: `tokenizer_file` (empty: DIR/tokenizer.json),
/// the chat_template of DIR/tokenizer_config.json (`<|im_start|>` -> chatml, `<SPECIAL_11>` ->
/// nemotron-h), else the tokenizer's special tokens; eos ids from DIR/generation_config.json, else
/// DIR/config.json. `dir` may be empty (a preset): then only `tokenizer_file` is used.
/// Throws piecewise::config_error naming the file and field (unreadable JSON, a chat_template of
/// no known format, an eos_token_id that is not an id). Does not build the tokenizer.
text_assets find_text_assets(const std::filesystem::path& dir, const std::filesystem::path& tokenizer_file);

/// The chat style of `assets` resolved against the tokenizer: `requested` ("auto", "nemotron-h",
/// "chatml"); "auto" takes assets.chat, else the tokenizer's special tokens (`<|im_start|>` and
/// `<|im_end|>` -> chatml, `<SPECIAL_11>` and `<SPECIAL_12>` -> nemotron-h). Throws
/// piecewise::config_error when none fits.
chat_style resolve_chat_style(std::string_view requested, const text_assets& assets, const tokenizer& tok);

}  // namespace nemotron_h::text
