#!/usr/bin/python3
"""Checks the roost CLI on a T5 checkpoint folder (make_t5_fixtures.py's
layout, with its t5-golden.json for the inputs) against tools/reference/t5.py
computed live, not read from the golden file:

  - `roost score --tokens INPUT --target-tokens TARGET` for every score case
    and for each greedy input with the reference's greedy continuation as the
    target, to the tolerance;
  - `roost generate --prompt TEXT --temperature 0` prints the reference's
    greedy tokens of the text (up to </s>), detokenized by roost's tokenizer.

    /usr/bin/python3 tools/reference/make_t5_fixtures.py --one /tmp/t5x --d-model 40 --heads 5 --d-kv 6 --gated
    /usr/bin/python3 tools/reference/check_t5.py /tmp/t5x [--tolerance 1e-4]

Prints one line per case and a JSON summary; exits 1 on any mismatch. Needs
dist/ (npx tsc) and the native build.
"""
import argparse
import json
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import checkpoint  # noqa: E402
import t5  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))


def roost(*args):
    r = subprocess.run(["node", os.path.join(REPO, "bin", "roost.js"), *args], capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise SystemExit(f"roost {' '.join(args[:1])} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with open(os.path.join(a.dir, "config.json")) as f:
        cfg = json.load(f)
    model = t5.T5(t5.T5Config(cfg))
    model.load_hf_state_dict(checkpoint.read_tensors(a.dir))
    model.eval()
    golden = json.load(open(os.path.join(a.dir, "t5-golden.json")))
    worst, bad = 0.0, []
    cases = [(c["name"], c["input"], c["target"]) for c in golden["score"]]
    cases += [(g["name"] + "/greedy", g["input"], model.greedy(g["input"], g["n"])) for g in golden["greedy"]]
    for name, inp, target in cases:
        want = model.score(inp, target)
        got = json.loads(roost("score", "--model", a.dir, "--tokens", ",".join(map(str, inp)),
                               "--target-tokens", ",".join(map(str, target)), "--device", "cpu"))
        err = max(abs(x - y) for x, y in zip(got["logprobs"], want))
        worst = max(worst, err)
        ok = got["tokens"] == target and err <= a.tolerance
        print(f"score {name}: {len(target)} target tokens, max |dlogprob| {err:.2e} {'ok' if ok else 'MISMATCH'}")
        if not ok:
            bad.append(name)
    text = golden["text"]
    g = next(x for x in golden["greedy"] if x["name"] == "text")
    ids = model.greedy(g["input"], g["n"])
    ids = ids[:ids.index(1)] if 1 in ids else ids
    special = [t["id"] for t in json.load(open(os.path.join(a.dir, "tokenizer.json")))["added_tokens"]]
    ids_shown = [t for t in ids if t not in special]  # completions show no text for special tokens
    js = ("const {loadTokenizer}=require('./dist/src/engine/tokenizer');const t=loadTokenizer(process.argv[1]);"
          "process.stdout.write(JSON.stringify({ids:t.encode(process.argv[2]),text:t.decode(JSON.parse(process.argv[3]))}))")
    tk = json.loads(subprocess.run(["node", "-e", js, a.dir, text, json.dumps(ids_shown)], capture_output=True, text=True,
                                   cwd=REPO, check=True).stdout)
    out = roost("generate", "--model", a.dir, "--prompt", text, "--max-tokens", str(g["n"]), "--temperature", "0",
                "--device", "cpu")
    ok = tk["ids"] == g["input"] and out == tk["text"]
    print(f"generate text: {len(ids)} reference greedy tokens, {'ok' if ok else 'MISMATCH'}")
    if not ok:
        bad.append("generate")
    print(json.dumps({"dir": a.dir, "max_abs_logprob_diff": worst, "mismatches": bad}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
