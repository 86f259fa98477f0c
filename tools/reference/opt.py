"""PyTorch reference of OPT (and OPT-IML) of docs/models.md, model_type "opt",
written from the published definition (Zhang et al. 2022, "OPT: Open
Pre-trained Transformer Language Models", and HF transformers'
modeling_opt.py for the exact conventions), without the transformers package.

  x = embed_tokens[tok]                        [T, P], P = word_embed_proj_dim
  x = project_in(x)                            when P != hidden_size (no bias)
  x = x + embed_positions[pos + 2]             learned, fairseq's offset 2
  per layer, do_layer_norm_before true (pre-LN):
      x = x + out_proj(attn(self_attn_layer_norm(x)))
      x = x + fc2(act(fc1(final_layer_norm(x))))
  per layer, do_layer_norm_before false (post-LN, opt-350m):
      x = self_attn_layer_norm(x + out_proj(attn(x)))
      x = final_layer_norm(x + fc2(act(fc1(x))))
  x = final_layer_norm(x)                      model level; pre-LN only (and not
                                               with _remove_final_layer_norm)
  x = project_out(x)                           when P != hidden_size (no bias)
  logits = x lm_head^T                         lm_head = embed_tokens when tied

attn: q = q_proj(h) * head_dim^-0.5, k, v = k_proj(h), v_proj(h) (biases when
enable_bias), causal softmax(q k^T) v per head. act: relu (OPT's), gelu (erf)
or gelu_new. LayerNorm eps 1e-5. Everything float32; scores take a float64
log_softmax of the float32 logits.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import causal_lm
from causal_lm import CausalLM

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


def _size(d, k):
    if not isinstance(d.get(k), int) or isinstance(d.get(k), bool) or d[k] < 1:
        raise ValueError(f"config: {k} must be an integer >= 1 (got {d.get(k)!r})")
    return d[k]


class OPTConfig:
    """config.json of an OPT model; raises ValueError naming a refused field."""

    def __init__(self, d):
        if d.get("model_type") != "opt":
            raise ValueError(f"config: model_type must be 'opt' (got {d.get('model_type')!r})")
        self.vocab_size = _size(d, "vocab_size")
        self.hidden_size = _size(d, "hidden_size")
        self.n_head = _size(d, "num_attention_heads")
        self.n_layer = _size(d, "num_hidden_layers")
        self.ffn_dim = _size(d, "ffn_dim")
        self.n_positions = _size(d, "max_position_embeddings")
        if self.hidden_size % self.n_head:
            raise ValueError("config: hidden_size must be divisible by num_attention_heads")
        self.proj_dim = d.get("word_embed_proj_dim") or self.hidden_size
        self.pre_ln = d.get("do_layer_norm_before", True)
        self.final_ln = self.pre_ln and not d.get("_remove_final_layer_norm", False)
        self.bias = d.get("enable_bias", True)
        if not d.get("layer_norm_elementwise_affine", True):
            raise ValueError("config: layer_norm_elementwise_affine false is not supported")
        self.act = d.get("activation_function", "relu")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"config: activation_function {self.act!r} is not supported")
        self.tied = d.get("tie_word_embeddings", True)


class Attention(nn.Module):
    def __init__(self, C, H, bias):
        super().__init__()
        self.H, self.D = H, C // H
        self.q_proj = nn.Linear(C, C, bias=bias)
        self.k_proj = nn.Linear(C, C, bias=bias)
        self.v_proj = nn.Linear(C, C, bias=bias)
        self.out_proj = nn.Linear(C, C, bias=bias)

    def forward(self, h, positions, past):
        T, H, D = h.shape[0], self.H, self.D
        q = (self.q_proj(h) * D ** -0.5).view(T, H, D).transpose(0, 1)
        k = self.k_proj(h).view(T, H, D).transpose(0, 1)
        v = self.v_proj(h).view(T, H, D).transpose(0, 1)
        kpos = positions
        if past is not None:
            k, v, kpos = torch.cat([past[0], k], 1), torch.cat([past[1], v], 1), torch.cat([past[2], positions])
        s = q @ k.transpose(1, 2)
        s = s.masked_fill(~(kpos[None, :] <= positions[:, None])[None], float("-inf"))
        a = torch.softmax(s, dim=-1) @ v
        return self.out_proj(a.transpose(0, 1).reshape(T, H * D)), (k, v, kpos)


class Layer(nn.Module):
    """A fairseq decoder layer (OPT's and XGLM's): LayerNorm before (pre_ln) or after each block."""

    def __init__(self, C, H, ffn_dim, bias, pre_ln, act):
        super().__init__()
        self.pre_ln, self.act = pre_ln, ACTIVATIONS[act]
        self.self_attn = Attention(C, H, bias)
        self.self_attn_layer_norm = nn.LayerNorm(C)
        self.fc1 = nn.Linear(C, ffn_dim, bias=bias)
        self.fc2 = nn.Linear(ffn_dim, C, bias=bias)
        self.final_layer_norm = nn.LayerNorm(C)

    def forward(self, x, positions, past):
        pre = self.pre_ln
        a, cache = self.self_attn(self.self_attn_layer_norm(x) if pre else x, positions, past)
        x = x + a
        if not pre:
            x = self.self_attn_layer_norm(x)
        x = x + self.fc2(self.act(self.fc1(self.final_layer_norm(x) if pre else x)))
        if not pre:
            x = self.final_layer_norm(x)
        return x, cache

    def named_hf(self, prefix):
        """HF name (under prefix) -> the live parameter; biases only where the layer has them."""
        mods = {"self_attn.q_proj": self.self_attn.q_proj, "self_attn.k_proj": self.self_attn.k_proj,
                "self_attn.v_proj": self.self_attn.v_proj, "self_attn.out_proj": self.self_attn.out_proj,
                "self_attn_layer_norm": self.self_attn_layer_norm, "fc1": self.fc1, "fc2": self.fc2,
                "final_layer_norm": self.final_layer_norm}
        out = {}
        for n, m in mods.items():
            out[prefix + n + ".weight"] = m.weight
            if m.bias is not None:
                out[prefix + n + ".bias"] = m.bias
        return out


class OPT(CausalLM):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        C, P = cfg.hidden_size, cfg.proj_dim
        self.embed_tokens = nn.Embedding(cfg.vocab_size, P)
        self.embed_positions = nn.Parameter(torch.zeros(cfg.n_positions + 2, C))
        self.project_in = nn.Linear(P, C, bias=False) if P != C else None
        self.project_out = nn.Linear(C, P, bias=False) if P != C else None
        self.layers = nn.ModuleList(Layer(C, cfg.n_head, cfg.ffn_dim, cfg.bias, cfg.pre_ln, cfg.act)
                                    for _ in range(cfg.n_layer))
        self.final_layer_norm = nn.LayerNorm(C) if cfg.final_ln else None
        self.lm_head = None if cfg.tied else nn.Parameter(torch.zeros(cfg.vocab_size, P))

    def forward_with_past(self, tokens, past=None):
        tokens, positions = self.tokens_and_positions(tokens, past, self.cfg.n_positions)
        x = self.embed_tokens(tokens)
        if self.project_in is not None:
            x = self.project_in(x)
        x = x + self.embed_positions[positions + 2]
        x, caches = self.run_layers(x, past, positions)
        if self.final_layer_norm is not None:
            x = self.final_layer_norm(x)
        if self.project_out is not None:
            x = self.project_out(x)
        return self.head_logits(x), caches

    def _named_hf(self):
        d = "model.decoder."
        out = {d + "embed_tokens.weight": self.embed_tokens.weight, d + "embed_positions.weight": self.embed_positions}
        if self.project_in is not None:
            out[d + "project_in.weight"] = self.project_in.weight
            out[d + "project_out.weight"] = self.project_out.weight
        if self.final_layer_norm is not None:
            out[d + "final_layer_norm.weight"] = self.final_layer_norm.weight
            out[d + "final_layer_norm.bias"] = self.final_layer_norm.bias
        if self.lm_head is not None:
            out["lm_head.weight"] = self.lm_head
        for l, ly in enumerate(self.layers):
            out.update(ly.named_hf(f"{d}layers.{l}."))
        return out


def load(path):
    return causal_lm.load(OPT, OPTConfig, path)
