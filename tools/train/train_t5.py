"""Train the shipped seq2seq model (models/t5-kjv): a small T5 v1.1-shaped
encoder-decoder on the KJV training text, with T5 span corruption mixed with
AlexaTM's causal mode (tools/train/t5_data.py).

One definition serves as reference and as training code: the model is
tools/reference/t5.py's T5, unchanged, run on a padded batch of --batch
examples (padding masked out as an encoder key and ignored in the loss).

    /usr/bin/python3 tools/train/train_t5.py --out models/t5-kjv --batch 8 --lr 0.0005 --minutes 60 \
        --ramp 0.5 --raw-max 256 --raw-min 64 --tied-cross-init --local-bias 1

Writes OUT/config.json, OUT/tokenizer.json, OUT/tokenizer_config.json,
OUT/model.safetensors (F16, HuggingFace names; rewritten every --save-every
seconds and at the end), OUT/train_log.jsonl (every 10th step: loss in bits
per target token for each mode, lr; every --eval-every seconds the span loss
on 32 fixed examples from James, the start of the held-out text, which the
final evaluation on Revelation 19-22 does not use) and OUT/results.json
(training record; tools/train/eval_t5.py adds the held-out figures).

Init: HuggingFace's T5 init (embedding N(0, 1); q N(0, (d_model d_kv)^-1/2),
k, v, wi N(0, d_model^-1/2), o N(0, (H d_kv)^-1/2), wo N(0, d_ff^-1/2),
relative bias N(0, d_model^-1/2), norms 1); --tied-cross-init and --local-bias
change two of them (see their help). Optimizer: AdamW (betas 0.9/0.95,
weight decay 0.1 on matrices, none on norms and relative biases), gradient
clipping at 1.0, linear warmup then cosine decay to 10% of the peak scheduled
on wall time.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, HERE)

import checkpoint  # noqa: E402
import data  # noqa: E402
import t5  # noqa: E402
import t5_data  # noqa: E402


def build_config(a, vocab):
    d = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True,
         "vocab_size": vocab.size, "d_model": a.d_model, "num_heads": a.heads, "d_kv": a.d_model // a.heads,
         "d_ff": a.d_ff, "num_layers": a.layers, "num_decoder_layers": a.decoder_layers,
         "relative_attention_num_buckets": a.buckets, "relative_attention_max_distance": a.max_distance,
         "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": True,
         "decoder_start_token_id": t5_data.PAD, "pad_token_id": t5_data.PAD, "eos_token_id": t5_data.EOS,
         "dropout_rate": 0.0, "torch_dtype": "float16",
         "special_tokens": {"clm": t5_data.CLM}}
    return {k: d[k] for k in sorted(d)}


def init_weights(model, c, seed, tied_cross=False):
    g = torch.Generator().manual_seed(seed)
    inner = c.num_heads * c.d_kv
    with torch.no_grad():
        for name, p in sorted(model._named_hf().items()):
            if name.endswith("layer_norm.weight"):
                p.fill_(1.0)
                continue
            if name == "shared.weight":
                std = 1.0
            elif name.endswith(".q.weight"):
                std = (c.d_model * c.d_kv) ** -0.5
            elif name.endswith(".o.weight"):
                std = inner ** -0.5
            elif name.endswith(".wo.weight"):
                std = c.d_ff ** -0.5
            else:  # k, v, wi_0, wi_1, relative_attention_bias, lm_head
                std = c.d_model ** -0.5
            p.copy_(std * torch.randn(p.shape, generator=g))
        if tied_cross:
            for blk in model.dec:
                blk.cross.q.weight.copy_(blk.cross.k.weight)


def local_bias_init(model, c, slope):
    """Start the encoder's relative position bias as a locality prior: head h adds -slope 2^-h |n|
    for a key n positions away (|n| the nearest distance of n's bucket; ALiBi's slopes, Press et al.
    2022). HuggingFace's init (N(0, d_model^-1/2)) leaves the encoder position-blind at first: content
    scores outweigh it, a sentinel's output then carries nothing of its neighbours, the decoder learns
    not to read them and the bias gets almost no gradient (0.001 against the decoder's 0.05)."""
    n = torch.arange(-c.max_distance, c.max_distance + 1)
    b = t5.bucket(n, True, c.num_buckets, c.max_distance)
    near = torch.tensor([float(n[b == i].abs().min()) if (b == i).any() else float(c.max_distance)
                         for i in range(c.num_buckets)])
    slopes = slope * 2.0 ** -torch.arange(c.num_heads).float()
    with torch.no_grad():
        model.enc[0].self_attn.rel.weight.copy_(-near[:, None] * slopes[None, :])


def param_groups(model):
    decay, no = [], []
    for name, p in model._named_hf().items():
        (no if name.endswith("layer_norm.weight") or "relative_attention_bias" in name else decay).append(p)
    return decay, no


def padded(rows, fill):
    t = torch.full((len(rows), max(len(r) for r in rows)), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        t[i, :len(r)] = torch.tensor(r)
    return t


def batch_losses(model, pairs):
    """Cross entropy (nats) of every target token given its input, [B, T] (0 at padding), for a list
    of (input, target) pairs run as one padded batch."""
    inp = padded([i for i, _ in pairs], t5_data.PAD)
    valid = padded([[1] * len(i) for i, _ in pairs], 0).bool()
    tgt = padded([t for _, t in pairs], -100)
    dec_in = padded([[model.c.decoder_start] + t[:-1] for _, t in pairs], t5_data.PAD)
    logits = model.decode(model.encode(inp, valid), dec_in, valid)
    return F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=-100, reduction="none")


def quick_set(vocab, n=32):
    """Fixed span-corruption examples of 256 characters from the start of the held-out text (James)."""
    _, held = data.split()
    rng = np.random.default_rng(7)
    ids = vocab.encode(held[:n * 256])
    return [t5_data.corrupt(vocab, ids[i * 256:(i + 1) * 256], t5_data.noise_spans(rng, 256)) for i in range(n)]


def text_removed(vocab, examples):
    """The quick set with only the sentinels and </s> as input: what the decoder guesses without
    reading the text around the gaps (the gap to quick_eval is what the encoder contributes)."""
    return [([t for t in inp if vocab.is_sentinel(t)] + [t5_data.EOS], tgt) for inp, tgt in examples]


@torch.no_grad()
def quick_eval(model, examples):
    """Bits per target token (sentinels and </s> included) on the quick set."""
    tot, n = 0.0, 0
    for i in range(0, len(examples), 8):
        part = examples[i:i + 8]
        tot += float(batch_losses(model, part).sum())
        n += sum(len(t) for _, t in part)
    return tot / n / math.log(2)


def save(model, config, vocab, out):
    os.makedirs(out, exist_ok=True)
    files = {"config.json": config, "tokenizer.json": vocab.tokenizer_json(),
             "tokenizer_config.json": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                                       "extra_ids": t5_data.SENTINELS, "tokenizer_class": "T5Tokenizer"}}
    for name, obj in files.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=None if name == "tokenizer.json" else 2)
            f.write("\n")
    checkpoint.save_tensors(out, {k: v.to(torch.float16).contiguous() for k, v in model.hf_state_dict().items()})


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-ff", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--decoder-layers", type=int, default=3)
    ap.add_argument("--buckets", type=int, default=32)
    ap.add_argument("--max-distance", type=int, default=128)
    ap.add_argument("--clm-rate", type=float, default=0.2, help="share of examples in causal mode (AlexaTM: 0.2)")
    ap.add_argument("--raw-min", type=int, default=96)
    ap.add_argument("--raw-max", type=int, default=384)
    ap.add_argument("--ramp", type=float, default=0.0,
                    help="length curriculum: over this share of the time budget the slice length grows from "
                         "--ramp-from to --raw-min..--raw-max (0: off)")
    ap.add_argument("--ramp-from", type=int, default=32,
                    help="slice length at the start of the ramp (32 characters: one or two gaps)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--minutes", type=float, default=55.0)
    ap.add_argument("--init", default=None,
                    help="continue from this model folder's weights (same shape) instead of a fresh init; "
                         "the log is appended to")
    ap.add_argument("--tied-cross-init", action="store_true",
                    help="start each cross-attention's q projection equal to its k: q.k is then large where the "
                         "decoder's state and an encoder state share a token (a sentinel finds its own), instead "
                         "of a random bilinear form")
    ap.add_argument("--local-bias", type=float, default=0.0,
                    help="start the encoder's relative position bias as -slope 2^-h |distance| for head h "
                         "(a locality prior; an init, so --init's weights replace it; 0: HuggingFace's random init)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=float, default=300.0)
    ap.add_argument("--save-every", type=float, default=300.0)
    return ap


def main():
    a = parser().parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    vocab = t5_data.Vocab()
    config = build_config(a, vocab)
    c = t5.T5Config(config)
    model = t5.T5(c)
    init_weights(model, c, a.seed, a.tied_cross_init)
    if a.local_bias > 0:
        local_bias_init(model, c, a.local_bias)
    if a.init:
        model.load_hf_state_dict({k: v.float() for k, v in checkpoint.read_tensors(a.init).items()})
    n_params = sum(p.numel() for p in model.parameters())
    print(f"t5: {n_params} parameters; config {json.dumps(config)}", flush=True)
    decay, no = param_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    train_bytes, _ = data.split()
    ex = t5_data.Examples(vocab, train_bytes, a.seed, a.clm_rate, a.raw_min, a.raw_max)
    quick = quick_set(vocab)
    quick_removed = text_removed(vocab, quick)
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "train_log.jsonl"), "a" if a.init else "w")
    budget = a.minutes * 60
    t0 = time.time()
    last_eval = last_save = t0
    step, tokens, ema = 0, 0, {}
    counts = {"span": [0, 0], "clm": [0, 0]}  # examples, target tokens
    while time.time() - t0 < budget:
        frac = (time.time() - t0) / budget
        lr = a.lr * (step + 1) / a.warmup if step < a.warmup else \
            a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac)))
        for gr in opt.param_groups:
            gr["lr"] = lr
        if a.ramp > 0:
            grown = min(1.0, frac / a.ramp)
            ex.raw_min = round(a.ramp_from + grown * (a.raw_min - a.ramp_from))
            ex.raw_max = round(a.ramp_from + grown * (a.raw_max - a.ramp_from))
        model.train()
        opt.zero_grad(set_to_none=True)
        batch = [ex.next() for _ in range(a.batch)]
        n_tgt = sum(len(t) for _, _, t in batch)
        losses = batch_losses(model, [(inp, tgt) for _, inp, tgt in batch])
        (losses.sum() / n_tgt).backward()
        per_mode = {}
        for row, (mode, _, tgt) in zip(losses.detach(), batch):
            s = per_mode.setdefault(mode, [0.0, 0])
            s[0] += float(row.sum())
            s[1] += len(tgt)
            counts[mode][0] += 1
            counts[mode][1] += len(tgt)
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        step += 1
        tokens += n_tgt
        for mode, (l, k) in per_mode.items():
            b = l / k / math.log(2)
            ema[mode] = b if mode not in ema else 0.98 * ema[mode] + 0.02 * b
        if step % 10 == 0 or step == 1:
            rec = {"step": step, "time": round(time.time() - t0, 1), "lr": lr, "grad_norm": round(gnorm, 4),
                   "target_tokens": tokens, **{f"ema_bits_{m}": round(v, 4) for m, v in ema.items()}}
            if time.time() - last_eval >= a.eval_every:
                model.eval()
                rec["quick_span_bits_per_token"] = round(quick_eval(model, quick), 4)
                rec["quick_text_removed"] = round(quick_eval(model, quick_removed), 4)
                last_eval = time.time()
                print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if time.time() - last_save >= a.save_every:
            save(model, config, vocab, a.out)
            last_save = time.time()
    model.eval()
    save(model, config, vocab, a.out)
    q = quick_eval(model, quick)
    rec = {"step": step, "time": round(time.time() - t0, 1), "final": True, "quick_span_bits_per_token": round(q, 4),
           "quick_text_removed": round(quick_eval(model, quick_removed), 4)}
    log.write(json.dumps(rec) + "\n")
    log.close()
    results = {"arch": "t5", "params": n_params, "steps": step, "target_tokens": tokens,
               "examples": {m: v[0] for m, v in counts.items()},
               "target_tokens_by_mode": {m: v[1] for m, v in counts.items()},
               "train_seconds": round(time.time() - t0, 1), "quick_span_bits_per_token": q,
               "args": vars(a), "torch": torch.__version__}
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
