"""GGUF, llama.cpp's model file (ggml docs/gguf.md, version 3), as a container: metadata key/values,
tensor infos and raw tensor bytes. `write_gguf(path, metadata, tensors)` and `read_gguf(path)` know
nothing of models; assembling a minillm Transformer from a GGUF (tensor names, rotary layout,
quantized layers, the tokenizer) is minillm.loaders.gguf.

Layout, all little-endian: "GGUF", u32 version, u64 tensor count, u64 metadata count; metadata as
(string key, u32 type, value); tensor infos as (string name, u32 n_dims, u64 dims[] innermost first,
u32 ggml type, u64 offset into the data section); padding to `general.alignment` (32); the data.
Strings are u64 length + UTF-8 bytes. Every count, size and offset is checked against the file size
before anything is allocated, so a truncated or corrupted file raises ValueError.
"""
import mmap
import os
import struct

import numpy as np

from .atomic import atomic_write
from .ggml_types import GGML_TYPE_BY_ID, GGML_TYPES, tensor_nbytes

MAGIC = b"GGUF"
VERSION = 3
ALIGNMENT = 32
HEADER_BYTES = 24  # magic, version, tensor count, metadata count
# metadata value types (enum gguf_metadata_value_type)
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
           U64: "<Q", I64: "<q", F64: "<d"}
# tokenizer.ggml.token_type values (llama_token_type)
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_UNUSED = 1, 3, 5


# ------------------------------------------------------------------ writing
def _string(text):
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _key_value(key, vtype, value):
    out = _string(key) + struct.pack("<I", vtype)
    if vtype == STRING:
        return out + _string(value)
    if vtype == ARRAY:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        if etype == STRING:
            return out + b"".join(_string(v) for v in items)
        return out + np.asarray(items, dtype=np.dtype(_SCALAR[etype])).tobytes()
    return out + struct.pack(_SCALAR[vtype], value)


def write_gguf(path, metadata, tensors):
    """Write a GGUF file atomically. metadata: list of (key, value type, value), an ARRAY value being
    (element type, items); tensors: list of (name, ggml type name, shape (outer..inner), raw bytes)."""
    infos, blobs, offset = [], [], 0
    for name, type_name, shape, blob in tensors:
        if type_name not in GGML_TYPES:
            raise ValueError(f"tensors: {name!r} has ggml type {type_name!r}, expected one of {sorted(GGML_TYPES)}")
        if len(blob) != tensor_nbytes(type_name, shape):
            raise ValueError(f"tensors: {name!r} has {len(blob)} bytes, a {type_name} tensor of shape "
                             f"{tuple(shape)} has {tensor_nbytes(type_name, shape)}")
        dims = list(reversed(shape))                                                 # innermost first
        infos.append(_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", GGML_TYPES[type_name].id, offset))
        pad = -len(blob) % ALIGNMENT
        blobs.append(bytes(blob) + b"\0" * pad)
        offset += len(blob) + pad
    head = MAGIC + struct.pack("<IQQ", VERSION, len(infos), len(metadata))
    head += b"".join(_key_value(*kv) for kv in metadata) + b"".join(infos)
    head += b"\0" * (-len(head) % ALIGNMENT)
    with atomic_write(path) as f:
        f.write(head)
        for blob in blobs:
            f.write(blob)


# ------------------------------------------------------------------ reading
class _Reader:
    """Bounds-checked little-endian cursor over the file's bytes."""

    def __init__(self, buf, path):
        self.buf, self.pos, self.path, self.last_etype = buf, 0, path, None

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(f"{self.path}: truncated or corrupted GGUF (need {n} bytes at offset {self.pos}, "
                             f"file has {len(self.buf)})")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.unpack("<Q")
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: corrupted GGUF (a string is not UTF-8)") from None

    def value(self, vtype, depth=0):
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY and depth == 0:
            etype, n = self.unpack("<I"), self.unpack("<Q")
            self.last_etype = etype
            if etype in _SCALAR:
                size = struct.calcsize(_SCALAR[etype])
                return np.frombuffer(self.take(n * size), dtype=np.dtype(_SCALAR[etype])).tolist()
            if n > len(self.buf) - self.pos:  # each element takes at least one byte
                raise ValueError(f"{self.path}: corrupted GGUF (array of {n} elements)")
            return [self.value(etype, depth + 1) for _ in range(n)]
        raise ValueError(f"{self.path}: corrupted GGUF (unknown metadata value type {vtype})")


def _read_header(r, path, size):
    """-> (metadata dict, {key: value type, or (ARRAY, element type)}, [(name, dims innermost first,
    ggml type id, offset)])."""
    if bytes(r.take(len(MAGIC))) != MAGIC:
        raise ValueError(f"{path}: not a GGUF file (bad magic)")
    version = r.unpack("<I")
    if version not in (2, 3):
        raise ValueError(f"{path}: unsupported GGUF version {version} (expected 2 or 3)")
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    if n_tensors > size or n_kv > size:
        raise ValueError(f"{path}: corrupted GGUF header ({n_tensors} tensors, {n_kv} metadata entries)")
    meta, kinds = {}, {}
    for _ in range(n_kv):
        key = r.string()
        if key in meta:   # gguf-py and llama.cpp reject these too: which value would win is undefined
            raise ValueError(f"{path}: corrupted GGUF (duplicate metadata key {key!r})")
        vtype = r.unpack("<I")
        meta[key] = r.value(vtype)
        kinds[key] = (ARRAY, r.last_etype) if vtype == ARRAY else vtype
    infos, names = [], set()
    for _ in range(n_tensors):
        name = r.string()
        if name in names:
            raise ValueError(f"{path}: corrupted GGUF (duplicate tensor name {name!r})")
        names.add(name)
        nd = r.unpack("<I")
        if nd > 4:
            raise ValueError(f"{path}: corrupted GGUF (tensor {name!r} has {nd} dimensions)")
        dims = [r.unpack("<Q") for _ in range(nd)]
        infos.append((name, dims, r.unpack("<I"), r.unpack("<Q")))
    return meta, kinds, infos


def read_gguf(path):
    """-> (metadata {key: value}, tensors {name: (ggml type name, shape (outer..inner), raw uint8 array)}).
    The raw arrays are views of the memory-mapped file."""
    meta, _, tensors = read_gguf_typed(path)
    return meta, tensors


def read_gguf_typed(path):
    """read_gguf, plus each metadata value's type as write_gguf takes it: {key: value type} with
    (ARRAY, element type) for arrays, so a file's metadata can be copied into another."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < HEADER_BYTES:
            raise ValueError(f"{path}: not a GGUF file ({size} bytes)")
        buf = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    r = _Reader(buf, path)
    meta, kinds, infos = _read_header(r, path, size)
    align = meta.get("general.alignment", ALIGNMENT)
    if type(align) is not int or align <= 0 or align & (align - 1):
        raise ValueError(f"{path}: corrupted GGUF (alignment {align})")
    start = r.pos + (-r.pos % align)
    tensors = {}
    for name, dims, type_id, off in infos:
        if type_id not in GGML_TYPE_BY_ID:
            raise ValueError(f"{path}: tensor {name!r} has ggml type {type_id}, which minillm does not read "
                             f"(supported: {sorted(GGML_TYPES)})")
        t = GGML_TYPE_BY_ID[type_id].name
        shape = tuple(reversed(dims))
        try:
            nbytes = tensor_nbytes(t, shape)
        except ValueError as e:
            raise ValueError(f"{path}: tensor {name!r}: {e}") from None
        if off % align or start + off + nbytes > size:
            raise ValueError(f"{path}: truncated or corrupted GGUF (tensor {name!r} at {start + off}+{nbytes}, "
                             f"file has {size} bytes)")
        tensors[name] = (t, shape, np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=start + off))
    return meta, kinds, tensors
