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

import bpe  # noqa: E402
import checkpoint  # noqa: E402
import gpt2  # noqa: E402

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

    # ---- sizes
    total = 0
    for root, _, files in os.walk(out):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print(f"wrote {out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
