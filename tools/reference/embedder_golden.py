"""Goldens of test/retrieval.test.ts: the shipped embedder (models/embedder)
applied to fixed texts exactly as tools/train/embedder.py trains it.
Run: python3 tools/reference/embedder_golden.py"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "train"))
import embedder  # noqa: E402

cfg = json.load(open(os.path.join(embedder.OUT, "config.json")))
words = json.load(open(os.path.join(embedder.OUT, "vocab.json")))
vocab = {w: i for i, w in enumerate(words)}
table = torch.from_numpy(np.fromfile(os.path.join(embedder.OUT, "weights.f32"), dtype="<f4").reshape(-1, cfg["dim"]))
for text in ["In the beginning God created the heaven and the earth.", "Zerubbabel's qwxyz!"]:
    f = embedder.features(text, vocab, {})
    e = torch.nn.functional.normalize(table[torch.tensor(f)].mean(0), dim=-1)
    print(json.dumps({"text": text, "features": len(f), "first8": [round(float(x), 6) for x in e[:8]]}))
