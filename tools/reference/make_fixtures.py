#!/usr/bin/python3
"""Deterministic generator of test/fixtures/ (random GPT-2 checkpoints + goldens).

    /usr/bin/python3 tools/reference/make_fixtures.py [--out test/fixtures]

See tools/reference/README.md for what each fixture tests.
"""
import argparse
import json
import os
import random
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import block_recurrent  # noqa: E402
import bpe  # noqa: E402
import checkpoint  # noqa: E402
import gpt2  # noqa: E402
import models  # noqa: E402
import perceiver_ar  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BPE_VOCAB_SIZE = 512
GREEDY_TOKENS = 16

# Texts whose ids are golden for every BPE model (exercise the pre-tokenizer and
# multi-byte UTF-8). Avoid U+0085, U+FEFF and U+001C..U+001F: \s differs
# between Oniguruma, JavaScript and Python there.
TOKENIZER_TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "It's, they're, we've, I'm, you'll, he'd, don't. IT'S 'tis rock'n'roll",
    "Café déjà vu, naïve façade, crème brûlée — Ångström, Łódź, Straße",
    "e\u0301 (e + combining acute) vs \u00e9",
    "東京は日本の首都です。中文字符测试，你好世界。",
    "한국어 문장입니다.",
    "Москва — столица России.",
    "emoji 🙂👍🏽❤️🚀 and flags 🇫🇷!",
    "  two leading spaces, three trailing   ",
    "line one\nline two\n\n\tTabbed\r\nCRLF\n",
    "Numbers 0 12 345 6789 3.14159 1,000,000 ½ ² Ⅻ ٣",
    "mixed: x=1+2; y='q'?? (parens) [brackets] {braces} <angle> #hash @at",
    "non-breaking\u00a0space, ideographic\u3000space, thin\u2009space",
    "    indented code()\n        return x  # comment\n",
    "the of and to in that is for with as was on",
    "",
    " ",
    "\n\n\n",
    "a<|endoftext|>b",
]

PROMPTS = [
    "The license",
    "Copyright and",
    "In the event",
    "This program is free",
    "Hello",
    "You may",
    "the work",
    "Permission",
]

BYTE_PROMPTS = ["Hello", "The", "a", "fn main", "x = 1", "#", "Yes", "abc"]


def more_prompts(corpus, n=200):
    """Deterministic extra prompt candidates: the first three words of corpus lines."""
    out = []
    for line in corpus.split("\n"):
        w = line.split()
        if len(w) >= 3 and all(x.isalpha() for x in w[:3]):
            cand = " ".join(w[:3])
            if cand not in out:
                out.append(cand)
        if len(out) >= n:
            break
    return out


# ------------------------------------------------------------------ helpers

def hf_config(V, C, L, H, npos, eos, **extra):
    d = {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": eos,
        "embd_pdrop": 0.1,
        "eos_token_id": eos,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_embd": C,
        "n_head": H,
        "n_inner": None,
        "n_layer": L,
        "resid_pdrop": 0.1,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": "float32",
        "vocab_size": V,
    }
    if npos is not None:
        d["n_ctx"] = npos
        d["n_positions"] = npos
    d.update(extra)
    return {k: d[k] for k in sorted(d)}


def write_json(path, obj, indent=1):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")



def make_model(config, seed, tied=True):
    model = gpt2.GPT2(gpt2.GPT2Config(config), tied=tied)
    gpt2.init_random(model, seed)
    model.eval()
    return model


def valid_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def goldens(model, tok, seed, prompts, extra_lengths=(), tokenizer_texts=None, eos=None, specials=()):
    """Golden cases for a model (computed by the reference as loaded from disk)."""
    V = model.cfg.vocab_size
    npos = model.cfg.n_positions
    rng = random.Random(seed)
    cases = []
    text = "Licensed under the Apache License, Version 2.0; you may not use this file except in compliance."
    if isinstance(tok, bpe.ByteTokenizer):
        text = "Hello, world! Bytes: caf\u00e9 \u6771 \U0001F642."
    text_ids = tok.encode(text)
    lengths = [("one-token", [rng.randrange(V)]),
               ("text", text_ids),
               ("random-33", [rng.randrange(V) for _ in range(33)])]
    if eos is not None:
        lengths.append(("with-eos", [eos] + text_ids[:8] + [eos] + [rng.randrange(V) for _ in range(6)]))
    for n in extra_lengths:
        lengths.append((f"random-{n}", [rng.randrange(V) for _ in range(n)]))
    for name, toks in lengths:
        lp = model.score(toks)
        top = model.top_k_last(toks, 5)
        cases.append({"name": name, "tokens": toks, "logprobs": lp,
                      "top5": [[i, l] for i, l in top]})
    # greedy: first prompt whose continuation has no eos/special, a clear argmax
    # margin at every step and (for BPE) valid UTF-8 text.
    greedy = None
    fallback = None
    for p in prompts:
        ids = tok.encode(p)
        if not ids or (npos is not None and len(ids) + GREEDY_TOKENS > npos):
            continue
        out, margins = model.greedy(ids, GREEDY_TOKENS, return_margins=True)
        assert out == model.greedy(ids, GREEDY_TOKENS, use_cache=False), "cache/no-cache greedy differ"
        tbytes = tok.decode_bytes(out)
        entry = {"prompt": p, "prompt_tokens": ids, "max_tokens": GREEDY_TOKENS, "tokens": out,
                 "text": tok.decode(out), "text_valid_utf8": valid_utf8(tbytes),
                 "min_margin": min(margins)}
        bad_tok = any(t == eos or t in specials for t in out)
        if fallback is None:
            fallback = entry
        if not bad_tok and min(margins) > 1e-2 and (entry["text_valid_utf8"] or isinstance(tok, bpe.ByteTokenizer)):
            greedy = entry
            break
    if greedy is None:
        greedy = fallback
    g = {"cases": cases, "greedy": [greedy]}
    if tokenizer_texts is not None:
        tcases = []
        for t in tokenizer_texts:
            ids = tok.encode(t)
            assert tok.decode(ids) == t, repr(t)
            c = {"text": t, "ids": ids}
            if "<|endoftext|>" in t:
                c["special"] = True
                c["ids_special_as_text"] = tok.encode(t, allow_special=False)
            tcases.append(c)
        g["tokenizer"] = tcases
    return g


def save_model_dir(path, config, tensors, shards=1, prefix="", buffers=None):
    os.makedirs(path, exist_ok=True)
    write_json(os.path.join(path, "config.json"), config, indent=2)
    t = {prefix + k if k != "lm_head.weight" else k: v for k, v in tensors.items()}
    if buffers:
        t.update(buffers)
    checkpoint.save_tensors(path, t, shards=shards)


def finish(path, name, description, config, tok, seed, prompts, extra_lengths=(), tokenizer_texts=None,
           eos=None, specials=(), notes=None):
    """Reload the written folder through the reader and write golden.json from it."""
    model = gpt2.load(path)
    g = {"model": name, "description": description}
    if notes:
        g["notes"] = notes
    g["logprob_tolerance"] = 1e-4
    g["eos_token_id"] = eos
    g.update(goldens(model, tok, seed, prompts, extra_lengths, tokenizer_texts, eos, specials))
    write_json(os.path.join(path, "golden.json"), g)
    return model


# ------------------------------------------------- long-context fixtures
#
# bigbird-*, perceiver-*, recurrent-*: byte-tokenizer models of the three
# long-context mechanisms (tools/reference/bigbird.py, perceiver_ar.py,
# block_recurrent.py), and bad-configs/. Golden format as the gpt2 fixtures,
# plus per case "decode_matches_forward", a "decode" list (prefill a prompt,
# then teacher-forced decode steps) and named greedy entries; see README.md.

BYTES_SPECIALS = {"eos": 256, "fim_prefix": 257, "fim_middle": 258, "fim_suffix": 259}
BYTES_EOS = 256
BYTES_TOKENIZER_TEXTS = ["Hello", "caf\u00e9 \u6771 \U0001F642", "line\nbreak\t", ""]
BYTES_TEXT = "Hello, world! Bytes: caf\u00e9 \u6771 \U0001F642."
MARGIN = 1e-2  # smallest top-2 logit margin accepted at every greedy step
MIN_DISTINCT = 5  # a greedy golden that repeats one token tests little


def long_config(model_type, C, L, H, **extra):
    d = {"model_type": model_type, "vocab_size": 260, "n_embd": C, "n_head": H, "n_layer": L,
         "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "eos_token_id": BYTES_EOS,
         "tokenizer_class": "bytes", "special_tokens": dict(BYTES_SPECIALS), "torch_dtype": "float32"}
    d.update(extra)
    return {k: d[k] for k in sorted(d)}


def lp_row(logits_row):
    return torch.log_softmax(logits_row.double(), dim=-1)


def decode_run(model, prompt, cont):
    """The serving procedure: prefill `prompt`, then feed `cont` one token at a
    time through the model's cache. Returns the log-prob of each cont token and
    the log-probs after the last one."""
    logits, past = model.forward_with_past(list(prompt))
    lps = []
    for t in cont:
        lps.append(float(lp_row(logits[-1])[t]))
        logits, past = model.forward_with_past([t], past)
    return lps, lp_row(logits[-1])


def long_cases(model, specs):
    """Cases with decode_matches_forward: does prefilling tokens[:1] and decoding
    the rest one at a time reproduce the prefill log-probs and top-5?"""
    cases = []
    for name, toks in specs:
        lp = model.score(toks)
        top = model.top_k_last(toks, 5)
        dec, last = decode_run(model, toks[:1], toks[1:])
        diffs = [abs(a - b) for a, b in zip(lp[1:], dec) if a is not None]
        diffs += [abs(float(last[i]) - l) for i, l in top]
        worst = max(diffs)
        assert worst < 1e-4 or worst > 1e-2, (name, worst)  # clearly equal or clearly not
        cases.append({"name": name, "tokens": toks, "logprobs": lp, "top5": [[i, l] for i, l in top],
                      "decode_matches_forward": worst < 1e-4})
    return cases


def long_decode_cases(model, rng, specs):
    """[{name, prompt_tokens, tokens, logprobs}]: logprobs[j] = log p(tokens[j]) after
    prefilling prompt_tokens and decoding tokens[:j] one at a time."""
    V = model.cfg.vocab_size
    out = []
    for name, n_prompt, n_cont in specs:
        prompt = [rng.randrange(V) for _ in range(n_prompt)]
        cont = [rng.randrange(V) for _ in range(n_cont)]
        lps, _ = decode_run(model, prompt, cont)
        out.append({"name": name, "prompt_tokens": prompt, "tokens": cont, "logprobs": lps})
    return out


def prompt_slices(corpus, n, count=400):
    """Deterministic ASCII prompts of exactly n bytes, starting at word starts."""
    text = " ".join(corpus.split())
    out = []
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == " "]
    for s in starts:
        cand = text[s:s + n]
        if len(cand) == n and cand.isascii() and not cand.endswith(" ") and cand not in out:
            out.append(cand)
            if len(out) >= count:
                break
    return out


def pick_greedy(model, tok, name, candidates, accept, same_as_forward=True):
    """First candidate prompt (accepted by `accept(ids)`) whose 16 greedy tokens
    (spec decoding: prefill + cached decode) hold no eos/special, at least
    MIN_DISTINCT different ids, and a top-2 margin > MARGIN at every step."""
    for p in candidates:
        ids = tok.encode(p)
        if not ids or not accept(ids):
            continue
        out, margins = model.greedy(ids, GREEDY_TOKENS, return_margins=True)
        if any(t >= 256 for t in out) or min(margins) <= MARGIN or len(set(out)) < MIN_DISTINCT:
            continue
        full = model.greedy(ids, GREEDY_TOKENS, use_cache=False)
        if same_as_forward:
            assert full == out, f"{name}: cached and full-forward greedy differ"
        return {"name": name, "prompt": p, "prompt_tokens": ids, "max_tokens": GREEDY_TOKENS, "tokens": out,
                "text": tok.decode(out), "text_valid_utf8": valid_utf8(tok.decode_bytes(out)),
                "min_margin": min(margins), "matches_full_forward": full == out}
    raise RuntimeError(f"{name}: no candidate prompt gives greedy margins > {MARGIN}")


def make_long_model(module, cls, config, seed):
    model = cls(config)
    module.init_random(model, seed)
    model.eval()
    return model


def write_long_fixture(out, name, description, config, model, seed, case_specs, decode_specs, greedy_specs,
                       extra=None):
    """Write the checkpoint, reload it through models.load and write golden.json."""
    p = os.path.join(out, name)
    shutil.rmtree(p, ignore_errors=True)
    save_model_dir(p, config, model.hf_state_dict())
    m = models.load(p)
    tok = bpe.load_tokenizer(p, config)
    rng = random.Random(seed)
    g = {"model": name, "description": description, "logprob_tolerance": 1e-4, "eos_token_id": BYTES_EOS}
    if extra:
        g.update(extra(m))
    g["cases"] = long_cases(m, [(n, t(rng) if callable(t) else t) for n, t in case_specs])
    g["decode"] = long_decode_cases(m, rng, decode_specs)
    g["greedy"] = [pick_greedy(m, tok, *spec) for spec in greedy_specs]
    g["tokenizer"] = [{"text": t, "ids": tok.encode(t)} for t in BYTES_TOKENIZER_TEXTS]
    write_json(os.path.join(p, "golden.json"), g)
    return m, g


def rand_tokens(n):
    return lambda rng: [rng.randrange(260) for _ in range(n)]


def with_eos(rng):
    text = list(BYTES_TEXT.encode("utf-8"))
    return [BYTES_EOS] + text[:8] + [BYTES_EOS] + [rng.randrange(260) for _ in range(6)]


def make_long_fixtures(out, corpus):
    text_ids = list(BYTES_TEXT.encode("utf-8"))
    short = BYTE_PROMPTS + more_prompts(corpus)
    sl = {n: prompt_slices(corpus, n) for n in (8, 41, 44, 100)}

    # ---- bigbird-tiny: rotary, b 4, w 2, g 1, r 2: dense up to (w+g+r)*b = 20 tokens
    att = {"kind": "bigbird", "block_size": 4, "window_blocks": 2, "global_blocks": 1, "random_blocks": 2,
           "seed": 1234}
    cfg = long_config("gpt2", 64, 2, 4, n_inner=128, position_embedding="rotary", attention=att)
    bigbird_fixture(out, "bigbird-tiny", cfg, seed=2001, dense_tokens=20,
                    description="gpt2 + attention bigbird (block_size 4, window 2, global 1, random 2, seed 1234), "
                                "rotary (rotary_dim = head size 16), no n_positions, 2 layers, n_embd 64, 4 heads, "
                                "n_inner 128, bytes tokenizer. Dense-equivalent up to 20 tokens.",
                    cases=[("one-token", rand_tokens(1)), ("text", text_ids), ("random-20", rand_tokens(20)),
                           ("random-22", rand_tokens(22)), ("random-33", rand_tokens(33)), ("with-eos", with_eos),
                           ("random-120", rand_tokens(120)), ("random-300", rand_tokens(300))],
                    decode=[("prompt-50-decode-30", 50, 30), ("prompt-3-decode-40", 3, 40)],
                    greedy=[("short-prompt", short, lambda ids: len(ids) <= 8),
                            ("long-prompt", sl[100], lambda ids: True)])

    # ---- bigbird-learned: learned positions, b 8, w 1, g 0, r 3, seed 2^53 - 1
    att = {"kind": "bigbird", "block_size": 8, "window_blocks": 1, "global_blocks": 0, "random_blocks": 3,
           "seed": 2 ** 53 - 1}
    cfg = long_config("gpt2", 32, 2, 4, n_positions=128, attention=att)
    bigbird_fixture(out, "bigbird-learned", cfg, seed=2002, dense_tokens=32,
                    description="gpt2 + attention bigbird (block_size 8, window 1, global 0, random 3, "
                                "seed 2^53-1), learned positions, n_positions 128, 2 layers, n_embd 32, 4 heads, "
                                "bytes tokenizer. Dense-equivalent up to 32 tokens.",
                    cases=[("one-token", rand_tokens(1)), ("text", text_ids), ("random-32", rand_tokens(32)),
                           ("random-34", rand_tokens(34)), ("with-eos", with_eos), ("random-128", rand_tokens(128))],
                    decode=[("prompt-40-decode-40", 40, 40)],
                    greedy=[("short-prompt", short, lambda ids: len(ids) <= 8),
                            ("long-prompt", sl[100], lambda ids: True)])

    # ---- perceiver-tiny: 8 latents, 3 layers
    N = 8
    cfg = long_config("perceiver_ar", 64, 3, 4, n_inner=64, position_embedding="rotary", num_latents=N)
    m = make_long_model(perceiver_ar, perceiver_ar.PerceiverAR, cfg, 3001)
    write_long_fixture(
        out, "perceiver-tiny",
        "perceiver_ar, num_latents 8, 3 layers, n_embd 64, 4 heads, n_inner 64, rotary (rotary_dim = head size "
        "16), bytes tokenizer. logprobs: exact forward (null for t <= T - N'); decode: the sliding cached decode; "
        "greedy: prefill + sliding cached decode (prompts below, equal to and above N).",
        cfg, m, 31,
        [("one-token", rand_tokens(1)), ("random-5", rand_tokens(5)), ("random-8", rand_tokens(8)),
         ("random-9", rand_tokens(9)), ("text", text_ids), ("random-33", rand_tokens(33)), ("with-eos", with_eos),
         ("random-200", rand_tokens(200))],
        [("prompt-5-decode-12", 5, 12), ("prompt-8-decode-12", 8, 12), ("prompt-30-decode-20", 30, 20)],
        [("prompt-below-latents", short, lambda ids: len(ids) < N, False),
         ("prompt-equal-latents", sl[8], lambda ids: len(ids) == N, False),
         ("prompt-above-latents", sl[41], lambda ids: True, False)],
        extra=lambda m: {"num_latents": N})

    # ---- perceiver-n1: a single latent, untied head, partial rotary, rotary_base 500
    cfg = long_config("perceiver_ar", 32, 2, 2, position_embedding="rotary", rotary_dim=8, rotary_base=500.0,
                      num_latents=1)
    m = perceiver_ar.PerceiverAR(cfg, tied=False)
    perceiver_ar.init_random(m, 3002)
    m.eval()
    write_long_fixture(
        out, "perceiver-n1",
        "perceiver_ar, num_latents 1 (every logprob entry null; the decode list carries the numbers), 2 layers, "
        "n_embd 32, 2 heads, rotary_dim 8 of 16, rotary_base 500, untied lm_head.weight, bytes tokenizer.",
        cfg, m, 32,
        [("one-token", rand_tokens(1)), ("text", text_ids), ("random-33", rand_tokens(33))],
        [("prompt-1-decode-10", 1, 10), ("prompt-20-decode-10", 20, 10)],
        [("prompt-above-latents", short, lambda ids: len(ids) > 1, False)],
        extra=lambda m: {"num_latents": 1})

    # ---- recurrent-tiny: W 4, S 3, 3 layers, recurrent layer 1
    W = 4
    cfg = long_config("block_recurrent", 48, 3, 4, n_inner=96, position_embedding="rotary", rotary_dim=8,
                      block_size=W, num_states=3, recurrent_layers=[1], gate="fixed")
    m = make_long_model(block_recurrent, block_recurrent.BlockRecurrent, cfg, 4001)
    write_long_fixture(
        out, "recurrent-tiny",
        "block_recurrent, block_size 4, num_states 3, 3 layers with recurrent_layers [1], gate fixed, n_embd 48, "
        "4 heads, n_inner 96, rotary_dim 8 of 12, bytes tokenizer; cases up to 200 tokens (50 blocks), "
        "partial last blocks, prefill ending mid-block then decode across block boundaries.",
        cfg, m, 41,
        [("one-token", rand_tokens(1)), ("random-3", rand_tokens(3)), ("random-4", rand_tokens(4)),
         ("text", text_ids), ("random-33", rand_tokens(33)), ("with-eos", with_eos), ("random-90", rand_tokens(90)),
         ("random-200", rand_tokens(200))],
        [("prompt-41-decode-30", 41, 30), ("prompt-40-decode-12", 40, 12), ("prompt-2-decode-25", 2, 25)],
        [("prompt-mid-block", sl[41], lambda ids: len(ids) % W != 0),
         ("prompt-block-boundary", sl[44], lambda ids: len(ids) % W == 0),
         ("short-prompt", short, lambda ids: len(ids) < W)])

    # ---- recurrent-multi: W 5, S 2, 2 layers both recurrent (listed [1, 0]), n_positions 96
    cfg = long_config("block_recurrent", 32, 2, 2, position_embedding="rotary", rotary_base=1000.0, n_positions=96,
                      block_size=5, num_states=2, recurrent_layers=[1, 0])
    m = make_long_model(block_recurrent, block_recurrent.BlockRecurrent, cfg, 4002)
    write_long_fixture(
        out, "recurrent-multi",
        "block_recurrent, block_size 5, num_states 2, 2 layers both recurrent (recurrent_layers [1, 0], unsorted), "
        "gate absent (fixed), n_embd 32, 2 heads, rotary_base 1000, n_positions 96 caps the context, bytes tokenizer.",
        {k: v for k, v in cfg.items()}, m, 42,
        [("one-token", rand_tokens(1)), ("text", text_ids), ("random-33", rand_tokens(33)),
         ("random-96", rand_tokens(96))],
        [("prompt-12-decode-30", 12, 30)],
        [("prompt-mid-block", sl[41], lambda ids: True)])

    make_bad_configs(out)


def bigbird_fixture(out, name, cfg, seed, dense_tokens, description, cases, decode, greedy):
    m = make_long_model(gpt2, gpt2.GPT2, cfg, seed)
    dense_cfg = {k: v for k, v in cfg.items() if k != "attention"}

    def extra(model):
        return {"dense_equivalent_max_tokens": dense_tokens}

    model, g = write_long_fixture(out, name, description, cfg, m, seed + 100, cases, decode, greedy, extra)
    # per case, the same weights with dense attention: equal up to dense_tokens, different beyond
    dense = gpt2.from_tensors(dense_cfg, model.hf_state_dict())
    for c in g["cases"]:
        lp = dense.score(c["tokens"])
        top = dense.top_k_last(c["tokens"], 5)
        same = lp == c["logprobs"] and [[i, l] for i, l in top] == c["top5"]
        T = len(c["tokens"])
        assert same == (T <= dense_tokens), (name, c["name"], same)
        if T >= dense_tokens + 2:
            d = max(abs(a - b) for a, b in zip(lp[1:], c["logprobs"][1:]))
            assert d > 1e-2, (name, c["name"], d)
        c["dense_logprobs"] = lp
        c["equals_dense"] = same
    write_json(os.path.join(out, name, "golden.json"), g)


BAD_BASES = {
    "gpt2": long_config("gpt2", 32, 2, 4, position_embedding="rotary",
                        attention={"kind": "bigbird", "block_size": 4, "window_blocks": 2, "global_blocks": 1,
                                   "random_blocks": 2, "seed": 1}),
    "perceiver_ar": long_config("perceiver_ar", 32, 2, 4, position_embedding="rotary", num_latents=4),
    "block_recurrent": long_config("block_recurrent", 32, 3, 4, position_embedding="rotary", block_size=4,
                                   num_states=2, recurrent_layers=[1], gate="fixed"),
}
BIGBIRD_FIVE = {"kind": "bigbird", "block_size": 4, "window_blocks": 2, "global_blocks": 1, "random_blocks": 2,
                "seed": 1}
DROP = object()

# (file, base, field, value or DROP, why)
BAD_CONFIGS = [
    ("bigbird-block-size-0", "gpt2", "attention.block_size", 0, "b >= 1"),
    ("bigbird-block-size-missing", "gpt2", "attention.block_size", DROP, "every bigbird field is required"),
    ("bigbird-block-size-bool", "gpt2", "attention.block_size", True, "an integer, not a boolean"),
    ("bigbird-window-0", "gpt2", "attention.window_blocks", 0, "w >= 1"),
    ("bigbird-global-negative", "gpt2", "attention.global_blocks", -1, "g >= 0"),
    ("bigbird-random-fraction", "gpt2", "attention.random_blocks", 1.5, "an integer"),
    ("bigbird-random-missing", "gpt2", "attention.random_blocks", DROP, "every bigbird field is required"),
    ("bigbird-seed-missing", "gpt2", "attention.seed", DROP, "every bigbird field is required"),
    ("bigbird-seed-2pow53", "gpt2", "attention.seed", 2 ** 53, "0 <= s < 2^53"),
    ("bigbird-seed-negative", "gpt2", "attention.seed", -1, "0 <= s < 2^53"),
    ("bigbird-seed-float", "gpt2", "attention.seed", 1.0, "an integer (1.0 is a float in JSON)"),
    ("attention-kind-unknown", "gpt2", "attention.kind", "longformer", "dense or bigbird only"),
    ("attention-kind-missing", "gpt2", "attention.kind", DROP, "an attention object names its kind"),
    ("perceiver-latents-0", "perceiver_ar", "num_latents", 0, "N >= 1"),
    ("perceiver-latents-missing", "perceiver_ar", "num_latents", DROP, "num_latents is required"),
    ("perceiver-bigbird", "perceiver_ar", "attention.kind", BIGBIRD_FIVE, "bigbird is gpt2 only"),
    ("perceiver-no-position-embedding", "perceiver_ar", "position_embedding", DROP, "must be given, rotary"),
    ("perceiver-learned", "perceiver_ar", "position_embedding", "learned", "must be rotary"),
    ("recurrent-bigbird", "block_recurrent", "attention.kind", BIGBIRD_FIVE, "bigbird is gpt2 only"),
    ("recurrent-no-position-embedding", "block_recurrent", "position_embedding", DROP, "must be given, rotary"),
    ("recurrent-learned", "block_recurrent", "position_embedding", "learned", "must be rotary"),
    ("recurrent-block-size-0", "block_recurrent", "block_size", 0, "W >= 1"),
    ("recurrent-block-size-missing", "block_recurrent", "block_size", DROP, "block_size is required"),
    ("recurrent-num-states-0", "block_recurrent", "num_states", 0, "S >= 1"),
    ("recurrent-gate-learned", "block_recurrent", "gate", "learned", "fixed is the only gate"),
    ("recurrent-layers-missing", "block_recurrent", "recurrent_layers", DROP, "recurrent_layers is required"),
    ("recurrent-layers-out-of-range", "block_recurrent", "recurrent_layers", [1, 3], "indices < n_layer"),
    ("recurrent-layers-repeated", "block_recurrent", "recurrent_layers", [1, 1], "a layer at most once"),
]


def make_bad_configs(out):
    """bad-configs/: config.json files the spec refuses, and cases.json naming,
    for each, the field the refusal must name; plus the accepted bases."""
    p = os.path.join(out, "bad-configs")
    shutil.rmtree(p, ignore_errors=True)
    os.makedirs(p)
    refused = []
    for fname, base, field, value, why in BAD_CONFIGS:
        d = json.loads(json.dumps(BAD_BASES[base]))
        if field == "attention.kind" and base != "gpt2":  # bigbird on another architecture
            d["attention"] = value
        elif field.startswith("attention."):
            sub = field.split(".", 1)[1]
            if value is DROP:
                del d["attention"][sub]
            else:
                d["attention"][sub] = value
        elif value is DROP:
            del d[field]
        else:
            d[field] = value
        write_json(os.path.join(p, fname + ".json"), d, indent=2)
        refused.append({"file": fname + ".json", "model_type": base, "field": field, "why": why})
    accepted = []
    for base, d in BAD_BASES.items():
        fname = f"valid-{base.replace('_', '-')}.json"
        write_json(os.path.join(p, fname), d, indent=2)
        accepted.append(fname)
    write_json(os.path.join(p, "cases.json"), {
        "description": "config.json files the spec refuses (refused: each refusal must name `field`), and the "
                       "valid configs they were derived from (accepted). Only config.json is given: the refusal "
                       "comes before any weight is read.",
        "refused": refused, "accepted": accepted}, indent=2)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures"))
    args = ap.parse_args()
    out = args.out
    torch.set_num_threads(1)  # keep float32 reductions in one fixed order
    os.makedirs(out, exist_ok=True)

    # ---- tokenizer
    with open(os.path.join(HERE, "corpus_en.txt"), encoding="utf-8") as f:
        corpus = f.read()
    with open(os.path.join(HERE, "corpus_multi.txt"), encoding="utf-8") as f:
        corpus += f.read() * 12  # weight it so some multi-byte merges are learned
    vocab, merges = bpe.train(corpus, BPE_VOCAB_SIZE)
    global PROMPTS, BYTE_PROMPTS
    PROMPTS = PROMPTS + more_prompts(corpus)
    BYTE_PROMPTS = BYTE_PROMPTS + more_prompts(corpus)
    tok = bpe.ByteLevelBPE(vocab, merges)
    V = len(vocab)
    EOT = vocab[bpe.EOT]
    assert EOT == V - 1 == BPE_VOCAB_SIZE - 1
    bdir = os.path.join(out, "bpe")
    shutil.rmtree(bdir, ignore_errors=True)
    tok.save(bdir)
    tcases = []
    for t in TOKENIZER_TEXTS:
        ids = tok.encode(t)
        c = {"text": t, "ids": ids}
        if bpe.EOT in t:
            c["special"] = True
            c["ids_special_as_text"] = tok.encode(t, allow_special=False)
        tcases.append(c)
    write_json(os.path.join(bdir, "golden.json"), {
        "description": "GPT-2 byte-level BPE trained by tools/reference/bpe.py; "
                       "ids from its encoder (checked against @huggingface/tokenizers).",
        "vocab_size": V, "eos_token_id": EOT, "cases": tcases})

    def fresh(name):
        p = os.path.join(out, name)
        shutil.rmtree(p, ignore_errors=True)
        os.makedirs(p)
        return p

    def copy_tok(path, files):
        for f in files:
            shutil.copy(os.path.join(bdir, f), os.path.join(path, f))

    VM = ("vocab.json", "merges.txt")

    # ---- gpt2-tiny
    p = fresh("gpt2-tiny")
    cfg = hf_config(V, 64, 2, 4, 128, EOT)
    m = make_model(cfg, seed=1001)
    save_model_dir(p, cfg, m.hf_state_dict())
    copy_tok(p, VM)
    finish(p, "gpt2-tiny", "learned positions, 2 layers, n_embd 64, 4 heads, n_positions 128, tied head, F32, "
           "vocab.json+merges.txt", cfg, tok, 11, PROMPTS, extra_lengths=(128,), tokenizer_texts=TOKENIZER_TEXTS,
           eos=EOT)

    # ---- gpt2-tok: tokenizer.json only, n_inner, untied head, transformer. prefix, HF buffers
    p = fresh("gpt2-tok")
    npos = 64
    cfg = hf_config(V, 48, 3, 3, npos, EOT, n_inner=96)
    m = make_model(cfg, seed=1012, tied=False)  # a seed whose greedy text is valid UTF-8
    buffers = {}
    for l in range(3):
        buffers[f"transformer.h.{l}.attn.bias"] = torch.tril(torch.ones(npos, npos)).view(1, 1, npos, npos)
        buffers[f"transformer.h.{l}.attn.masked_bias"] = torch.tensor(-1e4)
    save_model_dir(p, cfg, m.hf_state_dict(), prefix="transformer.", buffers=buffers)
    copy_tok(p, ("tokenizer.json",))
    finish(p, "gpt2-tok", "tokenizer.json only; 3 layers, n_embd 48, 3 heads, n_inner 96; untied lm_head.weight; "
           "tensor names with the transformer. prefix; HF buffers h.N.attn.bias / masked_bias (F32) to ignore",
           cfg, tok, 12, PROMPTS, extra_lengths=(npos,), tokenizer_texts=TOKENIZER_TEXTS, eos=EOT)

    # ---- gpt2-f16 / gpt2-bf16: rounded copies of one model
    cfg = hf_config(V, 32, 2, 2, 64, EOT)
    base = make_model(cfg, seed=1003)
    for name, dt in (("gpt2-f16", torch.float16), ("gpt2-bf16", torch.bfloat16)):
        p = fresh(name)
        c = dict(cfg, torch_dtype={torch.float16: "float16", torch.bfloat16: "bfloat16"}[dt])
        save_model_dir(p, c, {k: v.to(dt) for k, v in base.hf_state_dict().items()})
        copy_tok(p, VM)
        finish(p, name, f"every tensor {str(dt)[6:]}; same float32 base model for both (seed 1003); goldens from "
               "the rounded weights upcast to float32 and computed in float32", c, tok, 13, PROMPTS,
               extra_lengths=(64,), eos=EOT)

    # ---- gpt2-sharded: 2 shards + index, non-default layer_norm_epsilon
    p = fresh("gpt2-sharded")
    cfg = hf_config(V, 32, 2, 4, 64, EOT, layer_norm_epsilon=1e-3)
    m = make_model(cfg, seed=1004)
    save_model_dir(p, cfg, m.hf_state_dict(), shards=2)
    copy_tok(p, VM)
    finish(p, "gpt2-sharded", "model-00001-of-00002 + model-00002-of-00002 + model.safetensors.index.json; "
           "4 heads of 8; layer_norm_epsilon 1e-3 (non-default)", cfg, tok, 14, PROMPTS, extra_lengths=(64,),
           eos=EOT)

    # ---- gpt2-rotary: rotary on 8 of 16 channels, no wpe, no n_positions
    p = fresh("gpt2-rotary")
    cfg = hf_config(V, 32, 2, 2, None, EOT, position_embedding="rotary", rotary_dim=8)
    m = make_model(cfg, seed=1005)
    assert "wpe.weight" not in m.hf_state_dict()
    save_model_dir(p, cfg, m.hf_state_dict())
    copy_tok(p, VM)
    finish(p, "gpt2-rotary", "position_embedding rotary, rotary_dim 8 < head size 16, rotary_base default "
           "(10000), no wpe, no n_positions (no context cap): includes a 300-token case", cfg, tok, 15, PROMPTS,
           extra_lengths=(300,), eos=EOT)

    # ---- gpt2-rotary-full: rotary_dim absent (= D), rotary_base 1000, n_positions cap 96
    p = fresh("gpt2-rotary-full")
    cfg = hf_config(V, 32, 1, 2, 96, EOT, position_embedding="rotary", rotary_base=1000.0)
    m = make_model(cfg, seed=1006)
    save_model_dir(p, cfg, m.hf_state_dict())
    copy_tok(p, VM)
    finish(p, "gpt2-rotary-full", "position_embedding rotary, rotary_dim absent (= head size 16), "
           "rotary_base 1000, n_positions 96 caps the context (no wpe), 1 layer", cfg, tok, 16, PROMPTS,
           extra_lengths=(96,), eos=EOT)

    # ---- gpt2-bytes
    p = fresh("gpt2-bytes")
    specials = {"eos": 256, "fim_prefix": 257, "fim_middle": 258, "fim_suffix": 259}
    cfg = hf_config(260, 32, 2, 4, 64, 256, tokenizer_class="bytes", special_tokens=specials)
    del cfg["bos_token_id"]
    m = make_model(cfg, seed=1007)
    save_model_dir(p, cfg, m.hf_state_dict())
    btok = bpe.ByteTokenizer(specials)
    finish(p, "gpt2-bytes", "tokenizer_class bytes: id = byte value, specials 256..259 (eos, fim_prefix, "
           "fim_middle, fim_suffix); vocab 260, 2 layers, n_embd 32, 4 heads, n_positions 64", cfg, btok, 17,
           BYTE_PROMPTS, extra_lengths=(64,), eos=256, specials=(257, 258, 259),
           tokenizer_texts=["Hello", "caf\u00e9 \u6771 \U0001F642", "line\nbreak\t", ""])

    # ---- long-context mechanisms: bigbird-*, perceiver-*, recurrent-*, bad-configs/
    make_long_fixtures(out, corpus)

    # ---- sizes
    total = 0
    for root, _, files in os.walk(out):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print(f"wrote {out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
