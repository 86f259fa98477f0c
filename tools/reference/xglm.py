"""PyTorch reference of XGLM of docs/models.md, model_type "xglm", written from
the published definition (Lin et al. 2022, "Few-shot Learning with
Multilingual Generative Language Models", a fairseq decoder, and HF
transformers' modeling_xglm.py for the exact conventions), without the
transformers package.

  x = embed_tokens[tok] * sqrt(d_model)        the scale only with scale_embedding
  x = x + sinusoid[pos + 2]                    no weights: fairseq's table, offset 2
  per layer (pre-LN):
      x = x + out_proj(attn(self_attn_layer_norm(x)))
      x = x + fc2(act(fc1(final_layer_norm(x))))
  logits = layer_norm(x) lm_head^T             lm_head = embed_tokens when tied

sinusoid row r (h = d_model // 2, f_i = exp(-i ln(10000) / (h - 1))):
[sin(r f) | cos(r f) | 0 if d_model is odd], all in float32; row pad_token_id
zeroed. attn: q = q_proj(h) * head_dim^-0.5, causal softmax(q k^T) v per head,
biases everywhere. act: gelu (erf; XGLM's), relu or gelu_new. LayerNorm eps 1e-5.
"""
import math

import torch
import torch.nn as nn

import causal_lm
from causal_lm import CausalLM
from opt import ACTIVATIONS, Layer, _size


class XGLMConfig:
    """config.json of an XGLM model; raises ValueError naming a refused field."""

    def __init__(self, d):
        if d.get("model_type") != "xglm":
            raise ValueError(f"config: model_type must be 'xglm' (got {d.get('model_type')!r})")
        self.vocab_size = _size(d, "vocab_size")
        self.hidden_size = _size(d, "d_model")
        self.n_head = _size(d, "attention_heads")
        self.n_layer = _size(d, "num_layers")
        self.ffn_dim = _size(d, "ffn_dim")
        self.n_positions = _size(d, "max_position_embeddings")
        if self.hidden_size % self.n_head:
            raise ValueError("config: d_model must be divisible by attention_heads")
        if self.hidden_size < 4:
            raise ValueError("config: d_model must be >= 4")
        self.act = d.get("activation_function", "gelu")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"config: activation_function {self.act!r} is not supported")
        self.scale = math.sqrt(self.hidden_size) if d.get("scale_embedding", True) else 1.0
        self.pad = d.get("pad_token_id", 1)
        self.tied = d.get("tie_word_embeddings", True)
        if d.get("add_cross_attention"):
            raise ValueError("config: add_cross_attention is not supported")


def sinusoids(rows, dim, pad):
    """HF XGLMSinusoidalPositionalEmbedding.get_embedding, float32 throughout."""
    half = dim // 2
    f = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))
    a = torch.arange(rows, dtype=torch.float)[:, None] * f[None, :]
    t = torch.cat([torch.sin(a), torch.cos(a)], dim=1)
    if dim % 2:
        t = torch.cat([t, torch.zeros(rows, 1)], dim=1)
    if pad is not None and pad < rows:
        t[pad, :] = 0
    return t


class XGLM(CausalLM):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        C = cfg.hidden_size
        self.embed_tokens = nn.Embedding(cfg.vocab_size, C)
        self.table = sinusoids(cfg.n_positions + 2, C, cfg.pad)
        # OPT's layer, pre-LN with biases (XGLM has no switch for either).
        self.layers = nn.ModuleList(Layer(C, cfg.n_head, cfg.ffn_dim, True, True, cfg.act) for _ in range(cfg.n_layer))
        self.layer_norm = nn.LayerNorm(C)
        self.lm_head = None if cfg.tied else nn.Parameter(torch.zeros(cfg.vocab_size, C))

    def forward_with_past(self, tokens, past=None):
        tokens, positions = self.tokens_and_positions(tokens, past, self.cfg.n_positions)
        x = self.embed_tokens(tokens) * self.cfg.scale + self.table[positions + 2]
        x, caches = self.run_layers(x, past, positions)
        return self.head_logits(self.layer_norm(x)), caches

    def _named_hf(self):
        out = {"model.embed_tokens.weight": self.embed_tokens.weight, "model.layer_norm.weight": self.layer_norm.weight,
               "model.layer_norm.bias": self.layer_norm.bias}
        if self.lm_head is not None:
            out["lm_head.weight"] = self.lm_head
        for l, ly in enumerate(self.layers):
            out.update(ly.named_hf(f"model.layers.{l}."))
        return out


def load(path):
    return causal_lm.load(XGLM, XGLMConfig, path)
