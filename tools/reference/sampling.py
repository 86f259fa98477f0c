"""Reference of Roost's sampling stages (docs/api.md "Sampling"), written from
the published formulas, and the generator of test/fixtures/sampling.json.

Stages, in vLLM's order, on one sequence's logits [V]:
  1. logit_bias: logit[j] += bias[j]
  2. min_tokens: while len(output) < min_tokens, logit[j] = -inf for j in stop_token_ids
  3. penalties: repetition (HF / vLLM): for j in prompt or output,
       logit[j] = logit[j] / r if logit[j] > 0 else logit[j] * r
     then frequency and presence (OpenAI), count[j] over the output:
       logit[j] -= frequency_penalty * count[j] + presence_penalty * (count[j] > 0)
  4. temperature: p = softmax(logit / T); T = 0 is greedy (argmax, ties -> lowest id)
  5. min_p: drop j with p[j] < min_p * max(p); top_k: keep the k most probable
     (ties -> lowest id); top_p: of what is left, renormalized, keep the
     smallest most-probable-first prefix whose mass reaches top_p; renormalize.

Logits are float32 through stage 3 (as the engine keeps them); probabilities
are float64.

    /usr/bin/python3 tools/reference/sampling.py [--out test/fixtures/sampling.json]

The golden file holds `distributions` (fixed logits, a prompt and an output
history, parameters, and the exact distribution stage 5 leaves: the native
test test/native/test_sampler.cpp) and `greedy` (greedy continuations of the
gpt2-tiny fixture with penalties, one forward of the whole sequence per token:
the server test test/sampling.test.ts).
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gpt2  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))

DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "repetition_penalty": 1.0, "min_tokens": 0, "stop_token_ids": [],
            "logit_bias": {}}


def process_logits(logits, prompt, output, params):
    """Stages 1-3: float32 logits [V] after bias, the min_tokens mask and the penalties."""
    p = {**DEFAULTS, **params}
    x = torch.as_tensor(logits, dtype=torch.float32).clone()
    V = x.shape[0]
    for tok, bias in p["logit_bias"].items():
        x[int(tok)] += torch.tensor(bias, dtype=torch.float32)
    if len(output) < p["min_tokens"]:
        for tok in p["stop_token_ids"]:
            x[tok] = float("-inf")
    r = p["repetition_penalty"]
    if r != 1.0:
        seen = torch.zeros(V, dtype=torch.bool)
        seen[list(prompt) + list(output)] = True
        rf = torch.tensor(r, dtype=torch.float32)
        x = torch.where(seen, torch.where(x > 0, x / rf, x * rf), x)
    if p["frequency_penalty"] != 0.0 or p["presence_penalty"] != 0.0:
        count = torch.bincount(torch.tensor(list(output), dtype=torch.long), minlength=V).double()
        sub = p["frequency_penalty"] * count + p["presence_penalty"] * (count > 0).double()
        x = x - sub.float()
    return x


def distribution(logits, prompt, output, params, margin=1e-4):
    """Stages 1-5: the float64 distribution [V] sampled from. Refuses (ValueError)
    a case within `margin` of a min_p or top_p boundary, where float rounding
    could flip a token in or out."""
    p = {**DEFAULTS, **params}
    x = process_logits(logits, prompt, output, params)
    V = x.shape[0]
    if p["temperature"] == 0.0:
        out = torch.zeros(V, dtype=torch.float64)
        out[int(torch.argmax(x))] = 1.0
        return out
    probs = torch.softmax(x.double() / p["temperature"], dim=0)
    keep = probs > 0
    if p["min_p"] > 0.0:
        ratio = probs / probs.max()
        if ((ratio - p["min_p"]).abs() < margin).any():
            raise ValueError("a token sits on the min_p boundary")
        keep &= ratio >= p["min_p"]
    # Most probable first, ties -> lowest id (a stable sort of -p keeps id order).
    order = sorted(range(V), key=lambda j: (-float(probs[j]), j))
    order = [j for j in order if keep[j]]
    if 0 < p["top_k"] < len(order):
        order = order[:p["top_k"]]
    if p["top_p"] < 1.0:
        z = sum(float(probs[j]) for j in order)
        cum, n = 0.0, len(order)
        for i, j in enumerate(order):
            cum += float(probs[j]) / z
            if abs(cum - p["top_p"]) < margin:
                raise ValueError("a prefix sits on the top_p boundary")
            if cum >= p["top_p"]:
                n = i + 1
                break
        order = order[:n]
    out = torch.zeros(V, dtype=torch.float64)
    out[order] = probs[order]
    return out / out.sum()


@torch.no_grad()
def penalized_greedy(model, prompt, n, params, eos, margin=1e-3):
    """Greedy continuation with stages 1-3 (temperature 0), stopping after eos
    unless ignore_eos. Returns ids, the raw log-prob of each (float64
    log_softmax of the float32 logits, before any stage), and the finish reason.
    Refuses (ValueError) a step whose best two processed logits are within margin."""
    ids, lps = [], []
    ignore_eos = params.get("ignore_eos", False)
    for _ in range(n):
        logits = model.forward(list(prompt) + ids)[-1]
        x = process_logits(logits, prompt, ids, params)
        top2 = torch.topk(x, 2).values
        if float(top2[0] - top2[1]) < margin:
            raise ValueError(f"near tie at step {len(ids)} for {params}")
        tok = int(torch.argmax(x))
        ids.append(tok)
        lps.append(float(torch.log_softmax(logits.double(), dim=0)[tok]))
        if tok == eos and not ignore_eos:
            return ids, lps, "stop"
    return ids, lps, "length"


def distribution_cases():
    g = torch.Generator().manual_seed(19)
    V = 32
    logits = (torch.randn(V, generator=g) * 2.5).tolist()
    # The output repeats the most probable token (10) and the prompt holds
    # positive (11) and negative (3, 8) logits, so each penalty shows.
    prompt = [1, 2, 3, 5, 8, 11, 21, 3, 3]
    output = [10, 4, 7, 10, 0, 10, 30, 4]
    specs = [
        ("neutral", {}),
        ("presence", {"presence_penalty": 1.5}),
        ("frequency", {"frequency_penalty": 0.7}),
        ("negative presence and frequency", {"presence_penalty": -1.0, "frequency_penalty": -0.5}),
        ("repetition above 1", {"repetition_penalty": 1.8}),
        ("repetition below 1", {"repetition_penalty": 0.5}),
        ("all penalties, temperature 0.7", {"repetition_penalty": 1.3, "frequency_penalty": 0.4,
                                            "presence_penalty": 0.6, "temperature": 0.7}),
        ("min_p", {"min_p": 0.05}),
        ("min_p after temperature", {"min_p": 0.05, "temperature": 0.5}),
        ("min_p with penalties, top_k and top_p", {"min_p": 0.02, "top_k": 6, "top_p": 0.8,
                                                   "frequency_penalty": 0.9, "repetition_penalty": 1.2}),
        ("min_tokens masks the stop ids", {"min_tokens": 9, "stop_token_ids": [0, 6, 11]}),
        ("min_tokens reached", {"min_tokens": 8, "stop_token_ids": [0, 6, 11]}),
        ("logit_bias before repetition", {"logit_bias": {"4": 3.0, "20": -2.0}, "repetition_penalty": 1.5}),
        ("greedy with penalties", {"temperature": 0.0, "presence_penalty": 2.0, "frequency_penalty": 1.0}),
    ]
    cases = []
    for name, params in specs:
        d = distribution(logits, prompt, output, params)
        cases.append({"name": name, "params": {**DEFAULTS, **params}, "prompt": prompt, "output": output,
                      "logits": logits, "expected": d.tolist()})
    return cases


def greedy_cases(model_dir):
    model = gpt2.load(model_dir)
    model.eval()
    config = json.load(open(os.path.join(model_dir, "config.json")))
    eos = config["eos_token_id"]
    prompt = [72, 101, 108, 108, 111, 44, 32, 119]
    n = 24
    specs = [
        ("plain", {}),
        ("presence_penalty 0.5", {"presence_penalty": 0.5}),
        ("presence_penalty 2", {"presence_penalty": 2.0}),
        ("frequency_penalty 0.3", {"frequency_penalty": 0.3}),
        ("frequency_penalty -2", {"frequency_penalty": -2.0}),
        ("repetition_penalty 1.2", {"repetition_penalty": 1.2}),
        ("repetition_penalty 2", {"repetition_penalty": 2.0}),
        ("all three", {"presence_penalty": 0.4, "frequency_penalty": 0.3, "repetition_penalty": 1.2}),
    ]
    cases = []
    for name, params in specs:
        ids, lps, finish = penalized_greedy(model, prompt, n, params, eos)
        cases.append({"name": name, "params": params, "prompt": prompt, "max_tokens": n, "ids": ids,
                      "logprobs": lps, "finish_reason": finish})
    return {"model": "gpt2-tiny", "eos_token_id": eos, "cases": cases}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "test", "fixtures", "sampling.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    golden = {"distributions": distribution_cases(),
              "greedy": greedy_cases(os.path.join(REPO, "test", "fixtures", "gpt2-tiny"))}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    for c in golden["greedy"]["cases"]:
        print(f"{c['name']:24s} {c['finish_reason']:6s} {c['ids']}")


if __name__ == "__main__":
    main()
