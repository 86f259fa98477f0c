"""Architecture dispatch for the reference: load(dir) picks the module by
config.json's model_type (gpt2 also covers attention.kind "bigbird")."""
import block_recurrent
import checkpoint
import gpt2
import llama
import opt
import perceiver_ar
import xglm

ARCHITECTURES = {"gpt2": gpt2, "perceiver_ar": perceiver_ar, "block_recurrent": block_recurrent,
                 "llama": llama, "mistral": llama, "qwen2": llama, "opt": opt, "xglm": xglm}


def parse_config(cfg):
    """The architecture's config object; raises ValueError naming the refused field."""
    if not isinstance(cfg, dict):
        raise ValueError("config: must be a JSON object")
    if "model_type" not in cfg:
        raise ValueError("config: model_type is missing")
    mt = cfg["model_type"]
    if mt not in ARCHITECTURES:
        raise ValueError(f"config: model_type must be one of {sorted(ARCHITECTURES)} (got {mt!r})")
    return {"gpt2": gpt2.GPT2Config, "perceiver_ar": perceiver_ar.PerceiverARConfig,
            "block_recurrent": block_recurrent.BlockRecurrentConfig, "llama": llama.LlamaConfig,
            "mistral": llama.LlamaConfig, "qwen2": llama.LlamaConfig, "opt": opt.OPTConfig,
            "xglm": xglm.XGLMConfig}[mt](cfg)


def load(path):
    cfg = checkpoint.read_config(path)
    mt = cfg.get("model_type", "gpt2")
    if mt not in ARCHITECTURES:
        raise ValueError(f"config: model_type must be one of {sorted(ARCHITECTURES)} (got {mt!r})")
    return ARCHITECTURES[mt].load(path)
