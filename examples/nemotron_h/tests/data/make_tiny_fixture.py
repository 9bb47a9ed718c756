#!/usr/bin/env python3
"""Makes the tiny NemotronH test fixture with Hugging Face transformers.

Usage: python3 make_tiny_fixture.py OUT_DIR

Writes into OUT_DIR:
  config.json, model.safetensors   a random-init NemotronH (pattern "M*M-M-"), weights in bf16
  prompt_ids.json                  the fixed prompt (40 token ids)
  logits.npy                       float32 [T, vocab]: the logits of every prompt position, computed
                                   by transformers in float32 (CPU, pure-PyTorch Mamba path) from the
                                   bf16-rounded weights as reloaded from OUT_DIR
  README.md                        versions, config and diagnostics

Shapes: the GPU kernels' constraints (attention head_dim 128; Mamba head dim 32 in {32, 64, 80};
ssm_state_size 64 in {64, 128, 256}; 8 Mamba heads, a multiple of 8; hidden 128, a multiple of 8),
so the same checkpoint runs on the CPU reference and on the GPU runner. transformers' chunk_size is
16 (not math: it only makes its chunked SSD path cross 40 / 16 = 3 chunks).

The weights start from transformers' own init (embeddings and linear layers normal(0, 0.02), so
every mixer changes the residual stream substantially); norm weights, D, A_log and the conv bias
are then perturbed so that layout mistakes (a transposed or misindexed vector) change the logits
instead of hiding behind all-ones / all-zeros values, and lm_head is scaled by 10.
"""
import json
import math
import os
import struct
import sys

import torch
import transformers
from transformers import NemotronHConfig, NemotronHForCausalLM

out_dir = sys.argv[1] if len(sys.argv) > 1 else "tiny"
os.makedirs(out_dir, exist_ok=True)
log_lines = []


def log(*a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    log_lines.append(s)


def write_npy(path, t):
    t = t.detach().to(torch.float32).contiguous().cpu()
    shape = tuple(t.shape)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % (
        "".join("%d, " % d for d in shape) if len(shape) != 1 else "%d," % shape[0])
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    import array
    data = array.array("f", t.flatten().tolist())
    if sys.byteorder != "little":
        data.byteswap()
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00")
        f.write(struct.pack("<H", len(header)))
        f.write(header.encode("latin1"))
        f.write(data.tobytes())


log("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)
torch.manual_seed(20240611)

PATTERN = "M*M-M-"
cfg_kwargs = dict(
    vocab_size=384,
    hidden_size=128,
    intermediate_size=256,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=128,
    mamba_num_heads=8,
    mamba_head_dim=32,
    ssm_state_size=64,
    n_groups=2,
    conv_kernel=4,
    chunk_size=16,
    layer_norm_epsilon=1e-5,
    time_step_min=0.001,
    time_step_max=0.1,
    use_conv_bias=True,
    use_bias=False,
    mlp_bias=False,
    attention_bias=False,
    mlp_hidden_act="relu2",
    mamba_hidden_act="silu",
    tie_word_embeddings=False,
    use_mamba_kernels=False,
    residual_in_fp32=False,
    max_position_embeddings=256,
)
try:
    config = NemotronHConfig(hybrid_override_pattern=PATTERN, num_hidden_layers=len(PATTERN), **cfg_kwargs)
except Exception as e:  # older/newer signature
    log("hybrid_override_pattern failed:", repr(e), "-> trying layers_block_type")
    names = {"M": "mamba", "*": "attention", "-": "mlp"}
    config = NemotronHConfig(layers_block_type=[names[c] for c in PATTERN], **cfg_kwargs)
config._attn_implementation = "eager"
log("layers_block_type:", getattr(config, "layers_block_type", None))
log("hybrid_override_pattern:", getattr(config, "hybrid_override_pattern", None))

model = NemotronHForCausalLM(config).to(torch.float32).eval()

# Diagnostics of transformers' own init (before perturbation).
with torch.no_grad():
    for n, p in model.named_parameters():
        if ".0." in n or ".1." in n or ".3." in n or "layers" not in n:
            log("init %-45s %-16s mean % .4f std %.4f" % (n, tuple(p.shape), p.float().mean().item(), p.float().std().item() if p.numel() > 1 else 0.0))

    g = torch.Generator().manual_seed(7)
    for n, p in model.named_parameters():
        if n.endswith("norm.weight") or n.endswith("norm_f.weight"):
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        elif n.endswith(".D"):
            p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=g))
        elif n.endswith("A_log"):
            p.copy_(torch.log(torch.rand(p.shape, generator=g) * 15.0 + 1.0))
        elif n.endswith("conv1d.bias"):
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
        elif n == "lm_head.weight":
            # Logits of a few units (as trained models have) instead of ~0.2: keeps the top-1 /
            # top-2 gaps well above bf16 noise so a bf16 GPU runner can compare greedy tokens.
            p.mul_(10.0)
    # round every weight to bf16 (what is saved)
    for p in model.parameters():
        p.copy_(p.to(torch.bfloat16).to(torch.float32))

model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
log("saved files:", sorted(os.listdir(out_dir)))

# list tensors in the saved file (header only)
st = os.path.join(out_dir, "model.safetensors")
with open(st, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
for k in sorted(hdr):
    if k != "__metadata__":
        log("tensor %-45s %s %s" % (k, hdr[k]["dtype"], hdr[k]["shape"]))
log("__metadata__:", hdr.get("__metadata__"))
log("model.safetensors bytes:", os.path.getsize(st))
with open(os.path.join(out_dir, "config.json")) as f:
    saved_cfg = json.load(f)
log("saved config.json:", json.dumps(saved_cfg, sort_keys=True))

# The prompt: 40 random token ids. Among NUM_CANDIDATES random prompts (fixed seed), take the one
# whose smallest top-1 / top-2 logit gap over its 40 positions is largest, so that a bf16 GPU
# runner's greedy tokens can be compared with these float32 logits at every position (with one
# random prompt the smallest gap is ~1e-4). This only chooses the input; the logits written are
# the plain forward of that input.
T = 40
NUM_CANDIDATES = 256
gp = torch.Generator().manual_seed(11)
cands = torch.randint(0, config.vocab_size, (NUM_CANDIDATES, T), generator=gp)
model.to(torch.float32)
with torch.no_grad():
    min_gaps = []
    for b in range(0, NUM_CANDIDATES, 32):
        lc = model(input_ids=cands[b:b + 32], use_cache=False, logits_to_keep=0).logits.float()
        t2 = lc.topk(2, dim=-1).values
        min_gaps.append((t2[..., 0] - t2[..., 1]).min(dim=-1).values)
    min_gaps = torch.cat(min_gaps)
best = int(min_gaps.argmax().item())
log("prompt: candidate %d of %d (seed 11); smallest top-1/top-2 gap: this prompt %.4g, median candidate %.4g"
    % (best, NUM_CANDIDATES, min_gaps[best].item(), min_gaps.median().item()))
ids = cands[best].clone()
with open(os.path.join(out_dir, "prompt_ids.json"), "w") as f:
    json.dump(ids.tolist(), f)

# Reference logits from the reloaded checkpoint, float32, CPU.
model.to(torch.float32)
with torch.no_grad():
    out_mem = model(input_ids=ids[None], use_cache=False, logits_to_keep=0, output_hidden_states=True)
    logits_mem = out_mem.logits[0].float()
    for i, h in enumerate(out_mem.hidden_states or []):
        log("hidden_states[%d] rms %.4f" % (i, h.float().pow(2).mean().sqrt().item()))

re = NemotronHForCausalLM.from_pretrained(out_dir, dtype=torch.float32, use_mamba_kernels=False).eval()
re.config._attn_implementation = "eager"
maxdiff_w = 0.0
sd_a = model.state_dict()
for k, v in re.state_dict().items():
    maxdiff_w = max(maxdiff_w, (v.float() - sd_a[k].float()).abs().max().item())
log("max |weight difference| in-memory vs reloaded:", maxdiff_w)
with torch.no_grad():
    logits = re(input_ids=ids[None], use_cache=False, logits_to_keep=0).logits[0].float()
log("logits shape", tuple(logits.shape), "rms %.4f" % logits.pow(2).mean().sqrt().item(),
    "max|in-memory - reloaded| %.3g" % (logits - logits_mem).abs().max().item())
top2 = logits.topk(2, dim=-1).values
gaps = top2[:, 0] - top2[:, 1]
log("top1-top2 logit gap per position: min %.4g, median %.4g" % (gaps.min().item(), gaps.median().item()))
log("positions with gap < 0.05:", [i for i in range(T) if gaps[i].item() < 0.05])
log("argmax per position:", logits.argmax(-1).tolist())
write_npy(os.path.join(out_dir, "logits.npy"), logits)

# Float64 run of the same model for comparison (how far float32 is from float64).
with torch.no_grad():
    m64 = NemotronHForCausalLM.from_pretrained(out_dir, dtype=torch.float64, use_mamba_kernels=False).eval()
    m64.config._attn_implementation = "eager"
    l64 = m64(input_ids=ids[None], use_cache=False, logits_to_keep=0).logits[0].double()
    rel = (logits.double() - l64).norm() / l64.norm()
    log("float32 vs float64 transformers logits: rel-norm err %.3g" % rel.item())

# Cached path: prefill 29 tokens, then 11 single-token decode steps (diagnostic only).
try:
    with torch.no_grad():
        o = re(input_ids=ids[None, :29], use_cache=True, logits_to_keep=1)
        pkv = o.past_key_values
        dec = [o.logits[0, -1]]
        for t in range(29, T):
            o = re(input_ids=ids[None, t:t + 1], past_key_values=pkv, use_cache=True, logits_to_keep=1)
            pkv = o.past_key_values
            dec.append(o.logits[0, -1])
        dec = torch.stack(dec[:-1] + [dec[-1]])
        ref = logits[28:T]
        log("cached decode vs full forward: rel-norm err %.3g (positions 28..39)" %
            ((dec - ref).norm() / ref.norm()).item())
except Exception as e:
    log("cached decode diagnostic failed:", repr(e))

with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write("# Tiny NemotronH fixture\n\n")
    f.write("Made by `../make_tiny_fixture.py` (run on the GPU machine, CPU float32 forward).\n\n")
    f.write("Output of the script:\n\n```\n")
    f.write("\n".join(log_lines))
    f.write("\n```\n")
log("done")
