"""Plots bench/results/attention.json (written by bench_attention) as
bench/results/attention.svg: prefill time, per-token decode time (2-thread and
1-thread engines) and memory per sequence against context length, one line per
architecture.

    /usr/bin/python3 bench/plot_attention.py [attention.json] [attention.svg]

Needs matplotlib (Debian: apt-get install -y python3-matplotlib).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "results", "attention.json")
dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "results", "attention.svg")
data = json.load(open(src))

panels = [
    ("prefill_s", "prefill (s)", "prefill of the prompt"),
    ("decode_ms_per_token", "decode (ms / token, median)", "per-token decode, 2 threads"),
    ("decode_ms_per_token_1thread", "decode (ms / token, median)", "per-token decode, 1 thread"),
    ("state_bytes", "memory per sequence (MiB)", "KV cache / rings / states (dense = bigbird)"),
]
styles = {"dense": "o-", "bigbird": "s-", "perceiver_ar": "^-", "perceiver_ar_step512": "^--", "block_recurrent": "D-"}
fig, axes = plt.subplots(1, 4, figsize=(19, 4.8))
for ax, (key, label, title) in zip(axes, panels):
    for arch in dict.fromkeys(r["arch"] for r in data["results"]):
        rows = sorted((r for r in data["results"] if r["arch"] == arch and key in r), key=lambda r: r["context"])
        ys = [r[key] / 2**20 if key == "state_bytes" else r[key] for r in rows]
        ax.plot([r["context"] for r in rows], ys, styles.get(arch, "x-"), label=arch)
    for s in data.get("skipped", []):
        ax.axvline(s["context"], color="0.85", lw=0.8, zorder=0)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([1024, 4096, 16384, 65536], ["1k", "4k", "16k", "64k"])
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(True, which="both", lw=0.3)
axes[0].legend(fontsize=8)
m = data["model"]
fig.suptitle(f"Roost CPU engine, {m['n_layer']} layers, n_embd {m['n_embd']}, {m['n_head']} heads, "
             f"{data['machine']['isa']}, shared 2-core machine (load {data['machine']['loadavg_1min_start']}); "
             f"dense skipped where a grey line is drawn",
             fontsize=10)
fig.tight_layout()
fig.savefig(dst)
print("wrote", dst)
