"""Cross-check a trained model with the C++ engine (`node bin/roost.js`).

    /usr/bin/python3 tools/train/engine_check.py models/dense [--threads 1]

Runs `roost eval --model DIR --file models/data/kjv-heldout.txt` and compares
its bits per byte with the reference's (eval.py at the same window: the
config's n_positions, else 1024; the value in DIR/results.json when there),
then `roost eval ... --context C` for every other context of results.json the
engine accepts ("full" = one window of the whole file); then
`roost generate --prompt P --max-tokens 60 --temperature 0` for two prompts
next to the reference's greedy continuation, and two sampled generations.
Writes DIR/engine.json; exits 1 when an eval differs by more than 1%
(relative) or fails.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, HERE)

import data  # noqa: E402
import samples  # noqa: E402

ROOT = data.ROOT
PROMPTS = ["And God said", "In the beginning"]


def roost(args, threads):
    cmd = ["node", os.path.join(ROOT, "bin", "roost.js")] + args + ["--threads", str(threads)]
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    return {"command": "node bin/roost.js " + shlex.join(args), "rc": p.returncode, "stdout": p.stdout,
            "stderr": p.stderr.strip()[-2000:], "seconds": round(time.time() - t, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-eval", action="store_true")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    import eval as heldout_eval
    import models
    d = os.path.relpath(os.path.abspath(a.model), ROOT)
    model = models.load(a.model)
    held_path = os.path.relpath(data.write_heldout(), ROOT)
    out = {"model": d, "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    ok = True
    if not a.skip_eval:
        held = open(data.HELDOUT_PATH, "rb").read()
        res_path = os.path.join(a.model, "results.json")
        ref_all = json.load(open(res_path)).get("eval", {}) if os.path.exists(res_path) else {}
        npos = model.cfg.n_positions
        # the default window of `roost eval` (n_positions, else 1024), then every context of results.json
        # that the engine accepts (at most n_positions; "full" = one window of the whole file)
        runs = [("default", None)] + [(c, len(held) if c == "full" else int(c)) for c in ref_all
                                      if c == "full" or npos is None or int(c) <= npos]
        out["eval"] = []
        for key, ctx in runs:
            if key == "default":
                ctx_ref = heldout_eval.model_context(model)
                key_ref = str(ctx_ref)
            else:
                ctx_ref, key_ref = (None, "full") if key == "full" else (ctx, key)
            ref = ref_all.get(key_ref)
            if ref is None:
                ref = heldout_eval.evaluate(model, held, ctx_ref)
            args = ["eval", "--model", d, "--file", held_path] + ([] if ctx is None else ["--context", str(ctx)])
            r = roost(args, a.threads)
            r["context"] = key_ref
            r["reference_bits_per_byte"] = ref["bits_per_byte"]
            if r["rc"] == 0:
                eng = json.loads(r["stdout"].splitlines()[-1])
                rel = abs(eng["bits_per_byte"] - ref["bits_per_byte"]) / ref["bits_per_byte"]
                r["bits_per_byte"] = eng["bits_per_byte"]
                r["relative_difference"] = rel
                ok = ok and rel <= 0.01
                print(f"{d} context {key_ref}: engine {eng['bits_per_byte']:.4f} bpb, reference "
                      f"{ref['bits_per_byte']:.4f}: relative difference {rel:.2e} -> {'OK' if rel <= 0.01 else 'FAIL'}"
                      f" ({r['seconds']}s)")
            else:
                ok = False
                print(f"{d} context {key_ref}: roost eval failed: {r['stderr']}")
            out["eval"].append(r)
    out["generate"] = []
    for p in PROMPTS:
        r = roost(["generate", "--model", d, "--prompt", p, "--max-tokens", "60", "--temperature", "0"], a.threads)
        ref = samples.text(samples.greedy(model, p.encode(), 60))
        r["reference_completion"] = ref
        out["generate"].append(r)
        print(f"generate {p!r}: rc {r['rc']}\n  engine:    {r['stdout']!r}\n  reference: {ref!r}")
    out["sampled"] = []
    for seed in (1, 2):
        r = roost(["generate", "--model", d, "--prompt", PROMPTS[0], "--max-tokens", "80", "--temperature", "0.8",
                   "--top-k", "40", "--seed", str(seed)], a.threads)
        out["sampled"].append(r)
        print(f"sampled seed {seed}: rc {r['rc']} {r['stdout']!r}")
    out["ok"] = ok
    with open(os.path.join(a.model, "engine.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
