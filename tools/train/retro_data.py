"""RETRO's training data: the training text (data.split) cut into chunks of m
bytes, each chunk's k neighbours from the same text, and the held-out
Revelation 19-22 with neighbours from the training text.

Retrieval (the datastore of the training text, in Python so training needs no
server): a chunk's words ([a-z]+, lower-cased, words in more than a tenth of the
chunks dropped) score a candidate chunk by the sum of idf = ln(N / df) of the
words they share; the k best candidates are its neighbours, each the candidate
chunk and its continuation (2m bytes). A training chunk never retrieves from
its own neighbourhood (the paper's filtering of overlapping documents): no
candidate from its own chapter or within 16 chunks of it, so no neighbour holds
the chunk itself or the text that follows it in a training row.
"""
import os
import re

import numpy as np

import data

WORD = re.compile(rb"[a-z]+")
CACHE = "/tmp/roost-retro-neighbours-m{m}-k{k}.npy"
REV19 = b"Rev19:1 "


def chunks(text, m):
    return [text[i:i + m] for i in range(0, len(text) - len(text) % m, m)]


def chapter_of_chunks(text, m):
    """Chapter label index of the line each chunk starts in ("Ge1", "Ge2", ...)."""
    labels, out, cur, cur_id = {}, [], None, -1
    starts = [0] + [i + 1 for i, b in enumerate(text) if b == 10]
    line = 0
    for c in range(len(text) // m):
        pos = c * m
        while line + 1 < len(starts) and starts[line + 1] <= pos:
            line += 1
        head = text[starts[line]:starts[line] + 12].split(b":")[0]
        if head != cur:
            cur = head
            cur_id = labels.setdefault(head, len(labels))
        out.append(cur_id)
    return np.array(out, dtype=np.int64)


class Index:
    """Word postings over the chunks of the training text."""

    def __init__(self, text, m):
        self.m = m
        self.text = text
        self.chunks = chunks(text, m)
        self.N = len(self.chunks) - 1  # the last chunk has no continuation: never a candidate
        words = [set(WORD.findall(c.lower())) for c in self.chunks[:self.N]]
        post = {}
        for i, ws in enumerate(words):
            for w in ws:
                post.setdefault(w, []).append(i)
        self.post = {w: np.array(p, dtype=np.int64) for w, p in post.items() if len(p) <= self.N // 10}
        self.idf = {w: float(np.log(self.N / len(p))) for w, p in self.post.items()}

    def scores(self, chunk):
        ws = [w for w in set(WORD.findall(chunk.lower())) if w in self.post]
        s = np.zeros(self.N)
        for w in ws:
            s[self.post[w]] += self.idf[w]
        return s

    def neighbour_tokens(self, idx):
        """[.., 2m] int64: candidate chunk idx and its continuation."""
        idx = np.asarray(idx)
        buf = np.frombuffer(self.text, dtype=np.uint8)
        offs = idx[..., None] * self.m + np.arange(2 * self.m)
        return buf[offs].astype(np.int64)


def top_k(s, k):
    part = np.argpartition(-s, k)[:k]
    return part[np.argsort(-s[part], kind="stable")]


def training_neighbours(index, k):
    """[n_chunks, k] int64 neighbour chunk ids of every training chunk (cached in /tmp)."""
    path = CACHE.format(m=index.m, k=k)
    if os.path.exists(path):
        return np.load(path)
    ch = chapter_of_chunks(index.text, index.m)
    n = len(index.chunks)
    out = np.zeros((n, k), dtype=np.int64)
    for c in range(n):
        s = index.scores(index.chunks[c])
        same = np.nonzero(ch[:index.N] == ch[c])[0]
        lo = min(same[0] if len(same) else c, c - 16)
        hi = max(same[-1] if len(same) else c, c + 16)
        s[max(lo, 0):min(hi + 1, index.N)] = -1.0
        out[c] = top_k(s, k)
    np.save(path, out)
    return out


def heldout_rev19_22():
    _, held = data.split()
    return held[held.index(b"\n" + REV19) + 1:]
