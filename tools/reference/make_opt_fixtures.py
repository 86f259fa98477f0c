"""Writes test/fixtures/opt-* and xglm-* : small random HuggingFace-layout
checkpoints of OPT (tools/reference/opt.py) and XGLM (tools/reference/xglm.py)
with golden.json in the format of make_fixtures.py's long-context fixtures
(cases with decode_matches_forward, teacher-forced decode runs, greedy
continuations), bytes tokenizer (vocab 260).

Shapes cover pre-LN and post-LN (opt-350m's do_layer_norm_before false),
word_embed_proj_dim with project_in/out, enable_bias false, no final LayerNorm
(_remove_final_layer_norm), relu / gelu / gelu_new, odd head counts, an odd
d_model (the sinusoid table's zero column), scale_embedding on and off, a
pad_token_id whose zeroed sinusoid row is a real position, tied and untied heads.

    /usr/bin/python3 tools/reference/make_opt_fixtures.py [--out test/fixtures]
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_fixtures as mf  # noqa: E402
import opt  # noqa: E402
import xglm  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))


def common(model_type, **extra):
    d = {"model_type": model_type, "vocab_size": 260, "max_position_embeddings": 256, "bos_token_id": mf.BYTES_EOS,
         "eos_token_id": mf.BYTES_EOS, "tokenizer_class": "bytes", "special_tokens": dict(mf.BYTES_SPECIALS),
         "torch_dtype": "float32"}
    d.update(extra)
    return {k: d[k] for k in sorted(d)}


def opt_config(C, L, H, ffn, **extra):
    return common("opt", architectures=["OPTForCausalLM"], hidden_size=C, num_hidden_layers=L,
                  num_attention_heads=H, ffn_dim=ffn, **extra)


def xglm_config(C, L, H, ffn, **extra):
    return common("xglm", architectures=["XGLMForCausalLM"], d_model=C, num_layers=L, attention_heads=H,
                  ffn_dim=ffn, **extra)


FIXTURES = [
    ("opt-preln", 5101, "opt, 2 layers, hidden 32, 4 heads, ffn 48, do_layer_norm_before true (pre-LN, final "
     "LayerNorm), relu, enable_bias, tied head", opt.OPT, opt.OPTConfig,
     opt_config(32, 2, 4, 48, do_layer_norm_before=True, activation_function="relu", word_embed_proj_dim=32), {}),
    ("opt-postln-proj", 5102, "opt, 2 layers, hidden 24, 3 heads (odd), ffn 40, do_layer_norm_before false (post-LN "
     "as opt-350m: no final LayerNorm), word_embed_proj_dim 16 (project_in / project_out), relu, untied lm_head",
     opt.OPT, opt.OPTConfig,
     opt_config(24, 2, 3, 40, do_layer_norm_before=False, word_embed_proj_dim=16, tie_word_embeddings=False), {}),
    ("opt-nobias", 5103, "opt, 3 layers, hidden 40, 5 heads (odd), ffn 56, enable_bias false, pre-LN with "
     "_remove_final_layer_norm (no final LayerNorm), activation gelu (erf), tied head, matrices N(0, 0.15) (without "
     "a final LayerNorm, 0.2 gave logits large enough that CUDA's F16 rounding passed its 3e-2 tolerance)", opt.OPT, opt.OPTConfig,
     opt_config(40, 3, 5, 56, enable_bias=False, _remove_final_layer_norm=True, activation_function="gelu"),
     {"std": 0.15}),
    ("xglm-tiny", 5202, "xglm, 2 layers, d_model 32, 4 heads, ffn 48, gelu, scale_embedding (x sqrt 32), "
     "sinusoidal positions (pad_token_id 1), tied head (matrices N(0, 0.35), embed_tokens N(0, 0.2))", xglm.XGLM, xglm.XGLMConfig,
     xglm_config(32, 2, 4, 48, pad_token_id=1), {"std": 0.35, "embed_std": 0.2}),
    ("xglm-odd", 5202, "xglm, 2 layers, d_model 27 (odd: a zero sinusoid column), 3 heads of 9, ffn 40, "
     "scale_embedding false, pad_token_id 5 (sinusoid row 5, position 3, zeroed), activation gelu_new, untied "
     "lm_head (matrices N(0, 0.3))", xglm.XGLM, xglm.XGLMConfig,
     xglm_config(27, 2, 3, 40, scale_embedding=False, pad_token_id=5, activation_function="gelu_new",
                 tie_word_embeddings=False), {"std": 0.3}),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures"))
    out = ap.parse_args().out
    torch.set_num_threads(1)
    with open(os.path.join(HERE, "corpus_en.txt"), encoding="utf-8") as f:
        corpus = f.read()
    short = mf.BYTE_PROMPTS + mf.more_prompts(corpus)
    long = mf.prompt_slices(corpus, 41)
    text_ids = list(mf.BYTES_TEXT.encode("utf-8"))
    for name, seed, description, cls, cfg_cls, cfg, init in FIXTURES:
        model = cls(cfg_cls(cfg))
        opt.init_random(model, seed, **init)  # XGLM: larger matrices, else the tied head greedily repeats the input token
        model.eval()
        mf.write_long_fixture(
            out, name, description + ", bytes tokenizer, F32.", cfg, model, seed,
            [("one-token", mf.rand_tokens(1)), ("text", text_ids), ("random-9", mf.rand_tokens(9)),
             ("with-eos", mf.with_eos), ("random-40", mf.rand_tokens(40))],
            [("prompt-3-decode-12", 3, 12), ("prompt-20-decode-10", 20, 10)],
            [("short-prompt", short, lambda ids: len(ids) <= 8), ("long-prompt", long, lambda ids: True)])
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
