"""Writes test/fixtures/opt-* and xglm-* : small random HuggingFace-layout
checkpoints of OPT (tools/reference/opt.py) and XGLM (tools/reference/xglm.py)
with golden.json in the format of make_fixtures.py's long-context fixtures
(cases with decode_matches_forward, teacher-forced decode runs, greedy
continuations), bytes tokenizer (vocab 260); the writer is family_fixtures.py's.

Shapes cover pre-LN and post-LN (opt-350m's do_layer_norm_before false),
word_embed_proj_dim with project_in/out, enable_bias false, no final LayerNorm
(_remove_final_layer_norm), relu / gelu / gelu_new, odd head counts, an odd
d_model (the sinusoid table's zero column), scale_embedding on and off, a
pad_token_id whose zeroed sinusoid row is a real position, tied and untied heads.

    /usr/bin/python3 tools/reference/make_opt_fixtures.py [--out test/fixtures] [--only NAME ..]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import family_fixtures  # noqa: E402
import opt  # noqa: E402
import xglm  # noqa: E402


def opt_config(C, L, H, ffn, **extra):
    return family_fixtures.bytes_config("opt", "OPTForCausalLM", max_position_embeddings=256, hidden_size=C,
                                        num_hidden_layers=L, num_attention_heads=H, ffn_dim=ffn, **extra)


def xglm_config(C, L, H, ffn, **extra):
    return family_fixtures.bytes_config("xglm", "XGLMForCausalLM", max_position_embeddings=256, d_model=C,
                                        num_layers=L, attention_heads=H, ffn_dim=ffn, **extra)


def make_opt(cfg):
    return opt.OPT(opt.OPTConfig(cfg))


def make_xglm(cfg):
    return xglm.XGLM(xglm.XGLMConfig(cfg))


# XGLM: larger matrices, else the tied head greedily repeats the input token.
FIXTURES = [
    ("opt-preln", 5101, "opt, 2 layers, hidden 32, 4 heads, ffn 48, do_layer_norm_before true (pre-LN, final "
     "LayerNorm), relu, enable_bias, tied head",
     opt_config(32, 2, 4, 48, do_layer_norm_before=True, activation_function="relu", word_embed_proj_dim=32),
     make_opt, {}),
    ("opt-postln-proj", 5102, "opt, 2 layers, hidden 24, 3 heads (odd), ffn 40, do_layer_norm_before false (post-LN "
     "as opt-350m: no final LayerNorm), word_embed_proj_dim 16 (project_in / project_out), relu, untied lm_head",
     opt_config(24, 2, 3, 40, do_layer_norm_before=False, word_embed_proj_dim=16, tie_word_embeddings=False),
     make_opt, {}),
    ("opt-nobias", 5103, "opt, 3 layers, hidden 40, 5 heads (odd), ffn 56, enable_bias false, pre-LN with "
     "_remove_final_layer_norm (no final LayerNorm), activation gelu (erf), tied head, matrices N(0, 0.15) (without "
     "a final LayerNorm, 0.2 gave logits large enough that CUDA's F16 rounding passed its 3e-2 tolerance)",
     opt_config(40, 3, 5, 56, enable_bias=False, _remove_final_layer_norm=True, activation_function="gelu"),
     make_opt, {"std": 0.15}),
    ("xglm-tiny", 5202, "xglm, 2 layers, d_model 32, 4 heads, ffn 48, gelu, scale_embedding (x sqrt 32), "
     "sinusoidal positions (pad_token_id 1), tied head (matrices N(0, 0.35), embed_tokens N(0, 0.2))",
     xglm_config(32, 2, 4, 48, pad_token_id=1), make_xglm, {"std": 0.35, "embed_std": 0.2}),
    ("xglm-odd", 5202, "xglm, 2 layers, d_model 27 (odd: a zero sinusoid column), 3 heads of 9, ffn 40, "
     "scale_embedding false, pad_token_id 5 (sinusoid row 5, position 3, zeroed), activation gelu_new, untied "
     "lm_head (matrices N(0, 0.3))",
     xglm_config(27, 2, 3, 40, scale_embedding=False, pad_token_id=5, activation_function="gelu_new",
                 tie_word_embeddings=False), make_xglm, {"std": 0.3}),
]


if __name__ == "__main__":
    family_fixtures.main(__doc__, FIXTURES)
