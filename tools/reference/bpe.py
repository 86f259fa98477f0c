"""GPT-2 byte-level BPE: a small plain trainer and an encoder/decoder.

Pre-tokenization is GPT-2's regex
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
implemented by hand (Python's re has no \\p{L}): \\p{L} = Unicode general
category L*, \\p{N} = N*, \\s = the Unicode White_Space property (what
Oniguruma, used by HF tokenizers, means by \\s).

Bytes map to printable characters with GPT-2's bytes_to_unicode; merges are
applied by rank (lowest first). Special tokens (added tokens such as
<|endoftext|>) found in the text are split out before pre-tokenization, as HF
tokenizers does (encode(..., allow_special=False) treats them as text).

Files: vocab.json + merges.txt ("#version: 0.2" first line) and an equivalent
tokenizer.json (HF tokenizers format).
"""
import collections
import json
import os
import unicodedata

# Unicode White_Space property.
WHITE_SPACE = frozenset(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680]
    + list(range(0x2000, 0x200B))
    + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)
CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")
EOT = "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}
# GPT-2's order of the 256 byte symbols (ids 0..255 of a freshly trained vocab).
BYTE_SYMBOLS = list(BYTE_ENCODER.values())


def _is_space(c):
    return ord(c) in WHITE_SPACE


def _is_letter(c):
    return unicodedata.category(c)[0] == "L"


def _is_number(c):
    return unicodedata.category(c)[0] == "N"


def _is_other(c):
    return not (_is_space(c) or _is_letter(c) or _is_number(c))


def pretokenize(text):
    """Split text exactly as GPT-2's regex (leftmost alternative first)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        # 's|'t|'re|'ve|'m|'ll|'d
        if c == "'":
            hit = next((s for s in CONTRACTIONS if text.startswith(s, i + 1)), None)
            if hit is not None:
                out.append(text[i:i + 1 + len(hit)])
                i += 1 + len(hit)
                continue
        # ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' in that order
        matched = False
        for cls in (_is_letter, _is_number, _is_other):
            if c == " " and i + 1 < n and cls(text[i + 1]):
                j = i + 1
            elif cls(c):
                j = i
            else:
                continue
            while j < n and cls(text[j]):
                j += 1
            out.append(text[i:j])
            i = j
            matched = True
            break
        if matched:
            continue
        # here c is whitespace: '\s+(?!\S)' then '\s+'
        j = i
        while j < n and _is_space(text[j]):
            j += 1
        if j == n or j - i == 1:
            out.append(text[i:j])
            i = j
        else:
            out.append(text[i:j - 1])
            i = j - 1
    return out


def to_byte_symbols(piece):
    return "".join(BYTE_ENCODER[b] for b in piece.encode("utf-8"))


# ------------------------------------------------------------------ trainer

def train(text, vocab_size, special_tokens=(EOT,)):
    """Train a byte-level BPE. Returns (vocab {symbol: id}, merges [(a, b)]).

    ids 0..255 are the byte symbols in GPT-2's order, then one id per merge
    result, then the special tokens (so <|endoftext|> is the last id).
    Ties between equally frequent pairs go to the pair whose (id a, id b) is
    smallest.
    """
    target = vocab_size - len(special_tokens)
    if target < 256:
        raise ValueError("vocab_size too small")
    counts = collections.Counter(to_byte_symbols(p) for p in pretokenize(text))
    vocab = {s: i for i, s in enumerate(BYTE_SYMBOLS)}
    words = [(list(w), c) for w, c in counts.items()]
    merges = []
    while len(vocab) < target:
        pairs = collections.Counter()
        for syms, c in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], vocab[kv[0][0]], vocab[kv[0][1]]))[0]
        merges.append(best)
        new = best[0] + best[1]
        if new not in vocab:
            vocab[new] = len(vocab)
        for syms, _ in words:
            k = 0
            while k < len(syms) - 1:
                if syms[k] == best[0] and syms[k + 1] == best[1]:
                    syms[k:k + 2] = [new]
                k += 1
    for s in special_tokens:
        vocab[s] = len(vocab)
    return vocab, merges


# ------------------------------------------------------------------ encoder

class ByteLevelBPE:
    def __init__(self, vocab, merges, special_tokens=(EOT,)):
        self.vocab = dict(vocab)
        self.inv = {i: s for s, i in self.vocab.items()}
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.merges = [tuple(m) for m in merges]
        self.special = {s: self.vocab[s] for s in special_tokens if s in self.vocab}
        self._cache = {}

    # ---- files
    @classmethod
    def from_files(cls, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            vocab = json.load(f)
        merges = []
        with open(merges_path, encoding="utf-8") as f:
            for line in f.read().split("\n"):
                if not line or line.startswith("#version"):
                    continue
                a, b = line.split(" ")
                merges.append((a, b))
        return cls(vocab, merges, special_tokens=[EOT] if EOT in vocab else [])

    @classmethod
    def from_tokenizer_json(cls, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        model = tj["model"]
        if model.get("type") != "BPE":
            raise ValueError("tokenizer.json: model.type is not BPE")
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        vocab = dict(model["vocab"])
        specials = []
        for t in tj.get("added_tokens", []):
            vocab.setdefault(t["content"], t["id"])
            if t.get("special"):
                specials.append(t["content"])
        return cls(vocab, merges, special_tokens=specials)

    @classmethod
    def from_dir(cls, path):
        tj = os.path.join(path, "tokenizer.json")
        if os.path.exists(tj):
            return cls.from_tokenizer_json(tj)
        return cls.from_files(os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt"))

    def save(self, path, vocab_and_merges=True, tokenizer_json=True):
        os.makedirs(path, exist_ok=True)
        if vocab_and_merges:
            with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
                json.dump(self.vocab, f, ensure_ascii=False)
            with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
                f.write("#version: 0.2\n")
                for a, b in self.merges:
                    f.write(f"{a} {b}\n")
        if tokenizer_json:
            with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
                json.dump(self.tokenizer_json(), f, ensure_ascii=False, indent=1)

    def tokenizer_json(self):
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": True, "special": True}
                for s, i in sorted(self.special.items(), key=lambda kv: kv[1])
            ],
            "normalizer": None,
            "pre_tokenizer": dict(byte_level),
            "post_processor": dict(byte_level, trim_offsets=False),
            "decoder": dict(byte_level),
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": "",
                "end_of_word_suffix": "",
                "fuse_unk": False,
                "byte_fallback": False,
                "vocab": dict(self.vocab),
                "merges": [f"{a} {b}" for a, b in self.merges],
            },
        }

    # ---- encode / decode
    def bpe(self, symbols):
        """Apply merges by rank to one pre-token given as byte symbols."""
        if symbols in self._cache:
            return self._cache[symbols]
        word = list(symbols)
        while len(word) > 1:
            best, best_rank = None, None
            for k in range(len(word) - 1):
                r = self.ranks.get((word[k], word[k + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = (word[k], word[k + 1]), r
            if best is None:
                break
            merged, k = [], 0
            while k < len(word):
                if k < len(word) - 1 and (word[k], word[k + 1]) == best:
                    merged.append(word[k] + word[k + 1])
                    k += 2
                else:
                    merged.append(word[k])
                    k += 1
            word = merged
        self._cache[symbols] = word
        return word

    def _encode_plain(self, text):
        ids = []
        for piece in pretokenize(text):
            for s in self.bpe(to_byte_symbols(piece)):
                ids.append(self.vocab[s])
        return ids

    def encode(self, text, allow_special=True):
        if not allow_special or not self.special:
            return self._encode_plain(text)
        ids, i, start = [], 0, 0
        specials = sorted(self.special, key=len, reverse=True)
        while i < len(text):
            hit = next((s for s in specials if text.startswith(s, i)), None)
            if hit is None:
                i += 1
                continue
            ids += self._encode_plain(text[start:i])
            ids.append(self.special[hit])
            i += len(hit)
            start = i
        ids += self._encode_plain(text[start:])
        return ids

    def decode_bytes(self, ids):
        out = bytearray()
        for i in ids:
            s = self.inv[i]
            if s in self.special:
                out += s.encode("utf-8")
            else:
                out += bytes(BYTE_DECODER[c] for c in s)
        return bytes(out)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def __len__(self):
        return len(self.vocab)


class ByteTokenizer:
    """`"tokenizer_class": "bytes"`: id = byte value, specials from 256 (no BOS)."""

    def __init__(self, special_tokens):
        self.special_tokens = dict(special_tokens)

    def encode(self, text, allow_special=False):
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids):
        return bytes(i for i in ids if i < 256)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def load_tokenizer(path, config=None):
    """Tokenizer of a checkpoint folder: bytes, tokenizer.json, or vocab.json+merges.txt."""
    if config is None:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    if config.get("tokenizer_class") == "bytes":
        return ByteTokenizer(config.get("special_tokens", {}))
    return ByteLevelBPE.from_dir(path)
