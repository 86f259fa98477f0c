"""Causal BigBird block-sparse attention pattern of docs/spec.md.

A query at position p (block i = p // b) of layer l, head h attends to every
key k <= p whose block j is in
    window: max(0, i-w+1) <= j <= i
    global: j < g
    random: the r candidates j in [g, i-w] with the smallest key(l, h, i, j)
            (ties: smaller j first); all candidates when there are <= r.
key(l, h, i, j) chains splitmix64 over uint64: x = s; for v in (l, h, i, j):
x = splitmix64(x ^ v).

Three layers of the same rule:
  - `splitmix64`, `key`, `block_set`: scalar pure-Python, written to read like
    the spec (checked against test/fixtures/bigbird-vectors.json);
  - `block_mask`: numpy-vectorized (uint64 wraps mod 2^64) block-level mask
    [H, nb, nb] used to build token masks for long sequences quickly;
  - `BigBirdCausal`: the pattern class gpt2.py's ATTENTION_PATTERNS["bigbird"]
    uses: `allowed(layer, q_pos, k_pos)` -> bool [H, Tq, Tk]. The attention
    itself stays the dense reference: a masked softmax over the allowed keys
    (exact, trainable; O(T^2) memory, fine for the reference's sizes).
"""
import numpy as np
import torch

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB

FIELDS = ("block_size", "window_blocks", "global_blocks", "random_blocks", "seed")
MINIMUM = {"block_size": 1, "window_blocks": 1, "global_blocks": 0, "random_blocks": 0, "seed": 0}
SEED_LIMIT = 1 << 53


# ---------------------------------------------------------------- scalar rule

def splitmix64(z):
    z = (z + GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * MUL1) & MASK64
    z = ((z ^ (z >> 27)) * MUL2) & MASK64
    return z ^ (z >> 31)


def key(seed, l, h, i, j):
    x = seed
    for v in (l, h, i, j):
        x = splitmix64(x ^ v)
    return x


def block_set(att, l, h, i):
    """Sorted key blocks j that queries of block i (layer l, head h) attend to.

    att: the attention dict {block_size, window_blocks, global_blocks,
    random_blocks, seed} (block_size does not enter the block rule)."""
    w, g, r, s = att["window_blocks"], att["global_blocks"], att["random_blocks"], att["seed"]
    window = set(range(max(0, i - w + 1), i + 1))
    glob = set(range(min(g, i + 1)))
    cand = list(range(g, i - w + 1))
    if len(cand) <= r:
        rand = set(cand)
    else:
        rand = set(sorted(cand, key=lambda j: (key(s, l, h, i, j), j))[:r])
    return sorted(window | glob | rand)


# ------------------------------------------------------------ vectorized rule

def _splitmix64_np(z):
    """splitmix64 on a uint64 array (numpy uint64 arithmetic wraps mod 2^64)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MUL1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MUL2)
        return z ^ (z >> np.uint64(31))


def _keys_np(seed, l, h, i, js):
    x = np.full(js.shape, seed, dtype=np.uint64)
    for v in (np.uint64(l), np.uint64(h), np.uint64(i)):
        x = _splitmix64_np(x ^ v)
    return _splitmix64_np(x ^ js.astype(np.uint64))


def block_mask(att, l, n_head, nb):
    """bool [n_head, nb, nb]: [h, i, j] = block j is in the set of (l, h, i)."""
    w, g, r, s = att["window_blocks"], att["global_blocks"], att["random_blocks"], att["seed"]
    m = np.zeros((n_head, nb, nb), dtype=bool)
    ii = np.arange(nb)[:, None]
    jj = np.arange(nb)[None, :]
    base = ((jj <= ii) & (jj >= ii - w + 1)) | ((jj < g) & (jj <= ii))  # window | global, [nb, nb]
    m[:] = base[None]
    for i in range(nb):
        hi = i - w  # candidates g..hi
        if hi < g:
            continue
        js = np.arange(g, hi + 1, dtype=np.int64)
        if len(js) <= r:
            m[:, i, g:hi + 1] = True
            continue
        if r == 0:
            continue
        for h in range(n_head):
            k = _keys_np(s, l, h, i, js)
            order = np.lexsort((js, k))[:r]  # by key, ties by smaller j
            m[h, i, js[order]] = True
    return m


# ------------------------------------------------------------------ config

def validate(att):
    """Refuse anything the spec refuses; the message names the field."""
    for f in FIELDS:
        if f not in att:
            raise ValueError(f"config: attention.{f} is missing (bigbird requires every field)")
        v = att[f]
        if type(v) is not int:  # bool and float (even 1.0) are not integers
            raise ValueError(f"config: attention.{f} must be an integer (got {v!r})")
        if v < MINIMUM[f]:
            raise ValueError(f"config: attention.{f} must be an integer >= {MINIMUM[f]} (got {v!r})")
    if att["seed"] >= SEED_LIMIT:
        raise ValueError(f"config: attention.seed must be < 2^53 (got {att['seed']!r})")


# ----------------------------------------------------------------- pattern

class BigBirdCausal:
    """Pattern for gpt2.py: allowed(layer, q_pos, k_pos) -> bool [H, Tq, Tk]."""

    def __init__(self, cfg):
        att = cfg.attention
        validate(att)
        self.att = {f: att[f] for f in FIELDS}
        self.b = att["block_size"]
        self.n_head = cfg.n_head
        self._blocks = {}  # layer -> bool tensor [H, nb, nb], grown on demand

    def layer_blocks(self, layer, nb):
        m = self._blocks.get(layer)
        if m is None or m.shape[1] < nb:
            size = max(nb, 2 * (0 if m is None else m.shape[1]))
            m = torch.from_numpy(block_mask(self.att, layer, self.n_head, size))
            self._blocks[layer] = m
        return m

    def allowed(self, layer, q_pos, k_pos):
        qb = q_pos // self.b  # [Tq]
        kb = k_pos // self.b  # [Tk]
        nb = int(max(int(qb.max()), int(kb.max()))) + 1
        m = self.layer_blocks(layer, nb)  # [H, nb', nb']
        if m.device != q_pos.device:  # training on a GPU: one copy per layer and size
            key = ("dev", layer, str(q_pos.device))
            if key not in self._blocks or self._blocks[key].shape != m.shape:
                self._blocks[key] = m.to(q_pos.device)
            m = self._blocks[key]
        sel = m[:, qb][:, :, kb]  # [H, Tq, Tk]
        return sel & (k_pos[None, :] <= q_pos[:, None])[None]

    def key_blocks(self, layer, head, i):
        """Sorted key blocks of query block i (the kernel's view)."""
        return block_set(self.att, layer, head, i)
