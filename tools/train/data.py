"""KJV corpus, the fixed held-out split, and training batches (with FIM).

Corpus: `bible -f Gen1:1-Rev22:21` from Debian's bible-kjv / bible-kjv-text
(public domain), one verse a line ("Ge1:1 In the beginning ..."), 4,404,412
bytes, pure ASCII. Held-out: the contiguous tail from the first line of
James ("Jas1:1 ...") to the end (James, 1-2 Peter, 1-3 John, Jude,
Revelation): 122,522 bytes, written verbatim to models/data/kjv-heldout.txt.
Training text: everything before it (Genesis .. Hebrews, 4,281,890 bytes).

Byte tokenizer (docs/spec.md, `tokenizer_class: bytes`): id = byte
value; eos 256, fim_prefix 257, fim_middle 258, fim_suffix 259.

FIM (Bavarian et al. 2022, PSM, character-level split points): with
probability `fim_rate` a training row is a packed run of FIM documents, each
`<fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle <eos>`, where a
document is a random contiguous slice of the training text (its length, with
the 4 special tokens, uniform in 64..256 tokens; the last document of a row
takes what is left) cut at two uniform random character positions into
prefix / middle / suffix (with --fim-short-middle P, a share P of the
documents instead get a middle of 1-32 bytes at a random position; with
--fim-word-middle Q, a share Q a middle of 1-3 whole words with their leading
space, the infill a user most often asks for).
Otherwise the row is a plain contiguous slice of
the training text. Every position of a row is trained on.
"""
import hashlib
import os
import re
import subprocess

import numpy as np

EOS, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX = 256, 257, 258, 259
VOCAB = 260
SPECIAL_TOKENS = {"eos": EOS, "fim_prefix": FIM_PREFIX, "fim_middle": FIM_MIDDLE, "fim_suffix": FIM_SUFFIX}
HELDOUT_FIRST_LINE = "Jas1:1 "
KJV_BYTES = 4404412
HELDOUT_BYTES = 122522

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HELDOUT_PATH = os.path.join(ROOT, "models", "data", "kjv-heldout.txt")
CACHE = "/tmp/roost-kjv.txt"


def kjv_text():
    """The whole KJV as bytes, exactly as `bible -f Gen1:1-Rev22:21` prints it."""
    if os.path.exists(CACHE) and os.path.getsize(CACHE) == KJV_BYTES:
        with open(CACHE, "rb") as f:
            return f.read()
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True).stdout
    if len(out) != KJV_BYTES:
        raise RuntimeError(f"bible printed {len(out)} bytes, expected {KJV_BYTES} "
                           "(apt-get install bible-kjv bible-kjv-text)")
    with open(CACHE + ".tmp", "wb") as f:
        f.write(out)
    os.replace(CACHE + ".tmp", CACHE)
    return out


def split():
    """(train bytes, held-out bytes): held-out = the tail from James 1:1."""
    text = kjv_text()
    cut = text.index(b"\n" + HELDOUT_FIRST_LINE.encode()) + 1
    train, held = text[:cut], text[cut:]
    assert len(held) == HELDOUT_BYTES, len(held)
    return train, held


def write_heldout(path=HELDOUT_PATH):
    _, held = split()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not (os.path.exists(path) and open(path, "rb").read() == held):
        with open(path, "wb") as f:
            f.write(held)
    return path


def sha256(b):
    return hashlib.sha256(b).hexdigest()


WORD = re.compile(rb" [A-Za-z]+")


def fim_cuts(doc, rng, short_middle=0.0, word_middle=0.0):
    """Where PSM cuts a document (a list of byte values): (i, j), prefix [0, i), middle [i, j).
    With probability word_middle, 1-3 whole words with their leading space (" created the"),
    so that the middle starts and ends at word boundaries as a user's infill does; else with
    probability short_middle a middle of 1-32 bytes at a random position (a word or a phrase
    cut anywhere); else two uniform cut points."""
    n = len(doc)
    if word_middle > 0 and rng.random() < word_middle:  # (no draw at 0: earlier phases' data stays reproducible)
        words = [m.span() for m in WORD.finditer(bytes(doc))]
        if words:
            a = int(rng.integers(0, len(words)))
            b = min(len(words) - 1, a + int(rng.choice(3, p=(0.6, 0.25, 0.15))))
            return words[a][0], words[b][1]
    if rng.random() < short_middle and n > 2:
        i = int(rng.integers(0, n - 1))
        return i, min(n, i + int(rng.integers(1, 33)))
    i, j = sorted(rng.integers(0, n + 1, size=2))
    return int(i), int(j)


def psm_prompt(prefix, suffix):
    """The PSM prompt of docs/spec.md (lists of token ids): what a served `suffix` request
    sends, and what every FIM training document starts with."""
    return [FIM_PREFIX] + prefix + [FIM_SUFFIX] + suffix + [FIM_MIDDLE]


def psm(doc, i, j):
    return psm_prompt(doc[:i], doc[j:]) + doc[i:j] + [EOS]


def fim_document(doc, rng, short_middle=0.0, word_middle=0.0):
    """PSM transformation of a byte array (list of ints), cut by fim_cuts."""
    return psm(doc, *fim_cuts(doc, rng, short_middle, word_middle))


class Batches:
    """Random training rows of `length` tokens (inputs row[:-1], targets row[1:])."""

    def __init__(self, train_bytes, fim_rate, seed, doc_min=64, doc_max=256, fim_short_middle=0.0, fim_word_middle=0.0):
        self.text = np.frombuffer(train_bytes, dtype=np.uint8)
        self.fim_rate = fim_rate
        self.fim_short_middle = fim_short_middle
        self.fim_word_middle = fim_word_middle
        self.rng = np.random.default_rng(seed)
        self.doc_min, self.doc_max = doc_min, doc_max

    def plain(self, length):
        s = int(self.rng.integers(0, len(self.text) - length))
        return self.text[s:s + length].astype(np.int64).tolist()

    def fim_row(self, length):
        row = []
        while len(row) < length:
            left = length - len(row)
            n = min(left, int(self.rng.integers(self.doc_min, self.doc_max + 1)))
            if left - n < 16:  # no tiny trailing document
                n = left
            row += fim_document(self.plain(n - 4), self.rng, self.fim_short_middle, self.fim_word_middle)
        assert len(row) == length
        return row

    def row(self, length):
        return self.fim_row(length) if self.rng.random() < self.fim_rate else self.plain(length)

    def batch(self, B, length):
        """int64 array [B, length]."""
        return np.array([self.row(length) for _ in range(B)], dtype=np.int64)

    def plain_batch(self, B, length):
        return np.array([self.plain(length) for _ in range(B)], dtype=np.int64)

    def fim_document_batch(self, B, length):
        """[B, length] PSM rows, [B, length - 4] the documents in order, [B, 2] the cuts (i, j).
        Each row is one whole FIM document starting at position 0, laid out as a served `suffix`
        request is. In packed rows the latest fim_suffix competes with those of the documents
        before it; here there is one, which is the lookup the model has to learn."""
        docs = [self.plain(length - 4) for _ in range(B)]
        cuts = [fim_cuts(d, self.rng, self.fim_short_middle, self.fim_word_middle) for d in docs]
        rows = [psm(d, i, j) for d, (i, j) in zip(docs, cuts)]
        return np.array(rows, dtype=np.int64), np.array(docs, dtype=np.int64), np.array(cuts, dtype=np.int64)
