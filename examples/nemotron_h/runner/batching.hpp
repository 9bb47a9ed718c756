// Host-side batch planning of the NemotronH runner: the model's size limits, the checks of a
// prefill or decode batch against them, and the packing of prompts into prefill chunks.
//
// Host only, C++17 (no CUDA headers): the runner's host tests use it without a GPU. Errors are
// piecewise::config_error naming the sequence, the slot or the size.
#pragma once

#include <vector>

namespace nemotron_h {

/// Sizes fixed at construction: every buffer of the GPU model is allocated once for these bounds.
struct gpu_model_limits {
  int max_prefill_tokens = 2048;  ///< largest prefill bucket (tokens of one packed chunk)
  int max_decode_batch = 64;      ///< largest decode bucket (sequences of one step)
  int num_slots = 8;              ///< sequences with state (KV cache, conv/SSM state)
  int max_context = 4096;         ///< positions per slot (prompt + generated tokens)
  int max_decode_steps = 1024;    ///< rows of the on-device token history
  /// Pick tokens with sample_rows (kernels/sampling.cuh: temperature, top-k, top-p, min-p per
  /// slot) instead of the greedy argmax. Greedy slots give the same ids either way; false keeps
  /// the forward to the argmax alone (the benchmarks' setting).
  bool sampling = false;
};

/// Token rows of every activation buffer: max(max_prefill_tokens, max_decode_batch).
int max_rows(const gpu_model_limits& lim) noexcept;
/// Rows of the per-sequence buffers: max(num_slots, max_decode_batch).
int max_sequences(const gpu_model_limits& lim) noexcept;
/// Throws piecewise::config_error listing every limit unless all are positive.
void check_limits(const gpu_model_limits& lim);

/// The two forwards the engine runs, each with its own segment table.
enum class phase { prefill, decode };

/// Checks one prefill chunk: sequence i has `lens[i]` new tokens of `tokens` (packed), lives
/// in slot `slots[i]` and has `context[i]` tokens cached already. Returns cu_seqlens
/// (lens.size() + 1 offsets, starting at 0). Throws piecewise::config_error ("prefill batch:
/// ...") for no or too many sequences, mismatched list sizes, an empty sequence, a slot out of
/// range or used twice, a context that would pass max_context, lengths that do not add up to
/// the tokens, more than max_prefill_tokens tokens, or a token id outside [0, vocab).
std::vector<int> check_prefill_batch(const std::vector<int>& tokens, const std::vector<int>& lens,
                                     const std::vector<int>& slots, const std::vector<int>& context,
                                     const gpu_model_limits& lim, int vocab);

/// Checks a decode batch: sequence i (slot slots[i]) continues from `context[i]` cached tokens
/// with next token `first_ids[i]`. Throws piecewise::config_error ("decode batch: ...") for no
/// or more than max_decode_batch sequences, mismatched list sizes, a slot out of range or used
/// twice, a context outside [1, max_context), or a token id outside [0, vocab).
void check_decode_batch(const std::vector<int>& first_ids, const std::vector<int>& slots,
                        const std::vector<int>& context, const gpu_model_limits& lim, int vocab);

/// One prefill chunk: the arguments of gpu_model::set_prefill_batch, and which sequences it
/// finishes.
struct prefill_chunk {
  std::vector<int> tokens;   ///< the new tokens of every sequence, packed
  std::vector<int> lens;     ///< new tokens per sequence
  std::vector<int> slots;    ///< each sequence's slot: the index of its prompt
  std::vector<int> context;  ///< tokens of the prompt prefilled by earlier chunks
  std::vector<bool> last;    ///< this chunk holds the prompt's last token
};

/// Packs `prompts` (prompt i in slot i, fresh sequences) into chunks of at most `max_tokens`
/// tokens and `max_seqs` sequences, in prompt order: each chunk continues the first unfinished
/// prompt and takes the following ones while room is left; a prompt longer than the room is
/// split, its rest starts the next chunk. Every token appears exactly once.
/// Throws piecewise::config_error for no prompts, an empty prompt, or limits below 1.
std::vector<prefill_chunk> pack_prefill_chunks(const std::vector<std::vector<int>>& prompts, int max_tokens,
                                               int max_seqs);

}  // namespace nemotron_h
