"""PyTorch reference of the `gpt2` architecture of docs/spec.md.

HF GPT-2 unchanged (learned positions, pre-LN, gelu_new, Conv1D [in, out]
weights applied as x @ W + b, c_attn -> Q, K, V, head tied to wte unless
lm_head.weight exists), plus this project's extensions:
  - position_embedding "rotary" (GPT-NeoX rotate-half on the first rotary_dim
    channels of every head, angles in float64, no wpe);
  - attention patterns through ATTENTION_PATTERNS ("dense", and "bigbird" from
    bigbird.py: a pattern returns, per layer, which keys each query may see).

State-dict names are HF GPT-2's without prefix: wte.weight, wpe.weight,
h.N.ln_1.{weight,bias}, h.N.attn.c_attn.{weight,bias}, h.N.attn.c_proj.*,
h.N.ln_2.*, h.N.mlp.c_fc.*, h.N.mlp.c_proj.*, ln_f.*, optional lm_head.weight
([vocab, C], logits = x @ lm_head.weight^T, as HF's nn.Linear).

Everything is float32; scoring takes a float64 log_softmax of the float32 logits.
The module is an ordinary nn.Module and can be trained.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import bigbird
import checkpoint


# ----------------------------------------------------------------- config

class GPT2Config:
    """config.json fields of a `gpt2` model, with the spec's defaults."""

    def __init__(self, d):
        self.raw = dict(d)
        mt = d.get("model_type", "gpt2")
        if mt != "gpt2":
            raise ValueError(f"model_type {mt!r} is not gpt2")
        for k in ("vocab_size", "n_embd", "n_head", "n_layer"):
            if not isinstance(d.get(k), int) or d[k] < 1:
                raise ValueError(f"config: {k} must be an integer >= 1 (got {d.get(k)!r})")
        self.vocab_size = d["vocab_size"]
        self.n_embd = d["n_embd"]
        self.n_head = d["n_head"]
        self.n_layer = d["n_layer"]
        if self.n_embd % self.n_head:
            raise ValueError("config: n_head must divide n_embd")
        self.head_dim = self.n_embd // self.n_head
        ni = d.get("n_inner")
        self.n_inner = 4 * self.n_embd if ni is None else int(ni)
        self.layer_norm_epsilon = float(d.get("layer_norm_epsilon", 1e-5))
        self.activation_function = d.get("activation_function", "gelu_new")
        if self.activation_function != "gelu_new":
            raise ValueError(f"config: activation_function {self.activation_function!r} unsupported (gelu_new only)")
        # HF switches that would change the math; refuse the non-default values.
        if d.get("scale_attn_weights", True) is not True:
            raise ValueError("config: scale_attn_weights=false unsupported")
        if d.get("scale_attn_by_inverse_layer_idx", False):
            raise ValueError("config: scale_attn_by_inverse_layer_idx unsupported")
        self.position_embedding = d.get("position_embedding", "learned")
        if self.position_embedding == "learned":
            # HF's GPT2Config default when the key is absent.
            self.n_positions = int(d.get("n_positions", 1024))
        elif self.position_embedding == "rotary":
            npos = d.get("n_positions")
            self.n_positions = None if npos is None else int(npos)
            rd = d.get("rotary_dim")
            self.rotary_dim = self.head_dim if rd is None else rd
            if not isinstance(self.rotary_dim, int) or self.rotary_dim < 2 or self.rotary_dim % 2 \
                    or self.rotary_dim > self.head_dim:
                raise ValueError(f"config: rotary_dim must be even, 2..{self.head_dim} (got {rd!r})")
            self.rotary_base = float(d.get("rotary_base", 10000.0))
        else:
            raise ValueError(f"config: position_embedding {self.position_embedding!r} unknown")
        self.attention = parse_attention(d)


# ------------------------------------------------------- attention patterns

class DenseCausal:
    """Query at position q sees every key k <= q."""

    def __init__(self, cfg):
        pass

    def allowed(self, layer, q_pos, k_pos):
        """Bool mask [H or 1, Tq, Tk] of keys each query may attend to.

        q_pos, k_pos: int64 absolute positions of the queries and keys.
        """
        return (k_pos[None, :] <= q_pos[:, None])[None]


# kind -> class(cfg) with .allowed(layer, q_pos, k_pos); PATTERN_VALIDATORS[kind]
# (optional) refuses a bad attention dict, naming the field.
ATTENTION_PATTERNS = {"dense": DenseCausal, "bigbird": bigbird.BigBirdCausal}
PATTERN_VALIDATORS = {"bigbird": bigbird.validate}


def parse_attention(d):
    """config["attention"] of a gpt2 model (absent = dense); refusals name the field."""
    if "attention" not in d or d["attention"] is None:
        return {"kind": "dense"}
    att = d["attention"]
    if not isinstance(att, dict):
        raise ValueError(f"config: attention must be an object (got {att!r})")
    if "kind" not in att:
        raise ValueError("config: attention.kind is missing")
    kind = att["kind"]
    if not isinstance(kind, str) or kind not in ATTENTION_PATTERNS:
        raise ValueError(f"config: attention.kind must be one of {sorted(ATTENTION_PATTERNS)} (got {kind!r})")
    if kind in PATTERN_VALIDATORS:
        PATTERN_VALIDATORS[kind](att)
    return dict(att)


def require_rotary(d, arch):
    """perceiver_ar and block_recurrent must say position_embedding "rotary" (models.md)."""
    if "position_embedding" not in d:
        raise ValueError(f'config: position_embedding is missing ({arch} requires "rotary")')
    if d["position_embedding"] != "rotary":
        raise ValueError(f'config: position_embedding must be "rotary" for {arch} '
                         f'(got {d["position_embedding"]!r})')


def refuse_attention(d, arch):
    """perceiver_ar / block_recurrent: the attention pattern is fixed by the
    architecture. An absent attention or {"kind": "dense"} (the default, a
    no-op) is accepted; any other kind (bigbird) is refused naming attention.kind."""
    att = d.get("attention")
    if att is None:
        return
    if not isinstance(att, dict):
        raise ValueError(f"config: attention must be an object (got {att!r})")
    if "kind" not in att:
        raise ValueError("config: attention.kind is missing")
    kind = att["kind"]
    if kind != "dense":
        raise ValueError(f"config: attention.kind {kind!r} is only supported by model_type gpt2, not {arch}")


# ----------------------------------------------------------------- layers

def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Conv1D(nn.Module):
    """HF Conv1D: weight [in, out], y = x @ W + b."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Rotary:
    """GPT-NeoX rotate-half on the first rotary_dim channels of each head."""

    def __init__(self, rotary_dim, base):
        self.rotary_dim = rotary_dim
        self.base = base

    def cos_sin(self, positions):
        half = self.rotary_dim // 2
        f64 = dict(dtype=torch.float64, device=positions.device)
        i = torch.arange(half, **f64)
        theta = torch.pow(torch.tensor(self.base, **f64), -2.0 * i / self.rotary_dim)
        a = positions.to(torch.float64)[:, None] * theta[None, :]  # [T, half], double precision
        return torch.cos(a).to(torch.float32), torch.sin(a).to(torch.float32)

    def apply(self, x, cos, sin):
        """x [..., T, D]; cos/sin [T, rotary_dim/2]."""
        half = self.rotary_dim // 2
        x1 = x[..., :half]
        x2 = x[..., half:self.rotary_dim]
        rest = x[..., self.rotary_dim:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd)
        self.keep_probs = False

    def split(self, t):
        B, T, C = t.shape
        return t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # [B, H, T, D]

    def forward(self, h, layer, positions, pattern, rotary, past=None, ia3=None):
        """h [B, T, C]; positions [T] absolute; past: (k, v, k_pos) or None;
        ia3: (l_k [C], l_v [C]) or None, rescaling K and V before rotary.
        Returns (out [B, T, C], (k, v, k_pos)) with the cache including this step."""
        C = h.shape[-1]
        q, k, v = self.c_attn(h).split(C, dim=-1)
        if ia3 is not None:
            k, v = k * ia3[0], v * ia3[1]
        q, k, v = self.split(q), self.split(k), self.split(v)
        if rotary is not None:
            cos, sin = rotary.cos_sin(positions)
            q = rotary.apply(q, cos, sin)
            k = rotary.apply(k, cos, sin)
        k_pos = positions
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
            k_pos = torch.cat([past[2], positions])
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        allowed = pattern.allowed(layer, positions, k_pos)  # [H or 1, Tq, Tk]
        scores = scores.masked_fill(~allowed[None], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if self.keep_probs:  # training only (tools/train/train.py --fim-attn-guide)
            self.probs = probs
        y = (probs @ v).transpose(1, 2).reshape(h.shape)
        return self.c_proj(y), (k, v, k_pos)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = Conv1D(cfg.n_embd, cfg.n_inner)
        self.c_proj = Conv1D(cfg.n_inner, cfg.n_embd)

    def forward(self, x, ia3_ff=None):
        a = gelu_new(self.c_fc(x))
        return self.c_proj(a if ia3_ff is None else a * ia3_ff)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=eps)
        self.mlp = MLP(cfg)

    def forward(self, x, layer, positions, pattern, rotary, past=None, ia3=None):
        """ia3: (l_k, l_v, l_ff) of this layer, or None."""
        a, cache = self.attn(self.ln_1(x), layer, positions, pattern, rotary, past, None if ia3 is None else ia3[:2])
        x = x + a
        x = x + self.mlp(self.ln_2(x), None if ia3 is None else ia3[2])
        return x, cache


# ------------------------------------------------------------------ model

class GPT2(nn.Module):
    def __init__(self, cfg, tied=True):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = GPT2Config(cfg)
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd) if cfg.position_embedding == "learned" else None
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.lm_head = None if tied else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.rotary = Rotary(cfg.rotary_dim, cfg.rotary_base) if cfg.position_embedding == "rotary" else None
        self.pattern = ATTENTION_PATTERNS[cfg.attention.get("kind", "dense")](cfg)

    @property
    def n_positions(self):
        return self.cfg.n_positions

    def head_weight(self):
        return self.wte.weight if self.lm_head is None else self.lm_head.weight

    def forward(self, tokens, past=None, adapter=None):
        """tokens: list / 1-D or 2-D [B, T] int tensor. Returns float32 logits
        ([T, V] or [B, T, V]). With past (a list of per-layer caches from a
        previous call with return_past), tokens continue that sequence.
        adapter: an adapters.Adapter (soft prompt and/or (IA)^3) or None."""
        logits, _ = self.forward_with_past(tokens, past, adapter)
        return logits

    def forward_with_past(self, tokens, past=None, adapter=None, prompt_rows=False):
        """A soft prompt (adapter.prompt [P, C]) runs before the tokens of a new
        sequence (past None) at positions 0 .. P-1; the tokens follow at P ...
        Its rows' logits are returned only with prompt_rows=True ([P + T, V])."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        squeeze = tokens.dim() == 1
        if squeeze:
            tokens = tokens[None]
        B, T = tokens.shape
        soft = adapter.prompt if adapter is not None and past is None and adapter.prompt is not None else None
        P = 0 if soft is None else soft.shape[0]
        start = 0 if past is None else int(past[0][2][-1]) + 1
        if self.cfg.n_positions is not None and start + P + T > self.cfg.n_positions:
            raise ValueError(f"sequence of {start + P + T} tokens exceeds n_positions {self.cfg.n_positions}")
        if T and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size):
            raise ValueError("token id out of range")
        positions = torch.arange(start, start + P + T, dtype=torch.long, device=tokens.device)
        x = self.wte(tokens)
        if soft is not None:
            x = torch.cat([soft[None].expand(B, P, soft.shape[1]), x], dim=1)
        if self.wpe is not None:
            x = x + self.wpe(positions)[None]
        caches = []
        for l, block in enumerate(self.h):
            ia3 = adapter.ia3(l) if adapter is not None else None
            x, c = block(x, l, positions, self.pattern, self.rotary, None if past is None else past[l], ia3)
            caches.append(c)
        if not prompt_rows:
            x = x[:, P:]
        x = self.ln_f(x)
        logits = x @ self.head_weight().t()
        return (logits[0] if squeeze else logits), caches

    # --------------------------------------------------------- helpers

    @torch.no_grad()
    def score(self, tokens, adapter=None):
        """[None, lp_1, ..., lp_{T-1}]: natural-log probability of each token given
        the previous ones (float64 log_softmax of the float32 logits). With a
        soft prompt the first token is predicted too, by the prompt's last row."""
        tokens = list(tokens)
        if len(tokens) == 0:
            return []
        if adapter is not None and adapter.prompt is not None:
            P = adapter.prompt.shape[0]
            logits, _ = self.forward_with_past(tokens, None, adapter, prompt_rows=True)
            pred, tgt, head = logits[P - 1:P - 1 + len(tokens)], tokens, []  # row P-1+j predicts token j
        else:
            if len(tokens) == 1:
                return [None]
            logits = self.forward(tokens, adapter=adapter)
            pred, tgt, head = logits[:-1], tokens[1:], [None]
        lp = torch.log_softmax(pred.double(), dim=-1)
        return head + lp.gather(1, torch.tensor(tgt, dtype=torch.long)[:, None])[:, 0].tolist()

    @torch.no_grad()
    def greedy(self, tokens, n, use_cache=True, return_margins=False, adapter=None):
        """n greedy continuation ids (argmax of float32 logits; ties -> lowest id).
        Does not stop at eos. Stops early when n_positions is reached."""
        tokens = list(tokens)
        out, margins = [], []
        past = None
        feed = tokens
        for _ in range(n):
            if self.cfg.n_positions is not None and len(tokens) + len(out) > self.cfg.n_positions:
                break
            if use_cache:
                logits, past = self.forward_with_past(feed, past, adapter)
            else:
                logits = self.forward(tokens + out, adapter=adapter)
            last = logits[-1]
            nxt = int(torch.argmax(last))
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            out.append(nxt)
            feed = [nxt]
            if self.cfg.n_positions is not None and len(tokens) + len(out) >= self.cfg.n_positions:
                break
        return (out, margins) if return_margins else out

    @torch.no_grad()
    def top_k_last(self, tokens, k=5):
        """[(id, logprob)] of the last position, best first (ties: lower id first)."""
        lp = torch.log_softmax(self.forward(list(tokens))[-1].double(), dim=-1)
        order = sorted(range(lp.shape[0]), key=lambda i: (-float(lp[i]), i))[:k]
        return [(i, float(lp[i])) for i in order]

    # ------------------------------------------------------- state I/O

    def hf_state_dict(self):
        """Tensors under HF GPT-2 names (no prefix), float32, detached."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_hf_state_dict(self, tensors):
        checkpoint.copy_checked(self.state_dict(), tensors)


def from_tensors(config, tensors):
    """Model from a config dict and checkpoint tensors (names already normalized)."""
    cfg = GPT2Config(config)
    model = GPT2(cfg, tied="lm_head.weight" not in tensors)
    model.load_hf_state_dict(tensors)
    model.eval()
    return model


def load(path):
    """Load a checkpoint folder (config.json + model.safetensors or shards)."""
    config = checkpoint.read_config(path)
    tensors = checkpoint.normalize_names(checkpoint.read_tensors(path))
    return from_tensors(config, tensors)


def init_random(model, seed, std=0.2, ln_std=0.2, bias_std=0.1):
    """Deterministic large-ish random init (so bugs show in log-probs):
    matrices N(0, std), LayerNorm weights N(1, ln_std), all biases N(0, bias_std)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if ".ln_" in name or name.startswith("ln_"):
                if name.endswith(".weight"):
                    p.copy_(1.0 + ln_std * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(bias_std * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(bias_std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return model
