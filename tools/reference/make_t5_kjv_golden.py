"""Writes test/fixtures/t5-kjv-golden.json: log-probs of fixed targets given
fixed inputs under the shipped seq2seq model (models/t5-kjv), computed by
tools/reference/t5.py from its F16 weights (float32 math, float64 log_softmax).
test/native/test_t5.cpp checks the engine against it to 1e-4.

Cases: a span-corruption input (the first verse of Revelation 19 with three
gaps, <extra_id_0..2>) with its true target, and a causal-mode input ([CLM]
and the first half of the verse) with the rest of the verse as the target.

    /usr/bin/python3 tools/reference/make_t5_kjv_golden.py
"""
import hashlib
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tools", "train"))

import checkpoint  # noqa: E402
import t5  # noqa: E402
import t5_data  # noqa: E402

MODEL = os.path.join(REPO, "models", "t5-kjv")
TEXT = b"Rev19:1 And after these things I heard a great voice of much people in heaven, saying, Alleluia;"
SPANS = [(12, 17), (40, 43), (70, 79)]  # "after", " gr", " heaven, "


def main():
    torch.set_num_threads(1)
    vocab = t5_data.Vocab()
    model = t5.T5(t5.T5Config(checkpoint.read_config(MODEL)))
    model.load_hf_state_dict(checkpoint.read_tensors(MODEL))
    model.eval()
    ids = vocab.encode(TEXT)
    cases = []
    inp, tgt = t5_data.corrupt(vocab, ids, SPANS)
    cases.append({"name": "span corruption, 3 gaps", "input": inp, "target": tgt})
    inp, tgt = t5_data.causal(ids, len(ids) // 2)
    cases.append({"name": "causal mode ([CLM])", "input": inp, "target": tgt})
    for c in cases:
        c["logprobs"] = model.score(c["input"], c["target"])
    weights = open(os.path.join(MODEL, "model.safetensors"), "rb").read()
    out = {"description": "models/t5-kjv: log p(target t | input, target < t) by tools/reference/t5.py "
                          "(make_t5_kjv_golden.py)",
           "model": "models/t5-kjv", "model_safetensors_sha256": hashlib.sha256(weights).hexdigest(),
           "text": TEXT.decode(), "cases": cases}
    path = os.path.join(REPO, "test", "fixtures", "t5-kjv-golden.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    for c in cases:
        print(c["name"], len(c["target"]), "target tokens, sum", sum(c["logprobs"]))


if __name__ == "__main__":
    main()
