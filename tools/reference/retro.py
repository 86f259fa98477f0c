"""PyTorch reference of the `retro` architecture of docs/retro.md.

RETRO (Borgeaud et al. 2021): a causal decoder whose CCA layers (P = cca_start,
cca_start + cca_period, ..) cross-attend to the encoded neighbours of the
previous chunk, shifted by m - 1 (the token at position i reads chunk
u(i) = (i + 1) // m - 1), and a small bidirectional encoder over each
neighbour (2m tokens) that cross-attends to its chunk's decoder activations H_u
taken after the self-attention of layer cca_start.

Batched (training) and single-sequence (scoring) use the same forward:
  tokens [B, T]; neighbours [B, U, k, r] for the U = T // m complete chunks;
  has [B, U] bool: False for a chunk without neighbours (no CCA term for the
  tokens reading it). Written from the paper and docs/retro.md, independent of
  the engine.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import checkpoint
import gpt2


class RetroConfig:
    def __init__(self, d):
        self.raw = dict(d)
        if d.get("model_type") != "retro":
            raise ValueError(f"model_type {d.get('model_type')!r} is not retro")
        gpt2.require_rotary(d, "retro")
        base = gpt2.GPT2Config({k: v for k, v in d.items() if k not in ("model_type", "attention")})
        for k in ("vocab_size", "n_embd", "n_head", "n_layer", "head_dim", "n_inner", "layer_norm_epsilon",
                  "position_embedding", "n_positions", "rotary_dim", "rotary_base"):
            setattr(self, k, getattr(base, k))
        for f, lo in (("chunk_size", 1), ("num_neighbours", 1), ("cca_start", 0), ("cca_period", 1),
                      ("encoder_layers", 1)):
            v = d.get(f)
            if type(v) is not int or v < lo:
                raise ValueError(f"config: {f} must be an integer >= {lo} (got {v!r})")
            setattr(self, f, v)
        if self.cca_start >= self.n_layer:
            raise ValueError(f"config: cca_start must be < n_layer = {self.n_layer}")
        self.cca_layers = list(range(self.cca_start, self.n_layer, self.cca_period))
        self.neighbour_len = 2 * self.chunk_size


def heads(t, H):
    *lead, T, C = t.shape
    return t.reshape(*lead, T, H, C // H).transpose(-2, -3)  # [.., H, T, D]


def merge(t):
    *lead, H, T, D = t.shape
    return t.transpose(-2, -3).reshape(*lead, T, H * D)


def mha(q, k, v, H, mask=None):
    """q [.., Tq, C], k/v [.., Tk, C]; mask bool [Tq, Tk] (True: visible) or None."""
    q, k, v = heads(q, H), heads(k, H), heads(v, H)
    s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return merge(torch.softmax(s, dim=-1) @ v)


class SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.H = cfg.n_head
        self.c_attn = gpt2.Conv1D(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = gpt2.Conv1D(cfg.n_embd, cfg.n_embd)

    def forward(self, h, rotary, positions, causal):
        C = h.shape[-1]
        q, k, v = self.c_attn(h).split(C, dim=-1)
        cos, sin = rotary.cos_sin(positions)
        q = merge(rotary.apply(heads(q, self.H), cos, sin))
        k = merge(rotary.apply(heads(k, self.H), cos, sin))
        T = h.shape[-2]
        mask = torch.ones(T, T, dtype=torch.bool).tril() if causal else None
        return self.c_proj(mha(q, k, v, self.H, mask))


class CrossAttention(nn.Module):
    """q(h) against kv(memory): no mask, no positions."""

    def __init__(self, cfg):
        super().__init__()
        self.H = cfg.n_head
        self.q = gpt2.Conv1D(cfg.n_embd, cfg.n_embd)
        self.kv = gpt2.Conv1D(cfg.n_embd, 2 * cfg.n_embd)
        self.c_proj = gpt2.Conv1D(cfg.n_embd, cfg.n_embd)

    def forward(self, h, memory):
        k, v = self.kv(memory).split(h.shape[-1], dim=-1)
        return self.c_proj(mha(self.q(h), k, v, self.H))


class EncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps, C = cfg.layer_norm_epsilon, cfg.n_embd
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = SelfAttention(cfg)
        self.ln_ca = nn.LayerNorm(C, eps=eps)
        self.ca = CrossAttention(cfg)
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.mlp = gpt2.MLP(cfg)


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps, C = cfg.layer_norm_epsilon, cfg.n_embd
        self.ln_h = nn.LayerNorm(C, eps=eps)
        self.h = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.ln_f = nn.LayerNorm(C, eps=eps)

    def forward(self, e, hc, rotary):
        """e [R, r, C] embedded neighbours; hc [R, m, C] their chunk's H. Returns [R, r, C]."""
        hn = self.ln_h(hc)
        pos = torch.arange(e.shape[-2])
        for lay in self.h:
            e = e + lay.attn(lay.ln_1(e), rotary, pos, causal=False)
            e = e + lay.ca(lay.ln_ca(e), hn)
            e = e + lay.mlp(lay.ln_2(e))
        return self.ln_f(e)


class DecoderLayer(nn.Module):
    def __init__(self, cfg, cca):
        super().__init__()
        eps, C = cfg.layer_norm_epsilon, cfg.n_embd
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = SelfAttention(cfg)
        if cca:
            self.ln_cca = nn.LayerNorm(C, eps=eps)
            self.cca = CrossAttention(cfg)
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.mlp = gpt2.MLP(cfg)


class Retro(nn.Module):
    def __init__(self, cfg, tied=True):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = RetroConfig(cfg)
        self.cfg = cfg
        C = cfg.n_embd
        self.wte = nn.Embedding(cfg.vocab_size, C)
        self.lm_head = None if tied else nn.Parameter(torch.zeros(cfg.vocab_size, C))
        self.h = nn.ModuleList(DecoderLayer(cfg, l in cfg.cca_layers) for l in range(cfg.n_layer))
        self.enc = Encoder(cfg)
        self.ln_f = nn.LayerNorm(C, eps=cfg.layer_norm_epsilon)
        self.rotary = gpt2.Rotary(cfg.rotary_dim, cfg.rotary_base)

    def cca(self, layer, x, E, has):
        """x [B, T, C]; E [B, U, k*r, C]; has [B, U]. Returns x plus the CCA term."""
        B, T, C = x.shape
        m, U = self.cfg.chunk_size, E.shape[1]
        if U == 0:
            return x
        hs = layer.ln_cca(x)[:, m - 1:]  # token i = m-1 + g*m + j reads chunk g
        pad = U * m - hs.shape[1]        # 0 <= pad < m (docs/retro.md: U groups exactly)
        hs = F.pad(hs, (0, 0, 0, pad)).view(B, U, m, C)
        y = layer.cca(hs, E) * has[:, :, None, None].to(x.dtype)  # no term (no bias) without neighbours
        y = y.reshape(B, U * m, C)[:, :T - (m - 1)]
        return torch.cat([x[:, :m - 1], x[:, m - 1:] + y], dim=1)

    def forward(self, tokens, neighbours, has):
        """tokens [B, T] long; neighbours [B, U, k, r] long (U = T // m); has [B, U] bool -> logits [B, T, V]."""
        cfg = self.cfg
        B, T = tokens.shape
        m, k, r = cfg.chunk_size, cfg.num_neighbours, cfg.neighbour_len
        U = T // m
        assert tuple(neighbours.shape) == (B, U, k, r), (tuple(neighbours.shape), (B, U, k, r))
        x = self.wte(tokens)
        pos = torch.arange(T)
        E = None
        for l, lay in enumerate(self.h):
            x = x + lay.attn(lay.ln_1(x), self.rotary, pos, causal=True)
            if l == cfg.cca_start:
                hc = x[:, :U * m].reshape(B * U, 1, m, C := x.shape[-1]).expand(B * U, k, m, C)
                e = self.wte(neighbours.reshape(B * U * k, r))
                E = self.enc(e, hc.reshape(B * U * k, m, C), self.rotary).reshape(B, U, k * r, C)
            if l in cfg.cca_layers:
                x = self.cca(lay, x, E, has)
            x = x + lay.mlp(lay.ln_2(x))
        return self.ln_f(x) @ (self.wte.weight if self.lm_head is None else self.lm_head).t()

    @torch.no_grad()
    def score(self, tokens, chunk_neighbours):
        """[None, lp_1, ..] (float64 log_softmax of float32 logits) for one sequence;
        chunk_neighbours[u]: k lists of r tokens, or None (no neighbours), for u < T // m."""
        cfg = self.cfg
        T, U = len(tokens), len(tokens) // cfg.chunk_size
        nb = torch.zeros(1, U, cfg.num_neighbours, cfg.neighbour_len, dtype=torch.long)
        has = torch.zeros(1, U, dtype=torch.bool)
        for u in range(U):
            if u < len(chunk_neighbours) and chunk_neighbours[u] is not None:
                nb[0, u] = torch.tensor(chunk_neighbours[u])
                has[0, u] = True
        logits = self.forward(torch.tensor([tokens]), nb, has)[0]
        lp = torch.log_softmax(logits[:-1].double(), dim=-1)
        return [None] + lp.gather(1, torch.tensor(tokens[1:])[:, None])[:, 0].tolist()

    def hf_state_dict(self):
        out = {}
        for name, p in self.named_parameters():
            out["lm_head.weight" if name == "lm_head" else name] = p.detach().clone().float()
        return out

    def load_hf_state_dict(self, tensors):
        own = dict(self.named_parameters())
        checkpoint.copy_checked({("lm_head.weight" if k == "lm_head" else k): v for k, v in own.items()}, tensors)


def load(path):
    tensors = checkpoint.normalize_names(checkpoint.read_tensors(path))
    model = Retro(checkpoint.read_config(path), tied="lm_head.weight" not in tensors)
    model.load_hf_state_dict(tensors)
    return model
