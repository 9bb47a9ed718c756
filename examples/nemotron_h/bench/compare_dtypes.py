#!/usr/bin/env python3
"""Accuracy of a quantized synthetic model against its bf16 original (issue 13).

Reads two `nemotron_h_run` reports of the same preset, seed and prompts, one per dtype
(`--json R.json --logits-out R.npy`, greedy), and prints per prompt:
  - the relative error of the last-position logits, ||q - b|| / ||b|| (L2 over the vocab),
    and whether their argmax agrees;
  - greedy agreement: the generated tokens equal to bf16's before the first difference, and
    the fraction of positions equal (after a difference the two continue from different text).

Usage: compare_dtypes.py REF.json REF.npy OTHER.json OTHER.npy [--json OUT.json]
Exit 2 on unreadable or mismatched inputs (different prompt counts, vocab or step counts).
"""
import argparse
import json
import sys

import numpy as np


def load(report_path, logits_path):
    """(report, generated tokens per prompt, logits); ValueError naming the file otherwise."""
    try:
        with open(report_path) as f:
            rep = json.load(f)
        logits = np.load(logits_path).astype(np.float64)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {report_path} / {logits_path}: {e}") from e
    modes = (rep.get("modes") if isinstance(rep, dict) else None) or []
    if not modes or "tokens" not in modes[0]:
        raise ValueError(f"{report_path}: no 'modes[0].tokens' (run nemotron_h_run with --json and -n > 0)")
    tokens = modes[0]["tokens"]
    if logits.ndim != 2 or logits.shape[0] != len(tokens):
        raise ValueError(f"{logits_path}: logits of shape {logits.shape}, want [{len(tokens)} prompts, vocab]")
    return rep, tokens, logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref_json")
    ap.add_argument("ref_npy")
    ap.add_argument("other_json")
    ap.add_argument("other_npy")
    ap.add_argument("--json", dest="out")
    a = ap.parse_args()
    try:
        ref_rep, ref_tok, ref_log = load(a.ref_json, a.ref_npy)
        oth_rep, oth_tok, oth_log = load(a.other_json, a.other_npy)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    if ref_log.shape != oth_log.shape or len(ref_tok) != len(oth_tok):
        print(f"mismatched runs: logits {ref_log.shape} vs {oth_log.shape}, "
              f"{len(ref_tok)} vs {len(oth_tok)} prompts", file=sys.stderr)
        return 2
    rows = []
    for p in range(len(ref_tok)):
        b, q = ref_log[p], oth_log[p]
        rel = float(np.linalg.norm(q - b) / max(np.linalg.norm(b), 1e-300))
        tb, tq = ref_tok[p], oth_tok[p]
        if len(tb) != len(tq):
            print(f"prompt {p}: {len(tb)} vs {len(tq)} generated tokens", file=sys.stderr)
            return 2
        prefix = next((i for i, (x, y) in enumerate(zip(tb, tq)) if x != y), len(tb))
        same = sum(1 for x, y in zip(tb, tq) if x == y)
        rows.append({"prompt": p, "logits_rel_err": rel, "argmax_agrees": bool(np.argmax(b) == np.argmax(q)),
                     "greedy_prefix": prefix, "greedy_steps": len(tb),
                     "greedy_equal_fraction": same / max(len(tb), 1)})
    def name(r):
        return r.get("dtype", "?")

    print(f"{name(oth_rep)} against {name(ref_rep)}: {len(rows)} prompt(s)")
    print(f"{'prompt':>6} {'logits_rel_err':>15} {'argmax':>7} {'greedy_prefix':>14} {'equal':>7}")
    for r in rows:
        print(f"{r['prompt']:>6} {r['logits_rel_err']:>15.4f} {('same' if r['argmax_agrees'] else 'diff'):>7} "
              f"{r['greedy_prefix']:>8} / {r['greedy_steps']:<4} {r['greedy_equal_fraction']:>7.3f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"reference": name(ref_rep), "other": name(oth_rep), "prompts": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
