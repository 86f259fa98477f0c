"""Held-out multi-span blanks on Revelation 19-22 for the shipped seq2seq
model (models/t5-kjv), against the decoder-only default model's FIM on the
same gaps; writes the figures and 20 examples into OUT/results.json.

Examples: Revelation 19:1 to the end of models/data/kjv-heldout.txt (13,246
bytes) cut into consecutive windows of 192 bytes (the last, shorter window
dropped); in each window T5 span corruption (t5_data.noise_spans: 15% of the
bytes in spans of mean length 3) with numpy's default_rng(--seed) drawn once
for all windows in order. The seq2seq model reads the window with its gaps
replaced by <extra_id_0>, <extra_id_1>, ... and scores the target
<extra_id_0> gap0 <extra_id_1> gap1 ... </s> (tools/reference/t5.py, float32
from the saved F16 weights).

The default model (models/DEFAULT, a byte-level decoder-only model trained
with FIM) cannot take several gaps at once, so each gap is scored alone as a
served `suffix` request is laid out (data.psm_prompt: <fim_prefix> prefix
<fim_suffix> suffix <fim_middle>, then the gap's bytes and the <eos> that
closes it), prefix and suffix taken from the same 192-byte window. The
window's other gaps are handled two ways:
  - "others removed": their bytes are cut out of prefix and suffix (the
    model sees exactly the bytes the seq2seq model sees, without the marks of
    where the gaps were): the like-for-like figure;
  - "others given": their true bytes stay in (more information than the
    seq2seq model has): an upper bound for the default model.

Figures: bits per byte of the gaps' bytes (sum of -log2 p over the gap bytes
/ gap bytes); and "with end": the same plus the token that closes each gap
(the next sentinel or </s> for the seq2seq model, <eos> for FIM), over the
gap bytes. "seq2seq_text_removed": the seq2seq model on the same targets with
only the sentinels and </s> as input (does it read the text around the gaps?).

    /usr/bin/python3 tools/train/eval_t5.py --model models/t5-kjv [--default models/bigbird] [--engine-check 3]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, HERE)

import checkpoint  # noqa: E402
import data  # noqa: E402
import t5  # noqa: E402
import t5_data  # noqa: E402

REPO = data.ROOT
WINDOW = 192
LN2 = math.log(2)


def revelation_19_22():
    held = open(data.HELDOUT_PATH, "rb").read()
    return held[held.index(b"Rev19:1 "):]


def examples(vocab, seed):
    """[(window bytes, ids, spans)]: consecutive 192-byte windows of Revelation 19-22 and their gaps."""
    text = revelation_19_22()
    rng = np.random.default_rng(seed)
    out = []
    for s in range(0, len(text) - WINDOW + 1, WINDOW):
        w = text[s:s + WINDOW]
        ids = vocab.encode(w)
        out.append((w, ids, t5_data.noise_spans(rng, len(ids))))
    return out


def load_t5(path):
    model = t5.T5(t5.T5Config(checkpoint.read_config(path)))
    model.load_hf_state_dict(checkpoint.read_tensors(path))
    return model.eval()


def t5_costs(model, vocab, ids, spans, text_removed=False):
    """(input, target, logprobs, bits of the gap bytes, bits of the closing tokens, bits of each gap's
    first byte). text_removed: the input is only the sentinels and </s> (a diagnostic: does the model
    read the text around the gaps?)."""
    inp, tgt = t5_data.corrupt(vocab, ids, spans)
    if text_removed:
        inp = [vocab.sentinel(i) for i in range(len(spans))] + [t5_data.EOS]
    lp = model.score(inp, tgt)
    gap_bits, end_bits, first_bits, k = 0.0, 0.0, 0.0, 0
    for i, (a, b) in enumerate(spans):
        k += 1  # the sentinel that opens gap i
        gap_bits -= sum(lp[k:k + b - a]) / LN2
        first_bits -= lp[k] / LN2
        k += b - a
        end_bits -= lp[k] / LN2  # the next sentinel, or </s> after the last gap
    return inp, tgt, lp, gap_bits, end_bits, first_bits


def fim_prompt(window, spans, a, b, keep_others):
    """The PSM prompt of gap [a, b) alone, prefix and suffix from the window; the window's other
    gaps' bytes cut out unless keep_others."""
    gap = np.zeros(len(window), dtype=bool)
    for c, d in spans:
        gap[c:d] = True
    kept = lambda r: [window[k] for k in r if keep_others or not gap[k]]  # gaps never overlap
    return data.psm_prompt(kept(range(0, a)), kept(range(b, len(window))))


@torch.no_grad()
def fim_costs(model, window, spans, keep_others):
    """Bits of the gap bytes, of the closing <eos> and of each gap's first byte, each gap alone as a
    PSM request."""
    gap_bits, end_bits, first_bits = 0.0, 0.0, 0.0
    for a, b in spans:
        row = fim_prompt(window, spans, a, b, keep_others) + list(window[a:b]) + [data.EOS]
        x = torch.tensor([row])
        lp = torch.log_softmax(model(x)[0, :-1].double(), dim=-1).gather(1, x[0, 1:, None])[:, 0]
        m = len(row) - (b - a) - 1  # first gap byte
        gap_bits -= float(lp[m - 1:m - 1 + b - a].sum()) / LN2
        end_bits -= float(lp[-1]) / LN2
        first_bits -= float(lp[m - 1]) / LN2
    return gap_bits, end_bits, first_bits


@torch.no_grad()
def fim_greedy(model, window, spans, limit=16):
    """The default model's greedy fill of each gap alone (the window's other gaps cut out, as
    fim_costs with keep_others False), up to its <eos> or `limit` bytes."""
    fills = []
    for a, b in spans:
        row, out = fim_prompt(window, spans, a, b, False), []
        while len(out) < limit:
            t = int(model(torch.tensor([row]))[0, -1].argmax())
            if t == data.EOS:
                break
            out.append(t)
            row.append(t)
        fills.append(bytes(t for t in out if t < 256).decode(errors="replace"))
    return fills


def add(acc, bits):
    for i, x in enumerate(bits):
        acc[i] += x


def split_fill(vocab, ids):
    """Greedy decoder tokens -> the text of each gap (by the sentinels), up to </s>."""
    gaps, cur = [], None
    for t in ids:
        if t == t5_data.EOS:
            break
        if vocab.is_sentinel(t):
            cur = []
            gaps.append(cur)
        elif cur is not None:
            cur.append(t)
    return [vocab.decode(g) for g in gaps]


def shown_input(vocab, inp):
    return vocab.decode([t for t in inp if t != t5_data.EOS])


def engine_check(model_dir, cases):
    """Largest |engine - reference| log-prob over `roost score --tokens --target-tokens` on the cases."""
    worst = 0.0
    for inp, tgt, lp in cases:
        r = subprocess.run(["node", os.path.join(REPO, "bin", "roost.js"), "score", "--model", model_dir, "--tokens",
                            ",".join(map(str, inp)), "--target-tokens", ",".join(map(str, tgt)), "--device", "cpu"],
                           capture_output=True, text=True, cwd=REPO, check=True)
        got = json.loads(r.stdout)
        assert got["tokens"] == tgt
        worst = max(worst, max(abs(x - y) for x, y in zip(got["logprobs"], lp)))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "models", "t5-kjv"))
    ap.add_argument("--default", default=None, help="decoder-only FIM model (default: models/DEFAULT)")
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--shown", type=int, default=20, help="examples with greedy fills in results.json")
    ap.add_argument("--engine-check", type=int, default=3, help="examples scored by the engine too (0: none)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    if a.default is None:
        a.default = os.path.join(REPO, "models", open(os.path.join(REPO, "models", "DEFAULT")).read().strip())
    vocab = t5_data.Vocab()
    model = load_t5(a.model)
    import models
    default = models.load(a.default).eval()
    exs = examples(vocab, a.seed)
    # per figure: bits of the gap bytes, of the closing tokens, of the gaps' first bytes
    tot = {"bytes": 0, "gaps": 0, **{k: [0.0, 0.0, 0.0] for k in ("t5", "t5_text_removed", "fim_removed", "fim_given")}}
    shown, checks = [], []
    for n, (w, ids, spans) in enumerate(exs):
        inp, tgt, lp, *bits = t5_costs(model, vocab, ids, spans)
        add(tot["t5"], bits)
        add(tot["t5_text_removed"], t5_costs(model, vocab, ids, spans, text_removed=True)[3:])
        for key, keep in (("fim_removed", False), ("fim_given", True)):
            add(tot[key], fim_costs(default, w, spans, keep))
        tot["bytes"] += sum(b - a for a, b in spans)
        tot["gaps"] += len(spans)
        if n < a.engine_check:
            checks.append((inp, tgt, lp))
        if n < a.shown:
            fill = split_fill(vocab, model.greedy(inp, len(tgt) + 16))
            truth = [w[s:e].decode() for s, e in spans]
            fim = fim_greedy(default, w, spans)
            shown.append({"input": shown_input(vocab, inp), "fill": fill, "truth": truth,
                          "exact_gaps": sum(f == t for f, t in zip(fill, truth)),
                          "default_fim_fill": fim, "default_fim_exact_gaps": sum(f == t for f, t in zip(fim, truth))})
    B = tot["bytes"]
    fig = lambda k: {"bits_per_byte": tot[k][0] / B, "bits_per_byte_with_end": (tot[k][0] + tot[k][1]) / B,
                     "first_byte_bits": tot[k][2] / tot["gaps"]}
    res = {
        "text": "Revelation 19:1 to the end of models/data/kjv-heldout.txt",
        "windows": len(exs), "window_bytes": WINDOW, "gaps": tot["gaps"], "gap_bytes": B, "seed": a.seed,
        "noise_density": t5_data.NOISE_DENSITY, "mean_span": t5_data.MEAN_SPAN,
        "seq2seq": fig("t5"),
        "seq2seq_text_removed": fig("t5_text_removed"),
        "default_model": os.path.basename(os.path.normpath(a.default)),
        "default_fim_others_removed": fig("fim_removed"),
        "default_fim_others_given": fig("fim_given"),
        "greedy_exact_gaps": f"{sum(s['exact_gaps'] for s in shown)} of {sum(len(s['truth']) for s in shown)} "
                             f"(the {len(shown)} shown examples)",
        "default_fim_greedy_exact_gaps": f"{sum(s['default_fim_exact_gaps'] for s in shown)} of "
                                         f"{sum(len(s['truth']) for s in shown)}",
    }
    if checks:
        res["engine_check"] = {"examples": len(checks), "target_tokens": sum(len(c[1]) for c in checks),
                               "max_abs_logprob_diff": engine_check(a.model, checks)}
    res["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=1))
    if not a.no_write:
        path = os.path.join(a.model, "results.json")
        r = json.load(open(path)) if os.path.exists(path) else {}
        r["heldout_span_fill"] = res
        r["heldout_examples"] = shown
        with open(path, "w") as f:
            json.dump(r, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
