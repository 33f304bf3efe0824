"""llama-cpp-python as a test reference: `llama_cpp = llama_cpp_or_skip()` skips the test with the
reason when it is not installed, and turns off llama.cpp's "extra buffer types" first: on Intel
Xeon hosts with AMX its AMX matmul segfaults during the first evaluation (also on files it wrote
itself), which would take the whole pytest process down rather than fail one test."""
import pytest


def llama_cpp_or_skip():
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is the llama.cpp reference")
    lc = llama_cpp.llama_cpp
    if not getattr(lc.llama_model_default_params, "_minillm_no_extra_bufts", False):
        default = lc.llama_model_default_params

        def params():
            p = default()
            p.use_extra_bufts = False
            return p
        params._minillm_no_extra_bufts = True
        lc.llama_model_default_params = params
    return llama_cpp
