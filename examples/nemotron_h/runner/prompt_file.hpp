// --prompt-file: one prompt a line, or JSONL with per-prompt settings. Host only.
//
// A file whose first non-blank line starts with '{' (or whose name ends in .jsonl) is JSONL:
// each non-blank line is an object with "prompt" (a string, required) and optionally
// "max_tokens", "temperature", "top_k", "top_p", "min_p", "seed" and "stop" (a string or a
// list of strings), each overriding the command line's value for that prompt. Otherwise each
// non-blank line is one prompt (the line's text without its line break; "\n" is not expanded).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "runner/sampling_settings.hpp"

namespace nemotron_h {

struct text_prompt {
  std::string text;
  sampling_settings sampling;
  std::string where;  ///< "FILE:LINE" or "--prompt", for messages
  bool own_seed = false;  ///< the line gave "seed" (else the run derives one per sequence)
};

/// Reads the prompts of `path`, each starting from `defaults`. Throws piecewise::config_error
/// naming the file and line: unreadable file, no prompt, invalid JSON, a line that is not an
/// object, a missing or non-string "prompt", an unknown key, a value of the wrong type or out
/// of range (check_sampling).
std::vector<text_prompt> read_prompt_file(const std::filesystem::path& path, const sampling_settings& defaults);

}  // namespace nemotron_h
