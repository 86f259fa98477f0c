"""Per-request adapters of a gpt2-architecture model (docs/adapters.md), the
reference the engine's cpp/models/adapter.* is tested against, and the
training code of tools/train/adapters.py.

- Prompt tuning (Lester et al. 2021): `prompt` [P, C], input embeddings that a
  new sequence runs before its first token, at positions 0 .. P-1.
- (IA)^3 (Liu et al. 2022): per layer l, `ia3_k[l]` [C] and `ia3_v[l]` [C]
  multiply the attention keys and values right after c_attn (before rotary and
  the cache), `ia3_ff[l]` [F] multiplies the MLP's activations after gelu,
  before c_proj. Initialized to ones (the base model).

Folder: adapter_config.json ({"peft_type": "PROMPT_TUNING" | "IA3",
"num_virtual_tokens": P, "base_model": {model_type, vocab_size, n_embd,
n_layer, n_inner}, "base_model_sha256": sha256 of the base's weight files})
and adapter_model.safetensors (`prompt_embeddings`, or `h.{l}.attn.ia3_k`,
`h.{l}.attn.ia3_v`, `h.{l}.mlp.ia3_ff`).
"""
import hashlib
import json
import os

import torch
from torch import nn

import checkpoint
import safetensors_io

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"


class Adapter(nn.Module):
    def __init__(self, kind, n_layer, n_embd, n_inner, prompt_tokens=0):
        super().__init__()
        if kind not in ("prompt_tuning", "ia3"):
            raise ValueError(f"unknown adapter kind {kind}")
        self.kind = kind
        self.prompt = nn.Parameter(torch.zeros(prompt_tokens, n_embd)) if kind == "prompt_tuning" else None
        if kind == "ia3":
            self.ia3_k = nn.Parameter(torch.ones(n_layer, n_embd))
            self.ia3_v = nn.Parameter(torch.ones(n_layer, n_embd))
            self.ia3_ff = nn.Parameter(torch.ones(n_layer, n_inner))

    def ia3(self, layer):
        """(l_k, l_v, l_ff) of one layer, or None."""
        if self.kind != "ia3":
            return None
        return self.ia3_k[layer], self.ia3_v[layer], self.ia3_ff[layer]

    def tensors(self):
        if self.kind == "prompt_tuning":
            return {"prompt_embeddings": self.prompt.detach().clone()}
        out = {}
        for l in range(self.ia3_k.shape[0]):
            out[f"h.{l}.attn.ia3_k"] = self.ia3_k[l].detach().clone()
            out[f"h.{l}.attn.ia3_v"] = self.ia3_v[l].detach().clone()
            out[f"h.{l}.mlp.ia3_ff"] = self.ia3_ff[l].detach().clone()
        return out


def for_model(kind, config, prompt_tokens=0):
    c = config
    return Adapter(kind, c["n_layer"], c["n_embd"], c.get("n_inner") or 4 * c["n_embd"], prompt_tokens)


def base_sha256(model_dir):
    """sha256 over the base checkpoint's weight files (model.safetensors, or its
    shards in name order): what an adapter records as the model it belongs to."""
    h = hashlib.sha256()
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        files = [single]
    else:
        with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
            files = [os.path.join(model_dir, s) for s in sorted(set(json.load(f)["weight_map"].values()))]
    for path in files:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def save(adapter, out, model_dir, dtype=torch.float32, extra=None):
    """Writes the adapter folder for the base model at model_dir."""
    config = checkpoint.read_config(model_dir)
    os.makedirs(out, exist_ok=True)
    meta = {
        "peft_type": "PROMPT_TUNING" if adapter.kind == "prompt_tuning" else "IA3",
        "base_model": {k: config.get(k) for k in ("model_type", "vocab_size", "n_embd", "n_layer")},
        "base_model_sha256": base_sha256(model_dir),
    }
    meta["base_model"]["n_inner"] = config.get("n_inner") or 4 * config["n_embd"]
    if adapter.kind == "prompt_tuning":
        meta["num_virtual_tokens"] = adapter.prompt.shape[0]
    meta.update(extra or {})
    with open(os.path.join(out, CONFIG), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    safetensors_io.save(os.path.join(out, WEIGHTS), {k: v.to(dtype) for k, v in adapter.tensors().items()})


def load(path, config):
    """The adapter folder at path, for a base model with this config."""
    with open(os.path.join(path, CONFIG)) as f:
        meta = json.load(f)
    kind = "ia3" if meta["peft_type"] == "IA3" else "prompt_tuning"
    a = for_model(kind, config, meta.get("num_virtual_tokens", 0))
    t = safetensors_io.load(os.path.join(path, WEIGHTS))
    with torch.no_grad():
        if kind == "prompt_tuning":
            a.prompt.copy_(t["prompt_embeddings"].float())
        else:
            for l in range(a.ia3_k.shape[0]):
                a.ia3_k[l].copy_(t[f"h.{l}.attn.ia3_k"].float())
                a.ia3_v[l].copy_(t[f"h.{l}.attn.ia3_v"].float())
                a.ia3_ff[l].copy_(t[f"h.{l}.mlp.ia3_ff"].float())
    return a
