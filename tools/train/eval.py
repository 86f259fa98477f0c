"""Held-out bits per byte, computed the way `roost eval` does, with the
reference modules (tools/reference/).

Every token of the file after the first is scored exactly once with the
model's ordinary forward (float64 log_softmax of the float32 logits, as the
reference's `score`), in windows of W = the context:

  - the first window is [0, e0) with e0 = min(F, T), scoring tokens 1..e0-1,
    where F = W, or min(N, W) for perceiver_ar (N = num_latents);
  - then window ends advance by the stride S = max(1, min(W // 2, F - 1)):
    e_{k+1} = min(e_k + S, T); the window is [max(0, e_{k+1} - W), e_{k+1})
    and scores only its new tokens e_k .. e_{k+1}-1.

For gpt2 / bigbird / block_recurrent (F = W) this is exactly the windowing of
`roost eval` (src/engine/scoring.ts scoreLong): windows of W, stride W/2.
For perceiver_ar only the last N positions of a window have logits (a window
scores its last N-1 tokens), so the first windows grow by S from N tokens
until they reach W, every later window is the last W tokens, and S =
min(W/2, N-1): every scored token is predicted by a latent of a window of
(up to) W tokens with at least W - N + 1 tokens of context before it
(W >= 2N). W = None means one window over the whole file (block_recurrent:
constant memory, no context limit).

bits per byte = (sum of -log2 p over the scored tokens) / (bytes in the file).

    /usr/bin/python3 tools/train/eval.py --model models/dense --file models/data/kjv-heldout.txt [--context 1024]
"""
import argparse
import json
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import block_recurrent  # noqa: E402
import perceiver_ar  # noqa: E402


def windows(T, W, N=None):
    """[(a, b, first_scored)]: window tokens[a:b] scores tokens first_scored..b-1."""
    W = T if W is None else W
    F = W if N is None else min(N, W)
    S = max(1, min(W // 2, F - 1))
    e = min(F, T)
    out = [(0, e, 1)]
    while e < T:
        b = min(e + S, T)
        out.append((max(0, b - W), b, e))
        e = b
    return out


DEFAULT_EVAL_WINDOW = 1024  # src/cli.ts: roost eval's window for models bounded only by memory


def model_context(model):
    """The window `roost eval` uses without --context: n_positions when the config gives one, else 1024."""
    return model.cfg.n_positions if model.cfg.n_positions is not None else DEFAULT_EVAL_WINDOW


@torch.no_grad()
def window_logprobs(model, rows, adapter=None):
    """rows: LongTensor [B, L] -> float64 [B, L] echo log-probs (entry t from logits at t-1;
    NaN where the model gives none, i.e. t = 0 and perceiver_ar's non-latent positions).
    adapter (gpt2 only): each window is a fresh sequence with the adapter, so a
    soft prompt comes before every window, as in `roost eval --adapter`."""
    B, L = rows.shape
    out = torch.full((B, L), float("nan"), dtype=torch.float64)
    if isinstance(model, perceiver_ar.PerceiverAR):
        logits = model.forward(rows)  # [B, N', V] for positions L-N'..L-1
        n = logits.shape[1]
        lp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
        out[:, L - n + 1:] = lp.gather(2, rows[:, L - n + 1:, None])[..., 0]
        return out
    if isinstance(model, block_recurrent.BlockRecurrent):
        # the same forward_with_past, fed in chunks (prefill == chunked prefill):
        # bounded memory for long windows.
        past, parts = None, []
        for s in range(0, L, 512):
            lg, past = model.forward_with_past(rows[:, s:s + 512], past)
            parts.append(lg)
        logits = torch.cat(parts, dim=1)
    else:
        logits = model.forward(rows, adapter=adapter) if adapter is not None else model.forward(rows)
    lp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    out[:, 1:] = lp.gather(2, rows[:, 1:, None])[..., 0]
    return out


@torch.no_grad()
def evaluate(model, data, context, max_batch_tokens=16384, limit_bytes=None, adapter=None):
    """data: bytes. Returns a dict like `roost eval`'s output."""
    if limit_bytes is not None:
        data = data[:limit_bytes]
    tokens = torch.tensor(list(data), dtype=torch.long)
    T = len(tokens)
    N = model.cfg.num_latents if isinstance(model, perceiver_ar.PerceiverAR) else None
    wins = windows(T, context, N)
    npos = model.cfg.n_positions
    if npos is not None and context is not None and context > npos:
        model.cfg.n_positions = None  # evaluate past the config's cap (reported as such)
    try:
        lps = torch.full((T,), float("nan"), dtype=torch.float64)
        # batch windows of equal length
        groups = {}
        for w in wins:
            groups.setdefault(w[1] - w[0], []).append(w)
        for L, ws in groups.items():
            per = max(1, max_batch_tokens // L)
            for i in range(0, len(ws), per):
                chunk = ws[i:i + per]
                rows = torch.stack([tokens[a:b] for a, b, _ in chunk])
                lp = window_logprobs(model, rows, adapter)
                for (a, b, f), r in zip(chunk, lp):
                    lps[f:b] = r[f - a:]
    finally:
        model.cfg.n_positions = npos
    scored = lps[1:]
    if torch.isnan(scored).any():
        raise RuntimeError(f"{int(torch.isnan(scored).sum())} tokens were not scored")
    nll = -float(scored.sum())
    return {
        "bits_per_byte": nll / math.log(2) / len(data),
        "perplexity": math.exp(nll / (T - 1)),
        "tokens": T,
        "scored_tokens": T - 1,
        "bytes": len(data),
        "nll": nll,
        "window": context if context is not None else T,
        "stride": (wins[1][1] - wins[1][2]) if len(wins) > 1 else 0,
        "windows": len(wins),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--context", default="model",
                    help="window W in tokens; 'model' (default) = what roost eval uses (n_positions, "
                         "else 1024); 'full' = the whole file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import models
    model = models.load(args.model)
    with open(args.file, "rb") as f:
        data = f.read()
    if args.context == "model":
        ctx = model_context(model)
    elif args.context == "full":
        ctx = None
    else:
        ctx = int(args.context)
    t0 = time.time()
    r = evaluate(model, data, ctx, args.max_batch_tokens)
    r["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
