#!/usr/bin/env python3
"""Hugging Face `tokenizers` counterpart of nh_tokenizer_bench: single-threaded encode
throughput of the same tokenizer.json on the same text file.

    TOKENIZERS_PARALLELISM=false python3 hf_tokenizer_bench.py TOKENIZER_JSON TEXT_FILE [--repeat N] [--lines]
    python3 hf_tokenizer_bench.py --write-text PATH [--mb 8]   # a deterministic mixed text file

Encodes the whole file as one string with Tokenizer.encode (or each line, --lines; never
encode_batch), add_special_tokens=False, N times (default 5); prints the first and best times,
MB/s, the token count and the FNV-1a hash of the ids (the same hash nh_tokenizer_bench prints).
"""
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"


def fnv1a(ids):
    h = 0xcbf29ce484222325
    for i in ids:
        for k in range(4):
            h ^= (i >> (8 * k)) & 0xFF
            h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def write_text(path, mb):
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "make_golden", os.path.join(here, "..", "tests", "data", "tokenizer", "make_golden.py"))
    mg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mg)
    import random
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(mg.corpus(random.Random(99), int(mb * 1e6))))
    print(f"wrote {path}")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--write-text"] and len(args) >= 2:
        mb = float(args[args.index("--mb") + 1]) if "--mb" in args else 8.0
        return write_text(args[1], mb)
    if len(args) < 2:
        sys.exit(__doc__)
    from tokenizers import Tokenizer
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else 5
    lines = "--lines" in args
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(args[0])
    load = time.perf_counter() - t0
    with open(args[1], "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8", errors="replace")
    pieces = text.splitlines(keepends=True) if lines else [text]
    if lines and any(p.endswith(("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")) for p in pieces):
        # nh_tokenizer_bench splits at '\n' only; keep the two the same.
        pieces = [p for p in text.split("\n")]
        pieces = [p + "\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    first = best = None
    count = h = None
    for r in range(repeat):
        s = time.perf_counter()
        ids = []
        for p in pieces:
            ids.extend(tok.encode(p, add_special_tokens=False).ids)
        dt = time.perf_counter() - s
        if r == 0:
            first, count, h = dt, len(ids), fnv1a(ids)
        best = dt if best is None else min(best, dt)
    mb = len(raw) / 1e6
    print(f"hf_tokenizer_bench: {args[1]}, {mb:.2f} MB ({'per line' if lines else 'one string'}), load {load:.2f} s")
    print(f"  tokens {count}  ids_fnv1a {h:016x}")
    print(f"  first {first:.3f} s ({mb / first:.2f} MB/s)  best of {repeat} {best:.3f} s ({mb / best:.2f} MB/s)")


if __name__ == "__main__":
    main()
