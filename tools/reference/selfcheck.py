#!/usr/bin/python3
"""Self-consistency checks of the reference and of test/fixtures/.

    /usr/bin/python3 tools/reference/selfcheck.py [--fixtures test/fixtures]

- every fixture loads through safetensors_io/checkpoint and reproduces its golden.json;
- the torch model agrees with an independent, loop-by-loop float64 numpy reading of
  the spec (naive_logits below) to 1e-4 in log-prob;
- sharded == unsharded, F16/BF16 round trips, safetensors header alignment;
- rotary: rotary_dim absent == rotary_dim D != rotary_dim < D; relative-position
  invariance of a rotary model (no wpe); context cap refusal;
- causal mask: changing a later token leaves earlier logits bit-identical;
- KV-cache chunked forward == full forward; greedy with/without cache;
- tokenizer: vocab.json+merges.txt == tokenizer.json encodings, round trips, and
  (when node + @huggingface/tokenizers are found) the same ids as tokenizers.js.
Prints one line per check and "N passed, M failed".
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bigbird  # noqa: E402
import bpe  # noqa: E402
import checkpoint  # noqa: E402
import gpt2  # noqa: E402
import models  # noqa: E402
import safetensors_io  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail else ''}", flush=True)


# ------------------------------------------------- independent float64 reading

def naive_logits(config, tensors, tokens, offset=0, allowed=None):
    """The spec's gpt2 math, written independently of gpt2.py, in float64 numpy.
    allowed(l, h, p, k): optional attention pattern (default dense causal)."""
    T = {k: v.double().numpy() for k, v in tensors.items()}
    C, H, L = config["n_embd"], config["n_head"], config["n_layer"]
    D = C // H
    eps = config.get("layer_norm_epsilon", 1e-5)
    rotary = config.get("position_embedding", "learned") == "rotary"
    rd = config.get("rotary_dim") or D
    base = config.get("rotary_base", 10000.0)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * T[p + ".weight"] + T[p + ".bias"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    def rot(vec, pos):
        out = vec.copy()
        for i in range(rd // 2):
            a = pos * base ** (-2.0 * i / rd)
            x1, x2 = vec[i], vec[i + rd // 2]
            out[i] = x1 * math.cos(a) - x2 * math.sin(a)
            out[i + rd // 2] = x2 * math.cos(a) + x1 * math.sin(a)
        return out

    n = len(tokens)
    x = np.stack([T["wte.weight"][t] for t in tokens])
    if not rotary:
        x = x + np.stack([T["wpe.weight"][offset + p] for p in range(n)])
    for l in range(L):
        pre = f"h.{l}."
        h = ln(x, pre + "ln_1")
        qkv = h @ T[pre + "attn.c_attn.weight"] + T[pre + "attn.c_attn.bias"]
        att = np.zeros((n, C))
        for hd in range(H):
            q = qkv[:, hd * D:(hd + 1) * D]
            k = qkv[:, C + hd * D:C + (hd + 1) * D]
            v = qkv[:, 2 * C + hd * D:2 * C + (hd + 1) * D]
            if rotary:
                q = np.stack([rot(q[p], offset + p) for p in range(n)])
                k = np.stack([rot(k[p], offset + p) for p in range(n)])
            for p in range(n):
                keys = [j for j in range(p + 1) if allowed is None or allowed(l, hd, p, j)]
                s = np.array([q[p] @ k[j] / math.sqrt(D) for j in keys])
                w = np.exp(s - s.max())
                w /= w.sum()
                att[p, hd * D:(hd + 1) * D] = w @ v[keys]
        x = x + att @ T[pre + "attn.c_proj.weight"] + T[pre + "attn.c_proj.bias"]
        h = ln(x, pre + "ln_2")
        m = gelu(h @ T[pre + "mlp.c_fc.weight"] + T[pre + "mlp.c_fc.bias"])
        x = x + m @ T[pre + "mlp.c_proj.weight"] + T[pre + "mlp.c_proj.bias"]
    x = ln(x, "ln_f")
    head = T["lm_head.weight"] if "lm_head.weight" in T else T["wte.weight"]
    return x @ head.T


def logsoftmax64(logits):
    lg = np.asarray(logits, dtype=np.float64)
    m = lg.max(-1, keepdims=True)
    return lg - m - np.log(np.exp(lg - m).sum(-1, keepdims=True))


def max_lp_diff(a, b):
    return float(np.abs(logsoftmax64(a) - logsoftmax64(b)).max())


# ------------------------------------------------------------------ checks

def fixture_dirs(fx):
    return sorted(d for d in os.listdir(fx) if os.path.exists(os.path.join(fx, d, "golden.json"))
                  and os.path.exists(os.path.join(fx, d, "config.json")))


def check_fixture(fx, name):
    path = os.path.join(fx, name)
    cfg = checkpoint.read_config(path)
    raw = checkpoint.read_tensors(path)
    for f in os.listdir(path):
        if f.endswith(".safetensors"):
            _, _, start = safetensors_io.read_header(os.path.join(path, f))
            check(f"{name}/{f}: header padded to 8 bytes", start % 8 == 0)
    model = gpt2.load(path)
    tensors = checkpoint.normalize_names(raw)
    tok = bpe.load_tokenizer(path, cfg)
    g = json.load(open(os.path.join(path, "golden.json"), encoding="utf-8"))
    worst = 0.0
    for c in g["cases"]:
        lp = model.score(c["tokens"])
        assert lp[0] is None and c["logprobs"][0] is None
        d = max([abs(a - b) for a, b in zip(lp[1:], c["logprobs"][1:])] or [0.0])
        worst = max(worst, d)
        top = model.top_k_last(c["tokens"], 5)
        check(f"{name}: case {c['name']} top5 ids", [t[0] for t in top] == [t[0] for t in c["top5"]])
    check(f"{name}: golden log-probs reproduce", worst < 1e-6, f"max diff {worst:.2e}")
    for gr in g["greedy"]:
        ids = tok.encode(gr["prompt"])
        check(f"{name}: greedy prompt encodes to prompt_tokens", ids == gr["prompt_tokens"])
        out = model.greedy(ids, gr["max_tokens"])
        check(f"{name}: greedy reproduces", out == gr["tokens"])
        check(f"{name}: greedy no-cache == cache", model.greedy(ids, gr["max_tokens"], use_cache=False) == out)
        check(f"{name}: greedy text", tok.decode(out) == gr["text"])
    for tc in g.get("tokenizer", []):
        ok = tok.encode(tc["text"]) == tc["ids"] and tok.decode(tc["ids"]) == tc["text"]
        if not ok:
            check(f"{name}: tokenizer golden {tc['text']!r}", False)
    # independent float64 implementation on two cases (the longest one capped at 130 tokens for time)
    for c in g["cases"][1:3] + [max(g["cases"], key=lambda c: len(c["tokens"]))]:
        toks = c["tokens"][:130]
        ref = model.forward(toks).double().numpy()
        nv = naive_logits(cfg, tensors, toks)
        d = max_lp_diff(ref, nv)
        check(f"{name}: torch float32 vs naive float64 ({len(toks)} tokens)", d < 1e-4, f"max lp diff {d:.2e}")
    # causal mask: change the last token, earlier logits identical
    toks = g["cases"][2]["tokens"]
    a = model.forward(toks)
    b = model.forward(toks[:-1] + [(toks[-1] + 1) % cfg["vocab_size"]])
    check(f"{name}: causal (later token does not change earlier logits)", torch.equal(a[:-1], b[:-1]))
    # KV cache: chunked == full
    full = model.forward(toks)
    l1, past = model.forward_with_past(toks[:10])
    l2, past = model.forward_with_past(toks[10:11], past)
    l3, _ = model.forward_with_past(toks[11:], past)
    d = float((torch.cat([l1, l2, l3]) - full).abs().max())
    check(f"{name}: KV-cache chunks == full forward", d < 1e-4, f"max logit diff {d:.2e}")
    # context cap
    if model.cfg.n_positions is not None:
        try:
            model.forward([0] * (model.cfg.n_positions + 1))
            check(f"{name}: refuses n_positions+1 tokens", False)
        except ValueError:
            check(f"{name}: refuses n_positions+1 tokens", True)
    return model, tensors, cfg


def check_safetensors():
    with tempfile.TemporaryDirectory() as td:
        g = torch.Generator().manual_seed(0)
        src = {"a": torch.randn(3, 5, generator=g), "b.h": torch.randn(7, generator=g).half(),
               "c": torch.randn(2, 2, 2, generator=g).bfloat16(), "scalar": torch.tensor(-1e4),
               "empty": torch.zeros(0, 4), "i": torch.arange(5, dtype=torch.int64)}
        p = os.path.join(td, "x.safetensors")
        safetensors_io.save(p, src, {"format": "pt"})
        back, meta = safetensors_io.load(p, with_metadata=True)
        ok = all(back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v)
                 for k, v in src.items())
        check("safetensors round trip F32/F16/BF16/I64, scalar and empty shapes", ok and meta == {"format": "pt"})
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            h = f.read(n)
        check("safetensors header length multiple of 8, space padded", n % 8 == 0 and h.rstrip(b" ") == h.strip())


def check_sharded(fx):
    path = os.path.join(fx, "gpt2-sharded")
    if not os.path.isdir(path):
        return
    idx = json.load(open(os.path.join(path, "model.safetensors.index.json")))
    check("gpt2-sharded: 2 shards", len(set(idx["weight_map"].values())) == 2)
    tensors = checkpoint.read_tensors(path)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    check("gpt2-sharded: index total_size", idx["metadata"]["total_size"] == total)
    with tempfile.TemporaryDirectory() as td:
        with open(os.path.join(td, "config.json"), "w") as f:
            json.dump(checkpoint.read_config(path), f)
        safetensors_io.save(os.path.join(td, "model.safetensors"), tensors)
        a, b = gpt2.load(path), gpt2.load(td)
        toks = list(range(0, 500, 9))
        check("sharded == unsharded logits", torch.equal(a.forward(toks), b.forward(toks)))


def check_dtypes(fx):
    p16, pb16 = os.path.join(fx, "gpt2-f16"), os.path.join(fx, "gpt2-bf16")
    if not (os.path.isdir(p16) and os.path.isdir(pb16)):
        return
    a, b = checkpoint.read_tensors(p16), checkpoint.read_tensors(pb16)
    check("gpt2-f16 stores F16", all(t.dtype == torch.float16 for t in a.values()))
    check("gpt2-bf16 stores BF16", all(t.dtype == torch.bfloat16 for t in b.values()))
    # both are roundings of one float32 model: bf16 == round_bf16(f16 value) up to one bf16 ulp
    worst = max(float(((a[k].float() - b[k].float()).abs() / (a[k].float().abs() + 1e-3)).max()) for k in a)
    check("gpt2-f16 and gpt2-bf16 are roundings of the same weights", worst < 2 ** -7, f"max rel {worst:.2e}")


def check_rotary(fx):
    path = os.path.join(fx, "gpt2-rotary")
    if not os.path.isdir(path):
        return
    cfg = checkpoint.read_config(path)
    tensors = checkpoint.normalize_names(checkpoint.read_tensors(path))
    D = cfg["n_embd"] // cfg["n_head"]
    toks = list(range(3, 500, 17))
    c_abs = {k: v for k, v in cfg.items() if k != "rotary_dim"}
    m_abs = gpt2.from_tensors(c_abs, tensors)
    m_d = gpt2.from_tensors(dict(cfg, rotary_dim=D), tensors)
    m_8 = gpt2.from_tensors(cfg, tensors)
    la, ld, l8 = m_abs.forward(toks), m_d.forward(toks), m_8.forward(toks)
    check("rotary: rotary_dim absent == rotary_dim D", torch.equal(la, ld))
    check("rotary: rotary_dim D != rotary_dim 8", float((ld - l8).abs().max()) > 1e-2)
    d = max_lp_diff(ld.double().numpy(), naive_logits(dict(cfg, rotary_dim=D), tensors, toks))
    check("rotary_dim D: torch vs naive", d < 1e-4, f"{d:.2e}")
    d = max_lp_diff(m_d.forward(toks[:1]).double().numpy(), m_8.forward(toks[:1]).double().numpy())
    check("rotary: position 0 is unrotated (rotary_dim irrelevant for 1 token)", d < 1e-6, f"{d:.2e}")
    # relative positions: a rotary model without wpe gives the same logits at any offset
    a = naive_logits(cfg, tensors, toks[:12], offset=0)
    b = naive_logits(cfg, tensors, toks[:12], offset=1000)
    d = max_lp_diff(a, b)
    check("rotary: logits invariant to a position offset (naive, float64)", d < 1e-9, f"{d:.2e}")
    # and the torch model agrees with the naive one far from 0 (angles in float64)
    m = m_8
    cos, sin = m.rotary.cos_sin(torch.tensor([65535]))
    a = 65535 * 10000.0 ** (-2.0 * 1 / 8)
    check("rotary: angle computed in float64 (position 65535)",
          abs(float(cos[0, 1]) - math.cos(a)) < 1e-7, f"{float(cos[0, 1])} vs {math.cos(a)}")


def find_tokenizers_js():
    for base in (os.path.join(REPO, "node_modules"), "/tmp/tk/node_modules"):
        if os.path.exists(os.path.join(base, "@huggingface", "tokenizers", "package.json")):
            return base
    return None


def check_tokenizer(fx):
    bdir = os.path.join(fx, "bpe")
    if not os.path.isdir(bdir):
        return
    a = bpe.ByteLevelBPE.from_files(os.path.join(bdir, "vocab.json"), os.path.join(bdir, "merges.txt"))
    b = bpe.ByteLevelBPE.from_tokenizer_json(os.path.join(bdir, "tokenizer.json"))
    g = json.load(open(os.path.join(bdir, "golden.json"), encoding="utf-8"))
    check("bpe: <|endoftext|> is the last id", a.vocab[bpe.EOT] == len(a.vocab) - 1 == g["eos_token_id"])
    with open(os.path.join(bdir, "merges.txt"), encoding="utf-8") as f:
        check("bpe: merges.txt starts with #version: 0.2", f.readline() == "#version: 0.2\n")
    rng = random.Random(5)
    alpha = list("abcXYZ '\"sStTdmlrve.,!?-_()0123456789") + [" "] * 6 + \
        ["\n", "\t", "\r", "\u00a0", "\u3000", "é", "ß", "東", "🙂", "👍🏽", "\u0301", "½", "Ⅻ", "'s", "'ll", "'re",
         " the", "<|endoftext|>"]
    texts = [c["text"] for c in g["cases"]] + ["".join(rng.choice(alpha) for _ in range(rng.randint(1, 30)))
                                               for _ in range(500)]
    same = all(a.encode(t) == b.encode(t) for t in texts)
    check("bpe: vocab.json+merges.txt and tokenizer.json encode alike", same)
    check("bpe: decode(encode(x)) == x", all(a.decode(a.encode(t)) == t for t in texts))
    check("bpe: goldens reproduce", all(a.encode(c["text"]) == c["ids"] for c in g["cases"]))
    nm = find_tokenizers_js()
    if nm is None:
        print("skip tokenizers.js comparison (no node_modules/@huggingface/tokenizers)")
        return
    script = (
        "const { Tokenizer } = require('@huggingface/tokenizers');"
        "const fs = require('fs');"
        "const tok = new Tokenizer(JSON.parse(fs.readFileSync(process.argv[1], 'utf8')), {});"
        "const texts = JSON.parse(fs.readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(texts.map(t => { const ids = tok.encode(t, {add_special_tokens: false}).ids;"
        " return [ids, ids.length ? tok.decode(ids, {clean_up_tokenization_spaces: false}) : '']; })));")
    try:
        r = subprocess.run(["node", "-e", script, os.path.join(bdir, "tokenizer.json")], input=json.dumps(texts),
                           capture_output=True, text=True, env=dict(os.environ, NODE_PATH=nm), timeout=120)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip()[-1500:] or f"rc {r.returncode}")
        js = json.loads(r.stdout)
    except Exception as e:  # noqa: BLE001
        print(f"skip tokenizers.js comparison ({e})")
        return
    bad = [t for t, (ids, _) in zip(texts, js) if ids != a.encode(t)]
    check("bpe: same ids as @huggingface/tokenizers (tokenizer.json)", not bad, f"{len(bad)} differ, e.g. {bad[:2]!r}")
    check("bpe: tokenizers.js decode (clean_up off) is exact", all(d == t for t, (_, d) in zip(texts, js)))


# ------------------------------------- long-context mechanisms (independent readings)
#
# Float64 numpy, loop by loop, written from docs/spec.md without using
# bigbird.py / perceiver_ar.py / block_recurrent.py (only the scalar bigbird rule is
# shared, and it is itself checked against the spec's test vectors).

LONG_PREFIXES = ("bigbird-", "perceiver-", "recurrent-")
M64 = (1 << 64) - 1


def sm64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def naive_bigbird_allowed(att):
    """(l, h, p, k) -> may the query at p attend the key at k (k <= p)?"""
    b, w, g, r, s = (att[f] for f in ("block_size", "window_blocks", "global_blocks", "random_blocks", "seed"))
    memo = {}

    def key(l, h, i, j):
        x = s
        for v in (l, h, i, j):
            x = sm64(x ^ v)
        return x

    def member(l, h, i, j):
        if (l, h, i, j) in memo:
            return memo[(l, h, i, j)]
        if i - w + 1 <= j <= i or j < g:
            ok = True
        elif g <= j <= i - w:
            cands = range(g, i - w + 1)
            kj = (key(l, h, i, j), j)
            ok = len(cands) <= r or sum((key(l, h, i, c), c) < kj for c in cands) < r
        else:
            ok = False
        memo[(l, h, i, j)] = ok
        return ok

    return lambda l, h, p, k: k <= p and member(l, h, p // b, k // b)


def np_tensors(tensors):
    return {k: v.double().numpy() for k, v in tensors.items()}


class Naive:
    """Shared float64 pieces: LN, gelu_new, rotary pair rotation, one attention."""

    def __init__(self, config, tensors):
        self.T = np_tensors(tensors)
        self.C, self.H = config["n_embd"], config["n_head"]
        self.D = self.C // self.H
        self.eps = config.get("layer_norm_epsilon", 1e-5)
        self.rd = config.get("rotary_dim") or self.D
        self.base = config.get("rotary_base", 10000.0)
        self.head = self.T["lm_head.weight"] if "lm_head.weight" in self.T else self.T["wte.weight"]

    def ln(self, x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.T[p + ".weight"] + self.T[p + ".bias"]

    def lin(self, x, p):
        return x @ self.T[p + ".weight"] + self.T[p + ".bias"]

    def mlp(self, x, pre):
        h = self.lin(self.ln(x, pre + "ln_2"), pre + "mlp.c_fc")
        h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
        return x + self.lin(h, pre + "mlp.c_proj")

    def rot(self, vec, pos):
        """vec: one head's D channels at absolute position pos."""
        out = vec.copy()
        half = self.rd // 2
        for i in range(half):
            a = pos * self.base ** (-2.0 * i / self.rd)
            out[i] = vec[i] * math.cos(a) - vec[i + half] * math.sin(a)
            out[i + half] = vec[i + half] * math.cos(a) + vec[i] * math.sin(a)
        return out

    def hd(self, vec, h):
        return vec[h * self.D:(h + 1) * self.D]

    def attend(self, q, ks, vs):
        """q [D]; ks, vs lists of [D] -> softmax(q k / sqrt(D)) v."""
        s = np.array([q @ k / math.sqrt(self.D) for k in ks])
        w = np.exp(s - s.max())
        w /= w.sum()
        return w @ np.stack(vs)

    def logits(self, x):
        return self.ln(x, "ln_f") @ self.head.T


class NaivePerceiver(Naive):
    """perceiver_ar: exact forward, and the sliding cached decode, in float64."""

    def __init__(self, config, tensors):
        super().__init__(config, tensors)
        self.N = config["num_latents"]
        self.L = config["n_layer"]

    def layer0(self, x_p, p):
        """Layer-0 query side for position p, over self.kv0 (positions <= p)."""
        C = self.C
        q = self.lin(self.ln(x_p, "h.0.ln_q"), "h.0.attn.q_attn")
        att = np.zeros(C)
        keys = [j for j in sorted(self.kv0) if j <= p]
        for h in range(self.H):
            qh = self.rot(self.hd(q, h), p)
            att[h * self.D:(h + 1) * self.D] = self.attend(qh, [self.kv0[j][0][h] for j in keys],
                                                           [self.kv0[j][1][h] for j in keys])
        z = x_p + self.lin(att, "h.0.attn.c_proj")
        return self.mlp(z, "h.0.")

    def add_kv0(self, x_p, p):
        kv = self.lin(self.ln(x_p, "h.0.ln_kv"), "h.0.attn.kv_attn")
        self.kv0[p] = ([self.rot(self.hd(kv[:self.C], h), p) for h in range(self.H)],
                       [self.hd(kv[self.C:], h) for h in range(self.H)])

    def upper(self, z, p, l, window):
        """Layer l >= 1 at latent p: store its K/V, attend over stored latents in window."""
        pre = f"h.{l}."
        C = self.C
        qkv = self.lin(self.ln(z, pre + "ln_1"), pre + "attn.c_attn")
        self.kv[l][p] = ([self.rot(self.hd(qkv[C:2 * C], h), p) for h in range(self.H)],
                         [self.hd(qkv[2 * C:], h) for h in range(self.H)])
        keys = [j for j in sorted(self.kv[l]) if j in window and j <= p]
        att = np.zeros(C)
        for h in range(self.H):
            qh = self.rot(self.hd(qkv[:C], h), p)
            att[h * self.D:(h + 1) * self.D] = self.attend(qh, [self.kv[l][j][0][h] for j in keys],
                                                           [self.kv[l][j][1][h] for j in keys])
        z = z + self.lin(att, pre + "attn.c_proj")
        return self.mlp(z, pre)

    def prefill(self, tokens):
        """Exact forward: logits of the latents [N', V]; leaves the caches filled."""
        T = len(tokens)
        self.kv0 = {}
        self.kv = {l: {} for l in range(1, self.L)}
        xs = [self.T["wte.weight"][t] for t in tokens]
        for p in range(T):
            self.add_kv0(xs[p], p)
        lat = range(T - min(self.N, T), T)
        out = []
        for p in lat:  # latents in order: each sees the latents before it
            z = self.layer0(xs[p], p)
            for l in range(1, self.L):
                z = self.upper(z, p, l, lat)
            out.append(self.logits(z))
        return np.stack(out)

    def step(self, tok):
        P = max(self.kv0) + 1
        x = self.T["wte.weight"][tok]
        self.add_kv0(x, P)
        z = self.layer0(x, P)
        for l in range(1, self.L):
            z = self.upper(z, P, l, range(P - self.N + 1, P + 1))
        return self.logits(z)


class NaiveRecurrent(Naive):
    """block_recurrent, one token at a time (the decode procedure), in float64."""

    def __init__(self, config, tensors):
        super().__init__(config, tensors)
        self.W = config["block_size"]
        self.rec = set(config["recurrent_layers"])
        self.L = config["n_layer"]

    def run(self, tokens):
        C, H, D, W = self.C, self.H, self.D, self.W
        state = {l: self.T[f"h.{l}.state_init"].copy() for l in self.rec}
        kc = {l: {} for l in range(self.L)}
        out = []
        for p, tok in enumerate(tokens):
            x = self.T["wte.weight"][tok].copy()
            for l in range(self.L):
                pre = f"h.{l}."
                h = self.ln(x, pre + "ln_1")
                qkv = self.lin(h, pre + "attn.c_attn")
                kc[l][p] = ([self.rot(self.hd(qkv[C:2 * C], hh), p) for hh in range(H)],
                            [self.hd(qkv[2 * C:], hh) for hh in range(H)])
                keys = [j for j in sorted(kc[l]) if j <= p and j // W >= p // W - 1]
                a_self = np.zeros(C)
                for hh in range(H):
                    q = self.rot(self.hd(qkv[:C], hh), p)
                    a_self[hh * D:(hh + 1) * D] = self.attend(q, [kc[l][j][0][hh] for j in keys],
                                                              [kc[l][j][1][hh] for j in keys])
                if l in self.rec:
                    u = self.ln(state[l], pre + "ln_s")
                    kvs = self.lin(u, pre + "attn.kv_state")  # [S, 2C]
                    qs = self.lin(h, pre + "attn.q_state")
                    a_cross = np.zeros(C)
                    for hh in range(H):
                        a_cross[hh * D:(hh + 1) * D] = self.attend(
                            self.hd(qs, hh), [self.hd(r[:C], hh) for r in kvs], [self.hd(r[C:], hh) for r in kvs])
                    x = x + self.lin(np.concatenate([a_self, a_cross]), pre + "attn.c_proj")
                else:
                    x = x + self.lin(a_self, pre + "attn.c_proj")
                x = self.mlp(x, pre)
            out.append(self.logits(x))
            if (p + 1) % W == 0:  # block p // W complete: horizontal update of every recurrent layer
                blk = range(p + 1 - W, p + 1)
                for l in self.rec:
                    pre = f"h.{l}."
                    u = self.ln(state[l], pre + "ln_s")
                    kvs = self.lin(u, pre + "attn.kv_state")
                    qu = self.lin(u, pre + "state.q_attn")
                    att = np.zeros_like(state[l])
                    for si in range(len(u)):
                        for hh in range(H):
                            ks = [self.hd(r[:C], hh) for r in kvs] + [kc[l][j][0][hh] for j in blk]
                            vs = [self.hd(r[C:], hh) for r in kvs] + [kc[l][j][1][hh] for j in blk]
                            att[si, hh * D:(hh + 1) * D] = self.attend(self.hd(qu[si], hh), ks, vs)
                    y = self.lin(att, pre + "state.c_proj")
                    g = 1.0 / (1.0 + np.exp(-self.T[pre + "state.gate_bias"]))
                    state[l] = state[l] * g + y * (1 - g)
        return np.stack(out)


def expected_tensors(cfg, untied):
    """{name: shape} the spec lists for a checkpoint with this config."""
    C, L, V = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"]
    F = cfg.get("n_inner") or 4 * C
    mt = cfg.get("model_type", "gpt2")
    out = {"wte.weight": (V, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    if untied:
        out["lm_head.weight"] = (V, C)
    if mt == "gpt2" and cfg.get("position_embedding", "learned") == "learned":
        out["wpe.weight"] = (cfg.get("n_positions", 1024), C)

    def proj(name, n_in, n_out):
        out[name + ".weight"] = (n_in, n_out)
        out[name + ".bias"] = (n_out,)

    def lnorm(name):
        out[name + ".weight"] = (C,)
        out[name + ".bias"] = (C,)

    for l in range(L):
        pre = f"h.{l}."
        lnorm(pre + "ln_2")
        proj(pre + "mlp.c_fc", C, F)
        proj(pre + "mlp.c_proj", F, C)
        if mt == "perceiver_ar" and l == 0:
            lnorm(pre + "ln_q")
            lnorm(pre + "ln_kv")
            proj(pre + "attn.q_attn", C, C)
            proj(pre + "attn.kv_attn", C, 2 * C)
            proj(pre + "attn.c_proj", C, C)
            continue
        lnorm(pre + "ln_1")
        proj(pre + "attn.c_attn", C, 3 * C)
        if mt == "block_recurrent" and l in cfg["recurrent_layers"]:
            proj(pre + "attn.q_state", C, C)
            proj(pre + "attn.kv_state", C, 2 * C)
            proj(pre + "attn.c_proj", 2 * C, C)
            lnorm(pre + "ln_s")
            out[pre + "state_init"] = (cfg["num_states"], C)
            proj(pre + "state.q_attn", C, C)
            proj(pre + "state.c_proj", C, C)
            out[pre + "state.gate_bias"] = (C,)
        else:
            proj(pre + "attn.c_proj", C, C)
    return out


def lp_of_logits(logits, tokens_next):
    lp = logsoftmax64(logits)
    return [float(lp[i, t]) for i, t in enumerate(tokens_next)]


def decode_path(model, prompt, cont):
    """Prefill prompt, feed cont one token at a time: (lp of each cont token, last logits)."""
    logits, past = model.forward_with_past(list(prompt))
    lps = []
    for t in cont:
        lps.append(float(torch.log_softmax(logits[-1].double(), -1)[t]))
        logits, past = model.forward_with_past([t], past)
    return lps, logits[-1]


# make_llama_fixtures.py's and make_opt_fixtures.py's folders (HF layout, not gpt2's).
FAMILY_PREFIXES = ("llama-", "qwen2-", "mistral-", "opt-", "xglm-")


def check_family_fixture(fx, name):
    """An HF-layout family fixture: small, and its goldens reproduce through models.load."""
    path = os.path.join(fx, name)
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    check(f"{name}: folder under 400 KB", size < 400_000, f"{size} bytes")
    model = models.load(path)
    g = json.load(open(os.path.join(path, "golden.json"), encoding="utf-8"))
    worst = 0.0
    for c in g["cases"]:
        for a, b in zip(model.score(c["tokens"]), c["logprobs"]):
            if a is not None:
                worst = max(worst, abs(a - b))
    check(f"{name}: golden log-probs reproduce through the loader", worst < 1e-6, f"max diff {worst:.2e}")
    for c in g["greedy"]:
        check(f"{name}: greedy {c['name']} reproduces", model.greedy(c["prompt_tokens"], len(c["tokens"])) == c["tokens"])


def check_long_fixture(fx, name):
    path = os.path.join(fx, name)
    cfg = checkpoint.read_config(path)
    raw = checkpoint.read_tensors(path)
    for f in os.listdir(path):
        if f.endswith(".safetensors"):
            _, _, start = safetensors_io.read_header(os.path.join(path, f))
            check(f"{name}/{f}: header padded to 8 bytes", start % 8 == 0)
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    check(f"{name}: folder under 400 KB", size < 400_000, f"{size} bytes")
    tensors = checkpoint.normalize_names(raw)
    want = expected_tensors(cfg, "lm_head.weight" in tensors)
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    check(f"{name}: tensor names and shapes exactly as the spec lists", got == want,
          f"missing {sorted(set(want) - set(got))[:4]}, extra {sorted(set(got) - set(want))[:4]}, "
          f"shape {[k for k in want if k in got and got[k] != want[k]][:4]}")
    model = models.load(path)
    mt = cfg["model_type"]
    tok = bpe.load_tokenizer(path, cfg)
    g = json.load(open(os.path.join(path, "golden.json"), encoding="utf-8"))
    check(f"{name}: golden.json keys", {"model", "description", "logprob_tolerance", "eos_token_id", "cases",
                                        "greedy", "tokenizer"} <= set(g))
    # 1. the goldens reproduce through the loader
    worst, top_ok, dmf_ok = 0.0, True, True
    for c in g["cases"]:
        lp = model.score(c["tokens"])
        nulls_ok = [x is None for x in lp] == [x is None for x in c["logprobs"]]
        if not nulls_ok:
            check(f"{name}: case {c['name']} null entries", False)
        worst = max([worst] + [abs(a - b) for a, b in zip(lp, c["logprobs"]) if a is not None and b is not None])
        top = model.top_k_last(c["tokens"], 5)
        top_ok &= [t[0] for t in top] == [t[0] for t in c["top5"]]
        dec, last = decode_path(model, c["tokens"][:1], c["tokens"][1:])
        d = max([abs(a - b) for a, b in zip(c["logprobs"][1:], dec) if a is not None] +
                [abs(float(torch.log_softmax(last.double(), -1)[i]) - l) for i, l in c["top5"]])
        dmf_ok &= (d < 1e-4) == c["decode_matches_forward"]
    check(f"{name}: golden log-probs reproduce", worst < 1e-6, f"max diff {worst:.2e}")
    check(f"{name}: golden top-5 ids reproduce", top_ok)
    check(f"{name}: decode_matches_forward flags reproduce", dmf_ok)
    T_of = {c["name"]: len(c["tokens"]) for c in g["cases"]}
    if mt == "perceiver_ar":
        N = cfg["num_latents"]
        want = all(c["decode_matches_forward"] == (len(c["tokens"]) <= N or N == 1) for c in g["cases"])
        check(f"{name}: decode == forward exactly for T <= N (and always when N = 1)", want)
        check(f"{name}: N'-1 log-probs per case",
              all(sum(x is not None for x in c["logprobs"]) == min(N, T_of[c["name"]]) - 1 for c in g["cases"]))
    else:
        check(f"{name}: decode == forward for every case", all(c["decode_matches_forward"] for c in g["cases"]))
    worst = 0.0
    for dc in g["decode"]:
        lps, _ = decode_path(model, dc["prompt_tokens"], dc["tokens"])
        worst = max([worst] + [abs(a - b) for a, b in zip(lps, dc["logprobs"])])
    check(f"{name}: golden decode log-probs reproduce", worst < 1e-6, f"max diff {worst:.2e}")
    for gr in g["greedy"]:
        ids = tok.encode(gr["prompt"])
        out, margins = model.greedy(ids, gr["max_tokens"], return_margins=True)
        check(f"{name}: greedy {gr['name']} reproduces (prompt {len(ids)} tokens)",
              ids == gr["prompt_tokens"] and out == gr["tokens"] and tok.decode(out) == gr["text"]
              and min(margins) > 1e-2 and not any(t >= 256 for t in out))
        full = model.greedy(ids, gr["max_tokens"], use_cache=False)
        check(f"{name}: greedy {gr['name']} matches_full_forward flag", (full == out) == gr["matches_full_forward"])
    check(f"{name}: tokenizer goldens", all(tok.encode(t["text"]) == t["ids"] for t in g["tokenizer"]))

    # 2. an independent float64 reading of the spec agrees
    if mt == "gpt2":
        allowed = naive_bigbird_allowed(cfg["attention"])
        for c in g["cases"]:
            if len(c["tokens"]) < 20:
                continue
            toks = c["tokens"][:130]
            d = max_lp_diff(model.forward(toks).double().numpy(), naive_logits(cfg, tensors, toks, allowed=allowed))
            check(f"{name}: torch float32 vs naive float64 bigbird ({len(toks)} tokens)", d < 1e-4, f"{d:.2e}")
            dn = max_lp_diff(naive_logits(cfg, tensors, toks, allowed=allowed), naive_logits(cfg, tensors, toks))
            want_dense = len(toks) <= g["dense_equivalent_max_tokens"]
            check(f"{name}: naive bigbird {'==' if want_dense else '!='} naive dense ({len(toks)} tokens)",
                  (dn < 1e-12) if want_dense else (dn > 1e-2), f"{dn:.2e}")
    elif mt == "perceiver_ar":
        nv = NaivePerceiver(cfg, tensors)
        for c in g["cases"]:
            toks = c["tokens"]
            d = max_lp_diff(model.forward(toks).double().numpy(), nv.prefill(toks))
            check(f"{name}: torch vs naive exact forward ({len(toks)} tokens)", d < 1e-4, f"{d:.2e}")
        worst = 0.0
        for dc in g["decode"]:
            first = nv.prefill(dc["prompt_tokens"])[-1]
            lg = np.stack([first] + [nv.step(t) for t in dc["tokens"][:-1]])
            worst = max(worst, max(abs(a - b) for a, b in zip(lp_of_logits(lg, dc["tokens"]), dc["logprobs"])))
        check(f"{name}: naive sliding decode reproduces the decode goldens", worst < 1e-4, f"{worst:.2e}")
        ok = True
        for gr in g["greedy"]:
            lg = nv.prefill(gr["prompt_tokens"])[-1]
            out = []
            for _ in range(gr["max_tokens"]):
                out.append(int(np.argmax(lg)))
                lg = nv.step(out[-1])
            ok &= out == gr["tokens"]
        check(f"{name}: naive prefill + sliding decode gives the greedy goldens", ok)
    elif mt == "block_recurrent":
        nv = NaiveRecurrent(cfg, tensors)
        for c in g["cases"]:
            toks = c["tokens"]
            d = max_lp_diff(model.forward(toks).double().numpy(), nv.run(toks))
            check(f"{name}: torch vs naive token-by-token ({len(toks)} tokens, "
                  f"{len(toks) // cfg['block_size']} blocks)", d < 1e-4, f"{d:.2e}")
        worst = 0.0
        for dc in g["decode"]:
            toks = dc["prompt_tokens"] + dc["tokens"]
            lg = nv.run(toks)[len(dc["prompt_tokens"]) - 1:-1]
            worst = max(worst, max(abs(a - b) for a, b in zip(lp_of_logits(lg, dc["tokens"]), dc["logprobs"])))
        check(f"{name}: naive reproduces the decode goldens", worst < 1e-4, f"{worst:.2e}")
    return model, tensors, cfg


def check_bigbird_rule(fx):
    vec = json.load(open(os.path.join(fx, "bigbird-vectors.json"), encoding="utf-8"))
    check("bigbird: splitmix64 test vectors",
          all(f"{bigbird.splitmix64(int(k)):016x}" == v for k, v in vec["splitmix64_hex"].items()))
    ok_scalar = ok_np = ok_naive = True
    for pt in vec["patterns"]:
        c = pt["config"]
        ok_scalar &= bigbird.block_set(c, pt["l"], pt["h"], pt["i"]) == pt["blocks"]
        m = bigbird.block_mask(c, pt["l"], pt["h"] + 1, pt["i"] + 1)
        ok_np &= [int(j) for j in np.nonzero(m[pt["h"], pt["i"]])[0]] == pt["blocks"]
        allowed = naive_bigbird_allowed(c)
        b = c["block_size"]
        p = pt["i"] * b + b - 1
        ok_naive &= [j for j in range(pt["i"] + 1) if allowed(pt["l"], pt["h"], p, j * b)] == pt["blocks"]
    check("bigbird: block sets of the spec's test vectors (scalar rule)", ok_scalar)
    check("bigbird: block sets of the spec's test vectors (vectorized mask)", ok_np)
    check("bigbird: block sets of the spec's test vectors (selfcheck's own reading)", ok_naive)
    # vectorized == scalar on random configurations, edge values included
    rng = random.Random(3)
    ok = True
    for _ in range(40):
        c = {"kind": "bigbird", "block_size": rng.randint(1, 9), "window_blocks": rng.randint(1, 4),
             "global_blocks": rng.randint(0, 3), "random_blocks": rng.randint(0, 4),
             "seed": rng.choice([0, 1, 2 ** 53 - 1, rng.randrange(2 ** 53)])}
        l, H, nb = rng.randint(0, 30), rng.randint(1, 4), rng.randint(1, 40)
        m = bigbird.block_mask(c, l, H, nb)
        for h in range(H):
            for i in range(nb):
                ok &= [int(j) for j in np.nonzero(m[h, i])[0]] == bigbird.block_set(c, l, h, i)
    check("bigbird: vectorized mask == scalar rule (40 random configs)", ok)
    c = {"kind": "bigbird", "block_size": 4, "window_blocks": 2, "global_blocks": 1, "random_blocks": 2, "seed": 9}
    sizes = {len(bigbird.block_set(c, 0, 0, i)) for i in range(200)}
    check("bigbird: at most w + g + r blocks per query block", max(sizes) == 5, f"{sorted(sizes)}")
    check("bigbird: blocks 0..w+g+r-1 see every earlier block",
          all(bigbird.block_set(c, 3, 1, i) == list(range(i + 1)) for i in range(5)))


def check_bigbird_model(fx):
    path = os.path.join(fx, "bigbird-tiny")
    if not os.path.isdir(path):
        return
    model = models.load(path)
    cfg = checkpoint.read_config(path)
    g = json.load(open(os.path.join(path, "golden.json"), encoding="utf-8"))
    tensors = checkpoint.normalize_names(checkpoint.read_tensors(path))
    dense = gpt2.from_tensors({k: v for k, v in cfg.items() if k != "attention"}, tensors)
    ok = True
    for c in g["cases"]:
        T = len(c["tokens"])
        ok &= dense.score(c["tokens"]) == c["dense_logprobs"]
        ok &= c["equals_dense"] == (T <= g["dense_equivalent_max_tokens"])
        ok &= (c["dense_logprobs"] == c["logprobs"]) == (T <= g["dense_equivalent_max_tokens"] + 1)
    check("bigbird-tiny: dense_logprobs / equals_dense reproduce (equal up to (w+g+r)*b tokens only)", ok)
    toks = g["cases"][-1]["tokens"]  # 300 tokens
    check("bigbird-tiny: bigbird == dense bit for bit at 20 tokens",
          torch.equal(model.forward(toks[:20]), dense.forward(toks[:20])))
    d = float((model.forward(toks[:120]) - dense.forward(toks[:120])).abs().max())
    check("bigbird-tiny: bigbird != dense at 120 tokens", d > 1e-2, f"max logit diff {d:.2e}")
    pos = torch.arange(120)
    m0 = model.pattern.allowed(0, pos, pos)
    m1 = model.pattern.allowed(1, pos, pos)
    heads_differ = all(not torch.equal(m0[a], m0[b]) for a in range(4) for b in range(a))
    check("bigbird-tiny: masks differ between every pair of heads and between layers at 120 tokens",
          heads_differ and not torch.equal(m0, m1))
    per_query = int(m0.sum(-1).max())
    check("bigbird-tiny: at most (w+g+r)*b keys per query", per_query <= 20, f"{per_query}")
    a = model.forward(toks[:120])
    b = model.forward(toks[:119] + [(toks[119] + 1) % 260])
    check("bigbird-tiny: causal (later token does not change earlier logits)", torch.equal(a[:-1], b[:-1]))
    l1, past = model.forward_with_past(toks[:37])
    l2, past = model.forward_with_past(toks[37:38], past)
    l3, _ = model.forward_with_past(toks[38:120], past)
    d = float((torch.cat([l1, l2, l3]) - a).abs().max())
    check("bigbird-tiny: KV-cache chunks == full forward", d < 1e-4, f"max logit diff {d:.2e}")


def check_perceiver_model(fx):
    path = os.path.join(fx, "perceiver-tiny")
    if not os.path.isdir(path):
        return
    model = models.load(path)
    N = model.cfg.num_latents
    toks = [(i * 41 + 7) % 260 for i in range(40)]
    full = model.forward(toks)
    check("perceiver-tiny: forward gives N logits rows", tuple(full.shape) == (N, 260))
    # the latents see the whole prefix through layer 0: changing token 0 changes them
    other = model.forward([(toks[0] + 1) % 260] + toks[1:])
    check("perceiver-tiny: latents depend on the first token (layer-0 cross-attention)",
          float((other - full).abs().max()) > 1e-3)
    # causal among latents: changing the last token leaves the other latents' logits
    b = model.forward(toks[:-1] + [(toks[-1] + 1) % 260])
    check("perceiver-tiny: causal among latents", torch.equal(full[:-1], b[:-1]))
    # decode T <= N == forward; decode beyond N differs from the exact forward
    lg, past = model.forward_with_past(toks[:3])
    rows = [lg]
    for t in toks[3:N]:
        lg, past = model.forward_with_past([t], past)
        rows.append(lg)
    d = float((torch.cat(rows) - model.forward(toks[:N])).abs().max())
    check("perceiver-tiny: prefill 3 + decode to N == exact forward of N tokens", d < 1e-4, f"{d:.2e}")
    lg, past = model.forward_with_past(toks[:20])
    lg2, _ = model.forward_with_past([toks[20]], past)
    d = float((lg2[-1] - model.forward(toks[:21])[-1]).abs().max())
    check("perceiver-tiny: sliding decode past N differs from the exact forward", d > 1e-3, f"{d:.2e}")
    # layer-0 cache holds every position, upper caches N
    _, past = model.forward_with_past(toks[:30])
    for t in toks[30:35]:
        _, past = model.forward_with_past([t], past)
    check("perceiver-tiny: cache sizes (layer 0: every position, layers >= 1: N latents)",
          past[0][0].shape[2] == 35 and all(c[0].shape[2] == N for c in past[1:]))
    # prefill(T) then decode == prefill(T) and the step reusing the cached latent K/V: compare to a
    # hand-built reference: layer >= 1 caches after prefill are exactly the exact forward's K/V
    try:
        model.forward([0] * 5 + [260])
        check("perceiver-tiny: refuses an out-of-range token", False)
    except ValueError:
        check("perceiver-tiny: refuses an out-of-range token", True)


def check_recurrent_model(fx):
    path = os.path.join(fx, "recurrent-tiny")
    if not os.path.isdir(path):
        return
    model = models.load(path)
    W = model.cfg.block_size
    rng = random.Random(8)
    toks = [rng.randrange(260) for _ in range(130)]
    full = model.forward(toks)
    rows, past = [], None
    for t in toks:
        lg, past = model.forward_with_past([t], past)
        rows.append(lg)
    d = float((torch.cat(rows) - full).abs().max())
    check(f"recurrent-tiny: token-by-token decode over {len(toks) // W} blocks == prefill", d < 1e-4, f"{d:.2e}")
    check("recurrent-tiny: decode cache holds at most 2W positions per layer",
          all(c[0].shape[2] <= 2 * W for c in past), f"{[c[0].shape[2] for c in past]}")
    ok = True
    for trial in range(5):
        cuts = sorted(rng.sample(range(1, len(toks)), 6))
        parts, past = [], None
        for a, b in zip([0] + cuts, cuts + [len(toks)]):
            lg, past = model.forward_with_past(toks[a:b], past)
            parts.append(lg)
        ok &= float((torch.cat(parts) - full).abs().max()) < 1e-4
    check("recurrent-tiny: chunked prefill at random cuts == full prefill", ok)
    # the state carries information past the attention window (3 layers x 2 blocks)
    other = model.forward([(toks[0] + 1) % 260] + toks[1:])
    d0 = float((other[100:] - full[100:]).abs().max())
    check("recurrent-tiny: token 0 still changes logits at position >= 100 (through the state)", d0 > 1e-4,
          f"{d0:.2e}")
    tensors = checkpoint.normalize_names(checkpoint.read_tensors(path))
    cfg = checkpoint.read_config(path)
    plain = models.ARCHITECTURES["block_recurrent"].from_tensors(cfg, tensors)
    with torch.no_grad():
        plain.h[1].state.gate_bias.neg_()  # swaps sigmoid(gb) and 1 - sigmoid(gb)
    d = float((plain.forward(toks) - full).abs().max())
    check("recurrent-tiny: the gate's orientation matters (swapped gate changes logits)", d > 1e-2, f"{d:.2e}")
    check("recurrent-tiny: the swapped gate leaves block 0 alone (it reads state_init)",
          torch.equal(plain.forward(toks)[:W], full[:W]))
    # a partial last block does not update: logits of a sequence are prefix-stable
    a = model.forward(toks[:W * 5 + 2])
    check("recurrent-tiny: causal (prefix logits independent of later tokens)",
          float((a - full[:W * 5 + 2]).abs().max()) < 1e-4)
    # a model without the windowed mask would see token 0 at position 30 directly; check the window:
    # with the recurrent layer's state path cut (a_cross weights zero, state update irrelevant),
    # token 0 must not reach position >= 3 * 2W.
    with torch.no_grad():
        plain.load_hf_state_dict(tensors)
        plain.h[1].attn.c_proj.weight[model.cfg.n_embd:].zero_()
    x1 = plain.forward(toks)
    x2 = plain.forward([(toks[0] + 1) % 260] + toks[1:])
    d = float((x1[3 * 2 * W:] - x2[3 * 2 * W:]).abs().max())
    check("recurrent-tiny: without the state path token 0 is invisible beyond 3 layers of windows", d == 0.0,
          f"{d:.2e}")


def check_bad_configs(fx):
    p = os.path.join(fx, "bad-configs")
    if not os.path.isdir(p):
        return
    cases = json.load(open(os.path.join(p, "cases.json"), encoding="utf-8"))
    for c in cases["refused"]:
        d = json.load(open(os.path.join(p, c["file"]), encoding="utf-8"))
        try:
            models.parse_config(d)
            check(f"bad-configs/{c['file']} is refused", False, "accepted")
        except ValueError as e:
            check(f"bad-configs/{c['file']} is refused naming {c['field']}", c["field"] in str(e), str(e))
    for f in cases["accepted"]:
        d = json.load(open(os.path.join(p, f), encoding="utf-8"))
        try:
            models.parse_config(d)
            check(f"bad-configs/{f} (valid base) is accepted", True)
        except ValueError as e:
            check(f"bad-configs/{f} (valid base) is accepted", False, str(e))
    listed = {c["file"] for c in cases["refused"]} | set(cases["accepted"]) | {"cases.json"}
    check("bad-configs: every file is listed in cases.json", listed == set(os.listdir(p)))


def check_trainable():
    """One backward pass through each new module: every parameter gets a gradient."""
    import block_recurrent
    import perceiver_ar
    base = {"vocab_size": 50, "n_embd": 16, "n_head": 2, "n_layer": 2, "position_embedding": "rotary"}
    mods = {
        "bigbird": gpt2.GPT2(dict(base, model_type="gpt2", attention={
            "kind": "bigbird", "block_size": 2, "window_blocks": 1, "global_blocks": 1, "random_blocks": 1,
            "seed": 5})),
        "perceiver_ar": perceiver_ar.PerceiverAR(dict(base, model_type="perceiver_ar", num_latents=6)),
        "block_recurrent": block_recurrent.BlockRecurrent(dict(base, model_type="block_recurrent", block_size=3,
                                                               num_states=2, recurrent_layers=[0])),
    }
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, 50, (3, 14), generator=g)  # a batch of 3
    with torch.enable_grad():
        for name, m in mods.items():
            gpt2.init_random(m, 1)
            logits = m.forward(toks)  # (B, T or N', V)
            n = logits.shape[1]
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 50), toks[:, 14 - n + 1:].reshape(-1))
            loss.backward()
            missing = [k for k, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
                       or float(p.grad.abs().max()) == 0]
            check(f"{name}: trainable (batched forward + backward reaches every parameter)", not missing,
                  f"no grad: {missing[:4]}")
            with torch.no_grad():
                single = m.forward(toks[1])
            check(f"{name}: batched forward row == single sequence", float((logits[1] - single).abs().max()) < 1e-5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=os.path.join(REPO, "test", "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    fx = args.fixtures
    check_safetensors()
    for name in fixture_dirs(fx):
        if name.startswith(FAMILY_PREFIXES):
            check_family_fixture(fx, name)
        elif name.startswith(LONG_PREFIXES):
            check_long_fixture(fx, name)
        else:
            check_fixture(fx, name)
    check_sharded(fx)
    check_dtypes(fx)
    check_rotary(fx)
    check_tokenizer(fx)
    check_bigbird_rule(fx)
    check_bigbird_model(fx)
    check_perceiver_model(fx)
    check_recurrent_model(fx)
    check_bad_configs(fx)
    check_trainable()
    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    sys.exit(0 if passed == len(RESULTS) else 1)


if __name__ == "__main__":
    main()
