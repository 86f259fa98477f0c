"""PyTorch reference of the `perceiver_ar` architecture of docs/spec.md.

Perceiver AR (Hawthorne et al. 2022). With N = num_latents and a sequence of
T tokens, the latents are the last N' = min(N, T) positions L = [T-N', T-1].

  x_p = wte[tok_p]                                     (no wpe: rotary only)
  layer 0 (cross-attend): queries ln_q(x_p), p in L; keys/values ln_kv(x_k),
      every k; p sees k <= p; rotary at absolute positions on Q and K;
      z_p = x_p + c_proj(attn);  z_p += mlp(ln_2(z_p))
  layers 1..L-1: gpt2 blocks (causal self-attention among latents only,
      rotary at absolute positions)
  ln_f, head (tied to wte unless lm_head.weight) -> logits of latents only.

Two procedures (they agree while the sequence is at most N tokens long):
  - `forward` / `prefill`: the exact forward above (what training and prefill
    compute);
  - `step`: the spec's cached sliding decode. The new token at position P is a
    latent; layer 0 attends over the cached K/V of every position <= P (exact:
    layer-0 K/V depend only on the token); layers >= 1 attend over the cached
    K/V of the last N latent positions [P-N+1, P], reusing K/V computed at
    earlier steps as they are (so once P >= N it is no longer the exact
    forward of the P+1 tokens).

Tensor names (Conv1D [in, out], x @ W + b): wte.weight; h.0.ln_q, h.0.ln_kv,
h.0.attn.q_attn [C, C], h.0.attn.kv_attn [C, 2C] (K then V), h.0.attn.c_proj
[C, C], h.0.ln_2, h.0.mlp.c_fc, h.0.mlp.c_proj; h.i (i >= 1) as gpt2
(ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.*); ln_f; optional lm_head.weight
[V, C]. Everything float32; the module is trainable (forward on [B, T]).
"""
import math

import torch
import torch.nn as nn

import checkpoint
import gpt2


# ----------------------------------------------------------------- config

class PerceiverARConfig:
    def __init__(self, d):
        self.raw = dict(d)
        mt = d.get("model_type")
        if mt != "perceiver_ar":
            raise ValueError(f"model_type {mt!r} is not perceiver_ar")
        gpt2.require_rotary(d, "perceiver_ar")
        gpt2.refuse_attention(d, "perceiver_ar")
        if "num_latents" not in d:
            raise ValueError("config: num_latents is missing")
        nl = d["num_latents"]
        if type(nl) is not int or nl < 1:
            raise ValueError(f"config: num_latents must be an integer >= 1 (got {nl!r})")
        # the fields shared with gpt2 (sizes, n_inner, epsilon, rotary_*, n_positions)
        base = gpt2.GPT2Config({k: v for k, v in d.items() if k not in ("model_type", "attention")})
        for k in ("vocab_size", "n_embd", "n_head", "n_layer", "head_dim", "n_inner", "layer_norm_epsilon",
                  "position_embedding", "n_positions", "rotary_dim", "rotary_base"):
            setattr(self, k, getattr(base, k))
        self.attention = {"kind": "dense"}
        self.num_latents = nl


# ----------------------------------------------------------------- layers

class CrossAttention(nn.Module):
    """Layer-0 attention: latent queries over the keys/values of every position."""

    def __init__(self, cfg):
        super().__init__()
        C = cfg.n_embd
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        self.q_attn = gpt2.Conv1D(C, C)
        self.kv_attn = gpt2.Conv1D(C, 2 * C)
        self.c_proj = gpt2.Conv1D(C, C)

    def split(self, t):
        B, T, C = t.shape
        return t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def kv(self, hkv, k_pos, rotary):
        """hkv = ln_kv(x) (B, Tk, C) -> rotated K and V (B, H, Tk, D)."""
        C = hkv.shape[-1]
        k, v = self.kv_attn(hkv).split(C, dim=-1)
        k, v = self.split(k), self.split(v)
        cos, sin = rotary.cos_sin(k_pos)
        return rotary.apply(k, cos, sin), v

    def forward(self, hq, q_pos, k, v, k_pos, rotary):
        """hq = ln_q(x of the latents) (B, Tq, C); k, v (B, H, Tk, D) already rotated."""
        q = self.split(self.q_attn(hq))  # (B, H, Tq, D)
        cos, sin = rotary.cos_sin(q_pos)
        q = rotary.apply(q, cos, sin)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))  # (B, H, Tq, Tk)
        allowed = k_pos[None, :] <= q_pos[:, None]  # (Tq, Tk)
        scores = scores.masked_fill(~allowed[None, None], float("-inf"))
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(hq.shape)  # (B, Tq, C)
        return self.c_proj(y)


class CrossBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg.layer_norm_epsilon
        self.ln_q = nn.LayerNorm(cfg.n_embd, eps=eps)
        self.ln_kv = nn.LayerNorm(cfg.n_embd, eps=eps)
        self.attn = CrossAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=eps)
        self.mlp = gpt2.MLP(cfg)

    def forward(self, x_new, new_pos, q_from, rotary, past=None):
        """x_new (B, Tn, C): embeddings of the new positions new_pos; their K/V
        join the cache `past` = (k, v, k_pos) or None. Queries are the new
        positions from index q_from on (the latents among them).
        Returns z (B, Tq, C) and the cache (k, v, k_pos) including x_new."""
        k, v = self.attn.kv(self.ln_kv(x_new), new_pos, rotary)
        k_pos = new_pos
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
            k_pos = torch.cat([past[2], new_pos])
        xq = x_new[:, q_from:]
        z = xq + self.attn(self.ln_q(xq), new_pos[q_from:], k, v, k_pos, rotary)
        z = z + self.mlp(self.ln_2(z))
        return z, (k, v, k_pos)


# ------------------------------------------------------------------ model

class PerceiverAR(nn.Module):
    def __init__(self, cfg, tied=True):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = PerceiverARConfig(cfg)
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.h = nn.ModuleList([CrossBlock(cfg)] + [gpt2.Block(cfg) for _ in range(cfg.n_layer - 1)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.lm_head = None if tied else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.rotary = gpt2.Rotary(cfg.rotary_dim, cfg.rotary_base)
        self.pattern = gpt2.DenseCausal(cfg)  # latents among themselves: causal on absolute positions

    @property
    def n_positions(self):
        return self.cfg.n_positions

    def head_weight(self):
        return self.wte.weight if self.lm_head is None else self.lm_head.weight

    def _tokens(self, tokens):
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        squeeze = tokens.dim() == 1
        if squeeze:
            tokens = tokens[None]
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size):
            raise ValueError("token id out of range")
        return tokens, squeeze

    def _cap(self, total):
        if self.cfg.n_positions is not None and total > self.cfg.n_positions:
            raise ValueError(f"sequence of {total} tokens exceeds n_positions {self.cfg.n_positions}")

    def prefill(self, tokens):
        """Exact forward. tokens [T] or [B, T] -> (logits of the N' latents
        [N', V] or [B, N', V], cache). cache = [layer-0 (k, v, pos) of every
        position, then per layer >= 1 (k, v, pos) of the latents]."""
        tokens, squeeze = self._tokens(tokens)
        T = tokens.shape[1]
        self._cap(T)
        n_lat = min(self.cfg.num_latents, T)
        start = T - n_lat
        pos = torch.arange(T, dtype=torch.long)
        x = self.wte(tokens)  # (B, T, C)
        z, c0 = self.h[0](x, pos, start, self.rotary)  # (B, N', C)
        caches = [c0]
        lat_pos = pos[start:]
        for l in range(1, self.cfg.n_layer):
            z, c = self.h[l](z, l, lat_pos, self.pattern, self.rotary, None)
            caches.append(c)
        logits = self.ln_f(z) @ self.head_weight().t()
        return (logits[0] if squeeze else logits), caches

    def step(self, tokens, caches):
        """Sliding cached decode of one new token per sequence. tokens [1] or
        [B, 1] (or an int) -> (logits [1, V] or [B, 1, V], new caches)."""
        if isinstance(tokens, int):
            tokens = [tokens]
        tokens, squeeze = self._tokens(tokens)
        assert tokens.shape[1] == 1, "step decodes one token at a time"
        P = int(caches[0][2][-1]) + 1
        self._cap(P + 1)
        pos = torch.tensor([P], dtype=torch.long)
        N = self.cfg.num_latents
        x = self.wte(tokens)  # (B, 1, C)
        z, c0 = self.h[0](x, pos, 0, self.rotary, caches[0])
        out = [c0]
        for l in range(1, self.cfg.n_layer):
            k, v, kp = caches[l]
            keep = kp >= P - N + 1  # the window [P-N+1, P]: N-1 cached + the new one
            z, c = self.h[l](z, l, pos, self.pattern, self.rotary, (k[:, :, keep], v[:, :, keep], kp[keep]))
            out.append(c)
        logits = self.ln_f(z) @ self.head_weight().t()
        return (logits[0] if squeeze else logits), out

    def forward(self, tokens):
        """Exact forward: logits of the latents ([N', V] or [B, N', V])."""
        return self.prefill(tokens)[0]

    def forward_with_past(self, tokens, past=None):
        """past None: prefill (exact; logits of the latents). Otherwise the tokens
        continue the sequence one at a time through `step` (sliding decode);
        logits of each of them. Same calling convention as gpt2's."""
        if past is None:
            return self.prefill(tokens)
        tokens, squeeze = self._tokens(tokens)
        rows = []
        for t in range(tokens.shape[1]):
            lg, past = self.step(tokens[:, t:t + 1], past)
            rows.append(lg)
        logits = torch.cat(rows, dim=1)
        return (logits[0] if squeeze else logits), past

    # --------------------------------------------------------- helpers

    @torch.no_grad()
    def score(self, tokens):
        """Echo log-probs of the exact forward: entry t from the logits at t-1,
        null for t <= T - N' (N'-1 numbers)."""
        tokens = list(tokens)
        T = len(tokens)
        if T == 0:
            return []
        n_lat = min(self.cfg.num_latents, T)
        logits = self.forward(tokens)  # (N', V) for positions T-N' .. T-1
        lp = torch.log_softmax(logits[:-1].double(), dim=-1)  # predicts T-N'+1 .. T-1
        tgt = torch.tensor(tokens[T - n_lat + 1:], dtype=torch.long)
        vals = lp.gather(1, tgt[:, None])[:, 0].tolist() if len(tgt) else []
        return [None] * (T - n_lat + 1) + vals

    @torch.no_grad()
    def greedy(self, tokens, n, use_cache=True, return_margins=False):
        """n greedy ids. use_cache: the spec's decoding (prefill the prompt, then
        the sliding cached decode); otherwise the exact forward of the whole
        sequence at every step (differs once the sequence passes N tokens)."""
        tokens = list(tokens)
        out, margins = [], []
        past = None
        npos = self.cfg.n_positions
        for _ in range(n):
            if npos is not None and len(tokens) + len(out) > npos:
                break
            if use_cache:
                logits, past = self.forward_with_past(tokens if past is None else [out[-1]], past)
            else:
                logits = self.forward(tokens + out)
            last = logits[-1]
            nxt = int(torch.argmax(last))
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            out.append(nxt)
            if npos is not None and len(tokens) + len(out) >= npos:
                break
        return (out, margins) if return_margins else out

    # The same as gpt2's, as block_recurrent reuses them.
    top_k_last = gpt2.GPT2.top_k_last
    hf_state_dict = gpt2.GPT2.hf_state_dict
    load_hf_state_dict = gpt2.GPT2.load_hf_state_dict

def from_tensors(config, tensors):
    cfg = PerceiverARConfig(config)
    model = PerceiverAR(cfg, tied="lm_head.weight" not in tensors)
    model.load_hf_state_dict(tensors)
    model.eval()
    return model


def load(path):
    config = checkpoint.read_config(path)
    tensors = checkpoint.normalize_names(checkpoint.read_tensors(path))
    return from_tensors(config, tensors)


init_random = gpt2.init_random
