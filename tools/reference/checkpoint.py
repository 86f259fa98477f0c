"""Checkpoint folder I/O shared by every reference architecture.

A checkpoint is a folder with config.json and model.safetensors, or
model-0000N-of-0000M.safetensors shards listed in model.safetensors.index.json
(HF layout: {"metadata": {"total_size": bytes}, "weight_map": {name: file}}).
"""
import json
import os

import torch

import safetensors_io

# HF buffers that are not parameters; the loaders drop them.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
PREFIX = "transformer."


def read_config(path):
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def read_tensors(path):
    """All tensors of the checkpoint folder, names as stored (no stripping)."""
    index = os.path.join(path, "model.safetensors.index.json")
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(weight_map.values())):
            for name, t in safetensors_io.load(os.path.join(path, shard)).items():
                if name in out:
                    raise ValueError(f"{path}: tensor {name} appears in two shards")
                out[name] = t
        missing = [n for n in weight_map if n not in out]
        if missing:
            raise ValueError(f"{path}: index names tensors no shard holds: {missing[:5]}")
        return out
    if os.path.exists(single):
        return safetensors_io.load(single)
    raise FileNotFoundError(f"{path}: neither model.safetensors nor model.safetensors.index.json")


def normalize_names(tensors):
    """Strip the "transformer." prefix, drop attn.bias / attn.masked_bias buffers,
    upcast F16/BF16 to float32 (the reference computes in float32)."""
    out = {}
    for name, t in tensors.items():
        n = name[len(PREFIX):] if name.startswith(PREFIX) else name
        if n.endswith(IGNORED_SUFFIXES) and n.startswith("h."):
            continue
        if n in out:
            raise ValueError(f"tensor {n} present both with and without the transformer. prefix")
        out[n] = t.to(torch.float32) if t.is_floating_point() else t
    return out


def save_tensors(path, tensors, shards=1, metadata=None):
    """Write tensors to path as model.safetensors, or as `shards` shards + index.

    Sharding keeps name order and splits by cumulative byte size.
    """
    os.makedirs(path, exist_ok=True)
    meta = {"format": "pt"}
    if metadata:
        meta.update(metadata)
    if shards <= 1:
        safetensors_io.save(os.path.join(path, "model.safetensors"), tensors, meta)
        return
    names = sorted(tensors)
    sizes = [tensors[n].numel() * tensors[n].element_size() for n in names]
    total = sum(sizes)
    groups = [[] for _ in range(shards)]
    acc = 0
    for n, s in zip(names, sizes):
        g = min(shards - 1, acc * shards // max(total, 1))
        groups[g].append(n)
        acc += s
    weight_map = {}
    for i, g in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        safetensors_io.save(os.path.join(path, fname), {n: tensors[n] for n in g}, meta)
        for n in g:
            weight_map[n] = fname
    with open(os.path.join(path, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")


def copy_checked(params, tensors):
    """Copies checkpoint tensors into a model's parameters (name -> tensor sharing
    the parameter's storage), refusing a missing, unexpected or mis-shaped name."""
    missing = [k for k in params if k not in tensors]
    unexpected = [k for k in tensors if k not in params]
    if missing or unexpected:
        raise ValueError(f"checkpoint mismatch: missing {missing[:8]}, unexpected {unexpected[:8]}")
    with torch.no_grad():
        for k, v in tensors.items():
            if tuple(v.shape) != tuple(params[k].shape):
                raise ValueError(f"{k}: shape {tuple(v.shape)}, expected {tuple(params[k].shape)}")
            params[k].copy_(v.float())
