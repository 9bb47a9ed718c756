#!/usr/bin/env python3
"""PyTorch scaled_dot_product_attention baseline for the NemotronH prefill-attention
benchmark: causal GQA, bf16, Nemotron-H-Nano-9B-v2 heads (Hq=40, Hkv=8, head_dim=128).

Prints one line per shape: sequences, tokens per sequence, time (ms, median of 50 after
warm-up, CUDA events) and TFLOP/s counted like bench_dense.cu (4*hd*Hq*T(T+1)/2 per sequence).
"""
import torch
import torch.nn.functional as F

HQ, HKV, HD = 40, 8, 128


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


if __name__ == "__main__":
    print(f"torch {torch.__version__} device {torch.cuda.get_device_name()}")
    for S, T in [(1, 4096), (4, 1024), (1, 1024)]:
        bench(S, T)
