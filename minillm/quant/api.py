"""Model-level quantization: `quantize(model, method, bits, group_size, format, calibration)` returns a
new Transformer whose block linear layers are quantized objects (linear.py) in the model's
`quantized=` hook; minillm.loaders.save_quantized / load_quantized store such a model in one file.

Calibration activations are captured without touching model.py: a _Recorder placed in `quantized=`
stores the input x of its layer and returns x @ W^T, and raising _Stop once a group's inputs are
recorded ends the forward pass early. Methods:
  rtn   round to nearest in the chosen format (ggml formats use calibration, when given, as an
        importance matrix: mean x^2 per input channel, as llama.cpp's imatrix);
  gptq  true-sequential GPTQ: block by block, and inside a block in execution order (q,k,v -> o ->
        gate,up -> down), each group's inputs are captured through the layers already quantized;
  awq   per block, scales searched on the float model and folded into the preceding norm or linear,
        optional clipping search, then round to nearest.
The token embedding and the LM head stay float32 (the head of a tied GPT-2 *is* the embedding),
unless quantize(..., head=True) asks for the head too.
"""
import numpy as np

from ..model import Transformer
from . import awq, gptq
from .formats import GGML_BLOCKS, NF4_BLOCK, pack_int4
from .ggml_quants import QUANTIZERS, quantize_blocks
from .linear import GGMLLinear, Int4Linear, Int8Linear
from .llm_int8 import quantize_llm_int8
from .nf4 import quantize_nf4
from .rtn import GROUP_SIZES, quantize_int4, quantize_int8

METHODS = ("rtn", "gptq", "awq")
FORMATS = ("int8", "int4", "nf4", "llm_int8") + tuple(QUANTIZERS)   # the ggml types minillm writes


class _Stop(Exception):
    """Raised by a recorder once every input the caller needs has been captured."""


class _Recorder:
    """Stands in for a linear layer: keeps its input rows, returns the float result."""

    def __init__(self, w, group):
        self.w, self.shape, self.group, self.x = w, w.shape, group, None

    def matmul(self, x):  # (M, K) -> (M, N)
        self.x = np.array(x, dtype=np.float32)
        if all(r.x is not None for r in self.group):
            raise _Stop
        return x @ self.w.T


def _capture(cfg, params, quantized, names, tokens):
    """Inputs (n, K) of the linears `names` when the model runs on the calibration tokens, with the
    layers in `quantized` already quantized and everything else float."""
    group = []
    for name in names:
        group.append(_Recorder(params[name], group))
    model = Transformer(cfg, params=params, quantized={**quantized, **dict(zip(names, group))})
    try:
        model.forward(tokens)
    except _Stop:
        pass
    return {name: r.x for name, r in zip(names, group)}


def _block_groups(cfg, n):
    """Linear groups of one block in execution order, each with what produces their shared input:
    ("norm", w, b) | ("rows", w, b, row slice) | None (not foldable)."""
    if cfg.arch == "llama":
        v_prev = ("rows", n["v.w"], None, slice(None)) if cfg.n_kv_head == cfg.n_head else None
        return [([n["q.w"], n["k.w"], n["v.w"]], ("norm", n["ln1.w"], None)),
                ([n["o.w"]], v_prev),
                ([n["gate.w"], n["up.w"]], ("norm", n["ln2.w"], None)),
                ([n["down.w"]], ("rows", n["up.w"], None, slice(None)))]
    C = cfg.d_model
    return [([n["qkv.w"]], ("norm", n["ln1.w"], n["ln1.b"])),
            ([n["o.w"]], ("rows", n["qkv.w"], n["qkv.b"], slice(2 * C, 3 * C))),
            ([n["up.w"]], ("norm", n["ln2.w"], n["ln2.b"])),
            ([n["down.w"]], None)]                       # GELU sits between c_fc and c_proj


def _fold(params, prev, s):
    """Divide the producer of a group's input by s (K,), so x becomes x / s."""
    if prev[0] == "norm":
        _, w, b = prev
        params[w] = (params[w] / s).astype(np.float32)
        if b is not None:
            params[b] = (params[b] / s).astype(np.float32)
    else:
        _, w, b, rows = prev
        W = params[w].copy()
        W[rows] /= s[:, None]
        params[w] = W.astype(np.float32)
        if b is not None:
            B = params[b].copy()
            B[rows] /= s
            params[b] = B.astype(np.float32)


def _fake_quant(fmt, group_size, bits=4):
    """w -> dequantize(quantize(w)) in format fmt: what AWQ's searches measure."""
    return lambda w: _build(fmt, w, group_size, bits=bits).dequantize()


def fits(fmt, K, group_size):
    """Whether a row of K weights can be stored in fmt (block formats need K % block == 0)."""
    need = {"int4": group_size, "nf4": NF4_BLOCK, **{f: bs for f, (_, bs) in GGML_BLOCKS.items()}}
    return K % need.get(fmt, 1) == 0


def _build(fmt, w, group_size, x=None, bits=4):
    """The quantized linear of weight w (N, K) in format fmt, by round to nearest. x (n, K): the
    layer's calibration inputs (LLM.int8 outlier columns, ggml importance matrix) or None;
    bits: the int4 format's grid (4, or 3 for INT3 codes in the same nibbles).
    A layer whose K the format's blocks do not divide falls back to INT8 (as llama.cpp falls back
    to another type for such rows)."""
    if fmt == "int8" or not fits(fmt, w.shape[1], group_size):
        return Int8Linear(*quantize_int8(w))
    if fmt == "int4":
        return Int4Linear(*quantize_int4(w, group_size, bits), group_size)
    if fmt == "nf4":
        return quantize_nf4(w)
    if fmt == "llm_int8":
        return quantize_llm_int8(w, x)
    imatrix = None if x is None else np.mean(np.square(x, dtype=np.float32), axis=0)
    return GGMLLinear(fmt, quantize_blocks(w, fmt, imatrix=imatrix))


def _check_args(model, method, bits, group_size, fmt, calibration):
    if not isinstance(model, Transformer):
        raise TypeError(f"model: expected a minillm Transformer, got {type(model).__name__}")
    if model.quantized:
        raise ValueError("model: is already quantized")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if fmt is None:
        if bits not in (3, 4, 8):
            raise ValueError(f"bits: expected 3, 4 or 8, got {bits!r}")
        fmt = {8: "int8", 4: "int4", 3: "int4"}[bits]
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {fmt!r}")
    if bits == 3 and fmt != "int4":
        raise ValueError(f"bits: 3 is the int4 format's INT3 grid only, got format {fmt!r}")
    if fmt == "int4" and group_size not in GROUP_SIZES:
        raise ValueError(f"group_size: expected one of {GROUP_SIZES}, got {group_size!r}")
    if method == "gptq" and fmt not in ("int8", "int4"):
        raise ValueError(f"format: GPTQ quantizes to the int8/int4 grids, got {fmt!r}")
    if method == "awq" and fmt == "llm_int8":
        raise ValueError("format: AWQ does not apply to LLM.int8 (activations are quantized too)")
    if method in ("gptq", "awq") and calibration is None:
        raise ValueError(f"calibration: method {method!r} needs calibration tokens (B, T)")
    tokens = None
    if calibration is not None:
        tokens = np.asarray(calibration)
        tokens = tokens[None, :] if tokens.ndim == 1 else tokens
        if tokens.ndim != 2 or tokens.dtype.kind not in "iu" or tokens.size == 0:
            raise ValueError(f"calibration: expected a non-empty int array (B, T), got {tokens.shape} {tokens.dtype}")
    return fmt, tokens


def quantize(model, method="rtn", bits=8, group_size=128, format=None, calibration=None, *,
             act_order=False, damp=0.01, awq_clip=True, head=False, progress=None):
    """A new Transformer whose block linears run quantized kernels; model is left unchanged.
    method "rtn" | "gptq" | "awq"; format None means "int8" (bits=8) or "int4" (bits=4, or 3: codes
    0..7 in the same nibbles), else one of FORMATS; group_size: INT4 group (32, 64, 128); calibration: token ids (B, T) (needed by gptq and
    awq; optional for rtn: LLM.int8 outlier columns, ggml importance matrix). progress(i, total, name)
    is called after each layer is quantized. head=True also quantizes the LM head by round to nearest
    in the same format (a tied head: the embedding lookup keeps reading the float32 table), as a
    self-speculation draft wants: the head is a fifth of a 135M model's weights."""
    fmt, tokens = _check_args(model, method, bits, group_size, format, calibration)
    bits = 3 if bits == 3 else 4                   # from here on: the int4 format's grid
    cfg = model.config
    params = dict(model.params)                    # arrays are replaced, never modified in place
    quantized = {}
    blocks = [_block_groups(cfg, n) for n in model.layer_names]
    total = sum(len(names) for groups in blocks for names, _ in groups)

    def done(name, obj):
        quantized[name] = obj
        if progress is not None:
            progress(len(quantized), total, name)

    if method == "rtn":
        xs = {}
        if tokens is not None and fmt not in ("int8", "int4", "nf4"):
            every = [name for groups in blocks for names, _ in groups for name in names]
            xs = _capture(cfg, params, {}, every, tokens)
        for groups in blocks:
            for names, _ in groups:
                for name in names:
                    done(name, _build(fmt, params[name], group_size, xs.get(name), bits))
    elif method == "gptq":
        bits_g = 8 if fmt == "int8" else bits
        for groups in blocks:
            for names, _ in groups:
                xs = _capture(cfg, params, quantized, names, tokens)
                for name in names:
                    if not fits(fmt, params[name].shape[1], group_size):
                        done(name, _build(fmt, params[name], group_size))
                        continue
                    H = gptq.hessian(xs[name])
                    q, s, z = gptq.gptq_fast(params[name], H, bits_g, group_size, act_order, damp)
                    done(name, Int8Linear(q, s) if bits_g == 8 else Int4Linear(pack_int4(q), s, z, group_size))
    else:  # awq
        fq = _fake_quant(fmt, group_size, bits)
        for groups in blocks:
            for names, prev in groups:
                xs = _capture(cfg, params, {}, names, tokens)
                X = xs[names[0]]
                if prev is not None:
                    s, _, _ = awq.search_scales([params[m] for m in names], X, fq)
                    _fold(params, prev, s)
                    for m in names:
                        params[m] = (params[m] * s[None, :]).astype(np.float32)
                    X = X / s[None, :]
                if awq_clip and fmt == "int4" and fits(fmt, X.shape[1], group_size):
                    for m in names:
                        params[m] = awq.search_clip(params[m], X, fq, group_size)
            for names, _ in groups:
                for name in names:
                    done(name, _build(fmt, params[name], group_size, bits=bits))
    if head:
        quantized[model.head_weight] = _build(fmt, params[model.head_weight], group_size, bits=bits)
    kept = {k: v for k, v in params.items() if k not in quantized or (head and k == model.head_weight
                                                                       and cfg.tie_embeddings)}
    return Transformer(cfg, params=kept, quantized=quantized)


# ------------------------------------------------------------------ size
def weight_bytes(model):
    """Bytes of all of a (partly) quantized model's weights as stored: the float params plus the
    quantized layers' packed codes, scales and zero points (what a quantized checkpoint holds)."""
    return int(sum(a.nbytes for a in model.params.values()) + sum(q.nbytes for q in model.quantized.values()))


__all__ = ["quantize", "weight_bytes", "fits", "METHODS", "FORMATS"]
