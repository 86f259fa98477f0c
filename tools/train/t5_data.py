"""Character vocabulary, tokenizer.json and training examples of the shipped
seq2seq model (models/t5-kjv, tools/train/train_t5.py).

Vocabulary (177 ids): T5's specials <pad> 0 (also decoder_start), </s> 1,
<unk> 2; [CLM] 3 (AlexaTM's causal-mode prefix); then one piece per
character of the KJV text (73 characters, space written as the Metaspace
"\u2581"); then 100 sentinels with <extra_id_0> the last id, as T5's. Every
character is its own piece, so the text of n bytes is n ids (bytes = tokens
in every bit-per-byte figure).

Examples (a random slice of the training text, data.split(), of RAW_MIN..
RAW_MAX characters):
  - span corruption (T5, Raffel et al. 2020, random_spans_noise_mask): 15%
    of the tokens, round(n * 0.15), in round(noise / 3) spans (mean length
    3); the span lengths and the kept runs between them are random
    partitions, the text starts with a kept run. Encoder input: the text with
    span i replaced by <extra_id_i>, then </s>. Target: <extra_id_0> span 0
    <extra_id_1> span 1 ... </s>.
  - causal (AlexaTM 20B, Soltan et al. 2022): encoder input [CLM] + the
    first part of the slice (cut uniformly in 20%..80%) + </s>; target: the
    rest of the slice (no </s>: the text goes on).
"""
import numpy as np

import data

SP = "\u2581"
PAD, EOS, UNK, CLM = 0, 1, 2, 3
SPECIALS = ["<pad>", "</s>", "<unk>", "[CLM]"]
SENTINELS = 100
NOISE_DENSITY = 0.15
MEAN_SPAN = 3.0


def alphabet():
    """The characters of the KJV text (training and held-out: the same 73)."""
    return sorted(set(data.kjv_text().decode("ascii")))


class Vocab:
    def __init__(self):
        self.chars = alphabet()
        self.pieces = list(SPECIALS) + [SP if c == " " else c for c in self.chars]
        self.first_sentinel = len(self.pieces) + SENTINELS - 1  # <extra_id_0>: the last id
        self.pieces += [f"<extra_id_{SENTINELS - 1 - i}>" for i in range(SENTINELS)]
        self.size = len(self.pieces)
        self.lut = np.full(256, UNK, dtype=np.int64)
        for i, c in enumerate(self.chars):
            self.lut[ord(c)] = len(SPECIALS) + i

    def sentinel(self, i):
        return self.first_sentinel - i

    def is_sentinel(self, t):
        return t > self.first_sentinel - SENTINELS

    def encode(self, b):
        """bytes -> ids (one per byte), no </s>."""
        return self.lut[np.frombuffer(b, dtype=np.uint8)].tolist()

    def decode(self, ids):
        out = []
        for t in ids:
            p = self.pieces[t]
            out.append(" " if p == SP else p)
        return "".join(out)

    def tokenizer_json(self):
        """A sentencepiece-style Unigram tokenizer.json: Metaspace without a prepended "\u2581" (the
        text's own spaces only), single-character pieces of equal score (the segmentation of a text
        is its characters), </s> appended to every input as T5's post-processor does."""
        n = len(SPECIALS)
        special_ids = list(range(n)) + list(range(self.size - SENTINELS, self.size))
        added = [{"id": i, "content": self.pieces[i], "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for i in special_ids]
        meta = {"type": "Metaspace", "replacement": SP, "prepend_scheme": "never", "split": False}
        vocab = [[p, 0.0 if i < n or i >= self.size - SENTINELS else -4.0] for i, p in enumerate(self.pieces)]
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
            "pre_tokenizer": meta,
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                "special_tokens": {"</s>": {"id": "</s>", "ids": [EOS], "tokens": ["</s>"]}}},
            "decoder": meta,
            "model": {"type": "Unigram", "unk_id": UNK, "vocab": vocab, "byte_fallback": False},
        }


def random_partition(rng, total, parts):
    """`parts` positive integers summing to `total`, uniformly (T5's _random_segmentation)."""
    cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False)) if parts > 1 else np.array([], int)
    return np.diff(np.concatenate([[0], cuts, [total]])).astype(int).tolist()


def noise_spans(rng, n, density=NOISE_DENSITY, mean_span=MEAN_SPAN):
    """[(start, end)] of the noise spans of a text of n tokens (T5's random_spans_noise_mask)."""
    noise = min(max(int(round(n * density)), 1), n - 1)
    spans = max(int(round(noise / mean_span)), 1)
    spans = min(spans, noise, n - noise)
    noise_lens = random_partition(rng, noise, spans)
    keep_lens = random_partition(rng, n - noise, spans)
    out, pos = [], 0
    for k, z in zip(keep_lens, noise_lens):
        pos += k
        out.append((pos, pos + z))
        pos += z
    return out


def corrupt(vocab, ids, spans):
    """(encoder input, target) of T5 span corruption for the given noise spans."""
    inp, tgt, pos = [], [], 0
    for i, (a, b) in enumerate(spans):
        inp += ids[pos:a] + [vocab.sentinel(i)]
        tgt += [vocab.sentinel(i)] + ids[a:b]
        pos = b
    return inp + ids[pos:] + [EOS], tgt + [EOS]


def causal(ids, cut):
    return [CLM] + ids[:cut] + [EOS], ids[cut:]


class Examples:
    def __init__(self, vocab, train_bytes, seed, clm_rate, raw_min, raw_max):
        self.vocab = vocab
        self.ids = np.array(vocab.encode(train_bytes), dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.clm_rate, self.raw_min, self.raw_max = clm_rate, raw_min, raw_max

    def next(self):
        """(mode, encoder input, target)."""
        n = int(self.rng.integers(self.raw_min, self.raw_max + 1))
        s = int(self.rng.integers(0, len(self.ids) - n))
        ids = self.ids[s:s + n].tolist()
        if self.rng.random() < self.clm_rate:
            return ("clm",) + causal(ids, int(self.rng.integers(n // 5, 4 * n // 5 + 1)))
        return ("span",) + corrupt(self.vocab, ids, noise_spans(self.rng, n))
