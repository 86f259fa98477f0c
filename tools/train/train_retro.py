"""Trains a small RETRO (tools/reference/retro.py, docs/retro.md) on the KJV
training text with neighbours retrieved from the same text (retro_data.py),
and saves it as a checkpoint folder (config.json + F16 model.safetensors).

Rows of --seq-len bytes start on the chunk grid, so each of their chunks is a
datastore chunk whose neighbours are precomputed (excluding its own
neighbourhood). Plain text only (no FIM). AdamW (betas 0.9/0.95, weight decay
0.1 on matrices), warmup + cosine over a wall-clock budget, 1 torch thread by
default; train_log.jsonl gets every 10th step.

    /usr/bin/python3 tools/train/train_retro.py --out models/retro --minutes 40
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import checkpoint  # noqa: E402
import data  # noqa: E402
import retro  # noqa: E402
import retro_data  # noqa: E402


def build_config(a):
    return {"model_type": "retro", "vocab_size": data.VOCAB, "n_embd": a.n_embd, "n_head": a.n_head,
            "n_layer": a.n_layer, "n_inner": 4 * a.n_embd, "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5, "position_embedding": "rotary", "rotary_base": 10000,
            "chunk_size": a.chunk, "num_neighbours": a.k, "cca_start": a.cca_start, "cca_period": a.cca_period,
            "encoder_layers": a.enc_layers, "tokenizer_class": "bytes", "special_tokens": dict(data.SPECIAL_TOKENS),
            "eos_token_id": data.EOS}


def init_weights(model, seed, n_layer):
    """GPT-2 style: matrices N(0, 0.02), output projections N(0, 0.02/sqrt(2L)), LayerNorm 1/0, biases 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if ".ln_" in name or name.startswith("ln_"):
                p.fill_(1.0 if name.endswith(".weight") else 0.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                p.copy_(std * torch.randn(p.shape, generator=g))


def save(model, config, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    checkpoint.save_tensors(out, {k: v.to(torch.float16).contiguous() for k, v in model.hf_state_dict().items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n-embd", type=int, default=192)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--enc-layers", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--cca-start", type=int, default=1)
    ap.add_argument("--cca-period", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--init-from", help="start from this checkpoint's weights (a later phase; fresh optimizer)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)

    train, _ = data.split()
    t0 = time.time()
    index = retro_data.Index(train, a.chunk)
    nbrs = retro_data.training_neighbours(index, a.k)
    print(f"neighbours of {len(nbrs)} chunks in {time.time() - t0:.0f}s", flush=True)
    text = np.frombuffer(train, dtype=np.uint8).astype(np.int64)

    config = build_config(a)
    model = retro.Retro(config)
    init_weights(model, a.seed, a.n_layer)
    if a.init_from:
        prev = retro.load(a.init_from)
        if prev.cfg.raw != {k: v for k, v in config.items()}:
            raise SystemExit(f"--init-from {a.init_from}: its config differs from this run's")
        model.load_state_dict(prev.state_dict())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    m, U = a.chunk, a.seq_len // a.chunk
    n_chunks = (len(text) - 1) // m
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "train_log.jsonl"), "w")
    start, step, tokens = time.time(), 0, 0
    budget = a.minutes * 60
    while time.time() - start < budget:
        c0 = rng.integers(0, n_chunks - U - 1, size=a.batch)
        rows = np.stack([text[c * m:c * m + a.seq_len + 1] for c in c0])
        nb = index.neighbour_tokens(np.stack([nbrs[c:c + U] for c in c0]))  # [B, U, k, 2m]
        x, y = torch.from_numpy(rows[:, :-1]), torch.from_numpy(rows[:, 1:])
        frac = (time.time() - start) / budget
        lr = a.lr * (step + 1) / a.warmup if step < a.warmup else \
            a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        logits = model(x, torch.from_numpy(nb), torch.ones(a.batch, U, dtype=torch.bool))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += y.numel()
        if step % 10 == 0:
            rec = {"step": step, "seconds": round(time.time() - start, 1), "lr": lr,
                   "loss_bits": float(loss) / math.log(2)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if step % 100 == 0:
                print(rec, flush=True)
                save(model, config, a.out)  # a usable checkpoint at any time
    save(model, config, a.out)
    print(f"trained {step} steps, {tokens} target tokens, {time.time() - start:.0f}s; saved {a.out}", flush=True)


if __name__ == "__main__":
    main()
