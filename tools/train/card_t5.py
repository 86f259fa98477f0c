"""Write models/t5-kjv/README.md (the card) from its config.json and
results.json (train_t5.py's training record, eval_t5.py's held-out figures
and examples).

    /usr/bin/python3 tools/train/card_t5.py [models/t5-kjv]
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import train_t5  # noqa: E402


def train_command(d, a):
    """The train_t5.py command that ran: every argument that is not its default."""
    defaults = vars(train_t5.parser().parse_args(["--out", d]))
    def flag(k):
        name = "--" + k.replace("_", "-")
        return name if a[k] is True else f"{name} {a[k]:g}" if isinstance(a[k], float) else f"{name} {a[k]}"
    flags = [flag(k) for k in sorted(a) if k != "out" and k in defaults and a[k] != defaults[k]]
    return " ".join([f"/usr/bin/python3 tools/train/train_t5.py --out {d}"] + flags)


def cell(s):
    """Text inside a table cell's code span: newlines shown as \\n, no pipes or backticks."""
    return "`" + repr(s)[1:-1].replace("|", "\\|").replace("`", "'") + "`"


def card(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    r = json.load(open(os.path.join(d, "results.json")))
    a, h = r["args"], r["heldout_span_fill"]
    size = os.path.getsize(os.path.join(d, "model.safetensors"))
    s2s, rem, giv = h["seq2seq"], h["default_fim_others_removed"], h["default_fim_others_given"]
    better = s2s["bits_per_byte"] < rem["bits_per_byte"]
    verdict = ("better than" if better else "worse than") + " the default model's FIM on the same gaps"
    ex = r["heldout_examples"]
    lines = [
        "# t5-kjv: a small T5 (span corruption + AlexaTM's causal mode)",
        "",
        f"A character-level T5 v1.1-shaped encoder-decoder (`model_type: \"t5\"`, [docs/t5.md](../../docs/t5.md)) "
        f"of the King James Bible, trained from scratch on this repository's shared 2-core CPU with "
        f"`tools/train/train_t5.py` (the reference modules of `tools/reference/t5.py` themselves). "
        f"{r['params']:,} parameters, `model.safetensors` {size:,} bytes (F16, HuggingFace T5 names). "
        f"On held-out multi-span blanks in Revelation 19-22 it is {verdict}: "
        f"{s2s['bits_per_byte']:.3f} bits per gap byte against {rem['bits_per_byte']:.3f} "
        f"({h['default_model']}, the decoder-only default, each gap alone with the other gaps cut out).",
        "",
        "## Held-out multi-span blanks: Revelation 19-22",
        "",
        f"Text: {h['text']} (`tools/train/eval_t5.py`): {h['windows']} consecutive windows of "
        f"{h['window_bytes']} bytes; in each, T5 span corruption ({h['noise_density']:g} of the bytes in spans of "
        f"mean length {h['mean_span']:g}, numpy `default_rng({h['seed']})`): {h['gaps']} gaps, {h['gap_bytes']:,} "
        f"gap bytes, about {h['gaps'] / h['windows']:.0f} per window. The seq2seq model reads the window with its "
        "gaps replaced by `<extra_id_0>`, `<extra_id_1>`, ... and scores the target `<extra_id_0> gap0 "
        "<extra_id_1> gap1 ... </s>` (reference, float32 from the F16 weights).",
        "",
        f"The default model ({h['default_model']}, byte-level decoder-only, trained with FIM) takes one gap at a "
        "time: each gap is scored as a served `suffix` request is laid out (`<fim_prefix> prefix <fim_suffix> "
        "suffix <fim_middle>` then the gap's bytes and the `<eos>` that closes it; tools/train/data.py "
        "psm_prompt), prefix and suffix from the same window. Its other gaps in that window: **removed** (their "
        "bytes cut out of prefix and suffix: the model sees the bytes the seq2seq model sees, without the marks of "
        "where the gaps are; the like-for-like figure) or **given** (their true bytes left in: more than the "
        "seq2seq model has).",
        "",
        "| model | bits per gap byte | with each gap's end (next sentinel or `</s>`; FIM: `<eos>`) | bits of each gap's first byte |",
        "| --- | --- | --- | --- |",
    ]
    rows = [("t5-kjv (this model), all gaps at once", s2s),
            (f"{h['default_model']} FIM, one gap at a time, other gaps removed", rem),
            (f"{h['default_model']} FIM, one gap at a time, other gaps given (true bytes)", giv)]
    if "seq2seq_text_removed" in h:
        rows.append(("t5-kjv with the text taken out of its input (only the sentinels and `</s>`; a diagnostic)",
                     h["seq2seq_text_removed"]))
    for name, f in rows:
        first = f"{f['first_byte_bits']:.3f}" if "first_byte_bits" in f else "-"
        lines.append(f"| {name} | {f['bits_per_byte']:.4f} | {f['bits_per_byte_with_end']:.4f} | {first} |")
    lines.append("")
    for note in r.get("comparison_notes", []):
        lines += [note, ""]
    if "engine_check" in h:
        e = h["engine_check"]
        lines += [f"Engine against reference (`roost score --tokens INPUT --target-tokens TARGET --device cpu` on "
                  f"the first {e['examples']} windows, {e['target_tokens']} target tokens): largest log-prob "
                  f"difference {e['max_abs_logprob_diff']:.1e}. test/native/test_t5.cpp checks two fixed cases "
                  "against test/fixtures/t5-kjv-golden.json (tools/reference/make_t5_kjv_golden.py) to 1e-4.", ""]
    lines += [
        f"### {len(ex)} examples (greedy fills by the reference; `\\n` is a newline)",
        "",
        f"Greedy gaps equal to the truth: {h['greedy_exact_gaps']}"
        + (f"; the default model's greedy FIM fill of the same gaps, each alone with the other gaps cut out: "
           f"{h['default_fim_greedy_exact_gaps']}" if "default_fim_greedy_exact_gaps" in h else "") + ".",
        "",
        "| # | input (gaps as sentinels) | greedy fill, gap by gap | truth |",
        "| --- | --- | --- | --- |",
    ]
    for i, e in enumerate(ex):
        lines.append(f"| {i + 1} | {cell(e['input'])} | {cell(' | '.join(e['fill']))} | {cell(' | '.join(e['truth']))} |")
    lines += [
        "",
        "(Fill and truth list the gaps in order, separated by ` | `.)",
        "",
        "## Architecture",
        "",
        f"T5 v1.1 shape: {cfg['num_layers']} encoder and {cfg['num_decoder_layers']} decoder blocks, d_model "
        f"{cfg['d_model']}, {cfg['num_heads']} heads of d_kv {cfg['d_kv']}, gated-GELU feed-forward of d_ff "
        f"{cfg['d_ff']}, RMS norms, relative position buckets ({cfg['relative_attention_num_buckets']} buckets, "
        f"max_distance {cfg['relative_attention_max_distance']}), head tied to `shared.weight` (scaled by "
        f"d_model^-0.5), no dropout.",
        "",
        "## Tokenizer",
        "",
        f"`tokenizer.json`: a sentencepiece-style Unigram model of {cfg['vocab_size']} pieces (tools/train/t5_data.py): "
        "`<pad>` 0 (also the decoder start), `</s>` 1, `<unk>` 2, `[CLM]` 3, one piece per character of the KJV "
        "text (73, the space written as Metaspace's `\u2581`, no `\u2581` prepended), then 100 sentinels with "
        "`<extra_id_0>` the last id, as T5's; `</s>` appended to every input. A text of n bytes is n tokens, so "
        "bits per byte are bits per token on the gaps.",
        "",
        "## Objective and data",
        "",
        f"Training text: Genesis to Hebrews (everything before \"Jas1:1 \", tools/train/data.py). Each example is a "
        f"random slice of {a['raw_min']}-{a['raw_max']} characters"
        + (f", after a length curriculum (`--ramp`): for the first {a['ramp']:.0%} of the time budget the slices "
           f"grow linearly from {a['ramp_from']} characters (one or two gaps: a decoder sentinel has few encoder "
           "sentinels to tell apart, so the lookup a gap needs is learned first) to that range"
           if a.get("ramp", 0) > 0 else "")
        + f". With probability {1 - a['clm_rate']:g}, T5 span "
        "corruption (Raffel et al. 2020): 15% of the characters in spans of mean length 3 (random partitions of "
        "noise and kept lengths, as T5's random_spans_noise_mask) become `<extra_id_i>` in the encoder input; the "
        "target is `<extra_id_0> span0 <extra_id_1> span1 ... </s>`. Otherwise (AlexaTM 20B's mix, Soltan et al. "
        f"2022, {a['clm_rate']:g} of the examples as in the paper) causal mode: the encoder input is `[CLM]` and the "
        "slice's first 20-80%, the target the rest (the decoder continues the input).",
        "",
        "## Training",
        "",
        f"{r['steps']:,} steps, {r['target_tokens']:,} target tokens ({r['examples']['span']:,} span-corruption "
        f"examples, {r['target_tokens_by_mode']['span']:,} target tokens; {r['examples']['clm']:,} causal examples, "
        f"{r['target_tokens_by_mode']['clm']:,} target tokens), {r['train_seconds'] / 60:.1f} minutes, "
        f"{a['threads']} torch thread (torch {r['torch']}), pinned to one core of a 2-core CPU whose other core ran "
        "other jobs. Batches of "
        f"{a['batch']} examples; AdamW (betas 0.9/0.95, weight decay {a['weight_decay']} on matrices and the "
        f"embedding), peak learning rate {a['lr']}, {a['warmup']} warmup steps, cosine decay to "
        f"{a['min_lr_frac']:g}x over the wall budget, gradient clipping 1.0, HuggingFace's T5 init"
        + (" except that each cross-attention's q projection starts equal to its k (`--tied-cross-init`: q.k is then "
           "large where decoder and encoder states share a token, so a sentinel finds its own)" if a.get("tied_cross_init") else "")
        + (f", and the encoder's relative position bias starts as a locality prior (`--local-bias {a['local_bias']:g}`: "
           f"head h adds -{a['local_bias']:g}·2^-h·|distance| to its scores, ALiBi's slopes; with HuggingFace's random "
           "bias the encoder stays position-blind: a sentinel's output carries nothing of the characters beside it)"
           if a.get("local_bias", 0) > 0 else "")
        + "; "
        f"`train_log.jsonl` has the loss per mode every 10 steps and the span loss on 32 fixed windows of James "
        f"(held out, not used by the evaluation above): {r['quick_span_bits_per_token']:.3f} bits per target token "
        "at the end.",
        "",
        "```",
        train_command(d.rstrip("/"), a),
        "/usr/bin/python3 tools/train/eval_t5.py --model " + d.rstrip("/"),
        "/usr/bin/python3 tools/train/card_t5.py " + d.rstrip("/"),
        "/usr/bin/python3 tools/reference/make_t5_kjv_golden.py",
        "```",
        "",
    ]
    lines += r.get("limits", [])
    with open(os.path.join(d, "README.md"), "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


if __name__ == "__main__":
    card(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "models", "t5-kjv"))
