#!/usr/bin/env python3
"""Makes the tiny MoE NemotronH test fixtures with Hugging Face transformers' own NemotronH.

Usage: python3 make_moe_fixture.py [MOE_DIR [LATENT_DIR]]   (defaults: tiny_moe tiny_latent_moe)

Run it on the GPU machine's Python (torch, transformers 5.17); the forward runs on the CPU in
float32 with the pure-PyTorch Mamba path (use_mamba_kernels=False). Writes into each directory:
  config.json, model.safetensors   a random-init NemotronH with MoE layers, weights in bf16
  prompt_ids.json                  the prompt (40 token ids)
  logits.npy                       float32 [T, vocab]: every position's logits, transformers in
                                   float32 on the bf16-rounded weights
  README.md                        versions, config, tensor names and diagnostics

MOE_DIR: pattern "M*ME-E" (the `tiny-moe` preset's shapes), 8 experts in 2 groups, one group
kept, top 2, expert width 64, shared expert 128, routed scaling 2.5, norm_topk_prob true: the
grouped top-k path. LATENT_DIR: pattern "ME*E", 8 experts, top 3, latent width 32, one group,
norm_topk_prob false, scaling 1.5. MOE_DIR is saved the way transformers saves it; LATENT_DIR is
re-saved in the other routed-expert layout (fused 3-D `mixer.experts.up_proj` [E, I, H] /
`down_proj` [E, H, I], or one `mixer.experts.{e}.up_proj.weight` per expert), so the C++ loader
is tested on both. The test is `nh_moe_fixture_tests` (tests/test_moe_fixture.cpp).

The weights start from transformers' init; then norm weights, D, A_log and the conv bias are
perturbed (as in make_tiny_fixture.py), the correction bias e_score_correction_bias gets
normal(0, 0.05) so that "bias for choosing only" matters, the router weight is scaled by 5 so
that routing decisions have clear margins (the script prints the smallest gap between the k-th
and (k+1)-th biased score over every token and MoE layer), and lm_head is scaled by 10.
"""
import json
import os
import struct
import sys

import torch
import transformers
from transformers import NemotronHConfig, NemotronHForCausalLM

MOE_DIR = sys.argv[1] if len(sys.argv) > 1 else "tiny_moe"
LATENT_DIR = sys.argv[2] if len(sys.argv) > 2 else "tiny_latent_moe"


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


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def write_safetensors(path, tensors):
    """tensors: list of (name, torch tensor) written in this order, bf16 or fp32 as they are."""
    names = {torch.bfloat16: "BF16", torch.float32: "F32"}
    hdr, blobs, off = {}, [], 0
    for name, t in tensors:
        t = t.detach().contiguous().cpu()
        b = t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        hdr[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hdr["__metadata__"] = {"format": "pt"}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def expert_layout(hdr):
    if any(k.endswith("mixer.experts.up_proj") for k in hdr):
        return "fused"
    if any(".mixer.experts.0.up_proj.weight" in k for k in hdr):
        return "per-expert"
    return "unknown"


def resave(out_dir, layout, log):
    """Rewrites out_dir/model.safetensors in `layout` ("fused" or "per-expert"), same values."""
    st = os.path.join(out_dir, "model.safetensors")
    from safetensors.torch import load_file
    sd = load_file(st)
    out = []
    groups = {}
    for k in sorted(sd):
        v = sd[k]
        if layout == "fused" and ".mixer.experts." in k and k.endswith(".weight"):
            # prefix.layers.L.mixer.experts.E.up_proj.weight -> prefix.layers.L.mixer.experts.up_proj
            head, rest = k.split(".mixer.experts.")
            e, proj, _ = rest.split(".")
            groups.setdefault(head + ".mixer.experts." + proj, {})[int(e)] = v
        elif layout == "per-expert" and (k.endswith("mixer.experts.up_proj") or k.endswith("mixer.experts.down_proj")):
            base, proj = k.rsplit(".", 1)
            for e in range(v.shape[0]):
                out.append(("%s.%d.%s.weight" % (base, e, proj), v[e].clone()))
        else:
            out.append((k, v))
    for name, parts in groups.items():
        out.append((name, torch.stack([parts[e] for e in range(len(parts))])))
    write_safetensors(st, out)
    log("re-saved", st, "in the", layout, "layout:", len(out), "tensors")


def make(out_dir, pattern, moe_kwargs, seed, resave_layout=None):
    os.makedirs(out_dir, exist_ok=True)
    lines = []

    def log(*a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        lines.append(s)

    log("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)
    torch.manual_seed(seed)
    names = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
    cfg_kwargs = dict(
        vocab_size=384, hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
        head_dim=128, mamba_num_heads=8, mamba_head_dim=32, ssm_state_size=64, n_groups=2, conv_kernel=4,
        chunk_size=16, layer_norm_epsilon=1e-5, time_step_min=0.001, time_step_max=0.1, use_conv_bias=True,
        use_bias=False, mlp_bias=False, attention_bias=False, mlp_hidden_act="relu2", mamba_hidden_act="silu",
        tie_word_embeddings=False, use_mamba_kernels=False, residual_in_fp32=False, max_position_embeddings=256,
        n_shared_experts=1, **moe_kwargs)
    try:
        config = NemotronHConfig(hybrid_override_pattern=pattern, **cfg_kwargs)
    except Exception as e:
        log("hybrid_override_pattern failed:", repr(e), "-> layers_block_type")
        config = NemotronHConfig(layers_block_type=[names[c] for c in pattern], **cfg_kwargs)
    config._attn_implementation = "eager"
    log("layers_block_type:", getattr(config, "layers_block_type", None))
    model = NemotronHForCausalLM(config).to(torch.float32).eval()

    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or n.endswith("norm_f.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif n.endswith(".D"):
                p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=g))
            elif n.endswith("A_log"):
                p.copy_(torch.log(torch.rand(p.shape, generator=g) * 15.0 + 1.0))
            elif n.endswith("conv1d.bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif n.endswith("gate.weight"):
                p.mul_(5.0)
            elif n == "lm_head.weight":
                p.mul_(10.0)
        for n, b in model.named_buffers():
            if n.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.randn(b.shape, generator=g))
        for n, p in model.named_parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
        for n, b in model.named_buffers():
            if n.endswith("e_score_correction_bias"):
                b.copy_(b.to(torch.bfloat16).to(torch.float32))  # bf16-representable, kept fp32
        for n, p in list(model.named_parameters()) + list(model.named_buffers()):
            log("param %-55s %-18s %s" % (n, tuple(p.shape), p.dtype))

    model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
    st = os.path.join(out_dir, "model.safetensors")
    hdr = read_header(st)
    layout = expert_layout(hdr)
    log("transformers saved the routed experts in the", layout, "layout")
    if resave_layout is not None and resave_layout != layout:
        resave(out_dir, resave_layout, log)
        hdr = read_header(st)
        layout = expert_layout(hdr)
    for k in sorted(hdr):
        if k != "__metadata__":
            log("tensor %-60s %s %s" % (k, hdr[k]["dtype"], hdr[k]["shape"]))
    with open(os.path.join(out_dir, "config.json")) as f:
        log("saved config.json:", json.dumps(json.load(f), sort_keys=True))

    model.to(torch.float32)
    # Routing margins: the gap between the k-th and (k+1)-th biased score (within the kept
    # groups) of every token of every MoE layer, recorded by a hook on the router.
    margins = []

    k_top = config.num_experts_per_tok

    def hook(mod, inp, out):
        # From the router's input (what the gate returns differs between versions: logits, or a
        # tuple of indices and weights): sigmoid scores plus the correction bias.
        x = inp[0].reshape(-1, inp[0].shape[-1]).float()
        s = torch.nn.functional.linear(x, mod.weight.float()).sigmoid() + mod.e_score_correction_bias.float()
        srt = s.sort(dim=-1, descending=True).values
        if k_top < s.shape[-1]:
            margins.append((srt[:, k_top - 1] - srt[:, k_top]).min().item())

    for m in model.modules():
        if type(m).__name__ == "NemotronHMoE":
            m.gate.register_forward_hook(hook)

    T, NUM_CANDIDATES = 40, 128
    gp = torch.Generator().manual_seed(11)
    cands = torch.randint(0, config.vocab_size, (NUM_CANDIDATES, T), generator=gp)
    with torch.no_grad():
        gaps = []
        for b in range(0, NUM_CANDIDATES, 32):
            lc = model(input_ids=cands[b:b + 32], use_cache=False, logits_to_keep=0).logits.float()
            t2 = lc.topk(2, dim=-1).values
            gaps.append((t2[..., 0] - t2[..., 1]).min(dim=-1).values)
        gaps = torch.cat(gaps)
    best = int(gaps.argmax().item())
    ids = cands[best].clone()
    log("prompt: candidate %d of %d, smallest top-1/top-2 logit gap %.4g" % (best, NUM_CANDIDATES, gaps[best].item()))
    with open(os.path.join(out_dir, "prompt_ids.json"), "w") as f:
        json.dump(ids.tolist(), f)

    margins.clear()
    with torch.no_grad():
        logits_mem = model(input_ids=ids[None], use_cache=False, logits_to_keep=0).logits[0].float()
    log("smallest routing margin (k-th vs (k+1)-th biased score, unmasked) on the prompt: %.4g"
        % (min(margins) if margins else float("nan")))

    # The logits written are those of the checkpoint as reloaded (the in-memory model when the
    # re-saved layout cannot be reloaded by transformers; the values are the same bf16 weights).
    logits = logits_mem
    try:
        re = NemotronHForCausalLM.from_pretrained(out_dir, dtype=torch.float32, use_mamba_kernels=False).eval()
        re.config._attn_implementation = "eager"
        with torch.no_grad():
            logits_re = re(input_ids=ids[None], use_cache=False, logits_to_keep=0).logits[0].float()
        log("reloaded vs in-memory logits: max abs diff %.3g" % (logits_re - logits_mem).abs().max().item())
        logits = logits_re
        with torch.no_grad():
            m64 = NemotronHForCausalLM.from_pretrained(out_dir, dtype=torch.float64, use_mamba_kernels=False).eval()
            m64.config._attn_implementation = "eager"
            l64 = m64(input_ids=ids[None], use_cache=False, logits_to_keep=0).logits[0].double()
        log("float32 vs float64 transformers logits: rel-norm err %.3g"
            % ((logits.double() - l64).norm() / l64.norm()).item())
    except Exception as e:
        log("reload of", out_dir, "failed (logits from the in-memory model):", repr(e))
    top2 = logits.topk(2, dim=-1).values
    log("top1-top2 gap: min %.4g, median %.4g" % ((top2[:, 0] - top2[:, 1]).min().item(),
                                                  (top2[:, 0] - top2[:, 1]).median().item()))
    log("argmax per position:", logits.argmax(-1).tolist())
    write_npy(os.path.join(out_dir, "logits.npy"), logits)
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("# Tiny MoE NemotronH fixture (%s)\n\n" % os.path.basename(out_dir.rstrip("/")))
        f.write("Made by `../make_moe_fixture.py` (GPU machine's Python, CPU float32 forward). Routed experts: "
                "%s layout.\n\nOutput of the script:\n\n```\n" % layout)
        f.write("\n".join(lines))
        f.write("\n```\n")
    return layout


first = make(MOE_DIR, "M*ME-E",
             dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
                  moe_shared_expert_intermediate_size=128, n_group=2, topk_group=1, norm_topk_prob=True,
                  routed_scaling_factor=2.5, moe_latent_size=None), seed=20250101)
other = "per-expert" if first == "fused" else "fused"
make(LATENT_DIR, "ME*E",
     dict(n_routed_experts=8, num_experts_per_tok=3, moe_intermediate_size=64,
          moe_shared_expert_intermediate_size=96, n_group=1, topk_group=1, norm_topk_prob=False,
          routed_scaling_factor=1.5, moe_latent_size=32), seed=20250102, resave_layout=other)
print("done")
