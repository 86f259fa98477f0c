"""Writes test/fixtures/llama-* : small random HuggingFace-layout checkpoints of
the Llama family (tools/reference/llama.py) with golden.json in the format of
make_fixtures.py's long-context fixtures (cases with decode_matches_forward,
teacher-forced decode runs, greedy continuations), bytes tokenizer (vocab 260);
the writer is family_fixtures.py's.

Shapes cover GQA ratios 1, 2, 3 and 4, odd head counts, head_dim != hidden/heads,
tied and untied heads, attention_bias, qwen2's q/k/v biases, rope_scaling linear
and llama3, rope_theta, and Mistral's sliding_window (cases past the window).

    /usr/bin/python3 tools/reference/make_llama_fixtures.py [--out test/fixtures] [--only NAME ..]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import family_fixtures  # noqa: E402
import llama  # noqa: E402


def config(model_type, C, L, H, G, inner, **extra):
    arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[model_type]
    d = {"hidden_size": C, "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": G,
         "intermediate_size": inner, "hidden_act": "silu", "rms_norm_eps": 1e-5, "max_position_embeddings": 512,
         "rope_theta": 10000.0, "tie_word_embeddings": False}
    d.update(extra)
    return family_fixtures.bytes_config(model_type, arch, **d)


def make(cfg):
    return llama.Llama(llama.LlamaConfig(cfg))


FIXTURES = [
    ("llama-gqa2", 4101, "llama, 2 layers, hidden 32, 4 heads over 2 KV heads (GQA ratio 2), head_dim 8, "
     "intermediate 48, untied lm_head, rope_scaling linear (factor 2)",
     config("llama", 32, 2, 4, 2, 48, rope_scaling={"rope_type": "linear", "factor": 2.0}), make, {}),
    ("llama-gqa4-tied", 4102, "llama, 2 layers, hidden 32, 4 heads over 1 KV head (GQA ratio 4), head_dim 12 given "
     "explicitly (4*12 != 32), attention_bias (q/k/v/o biases), tied embeddings, rope_theta 500000, rope_scaling "
     "llama3 (factor 8, low 1, high 4, original 64: every band occurs at head_dim 12)",
     config("llama", 32, 2, 4, 1, 40, head_dim=12, attention_bias=True, tie_word_embeddings=True,
            rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
     make, {}),
    ("qwen2-mha3", 4103, "qwen2, 2 layers, hidden 24, 3 heads = 3 KV heads (GQA ratio 1, odd heads), head_dim 8, "
     "q/k/v biases (none on o_proj), untied, rope_theta 1000000",
     config("qwen2", 24, 2, 3, 3, 40, rope_theta=1000000.0, use_sliding_window=False, sliding_window=16), make, {}),
    ("mistral-window", 4104, "mistral, 2 layers, hidden 24, 3 heads over 1 KV head (GQA ratio 3), head_dim 8, "
     "sliding_window 8: cases and decode runs past the window (ring KV cache)",
     config("mistral", 24, 2, 3, 1, 40, sliding_window=8), make, {}),
]


if __name__ == "__main__":
    family_fixtures.main(__doc__, FIXTURES)
