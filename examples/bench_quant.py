"""Benchmark: fused dequant-matmul GEMV (csrc/quant.c) vs numpy fp32 GEMV, and minillm decode vs
llama.cpp on the same GGUF files.

    python examples/bench_quant.py            # GEMV table (+ decode table if llama-cpp-python is installed)
    python examples/bench_quant.py --quick    # fewer repeats, 4096x4096 only

Part 1: x (1, K) @ W^T for W (N, K) = 4096x4096 and 11008x4096, W in fp32 (numpy/OpenBLAS), INT8
(per-channel), INT4 (group 128; "int4-q8x" also quantizes x to int8 per group and sums in integers,
as llama.cpp does), Q8_0 and Q4_0. GB/s counts the bytes of the weights read once per
GEMV; the machine's bandwidth is measured in the same run (numpy sum over a 256 MiB array). A weight
set of a few MB can stay in the 32 MB L3 between repeats, so each timing rotates through enough
copies of the matrix to exceed the cache, as a real decode step (every layer once) does.
Part 2 (needs llama-cpp-python): the Llama-134M shape (d768, 12 layers, ffn 2048, V32000, random
weights) written as GGUF F32/Q8_0/Q4_0, greedy decode of 64 tokens after a 16-token prompt in
llama.cpp and in minillm (load_gguf + minillm.inference.generate with its KV cache).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from minillm.quant import _native  # noqa: E402
from minillm.quant.ggml_quants import quantize_blocks  # noqa: E402
from minillm.quant.linear import GGMLLinear, Int4Linear, Int8Linear  # noqa: E402
from minillm.quant.rtn import quantize_int4, quantize_int8  # noqa: E402

CACHE_BYTES = 96 << 20  # rotate through copies until this many weight bytes: well past the L3


def median_time(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def bandwidth():
    a = np.ones(64 << 20, dtype=np.float32)                                          # 256 MiB
    t = median_time(lambda: a.sum(), 5)
    return a.nbytes / t / 1e9


def gemv_table(shapes, repeats):
    rng = np.random.default_rng(0)
    bw = bandwidth()
    print(f"measured memory bandwidth (numpy sum, 256 MiB): {bw:.1f} GB/s")
    print(f"{'N x K':>12} {'format':>8} {'bytes MB':>9} {'time ms':>8} {'GB/s':>6} {'% of bw':>8} {'speedup vs fp32':>16}")
    for N, K in shapes:
        w = (rng.standard_normal((N, K)) * 0.02).astype(np.float32)
        x = rng.standard_normal((1, K)).astype(np.float32)
        i4 = quantize_int4(w, 128)
        layers = {"fp32": None, "int8": Int8Linear(*quantize_int8(w)), "int4": Int4Linear(*i4, 128),
                  "int4-q8x": Int4Linear(*i4, 128, act_int8=True),
                  "q8_0": GGMLLinear("q8_0", quantize_blocks(w, "q8_0")), "q4_0": GGMLLinear("q4_0", quantize_blocks(w, "q4_0"))}
        base = None
        for fmt, lin in layers.items():
            nbytes = w.nbytes if lin is None else lin.nbytes
            copies = max(1, -(-CACHE_BYTES // nbytes))
            if lin is None:
                ws = [w.copy() for _ in range(copies)]
                calls = [lambda m=m: x @ m.T for m in ws]
            else:
                ws = [type(lin).from_arrays(lin.meta(), {k: v.copy() for k, v in lin.arrays().items()})
                      for _ in range(copies)]
                for m in ws:
                    m.act_int8 = getattr(lin, "act_int8", False)
                calls = [lambda m=m: m.matmul(x) for m in ws]

            def run():
                for c in calls:
                    c()
            t = median_time(run, repeats) / copies
            base = t if base is None else base
            gbs = nbytes / t / 1e9
            print(f"{N:>5} x {K:<5} {fmt:>8} {nbytes / 1e6:9.1f} {t * 1e3:8.3f} {gbs:6.1f} {100 * gbs / bw:7.0f}% "
                  f"{base / t:15.2f}x")
            del ws, calls


def decode_table(n_new=64, prompt_len=16):
    try:
        import llama_cpp
    except ImportError:
        print("\nllama-cpp-python not installed: decode comparison skipped (pip install llama-cpp-python)")
        return
    from minillm import ModelConfig, Transformer
    from minillm.io import load_gguf, save_gguf
    from minillm.inference import generate
    cfg = ModelConfig.preset("llama-134m")
    model = Transformer(cfg, seed=0)
    prompt = [int(t) for t in np.random.default_rng(1).integers(0, cfg.vocab_size, prompt_len)]
    print(f"\ngreedy decode, Llama-134M shape, {prompt_len}-token prompt, {n_new} new tokens, 2 threads")
    print(f"{'format':>8} {'llama.cpp tok/s':>16} {'minillm tok/s':>14} {'llama.cpp / minillm':>20}")
    with tempfile.TemporaryDirectory() as d:
        for dtype in ("f32", "q8_0", "q4_0"):
            path = os.path.join(d, f"m-{dtype}.gguf")
            save_gguf(model, path, dtype=dtype)
            llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=2, n_batch=64, verbose=False)

            def run_llama():
                llm.reset()
                llm.eval(prompt)
                t = time.perf_counter()
                for _ in range(n_new):
                    tok = llm.sample(temp=0.0)
                    llm.eval([tok])
                return n_new / (time.perf_counter() - t)
            ours, _ = load_gguf(path)

            def run_ours():  # decode rate: (time of prompt + n tokens) - (time of prompt + 1 token)
                t = time.perf_counter()
                generate(ours, np.array(prompt), 1)
                t1 = time.perf_counter() - t
                t = time.perf_counter()
                generate(ours, np.array(prompt), n_new)
                tn = time.perf_counter() - t
                return (n_new - 1) / (tn - t1)
            theirs = float(np.median([run_llama() for _ in range(3)]))
            mine = float(np.median([run_ours() for _ in range(3)]))
            print(f"{dtype:>7} {theirs:16.1f} {mine:14.1f} {theirs / mine:19.2f}x")
            del llm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if not _native.available():
        print("native extension not built: nothing to benchmark (pip install -e .)")
        return
    shapes = [(4096, 4096)] if args.quick else [(4096, 4096), (11008, 4096)]
    gemv_table(shapes, 3 if args.quick else 7)
    decode_table()


if __name__ == "__main__":
    main()
