"""Write models/NAME/README.md (the model card) from results.json (train.py)
and engine.json (engine_check.py, when present); and models/README.md (the
comparison table) from every model's results.json.

    /usr/bin/python3 tools/train/card.py models/dense models/bigbird ...   # cards + table
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402

CONTEXTS = ["256", "1024", "4096", "full"]
TITLE = {
    "dense": "dense: GPT-2 with rotary positions",
    "bigbird": "bigbird: GPT-2 with rotary positions and causal BigBird block-sparse attention",
    "perceiver_ar": "perceiver_ar: Perceiver AR",
    "block_recurrent": "block_recurrent: Block-Recurrent Transformer",
}


def load(d):
    r = json.load(open(os.path.join(d, "results.json")))
    cfg = json.load(open(os.path.join(d, "config.json")))
    e = os.path.join(d, "engine.json")
    eng = json.load(open(e)) if os.path.exists(e) else None
    return r, cfg, eng


def model_context(cfg):
    """The window `roost eval` uses without --context: n_positions, else 1024 (src/cli.ts DEFAULT_EVAL_WINDOW)."""
    return str(cfg["n_positions"]) if "n_positions" in cfg else "1024"


def ctx_label(c, cfg):
    if c == "full":
        return "whole file (one window)"
    return c


def allowed_note(c, cfg):
    """Why a context is marked: beyond n_positions (the engine refuses it)."""
    if c != "full" and "n_positions" in cfg and int(c) > cfg["n_positions"]:
        return " (beyond n_positions: reference only, the engine refuses it)"
    return ""


def md(s):
    """Text inside a table cell's code span: repr-like escapes, no pipes."""
    return repr(s)[1:-1].replace("|", "\\|").replace("`", "'")


def fence(s):
    return "```\n" + s.replace("```", "'''") + "\n```"


def arch_description(name, cfg, r):
    a = r["args"]
    C, L, H = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
    common = (f"{L} layers, n_embd {C}, {H} heads of {C // H}, n_inner {cfg['n_inner']}, gelu_new, pre-LayerNorm, "
              f"rotary positions (rotary_dim = head size, base {cfg.get('rotary_base', 10000)}), head tied to "
              f"`wte`, byte vocabulary of 260")
    if name == "dense":
        extra = "Dense causal attention."
    elif name == "bigbird":
        at = cfg["attention"]
        b, w, g, rr = at["block_size"], at["window_blocks"], at["global_blocks"], at["random_blocks"]
        extra = (f"Causal BigBird attention in every layer: blocks of {b} tokens, a window of {w} blocks (the "
                 f"query's own and the previous one), {g} global block (the first {g * b} tokens), {rr} random "
                 f"block(s) per (layer, head, query block), seed {at['seed']}. Each query sees at most "
                 f"{(w + g + rr) * b} keys: dense-equivalent up to {(w + g + rr) * b} tokens, sparse beyond.")
    elif name == "perceiver_ar":
        extra = (f"num_latents N = {cfg['num_latents']}: layer 0 cross-attends from the last N positions to every "
                 f"position; layers 1..{L - 1} are causal self-attention among the latents only. Only the "
                 f"latents get logits.")
    else:
        extra = (f"block_size W = {cfg['block_size']}, num_states S = {cfg['num_states']}, recurrent layer(s) "
                 f"{cfg['recurrent_layers']}, fixed gate. Every layer attends over the current and previous "
                 f"block (at most {2 * cfg['block_size']} keys); the recurrent layer also reads, and updates at "
                 f"each block end, a state of {cfg['num_states']} x {C}: constant memory per sequence.")
    return common + ". " + extra


def training_description(name, r):
    a = r["args"]
    if name == "block_recurrent":
        rows = (f"{a['batch']} streams of {a['stream_len']} tokens, fed in segments of {a['seq_len']} "
                f"(truncated BPTT: the cache and the states are carried, detached, from one segment to the next)")
    elif name == "perceiver_ar":
        rows = (f"batches of {a['batch']} rows of {a['seq_len']} tokens; the loss covers the {a['num_latents']} "
                f"latent positions of each row")
    else:
        rows = f"batches of {a['batch']} rows of {a['seq_len']} tokens"
    return (f"{rows}; AdamW (betas 0.9/0.95, weight decay {a['weight_decay']} on matrices), peak learning rate "
            f"{a['lr']}, {a['warmup']} warmup steps, cosine decay to {a['min_lr_frac']:g}x over a wall budget of "
            f"{a['minutes']:g} minutes, gradient clipping 1.0, float32, {a['threads']} torch thread; FIM rate "
            f"{a['fim_rate']:g}" + fim_middles(a) + (f"; {a['short_frac']:g} of the steps use rows of {a['num_latents']} tokens "
                                     "(every position a latent, from position 0: the short-prompt regime)"
                                     if a.get("short_frac") else "") + f" (torch {r['torch']}).")


def fim_middles(a):
    """The last phase's middle shapes, in brief (fim_short says them in full)."""
    kinds = []
    if a.get("fim_word_middle"):
        kinds.append(f"{a['fim_word_middle']:g} of FIM documents with 1-3 word middles")
    if a.get("fim_short_middle"):
        kinds.append(f"{a['fim_short_middle']:g} of {'the rest' if kinds else 'FIM documents'} with 1-32 byte middles")
    return f" ({', '.join(kinds)})" if kinds else ""


def fim_short(r):
    """How the last phase trained FIM where it differed from the packed rows above: short middles
    and whole-word middles (data.fim_cuts) and the options that teach the lookup (train.py:
    --fim-single-doc, --fim-attn-guide, --fim-distill, --fim-middle-weight, --fim-eos-weight)."""
    a = r["args"]
    out = ""
    word, short = a.get("fim_word_middle", 0.0), a.get("fim_short_middle", 0.0)
    if word:
        out += (f" In the last phase {word:g} of the FIM documents had a middle of 1-3 whole words with their "
                "leading space (the infill users ask for most)"
                + (f", and {short:g} of the rest a middle of 1-32 bytes at a random position." if short else "."))
    elif short:
        out += (f" In the last phase {short:g} of the FIM documents instead had a middle of 1-32 "
                "bytes starting at a random position (the short infills users ask for: a word or a phrase).")
    if a.get("fim_single_doc"):
        out += (f" Its FIM steps trained rows that are each one PSM document of {a['fim_doc_min']}-{a['fim_doc_max']} "
                "tokens from position 0, laid out as a served request is (`--fim-single-doc`)")
        extra = []
        if a.get("fim_attn_guide"):
            extra.append(f"an attention guide (weight {a['fim_attn_guide']:g}: two heads of layer 0 at fim_suffix "
                         "look at the last two prefix bytes, two heads of layer 1 at the middle look at fim_suffix "
                         "and at the first suffix byte)")
        if a.get("fim_distill"):
            extra.append(f"self-distillation (weight {a['fim_distill']:g}: each middle byte learns the model's own "
                         "left-to-right prediction of it)")
        if a.get("fim_middle_weight", 1.0) != 1.0:
            extra.append(f"middle targets{'' if a.get('fim_eos_weight') else ' and their closing eos'} "
                         f"weighted {a['fim_middle_weight']:g}x")
        if a.get("fim_eos_weight"):
            extra.append(f"the eos that closes a middle weighted {a['fim_eos_weight']:g}x (where to stop is what "
                         "makes a middle join the suffix)")
        out += (", with " + ", ".join(extra) if extra else "") + " (`tools/train/train.py`)."
    return out


def card(d):
    name = os.path.basename(os.path.normpath(d))
    r, cfg, eng = load(d)
    size = r["safetensors_bytes"]
    mctx = model_context(cfg)
    lines = [f"# {TITLE.get(name, name)}", ""]
    lines += [f"A byte-level model of the King James Bible for Roost, trained from scratch with "
              f"`tools/train/train.py` (the PyTorch reference modules of `tools/reference/`). "
              f"{r['params']:,} parameters, `model.safetensors` {size:,} bytes (F16).", ""]
    lines += ["## Held-out bits per byte", ""]
    lines += ["| context (tokens) | bits per byte | windows | stride |", "| --- | --- | --- | --- |"]
    for c in CONTEXTS:
        if c in r["eval"]:
            e = r["eval"][c]
            mark = " (the model's context: what `roost eval` uses)" if c == mctx else ""
            lines.append(f"| {ctx_label(c, cfg)}{mark}{allowed_note(c, cfg)} | {e['bits_per_byte']:.4f} | "
                         f"{e['windows']} | {e['stride']} |")
    lines.append("")
    if eng and isinstance(eng.get("eval"), list):
        lines += [f"C++ engine (`roost eval`, checked {eng['when']}; the reference's figure must be reproduced "
                  "within 1%):", "", "| command | engine bits per byte | reference | relative difference |",
                  "| --- | --- | --- | --- |"]
        for e in eng["eval"]:
            if e["rc"] == 0:
                lines.append(f"| `{e['command']}` | {e['bits_per_byte']:.4f} | {e['reference_bits_per_byte']:.4f} "
                             f"(context {e['context']}) | {e['relative_difference']:.1e} |")
            else:
                lines.append(f"| `{e['command']}` | failed: {e['stderr'][-200:]!r} | "
                             f"{e['reference_bits_per_byte']:.4f} | - |")
        lines.append("")
    else:
        lines += ["C++ engine: `roost eval` on this model not verified yet (see models/README.md).", ""]
    lines += [
        "Computed by `tools/train/eval.py` on the saved F16 weights, exactly as `roost eval` scores a file: every "
        "byte of `models/data/kjv-heldout.txt` after the first is scored once with the model's ordinary forward, "
        "in windows of the context W with stride W/2 (later windows score only their new tokens); "
        "bits per byte = total -log2 p / 122,522 bytes."]
    if name == "perceiver_ar":
        N = cfg["num_latents"]
        lines[-1] += (f" Perceiver AR has logits for its {N} latents only, so a window of W tokens scores its last "
                      f"{N - 1} tokens: the first window is the first {N} tokens (all latents), window ends then "
                      f"advance by S = min(W/2, {N - 1}), each window is the last W tokens before its end (fewer at "
                      f"the start of the file), and scores its new tokens, every one of them predicted by a latent "
                      f"with at least W - {N - 1} tokens of context when W >= {2 * N}.")
    if name == "block_recurrent":
        lines[-1] += (" \"whole file\" is one window over all 122,522 tokens (the model has no context limit: "
                      "constant memory; `roost eval --context 122522`). Without `n_positions`, `roost eval` uses a "
                      "window of 1024 unless `--context` says otherwise.")
    lines.append("")
    lines += ["## Data", "",
              "King James Version from Debian's `bible-kjv` / `bible-kjv-text` packages (public domain): "
              "`bible -f Gen1:1-Rev22:21` prints it one verse a line (`Ge1:1 In the beginning ...`), "
              f"{data.KJV_BYTES:,} bytes of ASCII. Held-out split: the contiguous tail from James 1:1 to the end "
              "(James, 1-2 Peter, 1-3 John, Jude, Revelation), 122,522 bytes, committed as "
              f"`models/data/kjv-heldout.txt` (sha256 `{r['heldout_sha256']}`); training text: Genesis to "
              "Hebrews, 4,281,890 bytes (`tools/train/data.py`).", "",
              "Tokenizer: `tokenizer_class: bytes` (id = byte value), special tokens eos 256, fim_prefix 257, "
              "fim_middle 258, fim_suffix 259 (`eos_token_id` 256, no BOS).", "",
              "Fill-in-the-middle (Bavarian et al. 2022, PSM): with probability "
              f"{r['args']['fim_rate']:g} a training row is a packed run of FIM documents "
              "`<fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle <eos>`, each a random slice of the "
              "training text (64-256 tokens with its 4 special tokens) cut at two uniform random character "
              "positions; otherwise the row is plain contiguous text." + fim_short(r), ""]
    lines += ["## Architecture", "", arch_description(name, cfg, r), "", fence(json.dumps(cfg, indent=2)), ""]
    phases = r.get("history", []) + [{k: r[k] for k in ("command", "steps", "target_tokens", "train_seconds")}]
    total_s = sum(p["train_seconds"] for p in phases)
    total_tok = sum(p["target_tokens"] for p in phases)
    lines += ["## Training", "",
              f"{len(phases)} phase(s), {total_s / 60:.1f} minutes of training in all, {total_tok:,} training target "
              "tokens, on a shared 2-core CPU (other jobs ran beside it, so the step rate varied). A later phase "
              "starts from the previous phase's saved F16 weights with a fresh optimizer and a new warmup + cosine "
              "schedule (`--init-from`).", "",
              "Last phase: " + training_description(name, r), "",
              "Commands (from the repository root, in order):", ""]
    for i, ph in enumerate(phases):
        lines += [f"{i + 1}. {ph['steps']} steps, {ph['target_tokens']:,} target tokens, "
                  f"{ph['train_seconds'] / 60:.1f} minutes:", "",
                  fence(ph["command"].replace(os.path.join(data.ROOT, ""), "")), ""]
    lines += ["`train_log.jsonl` beside this card has the loss curve (every 10th step; `loss_bits` is bits per "
              "token of that step's batch, `quick_heldout_bpb` the first 4 KB of the held-out file).", ""]
    s = r.get("samples", {})
    lines += ["## Samples (PyTorch reference, this checkpoint)", "",
              "Greedy (prefill + cached decode, the serving procedure), cut at eos:", ""]
    for g in s.get("greedy", []):
        lines += [f"- prompt `{g['prompt']}`:", "", fence(g["prompt"] + g["completion"]), ""]
    lines += ["Sampled (temperature 0.8, top-k 40, torch.Generator seeds 1-3):", ""]
    for g in s.get("sampled", []):
        lines += [fence(g["prompt"] + g["completion"]), ""]
    lines += ["Fill-in-the-middle (prompt `<fim_prefix> prefix <fim_suffix> suffix <fim_middle>`, greedy until eos):",
              "", "| prefix | suffix | middle | ended with eos |", "| --- | --- | --- | --- |"]
    for f in s.get("fim", []):
        lines.append(f"| `{md(f['prefix'])}` | `{md(f['suffix'])}` | `{md(f['middle'])}` | {f['ended_with_eos']} |")
    lines.append("")
    fd = r.get("fim_diagnostic")
    if fd:
        lines += [f"FIM check (`samples.fim_diagnostic`): on {fd['documents']} held-out documents of 100-200 bytes "
                  f"cut as in training, the middle costs {fd['fim_bits_per_middle_byte']:.3f} bits per byte given "
                  f"prefix and suffix (PSM) against {fd['l2r_bits_per_middle_byte']:.3f} given the prefix alone "
                  f"(plain left to right), and the closing eos {fd['eos_bits_per_document']:.1f} bits. "
                  + ("The suffix helps." if fd["fim_bits_per_middle_byte"] < fd["l2r_bits_per_middle_byte"] else
                     "The model finds the prefix end across the suffix (below), but the suffix does not yet make the "
                     "middle cheaper than reading the prefix alone." if finds_prefix_end(r) else
                     "So at this size and training budget the model has learned the FIM format but does not use "
                     "the suffix: middles do not join the suffix and rarely end with eos (generation then stops at "
                     "max_tokens)."), ""]
    ff = r.get("fim_first_byte")
    if ff:
        lines += [f"First middle byte (`samples.fim_first_byte`, {ff['documents']} held-out infills of 4-11 bytes in "
                  f"30-60-byte documents): {ff['psm_bits']:.2f} bits in the PSM prompt, {ff['prefix_in_front_bits']:.2f} "
                  f"with the prefix in front (plain text), {ff['no_context_bits']:.2f} with no context at all.", ""]
    fw = r.get("fim_words")
    if fw:
        lines += [f"Single-word infills (`samples.fim_words`: {fw['cases']} held-out verses, one word removed with its "
                  f"leading space, up to 120 bytes each side, greedy, at most 24 tokens): {fw['ended_with_eos']:.0%} "
                  f"of the middles end with eos, {fw['ended_with_known_words']:.0%} do and are words of the held-out "
                  f"text, {fw['exact_word']:.0%} are the removed word. The first few:", "",
                  "| prefix (end) | middle | suffix (start) | removed |", "| --- | --- | --- | --- |"]
        for e in fw["examples"]:
            lines.append(f"| `{md(e['prefix_tail'][-30:])}` | `{md(e['middle'])}` | `{md(e['suffix_head'][:20])}` | "
                         f"`{md(e['removed'])}` |")
        lines.append("")
    lines += novelty_section(name)
    if eng:
        lines += ["## C++ engine outputs", ""]
        for g in eng.get("generate", []):
            lines += [f"`{g['command']}` (rc {g['rc']}):", "", fence(g["stdout"] if g["rc"] == 0 else g["stderr"]), "",
                      "reference greedy: " + ("identical" if g["stdout"] == g["reference_completion"] else
                                              "differs: " + repr(g["reference_completion"])), ""]
        for g in eng.get("sampled", []):
            lines += [f"`{g['command']}` (rc {g['rc']}):", "", fence(g["stdout"] if g["rc"] == 0 else g["stderr"]), ""]
    with open(os.path.join(d, "README.md"), "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def novelty_section(name):
    """RAVEN's figures (`roost novelty`, docs/novelty.md) when bench/results/novelty-NAME.json exists."""
    f = os.path.join(data.ROOT, "bench", "results", f"novelty-{name}.json")
    if not os.path.exists(f):
        return []
    n = json.load(open(f))
    p = n["prompts"]
    lines = ["## Novelty against the training text (RAVEN)", "",
             f"How much of its output the model copies from its training text (docs/novelty.md): the share of "
             f"{n['unit']} n-grams, n = 1..10, found nowhere in the training text, of the model's continuations "
             f"of {p['samples']} held-out prompts (the first {p['prompt_words']} words of each line of "
             f"`{p['file']}`) and of the held-out text that follows each prompt, {n['length']} {n['unit']} each; "
             f"and the longest span each copies. From `bench/results/novelty-{name}.json`:", "",
             "```", f"npx roost novelty --model {name} --corpus {n['corpus']['dir']} --prompts {p['file']} --threads 1 "
             f"--out bench/results/novelty-{name}.json --plot docs/novelty-{name}.svg", "```", "",
             f"![novelty of {name}](../../docs/novelty-{name}.svg)", "", n["table"].rstrip(), ""]
    for c in n["curves"]:
        e = c["longest_copy"]["example"]
        if e:
            lines.append(f"- {c['label']}: longest copy {e['length']} {n['unit']} at corpus offset {e['offset']}: `{md(e['text'])}`")
    lines.append("")
    return lines


def finds_prefix_end(r):
    """The first middle byte costs nearer to the prefix-in-front figure than to the no-context one."""
    ff = r.get("fim_first_byte")
    return bool(ff) and ff["psm_bits"] < (ff["prefix_in_front_bits"] + ff["no_context_bits"]) / 2


def table(dirs):
    rows = []
    for d in dirs:
        name = os.path.basename(os.path.normpath(d))
        r, cfg, eng = load(d)
        cells = []
        for c in CONTEXTS:
            if c in r["eval"]:
                v = f"{r['eval'][c]['bits_per_byte']:.3f}"
                if c != "full" and "n_positions" in cfg and int(c) > cfg["n_positions"]:
                    v += "*"
                cells.append(v)
            else:
                cells.append("n/a")
        e = "not verified"
        if eng and isinstance(eng.get("eval"), list):
            runs = [x for x in eng["eval"] if x["rc"] == 0]
            if runs and len(runs) == len(eng["eval"]):
                worst = max(x["relative_difference"] for x in runs)
                e = (f"{runs[0]['bits_per_byte']:.3f} (all {len(runs)} runs within {worst:.0e} of the reference)")
            else:
                e = "failed"
        rows.append(f"| [{name}]({name}/README.md) | {r['params']:,} | {r['safetensors_bytes']:,} | "
                    f"{' | '.join(cells)} | {model_context(cfg)} | {e} |")
    return ["| model | params | bytes | 256 | 1024 | 4096 | whole file | `roost eval` context | engine `roost eval` (default context) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"] + rows


if __name__ == "__main__":
    dirs = sys.argv[1:]
    for d in dirs:
        card(d)
    print("\n".join(table(dirs)))
