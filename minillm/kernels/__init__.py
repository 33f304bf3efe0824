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


def _fits(args):
    for a in args:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and (
                a.dtype != np.float32 or not a.flags.c_contiguous):
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

# matmul: the reference *is* numpy's BLAS (np.matmul(x, w.T), OpenBLAS), so "native when it fits"
# would not be the fast choice everywhere. Measured with examples/bench_kernels.py (2 threads,
# Zen 4, min of repeats, out = x (M, K) @ w (N, K)^T):
#   M = 2048 / 1024 (training, prefill): C 90-126 GF/s vs BLAS 103-140 GF/s -> BLAS, 1.1-1.5x
#   M = 1 (decode GEMV, K 768-3072, N 768-3072): C 0.10-0.35 ms vs BLAS 0.07-0.27 ms -> BLAS
#   M = 2..4 (a few sequences decoding, draft verification): e.g. (2, 768, 3072) C 0.33 ms vs
#   BLAS 0.87 ms, (4, 768, 3072) C 0.68-0.91 ms vs BLAS 0.80-1.08 ms -> C
#   M = 8..64: BLAS 1.7-4x (our unpacked path runs out of registers, the packed one pays for
#   packing w)
# Hence: the C kernel for 2 <= M <= 4, BLAS otherwise.
_MATMUL_NATIVE_M = range(2, 5)


def matmul(out, x, w):
    """out (M, N) = x (M, K) @ w (N, K)^T, by whichever of the C kernel and BLAS is faster for
    this shape (see the measurements above)."""
    if (_USE_NATIVE and isinstance(x, np.ndarray) and x.ndim == 2
            and x.shape[0] in _MATMUL_NATIVE_M and _fits((out, x, w))):
        native.matmul(out, x, w)
    else:
        reference.matmul(out, x, w)

__all__ = ["backend", "reference", "native"] + KERNELS
