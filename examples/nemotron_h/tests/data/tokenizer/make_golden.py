#!/usr/bin/env python3
"""Golden encodings for the C++ tokenizer (test_tokenizer_golden.cpp), from Hugging Face
`tokenizers`. Run once, unattended, on a machine with Python and `tokenizers` (no network,
nothing else needed); it takes well under a minute:

    python3 examples/nemotron_h/tests/data/tokenizer/make_golden.py \
        examples/nemotron_h/tests/data/tokenizer/golden

It writes OUT/tokenizer.json and OUT/golden.jsonl (together well under 2 MB):

* tokenizer.json: a byte-level BPE (vocab 4096) trained on a deterministic synthetic corpus
  this script generates, laid out like the NemotronH family's: the Tekken split pattern as a
  Split pre-tokenizer (Isolated, invert false) then ByteLevel(add_prefix_space=False,
  use_regex=False), a ByteLevel decoder, <unk>=0, <s>=1, </s>=2, <SPECIAL_3>..<SPECIAL_15>
  special, <|im_start|> and <|im_end|> special, <think> and </think> as non-special added
  tokens, and a few added tokens with lstrip / rstrip / single_word; a "<s> $A" template.
* golden.jsonl: a "meta" line, then one JSON object a line:
    {"text": s, "ids": [...], "ids_special": [...]?, "ids_nospecial": [...]?,
     "decode": str?, "decode_skip": str?}
  where ids = tok.encode(s, add_special_tokens=False).ids, ids_special with
  add_special_tokens=True (every 4th line), ids_nospecial with special tokens parsed as text
  (tok.encode_special_tokens = True, when this `tokenizers` has it; every 3rd line), decode =
  tok.decode(ids) when it differs from s, decode_skip = tok.decode(ids,
  skip_special_tokens=True) when it differs from decode. Invalid UTF-8 lines carry "hex" (the raw bytes) instead of
  "text"; their ids are those of bytes.decode("utf-8", errors="replace"), which is what the
  C++ encoder does with invalid input. Lines with "decode_ids" hold random id sequences
  (with partial and invalid UTF-8 byte tokens) and HF's decode of them.
"""
import json
import os
import pathlib
import random
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
# `tokenizers` is imported in build() and main() only, so corpus() can be used without it
# (bench/hf_tokenizer_bench.py --write-text).

TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
          r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SPECIALS = (["<unk>", "<s>", "</s>"] + [f"<SPECIAL_{i}>" for i in range(3, 16)]
            + ["<|im_start|>", "<|im_end|>", "<think>", "</think>"])
NON_SPECIAL = {"<think>", "</think>"}
FLAGGED = [  # (content, lstrip, rstrip, single_word, special)
    ("<|tool|>", True, False, False, True),
    ("<|/tool|>", False, True, False, True),
    ("hello_sw", False, False, True, False),
    (" <mask>", True, True, False, False),
]

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no will more can said who them "
         "tokenizer model layer state Mamba attention kernel graph capture bucket prefill decode sample stream "
         "HTTPServer CamelCase snake_case naïve über École façade résumé Zürich").split()
CODE = ["int main() {\n  return 0;\n}\n", "for (i = 0; i < n; ++i) a[i] += b[i];", "def f(x):\n\treturn x**2  # sq\n",
        "<div class=\"a\">&amp;</div>", "a/b/c//d", "std::vector<int> v{1, 2, 3};", "if x != y: print('ok')\r\n",
        "SELECT * FROM t WHERE id = 42;", "#include <cstdio>\n", "x = {'k': [1, 2.5, -3e10]}"]
WS = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "   \n", " \r\n ", "\u00a0", "\u3000", "\t\t  ", "\r", "\x0b", "\x0c",
      "\u2028", "\u0085"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🚀", "✨", "🤖", "🧠"]
CJK_TEXT = ["日本語のテキスト。", "中文文本，还有标点。", "한국어 텍스트", "カタカナとひらがな"]
COMBINING = ["e\u0301", "a\u0308\u0304", "\u0915\u094d\u0937", "\u05e9\u05c1\u05b8", "n\u0303", "Z\u0335\u0321\u0334"]


# Characters assigned after Unicode 14 (PCRE2 10.42's version) that are letters, marks or
# numbers would split differently if HF's Oniguruma knew them: random code points come from the
# BMP (less the few such additions) and the emoji blocks (symbols either way).
NEWER_BMP = {0x0CF3, 0x0ECE, 0x0897, 0x1B4E, 0x1B4F, 0x1B7F, 0x1C89, 0x1C8A, 0xA7CB, 0xA7CC, 0xA7CD,
             0xA7DA, 0xA7DB, 0xA7DC}


def random_code_point(rng):
    while True:
        c = rng.randint(0x1F300, 0x1FAFF) if rng.random() < 0.2 else rng.randint(1, 0xFFFF)
        if not (0xD800 <= c <= 0xDFFF) and c not in NEWER_BMP:
            return c


def piece(rng, specials_in_text):
    k = rng.randrange(12)
    if k <= 2:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) + rng.choice(["", ".", ",", "!", "?", ". "])
    if k == 3:
        return rng.choice(CODE)
    if k == 4:
        s = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12)))
        return s + rng.choice(["", ".5", "e-3", ",000", " %"])
    if k == 5:
        return "".join(rng.choice(WS) for _ in range(rng.randint(1, 5)))
    if k == 6:
        return rng.choice(CJK_TEXT) if rng.random() < 0.5 else "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 6)))
    if k == 7:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 4)))
    if k == 8:
        return rng.choice(COMBINING) + rng.choice(WORDS)
    if k == 9:
        return "".join(chr(random_code_point(rng)) for _ in range(rng.randint(1, 6)))
    if k == 10 and specials_in_text:
        return rng.choice(SPECIALS + [f[0] for f in FLAGGED] + ["<s", "<|im_", "</think", "<SPECIAL_99>"])
    return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(1, 10)))


def text(rng, specials_in_text=True, parts=None):
    sep = rng.choice(["", " ", "\n"])
    return sep.join(piece(rng, specials_in_text) for _ in range(parts or rng.randint(1, 6)))


def corpus(rng, n_bytes):
    out, size = [], 0
    while size < n_bytes:
        t = text(rng, specials_in_text=False, parts=rng.randint(3, 12))
        out.append(t)
        size += len(t.encode("utf-8"))
    return out


def build():
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(TEKKEN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=2, show_progress=False,
                                  special_tokens=[AddedToken(s, normalized=False, special=True) if _has_special_kw(AddedToken)
                                                  else s for s in SPECIALS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(random.Random(1234), 1_500_000), trainer=trainer)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A </s> $B",
                                                       special_tokens=[("<s>", 1), ("</s>", 2)])
    # <think> / </think> are plain added tokens in the family: rewrite their flags in the JSON.
    j = json.loads(tok.to_str())
    for a in j["added_tokens"]:
        if a["content"] in NON_SPECIAL:
            a["special"] = False
    tok = Tokenizer.from_str(json.dumps(j))
    for content, lstrip, rstrip, single_word, special in FLAGGED:
        t = AddedToken(content, lstrip=lstrip, rstrip=rstrip, single_word=single_word, normalized=not special)
        (tok.add_special_tokens if special else tok.add_tokens)([t])
    return tok


def _has_special_kw(AddedToken):
    try:
        AddedToken("x", special=True)
        return True
    except TypeError:
        return False


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_golden.py OUT_DIR")
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    import tokenizers
    from tokenizers import Tokenizer, pre_tokenizers
    tok = build()
    tok_path = out / "tokenizer.json"
    tok.save(str(tok_path))
    tok = Tokenizer.from_file(str(tok_path))  # everything below uses the file as written
    has_nospecial = hasattr(tok, "encode_special_tokens")
    vocab = tok.get_vocab_size(with_added_tokens=True)
    byte_ids = [tok.token_to_id(c) for c in pre_tokenizers.ByteLevel.alphabet()]
    byte_ids = [i for i in byte_ids if i is not None]

    rng = random.Random(5678)
    lines = [json.dumps({"meta": {"tokenizers": tokenizers.__version__, "vocab": vocab,
                                  "encode_special_tokens": has_nospecial}})]

    def encode_line(n, s, raw=None):
        ids = tok.encode(s, add_special_tokens=False).ids
        rec = {"hex": raw.hex()} if raw is not None else {"text": s}
        rec["ids"] = ids
        if n % 4 == 0:
            rec["ids_special"] = tok.encode(s, add_special_tokens=True).ids
        if has_nospecial and n % 3 == 0:
            tok.encode_special_tokens = True
            rec["ids_nospecial"] = tok.encode(s, add_special_tokens=False).ids
            tok.encode_special_tokens = False
        d = tok.decode(ids, skip_special_tokens=False)
        if d != s or raw is not None:
            rec["decode"] = d
        d_skip = tok.decode(ids, skip_special_tokens=True)
        if d_skip != d:
            rec["decode_skip"] = d_skip
        lines.append(json.dumps(rec, ensure_ascii=False))

    n = 0
    for _ in range(2000):
        encode_line(n, text(rng))
        n += 1
    # A few long ones (several pieces of each kind) and edge cases.
    edge = ["", " ", "  ", "\n", "\r\n", "\r\n\r\n", " \n \n", "a  b", "a \n b", "hello_sw", "hello_swx", "x hello_sw y",
            "<|tool|>", "  <|tool|>  ", "a<|/tool|>   b", "x <mask> y", "<mask>", "<s><s></s>", "<SPECIAL_10>System\nhi\n",
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think></think>", "1234567890", "   12", "\u00a0\u00a0x",
            "e\u0301\u0301\u0301", "👨‍👩‍👧‍👦", "\ufeffBOM", "tab\there", "\x00nul\x00", "ZWJ\u200djoin", "\u180esep"]
    for s in edge:
        encode_line(n, s)
        n += 1
    for _ in range(20):
        encode_line(n, text(rng, parts=40))
        n += 1
    # Invalid UTF-8: random bytes spliced into valid text.
    for _ in range(300):
        raw = bytearray(text(rng, parts=2).encode("utf-8"))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randint(0, len(raw))
            bad = rng.choice([b"\xff", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80",
                              b"\xf4\x90\x80\x80", bytes([rng.randint(0x80, 0xFF)])])
            raw[pos:pos] = bad
        raw = bytes(raw)
        encode_line(n, raw.decode("utf-8", errors="replace"), raw)
        n += 1
    # Decoding random id sequences: partial characters, invalid bytes, specials, added tokens.
    for _ in range(400):
        ids = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.4:
                ids.append(rng.choice(byte_ids))
            elif r < 0.5:
                ids.append(rng.randrange(len(SPECIALS) + len(FLAGGED)) if rng.random() < 0.5 else vocab - 1 - rng.randrange(len(FLAGGED)))
            else:
                ids.append(rng.randrange(vocab))
        lines.append(json.dumps({"decode_ids": ids, "decode": tok.decode(ids, skip_special_tokens=False),
                                 "decode_skip": tok.decode(ids, skip_special_tokens=True)}, ensure_ascii=False))

    (out / "golden.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    size = tok_path.stat().st_size + (out / "golden.jsonl").stat().st_size
    print(f"make_golden: tokenizers {tokenizers.__version__}, vocab {vocab}, {len(lines) - 1} lines, "
          f"{size / 1e6:.2f} MB in {out}, {time.time() - start:.1f} s")
    if size > 2_000_000:
        sys.exit(f"make_golden: the files are {size} bytes, over the 2 MB budget")


if __name__ == "__main__":
    main()
