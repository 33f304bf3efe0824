"""safetensors reader/writer in plain Python + NumPy (format: github.com/huggingface/safetensors).

File layout: an unsigned little-endian 64-bit header length N, N bytes of UTF-8 JSON mapping each
tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the
header, tensors packed back to back) plus an optional "__metadata__" of str -> str, then the bytes.
The reader checks every offset and size before touching the data, so a truncated or corrupted file
raises ValueError instead of returning garbage.
"""
import json
import os
import struct

import numpy as np

from .atomic import atomic_write

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
    """-> (header dict without __metadata__, metadata dict, data start offset)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise ValueError(f"{path}: truncated or corrupt safetensors header (length {n}, file {size} bytes)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: corrupt safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", {}) or {}
    data_len, spans = size - 8 - n, []
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = np.dtype(_storage_dtype(info["dtype"])), info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: corrupt entry for tensor {name!r}: {info!r}") from None
        if not (0 <= begin <= end <= data_len):
            raise ValueError(f"{path}: tensor {name!r} lies outside the file (offsets {begin}..{end}, "
                             f"data is {data_len} bytes): truncated?")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != end - begin:
            raise ValueError(f"{path}: tensor {name!r} has {end - begin} bytes, shape {shape} {dtype} needs "
                             f"{int(np.prod(shape)) * dtype.itemsize}")
        spans.append((begin, end))
    spans.sort()
    for (_, e0), (b1, _) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError(f"{path}: corrupt safetensors file (overlapping tensors)")
    return header, metadata, 8 + n


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
