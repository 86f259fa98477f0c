"""Exports a GPT-2 checkpoint folder (config.json + safetensors, learned positions,
dense attention) to ONNX for bench/peers' ONNX Runtime peer.

    /usr/bin/python3 tools/reference/export_onnx_gpt2.py CHECKPOINT_DIR OUT.onnx

The graph (opset 17, float32 weights: ONNX Runtime's CPU provider has no F16 matrix
product, so F16 checkpoints are widened here as it would do at load):
  inputs   input_ids [B, T] int64, past_key and past_value [P, L, B, H, D] float32
           (position-major: the caller keeps one growing buffer and passes its first
           P rows without copying; P = 0 for a prompt)
  outputs  logits [B, V] of the last position only, new_key and new_value
           [T, L, B, H, D]: only the new tokens' keys and values, which the caller
           appends to its buffer (returning the whole cache each step is the slow way,
           docs/peers.md).
Checked against gpt2.py's model: the exported graph's logits (run through PyTorch)
equal the reference's last-position logits within 1e-4 before it is written.
"""
import math
import sys

import torch
from torch import nn

import gpt2


class Gpt2Onnx(nn.Module):
    def __init__(self, ref):
        super().__init__()
        cfg = ref.cfg
        if ref.wpe is None or cfg.attention.get("kind", "dense") != "dense":
            raise ValueError("export handles learned positions and dense attention only")
        self.ref = ref
        self.L, self.H, self.D = cfg.n_layer, cfg.n_head, cfg.head_dim

    def forward(self, input_ids, past_key, past_value):
        ref = self.ref
        B, T = input_ids.shape
        P = past_key.shape[0]
        pos = torch.arange(T, dtype=torch.long) + P
        x = ref.wte(input_ids) + ref.wpe(pos)[None]
        # Query i (at P + i) sees keys 0 .. P + i.
        allowed = torch.arange(P + T)[None, :] <= pos[:, None]  # [T, P + T]
        new_k, new_v = [], []
        for l, block in enumerate(ref.h):
            h = block.ln_1(x)
            q, k, v = block.attn.c_attn(h).split(self.H * self.D, dim=-1)
            q = q.view(B, T, self.H, self.D).transpose(1, 2)
            k = k.view(B, T, self.H, self.D)
            v = v.view(B, T, self.H, self.D)
            new_k.append(k)
            new_v.append(v)
            keys = torch.cat([past_key[:, l].permute(1, 2, 0, 3), k.transpose(1, 2)], dim=2)  # [B, H, P+T, D]
            values = torch.cat([past_value[:, l].permute(1, 2, 0, 3), v.transpose(1, 2)], dim=2)
            scores = (q @ keys.transpose(-1, -2)) * (1.0 / math.sqrt(self.D))
            scores = scores.masked_fill(~allowed[None, None], float("-inf"))
            y = (torch.softmax(scores, dim=-1) @ values).transpose(1, 2).reshape(B, T, self.H * self.D)
            x = x + block.attn.c_proj(y)
            x = x + block.mlp(block.ln_2(x))
        last = ref.ln_f(x[:, -1])
        logits = last @ ref.head_weight().t()
        # [L, B, T, H, D] -> [T, L, B, H, D]
        return logits, torch.stack(new_k).permute(2, 0, 1, 3, 4), torch.stack(new_v).permute(2, 0, 1, 3, 4)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: export_onnx_gpt2.py CHECKPOINT_DIR OUT.onnx")
    src, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    ref = gpt2.load(src)
    model = Gpt2Onnx(ref).eval()
    L, H, D = model.L, model.H, model.D
    # Check the graph's function on a prompt then one cached step against the reference.
    prompt = torch.tensor([[1, 5, 9, 200, 7]], dtype=torch.long)
    empty = torch.zeros(0, L, 1, H, D)
    with torch.no_grad():
        logits, k, v = model(prompt, empty, empty)
        step_logits, _, _ = model(torch.tensor([[42]]), k, v)
        want = ref.forward(prompt[0].tolist() + [42])
    err = max(float((logits[0] - want[4]).abs().max()), float((step_logits[0] - want[5]).abs().max()))
    if err > 1e-4:
        sys.exit(f"export check failed: logits differ from gpt2.py by {err}")
    torch.onnx.export(
        model, (prompt, empty, empty), out, opset_version=17,
        input_names=["input_ids", "past_key", "past_value"],
        output_names=["logits", "new_key", "new_value"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "past_key": {0: "past", 2: "batch"},
                      "past_value": {0: "past", 2: "batch"}, "logits": {0: "batch"},
                      "new_key": {0: "seq", 2: "batch"}, "new_value": {0: "seq", 2: "batch"}})
    print(f"wrote {out} (check against gpt2.py: max |logit diff| {err:.2e})")


if __name__ == "__main__":
    main()
