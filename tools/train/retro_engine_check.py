"""The shipped RETRO in the engine against the reference: the first --context
tokens of Revelation 19-22 with the neighbours retro_data retrieves for them,
scored by `roost score --neighbours` and by tools/reference/retro.py from the
same F16 weights; prints the largest log-prob difference and both sums.

    /usr/bin/python3 tools/train/retro_engine_check.py --model models/retro
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import data  # noqa: E402
import retro  # noqa: E402
import retro_data  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "retro"))
    ap.add_argument("--context", type=int, default=512)
    a = ap.parse_args()
    model = retro.load(a.model).eval()
    m, k = model.cfg.chunk_size, model.cfg.num_neighbours
    toks = list(retro_data.heldout_rev19_22()[:a.context])
    train, _ = data.split()
    index = retro_data.Index(train, m)
    nbs = []
    for u in range(len(toks) // m):
        ids = retro_data.top_k(index.scores(bytes(toks[u * m:(u + 1) * m])), k)
        nbs.append(index.neighbour_tokens(ids).tolist())
    ref = model.score(toks, nbs)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(nbs, f)
    out = subprocess.run(["node", os.path.join(ROOT, "bin", "roost.js"), "score", "--model", a.model, "--device", "cpu",
                          "--threads", "1", "--tokens", ",".join(map(str, toks)), "--neighbours", f.name],
                         check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    eng = json.loads(out)["logprobs"]
    diff = max(abs(x - y) for x, y in zip(eng[1:], ref[1:]))
    print(json.dumps({"tokens": len(toks), "max_abs_logprob_diff": diff, "engine_sum": float(np.sum(eng[1:])),
                      "reference_sum": float(np.sum(ref[1:]))}))


if __name__ == "__main__":
    main()
