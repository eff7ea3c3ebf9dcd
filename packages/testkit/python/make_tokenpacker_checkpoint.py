#!/usr/bin/env python3
"""Writes a synthetic TokenPacker checkpoint in the official release format (random weights).

What sunshine-lwt/TokenPacker-7b-144token holds: config.json (LlavaLlamaForCausalLM,
mm_projector_type "tokenpacker", scale_factor, mm_vision_select_layer -2), fp16 weights saved by
torch in shards pytorch_model-0000N-of-0000M.bin with pytorch_model.bin.index.json mapping every
tensor to its shard, the projector under model.mm_projector.* with the official module's own
names (llava/model/multimodal_projector/builder.py: TokenPacker). The language model here is a
stand-in (a few small tensors) so the shards stay small; the projector's tensors are spread over
the shards like a real upload's.

    /usr/bin/python3 make_tokenpacker_checkpoint.py OUT_DIR --width 128 --levels 4 --hidden 256 \
        --lm-width 256 --scale 2 --seed 1 [--safetensors] [--shards 2] [--dtype float16]

Needs torch (Debian: apt-get install python3-torch).
"""
import argparse
import json
import os
from functools import partial

import torch
import torch.nn as nn


class TokenPacker(nn.Module):
    """The official projector's layers and state-dict names (sizes as arguments)."""

    def __init__(self, width, multi, kv_hidden, hidden, lm_width, heads):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.q_proj_1 = nn.Linear(width, width, bias=False)
        self.k_proj_1 = nn.Sequential(nn.Linear(multi, kv_hidden), nn.GELU(), nn.Linear(kv_hidden, width))
        self.v_proj_1 = nn.Sequential(nn.Linear(multi, kv_hidden), nn.GELU(), nn.Linear(kv_hidden, width))
        self.ln_q_1 = norm(width)
        self.ln_k_1 = norm(width)
        self.ln_v_1 = norm(width)
        self.clip_attn = nn.MultiheadAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, lm_width))


def randomize(module, generator):
    """Random weights everywhere (LayerNorms too), scaled so activations stay O(1)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if name.startswith("ln_"):
                p.copy_(1 + 0.2 * noise if name.endswith("weight") else 0.2 * noise)
            elif p.dim() == 2:
                p.copy_(noise / p.shape[1] ** 0.5)
            else:
                p.copy_(0.1 * noise)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--width", type=int, required=True, help="CLIP width c (= TokenPacker's embed and kv width)")
    p.add_argument("--levels", type=int, default=4, help="multi-level layers (multi-level width = levels x c)")
    p.add_argument("--hidden", type=int, required=True, help="mlp hidden size (official: the LM width)")
    p.add_argument("--lm-width", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--safetensors", action="store_true", help="model-0000N-of-0000M.safetensors instead of .bin")
    p.add_argument("--vocab", type=int, default=64, help="rows of the stand-in language model's embedding")
    p.add_argument("--projector", default="tokenpacker", choices=("tokenpacker", "mlp"),
                   help="mlp: LLaVA's mlp2x_gelu projector instead (mm_projector.0 / .2), e.g. one fine-tuned for reduced tokens")
    p.add_argument("--single", action="store_true", help="only mm_projector.bin (what a stage-1 pretraining run saves)")
    args = p.parse_args()

    generator = torch.Generator().manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    if args.projector == "mlp":
        projector = nn.Sequential(nn.Linear(args.width, args.hidden), nn.GELU(), nn.Linear(args.hidden, args.lm_width))
    else:
        projector = TokenPacker(args.width, args.levels * args.width, args.width, args.hidden, args.lm_width, args.heads)
    randomize(projector, generator)
    state = {}
    state["model.embed_tokens.weight"] = torch.randn(args.vocab, args.lm_width, generator=generator) * 0.02
    state["model.layers.0.self_attn.q_proj.weight"] = torch.randn(args.lm_width, args.lm_width, generator=generator) * 0.02
    for name, t in projector.state_dict().items():
        state[f"model.mm_projector.{name}"] = t
    state["model.norm.weight"] = torch.ones(args.lm_width)
    state["lm_head.weight"] = torch.randn(args.vocab, args.lm_width, generator=generator) * 0.02
    state = {k: v.to(dtype).contiguous() for k, v in state.items()}

    os.makedirs(args.out, exist_ok=True)
    if args.single:
        torch.save({k: v for k, v in state.items() if "mm_projector" in k}, os.path.join(args.out, "mm_projector.bin"))
        return
    names = list(state)
    per = -(-len(names) // args.shards)
    ext = "safetensors" if args.safetensors else "bin"
    stem = "model" if args.safetensors else "pytorch_model"
    weight_map, total = {}, 0
    for i in range(args.shards):
        part = names[i * per:(i + 1) * per]
        shard = f"{stem}-{i + 1:05d}-of-{args.shards:05d}.{ext}"
        tensors = {k: state[k] for k in part}
        if args.safetensors:
            write_safetensors(os.path.join(args.out, shard), tensors)
        else:
            torch.save(tensors, os.path.join(args.out, shard))
        for k in part:
            weight_map[k] = shard
            total += state[k].numel() * state[k].element_size()
    with open(os.path.join(args.out, f"{stem}.{ext}.index.json" if not args.safetensors else "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = {
        "_name_or_path": "./checkpoints/vicuna-7b-v1-5",
        "architectures": ["LlavaLlamaForCausalLM"],
        "hidden_size": args.lm_width,
        "image_aspect_ratio": "pad",
        "mm_hidden_size": args.width,
        "mm_projector_type": "tokenpacker" if args.projector == "tokenpacker" else "mlp2x_gelu",
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "model_type": "llava",
        **({"scale_factor": args.scale} if args.projector == "tokenpacker" else {}),
        "torch_dtype": args.dtype,
        "use_mm_proj": True,
        "vocab_size": args.vocab,
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def write_safetensors(path, tensors):
    import struct
    names = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
    header, blobs, offset = {}, [], 0
    for k, t in tensors.items():
        data = t.view(torch.int16).numpy().tobytes() if t.dtype != torch.float32 else t.numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * ((-len(raw)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
