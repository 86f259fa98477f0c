"""What every causal LM reference here shares: scoring, greedy decoding (with
or without the cache), the top log-probs of the last position, and loading /
saving tensors under HuggingFace's names, random initialisation for the
fixtures. Each architecture defines forward_with_past(tokens, past) ->
(logits, caches) and _named_hf()."""

import torch
import torch.nn as nn

import checkpoint


class CausalLM(nn.Module):
    """score / greedy / top_k_last over forward_with_past(tokens, past) -> (logits, caches),
    and the HF state dict through _named_hf(); shared by opt.OPT, xglm.XGLM and llama.Llama
    (the caches hold (k, v, positions) per layer)."""

    def forward(self, tokens):
        return self.forward_with_past(tokens)[0]

    def start_of(self, past):
        return 0 if past is None else int(past[0][2][-1]) + 1

    def tokens_and_positions(self, tokens, past, limit):
        """tokens as a tensor and their positions after past's; ValueError past `limit` (0: none)."""
        tokens = torch.as_tensor(list(tokens), dtype=torch.long)
        start = self.start_of(past)
        if limit and start + tokens.shape[0] > limit:
            raise ValueError("sequence exceeds max_position_embeddings")
        return tokens, torch.arange(start, start + tokens.shape[0])

    def run_layers(self, x, past, *args):
        """x through self.layers, layer l called as layer(x, *args, past[l]); (x, the new caches)."""
        caches = []
        for l, layer in enumerate(self.layers):
            x, c = layer(x, *args, None if past is None else past[l])
            caches.append(c)
        return x, caches

    def head_logits(self, x):
        """x @ lm_head^T, or the tied embedding when there is no lm_head."""
        head = self.embed_tokens.weight if self.lm_head is None else self.lm_head
        return x @ head.t()

    @torch.no_grad()
    def score(self, tokens):
        """[None, lp_1, ..]: float64 log_softmax of the float32 logits."""
        tokens = list(tokens)
        if len(tokens) < 2:
            return [None] * len(tokens)
        lp = torch.log_softmax(self.forward(tokens)[:-1].double(), dim=-1)
        return [None] + lp.gather(1, torch.tensor(tokens[1:])[:, None])[:, 0].tolist()

    @torch.no_grad()
    def greedy(self, tokens, n, use_cache=True, return_margins=False):
        out, margins, past, feed = [], [], None, list(tokens)
        for _ in range(n):
            if use_cache:
                logits, past = self.forward_with_past(feed, past)
            else:
                logits = self.forward(list(tokens) + out)
            last = logits[-1]
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            out.append(int(torch.argmax(last)))
            feed = [out[-1]]
        return (out, margins) if return_margins else out

    @torch.no_grad()
    def top_k_last(self, tokens, k=5):
        lp = torch.log_softmax(self.forward(list(tokens))[-1].double(), dim=-1)
        order = sorted(range(lp.shape[0]), key=lambda i: (-float(lp[i]), i))[:k]
        return [(i, float(lp[i])) for i in order]

    def hf_state_dict(self):
        return {k: v.detach().clone().float() for k, v in self._named_hf().items()}

    def load_hf_state_dict(self, tensors):
        checkpoint.copy_checked(self._named_hf(), tensors)


def load(model_cls, config_cls, path):
    """The model of the HF folder (or file) at path, float32, in eval mode."""
    model = model_cls(config_cls(checkpoint.read_config(path)))
    model.load_hf_state_dict({k: v.float() for k, v in checkpoint.read_tensors(path).items()})
    model.eval()
    return model


def is_norm_weight(name):
    """A LayerNorm / RMSNorm weight under HF's names: OPT and XGLM's *layer_norm.weight,
    the Llama family's *layernorm.weight and model.norm.weight."""
    return name.endswith(("layer_norm.weight", "layernorm.weight")) or name == "model.norm.weight"


def init_random(model, seed, std=0.2, norm_std=0.2, bias_std=0.1, embed_std=None):
    """Deterministic random weights large enough that a wrong convention shows in log-probs:
    matrices and tables N(0, std) (embed_tokens N(0, embed_std) when given), norm
    weights N(1, norm_std), biases N(0, bias_std); drawn in the order of the sorted names."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model._named_hf().items()):
            if is_norm_weight(name):
                p.copy_(1.0 + norm_std * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(bias_std * torch.randn(p.shape, generator=g))
            elif name.endswith("embed_tokens.weight") and embed_std is not None:
                p.copy_(embed_std * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
