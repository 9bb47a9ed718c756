#!/usr/bin/env python3
"""Writes ../tiny/tokenizer.json and ../tiny/tokenizer_config.json: a tokenizer for the tiny
fixture model (vocab 384) in the Nemotron-H / Nano-v2 layout, so a chat with the tiny
checkpoint runs end to end (standard library only).

Layout: <unk>=0, <s>=1, </s>=2, <SPECIAL_3>..<SPECIAL_15>=3..15 (special; 10 = System, 11 =
User/Assistant, 12 = end of turn), the 256 byte-level characters at 16 + byte, 110 merges
learned here by plain BPE on the short English text below (ids 272..381), then <think>=382 and
</think>=383 (not special), the family's Tekken split pattern, a ByteLevel decoder and a
"<s> $A" template. The model is random, so what it writes is noise; the tokenizer only has to
be a valid one of the family's shape.
"""
import collections, json, pathlib, re

def byte_chars():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
          r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CORPUS = """The quick brown fox jumps over the lazy dog. Hello, how are you today? I am fine,
thank you. What is the capital of France? The capital of France is Paris. Please write a short
poem about the sea. The sea is blue and the waves are high, the wind is strong under the sky.
Can you help me with my code? Of course, I can help you with that. There are many things to
learn in the world, and the best way to learn them is to ask questions and read books."""
N_MERGES = 110

bc = byte_chars()
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for i in range(3, 16):
    vocab[f"<SPECIAL_{i}>"] = i
for b in range(256):
    vocab[bc[b]] = 16 + b
# Plain BPE over the words of the corpus (a simple split on spaces is enough here: the merges
# only have to be plausible, the tokenizer applies whatever the file says).
words = collections.Counter()
for w in re.findall(r" ?[A-Za-z]+| ?[^A-Za-z\s]+|\s+", CORPUS):
    words[tuple(bc[c] for c in w.encode("utf-8"))] += 1
merges = []
while len(merges) < N_MERGES:
    pairs = collections.Counter()
    for w, n in words.items():
        for a, b in zip(w, w[1:]):
            pairs[(a, b)] += n
    (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
    merges.append((a, b))
    vocab[a + b] = len(vocab)
    new = collections.Counter()
    for w, n in words.items():
        out, i = [], 0
        while i < len(w):
            if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                out.append(a + b); i += 2
            else:
                out.append(w[i]); i += 1
        new[tuple(out)] += n
    words = new
assert len(vocab) == 382, len(vocab)

def added(i, c, special):
    return {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}

specials = [added(i, t, True) for t, i in vocab.items() if i < 16]
tok = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": specials + [added(382, "<think>", False), added(383, "</think>", False)],
    "normalizer": None,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": TEKKEN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
}
# A chat_template in the Nano-v2 shape (the runner reads only which format it is).
template = ("{%- for message in messages -%}"
            "{%- if message['role'] == 'system' -%}<SPECIAL_10>System\n{{ message['content'] }}\n"
            "{%- elif message['role'] == 'user' -%}<SPECIAL_11>User\n{{ message['content'] }}\n"
            "{%- elif message['role'] == 'assistant' -%}<SPECIAL_11>Assistant\n{{ message['content'] }}<SPECIAL_12>\n"
            "{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt -%}<SPECIAL_11>Assistant\n<think></think>{%- endif -%}")
config = {"bos_token": "<s>", "eos_token": "<SPECIAL_12>", "unk_token": "<unk>", "chat_template": template,
          "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 256}
out = pathlib.Path(__file__).resolve().parent.parent / "tiny"
(out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
(out / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
print(f"wrote {out / 'tokenizer.json'} and {out / 'tokenizer_config.json'}: {len(vocab) + 2} ids, {len(merges)} merges")
