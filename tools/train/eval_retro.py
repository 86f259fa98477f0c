"""Held-out bits per byte of a RETRO checkpoint on Revelation 19-22 (the tail
of models/data/kjv-heldout.txt from "Rev19:1 "), with neighbours retrieved from
the training text (retro_data.py, the datastore the model trained with), with
each chunk's neighbours replaced by random chunks of that datastore (and their
continuations), and with none; and the default model (models/DEFAULT) on the
same windows.

Windows of --context tokens starting on the chunk grid, stride half of it:
every byte after the first is scored once (later windows score only their new
tokens); bits per byte = total -log2 p / scored bytes. Reference models in
float32 from the saved weights.

    /usr/bin/python3 tools/train/eval_retro.py --model models/retro [--context 512]
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import data  # noqa: E402
import models  # noqa: E402
import retro  # noqa: E402
import retro_data  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def windows(T, W, m):
    """(start, end, first scored) of each window: tokens [start, end), scoring first .. end-1;
    a window starts on the chunk grid (at most W tokens)."""
    out, end = [(0, min(T, W), 1)], min(T, W)
    S = W // 2
    while end < T:
        b = min(end + S, T)
        out.append((max(0, -(-(b - W) // m) * m), b, end))
        end = b
    return out


def bits(logits, tokens, first, start):
    lp = torch.log_softmax(logits.double(), dim=-1)
    total = 0.0
    for t in range(first, len(tokens) + start):
        total -= float(lp[t - 1 - start, tokens[t - start]])
    return total / math.log(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "retro"))
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the figures here as JSON")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = retro.load(a.model).eval()
    m, k = model.cfg.chunk_size, model.cfg.num_neighbours
    W = a.context // m * m
    text = retro_data.heldout_rev19_22()
    T = len(text)
    toks = list(text)
    train, _ = data.split()
    index = retro_data.Index(train, m)
    n_chunks = T // m
    held_chunks = [text[u * m:(u + 1) * m] for u in range(n_chunks)]
    retrieved = np.stack([retro_data.top_k(index.scores(c), k) for c in held_chunks])
    rng = np.random.default_rng(a.seed)
    random_ids = rng.integers(0, index.N, size=(n_chunks, k))
    wins = windows(T, W, m)
    # a window starts on the chunk grid (W and the stride are multiples of m or it starts at 0)
    assert all(s % m == 0 for s, _, _ in wins), "windows must start on the chunk grid"
    results = {"text": "Revelation 19-22 of models/data/kjv-heldout.txt", "bytes": T, "scored_bytes": T - 1,
               "context": W, "windows": len(wins), "chunk_size": m, "num_neighbours": k}
    with torch.no_grad():
        for name, ids in (("retrieval", retrieved), ("random_chunks", random_ids), ("no_neighbours", None)):
            total = 0.0
            for s, e, first in wins:
                U = (e - s) // m
                x = torch.tensor([toks[s:e]])
                if ids is None:
                    nb = torch.zeros(1, U, k, 2 * m, dtype=torch.long)
                    has = torch.zeros(1, U, dtype=torch.bool)
                else:
                    nb = torch.from_numpy(index.neighbour_tokens(ids[s // m:s // m + U]))[None]
                    has = torch.ones(1, U, dtype=torch.bool)
                total += bits(model(x, nb, has)[0], toks[s:e], first, s)
            results[name + "_bpb"] = total / (T - 1)
            print(name, results[name + "_bpb"], flush=True)
        default_dir = os.path.join(ROOT, "models", open(os.path.join(ROOT, "models", "DEFAULT")).read().strip())
        base = models.load(default_dir).eval()
        total = 0.0
        for s, e, first in wins:
            total += bits(base(toks[s:e]), toks[s:e], first, s)
        results["default_model"] = os.path.basename(default_dir)
        results["default_bpb"] = total / (T - 1)
        print("default", results["default_model"], results["default_bpb"], flush=True)
    results["example"] = {"chunk": held_chunks[3].decode(), "neighbours": [index.chunks[i].decode() for i in retrieved[3]]}
    print(json.dumps(results, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
