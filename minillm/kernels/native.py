"""cffi wrappers around the C kernels in csrc/, one per function of reference.py, same arguments.

C code never trusts its caller: every wrapper checks dtype, contiguity and shapes first (via _f32 and
_check) and raises ValueError/TypeError, so a kernel never reads or writes out of bounds.
`lib` is None when the extension was not built; kernels/__init__.py then uses the references.
"""
import numpy as np

try:
    from minillm._native import ffi, lib
except ImportError:  # no compiler at install time, or a source checkout that was never built
    ffi = lib = None


def _f32(a, name="array"):
    """A float* to a float32 C-contiguous array, or a clear error."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"{name}: expected float32, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    return ffi.cast("float*", a.ctypes.data)


def _i32(a, name="array"):
    """An int32_t* to an int32 C-contiguous array (callers convert first), or a clear error."""
    if not isinstance(a, np.ndarray) or a.dtype != np.int32 or not a.flags.c_contiguous:
        raise TypeError(f"{name}: expected a C-contiguous int32 array")
    return ffi.cast("int32_t*", a.ctypes.data)


def _check(cond, msg):
    if not cond:
        raise ValueError(msg)


def adamw_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
    _check(p.shape == g.shape == m.shape == v.shape,
           f"adamw_step: p, g, m, v must share a shape, got {p.shape}, {g.shape}, {m.shape}, {v.shape}")
    _check(int(step) >= 1, f"adamw_step: step must be >= 1, got {step}")
    lib.adamw_step(_f32(p, "p"), _f32(g, "g"), _f32(m, "m"), _f32(v, "v"), p.size, float(lr),
                   float(beta1), float(beta2), float(eps), float(weight_decay), int(step))
