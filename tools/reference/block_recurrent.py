"""PyTorch reference of the `block_recurrent` architecture of docs/spec.md.

Block-Recurrent Transformer (Hutchins et al. 2022), with W = block_size,
S = num_states, block(p) = p // W:

  x_p = wte[tok_p]                                     (no wpe: rotary only)
  every layer: token self-attention is block-windowed: a query at p in block i
      sees keys k <= p with block(k) in {i-1, i}; rotary on Q and K at absolute
      positions (as gpt2).
  ordinary layer: a gpt2 block with that window.
  recurrent layer l (in recurrent_layers), per sequence a state s (S x C);
      tokens of block i read s_i, s_0 = state_init:
      h = ln_1(x); q, k, v = c_attn(h) (rotary on q, k)
      a_self  = windowed attention (q; k, v)
      a_cross = attention, queries q_state(h), keys/values kv_state(ln_s(s_i)),
                no mask, no positions
      x += c_proj([a_self ; a_cross])      (2C -> C)
      x += mlp(ln_2(x))
      when block i completes: u = ln_s(s_i) (the same u as a_cross's);
      queries state.q_attn(u) (no rotary), keys/values = [kv_state(u) ; the W
      token K/V of block i from c_attn (K rotated, as cached)], no mask;
      y = state.c_proj(attn); g = sigmoid(state.gate_bias);
      s_{i+1} = s_i * g + y * (1 - g)
      A partial last block reads s_i and does not update the state.
  ln_f, head (tied to wte unless lm_head.weight).

`forward_with_past(tokens, past)` processes any chunk of new tokens on top of a
cache (None = from the start). The cache of a layer holds only the K/V of the
previous and current block (positions >= (block(P) - 1) * W for the next
position P) plus, in a recurrent layer, the state the next position reads
(s_{block(P)}): constant memory. Prefill, token-by-token decode and chunked
prefill are the same code and the same numbers.

Tensor names: ordinary layers as gpt2; recurrent layer r: h.r.ln_1,
h.r.attn.c_attn [C, 3C], h.r.attn.q_state [C, C], h.r.attn.kv_state [C, 2C],
h.r.attn.c_proj [2C, C], h.r.ln_2, h.r.mlp.*, h.r.ln_s, h.r.state_init [S, C],
h.r.state.q_attn [C, C], h.r.state.c_proj [C, C], h.r.state.gate_bias [C];
biases named like their weights; ln_f; optional lm_head.weight [V, C].
"""
import math

import torch
import torch.nn as nn

import checkpoint
import gpt2


# ----------------------------------------------------------------- config

class BlockRecurrentConfig:
    def __init__(self, d):
        self.raw = dict(d)
        mt = d.get("model_type")
        if mt != "block_recurrent":
            raise ValueError(f"model_type {mt!r} is not block_recurrent")
        gpt2.require_rotary(d, "block_recurrent")
        gpt2.refuse_attention(d, "block_recurrent")
        base = gpt2.GPT2Config({k: v for k, v in d.items() if k not in ("model_type", "attention")})
        for k in ("vocab_size", "n_embd", "n_head", "n_layer", "head_dim", "n_inner", "layer_norm_epsilon",
                  "position_embedding", "n_positions", "rotary_dim", "rotary_base"):
            setattr(self, k, getattr(base, k))
        self.attention = {"kind": "dense"}
        for f in ("block_size", "num_states"):
            if f not in d:
                raise ValueError(f"config: {f} is missing")
            if type(d[f]) is not int or d[f] < 1:
                raise ValueError(f"config: {f} must be an integer >= 1 (got {d[f]!r})")
        self.block_size = d["block_size"]
        self.num_states = d["num_states"]
        if "recurrent_layers" not in d:
            raise ValueError("config: recurrent_layers is missing")
        rl = d["recurrent_layers"]
        if not isinstance(rl, list):
            raise ValueError(f"config: recurrent_layers must be a list of layer indices (got {rl!r})")
        for n, l in enumerate(rl):
            if type(l) is not int or l < 0 or l >= self.n_layer:
                raise ValueError(f"config: recurrent_layers[{n}] must be an integer in 0..{self.n_layer - 1} "
                                 f"(got {l!r})")
            if l in rl[:n]:
                raise ValueError(f"config: recurrent_layers[{n}] repeats layer {l}")
        self.recurrent_layers = sorted(rl)
        gate = d.get("gate", "fixed")
        if gate != "fixed":
            raise ValueError(f'config: gate must be "fixed" (got {gate!r})')
        self.gate = gate


# ------------------------------------------------------- attention patterns

class BlockWindow:
    """Query p in block i sees keys k <= p with block(k) in {i-1, i}."""

    def __init__(self, cfg):
        self.W = cfg.block_size

    def allowed(self, layer, q_pos, k_pos):
        causal = k_pos[None, :] <= q_pos[:, None]
        window = (k_pos // self.W)[None, :] >= (q_pos // self.W)[:, None] - 1
        return (causal & window)[None]  # (1, Tq, Tk)


def heads(t, n_head):
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, H, T, D)


def merge(t):
    B, H, T, D = t.shape
    return t.transpose(1, 2).reshape(B, T, H * D)  # (B, T, C)


def attend(q, k, v, mask=None):
    """q (B, H, Tq, D), k/v (B, H, Tk, D), mask bool (Tq, Tk) or None."""
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(~mask[None, None], float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


# ----------------------------------------------------------------- layers

class RecurrentAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg.n_embd
        self.c_attn = gpt2.Conv1D(C, 3 * C)   # token Q, K, V
        self.q_state = gpt2.Conv1D(C, C)      # token queries of a_cross
        self.kv_state = gpt2.Conv1D(C, 2 * C)  # state K then V, from ln_s(s)
        self.c_proj = gpt2.Conv1D(2 * C, C)   # [a_self ; a_cross] -> C


class StateUpdate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg.n_embd
        self.q_attn = gpt2.Conv1D(C, C)
        self.c_proj = gpt2.Conv1D(C, C)
        self.gate_bias = nn.Parameter(torch.zeros(C))


class RecurrentBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg.layer_norm_epsilon
        C = cfg.n_embd
        self.n_head = cfg.n_head
        self.W = cfg.block_size
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = RecurrentAttention(cfg)
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.mlp = gpt2.MLP(cfg)
        self.ln_s = nn.LayerNorm(C, eps=eps)
        self.state_init = nn.Parameter(torch.zeros(cfg.num_states, C))
        self.state = StateUpdate(cfg)

    def state_kv(self, s):
        """s (B, S, C) -> u = ln_s(s), state K, V (B, H, S, D) (shared by a_cross and the update)."""
        u = self.ln_s(s)
        ks, vs = self.attn.kv_state(u).split(s.shape[-1], dim=-1)
        return u, heads(ks, self.n_head), heads(vs, self.n_head)

    def update(self, s, u, ks, vs, kb, vb):
        """State after a complete block: kb, vb (B, H, W, D) the block's token K/V."""
        qu = heads(self.state.q_attn(u), self.n_head)  # (B, H, S, D), no rotary
        a = attend(qu, torch.cat([ks, kb], dim=2), torch.cat([vs, vb], dim=2))  # (B, H, S, D)
        y = self.state.c_proj(merge(a))  # (B, S, C)
        g = torch.sigmoid(self.state.gate_bias)
        return s * g + y * (1 - g)

    def forward(self, x, positions, pattern, rotary, past):
        """x (B, Tn, C) at contiguous positions; past = (k, v, k_pos, s) with s
        the state block(positions[0]) reads. Returns x and (k, v, k_pos, s) with
        s the state the position after the chunk reads."""
        B, Tn, C = x.shape
        h = self.ln_1(x)
        q, k, v = self.attn.c_attn(h).split(C, dim=-1)
        q, k, v = heads(q, self.n_head), heads(k, self.n_head), heads(v, self.n_head)
        cos, sin = rotary.cos_sin(positions)
        q, k = rotary.apply(q, cos, sin), rotary.apply(k, cos, sin)
        pk, pv, ppos, s = past
        k = torch.cat([pk, k], dim=2)  # (B, H, Tk, D)
        v = torch.cat([pv, v], dim=2)
        k_pos = torch.cat([ppos, positions])
        a_self = merge(attend(q, k, v, pattern.allowed(None, positions, k_pos)[0]))  # (B, Tn, C)
        qs = heads(self.attn.q_state(h), self.n_head)  # (B, H, Tn, D), no rotary
        a_cross = []
        p0, p1 = int(positions[0]), int(positions[-1])
        for bi in range(p0 // self.W, p1 // self.W + 1):
            lo, hi = max(bi * self.W, p0), min((bi + 1) * self.W - 1, p1)  # chunk positions in block bi
            u, ks, vs = self.state_kv(s)
            a_cross.append(attend(qs[:, :, lo - p0:hi - p0 + 1], ks, vs))  # tokens of block bi read s_bi
            if hi == (bi + 1) * self.W - 1:  # block bi completes in this chunk
                sel = (k_pos // self.W) == bi  # its W positions (cache + chunk)
                s = self.update(s, u, ks, vs, k[:, :, sel], v[:, :, sel])
        a_cross = merge(torch.cat(a_cross, dim=2))  # (B, Tn, C)
        x = x + self.attn.c_proj(torch.cat([a_self, a_cross], dim=-1))
        x = x + self.mlp(self.ln_2(x))
        return x, (k, v, k_pos, s)


# ------------------------------------------------------------------ model

class BlockRecurrent(nn.Module):
    def __init__(self, cfg, tied=True):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = BlockRecurrentConfig(cfg)
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.h = nn.ModuleList([RecurrentBlock(cfg) if l in cfg.recurrent_layers else gpt2.Block(cfg)
                                for l in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.lm_head = None if tied else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.rotary = gpt2.Rotary(cfg.rotary_dim, cfg.rotary_base)
        self.pattern = BlockWindow(cfg)

    @property
    def n_positions(self):
        return self.cfg.n_positions

    def head_weight(self):
        return self.wte.weight if self.lm_head is None else self.lm_head.weight

    def empty_cache(self, B):
        H, D = self.cfg.n_head, self.cfg.head_dim
        out = []
        for blk in self.h:
            e = torch.zeros(B, H, 0, D)
            pos = torch.zeros(0, dtype=torch.long)
            if isinstance(blk, RecurrentBlock):
                out.append((e, e, pos, blk.state_init[None].expand(B, -1, -1)))
            else:
                out.append((e, e, pos))
        return out

    def forward_with_past(self, tokens, past=None):
        """tokens [T] or [B, T] continuing `past` (None: from position 0).
        Returns logits ([T, V] or [B, T, V]) and the new cache."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        squeeze = tokens.dim() == 1
        if squeeze:
            tokens = tokens[None]
        B, T = tokens.shape
        if past is None:
            past = self.empty_cache(B)
            start = 0
        else:
            start = int(past[0][2][-1]) + 1
        if self.cfg.n_positions is not None and start + T > self.cfg.n_positions:
            raise ValueError(f"sequence of {start + T} tokens exceeds n_positions {self.cfg.n_positions}")
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size:
            raise ValueError("token id out of range")
        positions = torch.arange(start, start + T, dtype=torch.long)
        keep_from = ((start + T) // self.cfg.block_size - 1) * self.cfg.block_size  # the next position's window
        x = self.wte(tokens)
        caches = []
        for l, blk in enumerate(self.h):
            if isinstance(blk, RecurrentBlock):
                x, (k, v, kp, s) = blk(x, positions, self.pattern, self.rotary, past[l])
            else:
                x, (k, v, kp) = blk(x, l, positions, self.pattern, self.rotary, past[l])
            keep = kp >= keep_from
            c = (k[:, :, keep], v[:, :, keep], kp[keep])
            caches.append(c + (s,) if isinstance(blk, RecurrentBlock) else c)
        logits = self.ln_f(x) @ self.head_weight().t()
        return (logits[0] if squeeze else logits), caches

    def forward(self, tokens, past=None):
        return self.forward_with_past(tokens, past)[0]

    score = gpt2.GPT2.score
    greedy = gpt2.GPT2.greedy
    top_k_last = gpt2.GPT2.top_k_last
    hf_state_dict = gpt2.GPT2.hf_state_dict
    load_hf_state_dict = gpt2.GPT2.load_hf_state_dict


def from_tensors(config, tensors):
    cfg = BlockRecurrentConfig(config)
    model = BlockRecurrent(cfg, tied="lm_head.weight" not in tensors)
    model.load_hf_state_dict(tensors)
    model.eval()
    return model


def load(path):
    config = checkpoint.read_config(path)
    tensors = checkpoint.normalize_names(checkpoint.read_tensors(path))
    return from_tensors(config, tensors)


def init_random(model, seed, std=0.2, ln_std=0.2, bias_std=0.1, gate_mean=1.0, gate_std=1.0):
    """gpt2.init_random, then gate_bias N(gate_mean, gate_std): sigmoid(gate_bias)
    spread over roughly 0.5..0.9, so swapping the two gate terms shows."""
    gpt2.init_random(model, seed, std, ln_std, bias_std)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("state.gate_bias"):
                p.copy_(gate_mean + gate_std * torch.randn(p.shape, generator=g))
    return model
