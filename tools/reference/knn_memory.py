"""kNN memory at decode time (TRIME / kNN-LM), the reference of cpp/knn_memory.h.

At every position t the model's next-token distribution becomes

    p = (1 - lambda) * softmax(logits_t) + lambda * p_mem,
    p_mem(v) = sum over neighbours n with value_n = v of softmax_n(-d_n / temperature),

with d_n = ||q_t - key_n||^2, q_t the final layer norm's output at t (the head's
input). The neighbours: the k nearest keys of the store (external memory; keys
stored as float16, values = the token after each key's position) and, with
local, the k nearest of the sequence's own positions s < t (value token s+1),
all in one softmax. Ties in distance go to the smaller index.

Run as a script it writes test/fixtures/knn-memory.json from the gpt2-tiny
fixture (tests: test/native/test_knn_memory.cpp):

    /usr/bin/python3 tools/reference/knn_memory.py
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import gpt2  # noqa: E402


@torch.no_grad()
def logits_and_hidden(model, tokens):
    """[T, V] float32 logits and [T, C] float32 ln_f outputs of one sequence."""
    seen = {}
    hook = model.ln_f.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o))
    try:
        logits = model.forward(tokens)
    finally:
        hook.remove()
    return logits.double().numpy(), seen["h"][0].double().numpy()


def nearest(q, keys, k):
    """(distances, indices) of the k nearest rows of keys to q, nearest first, ties by index."""
    if len(keys) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    d = ((keys - q[None]) ** 2).sum(axis=1)
    order = np.lexsort((np.arange(len(d)), d))[:k]
    return d[order], order


def interpolate(logits, dists, values, lam, temperature):
    """log p of the interpolation over the neighbours (dists, values); none: log_softmax(logits)."""
    lse = logits.max() + np.log(np.exp(logits - logits.max()).sum())
    p_lm = np.exp(logits - lse)
    if len(dists) == 0:
        return np.log(p_lm)
    w = np.exp(-(dists - dists.min()) / temperature)
    p_mem = np.zeros_like(p_lm)
    np.add.at(p_mem, values, w / w.sum())
    with np.errstate(divide="ignore"):
        return np.log((1 - lam) * p_lm + lam * p_mem)


def memory_logprobs(model, tokens, store_keys, store_values, k, lam, temperature, local):
    """[None, log p(t_1), ...] of tokens under the memory (store_keys None: no external memory)."""
    logits, hidden = logits_and_hidden(model, tokens)
    out = [None]
    for t in range(len(tokens) - 1):
        d, vals = np.zeros(0), np.zeros(0, dtype=np.int64)
        if store_keys is not None:
            d, idx = nearest(hidden[t], store_keys, k)
            vals = store_values[idx]
        if local:
            # Local memory holds float32 keys (the engine's own rows).
            dl, il = nearest(hidden[t].astype(np.float32).astype(np.float64), hidden[:t].astype(np.float32).astype(np.float64), k)
            d, vals = np.concatenate([d, dl]), np.concatenate([vals, np.asarray(tokens)[1:][il]])
        out.append(float(interpolate(logits[t], d, vals, lam, temperature)[tokens[t + 1]]))
    return out


def main():
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    model = gpt2.load(os.path.join(root, "test/fixtures/gpt2-tiny"))
    torch.set_num_threads(1)
    rng = np.random.default_rng(20)
    V = model.cfg.vocab_size
    # A corpus with repeats (memory has something to find) and a query that
    # re-reads parts of it with changes, and repeats itself (local memory).
    phrase = rng.integers(0, V, 24)
    corpus = np.concatenate([phrase, rng.integers(0, V, 40), phrase, rng.integers(0, V, 30)]).tolist()
    part = rng.integers(0, V, 12)
    query = np.concatenate([rng.integers(0, V, 8), phrase[:16], part, rng.integers(0, V, 6), part, phrase[4:20]]).tolist()
    _, h = logits_and_hidden(model, corpus)
    keys = h[:-1].astype(np.float32).astype(np.float16).astype(np.float64)  # stored as F16
    values = np.asarray(corpus[1:])
    cases = []
    for ext, k, lam, temp, local in [(True, 4, 0.3, 2.0, False), (True, 3, 0.5, 0.5, True), (False, 8, 0.25, 1.0, True),
                                     (True, 1000, 0.9, 10.0, False), (True, 16, 0.0, 1.0, False)]:
        lp = memory_logprobs(model, query, keys if ext else None, values, k, lam, temp, local)
        cases.append({"external": ext, "k": k, "lambda": lam, "temperature": temp, "local": local, "logprobs": lp})
    plain = model.score(query)
    out = {
        "model": "test/fixtures/gpt2-tiny",
        "corpus": corpus,
        "query": query,
        "hidden_corpus": h.astype(np.float32).tolist(),
        "plain_logprobs": plain,
        "cases": cases,
    }
    path = os.path.join(root, "test/fixtures/knn-memory.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {path}: corpus {len(corpus)} tokens, query {len(query)}, {len(cases)} cases")
    for c in cases:
        gain = sum(plain[1:]) - sum(c["logprobs"][1:])
        print(f"  external={c['external']} k={c['k']} lambda={c['lambda']} T={c['temperature']} local={c['local']}: nll change {-gain:+.3f} nats")


if __name__ == "__main__":
    main()
