"""Minimal safetensors reader/writer for the PyTorch reference (no external package).

Format: 8-byte little-endian header length N, then N bytes of JSON
``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}``
(offsets relative to the start of the data block), then the data block.
The writer pads the header with spaces to a multiple of 8 bytes, as the
official writer does, and lays tensors out in name order with no gaps.
"""
import json
import struct

import numpy as np
import torch

# safetensors dtype name -> (torch dtype, bytes per element)
DTYPES = {
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F64": (torch.float64, 8),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
TORCH_TO_NAME = {v[0]: k for k, v in DTYPES.items()}


def _tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: reinterpret the same 2 bytes as int16.
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save(path, tensors, metadata=None):
    """Write ``tensors`` (dict name -> torch.Tensor) to ``path``.

    ``metadata`` (dict str -> str) goes to ``__metadata__``.
    """
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in TORCH_TO_NAME:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        b = _tensor_bytes(t)
        header[name] = {
            "dtype": TORCH_TO_NAME[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    pad = (8 - len(hjson) % 8) % 8
    hjson += b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, data start offset)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: file shorter than 8 bytes")
        (n,) = struct.unpack("<Q", raw)
        hbytes = f.read(n)
        if len(hbytes) != n:
            raise ValueError(f"{path}: truncated header")
    header = json.loads(hbytes.decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    return header, meta, 8 + n


def load(path, with_metadata=False):
    """Read every tensor of ``path``: dict name -> torch.Tensor (own memory).

    Validates dtype, shape/offset agreement and bounds.
    """
    header, meta, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in DTYPES:
            raise ValueError(f"{path}: {name}: unsupported dtype {dt}")
        tdtype, size = DTYPES[dt]
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
        count = 1
        for s in shape:
            count *= s
        if end - begin != count * size or begin < 0 or end > len(data):
            raise ValueError(f"{path}: {name}: bad data_offsets {begin},{end} for shape {shape} {dt}")
        buf = bytearray(data[begin:end])
        if tdtype == torch.bfloat16:
            arr = np.frombuffer(buf, dtype="<i2").copy()
            t = torch.from_numpy(arr).view(torch.bfloat16)
        elif tdtype == torch.bool:
            t = torch.from_numpy(np.frombuffer(buf, dtype=np.uint8).copy()).to(torch.bool)
        else:
            npdt = {torch.float32: "<f4", torch.float16: "<f2", torch.float64: "<f8",
                    torch.int64: "<i8", torch.int32: "<i4", torch.int16: "<i2",
                    torch.int8: "i1", torch.uint8: "u1"}[tdtype]
            t = torch.from_numpy(np.frombuffer(buf, dtype=npdt).copy())
        out[name] = t.reshape(shape)
    if with_metadata:
        return out, meta
    return out
