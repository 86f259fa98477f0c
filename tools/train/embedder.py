"""A small passage embedder trained here on the KJV training text (Contriever-style).

Why: retrieval needs an embedding any served model can use, trained from
nothing but this repository's text (docs/retrieval.md "The embedder").

Model (src/retrieval/embedder.ts computes exactly the same in TypeScript):
features of a text = its lower-cased ASCII words ([a-z]+) that are in the
vocabulary (every word of the training text seen at least twice) plus the
character trigrams of each word padded with spaces (" word "), hashed with
32-bit FNV-1a into TRIGRAM_BUCKETS buckets; embedding = the L2-normalised mean
of the features' rows of one table [len(vocab) + TRIGRAM_BUCKETS, DIM].

Training (Izacard et al. 2022, Contriever: independent cropping + in-batch
negatives): a batch of B random 256-byte windows of the training text; from
each, two independent random 64-byte crops (RETRO's chunk of 64 tokens of a
byte model) are the positive pair; the other windows' crops are negatives;
loss = symmetric InfoNCE over cosine similarities / TAU.

Writes models/embedder/{config.json, vocab.json, weights.f32} (weights:
little-endian float32, row-major [rows, DIM]).
Run: python3 tools/train/embedder.py [--seconds 900] [--lr 3e-3] [--out models/embedder]
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import data  # noqa: E402

DIM = 64
TRIGRAM_BUCKETS = 8192
WINDOW, CROP = 256, 64
B, TAU = 512, 0.05
OUT = os.path.join(data.ROOT, "models", "embedder")
WORD = re.compile(r"[a-z]+")


def fnv1a(s):
    h = 0x811C9DC5
    for c in s.encode():
        h ^= c
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def features(text, vocab, cache):
    ids = []
    for w in WORD.findall(text.lower()):
        f = cache.get(w)
        if f is None:
            f = [vocab[w]] if w in vocab else []
            p = f" {w} "
            f += [len(vocab) + fnv1a(p[i:i + 3]) % TRIGRAM_BUCKETS for i in range(len(p) - 2)]
            cache[w] = f
        ids += f
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=240)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(2)
    train, _ = data.split()
    text = train.decode("ascii")
    counts = {}
    for w in WORD.findall(text.lower()):
        counts[w] = counts.get(w, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= 2)
    vocab = {w: i for i, w in enumerate(words)}
    rows = len(vocab) + TRIGRAM_BUCKETS
    table = torch.nn.EmbeddingBag(rows, DIM, mode="mean")
    torch.nn.init.normal_(table.weight, std=0.1)
    opt = torch.optim.Adam(table.parameters(), lr=args.lr)
    cache = {}

    def embed(texts):
        feats = [features(t, vocab, cache) or [len(vocab)] for t in texts]
        offsets = torch.tensor([0] + [len(f) for f in feats[:-1]]).cumsum(0)
        flat = torch.tensor([i for f in feats for i in f])
        return torch.nn.functional.normalize(table(flat, offsets), dim=-1)

    start, step, log = time.time(), 0, []
    while time.time() - start < args.seconds:
        w0 = rng.integers(0, len(text) - WINDOW, size=B)
        a = [text[s + o: s + o + CROP] for s, o in zip(w0, rng.integers(0, WINDOW - CROP, size=B))]
        b = [text[s + o: s + o + CROP] for s, o in zip(w0, rng.integers(0, WINDOW - CROP, size=B))]
        ea, eb = embed(a), embed(b)
        logits = ea @ eb.T / TAU
        target = torch.arange(B)
        loss = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 10 == 0:
            log.append({"step": step, "seconds": round(time.time() - start, 1), "loss": round(loss.item(), 4)})
            print(json.dumps(log[-1]), flush=True)
    out = args.out
    os.makedirs(out, exist_ok=True)
    table.weight.detach().numpy().astype("<f4").tofile(os.path.join(out, "weights.f32"))
    with open(os.path.join(out, "vocab.json"), "w") as f:
        json.dump(words, f)
    cfg = {"kind": "bag_of_words_trigrams", "dim": DIM, "trigram_buckets": TRIGRAM_BUCKETS, "vocab_size": len(vocab),
           "lowercase": True, "word_pattern": "[a-z]+", "hash": "fnv1a32", "training": {
               "text": "KJV Genesis 1:1 .. Hebrews 13:25 (tools/train/data.py split)", "window": WINDOW, "crop": CROP,
               "batch": B, "tau": TAU, "steps": step, "seconds": round(time.time() - start, 1), "seed": args.seed,
               "lr": args.lr, "final_loss": log[-1]["loss"] if log else None}}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
