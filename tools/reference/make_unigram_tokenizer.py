"""Writes test/fixtures/unigram-tok: an XGLM-style sentencepiece Unigram
tokenizer.json (Metaspace pre-tokenizer and decoder, "</s> $A" post-processor
as XGLM's tokenizer prepends </s>, <unk> for characters without a piece), its
tokenizer_config.json, and golden.json with the ids of a few texts computed
here by an independent Viterbi (the best-scoring segmentation of each
▁-prefixed word; a character without a piece is <unk> scored min - 10).

The vocabulary is hand-written: every piece has ▁ only at its start, so the
segmentation of the whole text is the segmentation of its words, and no two
segmentations of a test text tie.

    /usr/bin/python3 tools/reference/make_unigram_tokenizer.py [--out test/fixtures/unigram-tok]
"""
import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SP = "\u2581"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
UNK = 3

PIECES = [(SP, -3.0)]
PIECES += [(c, -4.0 - 0.013 * i) for i, c in enumerate("abcdefghijklmnopqrstuvwxyzHGKéüößï,")]
PIECES += [(SP + "Hello", -5.0), (SP + "hel", -6.0), ("lo", -4.5), (SP + "wor", -5.5), ("ld", -4.8),
           (SP + "world", -6.5), ("won", -5.2), ("der", -5.3), ("ful", -5.1), (SP + "won", -5.4), (SP + "Gr", -6.1),
           ("üße", -6.2), (SP + "aus", -5.9), (SP + "K", -5.7), ("öln", -6.3), (SP + "caf", -6.4), (SP + "na", -5.6),
           ("ïve", -6.6), ("ll", -4.4), (SP + "he", -5.05)]

TEXTS = ["Hello world", "hello wonderful world", "Grüße aus Köln, naïve café", "Zebra!", "  two  spaces",
         "wonderful"]


def vocab():
    v = [(s, 0.0) for s in SPECIALS] + PIECES
    assert len({p for p, _ in v}) == len(v), "repeated piece"
    return v


def viterbi(word, v):
    """Ids of the best-scoring segmentation of one word (the first piece starts at 0)."""
    ids = {p: i for i, (p, _) in enumerate(v) if i >= len(SPECIALS)}
    unk_score = min(s for _, s in PIECES) - 10
    best = [(0.0, [])] + [None] * len(word)
    for end in range(1, len(word) + 1):
        options = []
        for start in range(end):
            if best[start] is None:
                continue
            piece = word[start:end]
            if piece in ids:
                options.append((best[start][0] + v[ids[piece]][1], best[start][1] + [ids[piece]]))
            elif end - start == 1:
                options.append((best[start][0] + unk_score, best[start][1] + [UNK]))
        if options:
            options.sort(key=lambda o: -o[0])
            assert len(options) == 1 or options[0][0] != options[1][0], f"tie in {word!r}"
            best[end] = options[0]
    return best[-1][1]


def encode(text, v):
    s = text.replace(" ", SP)
    if not s.startswith(SP):
        s = SP + s
    out = []
    for i, w in enumerate(s.split(SP)):
        if i == 0 and w == "":
            continue  # the text starts with ▁: the first word is empty
        out += viterbi(SP + w, v)
    return out


def tokenizer_json(v):
    special = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                "special": True} for i, s in enumerate(SPECIALS)]
    meta = {"type": "Metaspace", "replacement": SP, "prepend_scheme": "always", "split": True}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": special, "normalizer": None,
        "pre_tokenizer": meta,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
        "decoder": meta,
        "model": {"type": "Unigram", "unk_id": UNK, "vocab": [[p, s] for p, s in v], "byte_fallback": False},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures", "unigram-tok"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    v = vocab()
    files = {
        "tokenizer.json": tokenizer_json(v),
        "tokenizer_config.json": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                                  "tokenizer_class": "XGLMTokenizer"},
        "golden.json": {"description": "ids of each text without special tokens (the post-processor prepends </s> = 2)",
                        "cases": [{"text": t, "ids": encode(t, v)} for t in TEXTS]},
    }
    for name, obj in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1 if name != "tokenizer.json" else None)
            f.write("\n")
    for c in files["golden.json"]["cases"]:
        print(c["text"], c["ids"], [v[i][0] for i in c["ids"]])


if __name__ == "__main__":
    main()
