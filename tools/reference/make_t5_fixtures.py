"""Writes test/fixtures/t5-* : small random HuggingFace-layout T5 checkpoints
(tools/reference/t5.py), v1.0 (ReLU) and v1.1 (gated-GELU) shapes, tied and
untied heads, with a sentencepiece Unigram tokenizer.json that has T5's
specials (<pad> 0, </s> 1, <unk> 2) and <extra_id_N> sentinels at the top of
the vocabulary (<extra_id_0> the last id, as T5's), and t5-golden.json:

  score:  [{"name", "input", "target", "logprobs"}]  log p(target t | input, target < t)
  greedy: [{"name", "input", "n", "tokens", "margins", "logprobs"}] decoder tokens, argmax margins, their log-probs

Inputs are long enough that relative distances pass max_distance (the last
bucket) in both stacks. A random checkpoint of any other size:

    /usr/bin/python3 tools/reference/make_t5_fixtures.py [--out test/fixtures]
    /usr/bin/python3 tools/reference/make_t5_fixtures.py --one /tmp/t5x --d-model 40 --heads 5 --d-kv 6 \
        --d-ff 72 --layers 3 --decoder-layers 1 --gated --untied --seed 9
"""
import argparse
import json
import os
import random
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import safetensors_io  # noqa: E402
import t5  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
SP = "\u2581"
SPECIALS = ["<pad>", "</s>", "<unk>"]
SENTINELS = 8
PIECES = [(SP, -3.0)]
PIECES += [(c, -4.0 - 0.013 * i) for i, c in enumerate("abcdefghijklmnopqrstuvwxyzAGHILT,.:;")]
PIECES += [(SP + w, -5.0 - 0.01 * i) for i, w in enumerate(
    ["the", "and", "of", "to", "in", "that", "he", "shall", "unto", "for", "his", "I", "they", "be", "is", "with",
     "not", "all", "him", "it", "LORD", "God", "them", "was", "which", "said", "And", "thou", "thee", "my"])]
PIECES += [("th", -4.6), ("er", -4.7), ("ing", -4.8), ("ed", -4.9), ("es", -4.95)]


def vocab():
    v = [(s, 0.0) for s in SPECIALS] + PIECES
    v += [(f"<extra_id_{SENTINELS - 1 - i}>", 0.0) for i in range(SENTINELS)]
    assert len({p for p, _ in v}) == len(v), "repeated piece"
    return v


TEXT = "And he said unto them, Take the pots with water."


def encode(text, v):
    """Ids of text as the Unigram model segments it (best-scoring pieces per
    ▁-prefixed word; every character of TEXT has a piece, no ties), then </s>."""
    ids = {p: i for i, (p, _) in enumerate(v) if i >= len(SPECIALS) and not p.startswith("<extra_id_")}
    out = []
    for w in text.split(" "):
        w = SP + w
        best = [(0.0, [])] + [None] * len(w)
        for end in range(1, len(w) + 1):
            opts = [(best[a][0] + v[ids[w[a:end]]][1], best[a][1] + [ids[w[a:end]]])
                    for a in range(end) if best[a] is not None and w[a:end] in ids]
            if opts:
                opts.sort(key=lambda o: -o[0])
                assert len(opts) == 1 or opts[0][0] != opts[1][0], f"tie in {w!r}"
                best[end] = opts[0]
        out += best[-1][1]
    return out + [1]


def tokenizer_json(v):
    special_ids = list(range(len(SPECIALS))) + list(range(len(v) - SENTINELS, len(v)))
    added = [{"id": i, "content": v[i][0], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i in special_ids]
    meta = {"type": "Metaspace", "replacement": SP, "prepend_scheme": "always", "split": True}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": meta,
        "post_processor": {  # T5 appends </s> to every input
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        "decoder": meta,
        "model": {"type": "Unigram", "unk_id": 2, "vocab": [[p, s] for p, s in v], "byte_fallback": False},
    }


def config(d_model, heads, d_kv, d_ff, layers, decoder_layers, buckets, max_distance, gated, tied, vocab_size):
    d = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True,
         "vocab_size": vocab_size, "d_model": d_model, "num_heads": heads, "d_kv": d_kv, "d_ff": d_ff,
         "num_layers": layers, "num_decoder_layers": decoder_layers, "relative_attention_num_buckets": buckets,
         "relative_attention_max_distance": max_distance, "layer_norm_epsilon": 1e-6,
         "feed_forward_proj": "gated-gelu" if gated else "relu", "tie_word_embeddings": tied,
         "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1, "dropout_rate": 0.1,
         "torch_dtype": "float32"}
    return {k: d[k] for k in sorted(d)}


FIXTURES = [
    ("t5-v1-tied", 5101, "T5 v1.0: ReLU feed-forward, tied head (scaled by d_model^-0.5), d_model 32, 4 heads of 8, "
     "d_ff 48, 2 encoder and 2 decoder blocks, 32 buckets, max_distance 20",
     dict(d_model=32, heads=4, d_kv=8, d_ff=48, layers=2, decoder_layers=2, buckets=32, max_distance=20, gated=False,
          tied=True)),
    ("t5-v11-untied", 5102, "T5 v1.1: gated-GELU feed-forward, untied lm_head, d_model 24, 3 heads of 10 (3*10 != 24), "
     "d_ff 40, 2 encoder and 3 decoder blocks, 16 buckets, max_distance 12",
     dict(d_model=24, heads=3, d_kv=10, d_ff=40, layers=2, decoder_layers=3, buckets=16, max_distance=12, gated=True,
          tied=False)),
    ("t5-v11-tied", 5103, "T5 v1.1 shape with a tied head: gated-GELU, d_model 20, 2 heads of 6, d_ff 36, "
     "1 encoder and 2 decoder blocks, 8 buckets, max_distance 9",
     dict(d_model=20, heads=2, d_kv=6, d_ff=36, layers=1, decoder_layers=2, buckets=8, max_distance=9, gated=True,
          tied=True)),
    ("t5-v1-untied", 5104, "T5 v1.0 shape with an untied head: ReLU, d_model 16, 2 heads of 12, d_ff 30, "
     "3 encoder and 1 decoder block, 32 buckets, max_distance 128",
     dict(d_model=16, heads=2, d_kv=12, d_ff=30, layers=3, decoder_layers=1, buckets=32, max_distance=128,
          gated=False, tied=False)),
]


def rand_ids(rng, n, V):
    return [rng.randrange(len(SPECIALS), V - SENTINELS) for _ in range(n)]


def write(out, seed, description, shape):
    v = vocab()
    cfg = config(vocab_size=len(v), **shape)
    model = t5.T5(t5.T5Config(cfg))
    t5.init_random(model, seed)
    model.eval()
    os.makedirs(out, exist_ok=True)
    safetensors_io.save(os.path.join(out, "model.safetensors"), model.hf_state_dict())
    rng = random.Random(seed)
    V = len(v)
    sent = [V - 1 - i for i in range(SENTINELS)]  # <extra_id_0>, <extra_id_1>, ..
    inputs = [("text", encode(TEXT, v)), ("one-token", [1]), ("random-7", rand_ids(rng, 7, V) + [1]),
              ("spans", rand_ids(rng, 5, V) + [sent[0]] + rand_ids(rng, 6, V) + [sent[1]] + rand_ids(rng, 3, V) + [1]),
              ("random-45", rand_ids(rng, 44, V) + [1])]
    score = []
    for iname, inp in inputs:
        for tname, tgt in (("target-1", rand_ids(rng, 1, V)), ("target-30", [sent[0]] + rand_ids(rng, 29, V))):
            score.append({"name": f"{iname}/{tname}", "input": inp, "target": tgt, "logprobs": model.score(inp, tgt)})
    greedy = []
    for iname, inp in inputs:
        toks, margins = model.greedy(inp, 24, return_margins=True)
        greedy.append({"name": iname, "input": inp, "n": 24, "tokens": toks, "margins": margins,
                       "logprobs": model.score(inp, toks)})
    golden = {"description": description + "; unigram tokenizer with <extra_id_N> sentinels; F32",
              "seed": seed, "text": TEXT, "score": score, "greedy": greedy}
    files = {"config.json": cfg, "tokenizer.json": tokenizer_json(v),
             "tokenizer_config.json": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                                       "extra_ids": SENTINELS, "tokenizer_class": "T5Tokenizer"},
             "t5-golden.json": golden}
    for fname, obj in files.items():
        with open(os.path.join(out, fname), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=None if fname == "tokenizer.json" else 1)
            f.write("\n")
    print(f"wrote {out}: min greedy margin {min(min(g['margins']) for g in greedy):.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures"))
    ap.add_argument("--one", help="write one random checkpoint of the shape below to this folder")
    ap.add_argument("--d-model", type=int, default=40)
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--d-kv", type=int, default=6)
    ap.add_argument("--d-ff", type=int, default=72)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--decoder-layers", type=int, default=2)
    ap.add_argument("--buckets", type=int, default=32)
    ap.add_argument("--max-distance", type=int, default=24)
    ap.add_argument("--gated", action="store_true")
    ap.add_argument("--untied", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.one:
        shape = dict(d_model=a.d_model, heads=a.heads, d_kv=a.d_kv, d_ff=a.d_ff, layers=a.layers,
                     decoder_layers=a.decoder_layers, buckets=a.buckets, max_distance=a.max_distance,
                     gated=a.gated, tied=not a.untied)
        write(a.one, a.seed, "random T5 " + json.dumps(shape), shape)
        return
    for name, seed, description, shape in FIXTURES:
        write(os.path.join(a.out, name), seed, description, shape)


if __name__ == "__main__":
    main()
