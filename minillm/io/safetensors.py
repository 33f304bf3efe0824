"""safetensors reader/writer in plain Python + NumPy (format: github.com/huggingface/safetensors).

File layout: an unsigned little-endian 64-bit header length N, N bytes of UTF-8 JSON mapping each
tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the
header, tensors packed back to back) plus an optional "__metadata__" of str -> str, then the bytes.
The reader checks every offset and size before touching the data, so a truncated or corrupted file
raises ValueError instead of returning garbage.
"""
import json
import math
import os
import struct

import numpy as np

from .atomic import atomic_write
from .jsonl import parse_json

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
          "U64": np.uint64, "BOOL": np.bool_}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}
BF16 = "BF16"  # bfloat16 has no NumPy dtype: stored as uint16 bits, returned widened to float32


def _storage_dtype(code):
    return np.uint16 if code == BF16 else DTYPES[code]


def bf16_to_float32(bits):  # uint16 array -> float32: bfloat16 is the top half of a float32
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


MAX_HEADER = 100 * 1024 * 1024  # the format's own limit on the JSON header


def save_safetensors(path, tensors, metadata=None):
    """Write {name: ndarray} atomically. Arrays are stored little-endian in C order."""
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        a = np.asarray(a)
        if a.dtype not in CODES:
            raise TypeError(f"tensors[{name!r}]: unsupported dtype {a.dtype}")
        blob = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": CODES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # pad so the data starts 8-byte aligned, as the reference does
    with atomic_write(path) as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def read_safetensors_header(path):
    """-> (header dict without __metadata__, metadata dict, data start offset). Checks what the
    safetensors library checks: every entry's dtype, shape (non-negative ints) and offsets, and
    that the tensors tile the data section exactly, back to back from 0 to its end, so a header
    length off by one or a stray gap is an error instead of shifted bytes."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise ValueError(f"{path}: truncated or corrupt safetensors header (length {n}, file {size} bytes)")
        header = parse_json(f.read(n), f"{path}: corrupt safetensors header", dict)
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: corrupt safetensors header (__metadata__ must map strings to strings)")
    data_len, spans = size - 8 - n, []
    for name, info in header.items():
        dtype, shape, (begin, end) = _entry(path, name, info)
        if not (0 <= begin <= end <= data_len):
            raise ValueError(f"{path}: tensor {name!r} lies outside the file (offsets {begin}..{end}, "
                             f"data is {data_len} bytes): truncated?")
        count = math.prod(shape)                       # Python ints: no overflow, unlike np.prod
        if count * dtype.itemsize != end - begin:
            raise ValueError(f"{path}: tensor {name!r} has {end - begin} bytes, shape {shape} {dtype} needs "
                             f"{count * dtype.itemsize}")
        spans.append((begin, end, name))
    spans.sort()
    edge = 0
    for begin, end, name in spans:
        if begin != edge:
            raise ValueError(f"{path}: corrupt safetensors file (tensor {name!r} starts at {begin}, expected "
                             f"{edge}: {'overlapping tensors' if begin < edge else 'a gap'})")
        edge = end
    if edge != data_len:
        raise ValueError(f"{path}: corrupt safetensors file (tensors end at {edge}, the data section has "
                         f"{data_len} bytes: wrong header length?)")
    return header, metadata, 8 + n


def _entry(path, name, info):
    """-> (dtype, shape list, (begin, end)) of one header entry, each checked, or a ValueError."""
    ok = isinstance(info, dict) and info.get("dtype") in DTYPES.keys() | {BF16}
    shape, offsets = (info.get("shape"), info.get("data_offsets")) if ok else (None, None)
    ok = ok and isinstance(shape, list) and len(shape) <= 64 and all(type(d) is int and d >= 0 for d in shape)
    ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
    if not ok:
        raise ValueError(f"{path}: corrupt entry for tensor {name!r}: {str(info)[:200]} (expected dtype one of "
                         f"{sorted(DTYPES) + [BF16]}, shape a list of ints >= 0, data_offsets [begin, end])")
    return np.dtype(_storage_dtype(info["dtype"])), shape, tuple(offsets)


def load_safetensors(path, mmap=False):
    """-> {name: ndarray} (native byte order copies; read-only memmaps with mmap=True). BF16 tensors
    come back as float32 copies."""
    header, _, start = read_safetensors_header(path)
    out = {}
    raw = np.memmap(path, dtype=np.uint8, mode="r") if mmap else None
    with open(path, "rb") as f:
        for name, info in header.items():
            begin, end = info["data_offsets"]
            dt = np.dtype(_storage_dtype(info["dtype"])).newbyteorder("<")
            if mmap:
                a = raw[start + begin:start + end].view(dt)
            else:
                f.seek(start + begin)
                a = np.frombuffer(f.read(end - begin), dtype=dt)
                a = a.astype(dt.newbyteorder("="))
            if info["dtype"] == BF16:
                a = bf16_to_float32(a)
            out[name] = a.reshape(info["shape"])
    return out
