"""The ggml tensor types minillm reads and writes, declared once: the id a GGUF file stores
(enum ggml_type in ggml.h), the name, the weights per block and the bytes per block. The block
layouts themselves (numpy structured dtypes) live in quant/formats.py, which checks its itemsizes
against this table; io/gguf.py uses it to size tensors without knowing how they are quantized."""
from typing import NamedTuple


class GGMLType(NamedTuple):
    name: str          # "q4_K"
    id: int            # enum ggml_type value stored in the file
    block_size: int    # weights per block (1 for plain floats)
    block_bytes: int   # bytes per block


GGML_TYPES = {t.name: t for t in (
    GGMLType("f32", 0, 1, 4),
    GGMLType("f16", 1, 1, 2),
    GGMLType("q4_0", 2, 32, 2 + 16),                  # fp16 scale + 32 nibbles
    GGMLType("q8_0", 8, 32, 2 + 32),                  # fp16 scale + 32 int8
    GGMLType("q4_K", 12, 256, 2 + 2 + 12 + 128),      # d, dmin, 12 bytes of 6-bit scales/mins, 256 nibbles
    GGMLType("q6_K", 14, 256, 128 + 64 + 16 + 2),     # low nibbles, high 2 bits, 16 int8 scales, d
)}
GGML_TYPE_BY_ID = {t.id: t for t in GGML_TYPES.values()}
FLOAT_TYPES = ("f32", "f16")


def tensor_nbytes(type_name, shape):
    """Bytes of a tensor of ggml type `type_name` and shape (outer..inner); the innermost axis must
    be a whole number of blocks."""
    t = GGML_TYPES[type_name]
    inner = shape[-1] if len(shape) else 1
    if inner % t.block_size:
        raise ValueError(f"shape: row length {inner} is not a multiple of the {type_name} block size {t.block_size}")
    n = 1
    for d in shape:
        n *= int(d)
    return n // t.block_size * t.block_bytes
