#!/usr/bin/env python3
"""Writes tiny.json, the hand-made tokenizer of test_tokenizer.cpp (standard library only).

Layout: <unk>=0, <s>=1, </s>=2, the 256 byte-level characters at 3 + byte, seven merges
(ranks 0..6: "Ġ t", "h e", "Ġt he", "l l", "e ll", "h ell", "hell o"), the added tokens
<|im_start|>=266 (special) and <think>=267 (not special), the family's Tekken split pattern
(Isolated) then ByteLevel(add_prefix_space=false, use_regex=false), a ByteLevel decoder and a
"<s> $A" template. The expected ids in the test are derived by hand from this.
"""
import json, pathlib

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

bc = byte_chars()
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    vocab[bc[b]] = 3 + b
merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("e", "ll"), ("h", "ell"), ("hell", "o")]
for a, b in merges:
    vocab[a + b] = len(vocab)
assert vocab["hello"] == 265

def added(i, c, special):
    return {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}

tok = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [added(0, "<unk>", True), added(1, "<s>", True), added(2, "</s>", True),
                     added(266, "<|im_start|>", True), added(267, "<think>", False)],
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
out = pathlib.Path(__file__).with_name("tiny.json")
out.write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
print(f"wrote {out}")
