"""Architecture dispatch for the reference: load(dir) picks the module by
config.json's model_type. Later issues add perceiver_ar / block_recurrent here."""
import checkpoint
import gpt2

ARCHITECTURES = {"gpt2": gpt2}


def load(path):
    cfg = checkpoint.read_config(path)
    mt = cfg.get("model_type", "gpt2")
    if mt not in ARCHITECTURES:
        raise NotImplementedError(f"model_type {mt!r} not in the reference yet")
    return ARCHITECTURES[mt].load(path)
