"""Minimal safetensors reader/writer over numpy, so tests exchange tensors with the engine's
tools without depending on the engine's own implementation of the format."""
import json
import struct

import numpy as np

_DT = {"F32": np.float32, "I32": np.int32, "U8": np.uint8, "F64": np.float64, "I64": np.int64}
_NAME = {np.dtype(v).name: k for k, v in _DT.items()}


def save(path, tensors: dict, metadata: dict | None = None) -> None:
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        data = arr.tobytes()
        header[name] = {"dtype": _NAME[arr.dtype.name], "shape": list(arr.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    """Returns (tensors: dict[str, np.ndarray], metadata: dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(raw[base + b:base + e], dtype=_DT[info["dtype"]]).reshape(info["shape"]).copy()
    return out, meta
