"""Kernel dispatch. `minillm.kernels.<name>(...)` runs the native C kernel (csrc/, via native.py)
when the extension is built and the inputs fit it (every floating array float32 and C-contiguous),
else the NumPy reference of the same name (reference.py). MINILLM_KERNELS=numpy forces the
references; backend() says which is in use. The float64 gradient checks therefore run the references.
"""
import os
import warnings

import numpy as np

from . import native, reference

_FORCED_NUMPY = os.environ.get("MINILLM_KERNELS", "").lower() == "numpy"
if native.lib is None and not _FORCED_NUMPY:
    warnings.warn("minillm: native kernels not built (no C compiler?); using NumPy reference kernels",
                  RuntimeWarning, stacklevel=2)
_USE_NATIVE = native.lib is not None and not _FORCED_NUMPY


def backend():
    """'native' when C kernels are in use, 'numpy' when the references are."""
    return "native" if _USE_NATIVE else "numpy"


def cpu_features():
    """The C kernels' variant and the CPU's features: native.cpu_features() (csrc/isa.h)."""
    return native.cpu_features()


_F32 = np.dtype(np.float32)


def _fits(args):
    """Every floating array is float32 and C-contiguous (integer arrays, scalars: anything)."""
    for a in args:
        if isinstance(a, np.ndarray):
            if a.dtype == _F32:
                if not a.flags.c_contiguous:
                    return False
            elif a.dtype.kind == "f":
                return False
    return True


def _pick(name):
    """The native kernel `name` when the C kernels are in use and have it, else None."""
    return getattr(native, name, None) if _USE_NATIVE else None


_NATIVE = {name: _pick(name) for name in (
    "attention_forward", "attention_backward", "attention_decode", "paged_attention_decode",
    "layernorm_forward", "layernorm_backward", "rmsnorm_forward", "rmsnorm_backward", "gelu_forward",
    "gelu_backward", "swiglu_forward", "swiglu_backward", "rope", "cross_entropy", "adamw_step",
    "sum_squares")}


def _run(name, args):
    """The native kernel when it exists and every floating argument fits it, else the reference."""
    nat = _NATIVE[name]
    if nat is not None and _fits(args):
        return nat(*args)
    return getattr(reference, name)(*args)


# Each dispatcher has the signature and meaning of the reference of the same name (reference.py).
def attention_forward(out, lse, q, k, v, scale, bias=None):
    """reference.attention_forward; a biased call (ALiBi) always runs the reference."""
    if bias is not None:
        return reference.attention_forward(out, lse, q, k, v, scale, bias)
    return _run("attention_forward", (out, lse, q, k, v, scale))


def attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale, bias=None):
    """reference.attention_backward; a biased call (ALiBi) always runs the reference."""
    if bias is not None:
        return reference.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale, bias)
    return _run("attention_backward", (dq, dk, dv, dout, q, k, v, out, lse, scale))


def attention_decode(out, q, k_cache, v_cache, lengths, scale):
    return _run("attention_decode", (out, q, k_cache, v_cache, lengths, scale))


def paged_attention_decode(out, q, k_pages, v_pages, block_tables, lengths, scale):
    return _run("paged_attention_decode", (out, q, k_pages, v_pages, block_tables, lengths, scale))


def layernorm_forward(y, mean, rstd, x, w, b, eps):
    return _run("layernorm_forward", (y, mean, rstd, x, w, b, eps))


def layernorm_backward(dx, dw, db, dy, x, w, mean, rstd):
    return _run("layernorm_backward", (dx, dw, db, dy, x, w, mean, rstd))


def rmsnorm_forward(y, rstd, x, w, eps):
    return _run("rmsnorm_forward", (y, rstd, x, w, eps))


def rmsnorm_backward(dx, dw, dy, x, w, rstd):
    return _run("rmsnorm_backward", (dx, dw, dy, x, w, rstd))


def gelu_forward(y, x):
    return _run("gelu_forward", (y, x))


def gelu_backward(dx, dy, x):
    return _run("gelu_backward", (dx, dy, x))


def swiglu_forward(y, a, b):
    return _run("swiglu_forward", (y, a, b))


def swiglu_backward(da, db, dy, a, b):
    return _run("swiglu_backward", (da, db, dy, a, b))


def rope(out, x, cos, sin):
    return _run("rope", (out, x, cos, sin))


def cross_entropy(loss, dlogits, logits, targets, z_loss, grad_scale):
    return _run("cross_entropy", (loss, dlogits, logits, targets, z_loss, grad_scale))


def adamw_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step, grad_scale=1.0):
    return _run("adamw_step", (p, g, m, v, lr, beta1, beta2, eps, weight_decay, step, grad_scale))


def sum_squares(x):
    """sum of x**2 in float64 precision (reference.sum_squares)."""
    return _run("sum_squares", (x,))


KERNELS = ["matmul", *_NATIVE]

# decode_step (csrc/decode.c: one token through every block in one parallel region). Its NumPy
# reference (reference.decode_step) is composed of the per-operation references and is what the
# tests compare it with; the model's decode path (inference/decode.py) takes the block-by-block
# route whenever this is None or the model does not fit it.
decode_step = native.decode_step if _USE_NATIVE else None
# paged_step (the same region for M tokens of several sequences over a paged cache: the serving
# engine's step); reference.paged_step is its composition of references. None: the engine runs
# its block-by-block forward.
paged_step = native.paged_step if _USE_NATIVE else None
# StepWeights: paged_step's checked weight tables, built once per model (inference/decode.py keeps one)
StepWeights = native.StepWeights if _USE_NATIVE else None
# DecodeLoop: one sequence's decode steps with the weights, cache, embeddings and RoPE rows converted
# once (inference.decode.native_decoder builds one per generation)
DecodeLoop = native.DecodeLoop if _USE_NATIVE else None

# matmul: the reference *is* numpy's BLAS (np.matmul(x, w.T)), so "native when it fits" is not the
# fast choice everywhere. out (M, N) = x (M, K) @ w (N, K)^T:
#   M >= 4 (training, prefill, batched decode): BLAS. Its packed, blocked GEMM reuses each loaded
#       block of w across many rows of x; the C kernel is about as fast at large M and loses at
#       small M, where BLAS's packing still pays off and the C row loop does not.
#   M = 2, 3: the C kernel: OpenBLAS's small-M path is slower here than a direct dot-product tile.
#   M = 1 (decode GEMV, memory-bound): the C kernel. Both stream the weights from DRAM at the same
#       rate on a quiet machine, but a decode step alternates GEMVs with small C kernels, and handing
#       each GEMV to OpenBLAS's own thread pool makes two thread pools take turns on the same cores:
#       on a loaded machine the two pools stall each other for whole scheduler slices. One OpenMP
#       pool for the whole step avoids it.
# The measured crossover figures are in README's benchmark section; re-measure with
# examples/bench_kernels.py on a new machine.
_MATMUL_NATIVE_M = (1, 2, 3)


def matmul(out, x, w):
    """out (M, N) = x (M, K) @ w (N, K)^T, by whichever of the C kernel and BLAS is faster for
    this shape (see _MATMUL_NATIVE_M above)."""
    if (_USE_NATIVE and isinstance(x, np.ndarray) and x.ndim == 2
            and x.shape[0] in _MATMUL_NATIVE_M and _fits((out, x, w))):
        native.matmul(out, x, w)
    else:
        reference.matmul(out, x, w)


def matmul_group(outs, x, ws):
    """outs[i] (M, N_i) = x (M, K) @ ws[i] (N_i, K)^T: the projections of a layer that read the
    same input. Where matmul would take the C kernel (decode), the whole group runs in one
    parallel region; elsewhere it is one matmul per weight."""
    if (_USE_NATIVE and isinstance(x, np.ndarray) and x.ndim == 2
            and x.shape[0] in _MATMUL_NATIVE_M and _fits((x, *outs, *ws))):
        native.matmul_group(outs, x, ws)
    else:
        if len(outs) != len(ws):
            raise ValueError(f"matmul_group: {len(outs)} outputs for {len(ws)} weights")
        for out, w in zip(outs, ws):
            matmul(out, x, w)


__all__ = ["backend", "cpu_features", "reference", "native", "matmul_group"] + KERNELS
