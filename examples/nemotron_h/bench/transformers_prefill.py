#!/usr/bin/env python3
"""Prefill latency of the same NemotronH shapes in Hugging Face transformers (bf16, sdpa),
for comparison with nh_model_bench. Random weights (timing does not depend on values).

Run on the GPU machine (python3 there has torch and transformers with NemotronH):
    python3 examples/nemotron_h/bench/transformers_prefill.py --model nano-9b-v2 \
        --tokens 16,64,256,1024,4096,8192 --json out.json
"""
import argparse
import json
import time

import torch
import transformers
from transformers import NemotronHConfig, NemotronHForCausalLM

PRESETS = {
    # Same shapes as model/config.cpp's presets.
    "nano-9b-v2": dict(
        vocab_size=131072, hidden_size=4480, intermediate_size=15680,
        hybrid_override_pattern="M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-",
        num_attention_heads=40, num_key_value_heads=8, head_dim=128,
        mamba_num_heads=128, mamba_head_dim=80, ssm_state_size=128, n_groups=8,
        conv_kernel=4, chunk_size=128),
    "small": dict(
        vocab_size=8192, hidden_size=512, intermediate_size=2048,
        hybrid_override_pattern="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
        num_attention_heads=8, num_key_value_heads=2, head_dim=128,
        mamba_num_heads=16, mamba_head_dim=64, ssm_state_size=64, n_groups=4,
        conv_kernel=4, chunk_size=128),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="nano-9b-v2")
    ap.add_argument("--tokens", default="16,64,256,1024,4096,8192")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    kw = dict(PRESETS[a.model])
    pattern = kw.pop("hybrid_override_pattern")
    cfg = NemotronHConfig(hybrid_override_pattern=pattern, num_hidden_layers=len(pattern),
                          layer_norm_epsilon=1e-5, use_mamba_kernels=False, **kw)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        model = NemotronHForCausalLM(cfg).eval()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name()}, model built in {time.time() - t0:.1f} s", flush=True)
    results = []
    for T in [int(x) for x in a.tokens.split(",")]:
        ids = torch.randint(0, cfg.vocab_size, (1, T), device="cuda")
        with torch.inference_mode():
            model(input_ids=ids, use_cache=False, logits_to_keep=1)  # warm-up
            torch.cuda.synchronize()
            times = []
            for _ in range(a.reps):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                model(input_ids=ids, use_cache=False, logits_to_keep=1)
                e.record()
                e.synchronize()
                times.append(s.elapsed_time(e))
        ms = sorted(times)[len(times) // 2]
        results.append({"tokens": T, "ms": ms})
        print(f"{T:6d} tokens: {ms:10.3f} ms", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "transformers": transformers.__version__,
                       "model": a.model, "prefill": results}, f, indent=2)


if __name__ == "__main__":
    main()
