"""Golden fixtures for per-request adapters (test/fixtures/adapters/).

For two base fixtures (gpt2-tiny: learned positions, dense; bigbird-tiny:
rotary, BigBird blocks of 4, so a 6-token soft prompt spans blocks), one
random soft prompt and one random (IA)^3 adapter each (bigbird-tiny also a
3-token soft prompt, for three adapters in one batch), large enough that a
wrong position, scale or order shows in the log-probs. golden.json holds, per
case, the prompt's log-probs under the adapter (entry 0 predicted by the soft
prompt's last row when there is one, else null) and 12 greedy tokens.

    /usr/bin/python3 tools/reference/make_adapter_fixtures.py
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import adapters  # noqa: E402
import gpt2  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "test", "fixtures")
OUT = os.path.join(FIXTURES, "adapters")


def random_adapter(kind, config, seed, prompt_tokens=6):
    g = torch.Generator().manual_seed(seed)
    a = adapters.for_model(kind, config, prompt_tokens=prompt_tokens)
    with torch.no_grad():
        if kind == "prompt_tuning":
            a.prompt.copy_(0.5 * torch.randn(a.prompt.shape, generator=g))
        else:
            for p in (a.ia3_k, a.ia3_v, a.ia3_ff):
                p.copy_(1.0 + 0.4 * torch.randn(p.shape, generator=g))
    return a


def main():
    os.makedirs(OUT, exist_ok=True)
    for base, seed in (("gpt2-tiny", 11), ("bigbird-tiny", 12)):
        base_dir = os.path.join(FIXTURES, base)
        model = gpt2.load(base_dir)
        config = json.load(open(os.path.join(base_dir, "config.json")))
        V = config["vocab_size"]
        g = torch.Generator().manual_seed(seed)
        prompts = [torch.randint(0, min(V, 256), (n,), generator=g).tolist() for n in (1, 5, 19)]
        variants = [("prompt_tuning", "prompt", 6, 0), ("ia3", "ia3", 0, 100)]
        if base == "bigbird-tiny":  # a third adapter for the mixed-batch tests: a 3-token soft prompt
            variants.append(("prompt_tuning", "prompt3", 3, 200))
        for kind, suffix, P, dseed in variants:
            name = f"{base}-{suffix}"
            a = random_adapter(kind, config, seed + dseed, P)
            a.eval()
            adapters.save(a, os.path.join(OUT, name), base_dir)
            cases = []
            with torch.no_grad():
                for p in prompts:
                    cases.append({"tokens": p, "logprobs": model.score(p, a), "greedy": model.greedy(p, 12, adapter=a)})
            golden = {"base": base, "adapter": name, "kind": kind, "logprob_tolerance": 1e-4, "cases": cases}
            with open(os.path.join(OUT, name, "golden.json"), "w") as f:
                json.dump(golden, f, indent=1)
                f.write("\n")
            print(name, "written")


if __name__ == "__main__":
    main()
