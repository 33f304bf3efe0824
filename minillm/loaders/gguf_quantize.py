"""`quantize_gguf(src, dst, "Q4_K_M", imatrix)`: what llama.cpp's llama-quantize does, in minillm. Every
tensor of the input (a GGUF file in F32, F16, BF16 or any block type minillm reads, or a model folder
minillm.load reads) goes through float32 to the type llama.cpp's mix rules give it (quant/mixes.py),
quantized by ggml_quants (byte-exact with ggml's quantizers, with the importance matrix when one
is given); tensors already in their target type are copied unchanged, as llama.cpp copies them.
The metadata is the input's, with general.file_type set to the mix; tensors are written in
llama.cpp's order (by layer, then name).
"""
import os

import numpy as np

from ..io.gguf import ALIGNMENT, ARRAY, U32, read_gguf_typed, write_gguf
from ..quant.ggml_blocks import dequantize_blocks
from ..quant.ggml_quants import quantize_blocks
from ..quant.formats import GGML_BLOCKS
from ..quant.imatrix import Imatrix, load_imatrix
from ..quant.mixes import MIXES, mix_types, tensor_order
from .auto import load
from .gguf import gguf_contents

QUANTIZATION_VERSION = 2   # GGML_QNT_VERSION, written as general.quantization_version


def to_float32(t, shape, raw):  # a GGUF tensor's raw bytes -> float32 array of `shape`
    if t == "f32":
        return raw.view("<f4").reshape(shape)
    if t == "f16":
        return raw.view("<f2").astype(np.float32).reshape(shape)
    if t == "bf16":
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    dtype, bs = GGML_BLOCKS[t]
    return dequantize_blocks(raw.view(dtype).reshape(-1, shape[-1] // bs), t).reshape(shape)


def _source(path):
    """-> (kvs [(key, type, value)], {name: (type, shape, raw bytes or float32 array)}) of a GGUF file,
    or of a model folder as minillm would write it in F32."""
    if os.path.isfile(path):
        meta, kinds, tensors = read_gguf_typed(path)
        return [(k, ARRAY, (kinds[k][1], v)) if isinstance(kinds[k], tuple) else (k, kinds[k], v)
                for k, v in meta.items()], tensors
    model, tokenizer = load(path, dequantize=True)
    kvs, named = gguf_contents(model, tokenizer)
    return kvs, {name: ("f32", w.shape, w) for name, w in named}


def _importance(imatrix, name, K):
    """The importance weights of tensor `name` (rows of K), or None; a size mismatch is an error
    (llama.cpp's rule, which excuses only the token embedding)."""
    if imatrix is None or name not in imatrix:
        return None
    q = imatrix[name]
    if len(q) != K:
        if name == "token_embd.weight":
            return None
        raise ValueError(f"imatrix: {name!r} has {len(q)} values, the tensor's rows have {K}")
    return q


def quantize_gguf(src, dst, mix, imatrix=None, progress=None):
    """Write `src` (GGUF file or model folder) to `dst` as llama.cpp file type `mix` (quant.mixes.MIXES).
    imatrix: None, a path (GGUF or legacy .dat) or an Imatrix. -> {tensor name: ggml type written}."""
    if mix not in MIXES:
        raise ValueError(f"mix: expected one of {', '.join(MIXES)}, got {mix!r}")
    if isinstance(imatrix, (str, os.PathLike)):
        imatrix = load_imatrix(imatrix)
    weights = imatrix.importance() if isinstance(imatrix, Imatrix) else imatrix
    kvs, tensors = _source(src)
    meta = {k: v for k, t, v in kvs if t != ARRAY}
    arch = meta.get("general.architecture")
    try:
        n_head = int(meta[f"{arch}.attention.head_count"])
        shape_info = (n_head, int(meta.get(f"{arch}.attention.head_count_kv", n_head)), int(meta[f"{arch}.block_count"]))
    except KeyError as e:
        raise ValueError(f"{src}: missing GGUF metadata {e}") from None
    types = mix_types({n: (t, s) for n, (t, s, _) in tensors.items()}, mix, arch, *shape_info,
                      has_imatrix=weights is not None)
    out_kvs = [kv for kv in kvs if kv[0] not in ("general.file_type", "general.quantization_version")
               and (kv[0] != "general.alignment" or kv[2] == ALIGNMENT)]   # the data is written 32-aligned
    out_kvs += [("general.quantization_version", U32, QUANTIZATION_VERSION), ("general.file_type", U32, MIXES[mix][0])]
    out = []
    names = sorted(tensors, key=tensor_order)
    for i, name in enumerate(names):
        t, shape, raw = tensors[name]
        new = types[name]
        if isinstance(raw, np.ndarray) and raw.dtype == np.float32:       # from a model folder
            w, raw = raw, np.ascontiguousarray(raw, dtype="<f4").view(np.uint8).reshape(-1)
        else:
            w = None
        if new == t:
            blob = raw.tobytes()
        else:
            w = to_float32(t, shape, raw) if w is None else w
            if new == "f16":
                blob = np.ascontiguousarray(w, dtype="<f2").tobytes()
            elif new == "f32":
                blob = np.ascontiguousarray(w, dtype="<f4").tobytes()
            else:
                w2 = w.reshape(-1, shape[-1])
                blob = quantize_blocks(w2, new, imatrix=_importance(weights, name, shape[-1])).tobytes()
        out.append((name, new, shape, blob))
        if progress:
            progress(i + 1, len(names), name)
    write_gguf(dst, out_kvs, out)
    return types
