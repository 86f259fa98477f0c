"""Train a per-request adapter (soft prompt or (IA)^3) for a shipped model on
one book of the KJV, with the reference modules (tools/reference/adapters.py
defines both; the base model's weights stay frozen).

Task: the style of the book of Revelation, which no shipped model trained on
(it is in the held-out tail, models/data/kjv-heldout.txt). Training text:
Revelation 1-18 ("Rev1:1 ..." to the last verse of chapter 18); held-out:
Revelation 19-22, written to models/data/revelation-heldout.txt.

    /usr/bin/python3 tools/train/train_adapter.py --model models/bigbird --kind prompt_tuning \\
        --prompt-tokens 16 --out models/adapters/revelation-prompt --minutes 8

Writes OUT/adapter_config.json, OUT/adapter_model.safetensors (F32: they are
small) and OUT/results.json: held-out bits per byte of the base model and with
the adapter, at contexts 256 and 1024, computed as `roost eval` computes them
(tools/train/eval.py; with a soft prompt before every window).
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
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, HERE)

import adapters  # noqa: E402
import data  # noqa: E402
import eval as heldout_eval  # noqa: E402
import models  # noqa: E402

TASK_HELDOUT = os.path.join(data.ROOT, "models", "data", "revelation-heldout.txt")


def task_split():
    """(train bytes, held-out bytes) of the Revelation task."""
    text = data.kjv_text()
    start = text.index(b"\nRev1:1 ") + 1
    cut = text.index(b"\nRev19:1 ") + 1
    return text[start:cut], text[cut:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--kind", choices=("prompt_tuning", "ia3"), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.0, help="default: 3e-2 for a soft prompt, 1e-2 for (IA)^3")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--contexts", default="256,1024")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)

    train, held = task_split()
    os.makedirs(os.path.dirname(TASK_HELDOUT), exist_ok=True)
    with open(TASK_HELDOUT, "wb") as f:
        f.write(held)
    model = models.load(a.model)
    for p in model.parameters():
        p.requires_grad_(False)
    config = json.load(open(os.path.join(a.model, "config.json")))
    adapter = adapters.for_model(a.kind, config, a.prompt_tokens)
    if a.kind == "prompt_tuning":  # Lester et al.: start from the embeddings of sampled vocabulary tokens
        with torch.no_grad():
            ids = torch.from_numpy(rng.choice(np.frombuffer(train, dtype=np.uint8), a.prompt_tokens)).long()
            adapter.prompt.copy_(model.wte.weight[ids])
    lr = a.lr or (3e-2 if a.kind == "prompt_tuning" else 1e-2)
    opt = torch.optim.Adam(adapter.parameters(), lr=lr)
    text = np.frombuffer(train, dtype=np.uint8)
    t0 = time.time()
    step, ema = 0, None
    while time.time() - t0 < a.minutes * 60:
        starts = rng.integers(0, len(text) - a.seq_len - 1, size=a.batch)
        rows = torch.from_numpy(np.stack([text[s:s + a.seq_len + 1] for s in starts]).astype(np.int64))
        frac = (time.time() - t0) / (a.minutes * 60)
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        logits = model.forward(rows[:, :-1], adapter=adapter)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        ema = float(loss) if ema is None else 0.95 * ema + 0.05 * float(loss)
        if step % 50 == 0:
            print(f"step {step} t={time.time() - t0:.0f}s loss={ema / math.log(2):.3f} bits/token", flush=True)
    train_seconds = time.time() - t0
    adapter.eval()
    adapters.save(adapter, a.out, a.model)

    results = {
        "kind": a.kind, "base_model": os.path.relpath(a.model, data.ROOT), "steps": step,
        "train_tokens": step * a.batch * a.seq_len, "train_seconds": round(train_seconds, 1),
        "command": "/usr/bin/python3 " + " ".join(sys.argv), "args": vars(a),
        "parameters": sum(p.numel() for p in adapter.parameters()),
        "task": "Revelation: train on chapters 1-18, held out chapters 19-22",
        "heldout_file": os.path.relpath(TASK_HELDOUT, data.ROOT), "heldout_bytes": len(held),
        "heldout_sha256": data.sha256(held), "eval": {},
    }
    saved = adapters.load(a.out, config)
    with torch.no_grad():
        for c in a.contexts.split(","):
            W = int(c)
            base = heldout_eval.evaluate(model, held, W)["bits_per_byte"]
            # a soft prompt takes P positions of the model's context; windows stay W tokens
            with_adapter = heldout_eval.evaluate(model, held, W, adapter=saved)["bits_per_byte"]
            results["eval"][c] = {"base_bits_per_byte": base, "adapter_bits_per_byte": with_adapter}
            print(f"context {W}: base {base:.4f} bpb, with adapter {with_adapter:.4f} bpb", flush=True)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    write_card(a.out, results)


def write_card(out, r):
    """OUT/README.md: what the adapter is, how it was trained, what it buys."""
    kind = ("a soft prompt of %d virtual tokens (prompt tuning, Lester et al. 2021)" % r["args"]["prompt_tokens"]
            if r["kind"] == "prompt_tuning" else "(IA)^3 vectors (Liu et al. 2022) rescaling keys, values and MLP "
            "activations in every layer")
    name = os.path.basename(os.path.normpath(out))
    lines = [f"# {name}", "",
             f"An adapter for `{r['base_model']}`: {kind}, {r['parameters']:,} parameters, trained with the base "
             "model frozen. Task: " + r["task"] + f" (`{r['heldout_file']}`, {r['heldout_bytes']:,} bytes). "
             "Format and serving: docs/adapters.md.", "",
             "## Held-out bits per byte", "",
             "| context | base model | with this adapter |", "| --- | --- | --- |"]
    for c, e in r["eval"].items():
        lines.append(f"| {c} | {e['base_bits_per_byte']:.4f} | {e['adapter_bits_per_byte']:.4f} |")
    lines += ["", "Computed by `tools/train/eval.py` exactly as `roost eval --adapter` scores a file (windows of the "
              "context, stride half of it; with a soft prompt, each window is a fresh sequence after it).", "",
              "## Training", "",
              f"{r['steps']} steps, {r['train_tokens']:,} tokens, {r['train_seconds'] / 60:.1f} minutes on a shared "
              "2-core CPU:", "", "```", r["command"].replace(os.path.join(data.ROOT, ""), ""), "```", ""]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
