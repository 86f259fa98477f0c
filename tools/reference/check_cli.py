#!/usr/bin/python3
"""Independent check of the roost CLI against the PyTorch reference.

Check a checkpoint folder (log-probs and greedy generation):

    /usr/bin/python3 tools/reference/check_cli.py check test/fixtures/gpt2-tiny
    /usr/bin/python3 tools/reference/check_cli.py check DIR --roost "node bin/roost.js" --tolerance 1e-4 [--http]

--http does the same through `roost serve`: POST /v1/completions with echo
and logprobs (max_tokens 0) on every token case, and a greedy completion of
the prompt's ids.

Make a fresh random HF GPT-2 checkpoint of any size (tokenizer copied from
test/fixtures/bpe), then check it:

    /usr/bin/python3 tools/reference/check_cli.py make /tmp/m --layers 4 --width 256 --heads 4 --positions 1024
    /usr/bin/python3 tools/reference/check_cli.py check /tmp/m

or an OPT / XGLM / Llama-family one in HF's own layout (the same GPT-2 BPE tokenizer):

    /usr/bin/python3 tools/reference/check_cli.py make /tmp/o --arch opt --layers 3 --width 48 --heads 6 --post-ln --proj-dim 24 --untied
    /usr/bin/python3 tools/reference/check_cli.py make /tmp/x --arch xglm --layers 2 --width 36 --heads 3
    /usr/bin/python3 tools/reference/check_cli.py make /tmp/l --arch llama --layers 2 --width 60 --heads 6 --kv-heads 2 --untied
    /usr/bin/python3 tools/reference/check_cli.py make /tmp/q --arch qwen2 --layers 2 --width 40 --heads 5 --kv-heads 5
    /usr/bin/python3 tools/reference/check_cli.py make /tmp/m --arch mistral --layers 2 --width 48 --heads 6 --kv-heads 3 --sliding-window 24

CLI contract (bin/roost.js):
  roost score --model DIR (--tokens 1,2,3 | --text TEXT)
      prints JSON {"tokens": [...], "logprobs": [null, ...]}
  roost generate --model DIR --prompt TEXT --max-tokens N --temperature 0
      prints the generated text only

`check` computes the reference live (it does not trust golden.json; it reuses
the token cases and prompt of golden.json when the folder has one), reports
the max abs log-prob difference per case and whether the greedy text matches,
prints a JSON summary last, and exits 1 on any mismatch.
"""
import argparse
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bpe  # noqa: E402
import causal_lm  # noqa: E402
import checkpoint  # noqa: E402
import gpt2  # noqa: E402
import llama  # noqa: E402
import opt  # noqa: E402
import xglm  # noqa: E402
import models  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BPE_DIR = os.path.join(REPO, "test", "fixtures", "bpe")
DEFAULT_TEXT = "Licensed under the Apache License, Version 2.0; you may not use this file except in compliance."


# ------------------------------------------------------------------ make

def extended_tokenizer(vocab_size=None):
    """The fixture BPE, with unreachable filler tokens "[extraN]" inserted before
    <|endoftext|> when vocab_size is larger (so <|endoftext|> stays the last id)."""
    base = bpe.ByteLevelBPE.from_files(os.path.join(BPE_DIR, "vocab.json"), os.path.join(BPE_DIR, "merges.txt"))
    n = len(base.vocab)
    if vocab_size is None:
        return base
    if vocab_size < n:
        raise SystemExit(f"--vocab must be >= the BPE fixture's {n} tokens")
    if vocab_size == n:
        return base
    vocab = {s: i for s, i in base.vocab.items() if s != bpe.EOT}
    for k in range(vocab_size - n):
        vocab[f"[extra{k}]"] = len(vocab)
    vocab[bpe.EOT] = len(vocab)
    return bpe.ByteLevelBPE(vocab, base.merges)


def family_model(a, V, eos):
    """--arch opt / xglm / llama / mistral / qwen2: (config, model) of HF's own layout
    (tools/reference/opt.py, xglm.py, llama.py)."""
    if a.arch in llama.FAMILY:
        cfg = {"model_type": a.arch, "architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                                                         "qwen2": "Qwen2ForCausalLM"}[a.arch]],
               "vocab_size": V, "bos_token_id": eos, "eos_token_id": eos, "hidden_size": a.width,
               "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads or a.heads,
               "num_hidden_layers": a.layers, "intermediate_size": a.n_inner or 3 * a.width, "hidden_act": "silu",
               "rms_norm_eps": a.eps, "max_position_embeddings": a.positions or 1024,
               "rope_theta": a.rope_theta, "tie_word_embeddings": not a.untied}
        if a.head_dim:
            cfg["head_dim"] = a.head_dim
        if a.rope_scaling:
            cfg["rope_scaling"] = json.loads(a.rope_scaling)
        if a.attention_bias:
            cfg["attention_bias"] = True
        if a.sliding_window:
            cfg["sliding_window"] = a.sliding_window
        return cfg, llama.Llama(llama.LlamaConfig(cfg))
    common = {"vocab_size": V, "bos_token_id": eos, "eos_token_id": eos, "ffn_dim": a.n_inner or 4 * a.width,
              "max_position_embeddings": a.positions or 1024, "tie_word_embeddings": not a.untied}
    if a.activation:
        common["activation_function"] = a.activation
    if a.arch == "opt":
        cfg = dict(common, model_type="opt", architectures=["OPTForCausalLM"], hidden_size=a.width,
                   num_attention_heads=a.heads, num_hidden_layers=a.layers, do_layer_norm_before=not a.post_ln,
                   enable_bias=not a.no_bias, word_embed_proj_dim=a.proj_dim or a.width)
        return cfg, opt.OPT(opt.OPTConfig(cfg))
    cfg = dict(common, model_type="xglm", architectures=["XGLMForCausalLM"], d_model=a.width, attention_heads=a.heads,
               num_layers=a.layers, scale_embedding=not a.no_scale, pad_token_id=1)
    return cfg, xglm.XGLM(xglm.XGLMConfig(cfg))


def cmd_make(a):
    tok = extended_tokenizer(a.vocab)
    V = len(tok.vocab)
    eos = tok.vocab[bpe.EOT]
    if a.arch != "gpt2":
        cfg, model = family_model(a, V, eos)
        std = a.std if a.std is not None else 0.2 * min(1.0, (64.0 / a.width) ** 0.5)
        causal_lm.init_random(model, a.seed, std=std, norm_std=a.ln_std, bias_std=a.bias_std)
        return write_made(a, cfg, model.hf_state_dict(), tok, V, eos)
    cfg = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "bos_token_id": eos,
        "eos_token_id": eos, "layer_norm_epsilon": a.eps, "model_type": "gpt2", "n_embd": a.width,
        "n_head": a.heads, "n_inner": a.n_inner, "n_layer": a.layers, "vocab_size": V,
    }
    if a.rotary_dim is not None or a.rotary:
        cfg["position_embedding"] = "rotary"
        if a.rotary_dim is not None:
            cfg["rotary_dim"] = a.rotary_dim
        if a.rotary_base is not None:
            cfg["rotary_base"] = a.rotary_base
        if a.positions:
            cfg["n_positions"] = a.positions
    else:
        cfg["n_positions"] = a.positions or 1024
        cfg["n_ctx"] = cfg["n_positions"]
    model = gpt2.GPT2(gpt2.GPT2Config(cfg), tied=not a.untied)
    std = a.std if a.std is not None else 0.2 * min(1.0, (64.0 / a.width) ** 0.5)
    gpt2.init_random(model, a.seed, std=std, ln_std=a.ln_std, bias_std=a.bias_std)
    tensors = model.hf_state_dict()
    if a.prefix:
        tensors = {("transformer." + k if k != "lm_head.weight" else k): v for k, v in tensors.items()}
    return write_made(a, cfg, tensors, tok, V, eos)


def write_made(a, cfg, tensors, tok, V, eos):
    dt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[a.dtype]
    cfg["torch_dtype"] = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[a.dtype]
    tensors = {k: v.to(dt) for k, v in tensors.items()}
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    checkpoint.save_tensors(a.dir, tensors, shards=a.shards)
    tok.save(a.dir, vocab_and_merges=a.tokenizer in ("vocab", "both"), tokenizer_json=a.tokenizer in ("json", "both"))
    nparam = sum(t.numel() for t in tensors.values())
    print(f"wrote {a.dir}: {nparam} parameters ({a.dtype}), vocab {V}, eos {eos}")


# ------------------------------------------------------------------ check

def run_cli(roost, args, timeout):
    cmd = shlex.split(roost) + args
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{' '.join(shlex.quote(c) for c in cmd)} exited {r.returncode}: {err[-2000:]}")
    return r.stdout.decode("utf-8", "replace")


def compare_lps(ref, got):
    # Null entries must line up: entry 0 always, and for perceiver_ar every
    # position before the latents (models.md), so compare where they are.
    if len(ref) != len(got):
        return None, f"length {len(got)} != {len(ref)}"
    for i, (a, b) in enumerate(zip(ref, got)):
        if (a is None) != (b is None):
            return None, f"entry {i} is {b}, reference has {a}"
    diffs = [abs(a - b) for a, b in zip(ref, got) if a is not None]
    return (max(diffs) if diffs else 0.0), ""


def token_cases(model, path, n_cases_seed):
    g = os.path.join(path, "golden.json")
    if os.path.exists(g):
        with open(g, encoding="utf-8") as f:
            golden = json.load(f)
        return [(c["name"], c["tokens"]) for c in golden["cases"]], golden.get("greedy", [{}])[0].get("prompt")
    V = model.cfg.vocab_size
    cap = model.cfg.n_positions
    rng = random.Random(n_cases_seed)
    cases = [("one-token", [rng.randrange(V)]), ("random-8", [rng.randrange(V) for _ in range(8)])]
    n = min(cap or 300, 300)
    cases.append((f"random-{n}", [rng.randrange(V) for _ in range(n)]))
    return cases, None


def free_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def post_json(url, body, timeout):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def check_http(a, path, model, cases, pids, ref_tokens, ref_text):
    """The same through `roost serve`: POST /v1/completions with echo + logprobs (max_tokens 0)
    on every token case, and greedy max_tokens on the prompt's ids; one entry each."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = shlex.split(a.roost) + ["serve", "--model", path, "--port", str(port), "--quiet"]
    server = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = []
    try:
        deadline = time.time() + a.timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"roost serve did not come up: {server.stderr.read().decode('utf-8', 'replace')[-2000:]}")
            time.sleep(0.2)
        for name, toks in cases:
            entry = {"case": "http echo " + name, "n": len(toks)}
            try:
                r = post_json(url + "/v1/completions", {"prompt": toks, "max_tokens": 0, "echo": True, "logprobs": 0},
                              a.timeout)
                d, why = compare_lps(model.score(toks), r["choices"][0]["logprobs"]["token_logprobs"])
                if d is not None and d > a.tolerance:
                    why = f"exceeds tolerance {a.tolerance:g}"
                entry.update(max_abs_diff=d, ok=d is not None and not why, error=why or None)
            except Exception as e:  # noqa: BLE001
                entry.update(ok=False, error=str(e))
            out.append(entry)
            print(f"POST /v1/completions echo {name} ({len(toks)} tokens): "
                  + (f"max |dlogprob| = {entry['max_abs_diff']:.3e}" if entry.get("max_abs_diff") is not None else "")
                  + ("" if entry["ok"] else f"  FAIL {entry.get('error') or ''}"), flush=True)
        entry = {"case": "http greedy", "n": len(pids)}
        try:
            r = post_json(url + "/v1/completions", {"prompt": pids, "max_tokens": a.max_tokens, "temperature": 0}, a.timeout)
            got = r["choices"][0]["text"]
            entry.update(text=got, ok=got == ref_text, error=None if got == ref_text else f"ref={ref_text!r}")
        except Exception as e:  # noqa: BLE001
            entry.update(ok=False, error=str(e))
        out.append(entry)
        print(f"POST /v1/completions greedy {a.max_tokens} tokens: " + ("match" if entry["ok"] else f"MISMATCH {entry['error']}"),
              flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return out


def cmd_check(a):
    torch.set_grad_enabled(False)
    path = os.path.abspath(a.dir)
    cfg = checkpoint.read_config(path)
    model = models.load(path)
    tok = bpe.load_tokenizer(path, cfg)
    eos = cfg.get("eos_token_id")
    if cfg.get("tokenizer_class") == "bytes":
        eos = cfg.get("special_tokens", {}).get("eos", eos)
    report = {"model": path, "score": [], "generate": None, "ok": True}
    cases, golden_prompt = token_cases(model, path, a.seed)
    for name, toks in cases:
        ref = model.score(toks)
        entry = {"case": name, "n": len(toks)}
        try:
            out = json.loads(run_cli(a.roost, ["score", "--model", path, "--tokens", ",".join(map(str, toks))],
                                     a.timeout))
            d, why = compare_lps(ref, out.get("logprobs", []))
            if out.get("tokens") != toks:
                why = (why + "; " if why else "") + "tokens echoed differ"
            if d is not None and d > a.tolerance:
                why = (why + "; " if why else "") + f"exceeds tolerance {a.tolerance:g}"
            entry.update(max_abs_diff=d, ok=(d is not None and not why), error=why or None)
        except Exception as e:  # noqa: BLE001
            entry.update(ok=False, error=str(e))
        report["score"].append(entry)
        print(f"score {name:>12} ({len(toks)} tokens): "
              + (f"max |dlogprob| = {entry['max_abs_diff']:.3e}" if entry.get("max_abs_diff") is not None else "-")
              + ("" if entry["ok"] else f"  FAIL {entry.get('error') or ''}"), flush=True)
    # --text: tokenizer + score together
    text = a.text or DEFAULT_TEXT
    ids = tok.encode(text)
    while model.cfg.n_positions is not None and len(ids) > model.cfg.n_positions:
        text = text[:-1]  # fit the context
        ids = tok.encode(text)
    entry = {"case": "text", "n": len(ids)}
    try:
        out = json.loads(run_cli(a.roost, ["score", "--model", path, "--text", text], a.timeout))
        tok_ok = out.get("tokens") == ids
        d, why = compare_lps(model.score(ids), out.get("logprobs", [])) if tok_ok else (None, "tokens differ")
        if d is not None and d > a.tolerance:
            why = f"exceeds tolerance {a.tolerance:g}"
        entry.update(tokens_match=tok_ok, max_abs_diff=d, ok=tok_ok and d is not None and not why,
                     error=why or None)
        if not tok_ok:
            entry["tokens_ref"], entry["tokens_cli"] = ids, out.get("tokens")
    except Exception as e:  # noqa: BLE001
        entry.update(ok=False, error=str(e))
    report["score"].append(entry)
    print(f"score --text ({len(ids)} tokens): tokens {'match' if entry.get('tokens_match') else 'DIFFER'}"
          + (f", max |dlogprob| = {entry['max_abs_diff']:.3e}" if entry.get("max_abs_diff") is not None else "")
          + ("" if entry["ok"] else f"  FAIL {entry.get('error') or ''}"), flush=True)
    # generate
    prompt = a.prompt or golden_prompt or "The license"
    pids = tok.encode(prompt)
    gen, margins = model.greedy(pids, a.max_tokens, return_margins=True)
    stopped_at_eos = False
    if eos is not None and eos in gen:
        gen = gen[:gen.index(eos)]
        stopped_at_eos = True
    ref_text = tok.decode(gen)
    g = {"prompt": prompt, "ref_tokens": gen, "ref_text": ref_text, "ref_stopped_at_eos": stopped_at_eos,
         "min_margin": min(margins) if margins else None}
    try:
        got = run_cli(a.roost, ["generate", "--model", path, "--prompt", prompt, "--max-tokens", str(a.max_tokens),
                                "--temperature", "0"], a.timeout)
        if got.endswith("\n") and not ref_text.endswith("\n"):
            got = got[:-1]
        g.update(cli_text=got, match=(got == ref_text))
        if got != ref_text:
            k = next((i for i, (x, y) in enumerate(zip(got, ref_text)) if x != y), min(len(got), len(ref_text)))
            g["first_difference_at_char"] = k
    except Exception as e:  # noqa: BLE001
        g.update(match=False, error=str(e))
    report["generate"] = g
    print(f"generate {a.max_tokens} greedy tokens after {prompt!r}: "
          + ("match" if g["match"] else f"MISMATCH ref={ref_text!r} cli={g.get('cli_text')!r} {g.get('error') or ''}")
          + (f" (min top-2 logit margin {g['min_margin']:.2e})" if g["min_margin"] is not None else ""), flush=True)
    report["ok"] = all(e["ok"] for e in report["score"]) and bool(g["match"])
    if a.http:
        report["http"] = check_http(a, path, model, cases, pids, gen, ref_text)
        report["ok"] = report["ok"] and all(e["ok"] for e in report["http"])
    diffs = [e["max_abs_diff"] for e in report["score"] if e.get("max_abs_diff") is not None]
    report["max_abs_logprob_diff"] = max(diffs) if diffs else None
    print(json.dumps(report, ensure_ascii=False))
    print("PASS" if report["ok"] else "FAIL")
    return 0 if report["ok"] else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="compare the CLI with the reference on a checkpoint folder")
    c.add_argument("dir")
    c.add_argument("--roost", default="node bin/roost.js", help="CLI command, run from the repo root")
    c.add_argument("--tolerance", type=float, default=1e-4, help="max abs log-prob difference (nats)")
    c.add_argument("--max-tokens", type=int, default=16)
    c.add_argument("--prompt", default=None)
    c.add_argument("--text", default=None, help="text for the score --text case")
    c.add_argument("--seed", type=int, default=0, help="seed of the random token cases (no golden.json)")
    c.add_argument("--timeout", type=float, default=600)
    c.add_argument("--http", action="store_true",
                   help="also through `roost serve`: POST /v1/completions echo + logprobs and greedy")
    m = sub.add_parser("make", help="write a fresh random HF GPT-2 (or OPT / XGLM) checkpoint")
    m.add_argument("dir")
    m.add_argument("--arch", choices=("gpt2", "opt", "xglm", "llama", "mistral", "qwen2"), default="gpt2",
                   help="opt / xglm: HF's own layout; --n-inner is ffn_dim, --positions max_position_embeddings")
    m.add_argument("--post-ln", action="store_true", help="opt: do_layer_norm_before false")
    m.add_argument("--proj-dim", type=int, default=None, help="opt: word_embed_proj_dim (project_in/out)")
    m.add_argument("--no-bias", action="store_true", help="opt: enable_bias false")
    m.add_argument("--no-scale", action="store_true", help="xglm: scale_embedding false")
    m.add_argument("--activation", default=None, help="opt / xglm activation_function")
    m.add_argument("--kv-heads", type=int, default=None, help="llama family: num_key_value_heads (default --heads)")
    m.add_argument("--head-dim", type=int, default=None, help="llama family: head_dim (default width / heads)")
    m.add_argument("--rope-theta", type=float, default=10000.0, help="llama family: rope_theta")
    m.add_argument("--rope-scaling", default=None, help="llama family: rope_scaling as JSON")
    m.add_argument("--attention-bias", action="store_true", help="llama / mistral: q/k/v/o biases")
    m.add_argument("--sliding-window", type=int, default=None, help="mistral: sliding_window")
    m.add_argument("--layers", type=int, required=True)
    m.add_argument("--width", type=int, required=True, help="n_embd")
    m.add_argument("--heads", type=int, required=True)
    m.add_argument("--vocab", type=int, default=None,
                   help="vocab_size (>= the BPE fixture's size; extra ids are unreachable filler tokens)")
    m.add_argument("--positions", type=int, default=None, help="n_positions (learned default 1024; rotary: cap)")
    m.add_argument("--n-inner", type=int, default=None)
    m.add_argument("--eps", type=float, default=1e-5, help="layer_norm_epsilon")
    m.add_argument("--rotary", action="store_true", help="position_embedding rotary")
    m.add_argument("--rotary-dim", type=int, default=None, help="implies --rotary")
    m.add_argument("--rotary-base", type=float, default=None)
    m.add_argument("--dtype", choices=("F32", "F16", "BF16"), default="F32")
    m.add_argument("--untied", action="store_true", help="write lm_head.weight")
    m.add_argument("--prefix", action="store_true", help="tensor names with transformer. prefix")
    m.add_argument("--shards", type=int, default=1)
    m.add_argument("--tokenizer", choices=("vocab", "json", "both"), default="vocab")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--std", type=float, default=None,
                   help="std of the matrices (default 0.2 * min(1, sqrt(64 / width)): 0.2 on small widths, "
                        "scaled down on wide models so attention and logits do not saturate)")
    m.add_argument("--ln-std", type=float, default=0.2)
    m.add_argument("--bias-std", type=float, default=0.1)
    a = ap.parse_args()
    if a.cmd == "make":
        cmd_make(a)
        return 0
    return cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
