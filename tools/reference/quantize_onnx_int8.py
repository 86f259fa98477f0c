"""Rewrites the graph export_onnx_gpt2.py writes into ONNX Runtime's 8-bit form, for
bench/peers' 8-bit ONNX Runtime row.

    /usr/bin/python3 tools/reference/quantize_onnx_int8.py IN.onnx OUT.onnx

Every MatMul whose second input is a weight [K, N] (the 48 Conv1D matrices and the
tied head) becomes ONNX Runtime's dynamic quantization, as its own quantizer
(onnxruntime.quantization.quantize_dynamic, not installed here) writes it:
  DynamicQuantizeLinear(x) -> x_q uint8, x_scale, x_zero_point (one per call)
  MatMulInteger(x_q, w_q int8, x_zero_point) -> int32
  Cast to float, times x_scale * w_scale[n]
with w_q = round(w / w_scale[n]) (halves to even, numpy), w_scale[n] = max|w[:, n]| / 127
(per output column, symmetric). ONNX Runtime fuses the chain into its
DynamicQuantizeMatMul kernel. This is not Q8_0: activations get one scale per call
rather than one per 32 values, weights one per column rather than one per 32 (1 byte per
weight against Q8_0's 1.0625); it is the 8-bit path ONNX Runtime's CPU provider offers.
Needs the onnx package (Debian: python3-onnx).
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto


def quantize_columns(w):
    scale = np.abs(w).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: quantize_onnx_int8.py IN.onnx OUT.onnx")
    model = onnx.load(sys.argv[1])
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes, done = [], 0
    for n in g.node:
        w = inits.get(n.input[1]) if n.op_type == "MatMul" else None
        if w is None or len(w.dims) != 2:
            nodes.append(n)
            continue
        q, scale = quantize_columns(numpy_helper.to_array(w).astype(np.float32))
        p = f"q8/{done}"
        g.initializer.extend([numpy_helper.from_array(q, p + "/w_q"), numpy_helper.from_array(scale, p + "/w_scale")])
        x = n.input[0]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [x], [p + "/x_q", p + "/x_scale", p + "/x_zp"]),
            helper.make_node("MatMulInteger", [p + "/x_q", p + "/w_q", p + "/x_zp"], [p + "/y_i32"]),
            helper.make_node("Cast", [p + "/y_i32"], [p + "/y_f32"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "/x_scale", p + "/w_scale"], [p + "/scale"]),
            helper.make_node("Mul", [p + "/y_f32", p + "/scale"], [n.output[0]]),
        ]
        done += 1
    del g.node[:]
    g.node.extend(nodes)
    # The float weights the MatMuls used are gone unless something else reads them
    # (the tied wte stays for the embedding Gather).
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])
    print(f"wrote {sys.argv[2]} ({done} matrix products in 8 bits)")


if __name__ == "__main__":
    main()
