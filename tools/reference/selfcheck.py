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

import bpe  # noqa: E402
import checkpoint  # noqa: E402
import gpt2  # noqa: E402
import safetensors_io  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail else ''}", flush=True)


# ------------------------------------------------- independent float64 reading

def naive_logits(config, tensors, tokens, offset=0):
    """The spec's gpt2 math, written independently of gpt2.py, in float64 numpy."""
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
                s = np.array([q[p] @ k[j] / math.sqrt(D) for j in range(p + 1)])
                w = np.exp(s - s.max())
                w /= w.sum()
                att[p, hd * D:(hd + 1) * D] = w @ v[:p + 1]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=os.path.join(REPO, "test", "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    fx = args.fixtures
    check_safetensors()
    for name in fixture_dirs(fx):
        check_fixture(fx, name)
    check_sharded(fx)
    check_dtypes(fx)
    check_rotary(fx)
    check_tokenizer(fx)
    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    sys.exit(0 if passed == len(RESULTS) else 1)


if __name__ == "__main__":
    main()
