"""cffi wrappers around the C kernels in csrc/, one per function of reference.py, same arguments.

C code never trusts its caller: every wrapper checks dtype, contiguity and shapes first (via f32,
pointer and _check) and raises ValueError/TypeError, so a kernel never reads or writes out of bounds.
`lib` is None when the extension was not built; kernels/__init__.py then uses the references.
`pointer` and `f32` are how every binding of the package (quant/_native.py, inference/_native.py,
tokenizer/_native_bpe.py too) hands an array to C.
"""
import os
import platform
import weakref
from typing import Callable, NamedTuple

import numpy as np

from .arith import ceil_div

# The C kernels' OpenMP threads and OpenBLAS's threads take turns every layer. With OpenMP's default
# (spin for a while after each parallel region), idle-spinning kernel threads starve the BLAS
# threads of the 2 cores and vice versa: decode of the 124M model measured 6.7 tok/s instead of
# 27, and a tiny training step 0.34 s instead of 0.17 s. Sleeping at once costs microseconds per
# region. Must be set before libgomp loads with the extension; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# MINILLM_ISA picks the kernel variant the extension runs (csrc/isa.h: avx512, avx2, generic; auto,
# the default, is the best this CPU has). The extension reads it once, when it loads.
ISA_CHOICES = ("auto", "avx512", "avx2", "generic")
_ISA_REQUEST = os.environ.get("MINILLM_ISA", "auto").lower() or "auto"
if _ISA_REQUEST not in ISA_CHOICES:
    raise ValueError(f"MINILLM_ISA: expected one of {', '.join(ISA_CHOICES)}, got {_ISA_REQUEST!r}")
os.environ["MINILLM_ISA"] = _ISA_REQUEST

try:
    from minillm._native import ffi, lib
except ImportError:  # no compiler at install time, or a source checkout that was never built
    ffi = lib = None

# bit i of lib.isa_cpu_features() (the order of csrc/isa.c's cpu_features)
ISA_FEATURE_NAMES = ("sse4.2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512dq",
                     "avx512vl", "avx512cd", "avx512vnni", "avx512bf16", "amx-tile", "x86-64-v3",
                     "x86-64-v4")


def cpu_model():
    """The CPU's model name (/proc/cpuinfo on Linux, else platform.processor()), for benchmark tables."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_features():
    """{'isa': the kernel variant in use ('avx512', 'avx2', 'generic'; 'native' for a single-variant
    build; None without the extension), 'requested': MINILLM_ISA, 'features': the CPU's features
    among ISA_FEATURE_NAMES, 'cpu': cpu_model()}."""
    if lib is None:
        return {"isa": None, "requested": _ISA_REQUEST, "features": [], "cpu": cpu_model()}
    mask = lib.isa_cpu_features()
    return {"isa": ffi.string(lib.isa_selected()).decode(), "requested": _ISA_REQUEST,
            "features": [n for i, n in enumerate(ISA_FEATURE_NAMES) if mask >> i & 1], "cpu": cpu_model()}


_F32, _I32 = np.dtype(np.float32), np.dtype(np.int32)
# the C element type of each NumPy dtype a kernel takes
_CTYPES = {np.dtype(t): c for t, c in ((np.float32, "float"), (np.int32, "int32_t"), (np.int64, "int64_t"),
                                       (np.uint8, "uint8_t"), (np.int8, "int8_t"))}


def pointer(a, dtype, name="array", writable=False):
    """A C pointer to a C-contiguous numpy array of `dtype` (float32, int32, int64, uint8, int8), or
    a TypeError naming the argument. The pointer keeps a's buffer alive while it lives. writable=True
    for an array the C code writes: a read-only one (a memory-mapped file, a frozen view) is then a
    ValueError instead of a write into protected pages (SIGSEGV).

    ffi.from_buffer takes the pointer through the buffer protocol in ~0.3 us; the more familiar
    ffi.cast("float*", a.ctypes.data) builds a ctypes object first and costs ~2 us, which a decode
    step (a dozen kernels per layer per token) would pay for every array."""
    dtype = np.dtype(dtype)
    if not isinstance(a, np.ndarray) or a.dtype != dtype:
        raise TypeError(f"{name}: expected a C-contiguous {dtype} array, got "
                        f"{type(a).__name__} {getattr(a, 'dtype', '')}")
    if writable and not a.flags.writeable:
        raise ValueError(_READ_ONLY.format(name))
    try:        # numpy exports a plain buffer only for C-contiguous arrays: that is the check
        return ffi.from_buffer(_CTYPES[dtype] + "[]", a)
    except ValueError:
        raise TypeError(f"{name}: expected a C-contiguous {dtype} array") from None


def f32(a, name="array", shape=None, writable=False):
    """pointer(a, float32, name, writable) with a's `shape` checked too (see _shape; None entries
    match anything), and a ValueError for a non-contiguous array. Decode calls a dozen kernels per layer per token,
    so the hot wrappers validate each array with this one call, and its success path stays inline
    (about 0.6 us per array) instead of calling pointer."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected numpy.ndarray, got {type(a).__name__}")
    if shape is not None:
        have = a.shape
        if len(have) != len(shape):
            _shape(a, name, shape)                                        # raises
        for s, t in zip(shape, have):
            if s is not None and s != t:
                _shape(a, name, shape)                                    # raises
    if a.dtype != _F32:
        raise TypeError(f"{name}: expected float32, got {a.dtype}")
    if writable and not a.flags.writeable:
        raise ValueError(_READ_ONLY.format(name))
    try:        # numpy exports a plain buffer only for C-contiguous arrays: that is the check
        return ffi.from_buffer("float[]", a)
    except ValueError:
        raise ValueError(f"{name}: expected a C-contiguous array") from None


_READ_ONLY = ("{}: expected a writable array (the kernel writes it), got a read-only one (a memory-mapped "
              "file opened read-only? copy it first: np.array(a))")


def apart(outs, ins):
    """ins with every input that overlaps an output replaced by a copy: a C kernel reads its inputs
    while it writes its outputs, so an input sharing memory with an output (out=x, or a shifted view)
    would be read after it was overwritten, where the NumPy references (which buffer overlapping
    operands) are right. outs and ins map names to arrays; outputs that overlap each other are a
    ValueError (no order of writes makes that well defined). Costs ~0.3 us per pair."""
    o = [(n, a) for n, a in outs.items() if isinstance(a, np.ndarray)]
    for i, (n1, a1) in enumerate(o):
        for n2, a2 in o[i + 1:]:
            _check(not np.may_share_memory(a1, a2), f"{n1}, {n2}: outputs must not share memory")
    return [np.array(a) if isinstance(a, np.ndarray) and any(np.may_share_memory(a, b) for _, b in o) else a
            for a in ins.values()]


def _check(cond, msg):
    if not cond:
        raise ValueError(msg)


_F16 = np.dtype(np.float16)


def kv_pages(k, v, k_name, v_name, shape):
    """A step's K and V cache arrays: both float32 or both float16 (IEEE half, the cache llama.cpp
    keeps by default), C-contiguous, writable, of `shape` (None entries match anything; v must match
    k's). Returns (float* to k, float* to v, kv_f16): float16 pages are passed as float* and read
    as float16 by the C step when kv_f16 is 1."""
    if not isinstance(k, np.ndarray) or k.dtype != _F16:
        pk = f32(k, k_name, shape, True)
        return pk, f32(v, v_name, k.shape, True), 0
    _check(isinstance(v, np.ndarray) and v.dtype == _F16,
           f"{v_name}: expected float16 like {k_name}, got {getattr(v, 'dtype', type(v).__name__)}")
    ptrs = []
    for a, name, want in ((k, k_name, shape), (v, v_name, k.shape)):
        _shape(a, name, want)
        _check(a.flags.writeable, _READ_ONLY.format(name))
        _check(a.flags.c_contiguous, f"{name}: expected a C-contiguous array")
        ptrs.append(ffi.cast("float*", ffi.from_buffer("uint16_t[]", a)))
    return ptrs[0], ptrs[1], 1


def adamw_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step, grad_scale=1.0):
    _check(p.shape == g.shape == m.shape == v.shape,
           f"adamw_step: p, g, m, v must share a shape, got {p.shape}, {g.shape}, {m.shape}, {v.shape}")
    _check(int(step) >= 1, f"adamw_step: step must be >= 1, got {step}")
    g, = apart({"p": p, "m": m, "v": v}, {"g": g})
    lib.adamw_step(f32(p, "p", None, True), f32(g, "g"), f32(m, "m", None, True), f32(v, "v", None, True),
                   p.size, float(lr), float(beta1), float(beta2), float(eps), float(weight_decay), int(step),
                   _scalar(grad_scale, "grad_scale"))


# ------------------------------------------------------------------------------------ validation
def sum_squares(x):
    return float(lib.sum_squares(f32(x, "x"), x.size))


def _shape(a, name, shape):
    """a.shape must equal shape; entries that are None match anything."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected numpy.ndarray, got {type(a).__name__}")
    have = a.shape
    if len(have) == len(shape):
        for s, t in zip(shape, have):
            if s is not None and s != t:
                break
        else:
            return
    dims = ["?" if s is None else str(s) for s in shape]
    # printed as Python prints tuples: (3,) and (2, 3)
    want = f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"
    raise ValueError(f"{name}: expected shape {want}, got {a.shape}")


def _int_array(a, name, shape):
    """a as an integer numpy array of the given shape (callers range-check, then convert)."""
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got {a.dtype}")
    _shape(a, name, shape)
    return a


def _scalar(x, name):
    """float(x) for a real number (Python or NumPy scalar, or a 0-d array), else TypeError."""
    if type(x) is float or type(x) is int:                      # the common case, without numpy
        return float(x)
    a = np.asarray(x) if not isinstance(x, (str, bytes)) else None
    if a is None or a.ndim != 0 or a.dtype.kind not in "iuf":     # rejects bool, complex, text
        raise TypeError(f"{name}: expected a real number, got {x!r}")
    return float(a)


# ------------------------------------------------------------------------------------ matmul
def matmul(out, x, w):  # (M, N) <- (M, K), (N, K)
    x, w = apart({"out": out}, {"x": x, "w": w})
    px = f32(x, "x", (None, None))
    M, K = x.shape
    pw = f32(w, "w", (None, K))
    N = w.shape[0]
    lib.matmul(f32(out, "out", (M, N), True), px, pw, M, K, N)


def matmul_group(outs, x, ws):  # [(M, N_i)] <- (M, K), [(N_i, K)]
    px = f32(x, "x", (None, None))
    M, K = x.shape
    if not isinstance(outs, (list, tuple)) or not isinstance(ws, (list, tuple)) or len(outs) != len(ws):
        raise ValueError("matmul_group: outs and ws must be lists of the same length")
    x, *ws = apart({f"outs[{i}]": o for i, o in enumerate(outs)},
                   {"x": x, **{f"ws[{i}]": w for i, w in enumerate(ws)}})
    px = f32(x, "x", (None, None))
    # the cdata of from_buffer keeps each array's buffer alive: hold them until the call returns
    pws = [f32(w, f"ws[{i}]", (None, K)) for i, w in enumerate(ws)]
    Ns = [w.shape[0] for w in ws]
    pouts = [f32(o, f"outs[{i}]", (M, N), True) for i, (o, N) in enumerate(zip(outs, Ns))]
    lib.matmul_group(ffi.new("float*[]", pouts), px, ffi.new("float*[]", pws),
                     ffi.new("int64_t[]", Ns), len(ws), M, K)


# ------------------------------------------------------------------------------------ attention
def _attention_shapes(q, k, v, name="attention"):
    """(B, H, Hkv, T, S, D) of q (B, H, T, D), k and v (B, Hkv, S, D), with the GQA and causal
    constraints checked."""
    _shape(q, "q", (None, None, None, None))
    B, H, T, D = q.shape
    _shape(k, "k", (B, None, None, D))
    Hkv, S = k.shape[1], k.shape[2]
    _shape(v, "v", (B, Hkv, S, D))
    _check(Hkv >= 1 and H % Hkv == 0,
           f"{name}: H % Hkv must be 0 (grouped-query attention), got H={H}, Hkv={Hkv}")
    _check(S >= T, f"{name}: need S >= T (keys include every query position), got S={S}, T={T}")
    return B, H, Hkv, T, S, D


def attention_forward(out, lse, q, k, v, scale):
    B, H, Hkv, T, S, D = _attention_shapes(q, k, v, "attention_forward")
    _shape(out, "out", (B, H, T, D))
    _shape(lse, "lse", (B, H, T))
    q, k, v = apart({"out": out, "lse": lse}, {"q": q, "k": k, "v": v})
    lib.attention_forward(f32(out, "out", None, True), f32(lse, "lse", None, True), f32(q, "q"), f32(k, "k"),
                          f32(v, "v"), B, H, Hkv, T, S, D, _scalar(scale, "scale"))


def attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale):
    B, H, Hkv, T, S, D = _attention_shapes(q, k, v, "attention_backward")
    for a, name in ((dq, "dq"), (dout, "dout"), (out, "out")):
        _shape(a, name, (B, H, T, D))
    _shape(dk, "dk", (B, Hkv, S, D))
    _shape(dv, "dv", (B, Hkv, S, D))
    _shape(lse, "lse", (B, H, T))
    dout, q, k, v, out, lse = apart({"dq": dq, "dk": dk, "dv": dv},
                                    {"dout": dout, "q": q, "k": k, "v": v, "out": out, "lse": lse})
    lib.attention_backward(f32(dq, "dq", None, True), f32(dk, "dk", None, True), f32(dv, "dv", None, True),
                           f32(dout, "dout"),
                           f32(q, "q"), f32(k, "k"), f32(v, "v"), f32(out, "out"),
                           f32(lse, "lse"), B, H, Hkv, T, S, D, _scalar(scale, "scale"))


def attention_decode(out, q, k_cache, v_cache, lengths, scale):
    q, k_cache, v_cache = apart({"out": out}, {"q": q, "k_cache": k_cache, "v_cache": v_cache})
    pq = f32(q, "q", (None, None, None))
    B, H, D = q.shape
    pk = f32(k_cache, "k_cache", (B, None, None, D))
    Hkv, Smax = k_cache.shape[1], k_cache.shape[2]
    pv = f32(v_cache, "v_cache", (B, Hkv, Smax, D))
    po = f32(out, "out", (B, H, D), True)
    _check(Hkv >= 1 and H % Hkv == 0,
           f"attention_decode: H % Hkv must be 0 (grouped-query attention), got H={H}, Hkv={Hkv}")
    lengths = _int_array(lengths, "lengths", (B,))
    values = lengths.tolist()             # B is a batch size: Python's min/max beat two reductions
    if values:
        lo, hi = min(values), max(values)
        _check(lo >= 1 and hi <= Smax,
               f"lengths: expected every value in [1, {Smax}] (Smax), got min {lo}, max {hi}")
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)       # range checked: no wrap-around
    lib.attention_decode(po, pq, pk, pv, pointer(lengths, np.int32, "lengths"), B, H, Hkv, Smax, D,
                         _scalar(scale, "scale"))


def check_paged_attention(q, k_pages, v_pages, block_tables, lengths):
    """Validates paged_attention_decode's arguments (for the reference too: a block table pointing
    outside the pool would read garbage there as well); returns block_tables, lengths as arrays."""
    for name, a, nd in (("q", q, 3), ("k_pages", k_pages, 4), ("v_pages", v_pages, 4)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != nd:
            raise TypeError(f"{name}: expected a float32 array with {nd} dims, got "
                            f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    B, H, D = q.shape
    NB, Hkv, bs, Dk = k_pages.shape
    _check(Dk == D and v_pages.shape == k_pages.shape, f"k_pages, v_pages: expected shape (NB, Hkv, bs, {D}) "
           f"each, got {k_pages.shape} and {v_pages.shape}")
    _check(Hkv >= 1 and H % Hkv == 0, f"q: n_head {H} must be a multiple of n_kv_head {Hkv}")
    block_tables, lengths = np.asarray(block_tables), np.asarray(lengths)
    _check(block_tables.ndim == 2 and block_tables.shape[0] == B and block_tables.dtype.kind in "iu",
           f"block_tables: expected an int array ({B}, MB), got {block_tables.dtype} {block_tables.shape}")
    _check(lengths.shape == (B,) and lengths.dtype.kind in "iu",
           f"lengths: expected an int array ({B},), got {lengths.dtype} {lengths.shape}")
    MB = block_tables.shape[1]
    _check(not B or (lengths.min() >= 1 and lengths.max() <= MB * bs),
           f"lengths: expected values in [1, {MB * bs}] (block table width x block size), "
           f"got [{lengths.min() if B else ''}, {lengths.max() if B else ''}]")
    # every block a sequence will read must exist (one vectorised test: this runs once per layer)
    read = np.arange(MB)[None, :] < (lengths[:, None].astype(np.int64) + bs - 1) // bs      # (B, MB)
    bad = read & ((block_tables < 0) | (block_tables >= NB))
    if bad.any():
        b = int(np.argmax(bad.any(axis=1)))
        used = block_tables[b, :ceil_div(int(lengths[b]), bs)]
        raise ValueError(f"block_tables: row {b} points outside [0, {NB}): {used.tolist()}")
    return block_tables, lengths


def paged_attention_decode(out, q, k_pages, v_pages, block_tables, lengths, scale):
    block_tables, lengths = check_paged_attention(q, k_pages, v_pages, block_tables, lengths)
    B, H, D = q.shape
    NB, Hkv, bs, _ = k_pages.shape
    q, k_pages, v_pages = apart({"out": out}, {"q": q, "k_pages": k_pages, "v_pages": v_pages})
    tables = np.ascontiguousarray(block_tables, dtype=np.int32)    # range-checked above
    lens = np.ascontiguousarray(lengths, dtype=np.int32)
    rc = lib.paged_attention_decode(f32(out, "out", (B, H, D), True), f32(q, "q"), f32(k_pages, "k_pages"),
                                    f32(v_pages, "v_pages"), pointer(tables, np.int32, "block_tables"),
                                    pointer(lens, np.int32, "lengths"), B, H, Hkv, NB, bs, tables.shape[1], D,
                                    _scalar(scale, "scale"))
    _check(rc == 0, f"paged_attention_decode: the kernel rejected its arguments (code {rc})")


# ------------------------------------------------------------------------------------ norms
def _rows(x, name="x"):
    _shape(x, name, (None, None))
    return x.shape


def layernorm_forward(y, mean, rstd, x, w, b, eps):
    x, w, b = apart({"y": y, "mean": mean, "rstd": rstd}, {"x": x, "w": w, "b": b})
    px = f32(x, "x", (None, None))
    N, C = x.shape
    lib.layernorm_forward(f32(y, "y", (N, C), True), f32(mean, "mean", (N,), True), f32(rstd, "rstd", (N,), True),
                          px, f32(w, "w", (C,)), f32(b, "b", (C,)), N, C, _scalar(eps, "eps"))


def layernorm_backward(dx, dw, db, dy, x, w, mean, rstd):
    N, C = _rows(x)
    for a, name in ((dx, "dx"), (dy, "dy")):
        _shape(a, name, (N, C))
    for a, name in ((dw, "dw"), (db, "db"), (w, "w")):
        _shape(a, name, (C,))
    _shape(mean, "mean", (N,))
    _shape(rstd, "rstd", (N,))
    dy, x, w, mean, rstd = apart({"dx": dx, "dw": dw, "db": db}, {"dy": dy, "x": x, "w": w, "mean": mean, "rstd": rstd})
    lib.layernorm_backward(f32(dx, "dx", None, True), f32(dw, "dw", None, True), f32(db, "db", None, True),
                           f32(dy, "dy"),
                           f32(x, "x"), f32(w, "w"), f32(mean, "mean"), f32(rstd, "rstd"),
                           N, C)


def rmsnorm_forward(y, rstd, x, w, eps):
    x, w = apart({"y": y, "rstd": rstd}, {"x": x, "w": w})
    px = f32(x, "x", (None, None))
    N, C = x.shape
    lib.rmsnorm_forward(f32(y, "y", (N, C), True), f32(rstd, "rstd", (N,), True), px, f32(w, "w", (C,)),
                        N, C, _scalar(eps, "eps"))


def rmsnorm_backward(dx, dw, dy, x, w, rstd):
    N, C = _rows(x)
    for a, name in ((dx, "dx"), (dy, "dy")):
        _shape(a, name, (N, C))
    _shape(dw, "dw", (C,))
    _shape(w, "w", (C,))
    _shape(rstd, "rstd", (N,))
    dy, x, w, rstd = apart({"dx": dx, "dw": dw}, {"dy": dy, "x": x, "w": w, "rstd": rstd})
    lib.rmsnorm_backward(f32(dx, "dx", None, True), f32(dw, "dw", None, True), f32(dy, "dy"), f32(x, "x"),
                         f32(w, "w"), f32(rstd, "rstd"), N, C)


# ------------------------------------------------------------------------------------ activations
def _same_shape(**arrays):
    """Every array must have the shape of the first (elementwise kernels take any shape)."""
    (first, a0), *rest = arrays.items()
    _shape(a0, first, getattr(a0, "shape", ()))          # raises TypeError for a non-array
    for n, a in rest:
        _shape(a, n, a0.shape)
    return a0.size


def gelu_forward(y, x):
    x, = apart({"y": y}, {"x": x})
    px = f32(x, "x")
    lib.gelu_forward(f32(y, "y", x.shape, True), px, x.size)


def gelu_backward(dx, dy, x):
    n = _same_shape(x=x, dy=dy, dx=dx)
    dy, x = apart({"dx": dx}, {"dy": dy, "x": x})
    lib.gelu_backward(f32(dx, "dx", None, True), f32(dy, "dy"), f32(x, "x"), n)


def swiglu_forward(y, a, b):
    a, b = apart({"y": y}, {"a": a, "b": b})
    pa = f32(a, "a")
    lib.swiglu_forward(f32(y, "y", a.shape, True), pa, f32(b, "b", a.shape), a.size)


def swiglu_backward(da, db, dy, a, b):
    n = _same_shape(a=a, b=b, dy=dy, da=da, db=db)
    dy, a, b = apart({"da": da, "db": db}, {"dy": dy, "a": a, "b": b})
    lib.swiglu_backward(f32(da, "da", None, True), f32(db, "db", None, True), f32(dy, "dy"), f32(a, "a"),
                        f32(b, "b"), n)


# ------------------------------------------------------------------------------------ rope
def rope(out, x, cos, sin):  # (B, H, T, D) <- (B, H, T, D), (T, D/2), (T, D/2)
    x, cos, sin = apart({"out": out}, {"x": x, "cos": cos, "sin": sin})
    px = f32(x, "x", (None, None, None, None))
    B, H, T, D = x.shape
    _check(D % 2 == 0, f"rope: x's last axis D must be even (rotate-half pairs), got D={D}")
    lib.rope(f32(out, "out", (B, H, T, D), True), px, f32(cos, "cos", (T, D // 2)),
             f32(sin, "sin", (T, D // 2)), B * H, T, D)


# ------------------------------------------------------------------------------------ loss
def cross_entropy(loss, dlogits, logits, targets, z_loss, grad_scale):
    N, V = _rows(logits, "logits")
    _check(V >= 1, f"logits: expected at least one class (V >= 1), got shape {logits.shape}")
    _shape(loss, "loss", (N,))
    _shape(dlogits, "dlogits", (N, V))
    targets = _int_array(targets, "targets", (N,))
    if N > 0:
        hi = int(targets.max())
        _check(hi < V, f"targets: expected values < V={V} (negative = ignored), got max {hi}")
    # targets < V <= 2^31 and negatives only mean "ignored": clip so huge negatives cannot wrap
    targets = np.ascontiguousarray(np.maximum(targets, -1), dtype=np.int32)
    if dlogits is logits:     # in place (csrc/loss.c reads each logit before writing its gradient)
        logits, = apart({"loss": loss}, {"logits": logits})
        dlogits = logits
    else:
        logits, = apart({"loss": loss, "dlogits": dlogits}, {"logits": logits})
    lib.cross_entropy(f32(loss, "loss", None, True), f32(dlogits, "dlogits", None, True), f32(logits, "logits"),
                      pointer(targets, np.int32, "targets"), N, V, _scalar(z_loss, "z_loss"),
                      _scalar(grad_scale, "grad_scale"))


# ------------------------------------------------------------------------------------ decode step
# The per-layer tables of decode_step (csrc/decode.h), by the model's role names. GPT-2's fused
# projection takes the q slots ("qkv.w" -> q, "qkv.b" -> q.b) and leaves k and v empty.
DECODE_VECS = ("ln1.w", "ln1.b", "q.b", "k.b", "v.b", "o.b", "ln2.w", "ln2.b", "gate.b", "up.b", "down.b")
DECODE_LINEARS = ("q.w", "k.w", "v.w", "o.w", "gate.w", "up.w", "down.w")


def _decode_shapes(C, Cq, Ckv, F, fused, layernorm):
    """role -> expected shape (None: must be absent) and the roles that must be present."""
    Nq = Cq + 2 * Ckv if fused else Cq
    want = {"ln1.w": (C,), "ln1.b": (C,) if layernorm else None, "ln2.w": (C,),
            "ln2.b": (C,) if layernorm else None, "q.w": (Nq, C), "q.b": (Nq,),
            "k.w": None if fused else (Ckv, C), "v.w": None if fused else (Ckv, C),
            "k.b": None if fused else (Ckv,), "v.b": None if fused else (Ckv,), "o.w": (C, Cq), "o.b": (C,),
            "gate.w": (F, C), "up.w": (F, C), "gate.b": (F,), "up.b": (F,), "down.w": (C, F), "down.b": (C,)}
    required = {"ln1.w", "ln2.w", "q.w", "o.w", "up.w", "down.w"}
    required |= {"ln1.b", "ln2.b"} if layernorm else set()
    required |= set() if fused else {"k.w", "v.w"}
    return want, required


class QuantizedWeight(NamedTuple):
    """A quantized weight W (N, K) as decode_step's decode_linear_t (csrc/decode.h) takes it: the
    format id and pointers of csrc/quant.h. Declared here, filled by minillm.quant._native.Kernel
    once it has validated the arrays behind the pointers and their layout (so the kernels layer
    needs nothing from quant)."""
    N: int                  # output features
    K: int                  # input features
    fmt: int                # format id (csrc/quant.h; quant._native.FMT_ID)
    group_size: int         # weights per scale (int4), else 0
    w: object               # uint8_t*: N rows of packed blocks
    scale: object           # float*, or ffi.NULL
    zero: object            # uint8_t*, or ffi.NULL
    dequantize: Callable    # () -> W (N, K) float32 as the kernel reads it (for the NumPy reference)


def _decode_linear(lin, a, name, shape, keep):
    """Fill the decode_linear_t lin with weight a of shape (N, K): a float32 array, or a
    QuantizedWeight (whose pointers were validated when it was built: here only its shape is
    checked). keep collects the cdata that must outlive the call."""
    if isinstance(a, np.ndarray):
        ptr = f32(a, name, shape)
        lin.w, lin.fmt = ptr, -1
        keep.append(ptr)
        return
    _check(isinstance(a, QuantizedWeight) and (a.N, a.K) == shape,
           f"{name}: expected a float32 array or a QuantizedWeight of shape {shape}, got "
           f"{type(a).__name__} {getattr(a, 'N', None), getattr(a, 'K', None)}")
    lin.w, lin.scale, lin.zero, lin.fmt, lin.group = a.w, a.scale, a.zero, a.fmt, a.group_size
    keep.append(a)


def _ffn_width(layers):
    """F: the rows of layers[0]['up.w'], checked."""
    up = layers[0].get("up.w") if len(layers) else None
    F = getattr(up, "N", None) if not isinstance(up, np.ndarray) else (up.shape[0] if up.ndim == 2 else None)
    _check(isinstance(F, int) and F >= 1, "layers[0]['up.w']: expected a weight of shape (F, C)")
    return F


def _decode_sizes(layers, n_head, Hkv, D, rope_cos, rope_sin, M):
    """H, F and the RoPE pointers (rope tables (M, D/2)) of a step, checked."""
    H = int(n_head)
    n_layers = layers.n_layers if isinstance(layers, StepWeights) else len(layers)
    _check(n_layers >= 1 and Hkv >= 1 and H >= Hkv and H % Hkv == 0,
           f"n_head={H} must be a multiple of the cache's kv heads {Hkv}, with at least one layer")
    F = layers.F if isinstance(layers, StepWeights) else _ffn_width(layers)
    if rope_cos is None and rope_sin is None:
        return H, F, ffi.NULL, ffi.NULL
    _check(D % 2 == 0, f"rope_cos: RoPE needs an even head dim, got D={D}")
    return H, F, f32(rope_cos, "rope_cos", (M, D // 2)), f32(rope_sin, "rope_sin", (M, D // 2))


def _build_tables(layers, C, Cq, Ckv, F, layernorm, keep):
    """decode.h's per-layer tables, checked: the DECODE_VECS float pointers of each layer (the cache
    slots left to the caller) and the decode_linear_t array."""
    vecs, linears = [], ffi.new("decode_linear_t[]", len(layers) * len(DECODE_LINEARS))
    for l, layer in enumerate(layers):
        fused = "qkv.w" in layer
        want, required = _decode_shapes(C, Cq, Ckv, F, fused, layernorm)
        for slot in DECODE_VECS + DECODE_LINEARS:
            role = {"q.w": "qkv.w", "q.b": "qkv.b"}.get(slot, slot) if fused else slot
            a, name = layer.get(role), f"layers[{l}]['{role}']"
            if a is None:
                _check(slot not in required, f"{name}: required, got None")
                if slot in DECODE_VECS:
                    vecs.append(ffi.NULL)
                continue                                  # an empty linear: zeroed by ffi.new
            _check(want[slot] is not None, f"{name}: not used by this model, got an array")
            if slot in DECODE_VECS:
                vecs.append(f32(a, name, want[slot]))
                continue
            _decode_linear(linears[l * len(DECODE_LINEARS) + DECODE_LINEARS.index(slot)], a, name,
                           want[slot], keep)
    return vecs, linears


# Built tables of the last few sets of layers: checking and converting ~400 arrays costs ~2 ms, a
# tenth of a decode step of a 30-layer model. An entry holds its arrays and weights (so none is freed
# or its id reused while the entry lives), keyed by their identities: a parameter replaced by another
# array is a new key; one changed in place keeps its buffer, which is what the pointers address.
# (A caller that runs the same weights step after step builds a StepWeights once instead: then not
# even this key is computed per step.)
_TABLES, _TABLES_KEPT = {}, 4


def _layer_tables(layers, C, Cq, Ckv, F, layernorm):
    """(vecs, linears, refs) of `layers`, built once per set of arrays (_TABLES)."""
    key = (C, Cq, Ckv, F, bool(layernorm), len(layers),
           tuple((role, id(a)) for layer in layers for role, a in layer.items()))
    entry = _TABLES.get(key)
    if entry is None:
        refs = []
        vecs, linears = _build_tables(layers, C, Cq, Ckv, F, layernorm, refs)
        entry = (vecs, linears, refs, [a for layer in layers for a in layer.values()])
        while len(_TABLES) >= _TABLES_KEPT:
            del _TABLES[next(iter(_TABLES))]                  # the oldest
        _TABLES[key] = entry
    return entry


def _with_caches(vecs, n_layers, caches):
    """The float* array of DECODE_VECS + 2 pointers per layer (the last two: the layer's K and V
    cache, from caches(l))."""
    n = len(DECODE_VECS)
    ptrs = []
    for l in range(n_layers):
        ptrs += vecs[l * n:(l + 1) * n]
        ptrs += caches(l)
    return ffi.new("float*[]", ptrs)


def _decode_tables(layers, caches, C, Cq, Ckv, F, layernorm, keep):
    """The float* array of DECODE_VECS + 2 pointers per layer (the last two: the layer's K and V
    cache, from caches(l)) and the decode_linear_t array of `layers`, built once per set of arrays."""
    entry = _layer_tables(layers, C, Cq, Ckv, F, layernorm)
    keep.append(entry)
    return _with_caches(entry[0], len(layers), caches), entry[1]


class StepWeights:
    """paged_step's checked tables for one model's weights, built once: the per-layer vectors and
    linears (layers as decode_step's), the head (as decode_step's, or None) and the sizes they were
    checked against (d_model C, query width Cq = n_head D, kv width Ckv = Hkv D, layernorm; the FFN
    width F is read from the layers). A decode loop passes it as paged_step's `layers`
    (and leaves `head` None): a step then converts nothing but the cache pointers, and those only
    when the cache arrays change. It keeps every array it points into alive. The arrays are read
    where they are, so a parameter changed in place is seen; a parameter replaced by another array
    needs a new StepWeights (inference.decode keys its cache on the arrays' identities)."""

    def __init__(self, layers, head, C, Cq, Ckv, layernorm):
        _check(len(layers) >= 1, "layers: expected at least one layer, got none")
        F = _ffn_width(layers)
        self.n_layers, self.C, self.Cq, self.Ckv, self.F = len(layers), int(C), int(Cq), int(Ckv), F
        self.layernorm = bool(layernorm)
        self.keep = [layers, head]
        self.vecs, self.linears = _build_tables(layers, C, Cq, Ckv, F, layernorm, self.keep)
        self.head = _decode_head(head, C, layernorm, self.keep)      # (ln_f.w, ln_f.b, W_head, V) pointers
        self._caches = (None, None)                                   # ((k address, v address, stride), ptrs)
        self._plan = None                                             # _ContiguousPlan of decode()

    def decode(self, x, k_cache, v_cache, pos, n_head, eps, layernorm, rope_cos=None, rope_sin=None):
        """decode_step with these weights (its head included): one token at slot pos of a
        contiguous cache (L, 1, Hkv, Smax, D). The cache, n_head, eps and layernorm are checked and
        converted once per cache (the last one is kept: a decode loop calls this with the same cache
        every step); per call only x, pos and the RoPE rows are. Returns the logits (V,), or None
        when the weights carry no head."""
        plan = self._plan
        if plan is None or not plan.serves(k_cache, v_cache, n_head, eps, layernorm):
            plan = self._plan = _ContiguousPlan(self, k_cache, v_cache, n_head, eps, layernorm)
        return plan.run(x, k_cache, v_cache, pos, rope_cos, rope_sin)

    def check_sizes(self, C, H, Hkv, D, layernorm):
        """A ValueError unless these tables were built for this step's sizes."""
        _check((self.C, self.Cq, self.Ckv, self.layernorm) == (C, H * D, Hkv * D, bool(layernorm)),
               f"layers: StepWeights built for C={self.C}, n_head*D={self.Cq}, Hkv*D={self.Ckv}, "
               f"layernorm={self.layernorm}; this step has C={C}, {H * D}, {Hkv * D}, {bool(layernorm)}")

    def tables(self, pk, pv, layer_elems, kv_f16=0):
        """The float* table with the caches at pk, pv (layer l at + l * layer_elems elements, float16
        ones when kv_f16)."""
        key = (int(ffi.cast("uintptr_t", pk)), int(ffi.cast("uintptr_t", pv)), layer_elems, kv_f16)
        if self._caches[0] != key:
            self._caches = (key, _with_caches(self.vecs, self.n_layers, _layer_caches(pk, pv, layer_elems, kv_f16)))
        return self._caches[1]


def _layer_caches(pk, pv, layer_elems, kv_f16):
    """l -> layer l's (K, V) pointers in the caches at pk, pv (float* either way)."""
    if not kv_f16:
        return lambda l: (pk + l * layer_elems, pv + l * layer_elems)
    hk, hv = ffi.cast("uint16_t*", pk), ffi.cast("uint16_t*", pv)
    return lambda l: (ffi.cast("float*", hk + l * layer_elems), ffi.cast("float*", hv + l * layer_elems))


def _decode_head(head, C, layernorm, keep):
    """(ln_f.w, ln_f.b, W_head) -> their pointers, a decode_linear_t* and V; all NULL / 0 for None."""
    if head is None:
        return ffi.NULL, ffi.NULL, ffi.NULL, 0
    lnf_w, lnf_b, w_head = head
    plnf_w, plnf_b = f32(lnf_w, "head[0] (ln_f.w)", (C,)), ffi.NULL
    if layernorm:
        plnf_b = f32(lnf_b, "head[1] (ln_f.b)", (C,))
    else:
        _check(lnf_b is None, "head[1] (ln_f.b): RMSNorm has no bias, got an array")
    V = w_head.shape[0] if isinstance(w_head, np.ndarray) and w_head.ndim == 2 else getattr(w_head, "N", 0)
    _check(isinstance(V, int) and V >= 1, "head[2] (W_head): expected a weight of shape (V, C)")
    phead = ffi.new("decode_linear_t*")
    _decode_linear(phead, w_head, "head[2] (W_head)", (V, C), keep)
    return plnf_w, plnf_b, phead, V


def decode_step(x, layers, k_cache, v_cache, pos, n_head, eps, layernorm, rope_cos=None, rope_sin=None,
                head=None):
    """One token through every block (csrc/decode.c). x (C,) float32: the token's embedding, replaced
    by the last block's output. layers: one dict per layer, role -> value or None, roles as in
    DECODE_VECS and DECODE_LINEARS (plus "qkv.w"/"qkv.b" for a fused projection), or a StepWeights
    built from them and the head (head is then None here). A vector is a
    float32 array; a weight is a float32 array (N, K) or a QuantizedWeight (format id, sizes and
    pointers, validated when the quantized layer was built). k_cache, v_cache
    (L, 1, Hkv, Smax, D): the new key and value are written at slot pos, attention reads slots
    0..pos. rope_cos, rope_sin (D/2,): the rotation at pos, or None (no RoPE). layernorm: True for
    LayerNorm (biases required), False for RMSNorm. head: None, or (ln_f.w, ln_f.b or None, W_head
    (V, C) as a weight above) to finish with the model's head in the same call; returns its logits
    (V,) float32 then, else None. Everything is checked here: the C code trusts these tables. It is
    paged_step's case of one row and a cache of one block of Smax positions (the same memory:
    (L, 1, Hkv, Smax, D) either way)."""
    if isinstance(layers, StepWeights):          # the decode loop's case: arguments converted once per cache
        _check(head is None, "head: a StepWeights carries its own head, got another")
        return layers.decode(x, k_cache, v_cache, pos, n_head, eps, layernorm, rope_cos, rope_sin)
    f32(x, "x", (None,), True)
    n_layers = len(layers)
    kv_pages(k_cache, v_cache, "k_cache", "v_cache", (n_layers, 1, None, None, None))
    Smax = k_cache.shape[3]
    _check(isinstance(pos, (int, np.integer)) and 0 <= pos < Smax,
           f"pos: expected an int in [0, {Smax}) (the cache's capacity), got {pos!r}")
    rope = []
    for r, name in ((rope_cos, "rope_cos"), (rope_sin, "rope_sin")):
        if r is not None:
            _shape(r, name, (None,))                       # one row (D/2,); paged_step checks the rest
        rope.append(None if r is None else r[None])
    logits = paged_step(x[None], layers, k_cache, v_cache, np.zeros((1, 1), np.int32), np.zeros(1, np.int32),
                        np.array([pos], np.int32), n_head, eps, layernorm, *rope, head)
    return None if logits is None else logits[0]


def _step_status(status):
    """lib.paged_step's status as the error it stands for (0: none)."""
    if status == -1:
        raise MemoryError("paged_step: out of memory for its scratch buffers")
    _check(status == 0, "paged_step: a block table entry that a row's positions reach is out of range")


class _ContiguousPlan:
    """paged_step's arguments for one row on a contiguous cache (one block of Smax positions),
    checked and converted once: what StepWeights.decode reuses from step to step. It refers to the
    cache arrays weakly (a finished generation's cache is freed as usual; its addresses are then
    never used again: serves() is False for any other array)."""

    def __init__(self, weights, k_cache, v_cache, n_head, eps, layernorm):
        self.k, self.v = weakref.ref(k_cache), weakref.ref(v_cache)
        self.settings = (n_head, eps, layernorm)
        pk, pv, kv_f16 = kv_pages(k_cache, v_cache, "k_cache", "v_cache", (weights.n_layers, 1, None, None, None))
        apart({"k_cache": k_cache, "v_cache": v_cache}, {})
        L, _, Hkv, Smax, D = k_cache.shape
        H = int(n_head)
        _check(Hkv >= 1 and H >= Hkv and H % Hkv == 0,
               f"n_head={H} must be a multiple of the cache's kv heads {Hkv}")
        weights.check_sizes(weights.C, H, Hkv, D, layernorm)      # C: checked against x at each run
        self.weights, self.Smax, self.half = weights, Smax, D // 2
        self.ints = np.zeros(4, np.int32)    # the block table (block 0), the row's table, position, head row
        pi = ffi.from_buffer("int32_t[]", self.ints)
        self.pos = self.ints[2:3]
        self.args = (weights.tables(pk, pv, Hkv * Smax * D, kv_f16), weights.linears, L, weights.C, H, Hkv, D,
                     weights.F, 1, Smax, pi, 1, 1, pi + 1, pi + 2, 1 if layernorm else 0, kv_f16, _scalar(eps, "eps"))
        self.run_args = (*self.args[:8], Smax, *self.args[15:18])   # decode_run's, vecs .. eps
        self.head_row, self.D = pi + 3, D
        self.keep = pi

    def serves(self, k_cache, v_cache, n_head, eps, layernorm):
        return self.k() is k_cache and self.v() is v_cache and self.settings == (n_head, eps, layernorm)

    def run(self, x, k_cache, v_cache, pos, rope_cos, rope_sin):
        w = self.weights
        px = f32(x, "x", (w.C,), True)
        _check(isinstance(pos, (int, np.integer)) and 0 <= pos < self.Smax,
               f"pos: expected an int in [0, {self.Smax}) (the cache's capacity), got {pos!r}")
        if rope_cos is None and rope_sin is None:
            pcos = psin = ffi.NULL
        else:
            _check(self.half * 2 == self.D, f"rope_cos: RoPE needs an even head dim, got D={self.D}")
            pcos, psin = f32(rope_cos, "rope_cos", (self.half,)), f32(rope_sin, "rope_sin", (self.half,))
        _check(not np.may_share_memory(x, k_cache) and not np.may_share_memory(x, v_cache),
               "x, k_cache: outputs must not share memory")
        return self.call(px, pos, pcos, psin)

    def call(self, px, pos, pcos, psin):
        """paged_step on checked pointers: x (C,) at px, the RoPE rows at pcos, psin (or NULL), at
        slot pos; the logits (V,), or None when the weights carry no head."""
        plnf_w, plnf_b, phead, V = self.weights.head
        logits = np.empty(V, np.float32) if V else None
        self.pos[0] = pos
        status = lib.paged_step(px, 1, *self.args, pcos, psin, plnf_w, plnf_b, phead, V, self.head_row,
                                1 if V else 0, ffi.from_buffer("float[]", logits) if V else ffi.NULL)
        _step_status(status)
        return logits


class DecodeLoop:
    """One sequence's decode steps on a contiguous cache (L, 1, Hkv, Smax, D), with everything but
    the token and its position checked and converted once: the tables of weights (a StepWeights
    with its head), the cache, the embedding table embed (V, C) float32 (plus learned positions
    pos_embed (P, C), or None) and the RoPE rows of every position rope_cos, rope_sin (Smax or more,
    D/2), or None. step(token, pos) copies the token's embedding into its own x buffer and runs
    paged_step at slot pos: the same C call, on the same values, as decode_step after the embedding
    lookup, without the per-step checks and conversions that cost a tenth of a quantized model's
    token in Python. A generation builds one and calls step for each new token."""

    def __init__(self, weights, k_cache, v_cache, n_head, eps, layernorm, embed, pos_embed=None,
                 rope_cos=None, rope_sin=None):
        _check(isinstance(weights, StepWeights), f"weights: expected a StepWeights, got {type(weights).__name__}")
        _check(weights.head[3] > 0, "weights: the StepWeights carries no head (the loop returns logits)")
        self.plan = plan = _ContiguousPlan(weights, k_cache, v_cache, n_head, eps, layernorm)
        C = weights.C
        f32(embed, "embed", (None, C))
        _check(embed.shape[0] >= 1, "embed: expected at least one row, got none")
        if pos_embed is not None:
            f32(pos_embed, "pos_embed", (None, C))
        self.embed, self.pos_embed, self.n_vocab = embed, pos_embed, embed.shape[0]
        self.n_pos = plan.Smax if pos_embed is None else min(plan.Smax, pos_embed.shape[0])
        _check((rope_cos is None) == (rope_sin is None), "rope_cos, rope_sin: expected both or neither")
        if rope_cos is None:
            self.pcos = self.psin = ffi.NULL
        else:
            _check(plan.half * 2 == plan.D, f"rope_cos: RoPE needs an even head dim, got D={plan.D}")
            _check(rope_cos.ndim == 2 and rope_cos.shape[0] >= plan.Smax,
                   f"rope_cos: expected ({plan.Smax} or more, {plan.half}) rows, got {rope_cos.shape}")
            self.pcos = f32(rope_cos, "rope_cos", (rope_cos.shape[0], plan.half))
            self.psin = f32(rope_sin, "rope_sin", rope_cos.shape)
        self.keep, self.rope = (rope_cos, rope_sin), rope_cos is not None
        self.x = np.empty(C, np.float32)
        self.px = ffi.from_buffer("float[]", self.x)
        self.steps = 0                       # the steps the last run() ran

    def step(self, token, pos):
        """The logits (V,) float32 of token at slot pos (keys and values written there, attention
        over slots 0..pos)."""
        if not (isinstance(token, (int, np.integer)) and 0 <= token < self.n_vocab):
            raise ValueError(f"token: expected an id in [0, {self.n_vocab}), got {token!r}")
        if not (isinstance(pos, (int, np.integer)) and 0 <= pos < self.n_pos):
            raise ValueError(f"pos: expected an int in [0, {self.n_pos}) (the cache's capacity"
                             f"{'' if self.pos_embed is None else ' and the learned positions'}), got {pos!r}")
        x = self.x
        if self.pos_embed is None:
            x[:] = self.embed[token]
        else:
            np.add(self.embed[token], self.pos_embed[pos], out=x)
        if not self.rope:
            return self.plan.call(self.px, pos, ffi.NULL, ffi.NULL)
        off = int(pos) * self.plan.half
        return self.plan.call(self.px, pos, self.pcos + off, self.psin + off)

    def run(self, token, pos, n, choose=None):
        """Up to n steps from token at slot pos in one C call (csrc/decode.c decode_run): the
        threads stay in one parallel region from token to token, and no step comes back to Python
        unless choose asks it to. Each step is step()'s, on the same values. After step i, the
        token fed to step i + 1 is choose(logits, greedy) -- logits (V,) float32, a read-only view
        valid during the call, and greedy their argmax as np.argmax gives it, found in C (-1 when a
        logit is NaN): an id, or None to end the run there -- or with choose None greedy itself (a
        ValueError when the logits hold NaN). Returns (tokens, steps): the ids chosen (int64;
        steps of them, or steps - 1 when choose ended the run) and the steps run, each of which
        wrote slot pos + i (also in self.steps, set when the call ends, raising or not). An exception
        raised in choose ends the run and is raised here."""
        self.steps = 0
        _check(isinstance(token, (int, np.integer)) and 0 <= token < self.n_vocab,
               f"token: expected an id in [0, {self.n_vocab}), got {token!r}")
        _check(isinstance(n, (int, np.integer)) and n >= 1, f"n: expected an int >= 1, got {n!r}")
        learned = "" if self.pos_embed is None else " and the learned positions"
        _check(isinstance(pos, (int, np.integer)) and 0 <= pos and pos + n <= self.n_pos,
               f"pos: expected pos + n within the cache's capacity{learned} ({self.n_pos}), got pos={pos!r}, n={n}")
        _check(choose is None or callable(choose), f"choose: expected a callable or None, got {type(choose).__name__}")
        plan, V = self.plan, self.plan.weights.head[3]
        logits, tokens, done = np.empty(V, np.float32), np.zeros(n, np.int32), ffi.new("int64_t*")
        raised, ended, callback = [], [], ffi.NULL
        if choose is not None:
            view = logits.view()
            view.flags.writeable = False

            def next_token(ctx, plogits, i, greedy):    # the C loop's choice: Python's, checked; -1 ends it
                try:
                    t = choose(view, greedy)
                    if t is None:
                        ended.append(i)
                        return -1
                    _check(isinstance(t, (int, np.integer)) and 0 <= t < self.n_vocab,
                           f"choose: expected an id in [0, {self.n_vocab}) or None, got {t!r}")
                    return int(t)
                except BaseException as e:      # noqa: B036 -- carried across the C call, raised below
                    raised.append(e)
                    return -1
            callback = ffi.callback("decode_next_fn", next_token)
        status = lib.decode_run(ffi.from_buffer("float[]", self.embed), self.n_vocab,
                                ffi.NULL if self.pos_embed is None else ffi.from_buffer("float[]", self.pos_embed),
                                0 if self.pos_embed is None else self.pos_embed.shape[0],
                                *plan.run_args, self.pcos, self.psin, *plan.weights.head,
                                int(token), int(pos), int(n), callback, ffi.NULL, ffi.from_buffer("float[]", logits),
                                ffi.from_buffer("int32_t[]", tokens), done)
        steps = self.steps = int(done[0])
        if raised:
            raise raised[0]
        if status == -1:
            raise MemoryError("decode_run: out of memory for its scratch buffers")
        _check(status != -3, "logits: contain NaN")
        _check(status != -4, f"logits: their argmax is past the embedding's {self.n_vocab} rows")
        _check(status == 0, f"decode_run: arguments out of range (status {status})")
        return tokens[:steps - 1 if ended else steps].astype(np.int64), steps


def _int32_rows(a, name, shape, low, high):
    """a (an integer array of `shape`, every entry in [low, high)) as a C-contiguous int32 array,
    else a ValueError naming it: the step follows these indices into the cache."""
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got {type(a).__name__} {getattr(a, 'dtype', '')}")
    _shape(a, name, shape)
    if a.size:
        if a.size <= 64:                     # a step's few rows: Python's min/max beat two numpy reductions
            v = a.ravel().tolist()
            lo, hi = min(v), max(v)
        else:
            lo, hi = int(a.min()), int(a.max())
        _check(lo >= low and hi < high, f"{name}: expected entries in [{low}, {high}), got [{lo}, {hi}]")
    return np.ascontiguousarray(a, dtype=np.int32)


def paged_step(x, layers, k_pages, v_pages, tables, row_table, row_pos, n_head, eps, layernorm, rope_cos=None,
               rope_sin=None, head=None, head_rows=None):
    """M tokens of any sequences through every block (csrc/decode.c paged_step). x (M, C) float32:
    their embeddings, replaced by the last block's outputs. k_pages, v_pages (L, num_blocks, Hkv,
    block_size, D): the paged cache. tables (S, max_blocks) int32: block tables; row m is the token
    at position row_pos[m] of sequence row_table[m]: its key and value are written at that
    position's slot and it attends over the sequence's positions 0..row_pos[m] (the rows of a
    prefill chunk see each other's keys). rope_cos, rope_sin (M, D/2) or None. layers and head as
    decode_step's; head_rows: the rows whose logits are wanted (default all). Returns logits
    (len(head_rows), V) float32, or None without a head."""
    apart({"x": x, "k_pages": k_pages, "v_pages": v_pages}, {})
    px = f32(x, "x", (None, None), True)
    M, C = x.shape
    built = isinstance(layers, StepWeights)
    n_layers = layers.n_layers if built else len(layers)
    pk, pv, kv_f16 = kv_pages(k_pages, v_pages, "k_pages", "v_pages", (n_layers, None, None, None, None))
    L, NB, Hkv, bs, D = k_pages.shape
    H, F, pcos, psin = _decode_sizes(layers, n_head, Hkv, D, rope_cos, rope_sin, M)
    _check(M >= 1 and NB >= 1, f"x, k_pages: expected at least one row and one block, got {M} and {NB}")
    tables = _int32_rows(tables, "tables", (None, None), 0, NB)
    S, MB = tables.shape
    _check(S >= 1 and MB >= 1, f"tables: expected at least one table of at least one block, got shape {tables.shape}")
    row_table = _int32_rows(row_table, "row_table", (M,), 0, S)
    row_pos = _int32_rows(row_pos, "row_pos", (M,), 0, MB * bs)
    head_rows = np.arange(M, dtype=np.int32) if head_rows is None else _int32_rows(head_rows, "head_rows", (None,), 0, M)
    keep = []
    layer_elems = NB * Hkv * bs * D
    if built:
        layers.check_sizes(C, H, Hkv, D, layernorm)
        _check(head is None, "head: a StepWeights carries its own head, got another")
        vecs, linears = layers.tables(pk, pv, layer_elems, kv_f16), layers.linears
        plnf_w, plnf_b, phead, V = layers.head
        head = layers if phead != ffi.NULL else None
    else:
        vecs, linears = _decode_tables(layers, _layer_caches(pk, pv, layer_elems, kv_f16),
                                       C, H * D, Hkv * D, F, layernorm, keep)
        plnf_w, plnf_b, phead, V = _decode_head(head, C, layernorm, keep)
    logits = np.empty((len(head_rows), V), dtype=np.float32) if head is not None else None
    plogits = ffi.from_buffer("float[]", logits) if head is not None else ffi.NULL
    status = lib.paged_step(px, M, vecs, linears, L, C, H, Hkv, D, F, NB, bs, ffi.from_buffer("int32_t[]", tables),
                            S, MB, ffi.from_buffer("int32_t[]", row_table), ffi.from_buffer("int32_t[]", row_pos),
                            1 if layernorm else 0, kv_f16, _scalar(eps, "eps"), pcos, psin, plnf_w, plnf_b, phead, V,
                            ffi.from_buffer("int32_t[]", head_rows), len(head_rows) if head is not None else 0,
                            plogits)
    _step_status(status)
    del pk, pv, keep
    return logits
