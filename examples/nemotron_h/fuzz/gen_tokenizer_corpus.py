#!/usr/bin/env python3
"""Rewrites the tokenizer fuzz seeds (standard library only):
corpus/tokenizer_json/ (the hand-made tests/data/tokenizer/tiny.json and broken variants of
it; valid_* must load, the rest must be rejected) and corpus/tokenizer_encode/ (text for the
encoder: prose, code, CRLF, CJK, emoji, combining marks, special tokens, invalid UTF-8).

    python3 examples/nemotron_h/fuzz/gen_tokenizer_corpus.py
"""
import copy
import json
import pathlib
import shutil

here = pathlib.Path(__file__).resolve().parent
tiny = json.loads((here.parent / "tests/data/tokenizer/tiny.json").read_text(encoding="utf-8"))


def write(d, name, data):
    p = here / "corpus" / d / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


def variant(name, edit):
    j = copy.deepcopy(tiny)
    edit(j)
    write("tokenizer_json", name, json.dumps(j, ensure_ascii=False))


for d in ("tokenizer_json", "tokenizer_encode"):
    shutil.rmtree(here / "corpus" / d, ignore_errors=True)
    (here / "corpus" / d).mkdir(parents=True)

full = json.dumps(tiny, ensure_ascii=False)
write("tokenizer_json", "valid_tiny.json", full)
variant("valid_merges_array.json", lambda j: j["model"].__setitem__("merges", [m.split(" ") for m in j["model"]["merges"]]))
variant("valid_byte_level_only.json", lambda j: j.__setitem__("pre_tokenizer", {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}))
variant("valid_flags.json", lambda j: j["added_tokens"][4].update(lstrip=True, rstrip=True, single_word=True))
variant("valid_no_post.json", lambda j: j.__setitem__("post_processor", None))
write("tokenizer_json", "truncated.json", full[: len(full) // 2])
write("tokenizer_json", "empty.json", "")
write("tokenizer_json", "not_object.json", "[1, 2]")
write("tokenizer_json", "deep.json", "[" * 100 + "]" * 100)
variant("metaspace.json", lambda j: j.__setitem__("pre_tokenizer", {"type": "Metaspace", "replacement": "▁"}))
variant("nfc.json", lambda j: j.__setitem__("normalizer", {"type": "NFC"}))
variant("bad_regex.json", lambda j: j["pre_tokenizer"]["pretokenizers"][0]["pattern"].__setitem__("Regex", "(a"))
variant("merge_oov.json", lambda j: j["model"]["merges"].append("zz q"))
variant("merge_no_space.json", lambda j: j["model"]["merges"].append("qq"))
variant("dup_id.json", lambda j: j["model"]["vocab"].__setitem__("dup", 5))
variant("wordpiece_decoder.json", lambda j: j.__setitem__("decoder", {"type": "WordPiece"}))
variant("unigram.json", lambda j: j["model"].__setitem__("type", "Unigram"))
variant("added_id_clash.json", lambda j: j["added_tokens"][3].__setitem__("id", 261))
variant("added_empty.json", lambda j: j["added_tokens"][3].__setitem__("content", ""))
variant("id_negative.json", lambda j: j["model"]["vocab"].__setitem__("hello", -1))
variant("id_sparse.json", lambda j: j["model"]["vocab"].__setitem__("far", 1 << 30))
variant("behavior_bad.json", lambda j: j["pre_tokenizer"]["pretokenizers"][0].__setitem__("behavior", "Sideways"))
variant("template_unknown.json", lambda j: j["post_processor"]["single"][0]["SpecialToken"].__setitem__("id", "<x>"))

texts = {
    "prose": "The quick brown fox jumps over the lazy dog. Don't panic!\n",
    "code": "int main() {\r\n\treturn a[i] += 0x1F;  // ok\r\n}\r\n",
    "numbers": "3.14159 2026-12-02 1,000,000 +42 -7e10",
    "whitespace": "a  \t\n\n   \r\n \u00a0\u3000b   ",
    "cjk": "日本語のテキスト、中文文本。한국어",
    "emoji": "😀👍🏽👨‍👩‍👧🇫🇷❤️",
    "combining": "e\u0301a\u0308\u0304 \u0915\u094d\u0937",
    "specials": "<s>hi</s><|im_start|>user\n<think>x</think><|im_start|",
    "invalid": b"ok\xff\xc3(\xe2\x82A\xf0\x9f\x98\xed\xa0\x80\xc0\xaf",
    "truncated_tail": b"caf\xc3",
    "nul": b"a\x00b\x00",
    "empty": b"",
}
for name, t in texts.items():
    write("tokenizer_encode", name, t)
print("wrote", here / "corpus")
