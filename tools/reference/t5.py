"""T5 (v1.0 ReLU and v1.1 gated-GELU) in plain PyTorch from the paper and
HuggingFace's documented layout (docs/t5.md); no `transformers` package.

    model = T5(T5Config(config_dict)); model.load_hf_state_dict(tensors)
    model.score(input_ids, target_ids)   # [log p(target t | input, target < t)]
    model.greedy(input_ids, n)           # n decoder tokens (stops early at none)
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import checkpoint


class T5Config:
    def __init__(self, d):
        self.vocab_size = d["vocab_size"]
        self.d_model = d["d_model"]
        self.num_heads = d["num_heads"]
        self.d_kv = d["d_kv"]
        self.d_ff = d["d_ff"]
        self.num_layers = d["num_layers"]
        self.num_decoder_layers = d.get("num_decoder_layers") or d["num_layers"]
        self.num_buckets = d.get("relative_attention_num_buckets", 32)
        self.max_distance = d.get("relative_attention_max_distance", 128)
        self.eps = d.get("layer_norm_epsilon", 1e-6)
        self.gated = d.get("feed_forward_proj", "relu") == "gated-gelu"
        self.tied = d.get("tie_word_embeddings", True)
        pad = d.get("pad_token_id", 0)
        self.decoder_start = d.get("decoder_start_token_id", pad if pad is not None else 0)


def bucket(n, bidirectional, num_buckets, max_distance):
    """Bucket of relative position n = key - query (a LongTensor), as docs/t5.md."""
    b = torch.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        b = b + (n > 0).long() * num_buckets
        r = n.abs()
    else:
        r = (-n).clamp(min=0)
    exact = num_buckets // 2
    large = exact + (torch.log(r.float() / exact) / math.log(max_distance / exact) * (num_buckets - exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return b + torch.where(r < exact, r, large)


def key_mask(valid):
    """[B, 1, 1, Tk] additive mask: 0 for real keys, -inf for padding."""
    return torch.zeros(valid.shape).masked_fill(~valid, float("-inf"))[:, None, None, :]


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class Attention(nn.Module):
    def __init__(self, c, has_bias):
        super().__init__()
        inner = c.num_heads * c.d_kv
        self.H, self.D = c.num_heads, c.d_kv
        self.q = nn.Linear(c.d_model, inner, bias=False)
        self.k = nn.Linear(c.d_model, inner, bias=False)
        self.v = nn.Linear(c.d_model, inner, bias=False)
        self.o = nn.Linear(inner, c.d_model, bias=False)
        self.rel = nn.Embedding(c.num_buckets, c.num_heads) if has_bias else None

    def heads(self, x):  # [..., T, H*D] -> [..., H, T, D]
        return x.view(*x.shape[:-1], self.H, self.D).transpose(-3, -2)

    def forward(self, x, kv, bias):
        """x [..., Tq, C] queries, kv [..., Tk, C] keys/values source, bias broadcasting to [..., H, Tq, Tk]
        (with -inf masks) or None. A leading batch dimension is for training (tools/train/train_t5.py)."""
        q, k, v = self.heads(self.q(x)), self.heads(self.k(kv)), self.heads(self.v(kv))
        scores = q @ k.transpose(-1, -2)  # T5: no 1/sqrt(D)
        if bias is not None:
            scores = scores + bias
        out = torch.softmax(scores, dim=-1) @ v  # [..., H, Tq, D]
        return self.o(out.transpose(-3, -2).reshape(*x.shape[:-1], self.H * self.D))


class FeedForward(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gated = c.gated
        if c.gated:
            self.wi_0 = nn.Linear(c.d_model, c.d_ff, bias=False)
            self.wi_1 = nn.Linear(c.d_model, c.d_ff, bias=False)
        else:
            self.wi = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.wo = nn.Linear(c.d_ff, c.d_model, bias=False)

    def forward(self, x):
        if self.gated:
            return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))
        return self.wo(torch.relu(self.wi(x)))


class Block(nn.Module):
    def __init__(self, c, decoder, first):
        super().__init__()
        self.decoder = decoder
        self.self_attn = Attention(c, first)
        self.cross = Attention(c, False) if decoder else None
        self.ff = FeedForward(c)
        n = 3 if decoder else 2
        self.norms = nn.ParameterList([nn.Parameter(torch.ones(c.d_model)) for _ in range(n)])
        self.eps = c.eps

    def forward(self, x, bias, enc=None, cross_bias=None):
        h = rms(x, self.norms[0], self.eps)
        x = x + self.self_attn(h, h, bias)
        if self.decoder:
            x = x + self.cross(rms(x, self.norms[1], self.eps), enc, cross_bias)
        return x + self.ff(rms(x, self.norms[-1], self.eps))


class T5(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.shared = nn.Embedding(c.vocab_size, c.d_model)
        self.enc = nn.ModuleList([Block(c, False, l == 0) for l in range(c.num_layers)])
        self.dec = nn.ModuleList([Block(c, True, l == 0) for l in range(c.num_decoder_layers)])
        self.enc_norm = nn.Parameter(torch.ones(c.d_model))
        self.dec_norm = nn.Parameter(torch.ones(c.d_model))
        self.lm_head = None if c.tied else nn.Linear(c.d_model, c.vocab_size, bias=False)

    def position_bias(self, rel, Tq, Tk, bidirectional):
        n = torch.arange(Tk)[None, :] - torch.arange(Tq)[:, None]  # key - query
        b = rel(bucket(n, bidirectional, self.c.num_buckets, self.c.max_distance))  # [Tq, Tk, H]
        b = b.permute(2, 0, 1)
        if not bidirectional:
            b = b.masked_fill(n[None] > 0, float("-inf"))
        return b

    def encode(self, ids, valid=None):
        """Encoder output [T, C] of a list of ids; or [B, T, C] of a padded LongTensor [B, T] with
        `valid` [B, T] (bool) marking the real tokens: padding is masked out as a key."""
        ids = torch.as_tensor(ids)
        x = self.shared(ids)
        bias = self.position_bias(self.enc[0].self_attn.rel, ids.shape[-1], ids.shape[-1], True)
        if valid is not None:
            bias = bias + key_mask(valid)
        for blk in self.enc:
            x = blk(x, bias)
        return rms(x, self.enc_norm, self.c.eps)

    def decode(self, enc, dec_ids, enc_valid=None):
        """Logits [T, V] at every decoder position (dec_ids starts with decoder_start); batched as
        encode, with `enc_valid` the encoder's `valid` (padded decoder rows only ever follow real ones)."""
        dec_ids = torch.as_tensor(dec_ids)
        x = self.shared(dec_ids)
        T = dec_ids.shape[-1]
        bias = self.position_bias(self.dec[0].self_attn.rel, T, T, False)
        cross = None if enc_valid is None else key_mask(enc_valid)
        for blk in self.dec:
            x = blk(x, bias, enc, cross)
        x = rms(x, self.dec_norm, self.c.eps)
        if self.lm_head is None:
            return (x * self.c.d_model ** -0.5) @ self.shared.weight.T
        return self.lm_head(x)

    @torch.no_grad()
    def score(self, input_ids, target_ids):
        """float64 log p(target t | input, target before t) for every t."""
        logits = self.decode(self.encode(input_ids), [self.c.decoder_start] + list(target_ids)[:-1])
        lp = torch.log_softmax(logits.double(), dim=-1)
        return lp.gather(1, torch.tensor(list(target_ids))[:, None])[:, 0].tolist()

    @torch.no_grad()
    def greedy(self, input_ids, n, return_margins=False):
        enc = self.encode(input_ids)
        dec, margins = [self.c.decoder_start], []
        for _ in range(n):
            last = self.decode(enc, dec)[-1]
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            dec.append(int(torch.argmax(last)))
        return (dec[1:], margins) if return_margins else dec[1:]

    # HF names (docs/t5.md)
    def _named_hf(self):
        out = {"shared.weight": self.shared.weight}
        for stack, blocks in (("encoder", self.enc), ("decoder", self.dec)):
            for l, blk in enumerate(blocks):
                p = f"{stack}.block.{l}.layer."
                for name, att in (("0.SelfAttention", blk.self_attn), ("1.EncDecAttention", blk.cross)):
                    if att is None:
                        continue
                    for w in "qkvo":
                        out[f"{p}{name}.{w}.weight"] = getattr(att, w).weight
                    if att.rel is not None:
                        out[f"{p}{name}.relative_attention_bias.weight"] = att.rel.weight
                ffi = len(blk.norms) - 1
                for w in (("wi_0", "wi_1", "wo") if self.c.gated else ("wi", "wo")):
                    out[f"{p}{ffi}.DenseReluDense.{w}.weight"] = getattr(blk.ff, w).weight
                for i, nw in enumerate(blk.norms):
                    out[f"{p}{i}.layer_norm.weight"] = nw
            out[f"{stack}.final_layer_norm.weight"] = self.enc_norm if stack == "encoder" else self.dec_norm
        if self.lm_head is not None:
            out["lm_head.weight"] = self.lm_head.weight
        return out

    def hf_state_dict(self):
        return {k: v.detach().clone().float() for k, v in self._named_hf().items()}

    def load_hf_state_dict(self, tensors):
        own = self._named_hf()
        tensors = {k: v for k, v in tensors.items() if k not in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")}
        checkpoint.copy_checked(own, tensors)


def init_random(model, seed):
    """Random weights large enough that buckets, heads and layers all matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model._named_hf().items():
            if name.endswith("layer_norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif name == "shared.weight":
                p.copy_(torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":  # logits of std ~2, as a tied head's (log-probs not far below -log V)
                p.copy_(torch.randn(p.shape, generator=g) * 2 * p.shape[1] ** -0.5)
            elif name.endswith((".o.weight", ".wo.weight")):  # blocks outweigh the embedding (else a tied head echoes)
                p.copy_(torch.randn(p.shape, generator=g) * 3 * p.shape[1] ** -0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[1] ** -0.5)
