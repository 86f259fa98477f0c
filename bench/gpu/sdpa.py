#!/usr/bin/env python3
"""PyTorch side of bench/gpu/run.sh (needs only torch and numpy).

1. Times torch.nn.functional.scaled_dot_product_attention (is_causal=True,
   F16, batch 1, the same heads and head size as bench_gpu_kernels) at the
   same lengths, with the backend torch picks by default and, where they run,
   each backend forced (flash, cuDNN, efficient), and puts Roost's TFLOP/s
   next to it.
2. Checks the op outputs bench_gpu_kernels --parity wrote (causal attention
   through the flash and the SIMT kernel, the F16 GEMM, LayerNorm, gelu_new)
   against PyTorch in float64, with the tolerances of test/cuda/test_cuda_ops.
3. Merges everything with the kernel results into one JSON file.

  python3 bench/gpu/sdpa.py --kernels K.json --parity DIR --out OUT.json [--tests ops=0,models=0] [--build-s S]
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def time_ms(fn, iters):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def sdpa_bench(lengths, heads, head_dim):
    backends = {"default": None}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backends.update({"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                         "efficient": SDPBackend.EFFICIENT_ATTENTION})
    except Exception:  # older torch: only the default
        sdpa_kernel = None
    out = []
    for T in lengths:
        q, k, v = (torch.randn(1, heads, T, head_dim, device="cuda", dtype=torch.float16) for _ in range(3))
        row = {"T": T}
        for name, be in backends.items():
            def run():
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            try:
                if be is None:
                    ms = time_ms(run, 3 if T >= 65536 else 10)
                else:
                    with sdpa_kernel(be):
                        ms = time_ms(run, 3 if T >= 65536 else 10)
                row[name] = {"ms": ms, "tflops": 4.0 * T * T * head_dim / 2 * heads / (ms * 1e-3) / 1e12}
            except Exception as e:  # a backend this torch / GPU lacks
                row[name] = {"error": str(e).splitlines()[0][:200]}
        out.append(row)
        print(f"torch sdpa T={T}: " + ", ".join(
            f"{k} {v['ms']:.3f} ms {v['tflops']:.1f} TFLOP/s" if "ms" in v else f"{k} n/a"
            for k, v in row.items() if k != "T"), flush=True)
        del q, k, v
        torch.cuda.empty_cache()
    return out


def load(path, dtype, shape):
    return np.fromfile(path, dtype=dtype).reshape(shape)


def parity(d):
    man = json.load(open(os.path.join(d, "manifest.json")))
    res = {}
    dev = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False

    def report(name, got, want, bound):
        err = (got - want).abs()
        ratio = (err / bound).max().item()
        res[name] = {"max_abs_err": err.max().item(), "worst_fraction_of_bound": ratio, "ok": bool(ratio <= 1.0)}
        print(f"parity {name}: max |err| {err.max().item():.3g}, worst {ratio:.3g} of bound -> "
              f"{'PASS' if ratio <= 1 else 'FAIL'}", flush=True)

    for key, m in man.items():
        if key.startswith("attn_"):
            T, H, D = m["T"], m["H"], m["D"]
            p = os.path.join(d, key)
            q = torch.from_numpy(load(p + "_q.bin", np.float32, (T, H, D))).to(dev, torch.float64)
            k = torch.from_numpy(load(p + "_k.bin", np.float16, (T, H, D))).to(dev, torch.float64)
            v = torch.from_numpy(load(p + "_v.bin", np.float16, (T, H, D))).to(dev, torch.float64)
            got = torch.from_numpy(load(p + "_out.bin", np.float32, (T, H, D))).to(dev, torch.float64)
            want = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                                  is_causal=True).transpose(0, 1)
            flash = D in (16, 32, 64, 128)
            vmax = v.abs().max().item()
            bound = 4e-3 * vmax + 1e-5 if flash else 2e-5 * vmax + 1e-6
            report(f"causal attention D={D} ({'flash' if flash else 'simt'})", got, want, bound)
    if "gemm" in man:
        M, K, N = man["gemm"]["M"], man["gemm"]["K"], man["gemm"]["N"]
        x = torch.from_numpy(load(os.path.join(d, "gemm_x.bin"), np.float32, (M, K))).to(dev)
        w = torch.from_numpy(load(os.path.join(d, "gemm_w.bin"), np.float32, (K, N))).to(dev)
        b = torch.from_numpy(load(os.path.join(d, "gemm_b.bin"), np.float32, (N,))).to(dev, torch.float64)
        got = torch.from_numpy(load(os.path.join(d, "gemm_y.bin"), np.float32, (M, N))).to(dev, torch.float64)
        xh, wh = x.half().double(), w.half().double()  # what the tensor cores multiply
        want = xh @ wh + b
        report("gemm F16 (x rounded to F16, F32 accumulate)", got, want, 2e-5 * (xh.abs() @ wh.abs() + b.abs()) + 1e-6)
    if "layernorm" in man:
        M, C, eps = man["layernorm"]["M"], man["layernorm"]["C"], man["layernorm"]["eps"]
        x = torch.from_numpy(load(os.path.join(d, "ln_x.bin"), np.float32, (M, C))).to(dev, torch.float64)
        w = torch.from_numpy(load(os.path.join(d, "ln_w.bin"), np.float32, (C,))).to(dev, torch.float64)
        b = torch.from_numpy(load(os.path.join(d, "ln_b.bin"), np.float32, (C,))).to(dev, torch.float64)
        got = torch.from_numpy(load(os.path.join(d, "ln_y.bin"), np.float32, (M, C))).to(dev, torch.float64)
        want = F.layer_norm(x, (C,), w, b, eps)
        report("layernorm", got, want, 2e-5 * (1 + want.abs()))
        got = torch.from_numpy(load(os.path.join(d, "gelu_y.bin"), np.float32, (M, C))).to(dev, torch.float64)
        want = F.gelu(x, approximate="tanh")
        report("gelu_new", got, want, 2e-6 * (1 + x.abs()))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", required=True, help="bench_gpu_kernels JSON")
    ap.add_argument("--parity", help="bench_gpu_kernels --parity folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tests", default="", help="name=exit_status,... of the parity test executables")
    ap.add_argument("--build-s", type=float, default=None)
    ap.add_argument("--total-s", type=float, default=None, help="seconds the run took before this script")
    args = ap.parse_args()

    k = json.load(open(args.kernels))
    att = k["attention"]
    lengths = [r["T"] for r in att["dense"]]
    t0 = time.time()
    torch_rows = sdpa_bench(lengths, att["heads"], att["head_dim"])
    for r, tr in zip(att["dense"], torch_rows):
        r["torch_sdpa"] = tr
        d = tr.get("default", {})
        if "tflops" in d:
            r["fraction_of_torch_sdpa"] = r["tflops"] / d["tflops"]
    out = {
        "device": k["device"],
        "torch": torch.__version__,
        "cuda_runtime_of_torch": torch.version.cuda,
        "attention": att,
        "gemm": k["gemm"],
        "decode": k["decode"],
    }
    r16 = next((r for r in att["dense"] if r["T"] == 16384), None)
    if r16 and "fraction_of_torch_sdpa" in r16:
        out["summary"] = {
            "dense_16k_roost_tflops": r16["tflops"],
            "dense_16k_torch_sdpa_tflops": r16["torch_sdpa"]["default"]["tflops"],
            "dense_16k_fraction_of_sdpa": r16["fraction_of_torch_sdpa"],
            "target_fraction": 0.70,
        }
        print(f"dense causal 16k: Roost {r16['tflops']:.1f} TFLOP/s, torch SDPA "
              f"{r16['torch_sdpa']['default']['tflops']:.1f} TFLOP/s: {100 * r16['fraction_of_torch_sdpa']:.0f}% "
              f"(target 70%)", flush=True)
    if args.parity:
        out["parity_torch"] = parity(args.parity)
    if args.tests:
        out["parity_tests"] = {kv.split("=")[0]: ("pass" if kv.split("=")[1] == "0" else "fail (exit " + kv.split("=")[1] + ")")
                               for kv in args.tests.split(",") if "=" in kv}
    if args.build_s is not None:
        out["build_s"] = args.build_s
    out["torch_part_s"] = time.time() - t0
    if args.total_s is not None:
        out["seconds_before_torch_part"] = args.total_s
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")
    bad = [n for n, r in out.get("parity_torch", {}).items() if not r["ok"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
