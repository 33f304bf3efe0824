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


def _dispatch(name):
    ref = getattr(reference, name)
    nat = getattr(native, name, None) if _USE_NATIVE else None
    if nat is None:
        return ref

    def kernel(*args):
        return nat(*args) if _fits(args) else ref(*args)

    kernel.__name__ = name
    kernel.__doc__ = ref.__doc__
    return kernel


KERNELS = ["matmul", "attention_forward", "attention_backward", "attention_decode",
           "layernorm_forward", "layernorm_backward", "rmsnorm_forward", "rmsnorm_backward",
           "gelu_forward", "gelu_backward", "swiglu_forward", "swiglu_backward", "rope",
           "cross_entropy", "adamw_step"]
for _name in KERNELS:
    globals()[_name] = _dispatch(_name)
del _name

# decode_step (csrc/decode.c: one token through every block in one parallel region) has no NumPy
# twin here: its reference is the model's own block-by-block path (Transformer._block_forward with a
# KV cache), which the model takes whenever this is None or the model does not fit it.
decode_step = native.decode_step if _USE_NATIVE else None

# matmul: the reference *is* numpy's BLAS (np.matmul(x, w.T), OpenBLAS 0.3.31), so "native when
# it fits" is not the fast choice everywhere. out (M, N) = x (M, K) @ w (N, K)^T:
#   M >= 4 (training, prefill, batched decode): BLAS. On the Zen 4 box (single-thread CPU time,
#       min of repeats) C reached 56-80 GF/s vs BLAS 59-84 GF/s at M = 1024, 2048, and BLAS was
#       1.2-2x faster at M = 4 .. 32 ((4, 768, 3072): 0.84 vs 1.76 ms).
#   M = 2, 3: C 1.05-1.44x faster, e.g. (3, 768, 3072) 1.44 vs 2.05 ms (OpenBLAS is slower at 2-3
#       rows than at 4 here).
#   M = 1 (decode GEMV, memory-bound): C, since the AVX2 dot tile of csrc/matmul.c. With weights
#       streamed from DRAM both read 19-24 GB/s on 2 threads (a quiet AVX2 box, 768 x 3072 up to
#       50257 x 768). But a decode step alternates GEMVs with small C kernels, and when the two
#       cores are also busy with other work, handing each GEMV to OpenBLAS's own thread pool
#       collapsed: a Llama-134M decode step took 670 ms through BLAS vs 53 ms through the C kernel
#       on the same loaded machine (interleaved runs). One OpenMP pool for the whole step avoids it.
# Re-measure with examples/bench_kernels.py on a new machine.
_MATMUL_NATIVE_M = (1, 2, 3)


def matmul(out, x, w):
    """out (M, N) = x (M, K) @ w (N, K)^T, by whichever of the C kernel and BLAS is faster for
    this shape (see the measurements above)."""
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


__all__ = ["backend", "reference", "native", "matmul_group"] + KERNELS
