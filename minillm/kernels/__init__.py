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

__all__ = ["backend", "reference", "native"] + KERNELS
