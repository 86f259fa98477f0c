"""PyTorch reference of the Llama family of docs/models.md: model_type "llama",
"mistral" and "qwen2", written from the published definitions (Touvron et al.
2023 for Llama; HF transformers' modeling_llama / modeling_mistral /
modeling_qwen2 for the exact conventions), without the transformers package.

  x = embed_tokens[tok]
  per layer:  h = RMSNorm(x) ; q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
              q, k = rope(q), rope(k)           (rotate_half over the whole head)
              x += attention(q, k, v) Wo^T (+bo) (K/V head g serves query heads
                                                  g*group .. g*group+group-1)
              h = RMSNorm(x) ; x += (silu(h Wg^T) * (h Wu^T)) Wd^T
  logits = RMSNorm(x) lm_head^T                  (lm_head = embed_tokens when tied)

RMSNorm(x) = x / sqrt(mean(x^2) + rms_norm_eps) * w. Rotary inverse
frequencies rope_theta^(-2i/head_dim), rescaled by rope_scaling "linear"
(/ factor) or "llama3" (HF's wavelength bands); angles in float64, cos/sin
rounded to float32. Mistral's sliding_window W: a query at position p sees
keys p - W < k <= p. Weights are nn.Linear [out, in]. Everything else is
float32; scores take a float64 log_softmax of the float32 logits.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import causal_lm
from causal_lm import CausalLM

FAMILY = ("llama", "mistral", "qwen2")


class LlamaConfig:
    """config.json of a Llama-family model; raises ValueError naming a refused field."""

    def __init__(self, d):
        self.raw = dict(d)
        self.model_type = d.get("model_type")
        if self.model_type not in FAMILY:
            raise ValueError(f"config: model_type must be one of {FAMILY} (got {self.model_type!r})")
        for k in ("vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size"):
            if not isinstance(d.get(k), int) or d[k] < 1:
                raise ValueError(f"config: {k} must be an integer >= 1 (got {d.get(k)!r})")
        self.vocab_size = d["vocab_size"]
        self.hidden_size = d["hidden_size"]
        self.n_head = d["num_attention_heads"]
        self.n_layer = d["num_hidden_layers"]
        self.inner = d["intermediate_size"]
        self.n_kv_head = d.get("num_key_value_heads") or self.n_head
        if self.n_head % self.n_kv_head:
            raise ValueError("config: num_key_value_heads must divide num_attention_heads")
        self.head_dim = d.get("head_dim") or self.hidden_size // self.n_head
        if d.get("head_dim") is None and self.hidden_size % self.n_head:
            raise ValueError("config: hidden_size must be divisible by num_attention_heads")
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError("config: hidden_act must be silu")
        self.rope_theta = float(d.get("rope_theta", 10000.0))
        self.rope_scaling = d.get("rope_scaling")
        self.max_positions = d.get("max_position_embeddings")
        self.n_positions = self.max_positions  # the context cap under the name every reference config uses
        if self.model_type == "qwen2":
            self.qkv_bias, self.o_bias = True, False
            if d.get("use_sliding_window"):
                raise ValueError("config: use_sliding_window is not supported for qwen2")
        else:
            self.qkv_bias = self.o_bias = bool(d.get("attention_bias", False))
        if d.get("mlp_bias"):
            raise ValueError("config: mlp_bias is not supported")
        self.tied = bool(d.get("tie_word_embeddings", False))
        self.window = d.get("sliding_window") if self.model_type == "mistral" else None

    def inv_freq(self):
        D = self.head_dim
        f = [self.rope_theta ** (-2.0 * i / D) for i in range(D // 2)]
        s = self.rope_scaling
        if not s:
            return f
        kind = s.get("rope_type", s.get("type"))
        if kind == "linear":
            return [x / s["factor"] for x in f]
        if kind != "llama3":
            raise ValueError(f"config: rope_scaling type {kind!r} is not supported")
        factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old = s["original_max_position_embeddings"]
        out = []
        for x in f:
            wavelen = 2 * math.pi / x
            if wavelen < old / hi:
                out.append(x)
            elif wavelen > old / lo:
                out.append(x / factor)
            else:
                smooth = (old / wavelen - lo) / (hi - lo)
                out.append((1 - smooth) * x / factor + smooth * x)
        return out


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, H, G, D, Fi = cfg.hidden_size, cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.inner
        self.cfg = cfg
        self.input_layernorm = nn.Parameter(torch.ones(C))
        self.q_proj = nn.Linear(C, H * D, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(C, G * D, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(C, G * D, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(H * D, C, bias=cfg.o_bias)
        self.post_attention_layernorm = nn.Parameter(torch.ones(C))
        self.gate_proj = nn.Linear(C, Fi, bias=False)
        self.up_proj = nn.Linear(C, Fi, bias=False)
        self.down_proj = nn.Linear(Fi, C, bias=False)

    def forward(self, x, cos, sin, positions, past):
        cfg = self.cfg
        T, H, G, D = x.shape[0], cfg.n_head, cfg.n_kv_head, cfg.head_dim
        h = rms_norm(x, self.input_layernorm, cfg.eps)
        q = self.q_proj(h).view(T, H, D).transpose(0, 1)
        k = self.k_proj(h).view(T, G, D).transpose(0, 1)
        v = self.v_proj(h).view(T, G, D).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        kpos = positions
        if past is not None:
            k = torch.cat([past[0], k], dim=1)
            v = torch.cat([past[1], v], dim=1)
            kpos = torch.cat([past[2], positions])
        cache = (k, v, kpos)
        group = H // G
        kk = k.repeat_interleave(group, dim=0)  # query head h reads K/V head h // group
        vv = v.repeat_interleave(group, dim=0)
        s = (q @ kk.transpose(1, 2)) / math.sqrt(D)
        visible = kpos[None, :] <= positions[:, None]
        if cfg.window:
            visible &= kpos[None, :] > positions[:, None] - cfg.window
        s = s.masked_fill(~visible[None], float("-inf"))
        a = torch.softmax(s, dim=-1) @ vv
        x = x + self.o_proj(a.transpose(0, 1).reshape(T, H * D))
        h = rms_norm(x, self.post_attention_layernorm, cfg.eps)
        x = x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        return x, cache


class Llama(CausalLM):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.Parameter(torch.ones(cfg.hidden_size))
        self.lm_head = None if cfg.tied else nn.Parameter(torch.zeros(cfg.vocab_size, cfg.hidden_size))
        self.inv_freq = torch.tensor(cfg.inv_freq(), dtype=torch.float64)

    def forward_with_past(self, tokens, past=None):
        tokens, positions = self.tokens_and_positions(tokens, past, self.cfg.max_positions)
        ang = positions.double()[:, None] * self.inv_freq[None]
        ang = torch.cat([ang, ang], dim=-1)
        cos, sin = ang.cos().float()[None], ang.sin().float()[None]
        x = self.embed_tokens(tokens)
        x, caches = self.run_layers(x, past, cos, sin, positions)
        return self.head_logits(rms_norm(x, self.norm, self.cfg.eps)), caches

    def _named_hf(self):
        """HF name -> the live parameter (hf_state_dict's keys)."""
        out = {"model.embed_tokens.weight": self.embed_tokens.weight, "model.norm.weight": self.norm}
        if self.lm_head is not None:
            out["lm_head.weight"] = self.lm_head
        for l, ly in enumerate(self.layers):
            p = f"model.layers.{l}."
            out[p + "input_layernorm.weight"] = ly.input_layernorm
            out[p + "post_attention_layernorm.weight"] = ly.post_attention_layernorm
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                lin = getattr(ly, n)
                out[p + f"self_attn.{n}.weight"] = lin.weight
                if lin.bias is not None:
                    out[p + f"self_attn.{n}.bias"] = lin.bias
            for n in ("gate_proj", "up_proj", "down_proj"):
                out[p + f"mlp.{n}.weight"] = getattr(ly, n).weight
        return out


def load(path):
    return causal_lm.load(Llama, LlamaConfig, path)
