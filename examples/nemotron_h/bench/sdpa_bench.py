#!/usr/bin/env python3
"""PyTorch scaled_dot_product_attention baseline for the NemotronH prefill-attention
benchmark: causal GQA, bf16, Nemotron-H-Nano-9B-v2 heads (Hq=40, Hkv=8, head_dim=128).

Prints one line per shape: sequences, tokens per sequence, time (ms, median of 50 after
warm-up, CUDA events) and TFLOP/s counted like bench_dense.cu (4*hd*Hq*T(T+1)/2 per sequence).
S > 1 is a batch of S equal-length sequences (SDPA has no packed variable-length form; ours
runs the same tokens packed).

  sdpa_bench.py [--ours nh_dense_bench.json]
With --ours (Google Benchmark JSON of nh_dense_bench --benchmark_filter=BM_attention_prefill)
it also prints the ratio table: SDPA time / our time per shape and kernel (>= 1 means ours is
at least as fast).
"""
import argparse
import json
import re

import torch
import torch.nn.functional as F

HQ, HKV, HD = 40, 8, 128
SHAPES = [(1, 1024), (1, 4096), (4, 1024)]


def bench(S, T):
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(S, HQ, T, HD, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(S, HKV, T, HD, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(S, HKV, T, HD, device="cuda", dtype=torch.bfloat16, generator=g)
    try:
        fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        fn()
        mode = "enable_gqa"
    except TypeError:
        kr, vr = k.repeat_interleave(HQ // HKV, 1), v.repeat_interleave(HQ // HKV, 1)
        fn = lambda: F.scaled_dot_product_attention(q, kr, vr, is_causal=True)
        mode = "repeat_interleave"
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(50):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    ms = times[len(times) // 2]
    flops = 4.0 * HD * HQ * S * T * (T + 1) / 2
    print(f"SDPA S={S} T={T} mode={mode} time_ms={ms:.4f} TFLOPs={flops / ms / 1e9:.1f}", flush=True)
    return ms * 1e3


def ours_from_json(path):
    """{(S, T): {kernel label: microseconds}} from nh_dense_bench's JSON."""
    with open(path) as f:
        data = json.load(f)
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
    res = {}
    for b in data["benchmarks"]:
        m = re.match(r"BM_attention_prefill/S:(\d+)/T:(\d+)/kernel:(-?\d+)", b["name"])
        if not m or b.get("error_occurred") or b.get("run_type", "iteration") != "iteration":
            continue
        label = b.get("label") or f"kernel {m.group(3)}"
        res.setdefault((int(m.group(1)), int(m.group(2))), {})[label] = (
            b["real_time"] * scale[b.get("time_unit", "ns")])
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", help="nh_dense_bench JSON with BM_attention_prefill results")
    args = ap.parse_args()
    print(f"torch {torch.__version__} device {torch.cuda.get_device_name()}")
    sdpa = {(S, T): bench(S, T) for S, T in SHAPES}
    if args.ours:
        ours = ours_from_json(args.ours)
        print("\nprefill attention, Nano-9B-v2 heads: SDPA time / ours (>= 1.00: ours as fast or faster)")
        print(f"{'shape':>10} {'SDPA us':>9} {'kernel':>10} {'ours us':>9} {'TFLOP/s':>8} {'ratio':>6}")
        for S, T in SHAPES:
            flops = 4.0 * HD * HQ * S * T * (T + 1) / 2
            for label, us in sorted(ours.get((S, T), {}).items()):
                print(f"{f'{S} x {T}':>10} {sdpa[(S, T)]:9.1f} {label:>10} {us:9.1f} "
                      f"{flops / us / 1e6:8.1f} {sdpa[(S, T)] / us:6.2f}")
