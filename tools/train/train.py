"""Train a byte-level Roost model on the KJV with the reference modules.

One definition serves as reference and as training code: the model classes
are tools/reference/{gpt2,perceiver_ar,block_recurrent}.py, unchanged.

    /usr/bin/python3 tools/train/train.py --arch dense --out models/dense --minutes 17 --threads 1

Writes OUT/config.json, OUT/model.safetensors (F16), OUT/train_log.jsonl
(every 10th step: loss in bits per token, lr, and a quick held-out eval on
the first 4 KB every 5 minutes) and OUT/results.json (the
final held-out bits per byte at several contexts, computed by eval.py on the
saved F16 weights, plus greedy / sampled / FIM samples from the reference).

--device cuda runs the training loop on a GPU (the reference modules follow
their input's device); the weights are saved and evaluated on the CPU. With
--skip-final the evaluation can run later, elsewhere: --finalize OUT.

Data, split and FIM: see data.py. Optimizer: AdamW (betas 0.9/0.95, weight
decay 0.1 on matrices and embeddings, none on biases / LayerNorms / gate
bias / state_init), gradient clipping at 1.0, linear warmup then cosine
decay to 10% of the peak, scheduled on wall time (the run stops after
--minutes) or on steps when --steps is given.

Learning fill-in-the-middle (dense and bigbird). Trained on packed PSM rows
alone, these small models never learn it: at fim_middle every head attends to
fim_middle itself and the middle ignores prefix and suffix. Three options
teach the lookup: --fim-single-doc (a FIM step trains rows that are each one
PSM document from position 0, as a served request is), --fim-attn-guide
(fim_attention_guide: an extra loss that points two heads of layer 0 at the
prefix end and two of layer 1 at fim_suffix and the suffix start) and
--fim-distill (fim_distill_loss: each middle byte learns the model's own
left-to-right prediction of that byte). Two more shape what it learns to
stop on: --fim-word-middle (middles of whole words, data.fim_cuts) and
--fim-eos-weight (the weight of the eos that closes a middle). models/README.md
has what each did.

block_recurrent trains Transformer-XL style (truncated BPTT, as in Hutchins
et al.): each batch row is a stream of --stream-len tokens fed in segments of
--seq-len through forward_with_past; the cache (previous block's K/V and the
recurrent states) is carried, detached, from one segment to the next.
perceiver_ar is trained on the logits of its N latents (the last N positions
of each row of --seq-len tokens).
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

import block_recurrent  # noqa: E402
import checkpoint  # noqa: E402
import data  # noqa: E402
import eval as heldout_eval  # noqa: E402
import gpt2  # noqa: E402
import models  # noqa: E402
import perceiver_ar  # noqa: E402
import samples  # noqa: E402

ARCHS = ("dense", "bigbird", "perceiver_ar", "block_recurrent")


def build_config(a):
    c = {
        "model_type": "gpt2",
        "vocab_size": data.VOCAB,
        "n_embd": a.n_embd,
        "n_head": a.n_head,
        "n_layer": a.n_layer,
        "n_inner": a.n_inner,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "position_embedding": "rotary",
        "rotary_base": 10000,
        "tokenizer_class": "bytes",
        "special_tokens": dict(data.SPECIAL_TOKENS),
        "eos_token_id": data.EOS,
    }
    if a.n_positions:
        c["n_positions"] = a.n_positions
    if a.arch == "bigbird":
        c["attention"] = {"kind": "bigbird", "block_size": a.bb_block, "window_blocks": a.bb_window,
                          "global_blocks": a.bb_global, "random_blocks": a.bb_random, "seed": a.bb_seed}
    elif a.arch == "perceiver_ar":
        c["model_type"] = "perceiver_ar"
        c["num_latents"] = a.num_latents
    elif a.arch == "block_recurrent":
        c["model_type"] = "block_recurrent"
        c["block_size"] = a.block_size
        c["num_states"] = a.num_states
        c["recurrent_layers"] = a.recurrent_layers
        c["gate"] = "fixed"
    return c


def make_model(config):
    cls = {"gpt2": gpt2.GPT2, "perceiver_ar": perceiver_ar.PerceiverAR,
           "block_recurrent": block_recurrent.BlockRecurrent}[config["model_type"]]
    return cls(config)


def init_weights(model, seed, n_layer):
    """GPT-2 style: matrices N(0, 0.02), output projections N(0, 0.02/sqrt(2L)),
    LayerNorm 1/0, biases 0; block_recurrent gate_bias 1 (sigmoid 0.73: keep
    most of the old state), state_init N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if ".ln_" in name or name.startswith("ln_"):
                p.fill_(1.0 if name.endswith(".weight") else 0.0)
            elif name.endswith("gate_bias"):
                p.fill_(1.0)
            elif name.endswith("state_init"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.zero_()
            else:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                p.copy_(std * torch.randn(p.shape, generator=g))


def param_groups(model, wd):
    decay, no = [], []
    for name, p in model.named_parameters():
        if p.dim() >= 2 and not name.endswith("state_init"):
            decay.append(p)
        else:
            no.append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no, "weight_decay": 0.0}]


def lr_at(frac, step, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    frac = min(max(frac, 0.0), 1.0)
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac)))


def in_fim_middle(x):
    """[B, T] bool: the input at t lies in a FIM middle (its latest special token is fim_middle), so
    the target at t is a middle byte or the eos that closes it."""
    special = x >= data.EOS
    t = torch.arange(x.shape[1], device=x.device).expand_as(x)
    last = torch.cummax(torch.where(special, t, torch.full_like(t, -1)), dim=1).values
    kind = torch.gather(x, 1, last.clamp(min=0))
    return (last >= 0) & (kind == data.FIM_MIDDLE)


def fim_attention_guide(model, x):
    """Auxiliary loss (nats) for --fim-attn-guide on rows that are one PSM document each
    (--fim-single-doc): it points four heads at what a middle needs and the model would
    otherwise have to discover. At fim_suffix, heads 0 and 1 of layer 0 look at the last two
    prefix bytes, so that position carries where the prefix ended; at fim_middle and every
    middle byte, head 0 of layer 1 looks at fim_suffix (that summary) and head 1 at the first
    suffix byte (what the middle must lead into). Left alone, every head at fim_middle looks at
    itself and the middle ignores its context. The trained weights are ordinary weights: this
    changes how they are found, not the model's math."""
    B, T = x.shape
    rows = torch.arange(B, device=x.device)
    s_pos = (x == data.FIM_SUFFIX).int().argmax(1)
    m_pos = (x == data.FIM_MIDDLE).int().argmax(1)
    has_m = (x == data.FIM_MIDDLE).any(1)
    p0, p1 = model.h[0].attn.probs, model.h[1].attn.probs  # [B, H, T, T]
    nll = lambda p: -torch.log(p + 1e-6)
    terms = [nll(p0[rows, 0, s_pos, (s_pos - 1).clamp(min=0)])[s_pos >= 2],
             nll(p0[rows, 1, s_pos, (s_pos - 2).clamp(min=0)])[s_pos >= 3]]
    queries = (torch.arange(T, device=x.device)[None] >= m_pos[:, None]) & has_m[:, None]  # [B, T]
    for head, target, ok in ((0, s_pos, has_m), (1, s_pos + 1, s_pos + 1 < m_pos)):
        p = p1[:, head].gather(2, target.clamp(max=T - 1)[:, None, None].expand(B, T, 1)).squeeze(2)
        terms.append(nll(p)[queries & ok[:, None]])
    return torch.cat(terms).mean()


def fim_distill_loss(model, logits, docs, cuts):
    """KL(teacher || model) over the middle bytes of --fim-single-doc rows (--fim-distill): the
    teacher is the model itself, without gradient, reading the same document left to right, where
    the byte after a prefix is an ordinary next-byte prediction. The middle gets the teacher's
    whole distribution for each byte instead of one sampled byte: much more signal for learning
    to continue the prefix from across the suffix. logits: the model's [B, T, V] on the PSM rows."""
    with torch.no_grad():
        teacher = torch.log_softmax(model(docs).float(), dim=-1)  # [B, L, V]
    L = docs.shape[1]
    rb, rs, rt = [], [], []
    for b, (i, j) in enumerate(cuts.tolist()):
        m = 1 + i + 1 + (L - j)  # the fim_middle input, which predicts middle byte 0
        for k in range(max(0, 1 - i), j - i):  # byte i + k, predicted at document position i + k - 1
            rb.append(b)
            rs.append(m + k)
            rt.append(i + k - 1)
    if not rb:
        return logits.sum() * 0.0
    rb = torch.tensor(rb, device=logits.device)
    student = torch.log_softmax(logits[rb, torch.tensor(rs, device=logits.device)].float(), dim=-1)
    t = teacher[rb, torch.tensor(rt, device=logits.device)]
    return (t.exp() * (t - student)).sum(-1).mean()


def detach_cache(cache):
    return [tuple(t.detach() for t in c) for c in cache]


def save(model, config, out, dtype):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    dt = {"F16": torch.float16, "F32": torch.float32, "BF16": torch.bfloat16}[dtype]
    tensors = {k: v.detach().to(dt).contiguous() for k, v in model.state_dict().items()}
    checkpoint.save_tensors(out, tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=ARCHS, help="required unless --finalize")
    ap.add_argument("--out", help="required unless --finalize")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-inner", type=int, default=1024)
    ap.add_argument("--n-positions", type=int, default=0, help="n_positions in config.json (0: absent)")
    ap.add_argument("--bb-block", type=int, default=64)
    ap.add_argument("--bb-window", type=int, default=2)
    ap.add_argument("--bb-global", type=int, default=1)
    ap.add_argument("--bb-random", type=int, default=1)
    ap.add_argument("--bb-seed", type=int, default=2024)
    ap.add_argument("--num-latents", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--num-states", type=int, default=32)
    ap.add_argument("--recurrent-layers", type=int, nargs="+", default=[2])
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--stream-len", type=int, default=2048, help="block_recurrent: tokens per stream (TBPTT)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--fim-rate", type=float, default=0.5)
    ap.add_argument("--fim-doc-min", type=int, default=64, help="FIM documents: fewest tokens (with the 4 special tokens)")
    ap.add_argument("--fim-doc-max", type=int, default=256, help="FIM documents: most tokens")
    ap.add_argument("--fim-short-middle", type=float, default=0.0,
                    help="share of FIM documents whose middle is 1-32 bytes (see data.fim_cuts)")
    ap.add_argument("--fim-word-middle", type=float, default=0.0,
                    help="share of FIM documents whose middle is 1-3 whole words (see data.fim_cuts)")
    ap.add_argument("--fim-single-doc", action="store_true",
                    help="a FIM step trains a batch of single FIM documents of one random length in "
                         "[--fim-doc-min, --fim-doc-max], each from position 0 (batch * seq-len tokens in all); "
                         "other steps train plain text (dense and bigbird)")
    ap.add_argument("--fim-attn-guide", type=float, default=0.0,
                    help="weight of fim_attention_guide's loss on the FIM steps of --fim-single-doc")
    ap.add_argument("--fim-distill", type=float, default=0.0,
                    help="weight of fim_distill_loss on the FIM steps of --fim-single-doc")
    ap.add_argument("--fim-middle-weight", type=float, default=1.0,
                    help="loss weight of the targets inside FIM middles (their bytes and closing eos)")
    ap.add_argument("--fim-eos-weight", type=float, default=0.0,
                    help="loss weight of the eos that closes a FIM middle (0: --fim-middle-weight); "
                         "knowing where to stop is what makes a middle join the suffix")
    ap.add_argument("--minutes", type=float, default=17.0, help="wall-time budget of the training loop")
    ap.add_argument("--steps", type=int, default=0, help="fixed step count instead of the wall budget")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="torch device of the training loop (cpu, cuda); the final "
                    "evaluation and the saved weights are on the CPU")
    ap.add_argument("--eval-every", type=float, default=300.0, help="seconds between quick held-out evals")
    ap.add_argument("--quick-eval-bytes", type=int, default=4096)
    ap.add_argument("--contexts", default="256,1024,4096", help="final eval contexts ('full' allowed)")
    ap.add_argument("--dtype", default="F16", choices=("F16", "F32", "BF16"))
    ap.add_argument("--short-frac", type=float, default=0.0,
                    help="perceiver_ar: fraction of steps whose rows are num_latents tokens long (every position "
                         "a latent, from position 0: the short-prompt regime of generation)")
    ap.add_argument("--skip-final", action="store_true")
    ap.add_argument("--init-from", default="",
                    help="start from this checkpoint's weights (a second training phase; fresh optimizer)")
    ap.add_argument("--finalize", default="", metavar="DIR",
                    help="only evaluate DIR (a run saved with --skip-final) and complete its results.json")
    a = ap.parse_args()
    if not a.finalize and not (a.arch and a.out):
        ap.error("--arch and --out are required")
    if a.fim_single_doc and a.arch not in ("dense", "bigbird"):
        ap.error("--fim-single-doc trains dense or bigbird only")
    if (a.fim_attn_guide or a.fim_distill) and not a.fim_single_doc:
        ap.error("--fim-attn-guide and --fim-distill need --fim-single-doc")

    torch.set_num_threads(a.threads)
    if a.finalize:
        _, held = data.split()
        finalize(a.finalize, json.load(open(os.path.join(a.finalize, "results.json"))), a.contexts, held)
        return
    torch.manual_seed(a.seed)
    train_bytes, held = data.split()
    data.write_heldout()
    config = build_config(a)
    model = make_model(config)
    init_weights(model, a.seed, a.n_layer)
    if a.init_from:
        prev = checkpoint.read_config(a.init_from)
        if {k: v for k, v in prev.items() if k != "n_positions"} != {k: v for k, v in config.items() if k != "n_positions"}:
            raise SystemExit(f"--init-from {a.init_from}: its config differs from this run's")
        model.load_hf_state_dict(checkpoint.normalize_names(checkpoint.read_tensors(a.init_from)))
        previous = os.path.join(a.init_from, "results.json")
        history = json.load(open(previous)).get("history", []) if os.path.exists(previous) else []
        if os.path.exists(previous):
            r0 = json.load(open(previous))
            history = history + [{k: r0[k] for k in ("command", "steps", "target_tokens", "train_seconds")}]
    else:
        history = []
    model.to(a.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{a.arch}: {n_params} parameters; config {json.dumps(config)}", flush=True)
    opt = torch.optim.AdamW(param_groups(model, a.weight_decay), lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    batches = data.Batches(train_bytes, a.fim_rate, a.seed, a.fim_doc_min, a.fim_doc_max, fim_short_middle=a.fim_short_middle,
                           fim_word_middle=a.fim_word_middle)
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "train_log.jsonl"), "a" if a.init_from else "w")

    recurrent = a.arch == "block_recurrent"
    perceiver = a.arch == "perceiver_ar"
    T = a.seq_len
    length_rng = np.random.default_rng(a.seed + 7)
    stream, seg, cache = None, 0, None
    budget = a.minutes * 60.0
    t0 = time.time()
    last_eval = t0
    step, tokens_seen = 0, 0
    ema = rec = None
    while True:
        elapsed = time.time() - t0
        frac = step / a.steps if a.steps else elapsed / budget
        if frac >= 1.0:
            break
        lr = lr_at(frac, step, a)
        for gr in opt.param_groups:
            gr["lr"] = lr
        model.train()
        guide = False  # this step trains fim_attention_guide too
        fim_docs = None  # this step's FIM documents and cuts, for fim_distill_loss
        if recurrent:
            if stream is None or seg * T >= a.stream_len:
                stream = torch.from_numpy(batches.batch(a.batch, a.stream_len + 1)).to(a.device)
                seg, cache = 0, None
            x = stream[:, seg * T:(seg + 1) * T]
            y = stream[:, seg * T + 1:(seg + 1) * T + 1]
            logits, cache = model.forward_with_past(x, cache)
            cache = detach_cache(cache)
            seg += 1
        else:
            L = a.num_latents if perceiver and length_rng.random() < a.short_frac else T
            if a.fim_single_doc and batches.rng.random() < a.fim_rate:
                n = int(batches.rng.integers(a.fim_doc_min, a.fim_doc_max + 1))
                rows, docs, cuts = batches.fim_document_batch(max(1, a.batch * T // n), n + 1)
                guide = a.fim_attn_guide > 0
                if a.fim_distill > 0:
                    fim_docs = (torch.from_numpy(docs).to(a.device), cuts)
            elif a.fim_single_doc:
                rows = batches.plain_batch(a.batch, L + 1)
            else:
                rows = batches.batch(a.batch, L + 1)
            row = torch.from_numpy(rows).to(a.device)
            x, y = row[:, :-1], row[:, 1:]
            if guide:
                for blk in model.h[:2]:
                    blk.attn.keep_probs = True
            logits = model(x)
            if perceiver:
                y = y[:, L - logits.shape[1]:]
        if (a.fim_middle_weight != 1.0 or a.fim_eos_weight) and not recurrent and not perceiver:
            middle = in_fim_middle(x)
            w = 1.0 + (a.fim_middle_weight - 1.0) * middle.float()
            if a.fim_eos_weight:
                w = torch.where(middle & (y == data.EOS), torch.full_like(w, a.fim_eos_weight), w)
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
            loss = (ce * w.reshape(-1)).sum() / w.sum()
        else:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        if guide:
            guide_loss = fim_attention_guide(model, x)
            loss = loss + a.fim_attn_guide * guide_loss
            for blk in model.h[:2]:
                blk.attn.keep_probs, blk.attn.probs = False, None
        if fim_docs is not None:
            distill_loss = fim_distill_loss(model, logits, *fim_docs)
            loss = loss + a.fim_distill * distill_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        step += 1
        tokens_seen += y.numel()
        lv = float(loss)
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        rec = {"phase": len(history) + 1, "step": step, "time": round(time.time() - t0, 1), "lr": lr, "loss_bits": lv / math.log(2),
               "ema_bits": ema / math.log(2), "grad_norm": gnorm, "tokens": tokens_seen}
        if guide:
            rec["guide_nats"] = round(float(guide_loss), 4)
        if fim_docs is not None:
            rec["distill_nats"] = round(float(distill_loss), 4)
        if time.time() - last_eval >= a.eval_every:
            model.eval()
            ctx = a.stream_len if recurrent else T
            q = heldout_eval.evaluate(model.cpu(), held, ctx, limit_bytes=a.quick_eval_bytes)
            model.to(a.device)  # (AdamW's state follows the parameters: .to moves them in place)
            rec["quick_heldout_bpb"] = q["bits_per_byte"]
            last_eval = time.time()
            print(f"step {step} t={rec['time']}s lr={lr:.2e} loss={ema / math.log(2):.3f} bits "
                  f"quick-heldout={q['bits_per_byte']:.3f} bpb ({tokens_seen} tokens)", flush=True)
        rec = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()}
        if step % 10 == 0 or step == 1 or "quick_heldout_bpb" in rec:  # every 10th step
            log.write(json.dumps(rec) + "\n")
            rec = None
        if step % 50 == 0:
            log.flush()
    train_seconds = time.time() - t0
    if rec is not None:  # the last step
        log.write(json.dumps(rec) + "\n")
    log.close()
    model.cpu()
    model.eval()
    save(model, config, a.out, a.dtype)
    print(f"trained {step} steps, {tokens_seen} target tokens, {train_seconds:.0f}s; saved {a.out}", flush=True)

    results = {
        "arch": a.arch, "params": n_params, "steps": step, "target_tokens": tokens_seen,
        "train_seconds": round(train_seconds, 1), "args": vars(a), "command": "/usr/bin/python3 " + " ".join(sys.argv),
        "heldout_file": os.path.relpath(data.HELDOUT_PATH, data.ROOT), "heldout_sha256": data.sha256(held),
        "safetensors_bytes": os.path.getsize(os.path.join(a.out, "model.safetensors")),
        "torch": torch.__version__, "eval": {}, "history": history,
    }
    dump_results(a.out, results)
    if not a.skip_final:
        finalize(a.out, results, a.contexts, held)


def dump_results(out, results):
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


def finalize(out, results, contexts, held):
    """Held-out bits per byte at each context, samples and FIM diagnostics of
    the saved F16 weights, added to results.json (after training, or later for
    a run made with --skip-final, e.g. on a GPU machine: --finalize OUT)."""
    def dump():
        dump_results(out, results)
    results["eval"] = {}
    shipped = models.load(out)  # the saved F16 weights, as the engine reads them
    for c in contexts.split(","):
        ctx = None if c == "full" else int(c)
        t1 = time.time()
        r = heldout_eval.evaluate(shipped, held, ctx)
        r["seconds"] = round(time.time() - t1, 1)
        results["eval"][c] = r
        print(f"held-out context {c}: {r['bits_per_byte']:.4f} bpb ({r['windows']} windows, {r['seconds']}s)",
              flush=True)
        dump()
    results["samples"] = samples.all_samples(shipped)
    results["fim_diagnostic"] = samples.fim_diagnostic(shipped, held)
    results["fim_first_byte"] = samples.fim_first_byte(shipped, held)
    results["fim_words"] = samples.fim_words(shipped, held)
    dump()
    print(json.dumps(results["samples"], indent=1), flush=True)


if __name__ == "__main__":
    main()
