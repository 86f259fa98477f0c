"""Greedy, sampled and fill-in-the-middle completions from the reference
modules (what the model cards show).

Greedy follows the reference's serving procedure (prefill + cached decode;
for perceiver_ar the sliding decode of the spec), cut at eos. Sampling:
temperature 0.8, top-k 40, torch.Generator seeded (the engine's sampler uses
its own generator, so sampled texts differ from `roost generate`'s). FIM: the
PSM prompt `<fim_prefix> prefix <fim_suffix> suffix <fim_middle>`, greedy
until eos.
"""
import math
import torch

import data

PROMPTS = ["And God said", "In the beginning", "Ge1:3 And God said", "Blessed are the"]
FIM_CASES = [
    ("And God said, Let there be light: and there ", ".\n"),
    ("The LORD is my shepherd; I shall not ", ".\n"),
    ("Ge1:1 In the beginning God created the ", " and the earth.\nGe1:2 And the earth was without form, and void\n"),
    ("Ge1:3 And God said, Let there be light: and there was light.\nGe1:4 And God saw the light, that it was ",
     ": and God divided the light from the darkness.\n"),
]


def text(ids):
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def cut_eos(ids):
    return ids[:ids.index(data.EOS)] if data.EOS in ids else ids


@torch.no_grad()
def greedy(model, prompt_ids, n):
    return cut_eos(model.greedy(list(prompt_ids), n))


@torch.no_grad()
def sample(model, prompt_ids, n, seed, temperature=0.8, top_k=40):
    """Plain sampling with the exact forward at every step (no cache)."""
    g = torch.Generator().manual_seed(seed)
    ids = list(prompt_ids)
    out = []
    npos = model.cfg.n_positions
    for _ in range(n):
        if npos is not None and len(ids) >= npos:
            break
        logits = model.forward(ids)[-1] / temperature
        v, ix = torch.topk(logits, top_k)
        p = torch.softmax(v, dim=-1)
        nxt = int(ix[torch.multinomial(p, 1, generator=g)])
        if nxt == data.EOS:
            break
        out.append(nxt)
        ids.append(nxt)
    return out


def fim(model, prefix, suffix, n=64):
    prompt = data.psm_prompt(list(prefix.encode()), list(suffix.encode()))
    mid = model.greedy(prompt, n)
    ended = data.EOS in mid
    return {"prefix": prefix, "suffix": suffix, "middle": text(cut_eos(mid)), "ended_with_eos": ended}


@torch.no_grad()
def fim_diagnostic(model, held, n=64, seed=99):
    """Does the model use the suffix? n documents of 100-200 bytes from the held-out text, each cut at two
    uniform random points (as in training); bits per byte of the middle (and its eos) given
    `<fim_prefix> prefix <fim_suffix> suffix <fim_middle>` versus the same middle bytes given only the
    prefix (plain left-to-right). FIM < L2R means the suffix helps."""
    import numpy as np
    rng = np.random.default_rng(seed)
    fim_bits = l2r_bits = eos_bits = 0.0
    nbytes = 0
    for _ in range(n):
        L = int(rng.integers(100, 201))
        s = int(rng.integers(0, len(held) - L))
        doc = list(held[s:s + L])
        i, j = sorted(rng.integers(0, L + 1, size=2))
        if j == i:
            j = min(L, i + 1)
        pre, mid = doc[:i], doc[i:j]
        row = data.psm(doc, i, j)
        lp = model.score(row)
        k = len(row) - len(mid) - 1
        fim_bits -= sum(lp[k:-1]) / math.log(2)
        eos_bits -= lp[-1] / math.log(2)
        plain = model.score(pre + mid) if pre else model.score([ord("\n")] + mid)
        l2r_bits -= sum(plain[-len(mid):]) / math.log(2)
        nbytes += len(mid)
    return {"documents": n, "middle_bytes": nbytes, "fim_bits_per_middle_byte": fim_bits / nbytes,
            "l2r_bits_per_middle_byte": l2r_bits / nbytes, "eos_bits_per_document": eos_bits / n}


@torch.no_grad()
def fim_first_byte(model, held, n=150, seed=5):
    """Does the model find the end of the prefix across the suffix? n held-out documents of 30-60
    bytes with a middle of 4-11 bytes: bits of the first middle byte given the PSM prompt, given the
    prefix in front (plain left to right, the best it could do from the prefix) and given no context
    at all (`<fim_prefix> <fim_suffix> <fim_middle>`). PSM near "no context" means it does not."""
    import numpy as np
    rng = np.random.default_rng(seed)
    bits = {"psm": 0.0, "prefix_in_front": 0.0, "no_context": 0.0}
    for _ in range(n):
        L = int(rng.integers(30, 61))
        s = int(rng.integers(0, len(held) - L))
        doc = list(held[s:s + L])
        i = int(rng.integers(5, L - 15))
        j = i + int(rng.integers(4, 12))
        pre, mid, suf = doc[:i], doc[i:j], doc[j:]
        rows = {"psm": data.psm_prompt(pre, suf) + mid[:1],
                "prefix_in_front": [ord("\n")] + pre + mid[:1],
                "no_context": [data.FIM_PREFIX, data.FIM_SUFFIX, data.FIM_MIDDLE] + mid[:1]}
        for k, r in rows.items():
            bits[k] -= model.score(r)[-1] / math.log(2)
    return {"documents": n, **{f"{k}_bits": v / n for k, v in bits.items()}}


@torch.no_grad()
def fim_words(model, held, n=100, seed=7, context=120, max_tokens=24):
    """Word infilling on held-out verses: remove one word (with its leading space) from a random
    position, give up to `context` bytes on each side as prefix and suffix, generate greedily (at most
    max_tokens). Reports how often the middle ends with eos, how often it is exactly the removed word,
    and how often prefix + middle + suffix is a text whose words are all words of the held-out file."""
    import re
    import numpy as np
    rng = np.random.default_rng(seed)
    text_ = held.decode()
    vocab = set(re.findall(r"[A-Za-z]+", text_))
    spans = [m.span() for m in re.finditer(r" [A-Za-z]+", text_)]
    ended = exact = known = 0
    examples = []
    for _ in range(n):
        a, b = spans[int(rng.integers(0, len(spans)))]
        pre, word, suf = text_[max(0, a - context):a], text_[a:b], text_[b:b + context]
        out = fim(model, pre, suf, max_tokens)
        ended += out["ended_with_eos"]
        exact += out["middle"] == word
        joined = pre[-30:] + out["middle"] + suf[:30]
        ok = out["ended_with_eos"] and all(w in vocab for w in re.findall(r"[A-Za-z]+", out["middle"]))
        known += ok
        if len(examples) < 8:
            examples.append({"prefix_tail": pre[-40:], "removed": word, "middle": out["middle"], "suffix_head": suf[:30],
                             "ended_with_eos": out["ended_with_eos"], "joined": joined})
    return {"cases": n, "ended_with_eos": ended / n, "exact_word": exact / n, "ended_with_known_words": known / n,
            "examples": examples}


def all_samples(model, n=120):
    out = {"greedy": [], "sampled": [], "fim": []}
    for p in PROMPTS:
        out["greedy"].append({"prompt": p, "max_tokens": n, "completion": text(greedy(model, p.encode(), n))})
    for seed in (1, 2, 3):
        p = PROMPTS[0]
        out["sampled"].append({"prompt": p, "max_tokens": n, "seed": seed, "temperature": 0.8, "top_k": 40,
                               "completion": text(sample(model, p.encode(), n, seed))})
    for pre, suf in FIM_CASES:
        out["fim"].append(fim(model, pre, suf))
    return out


if __name__ == "__main__":
    # refresh the samples and the FIM diagnostic of a trained model: samples.py models/NAME
    import json
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
    import models
    torch.set_num_threads(1)
    d = sys.argv[1]
    m = models.load(d)
    rp = os.path.join(d, "results.json")
    r = json.load(open(rp))
    r["samples"] = all_samples(m)
    r["fim_diagnostic"] = fim_diagnostic(m, data.split()[1])
    r["fim_words"] = fim_words(m, data.split()[1])
    with open(rp, "w") as f:
        json.dump(r, f, indent=2)
        f.write("\n")
    print(json.dumps(r["samples"]["fim"], indent=1))
    print(json.dumps(r["fim_diagnostic"]))
    print(json.dumps({k: v for k, v in r["fim_words"].items() if k != "examples"}))
