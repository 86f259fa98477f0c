"""What make_opt_fixtures.py and make_llama_fixtures.py share: the config keys
of every HuggingFace-layout fixture with the bytes tokenizer (vocab 260), and
the writer of test/fixtures/<name> with golden.json in the format of
make_fixtures.py's long-context fixtures (cases with decode_matches_forward,
teacher-forced decode runs, greedy continuations)."""
import argparse
import os

import torch

import causal_lm
import make_fixtures as mf

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def bytes_config(model_type, architecture, **extra):
    """config.json of a `model_type` checkpoint with the bytes tokenizer, F32, keys sorted."""
    d = {"model_type": model_type, "architectures": [architecture], "vocab_size": 260,
         "bos_token_id": mf.BYTES_EOS, "eos_token_id": mf.BYTES_EOS, "tokenizer_class": "bytes",
         "special_tokens": dict(mf.BYTES_SPECIALS), "torch_dtype": "float32"}
    d.update(extra)
    return {k: d[k] for k in sorted(d)}


def main(doc, fixtures):
    """Writes each (name, seed, description, config, make_model, init) of `fixtures`:
    make_model(config) built, causal_lm.init_random(model, seed, **init), goldens.
    `doc` is the calling script's docstring (its --help)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures"))
    ap.add_argument("--only", nargs="*", help="write just these fixtures")
    a = ap.parse_args()
    torch.set_num_threads(1)
    with open(os.path.join(HERE, "corpus_en.txt"), encoding="utf-8") as f:
        corpus = f.read()
    short = mf.BYTE_PROMPTS + mf.more_prompts(corpus)
    long = mf.prompt_slices(corpus, 41)
    text_ids = list(mf.BYTES_TEXT.encode("utf-8"))
    for name, seed, description, cfg, make_model, init in fixtures:
        if a.only and name not in a.only:
            continue
        model = make_model(cfg)
        causal_lm.init_random(model, seed, **init)
        model.eval()
        mf.write_long_fixture(
            a.out, name, description + ", bytes tokenizer, F32.", cfg, model, seed,
            [("one-token", mf.rand_tokens(1)), ("text", text_ids), ("random-9", mf.rand_tokens(9)),
             ("with-eos", mf.with_eos), ("random-40", mf.rand_tokens(40))],
            [("prompt-3-decode-12", 3, 12), ("prompt-20-decode-10", 20, 10)],
            [("short-prompt", short, lambda ids: len(ids) <= 8), ("long-prompt", long, lambda ids: True)])
        print(f"wrote {name}")
